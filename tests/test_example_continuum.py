"""The README's example (examples/continuum.py) runs end to end: a fan-out over edge
executors (two daemons and the embedded gateway), the fan-in on the gateway, and the
forecast on the HPC node (its shell executor here: Slurm is tested on its own in
test_executors_daemon.py)."""

from __future__ import annotations

import importlib
import io
import sys
from pathlib import Path

import pytest
from rich.console import Console

from colonyp2p.core.ranking import rendezvous_score
from colonyp2p.identity import dht_key

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_the_continuum_example_runs_end_to_end(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        continuum = importlib.import_module("continuum")  # as the example's daemons do
    finally:
        sys.path.remove(str(EXAMPLES))
    shown = io.StringIO()
    report = continuum.run(tmp_path / "out", use_slurm=False, console=Console(file=shown))
    assert report["ok"], shown.getvalue()
    processes = report["processes"]
    measured = [processes[f"measure-{site}"] for site in continuum.SITES]
    # fanned out: each measure goes first to the edge executor that ranks best for it,
    # so they run on two or more nodes unless one node ranks best for all six (1 in 243)
    edge = [m for m, name in report["members"].items() if name in ("gateway", "edge-1", "edge-2")]
    best = {min(edge, key=lambda m: rendezvous_score(dht_key(m), p["pid"])) for p in measured}
    assert len({p["ran_on"] for p in measured}) >= min(2, len(best)), processes
    assert processes["gather"]["ran_on"] == "gateway"  # the only node serving gather
    summary = continuum.gather([continuum.measure(site) for site in continuum.SITES])
    assert processes["gather"]["output"] == [summary]
    forecast = processes["forecast"]
    assert forecast["ran_on"] == "hpc"
    mean = summary["mean"] + 7 * summary["trend_per_day"]
    assert f"forecast for 6 sites in 7 days: mean {mean:.2f} C" in forecast["output"][-1]
    assert "ran in a shell" in forecast["output"][-1]
    assert "forecast for 6 sites" in shown.getvalue()
