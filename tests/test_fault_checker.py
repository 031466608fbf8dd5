"""The fault harness's checker (bench/faults/checker.py) on histories written by hand: each
violation it exists to find is found, and a clean history passes. No daemons."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults.checker import check
from bench.faults.history import Record, from_daemon_events, skews_from_faults, unskewed
from bench.faults.schedule import Schedule, generate


def r(type_: str, t: float, **fields: Any) -> Record:
    return {"type": type_, "t": t, **fields}


def _submitted(pids: list[str], parents: dict[str, list[str]] | None = None) -> list[Record]:
    return [
        r("submit", 1.0, client="c0", node="owner", kind="workflow" if parents else "single",
          pids=pids, parents=parents or {}),
        r("ack", 1.1, client="c0", node="owner", pids=pids, acknowledged=True),
    ]  # fmt: skip


def _ran(pid: str, t: float, node: str = "n1", value: str | None = None) -> list[Record]:
    """An executor runs ``pid`` at ``t``; its keepers decide it successful just after."""
    value = value or f"successful:{node}:1"
    return [
        r("promised", t - 0.2, node="n2", pid=pid, epoch=1, version=1),
        r("start", t, node=node, pid=pid, epoch=1),
        r("accepted", t + 0.1, node="n2", pid=pid, epoch=1, version=1, value=value),
        r("decided", t + 0.2, node="n2", pid=pid, epoch=1, value=value, outcome="successful"),
        r("decided", t + 0.2, node="n3", pid=pid, epoch=1, value=value, outcome="successful"),
    ]


def test_a_clean_history_passes() -> None:
    records = [
        *_submitted(["a", "b"], {"b": ["a"]}),
        *_ran("a", 2.0),
        *_ran("b", 3.0),
        r("result", 3.3, node="owner", pid="b", outcome="successful", executor="n1"),
    ]
    verdict = check(records)
    assert verdict.ok, verdict.violations
    assert verdict.figures["acknowledged"] == 2
    assert verdict.figures["ended"] == {"successful": 2}
    assert verdict.figures["runs_per_process"] == {"1": 2}


def test_an_acknowledged_process_that_never_ended_is_lost() -> None:
    records = [*_submitted(["a", "b"]), *_ran("a", 2.0)]
    # "b" was handed to other keepers (moved), which is no outcome
    records.append(
        r("decided", 2.5, node="n2", pid="b", epoch=1, value="moved::0", outcome="moved")
    )
    verdict = check(records)
    assert verdict.counts()["lost"] == 1 and verdict.violations["lost"] == [{"pid": "b"}]
    # its submitter still shows it waiting at the end: not ended (alive, undecided)
    waiting = [*records, r("final", 9.0, pid="b", state="waiting", executor="", node="owner")]
    assert check(waiting).violations["not_ended"] == [{"pid": "b", "state": "waiting"}]
    assert check(waiting).counts()["lost"] == 0
    # unknown to its submitter's node, but a keeper still promised it after the faults
    busy = [*records, r("promised", 9.0, node="n2", pid="b", epoch=7, version=1)]
    assert check(busy, end_of_faults=8.0).violations["not_ended"] == [{"pid": "b"}]
    assert check(busy, end_of_faults=9.5).violations["lost"] == [{"pid": "b"}]
    # seen ended by a node at the end, though no log showed the decision: not lost
    records.append(r("final", 9.0, pid="b", state="successful", executor="n1", node="owner"))
    assert check(records).ok


def test_a_child_of_a_parent_that_never_ended_is_not_lost() -> None:
    records = [*_submitted(["a", "b"], {"b": ["a"]})]
    verdict = check(records)
    assert verdict.violations["lost"] == [{"pid": "a"}]
    assert verdict.violations["not_ended"] == [{"pid": "b", "why": "a parent never ended"}]


def test_an_unacknowledged_process_that_never_ended_is_not_lost() -> None:
    records = [
        r("submit", 1.0, client="c0", node="n4", kind="single", pids=["a"], parents={}),
        r("ack", 11.0, client="c0", node="n4", pids=["a"], acknowledged=False),
    ]
    verdict = check(records)
    assert verdict.ok and verdict.figures["unacknowledged"] == 1


def test_two_decided_values_are_a_duplicate() -> None:
    records = [*_submitted(["a"]), *_ran("a", 2.0, node="n1"), *_ran("a", 5.0, node="n4")]
    verdict = check(records)
    assert verdict.counts()["duplicate"] == 1
    (found,) = verdict.violations["duplicate"]
    assert set(found["values"]) == {"successful:n1:1", "successful:n4:1"}
    assert verdict.figures["runs_per_process"] == {"2": 1}


def test_two_results_at_the_submitter_are_reported() -> None:
    records = [
        *_submitted(["a"]),
        *_ran("a", 2.0),
        r("result", 3.0, node="owner", pid="a", outcome="successful", executor="n1"),
        r("result", 4.0, node="owner", pid="a", outcome="failed", executor="n4"),
    ]
    assert check(records).counts()["two_results"] == 1


def test_a_child_that_starts_before_its_parent_ended_violates_the_order() -> None:
    records = [*_submitted(["a", "b"], {"b": ["a"]}), *_ran("b", 2.0), *_ran("a", 3.0)]
    verdict = check(records)
    (found,) = verdict.violations["order"]
    assert found["child"] == "b" and found["parent"] == "a"
    # a child run although its parent failed
    failed = [
        *_submitted(["p", "c"], {"c": ["p"]}),
        r("decided", 2.0, node="n2", pid="p", epoch=1, value="failed:n1:1", outcome="failed"),
        *_ran("c", 3.0),
    ]
    assert check(failed).violations["order"][0]["why"] == "parent failed"


def test_an_accept_below_a_promised_epoch_is_stale() -> None:
    records = [
        *_submitted(["a"]),
        r("promised", 2.0, node="n2", pid="a", epoch=1, version=1),
        r("promised", 3.0, node="n2", pid="a", epoch=2, version=1),
        r("accepted", 4.0, node="n2", pid="a", epoch=1, version=1, value="successful:n1:1"),
        r(
            "decided",
            4.1,
            node="n2",
            pid="a",
            epoch=1,
            value="successful:n1:1",
            outcome="successful",
        ),
    ]
    (found,) = check(records).violations["stale_epoch"]
    assert found == {"node": "n2", "pid": "a", "accepted_epoch": 1, "promised_epoch": 2, "t": 4.0}
    # another keeper set's record (a later membership version) has epochs of its own
    records[3]["version"] = 2
    assert check(records).ok


def test_a_daemon_exit_not_injected_is_a_crash_but_a_full_disk_is_not() -> None:
    records = [
        r("crash", 5.0, node="n3", code=1, log_tail=["store: disk full"], disk_full=True),
    ]
    verdict = check(records)
    assert verdict.ok and verdict.figures["disk_stops"] == 1
    records.append(r("crash", 6.0, node="n1", code=-11, log_tail=[], disk_full=False))
    assert check(records).counts()["crash"] == 1
    # noticed just after the disk was emptied, but its last words say why it stopped
    last = ["colonyp2p.errors.StoreFull: cannot write to .../state.db: the disk is full"]
    records.append(r("crash", 7.0, node="n3", code=1, log_tail=last, disk_full=False))
    verdict = check(records)
    assert verdict.counts()["crash"] == 1 and verdict.figures["disk_stops"] == 2


def test_daemon_log_times_are_read_on_the_real_clock() -> None:
    skews = [(100.0, 200.0, 20.0)]  # the node's clock ran 20 s ahead between 100 and 200
    assert unskewed(150.0 + 20.0, skews) == 150.0
    assert unskewed(250.0, skews) == 250.0
    events = [
        {"kind": "running", "pid": "a", "t": 170.0, "epoch": 3},
        {
            "kind": "chose",
            "pid": "a",
            "t": 171.0,
            "epoch": 3,
            "value": "v",
            "outcome": "successful",
        },
        {"kind": "peer_lost", "pid": "", "t": 172.0},
    ]
    got = from_daemon_events("n1", events, skews)
    assert [(g["type"], g["t"]) for g in got] == [("start", 150.0), ("decided", 151.0)]
    assert got[1]["by"] == "proposer"


def test_skews_are_read_back_from_the_faults_of_a_history() -> None:
    def fault(t: float, kind: str, **args: Any) -> Record:
        return r("fault", t, event={"kind": kind, "nodes": ["n1"], "args": args}, done=True)

    records = [
        fault(100.0, "skew", seconds=-5),
        fault(160.0, "skew_off"),
        fault(200.0, "skew", seconds=20),
    ]
    assert skews_from_faults(records) == {"n1": [(100.0, 160.0, -5.0), (200.0, float("inf"), 20.0)]}


def test_a_schedule_is_the_same_for_its_seed_and_replays_from_its_file(tmp_path: Path) -> None:
    names = ["owner", "n1", "n2", "n3", "n4"]
    one, two = generate(7, names, 300, 3.0), generate(7, names, 300, 3.0)
    assert one == two and one.events and one != generate(8, names, 300, 3.0)
    assert all(e.at <= 300 for e in one.events)
    for e in one.events:  # a partition always leaves a strict majority together
        if e.kind == "partition":
            assert max(len(g) for g in e.args["groups"]) > len(names) / 2
    one.write(tmp_path / "s.json")
    assert Schedule.read(tmp_path / "s.json") == one
