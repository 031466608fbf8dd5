"""The simulator: reproducible runs, faults that the protocol survives, and broken protocols
that the invariant checker catches with a short history."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from colonyp2p.core import effects as fx
from colonyp2p.core.keeper import KeeperRole
from colonyp2p.core.records import KeeperRecord
from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import Simulation, simulate

SMALL = """
name = "small"
max_simulated_seconds = 900
sample_every = 1.0

[colony]
users = 2

[[colony.executors]]
type = "edge"
count = 14
functions = ["resize"]

[[colony.executors]]
type = "cloud"
count = 6
capacity = 2

[workload]
specs = 80
workflow_specs = 24
workflow_size = [3, 5]
submit_window = [0, 20]
run_seconds = [0.5, 4.0]
error_rate = 0.05
hang_rate = 0.02
maxexectime = 10
maxretries = 2
priorities = [0, 5]

[[workload.functions]]
funcname = "resize"
executortype = "edge"
weight = 2

[[workload.functions]]
funcname = "aggregate"
executortype = "cloud"

[network]
latency = 0.03
jitter = 0.03
loss = 0.05
duplicate = 0.02
gossip_loss = 0.05

[faults]
crash_fraction = 0.15
crash_window = [2, 25]
downtime = [2, 10]
clock_skew = 0.5

[[faults.partitions]]
at = 8
heal = 20
fraction = 0.3

[faults.churn]
joins = 2
revokes = 2
window = [5, 20]
"""


@pytest.fixture(scope="module")
def small() -> scenarios.Scenario:
    return scenarios.parse(SMALL)


def test_a_faulty_run_ends_with_nothing_lost_and_one_result_each(
    small: scenarios.Scenario,
) -> None:
    for seed in (1, 2, 3):
        result = simulate(small, seed)
        s = result.summary()
        assert s["violation"] is None, result.history
        assert s["lost"] == 0 and s["duplicate_results"] == 0 and s["stale_epoch_accepts"] == 0
        assert s["terminal"]
        assert s["processes_successful"] + s["processes_failed"] == s["specs"] == 80
        c = s["counters"]
        # the faults really happened
        assert c["crashes"] > 0 and c["restarts"] > 0 and c["partitions"] == 1
        assert c["joins"] == 2 and c["revocations"] == 2
        assert c["messages_lost"] > 0 and c["messages_duplicated"] > 0
        assert c["messages_partitioned"] > 0


def test_crashed_holders_are_noticed_without_waiting_for_their_leases() -> None:
    # Leases outlast the run's time limit: crashed executors' processes can only end in
    # time because a crash closes connections and the keepers end those leases at once.
    text = SMALL.split("[[faults.partitions]]")[0].replace(
        "max_simulated_seconds = 900", "max_simulated_seconds = 200"
    )
    long_leases = scenarios.parse(text + "\n[params]\nlease_seconds = 400\n")
    for seed in (1, 2):
        result = simulate(long_leases, seed)
        s = result.summary()
        assert s["violation"] is None, result.history
        assert s["terminal"] and s["lost"] == 0 and s["duplicate_results"] == 0
        assert s["counters"]["crashes"] > 0 and s["counters"]["peers_lost"] > 0


def test_hanging_runs_and_errors_fail_their_processes(small: scenarios.Scenario) -> None:
    failed_reasons: set[str] = set()
    # Two seeds: a hang whose last holder crashed ends as "maxretries exceeded" (its
    # lease ended at the crash, not at maxexectime), and crashes fall where they fall.
    for seed in (4, 5):
        sim = Simulation(small, seed)
        result = sim.run()
        assert result.terminal and result.violation is None
        for disk in sim.disks:
            for rec in disk.get("records", {}).values():
                assert isinstance(rec, KeeperRecord)
                if rec.decided is not None and rec.decided.kind == "failed":
                    failed_reasons.update(e.split(":")[0] for e in rec.decided.errors)
        hung = [s.pid for sub in sim.colony.submissions for s in sub.specs if s.spec.kwargs["hang"]]
        assert hung, "the scenario should draw some hanging runs"
        for pid in hung:
            assert sim.checker.terminal[pid].kind == "failed"
    assert "maxexectime exceeded" in failed_reasons  # the hanging runs
    assert "simulated error" in failed_reasons


def test_same_seed_same_trace_other_seed_other_trace(small: scenarios.Scenario) -> None:
    a = simulate(small, 11)
    b = simulate(small, 11)
    c = simulate(small, 12)
    assert a.trace_digest == b.trace_digest and a.events == b.events
    assert a.trace_digest != c.trace_digest


def test_the_trace_does_not_depend_on_hash_randomisation(tmp_path: Any) -> None:
    """Python randomises str hashes per process: a run must not depend on set order."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    code = (
        "import sys; from colonyp2p.simulations import scenario, engine; "
        "r = engine.simulate(scenario.load(sys.argv[1]), 5); print(r.trace_digest)"
    )
    digests = set()
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def _unfenced_on_accept(original: Any) -> Any:
    """A broken keeper: accepts an outcome from whoever sends it, at any epoch."""

    def on_accept(self: KeeperRole, sender: str, msg: Any, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is not None and rec.decided is None:
            self.records[msg.pid] = dataclasses.replace(rec, promised=msg.epoch, holder=sender)
        original(self, sender, msg, now)

    return on_accept


def test_a_keeper_without_fencing_is_caught_with_a_short_history(
    small: scenarios.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeeperRole, "on_accept", _unfenced_on_accept(KeeperRole.on_accept))
    caught = None
    for seed in range(1, 30):
        result = simulate(small, seed)
        if result.violation is not None:
            caught = result
            break
    assert caught is not None, "no seed exposed a keeper that does not fence epochs"
    v = caught.violation
    assert v is not None
    assert v.invariant in {"duplicate_result", "stale_epoch_accept", "phantom_result"}
    summary = caught.summary()
    assert summary["seed"] == caught.seed
    assert summary["violation"]["pid"] == v.pid
    history = caught.history
    assert history, "the replay must record the violating process's history"
    # short: what members did about this one process, not the whole run
    assert len(history) <= 50
    assert any("accepted" in line for line in history)


def test_a_keeper_that_does_not_persist_is_caught(
    small: scenarios.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acknowledging what is not on disk loses it when the keepers crash."""
    crashy = dataclasses.replace(
        small,
        faults=dataclasses.replace(small.faults, crash_fraction=0.6, partitions=()),
    )
    # the control: the same crashes with keepers that persist lose nothing
    control = simulate(crashy, 1)
    assert control.violation is None and control.lost == [] and control.terminal

    def save_in_memory_only(self: KeeperRole, rec: KeeperRecord, now: float) -> None:
        self.records[rec.pid] = rec

    monkeypatch.setattr(KeeperRole, "_save", save_in_memory_only)
    result = simulate(crashy, 1)
    v = result.violation
    assert v is not None, "the checker missed acknowledged processes lost in crashes"
    assert (v.invariant, v.detail) == ("vanished", "acknowledged but no member stores it")
    assert v.pid in result.lost and not result.terminal


def test_a_violation_replays_to_the_same_event(
    small: scenarios.Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(KeeperRole, "on_accept", _unfenced_on_accept(KeeperRole.on_accept))
    for seed in range(1, 30):
        first = Simulation(small, seed).run()
        if first.violation is not None:
            again = Simulation(small, seed).run()
            assert again.violation is not None
            assert str(again.violation) == str(first.violation)
            assert again.events == first.events
            return
    pytest.fail("no seed exposed the broken keeper")


def test_non_members_change_nothing(small: scenarios.Scenario) -> None:
    """A stranger's messages reach the cores and are refused, counted, and change nothing."""
    from colonyp2p.core.messages import Prepare, Query, StoreSpec
    from colonyp2p.identity import Identity

    sim = Simulation(small, 1)
    sim.run()
    stranger = Identity.from_seed(b"s" * 32).member_id
    spec = sim.colony.submissions[0].specs[0]
    keeper_idx = next(i for i, d in enumerate(sim.disks) if spec.pid in d.get("records", {}))
    node = sim.nodes[keeper_idx]
    assert node is not None
    before = dict(node.keeper.records)
    refused_before = node.counters["not_member"]
    for msg in (
        Prepare(spec.pid, 999, "claim"),
        StoreSpec(spec, (node.member_id,), 1),
        Query(spec.pid),
    ):
        effects = node.on_message(stranger, msg, sim.now + 1)
        assert [type(e) for e in effects] == [fx.Reject]
        assert isinstance(effects[0], fx.Reject) and effects[0].code == "not_member"
    assert node.keeper.records == before
    assert node.counters["not_member"] == refused_before + 3  # each one counted, once


def test_json_summary_has_the_documented_keys(small: scenarios.Scenario) -> None:
    result = simulate(small, 1)
    summary = result.summary()
    assert json.loads(json.dumps(summary)) == summary  # plain JSON
    # what SMALL asks for: an admin, 2 users and 14 + 6 executors; 80 specs, 24 in workflows
    assert {k: summary[k] for k in ("scenario", "seed", "nodes", "executors")} == {
        "scenario": "small",
        "seed": 1,
        "nodes": 1 + 2 + 20,
        "executors": 20,
    }
    assert (summary["specs"], summary["workflow_specs"]) == (80, 24)
    # and what the run did: every process ended once, nothing lost, within the time limit
    assert summary["processes_successful"] + summary["processes_failed"] == 80
    assert summary["processes_successful"] == result.successful > 0
    assert summary["lost"] == summary["duplicate_results"] == summary["stale_epoch_accepts"] == 0
    assert summary["terminal"] is True and summary["violation"] is None
    assert 20 <= summary["simulated_seconds"] <= 900  # after the last submission, in time
    assert summary["simulated_seconds"] == round(result.simulated_seconds, 3)
    assert summary["events"] == result.events > 0
    assert summary["trace_digest"] == result.trace_digest
    assert re.fullmatch("[0-9a-f]{64}", summary["trace_digest"])
    assert summary["counters"] == dict(sorted(result.counters.items()))
