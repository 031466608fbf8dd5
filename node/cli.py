"""The ``colonynode`` command line: simulations here (``simulate``, ``scenarios``, ``demo``),
a device's life in a colony in ``cli_node``, the meta-filesystem in ``cli_fs``.

Only typer and rich are imported up front: the simulator, trio, httpx and libp2p are
imported by the commands that use them, so that ``colonynode --help`` and the commands
that need no daemon answer at once (bench/bench_cli.py, bench/results/CLI.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from colonyp2p.node import cli_fs
from colonyp2p.node.cli_node import register
from colonyp2p.node.cli_typer import typer_app

if TYPE_CHECKING:
    from colonyp2p.simulations.engine import Result
    from colonyp2p.simulations.shrink import Shrunk

app = typer_app(
    "colonyp2p: a peer-to-peer meta-operating system for distributed computing.",
    no_args_is_help=True,
)
console = Console()
err = Console(stderr=True)


def _run(name: str, seed: int, quiet: bool) -> Result:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from colonyp2p.errors import ScenarioError
    from colonyp2p.simulations import scenario as scenarios
    from colonyp2p.simulations.engine import Simulation, simulate

    try:
        scenario = scenarios.load(name)
    except ScenarioError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if quiet:
        return simulate(scenario, seed)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("processes ended, t={task.fields[t]:.0f}s simulated"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        total = scenario.workload.specs
        task = bar.add_task(f"simulating {scenario.name}", total=total, t=0.0)

        def progress(sim: Simulation) -> None:
            bar.update(task, completed=len(sim.checker.terminal), t=sim.now)

        return simulate(scenario, seed, progress)


def _shrink(result: Result, out: Path, quiet: bool) -> Shrunk | None:
    """The failing run's scenario shrunk (see simulations/shrink.py), written to ``out``."""
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from colonyp2p.simulations.scenario import to_toml
    from colonyp2p.simulations.shrink import MAX_RUNS, shrink, size

    with Progress(
        TextColumn("[bold]shrinking[/] {task.fields[now]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("runs"),
        console=err,
        transient=True,
        disable=quiet,
    ) as bar:
        members, specs, _ = size(result.scenario)
        task = bar.add_task("", total=MAX_RUNS, now=f"{members} members, {specs} specs")

        def progress(state: Shrunk, what: str, kept: bool) -> None:
            members, specs, faults = size(state.scenario)
            now = f"{members} members, {specs} specs, {faults} faults; tried: {what}"
            bar.update(task, completed=state.runs, now=now)

        shrunk = shrink(result.scenario, result.seed, first=result, progress=progress)
    if shrunk is None:
        return None
    # the name stays: it names the colony, and with it every pid and keeper placement
    what = "; ".join(shrunk.steps) or "nothing could be removed"
    shrunk.scenario = dataclasses.replace(
        shrunk.scenario,
        description=f"Shrunk from {result.scenario.name} with seed {result.seed} "
        f"(still {shrunk.kind}): {what}.",
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_toml(shrunk.scenario), encoding="utf-8")
    return shrunk


def _report(
    result: Result,
    json_out: Path | None,
    plot_out: Path | None,
    shrunk: Shrunk | None = None,
    shrunk_path: Path | None = None,
) -> None:
    from colonyp2p.simulations.report import print_shrunk, print_violation, summary_table

    console.print(summary_table(result))
    if json_out is not None:
        summary = result.summary()
        if shrunk is not None:
            summary["shrunk"] = {
                "path": str(shrunk_path),
                "kind": shrunk.kind,
                "runs": shrunk.runs,
                "steps": [
                    {"kept": what, "members": m, "specs": n, "faults": f}
                    for what, (m, n, f) in zip(shrunk.steps, shrunk.sizes[1:], strict=True)
                ],
                "summary": shrunk.result.summary(),
            }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        console.print(f"summary written to {json_out}")
    if plot_out is not None:
        # imported here: matplotlib would cost every command 0.3 s and every daemon
        # (which runs this module) 30 MB, which also slows the kernel's teardown of a
        # killed daemon and with it its peers' noticing
        from colonyp2p.simulations.plot import plot

        plot(result, plot_out)
        console.print(f"plot written to {plot_out}")
    print_violation(console, result)
    if shrunk is not None and shrunk_path is not None:
        print_shrunk(console, shrunk, shrunk_path)
    if result.violation is not None or result.lost or not result.terminal:
        raise typer.Exit(1)


@app.command("simulate")
def simulate_cmd(
    scenario: Annotated[
        str, typer.Argument(help="a scenario TOML file, or the name of a shipped scenario")
    ],
    seed: Annotated[int, typer.Option(help="the run's seed: same seed, same run")] = 1,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the JSON summary here")
    ] = None,
    plot_out: Annotated[
        Path | None, typer.Option("--plot", help="write a PNG plot of the run here")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    shrink_out: Annotated[
        Path | None,
        typer.Option(
            "--shrink",
            help="if the run fails, reduce the scenario to a smaller one that fails the "
            "same way with the same seed, and write it here (TOML)",
        ),
    ] = None,
) -> None:
    """Run a colony through a scenario in the deterministic simulator and check its invariants.

    Exits 1 when an invariant breaks (printing the seed and the shortest history that
    shows it), when an acknowledged process is lost, or when the run does not end. With
    --shrink, a failing scenario is also reduced to a small failing case (written as a
    scenario file, with its own history), to turn into a test that fails before a fix.
    """
    from colonyp2p.simulations.shrink import failure

    result = _run(scenario, seed, quiet)
    shrunk = None
    if shrink_out is not None and failure(result) is not None:
        shrunk = _shrink(result, shrink_out, quiet)
    _report(result, json_out, plot_out, shrunk, shrink_out)


@app.command("scenarios")
def scenarios_cmd() -> None:
    """List the scenarios that ship with colonyp2p."""
    from rich.table import Table

    from colonyp2p.simulations import scenario as scenarios

    table = Table("name", "members", "specs", "faults")
    for name in scenarios.shipped():
        s = scenarios.load(name)
        f = s.faults
        faults = (
            f"{f.crash_fraction:.0%} crash, {s.network.loss:.0%} loss, "
            f"{len(f.partitions)} partition(s), {f.churn.joins}+/{f.churn.revokes}- churn"
        )
        table.add_row(name, str(s.nodes), str(s.workload.specs), faults)
    console.print(table)


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option(help="where the demo colony's homes and logs go")] = Path(
        "out/demo"
    ),
) -> None:
    """The README's first command: a local colony of three real daemons doing real work."""
    from colonyp2p.node import demo

    if not demo.run(out, console):
        raise typer.Exit(1)


register(app)
cli_fs.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
