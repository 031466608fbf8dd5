"""A ColonyOS-style workflow across the compute continuum, on a colony of real nodes.

    .venv/bin/python examples/continuum.py            # about 20 s; --no-slurm to skip Slurm

Edge devices measure (here: six weather stations' hourly temperatures, generated from
each station's name), one node gathers their summaries, and a batch job on a Slurm
cluster turns the gathered summary into a forecast::

    measure(site) x 6  ──>  gather  ──>  forecast (sbatch)
    edge executors          gateway     hpc executor (kind slurm)

This program is the colony's gateway: it embeds a node (``SyncColony.embedded``) that
founds the colony, serves ``measure`` and ``gather`` with ``@colony.function`` and
submits the workflow. Beside it run three daemons started with ``colonynode``, as on
other devices: two edge nodes that serve ``measure`` from this very file (their
config lists ``measure=continuum:measure`` in ``executor.functions``) and an HPC node
whose executor submits the forecast to Slurm. Only the gateway serves ``gather``, so
that is where the fan-in happens; ``forecast`` asks for ``executortype="hpc"``.

Slurm: ``scripts/slurm-up`` starts a one-node Slurm on this machine (installing
Debian's slurm-wlm and munge first when missing, which needs root). When it cannot,
the program says why and runs the forecast on a shell executor of the same type
instead: the same command, without the batch system. ``--no-slurm`` does that
without trying. Homes and daemon logs are left in ``out/continuum/``.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from colonyp2p import ProcessFailed, SyncColony, SyncProcess, WaitTimeout
from colonyp2p.node.demo import join_and_start, stop
from colonyp2p.node.home import Config, Home

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SITES = ("tromso", "uppsala", "lulea", "kiruna", "umea", "visby")
HOURS = 24 * 14
DEADLINE = 90.0

colony = SyncColony.embedded(
    ROOT / "out" / "continuum" / "gateway", colony="continuum", name="gateway"
)


@colony.function(executortype="edge")
def measure(site: str, hours: int = HOURS) -> dict[str, Any]:
    """An edge station's summary of ``hours`` hourly temperatures (made up, but always
    the same for a site: a seasonal level, a daily cycle and noise)."""
    rng = random.Random(site)
    level = rng.uniform(-12.0, 4.0)
    readings = [level + 4.0 * _daily(h) + rng.gauss(0.0, 1.5) + 0.02 * h for h in range(hours)]
    return {
        "site": site,
        "readings": len(readings),
        "mean": round(statistics.fmean(readings), 3),
        "min": round(min(readings), 3),
        "max": round(max(readings), 3),
        "trend_per_day": round(0.02 * 24, 3),
    }


@colony.function(executortype="edge")
def gather(inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fan-in: the stations' summaries (the parents' outputs) as one."""
    total = sum(s["readings"] for s in inputs)
    return {
        "sites": sorted(s["site"] for s in inputs),
        "readings": total,
        "mean": round(sum(s["mean"] * s["readings"] for s in inputs) / total, 3),
        "coldest": min(inputs, key=lambda s: s["min"])["site"],
        "trend_per_day": statistics.fmean(s["trend_per_day"] for s in inputs),
    }


# The batch job: plain python3 on the cluster, reading the gathered summary from the file
# that $COLONY_INPUTS names (the executor writes the parents' outputs there).
FORECAST = """
import json, os
summary = json.load(open(os.environ["COLONY_INPUTS"]))[0]
days = 7
mean = summary["mean"] + days * summary["trend_per_day"]
where = os.environ.get("SLURM_JOB_ID")
print(f"forecast for {len(summary['sites'])} sites in {days} days: mean {mean:.2f} C")
print("ran as slurm job " + where if where else "ran in a shell")
"""


def _daily(hour: int) -> float:
    import math

    return math.sin(2 * math.pi * (hour % 24) / 24)


def workflow() -> dict[str, Any]:
    """The DAG as ColonyOS workflow JSON."""
    specs: list[dict[str, Any]] = [
        {
            "nodename": f"measure-{site}",
            "funcname": "measure",
            "args": [site, HOURS],
            "conditions": {"executortype": "edge"},
        }
        for site in SITES
    ]
    specs.append(
        {
            "nodename": "gather",
            "funcname": "gather",
            "conditions": {
                "executortype": "edge",
                "dependencies": [f"measure-{site}" for site in SITES],
            },
        }
    )
    specs.append(
        {
            "nodename": "forecast",
            "funcname": "python3",
            "args": ["-c", FORECAST],
            "maxexectime": 120,
            "conditions": {"executortype": "hpc", "dependencies": ["gather"]},
        }
    )
    return {"colonyname": "continuum", "functionspecs": specs}


def slurm_ready(console: Console) -> bool:
    """Whether a Slurm cluster answers here (after scripts/slurm-up tried to start one)."""
    with console.status("starting Slurm (scripts/slurm-up; a first run installs it)"):
        try:
            up = subprocess.run(
                [str(ROOT / "scripts" / "slurm-up")], capture_output=True, text=True, timeout=600
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            console.print(f"[yellow]Slurm cannot start here ({exc})[/]")
            return False
    if up.returncode != 0:
        said = (up.stdout + up.stderr).strip().splitlines()
        console.print("[yellow]Slurm cannot start here:[/] " + (said[-1] if said else "?"))
        return False
    return True


def run(out: Path, use_slurm: bool, console: Console) -> dict[str, Any]:
    """Form the colony in ``out``, run the workflow, stop the daemons; what it did."""
    if out.exists():
        shutil.rmtree(out)
    kind = "slurm" if use_slurm and slurm_ready(console) else "shell"
    if kind == "shell":
        why = "" if use_slurm else " (--no-slurm)"
        console.print(f"[yellow]the forecast runs on a shell executor instead of Slurm{why}[/]")
    colony.node.home = Home(out / "gateway")
    homes = [Home(out / name) for name in ("edge-1", "edge-2", "hpc")]
    # the daemons import this file as `continuum` for `measure`
    env = {"PYTHONPATH": str(HERE)}
    started = time.monotonic()
    try:
        with colony:
            colony_id = colony.status()["colony_id"]
            with console.status("starting 3 daemons (2 edge nodes, 1 HPC node)"):
                for home in homes:
                    name = home.root.name
                    configure = partial(_executor, name=name, kind=kind)
                    join_and_start(home, colony_id, colony.invite(), name, configure, env=env)
            console.print(
                f"colony [bold]{colony_id[:16]}[/]: gateway (this program) + "
                f"{', '.join(h.root.name for h in homes)}, the forecast on {kind}"
            )
            processes = colony.submit_workflow(workflow())
            with console.status("running the workflow"):
                for process in processes.values():
                    with suppress(ProcessFailed, WaitTimeout):  # reported below
                        process.wait(timeout=max(1.0, DEADLINE - (time.monotonic() - started)))
            names = {colony.node.member_id: "gateway"}
            names.update({h.identity().member_id: h.root.name for h in homes})
    finally:
        stop(homes)
    report = _report(processes, names, out, kind, time.monotonic() - started)
    _print(report, console)
    return report


def _executor(config: Config, name: str, kind: str) -> None:
    assert config.executor is not None
    if name == "hpc":
        config.executor.type, config.executor.kind = "hpc", kind
        config.executor.functions = ["python3"]  # the commands it runs (an allow-list)
    else:
        config.executor.type = "edge"
        config.executor.functions = ["measure=continuum:measure"]


def _report(
    processes: dict[str, SyncProcess], names: dict[str, str], out: Path, kind: str, seconds: float
) -> dict[str, Any]:
    return {
        "ok": all(p.result is not None for p in processes.values()),
        "seconds": round(seconds, 1),
        "forecast_on": kind,
        "out": str(out),
        "members": names,
        "processes": {
            name: {
                "pid": p.pid,
                "state": p.state if p.result is None else "successful",
                "ran_on": names.get(p.executor, p.executor[-8:]),
                "output": p.output or [],
                "errors": p.errors or [],
            }
            for name, p in processes.items()
        },
    }


def _print(report: dict[str, Any], console: Console) -> None:
    table = Table("process", "state", "ran on", "output")
    for name, p in report["processes"].items():
        shown = p["output"][-1] if p["output"] else p["errors"][:1]
        if isinstance(shown, dict):
            shown = {k: shown[k] for k in sorted(shown)[:4]}
        state = "[green]successful[/]" if p["state"] == "successful" else f"[red]{p['state']}[/]"
        table.add_row(name, state, p["ran_on"], str(shown).strip()[:70])
    console.print(table)
    forecast = report["processes"].get("forecast", {})
    if forecast.get("state") == "successful":
        console.print(str(forecast["output"][-1]).strip())
    verdict = "[green]done[/]" if report["ok"] else "[red]failed[/]"
    console.print(f"{verdict} in {report['seconds']} s; homes and daemon logs in {report['out']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-slurm", action="store_true", help="run the forecast in a shell")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "continuum")
    parser.add_argument("--json", action="store_true", help="print the report as JSON too")
    args = parser.parse_args(argv)
    console = Console()
    report = run(args.out, not args.no_slurm, console)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
