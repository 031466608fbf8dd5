"""What must hold after a run, judged from the history alone (bench/faults/history.py), so
that it can be tested on histories written by hand.

Violations (any of them makes ``Verdict.ok`` false, and bench_faults.py exit 1):
- ``lost``: a process whose submission was acknowledged and that never ended: no node
  logged a decision for it (other than ``moved``, a hand-over) and no node showed it
  ended at the end of the run, and none showed it alive either;
- ``not_ended``: the same, but its submitter's node still showed it waiting or running
  at the end of the drain, or its keepers or an executor still worked on it after the
  faults, or it is a workflow child whose parent never ended: its record lives,
  undecided (a liveness failure, not a loss);
- ``duplicate``: a process decided (or chosen by a proposer) with two different values
  anywhere in the colony: two accepted results;
- ``two_results``: a submitter's node reported two different results for one process;
- ``stale_epoch``: a keeper accepted a value at an epoch lower than one it had promised
  before for the same record (same keeper set version): its log shows the promise first;
- ``order``: a workflow's child started before every parent had a successful decision,
  or started although a parent failed;
- ``crash``: a daemon exited without the harness having stopped it (a full disk that
  stops its daemon is the daemon's documented behaviour and counted apart, ``disk_stops``).

Figures: processes submitted, acknowledged, unacknowledged, ended (by state), runs per
process (how many times some executor started it), the decision times for the plot.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from .history import Record

ENDED = ("successful", "failed")


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    violations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def counts(self) -> dict[str, int]:
        return {kind: len(found) for kind, found in self.violations.items()}

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "counts": self.counts(),
            "figures": self.figures,
            "violations": self.violations,
        }


def check(records: list[Record], *, end_of_faults: float | None = None) -> Verdict:
    submits = [r for r in records if r["type"] == "submit"]
    acks = [r for r in records if r["type"] == "ack"]
    acknowledged: set[str] = {p for r in acks if r["acknowledged"] for p in r["pids"]}
    submitted: set[str] = {p for r in submits for p in r["pids"]}
    parents: dict[str, list[str]] = {}
    for r in submits:
        for child, ps in r.get("parents", {}).items():
            parents[child] = list(ps)

    # decisions: the real ones ("moved" is a record changing keepers, not an outcome)
    decided: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    first_decision: dict[str, tuple[float, str]] = {}
    for r in records:
        if r["type"] != "decided" or r.get("outcome") == "moved":
            continue
        decided[r["pid"]][str(r["value"])].add(r["node"])
        if r["pid"] not in first_decision or r["t"] < first_decision[r["pid"]][0]:
            first_decision[r["pid"]] = (r["t"], str(r.get("outcome")))
    finals: dict[str, str] = {}
    views: dict[str, str] = {}  # the last state a node showed at the end, ended or not
    for r in records:
        if r["type"] == "final":
            views[r["pid"]] = str(r.get("state"))
            if r.get("state") in ENDED:
                finals[r["pid"]] = r["state"]

    violations: dict[str, list[dict[str, Any]]] = {
        k: []
        for k in ("lost", "not_ended", "duplicate", "two_results", "stale_epoch", "order", "crash")
    }
    # keepers and executors still at work on a process once the faults were over
    busy = {
        r["pid"]
        for r in records
        if r["type"] in ("promised", "accepted", "start")
        and (end_of_faults is None or r["t"] > end_of_faults)
    }
    ended = set(decided) | set(finals)
    for pid in sorted(acknowledged):
        if pid not in ended and any(p not in ended for p in parents.get(pid, [])):
            # a workflow child whose parent never ended waits for it, as it must
            violations["not_ended"].append({"pid": pid, "why": "a parent never ended"})
        elif pid not in ended:
            # a record still shown waiting or running, or still worked on: not ended (a
            # liveness failure); unknown to the node asked and left alone: lost
            state = views.get(pid, "")
            alive = (state and state != "unknown") or pid in busy
            found = {"pid": pid, **({"state": state} if state else {})}
            violations["not_ended" if alive else "lost"].append(found)
    for pid, values in sorted(decided.items()):
        if len(values) > 1:
            violations["duplicate"].append(
                {"pid": pid, "values": {v: sorted(n) for v, n in values.items()}}
            )

    results: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in records:
        if r["type"] == "result":
            results[r["pid"]].add((str(r.get("outcome")), str(r.get("executor"))))
    for pid, seen in sorted(results.items()):
        if len(seen) > 1:
            violations["two_results"].append({"pid": pid, "results": sorted(seen)})

    violations["stale_epoch"] = _stale_accepts(records)
    violations["order"] = _order(records, parents)
    violations["crash"] = [
        {k: r.get(k) for k in ("node", "t", "code", "log_tail")}
        for r in records
        if r["type"] == "crash" and not _disk_stop(r)
    ]

    runs: Counter[str] = Counter()
    for r in records:
        if r["type"] == "start" and r["pid"] in submitted:
            runs[r["pid"]] += 1
    states: Counter[str] = Counter()
    for pid in acknowledged | set(decided) & submitted:
        state = first_decision.get(pid, (0.0, finals.get(pid, "not ended")))[1]
        states[state] += 1
    histogram = Counter(runs[pid] for pid in submitted & (acknowledged | set(decided)))
    figures: dict[str, Any] = {
        "submitted": len(submitted),
        "acknowledged": len(acknowledged),
        "unacknowledged": len(submitted - acknowledged),
        "submit_errors": sum(r["type"] == "submit_error" for r in records),
        "workflows": sum(r["kind"] == "workflow" for r in submits),
        "ended": {k: v for k, v in sorted(states.items())},
        "runs_per_process": {str(k): v for k, v in sorted(histogram.items())},
        "max_runs": max(runs.values(), default=0),
        "faults": sum(r["type"] == "fault" and r.get("done", False) for r in records),
        "disk_stops": sum(r["type"] == "crash" and _disk_stop(r) for r in records),
        # what the stale-epoch check had to look at, and how often faults made a ballot
        # of a later epoch decide (a lease lost, a run taken over, a recovery)
        "fences": dict(sorted(Counter(r["what"] for r in records if r["type"] == "fence").items())),
        "promises_checked": sum(r["type"] == "promised" for r in records),
        "accepts_checked": sum(r["type"] == "accepted" for r in records),
        "decided_above_epoch_1": len(
            {
                r["pid"]
                for r in records
                if r["type"] == "decided"
                and r.get("outcome") != "moved"
                and (r.get("epoch") or 0) > 1
            }
        ),
    }
    if end_of_faults is not None:
        figures["ended_after_faults"] = sum(
            1 for pid, (t, _) in first_decision.items() if pid in submitted and t > end_of_faults
        )
    return Verdict(figures, violations)


def _disk_stop(crash: Record) -> bool:
    """A daemon that stopped because its disk was full: the documented behaviour (it
    stops before acknowledging what it cannot keep), seen while the harness's disk was
    full or in the daemon's last words (``StoreFull``: its exit may be noticed after the
    disk was emptied again)."""
    return bool(crash.get("disk_full")) or any(
        "StoreFull" in line for line in crash.get("log_tail") or []
    )


def _stale_accepts(records: list[Record]) -> list[dict[str, Any]]:
    """A keeper's accept below an epoch it promised earlier (its log order is the order
    of its records, which the harness keeps: records of one node are appended in the
    order its log holds them)."""
    promised: dict[tuple[str, str, Any], int] = {}
    found = []
    for r in records:
        if r["type"] not in ("promised", "accepted") or r.get("epoch") is None:
            continue
        key = (r["node"], r["pid"], r.get("version"))
        epoch = int(r["epoch"])
        if r["type"] == "promised":
            promised[key] = max(epoch, promised.get(key, epoch))
        elif epoch < promised.get(key, epoch):
            found.append(
                {
                    "node": r["node"],
                    "pid": r["pid"],
                    "accepted_epoch": epoch,
                    "promised_epoch": promised[key],
                    "t": r["t"],
                }
            )
    return found


def _order(records: list[Record], parents: dict[str, list[str]]) -> list[dict[str, Any]]:
    successful_at: dict[str, float] = {}
    failed: set[str] = set()
    for r in records:
        if r["type"] != "decided":
            continue
        if r.get("outcome") == "successful":
            successful_at[r["pid"]] = min(r["t"], successful_at.get(r["pid"], r["t"]))
        elif r.get("outcome") == "failed":
            failed.add(r["pid"])
    found = []
    for r in records:
        if r["type"] != "start" or r["pid"] not in parents:
            continue
        for parent in parents[r["pid"]]:
            if parent in failed and parent not in successful_at:
                found.append(
                    {"child": r["pid"], "parent": parent, "why": "parent failed", "t": r["t"]}
                )
            elif parent not in successful_at or r["t"] < successful_at[parent]:
                found.append(
                    {
                        "child": r["pid"],
                        "parent": parent,
                        "why": "started before the parent's successful decision",
                        "t": r["t"],
                        "parent_decided": successful_at.get(parent),
                    }
                )
    return found
