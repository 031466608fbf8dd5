"""What ``colonynode simulate`` shows: the summary table and the violation report."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from colonyp2p.simulations.engine import Result
from colonyp2p.simulations.shrink import Shrunk


def summary_table(result: Result) -> Table:
    s = result.summary()
    table = Table(title=f"{s['scenario']} (seed {s['seed']})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")

    def good(ok: bool, text: str) -> str:
        return f"[green]{text}[/]" if ok else f"[bold red]{text}[/]"

    table.add_row("members", f"{s['nodes']} ({s['executors']} executors)")
    table.add_row("specs", f"{s['specs']} ({s['workflow_specs']} in workflows)")
    table.add_row("successful", str(s["processes_successful"]))
    table.add_row("failed", str(s["processes_failed"]))
    table.add_row("lost", good(s["lost"] == 0, str(s["lost"])))
    table.add_row(
        "duplicate results", good(s["duplicate_results"] == 0, str(s["duplicate_results"]))
    )
    table.add_row(
        "stale-epoch accepts", good(s["stale_epoch_accepts"] == 0, str(s["stale_epoch_accepts"]))
    )
    table.add_row("terminal", good(s["terminal"], "yes" if s["terminal"] else "no"))
    c = s["counters"]
    table.add_row("crashes / partitions", f"{c.get('crashes', 0)} / {c.get('partitions', 0)}")
    table.add_row("joins / revocations", f"{c.get('joins', 0)} / {c.get('revocations', 0)}")
    table.add_row(
        "messages (lost, duplicated)",
        f"{c.get('messages', 0):,} ({c.get('messages_lost', 0):,}, "
        f"{c.get('messages_duplicated', 0):,})",
    )
    rejected = sum(v for k, v in c.items() if k.startswith("rejected_"))
    table.add_row("refused by the cores", f"{rejected:,}")
    table.add_row("simulated time", f"{s['simulated_seconds']:,.1f} s")
    table.add_row("wall time", f"{s['wall_seconds']:,.1f} s")
    table.add_row("events", f"{s['events']:,} ({s['events_per_wall_second']:,}/s)")
    table.add_row("trace digest", s["trace_digest"][:32])
    return table


def print_violation(console: Console, result: Result, replay: str = "") -> None:
    v = result.violation
    if v is None:
        return
    console.print(f"[bold red]invariant broken:[/] {v}")
    console.print(  # one line, never wrapped: a command to copy
        f"replay it with: colonynode simulate {replay or result.scenario.name} "
        f"--seed {result.seed}   (process {v.pid})",
        soft_wrap=True,
    )
    console.print(
        f"[bold]shortest history of process {v.pid[:16]}[/] ({len(result.history)} events):"
    )
    for line in result.history:
        console.print(f"  {line}", markup=False, highlight=False)


def print_shrunk(console: Console, shrunk: Shrunk, path: object) -> None:
    """What the shrinker kept, from the failing scenario to the small one, and the small
    run's own violation and history."""
    table = Table(title=f"shrunk in {shrunk.runs} runs: still {shrunk.kind}")
    table.add_column("reduction kept")
    table.add_column("members", justify="right")
    table.add_column("specs", justify="right")
    table.add_column("faults", justify="right")
    for step, (members, specs, faults) in zip(
        ["(the failing scenario)", *shrunk.steps], shrunk.sizes, strict=True
    ):
        table.add_row(step, str(members), str(specs), str(faults))
    console.print(table)
    console.print(f"the shrunk scenario: {path}", soft_wrap=True)
    if shrunk.result.violation is not None:
        print_violation(console, shrunk.result, replay=str(path))
    else:
        lost = len(shrunk.result.lost)
        console.print(
            f"replay it with: colonynode simulate {path} --seed {shrunk.seed}   "
            f"({lost} lost, terminal: {shrunk.result.terminal})",
            soft_wrap=True,
        )
