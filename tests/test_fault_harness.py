"""The fault harness (bench/faults/, bench/bench_faults.py) in a short run: three real
daemons in network namespaces, a workload of specs and workflows from two clients, one
partition (one of three cut off for longer than two leases) healed, one daemon killed
with SIGKILL and started again. The checker must find every acknowledged process ended, once,
in order, with no stale-epoch accept and no daemon crash. The long runs and their figures
are in bench/results/FAULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults.run import Options, run
from bench.faults.schedule import Event, Schedule
from bench.faults.topology import namespaces_unavailable

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("faults")]

# three: five take twice as long to set up (about 24 s on a busy machine), and one of
# three cut off is a minority all the same
NODES = ["owner", "n1", "n2"]
LEASE = 3.0  # tests/cluster.py FAST


def test_a_partition_and_a_killed_daemon_lose_nothing(tmp_path: Path) -> None:
    why = namespaces_unavailable()
    if why:
        pytest.skip(why)
    schedule = Schedule(
        seed=0,
        nodes=NODES,
        seconds=11.0,
        lease=LEASE,
        disk_node="n2",
        events=[
            Event(1.0, "partition", (), {"groups": [["n2"], ["n1", "owner"]]}),
            Event(7.0, "heal"),
            Event(7.5, "kill", ("n1",)),
            Event(9.0, "restart", ("n1",)),
        ],
    )
    outcome = run(
        Options(schedule=schedule, rate=4.0, clients=2, workflow_share=0.3, drain=60.0, quiet=True),
        tmp_path,
        tmp_path / "history.jsonl",
    )
    verdict = outcome.verdict
    done = [r["event"]["kind"] for r in outcome.records if r["type"] == "fault" and r["done"]]
    assert done == ["partition", "heal", "kill", "restart"], outcome.records
    assert outcome.mode == "netns"
    assert verdict.figures["acknowledged"] >= 20, verdict.figures
    assert verdict.figures["workflows"] >= 1, verdict.figures
    assert verdict.ok, (verdict.counts(), verdict.violations)
    assert verdict.figures["ended"].get("successful", 0) >= verdict.figures["acknowledged"]
    print(verdict.figures, outcome.seconds)
