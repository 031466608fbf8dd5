"""Benchmarks of real colonynode daemons over loopback; writes bench/results/DAEMON.md and .json.

    .venv/bin/python bench/bench_daemon.py                    # everything (a few minutes)
    .venv/bin/python bench/bench_daemon.py --part latency     # or throughput, join

One process per daemon (``colonynode start --foreground`` in its own home), started
as tests/cluster.py starts them (its helpers are imported from there; keys, colonies and
tickets are made in-process, joins go through ``colonynode join``). Clients use the
daemons' local API with ApiClient, as a user's program would.

latency: five daemons (all executors of type local); one at a time, the time from just
before ``ApiClient.submit`` of the builtin ``noop`` to the moment the submitting client
sees the process decided successful on its node's event stream (``/v1/events``).
throughput: an owner without executor (``"executor": null``) and three executors;
2,000 noops submitted as fast as the API takes them from concurrent client threads,
completed processes per second from the first submit to the last result.
join: a three-daemon colony; ``colonynode join`` and ``colonynode start`` of a new device
with its own executor type, then one process for that type, until its result.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import FAST, Cluster, Node, cluster, events, wait_for

from colonyp2p.core.executor import EXACT_RANKS
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import rendezvous_score
from colonyp2p.identity import dht_key
from colonyp2p.node import daemon as _daemon_module
from colonyp2p.node.api_client import ApiClient

RESULTS = Path(__file__).resolve().parent / "results"
# the daemon's gossip pacing, for the report (None if the daemon has no such constant)
PUBLISH_RATE: float | None = getattr(_daemon_module, "PUBLISH_RATE", None)
NOOP: dict[str, Any] = {"funcname": "noop"}
# Protocol params (config.json "params") where a default timing, not the daemons, would
# set the figure: a 0.5 s claim slot (an executor ranked in slot s waits s * claim_slot
# before claiming) and the 1 s request_timeout that resends a ballot message a new member
# could not deliver yet. "fast" adds tests/cluster.py's FAST leases and re-announcements.
BENCH_PARAMS: dict[str, float] = {"claim_slot": 0.05, "request_timeout": 0.25}
PARAM_SETS: dict[str, dict[str, float]] = {
    "bench": BENCH_PARAMS,
    "defaults": {},
    "fast": {**FAST, **BENCH_PARAMS},
}
# what each part runs with unless --params says otherwise: throughput waits on no timer
PART_PARAMS = {
    "latency": ["bench", "defaults"],
    "throughput": ["defaults"],
    "join": ["bench", "defaults"],
}
# The submitter's node tells a result by an event: "result" when the executor's Decide
# reaches it (daemons that emit it), "decided" when its keeper decided (the submitter
# keeps every record while the colony has at most Params.keepers keeping members).
RESULT_KINDS = ("result", "decided")
EVENT_WAIT = 20.0  # after this long without such an event, fall back to polling
# A throughput run stops submitting after SUBMIT_CAP and waits at most RESULT_WAIT after
# its last submit for the results (a colony that falls behind must not stall the run).
SUBMIT_CAP = 180.0
RESULT_WAIT = 150.0
STALL = 60.0  # ... or until no result came for this long
RESULT_TIMEOUT = 60.0
BACKLOG = 100  # processes without a result when the submits end: profile that phase
TARGETS = {"latency_p50_ms": 50.0, "throughput_per_s": 200.0, "join_total_s": 5.0}


# --- the colony --------------------------------------------------------------------------


def configure(
    node: Node, params: dict[str, float], executortype: str | None, capacity: int | None = None
) -> None:
    """``executortype`` None: a member without executor (config ``"executor": null``)."""
    if executortype is not None:
        node.configure(executortype, params)
        if capacity is not None:
            config = node.home.config()
            assert config.executor is not None
            config.executor.capacity = capacity
            node.home.save_config(config)
        return
    config = node.home.config()
    config.executor = None
    config.params = dict(params)
    node.home.save_config(config)


def found(
    c: Cluster,
    params: dict[str, float],
    executortype: str | None = "local",
    capacity: int | None = None,
) -> Node:
    owner = c.node("owner")
    owner.cli("init")
    owner.cli("colony", "create", "benchcolony")
    configure(owner, params, executortype, capacity)
    owner.cli("start")
    return owner


def add_member(
    c: Cluster,
    name: str,
    via: Node,
    params: dict[str, float],
    executortype: str = "local",
    capacity: int | None = None,
) -> dict[str, float]:
    """A device joins with a ticket from ``via`` and starts; returns how long each step took."""
    t0 = time.perf_counter()
    ticket = via.cli("invite", "--role", "executor").stdout.strip().replace("\n", "")
    colony_id = via.status()["colony_id"]
    node = c.node(name)
    node.cli("init")
    configure(node, params, executortype, capacity)
    t1 = time.perf_counter()
    node.cli("join", colony_id, "--ticket", ticket, "--name", name)
    t2 = time.perf_counter()
    node.cli("start")
    t3 = time.perf_counter()
    return {"invite_s": t1 - t0, "join_s": t2 - t1, "start_s": t3 - t2}


def settle(nodes: Sequence[Node], executors: Sequence[Node]) -> None:
    """Every node on the newest membership, every executor knows every executor's ad."""
    version = int(nodes[0].status()["membership_version"])
    for node in nodes:
        wait_for(partial(node.has_version, version), 30, f"{node.name} on membership v{version}")
    ids = {e.member_id for e in executors}

    def knows_ads(node: Node) -> bool:
        known = {m["member_id"] for m in node.members()["members"] if m["executor"] is not None}
        return ids <= known

    for node in executors:
        wait_for(partial(knows_ads, node), 90, f"{node.name} to know every executor's ad")


@contextmanager
def colony(root: Path) -> Iterator[Cluster]:
    """tests/cluster.py's cluster: every daemon it started is SIGKILLed on the way out."""
    with cluster(root) as c:
        yield c


# --- results as the client sees them ------------------------------------------------------


class Watcher:
    """Follows one node's event stream in a thread and notes when this client learned of
    each decided process (``perf_counter``), and its outcome."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._api = node.api()
        self._cond = threading.Condition()
        self.decided: dict[str, tuple[float, str]] = {}
        self.kinds: dict[str, str] = {}  # which event told it
        self.seen = 0
        self.error = ""
        self._closing = False
        self._thread = threading.Thread(
            target=self._follow, name=f"events-{node.name}", daemon=True
        )
        self._thread.start()
        # the stream replays the node's earlier events first ("started" at least)
        with self._cond:
            if not self._cond.wait_for(lambda: self.seen > 0 or bool(self.error), 30):
                raise RuntimeError(f"no event stream from {node.name}")
        if self.error:
            raise RuntimeError(f"event stream from {node.name}: {self.error}")

    def _follow(self) -> None:
        try:
            for event in self._api.events(0):
                now = time.perf_counter()
                with self._cond:
                    self.seen += 1
                    kind = event.get("kind")
                    if kind in RESULT_KINDS and event.get("outcome") != "moved":
                        pid = str(event["pid"])
                        if pid not in self.decided:
                            self.decided[pid] = (now, str(event["outcome"]))
                            self.kinds[pid] = str(kind)
                    self._cond.notify_all()
        except Exception as exc:
            if not self._closing:
                self.error = repr(exc)
        with self._cond:
            self._cond.notify_all()

    def wait(self, pid: str, timeout: float) -> tuple[float, str] | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self.decided or bool(self.error), timeout)
            return self.decided.get(pid)

    def close(self) -> None:
        self._closing = True
        self._api.close()


def poll_result(api: ApiClient, pid: str, timeout: float) -> tuple[float, str]:
    """The fallback: ``process(pid)`` every 10 ms until it ended."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        state = str(api.process(pid)["state"])
        if state in ("successful", "failed"):
            return time.perf_counter(), state
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not end within {timeout:g} s")


def result_of(watcher: Watcher, api: ApiClient, pid: str) -> tuple[float, str, str]:
    """(when the client learned the outcome, the outcome, how: events or poll)."""
    seen = watcher.wait(pid, EVENT_WAIT)
    if seen is not None:
        return seen[0], seen[1], f"events:{watcher.kinds[pid]}"
    at, state = poll_result(api, pid, RESULT_TIMEOUT)
    return at, state, "poll"


# --- statistics -----------------------------------------------------------------------------


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    xs = sorted(values)
    if not xs:
        return math.nan
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def summary_ms(values: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    if not ms:
        return {"n": 0}
    return {
        "n": len(ms),
        "p50": round(pct(ms, 50), 2),
        "p95": round(pct(ms, 95), 2),
        "p99": round(pct(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


Logs = dict[str, dict[str, list[dict[str, Any]]]]


def log_events(nodes: Sequence[Node]) -> Logs:
    """node name -> pid -> its events, from each daemon's log (times are the daemon's wall
    clock, the same as the client's on one machine)."""
    out: Logs = {}
    for node in nodes:
        by_pid: dict[str, list[dict[str, Any]]] = {}
        for e in events(node):
            if e.get("pid"):
                by_pid.setdefault(str(e["pid"]), []).append(e)
        out[node.name] = by_pid
    return out


def first_t(evs: list[dict[str, Any]], kind: str) -> float | None:
    return next((float(e["t"]) for e in evs if e["kind"] == kind), None)


def stages(
    samples: Sequence[dict[str, Any]], submitter: Node, nodes: Sequence[Node], logs: Logs
) -> dict[str, dict[str, float]]:
    """Where the time of each sample went, from the daemons' event logs."""
    names = [
        ("submit -> stored by the submitter's keeper", "t0", "stored"),
        ("stored -> acknowledged (majority of keepers)", "stored", "acknowledged"),
        ("acknowledged -> submit() returned", "acknowledged", "t_ack"),
        ("acknowledged -> running on the executor", "acknowledged", "running"),
        ("  acknowledged -> executor's own keeper promised", "acknowledged", "own_promised"),
        ("  own keeper promised -> running (majority promised)", "own_promised", "running"),
        ("running -> chose (ran, accept round)", "running", "chose"),
        ("  running -> executor's own keeper accepted", "running", "own_accepted"),
        ("  own keeper accepted -> chose (majority accepted)", "own_accepted", "chose"),
        ("chose -> the submitter's node told it (event)", "chose", "told"),
        ("  chose -> Decide received at the submitter (result event)", "chose", "result"),
        ("  chose -> decided by the submitter's keeper (decided event)", "chose", "decided"),
        ("told -> the client saw it", "told", "t_result"),
    ]
    spans: dict[str, list[float]] = {label: [] for label, _, _ in names}
    for s in samples:
        mine = logs[submitter.name].get(s["pid"], [])
        marks: dict[str, float | None] = {
            "t0": s["wall0"],
            "t_ack": s["wall0"] + s["submit_s"],
            "t_result": s["wall0"] + s["result_s"],
            "stored": first_t(mine, "stored"),
            "acknowledged": first_t(mine, "acknowledged"),
            "decided": first_t(mine, "decided"),
            "result": first_t(mine, "result"),
            "running": None,
            "chose": None,
            "own_promised": None,
            "own_accepted": None,
        }
        for node in nodes:
            theirs = logs[node.name].get(s["pid"], [])
            running = first_t(theirs, "running")
            if running is not None:
                me = node.member_id
                marks["running"] = running
                marks["chose"] = first_t(theirs, "chose")
                marks["own_promised"] = first_t(
                    [e for e in theirs if e.get("holder") == me], "promised"
                )
                marks["own_accepted"] = first_t(theirs, "accepted")
                s["executor_node"] = node.name
        told = [t for t in (marks["result"], marks["decided"]) if t is not None]
        marks["told"] = min(told) if told else None
        for label, a, b in names:
            ta, tb = marks[a], marks[b]
            if ta is not None and tb is not None:
                spans[label].append(tb - ta)
    return {label: summary_ms(v) for label, v in spans.items() if v}


def contention(
    samples: Sequence[dict[str, Any]], nodes: Sequence[Node], logs: Logs | None = None
) -> dict[str, Any]:
    """How many executors claimed each process at once (distinct lease holders that keepers
    promised) and how many ballot epochs it took, from the daemons' event logs."""
    logs = logs if logs is not None else log_events(nodes)
    groups: dict[str, list[float]] = {}
    for s in samples:
        promised = [
            e for n in nodes for e in logs[n.name].get(s["pid"], []) if e["kind"] == "promised"
        ]
        s["claimants"] = len({e["holder"] for e in promised})
        s["epochs"] = max((int(e["epoch"]) for e in promised), default=0)
        key = "one claimant" if s["claimants"] <= 1 else f"{min(s['claimants'], 3)}+ claimants"
        if s["claimants"] == 2:
            key = "2 claimants"
        groups.setdefault(key, []).append(s["result_s"])
    return {
        "processes": len(samples),
        "contended": sum(1 for s in samples if s["claimants"] > 1),
        "needed_epoch_2_or_more": sum(1 for s in samples if s["epochs"] > 1),
        "result_ms_by_claimants": {k: summary_ms(v) for k, v in sorted(groups.items())},
    }


def claim_slots(
    samples: Sequence[dict[str, Any]],
    executors: Sequence[Node],
    params: Params,
) -> dict[str, Any]:
    """The claim slot of the best-ranked executor. Slot s means waiting s * claim_slot
    before claiming (colonyp2p/core/executor.py): among fewer than EXACT_RANKS matching
    executors each knows its exact rank, and every node's executor hears its own node's
    announcements, so the best-ranked is in slot 0 unless the ranking is broken."""
    keys = {e.name: dht_key(e.member_id) for e in executors}
    by_slot: dict[int, list[float]] = {}
    for s in samples:
        best = 0  # exact ranks: the executor with the lowest score is first, in slot 0
        if len(keys) >= EXACT_RANKS:
            lowest = min(rendezvous_score(key, s["pid"]) for key in keys.values())
            best = int(lowest * len(keys) / params.claim_fanout)
        s["best_slot"] = best
        by_slot.setdefault(best, []).append(s["result_s"])
    return {
        "claim_slot_s": params.claim_slot,
        "by_best_slot": {
            str(slot): {"count": len(v), "result_ms": summary_ms(v)}
            for slot, v in sorted(by_slot.items())
        },
    }


# --- 1. latency -----------------------------------------------------------------------------


def bench_latency(root: Path, params: dict[str, float], n: int, warmup: int) -> dict[str, Any]:
    t_setup = time.perf_counter()
    with colony(root) as c:
        owner = found(c, params)
        for i in range(1, 5):
            add_member(c, f"n{i}", owner, params)
        nodes = c.nodes
        settle(nodes, nodes)
        submitter = nodes[1]  # a member that is not the owner
        setup_s = time.perf_counter() - t_setup
        print(f"    five daemons up in {setup_s:.1f} s; submitting through {submitter.name}")
        watcher = Watcher(submitter)
        samples: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        submitted = 0
        with submitter.api() as api:
            # until n successful samples after the warm-up; failures are kept aside
            while len(samples) < n:
                wall0 = time.time()
                t0 = time.perf_counter()
                pid = str(api.submit(NOOP)["pid"])
                t_ack = time.perf_counter()
                t_result, state, method = result_of(watcher, api, pid)
                submitted += 1
                sample = {
                    "pid": pid,
                    "wall0": wall0,
                    "submit_s": t_ack - t0,
                    "result_s": t_result - t0,
                    "method": method,
                }
                if state != "successful":
                    sample["errors"] = api.process(pid)["errors"]
                    failures.append(sample)
                    print(f"    {pid[:16]} ended {state}: {sample['errors']}", flush=True)
                elif submitted > warmup:
                    samples.append(sample)
            # what the client learned from the stream is what the API answers
            checked = [api.process(s["pid"]) for s in samples[:: max(1, n // 10)]]
        watcher.close()
        if any(p["state"] != "successful" or p["output"] != [None] for p in checked):
            raise AssertionError(f"a process is not successful with output [null]: {checked}")
        logs = log_events(nodes)
        where = stages(samples, submitter, nodes, logs)
        contended = contention([*samples, *failures], nodes, logs)
        slots = claim_slots(samples, nodes, daemon_params(params))
    return {
        "daemons": 5,
        "executors": 5,
        "submitter": "n1 (a member, not the owner)",
        "warmup": warmup,
        "submitted": submitted,
        "failed": [_rounded(f) for f in failures],
        "result_method": _count(s["method"] for s in samples),
        "result_ms": summary_ms([s["result_s"] for s in samples]),
        "submit_ms": summary_ms([s["submit_s"] for s in samples]),
        "stages_ms": where,
        "claim_slots": slots,
        "contention": contended,
        "setup_s": round(setup_s, 2),
        "executor_nodes": dict(
            sorted(_count(s.get("executor_node", "?") for s in samples).items())
        ),
        "samples": [_rounded(s) for s in samples],
    }


def _rounded(sample: dict[str, Any]) -> dict[str, Any]:
    return {
        k: round(v, 6) if isinstance(v, float) else v for k, v in sample.items() if k != "wall0"
    }


def daemon_params(params: dict[str, float]) -> Params:
    """The Params a daemon builds from ``params`` in config.json."""
    return Params(**{k: type(getattr(Params(), k))(v) for k, v in params.items()})


def _count(values: Iterator[str] | Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# --- 2. throughput --------------------------------------------------------------------------


def submit_all(
    total: int, targets: Sequence[tuple[Node, Watcher]], clients: int, batch: int = 1
) -> list[dict[str, Any]]:
    """``clients`` threads submit ``total`` noops, thread i through ``targets[i % len]``,
    each as soon as its previous submit returned (``batch`` > 1: that many per call, with
    ``submit_many``); they stop early after SUBMIT_CAP."""
    counter = itertools.count()
    lock = threading.Lock()
    done: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    stop_at = time.perf_counter() + SUBMIT_CAP

    def client(i: int) -> None:
        node, _ = targets[i % len(targets)]
        try:
            with node.api() as api:
                while time.perf_counter() < stop_at:
                    with lock:
                        k = next(counter)
                    n = min(batch, total - k * batch)
                    if n <= 0:
                        return
                    t0 = time.perf_counter()
                    if batch == 1:
                        answer = api.submit(NOOP)
                        pids = [answer["pid"]]
                    else:
                        answer = api.submit_many([NOOP] * n)
                        pids = answer["pids"]
                    t1 = time.perf_counter()
                    with lock:
                        done.extend(
                            {
                                "pid": pid,
                                "acknowledged": bool(answer["acknowledged"]),
                                "node": node.name,
                                "t0": t0,
                                "t_ack": t1,
                            }
                            for pid in pids
                        )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return done


def bench_throughput(
    root: Path,
    params: dict[str, float],
    total: int,
    runs: Sequence[tuple[int, bool]],
    profile: float,
    capacity: int,
    batch: int = 1,
    owner_executes: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "daemons": 3 if owner_executes else 4,
        "executors": 3,
        "owner": "an executor too: submits, keeps records and runs processes"
        if owner_executes
        else 'no executor ("executor": null): submits and keeps records only',
        "capacity_per_executor": capacity,
        "submit_batch": batch,
        "fresh_colony_per_run": True,
        "submit_cap_s": SUBMIT_CAP,
        "result_wait_s": RESULT_WAIT,
        "runs": [],
    }
    for i, (clients, spread) in enumerate(runs):
        # a fresh colony each time: a run must not inherit the previous one's backlog
        with colony(root / f"run{i}") as c:
            t_setup = time.perf_counter()
            if owner_executes:
                owner = found(c, params, capacity=capacity)
            else:
                owner = found(c, params, executortype=None)
            for k in range(1, 3 if owner_executes else 4):
                add_member(c, f"e{k}", owner, params, capacity=capacity)
            settle(c.nodes, c.nodes if owner_executes else c.nodes[1:])
            setup_s = time.perf_counter() - t_setup
            nodes = c.nodes if spread else [owner]
            # event streams only from the nodes submitting (each stream costs its node)
            watchers = {node.name: Watcher(node) for node in nodes}
            with owner.api() as api:  # warm-up: connections, gossip meshes
                for _ in range(10):
                    result_of(watchers[owner.name], api, str(api.submit(NOOP)["pid"]))
            where = "spread over all four daemons" if spread else "all through the owner"
            print(f"    {total} noops from {clients} client thread(s), {where} ...", flush=True)
            run = throughput_run(
                total,
                clients,
                [(n, watchers[n.name]) for n in nodes],
                where,
                c.nodes,
                profile if i == 0 else 0.0,
                profile,
                root / f"profile-{i}",
                batch,
            )
            run["setup_s"] = round(setup_s, 1)
            run["watcher_errors"] = {n: w.error for n, w in watchers.items() if w.error}
            for w in watchers.values():
                w.close()
        out["runs"].append(run)
        print(f"      {json.dumps(_brief(run))}", flush=True)
    return out


def throughput_run(
    total: int,
    clients: int,
    targets: Sequence[tuple[Node, Watcher]],
    where: str,
    nodes: Sequence[Node],
    profile: float,
    profile_backlog: float,
    profile_dir: Path,
    batch: int = 1,
) -> dict[str, Any]:
    """``profile``: py-spy seconds from the first submit; ``profile_backlog``: seconds from
    the last submit, if at least BACKLOG processes are then still without a result."""
    watchers = {node.name: w for node, w in targets}
    cpu0 = {n.name: _cpu_seconds(n.pid) for n in nodes}
    load0 = os.getloadavg()[0]
    spies = start_profiles(nodes, profile, profile_dir) if profile > 0 else {}
    done = submit_all(total, targets, clients, batch)
    backlog = sum(1 for d in done if d["pid"] not in watchers[d["node"]].decided)
    later = {}
    if profile_backlog > 0 and backlog >= BACKLOG:
        finish_profiles(spies, profile)  # py-spy attaches to a process once at a time
        later = start_profiles(nodes, profile_backlog, profile_dir / "backlog")
    first = min(d["t0"] for d in done)
    last_ack = max(d["t_ack"] for d in done)
    deadline = time.perf_counter() + RESULT_WAIT
    missing = list(done)
    progress = time.perf_counter()  # when the last result came in
    while missing and time.perf_counter() < deadline:
        still = [d for d in missing if d["pid"] not in watchers[d["node"]].decided]
        if len(still) < len(missing):
            progress = time.perf_counter()
        missing = still
        if missing and time.perf_counter() - progress > STALL:
            break  # stalled: no result for STALL seconds
        if missing:
            time.sleep(0.2)
    t_end = time.perf_counter()
    cpu1 = {n.name: _cpu_seconds(n.pid) for n in nodes}
    load1 = os.getloadavg()[0]
    profiles = finish_profiles(spies, profile)
    profiles_backlog = finish_profiles(later, profile_backlog)
    ended = [d for d in done if d["pid"] in watchers[d["node"]].decided]
    for d in ended:
        d["t_result"], d["outcome"] = watchers[d["node"]].decided[d["pid"]]
    ok = [d for d in ended if d["outcome"] == "successful"]
    # first submit -> last result; if some never ended, to the end of the wait instead
    wall = (max(d["t_result"] for d in ended) if len(ended) == len(done) else t_end) - first
    # why processes failed, as their nodes tell it
    reasons: dict[str, int] = {}
    for d in ended:
        if d["outcome"] != "successful":
            node = next(n for n, _ in targets if n.name == d["node"])
            errors = node.process(d["pid"])["errors"]
            reason = str(errors[0]) if errors else d["outcome"]
            reasons[reason] = reasons.get(reason, 0) + 1
    per_second = _count(str(int(d["t_result"] - first)) for d in ended)
    logs = log_events(nodes)
    ack_to_run: list[float] = []
    held: list[float] = []  # an executor's capacity slot: its claim began -> it chose
    for d in done:
        acked = first_t(logs[d["node"]].get(d["pid"], []), "acknowledged")
        running = [t for n in nodes if (t := first_t(logs[n.name].get(d["pid"], []), "running"))]
        if acked is not None and running:
            ack_to_run.append(min(running) - acked)
        for n in nodes:
            theirs = logs[n.name].get(d["pid"], [])
            chose = first_t(theirs, "chose")
            me = n.member_id
            claimed = first_t([e for e in theirs if e.get("holder") == me], "promised")
            if chose is not None and claimed is not None and first_t(theirs, "running"):
                held.append(chose - claimed)
    samples = [{"pid": d["pid"], "result_s": d["t_result"] - d["t0"]} for d in ended]
    return {
        "clients": clients,
        "submitted_through": where,
        "processes": total,
        "submitted": len(done),
        "all_ended": len(ended) == total,
        "unacknowledged": sum(1 for d in done if not d["acknowledged"]),
        "without_result": len(done) - len(ended),
        "successful": len(ok),
        "failed": len(ended) - len(ok),
        "failure_reasons": reasons,
        "wall_s": round(wall, 3),
        "wall_is": "first submit -> last result"
        if len(ended) == len(done)
        else "first submit -> end of the wait for results (some never ended)",
        "completed_per_s": round(len(ended) / wall, 1),
        "successful_per_s": round(len(ok) / wall, 1),
        "acknowledged_per_s": round(len(done) / (last_ack - first), 1),
        "submit_ms": summary_ms([d["t_ack"] - d["t0"] for d in done]),
        "result_after_submit_ms": summary_ms([d["t_result"] - d["t0"] for d in ended]),
        "acknowledged_to_running_ms": summary_ms(ack_to_run),
        "executor_slot_held_ms": summary_ms(held),
        "contention": contention(samples, nodes, logs),
        "completions_per_second_of_run": [per_second.get(str(s), 0) for s in range(int(wall) + 1)],
        "daemon_cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0},
        "load_average_1min": [round(load0, 2), round(load1, 2)],
        "profile": profiles,
        "without_result_when_submits_ended": backlog,
        "profile_backlog": profiles_backlog,
        "ack_to_first_claim_by_window": claim_delays(done, nodes, logs),
    }


def claim_delays(
    done: Sequence[dict[str, Any]], nodes: Sequence[Node], logs: Logs, window: float = 10.0
) -> list[dict[str, Any]]:
    """For the processes acknowledged in each ``window`` seconds of the run: how long after
    its acknowledgement any keeper first promised a claim (the announcement heard and
    acted on), and how many were never claimed."""
    rows: dict[int, list[float | None]] = {}
    acked_at: list[tuple[float, str, str]] = []
    for d in done:
        t = first_t(logs[d["node"]].get(d["pid"], []), "acknowledged")
        if t is not None:
            acked_at.append((t, d["pid"], d["node"]))
    if not acked_at:
        return []
    start = min(t for t, _, _ in acked_at)
    for t, pid, _ in acked_at:
        promised = [
            float(e["t"])
            for n in nodes
            for e in logs[n.name].get(pid, [])
            if e["kind"] == "promised"
        ]
        rows.setdefault(int((t - start) // window), []).append(
            min(promised) - t if promised else None
        )
    out = []
    for k in sorted(rows):
        delays = [v for v in rows[k] if v is not None]
        out.append(
            {
                "acknowledged_from_s": k * window,
                "n": len(rows[k]),
                "never_claimed": len(rows[k]) - len(delays),
                "p50_s": round(pct(delays, 50), 2) if delays else None,
                "max_s": round(max(delays), 2) if delays else None,
            }
        )
    return out


def start_profiles(
    nodes: Sequence[Node], seconds: float, where: Path
) -> dict[str, tuple[subprocess.Popen[bytes], Path]]:
    """py-spy (if installed) samples every daemon for ``seconds``."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        print("      (no py-spy in the virtualenv: no profile)", flush=True)
        return {}
    where.mkdir(parents=True, exist_ok=True)
    out = {}
    for node in nodes:
        path = where / f"{node.name}.txt"
        cmd = [str(spy), "record", "-r", "100", "-f", "raw", "-d", str(int(seconds))]
        cmd += ["-o", str(path), "-p", str(node.pid)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out[node.name] = (proc, path)
    return out


def finish_profiles(
    spies: dict[str, tuple[subprocess.Popen[bytes], Path]], seconds: float
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, (proc, path) in spies.items():
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if path.exists():
            out[name] = profile_summary(path) | {"seconds": seconds}
    return out


# What the daemon's trio thread spends its time in: the first of these frames (from the
# outermost) that a sample's stack holds names its part; the rest is "other".
PROFILE_PARTS = (
    ("gossip (py-libp2p pubsub)", ("libp2p/pubsub/",)),
    ("envelope decode + verify (direct and gossip)", ("Transport._open_envelope",)),
    ("envelope encode + sign", ("Transport._seal",)),
    ("core state machine", ("Daemon._step", "ColonyNode.")),
    ("event log (json + logging)", ("Daemon._event",)),
    ("local API (HTTP)", ("node/api.py",)),
    ("py-libp2p streams: yamux, noise, sockets", ("libp2p/",)),
    ("trio scheduler, epoll", ("trio/_core/",)),
)


def profile_summary(path: Path) -> dict[str, Any]:
    """From py-spy's raw (collapsed) stacks: how busy the trio thread was, on what, and
    what the worker threads (SQLite commits) did."""
    parts: dict[str, int] = {}
    main = workers = store = fsync_commit = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        where = next((i for i, f in enumerate(frames) if f.startswith("unrolled_run ")), None)
        if where is not None:
            main += n
            inner = frames[where + 1 :]
            label = "other"
            for name, marks in PROFILE_PARTS:
                if any(m in f for f in inner for m in marks):
                    label = name
                    break
            parts[label] = parts.get(label, 0) + n
        elif any(f.startswith("WorkerThread._handle_job ") for f in frames):
            workers += n
            if any(f.startswith("Store.apply ") for f in frames):
                store += n
                if any(f.startswith("_GeneratorContextManager.__exit__ ") for f in frames):
                    fsync_commit += n
    return {
        "samples_per_s": 100,
        "trio_thread_samples": main,
        "trio_thread_parts": {k: round(v / main, 3) for k, v in sorted(parts.items())}
        if main
        else {},
        "worker_thread_samples": workers,
        "store_apply_samples": store,
        "store_commit_samples": fsync_commit,
    }


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "clients",
        "submitted",
        "without_result",
        "wall_s",
        "successful_per_s",
        "acknowledged_per_s",
        "failed",
    )
    return {k: run[k] for k in keys} | {"cpu": run["daemon_cpu_s"]}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- 3. join --------------------------------------------------------------------------------


def bench_join(root: Path, params: dict[str, float], repeats: int) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    # what any colonynode command costs before it does anything: Python, imports
    t0 = time.perf_counter()
    Node(root, "cli").cli("--help")
    cli_startup_s = time.perf_counter() - t0
    for r in range(repeats):
        with colony(root / f"join{r}") as c:
            owner = found(c, params)
            for i in range(1, 3):
                add_member(c, f"n{i}", owner, params)
            settle(c.nodes, c.nodes)
            watcher = Watcher(owner)
            kind = f"joiner{r}"
            steps = add_member(c, "new", owner, params, executortype=kind)
            new = c.nodes[-1]
            wall_started, t_started = time.time(), time.perf_counter()
            with owner.api() as api:
                pid = str(
                    api.submit({"funcname": "noop", "conditions": {"executortype": kind}})["pid"]
                )
                t_ack = time.perf_counter()
                t_result, state, method = result_of(watcher, api, pid)
                process = api.process(pid)
            watcher.close()
            if state != "successful" or process["executor"] != new.member_id:
                raise AssertionError(f"the first process did not run on the new member: {process}")
            mine = log_events([new])[new.name].get(pid, [])
            running = first_t(mine, "running")
            run = {
                "invite_s": round(steps["invite_s"], 3),
                "join_s": round(steps["join_s"], 3),
                "start_s": round(steps["start_s"], 3),
                "submit_s": round(t_ack - t_started, 3),
                "first_result_s": round(t_result - t_started, 3),
                "running_after_submit_s": None
                if running is None
                else round(running - wall_started, 3),
                "result_method": method,
                "total_s": round(steps["join_s"] + steps["start_s"] + t_result - t_started, 3),
            }
            print(f"      {json.dumps(run)}", flush=True)
            runs.append(run)
    return {
        "colony": "owner + 2 members (executors of type local), then one more of its own type",
        "cli_startup_s": round(cli_startup_s, 3),
        "runs": runs,
        "median": {
            k: round(statistics.median(float(r[k]) for r in runs), 3)
            for k in ("invite_s", "join_s", "start_s", "submit_s", "first_result_s", "total_s")
        },
    }


# --- the report -----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """As bench_sim.py reports it, with the CPU model, the load, and the code measured."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            info["cpu_model"] = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), ""
            )
    except OSError:
        info["cpu_model"] = ""
    top = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(top)]
    try:
        info["git_head"] = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--short", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        info["git_uncommitted"] = [line[3:] for line in changed if line.strip()]
    except (OSError, subprocess.CalledProcessError):
        info["git_head"] = ""
    return info


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--part", choices=["all", "latency", "throughput", "join"], default="all")
    parser.add_argument("--n", type=int, default=200, help="latency samples")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--total", type=int, default=2000, help="throughput processes")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3, help="join runs per params")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="throughput: specs per submit call (> 1: submit_many, POST /v1/processes/batch)",
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=2,
        help="processes each executor runs at once in the throughput runs (config default 2)",
    )
    parser.add_argument(
        "--profile", type=float, default=15.0, help="py-spy seconds in the first throughput run"
    )
    parser.add_argument("--keep", type=Path, help="put the homes (and logs) here and keep them")
    parser.add_argument(
        "--params",
        nargs="+",
        choices=sorted(PARAM_SETS),
        help="param sets (default: "
        + "; ".join(f"{k}: {' '.join(v)}" for k, v in PART_PARAMS.items())
        + ")",
    )
    parser.add_argument(
        "--no-spread", action="store_true", help="no throughput run spread over all daemons"
    )
    parser.add_argument(
        "--owner-executes",
        action="store_true",
        help="throughput: three daemons, all executors, the owner one of them (as in "
        "bench/compare's 3-daemon colony), instead of an owner without executor and three",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite DAEMON.md from daemon.json"
    )
    args = parser.parse_args()
    if args.report_only:
        data = json.loads((RESULTS / "daemon.json").read_text())
        (RESULTS / "DAEMON.md").write_text(markdown(data))
        return 0
    # a SIGTERM ends the run through the finally clauses that kill the daemons
    signal.signal(signal.SIGTERM, _terminate)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "daemon.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    results["params"] = {
        **{k: v for k, v in PARAM_SETS.items()},
        "protocol_defaults": dataclasses.asdict(Params()),
    }
    results["targets"] = TARGETS
    started = time.perf_counter()
    parts = ["latency", "throughput", "join"] if args.part == "all" else [args.part]
    with _root(args.keep) as root:
        for part in parts:
            # entries of other param sets from earlier runs stay
            entries: dict[str, Any] = results.setdefault(part, {})
            for name in args.params or PART_PARAMS[part]:
                print(f"{part}, params {name}: {PARAM_SETS[name] or 'none'}", flush=True)
                params, home = PARAM_SETS[name], root / f"{part}-{name}"
                if part == "latency":
                    entry = bench_latency(home, params, args.n, args.warmup)
                    print(f"    result {entry['result_ms']}", flush=True)
                elif part == "throughput":
                    runs = [(n, False) for n in args.clients]
                    if not args.no_spread:
                        runs.append((max(args.clients), True))
                    entry = bench_throughput(
                        home,
                        params,
                        args.total,
                        runs,
                        args.profile,
                        args.capacity,
                        args.batch,
                        args.owner_executes,
                    )
                else:
                    entry = bench_join(home, params, args.repeats)
                entry["params"] = name
                entry["command"] = _command(part, name, args)
                key = name
                if part == "throughput" and (args.batch != 1 or args.capacity != 2):
                    # another way of submitting: kept beside the plain runs
                    key = f"{name}, capacity {args.capacity}, batches of {args.batch}"
                if part == "throughput" and args.owner_executes:
                    key += ", owner executes (3 daemons)"
                entry["git_head"] = results["machine"].get("git_head", "")
                entry["git_uncommitted"] = results["machine"].get("git_uncommitted", [])
                entry["date"] = time.strftime("%Y-%m-%d %H:%M")
                entries[key] = entry
    results["wall_s_last_run"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "DAEMON.md").write_text(markdown(results))
    print(f"written: {path} and {RESULTS / 'DAEMON.md'}")
    return 0


@contextmanager
def _root(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        yield Path(tmp)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _command(part: str, params: str, args: argparse.Namespace) -> str:
    cmd = [".venv/bin/python bench/bench_daemon.py --part", part, "--params", params]
    if part == "latency":
        cmd += [f"--n {args.n} --warmup {args.warmup}"]
    elif part == "throughput":
        cmd += [f"--total {args.total} --clients {' '.join(map(str, args.clients))}"]
        cmd += ["--no-spread"] if args.no_spread else []
        cmd += [f"--capacity {args.capacity}"] if args.capacity != 2 else []
        cmd += [f"--batch {args.batch}"] if args.batch != 1 else []
        cmd += ["--owner-executes"] if args.owner_executes else []
    else:
        cmd += [f"--repeats {args.repeats}"]
    return " ".join(cmd)


# What each round of work on the daemon changed, by the same commands (history: the
# figures before are those this file recorded at git c074f6d, 2026-11-25 12:06, and at
# git 50d2fd4, 14:40).
BEFORE_AFTER = [
    "## Before and after the fifth round (2026-11-25, night)",
    "",
    "Changed: a keeper record's spec is stored once, in a row of its own, instead of "
    "being encoded, written and decoded again at every step of its process (a quarter of "
    "a busy keeper's CPU); store rows and batch items are plain CBOR instead of "
    "canonical (nothing signs or hashes them; canonical encoding cost three times as "
    "much); decoding looks each field's converter up once per type instead of hashing "
    "its annotation at every field, and takes scalars of the declared type without a "
    "call; a Python call no longer creates and removes a work directory (journal work "
    "worth a tenth of an executor's CPU).",
    "",
    "| figure | before (git 257b6a8) | after |",
    "|---|---|---|",
    "| throughput, owner executes (3 daemons, capacity 32, batches of 20) | 254.1/s "
    "(6.3 ms daemon CPU per process) | 315.9/s (4.7 ms) |",
    "| latency p50 / p99, params defaults, 5 daemons | 28.1 / 37.0 ms | 30.9 / 44.6 ms "
    "(no change in the latency path; the machine's load differs from run to run) |",
    "",
    "## Before and after the fourth round (2026-11-25, evening)",
    "",
    "Changed: the local API answers in one write and streams the events that are ready "
    "in one write (it made a send syscall per event: a third of the owner's time); the "
    "codec encodes by a plan per dataclass (7x faster); the daemon no longer imports "
    "matplotlib (146 MB resident before, 114 MB after: the kernel closes a killed "
    "daemon's sockets after 8 ms instead of 12.6); a starting node catches up on the "
    "executors' ads from one member (CatchUp) instead of ranking by its own ad alone for "
    "up to a minute; every keeper that notices a lost holder re-announces its processes "
    "at once, and executors take announcements once per announcer and round (one "
    "keeper's round 1 no longer hides another's: recovery stalled 100 ms in some kills).",
    "",
    "| figure | before (git f7f3256) | after |",
    "|---|---|---|",
    "| latency p50 / p99, params defaults, 5 daemons | 38.4 / 53.2 ms | 28.1 / 37.0 ms |",
    "| throughput, owner executes (3 daemons, capacity 32, batches of 20) | 221.3/s | 254.1/s |",
    "| a killed executor's process, done elsewhere (3 daemons, kill-only runs) | "
    "29-51 ms | 22-40 ms in eight kill-only runs |",
    "",
    "## Before and after the third round (2026-11-25, afternoon)",
    "",
    "Changed: a new process is offered straight to the three best-ranked executors "
    "(`Offer`) instead of gossiped, where ranks are exact; keepers end the leases of a "
    "member whose connections all dropped at once, and rankings pass over it; requests "
    "leave while a step commits; a gather's record is written once its last parent is "
    "known; never an even number of keepers above 2.",
    "",
    "| figure | before (git 50d2fd4) | after |",
    "|---|---|---|",
    "| latency p50 / p99, params defaults | 52 / 72 ms | see the table above |",
    "| latency p50 / p99, params bench | 59 / 76 ms | see the table above |",
    "| throughput, batched submits (capacity 32, batches of 20) | 162.1/s | see the table above |",
    "| daemon CPU per process, batched | about 10 ms | see 1. below |",
    "| a killed executor's process, done elsewhere after | its lease, 10 s | tens of ms "
    "(bench/results/COMPARE.md, scenario (d)) |",
    "| 1,000-child fan-out and gather, 3 daemons | 110 s | see bench/results/COMPARE.md |",
    "",
    "## Before and after the second round (2026-11-25, morning)",
    "",
    "Changed: claims ranked exactly among few executors and a node's own executor "
    "hearing its announcements (contention gone); a claimant that meets a live lease "
    "gives up; keepers count an expired lease as a try only if its holder renewed it; "
    "messages queued for a peer and announcements queued for a topic go out as one "
    "signed `Batch`; the codec's converters built once per type; the API waits on "
    "acknowledgements and logs by pid instead of scanning the event log; "
    "`submit_many`; a 0.5 ms GIL switch interval in the daemon.",
    "",
    "| figure | before | after |",
    "|---|---|---|",
    "| latency p50 / p99, params defaults | 59 / 558 ms | see the table above |",
    "| latency p50 / p99, params bench | 56 / 126 ms | see the table above |",
    "| noops failed `maxretries exceeded` without a lease expiring | 4% (latency), "
    "15% (throughput) | none |",
    "| throughput, 1 client, single submits | 15.7/s | see the table above |",
    "| throughput, 4 clients, single submits | 3.8/s (a backlog collapse, 1,433 "
    "without result) | see the table above |",
    "| throughput, batched submits (capacity 32, batches of 20) | - | see the table above |",
    "| daemon CPU per process (all four daemons) | 98 ms | about 10 ms batched, "
    "35-55 ms with single submits |",
    "",
]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "# Daemon benchmarks: real colonynode daemons over loopback",
        "",
        "Written by `bench/bench_daemon.py` from `bench/results/daemon.json` (raw numbers there).",
        "Every daemon is its own process, started with the real CLI (`colonynode init`, `colony",
        "create`, `invite`, `join`, `start`) in its own home, as `tests/cluster.py` does (its",
        "helpers are imported); clients use the daemons' local API with `ApiClient`.",
        "",
        f"Machine: {m['cpus']} CPUs ({m.get('cpu_model', '')}), {m['processor']}, "
        f"Python {m['python']}, {m['platform']}. The machine was shared with other work "
        f"(load average when the last invocation began, {m['date']}: "
        f"{m['load_average_at_start']}; each throughput run records its own). Each part "
        "names the commit it measured (other work was changing the tree meanwhile).",
        "",
    ]
    out += _md_targets(results)
    out += BEFORE_AFTER
    out += _md_params(results)
    out += _md_latency(results.get("latency", {}))
    out += _md_throughput(results.get("throughput", {}))
    out += _md_join(results.get("join", {}))
    out += _md_limits(results)
    return "\n".join(out) + "\n"


def _code(entry: dict[str, Any]) -> str:
    if not entry.get("git_head"):
        return ""
    dirty = entry.get("git_uncommitted") or []
    return (
        f"Code: git {entry['git_head']}"
        + (f" (uncommitted: {', '.join(dirty)})" if dirty else "")
        + f", {entry.get('date', '')}. "
    )


def _ok(met: bool) -> str:
    return "met" if met else "**missed**"


def _md_targets(results: dict[str, Any]) -> list[str]:
    t = results["targets"]
    out = [
        "## The figures against their targets",
        "",
        "| figure | params | measured | target | met? | command |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.get("latency", {}).items():
        ms = r["result_ms"]
        out.append(
            f"| submit-to-result latency, 5 daemons, N={ms['n']}: p50 / p95 / p99 / max | "
            f"{name} | {ms['p50']:.0f} / {ms['p95']:.0f} / {ms['p99']:.0f} / {ms['max']:.0f} ms "
            f"| p50 <= {t['latency_p50_ms']:.0f} ms | {_ok(ms['p50'] <= t['latency_p50_ms'])} "
            f"| `{r['command']}` |"
        )
    for name, r in results.get("throughput", {}).items():
        for run in r["runs"]:
            rate = run["successful_per_s"]
            out.append(
                f"| throughput, 3 executors, {run['clients']} client thread(s) "
                f"{run['submitted_through']}: successful processes/s | {name} | {rate} /s "
                f"({run['successful']} of {run['processes']} in {run['wall_s']:.0f} s) "
                f"| >= {t['throughput_per_s']:.0f} /s | "
                f"{_ok(rate >= t['throughput_per_s'])} | `{r['command']}` |"
            )
    for name, r in results.get("join", {}).items():
        med = r["median"]
        worst = max(run["total_s"] for run in r["runs"])
        out.append(
            f"| join + start + first result on the new member, median of {len(r['runs'])} "
            f"(worst) | {name} | {med['total_s']:.2f} s ({worst:.2f} s) | < "
            f"{t['join_total_s']:.0f} s | {_ok(worst < t['join_total_s'])} | `{r['command']}` |"
        )
    return [*out, ""]


def _md_params(results: dict[str, Any]) -> list[str]:
    p = results["params"]
    used = {name for part in ("latency", "throughput", "join") for name in results.get(part, {})}
    out = [
        "## Params",
        "",
        'Protocol params go in each node\'s `config.json` (`"params"`), over the defaults',
        "of `colonyp2p/core/params.py`. Sets used here:",
        "",
    ]
    for name in sorted(used):
        values = p.get(name) or {}
        text = ", ".join(f"`{k}` = {v:g}" for k, v in values.items()) or "none (all defaults)"
        out.append(f"- **{name}**: {text}")
    defaults = p["protocol_defaults"]
    out += [
        "",
        "Defaults: " + ", ".join(f"`{k}` = {v:g}" for k, v in defaults.items()) + ".",
        "",
        "`claim_slot` and `request_timeout` are lowered in **bench** because they, not the",
        "daemons, set the figures otherwise: an executor ranked in claim slot s waits",
        "s x `claim_slot` before claiming (with 4 executors hearing an announcement, no",
        "executor is in slot 0 for about 13% of processes, which then wait 0.5 s by",
        "default), and a ballot message that a new member cannot deliver yet is resent",
        "after `request_timeout` (1 s). The **defaults** rows show the same figures",
        "without changes. Throughput waits on no timer, so it runs with the defaults.",
        "",
    ]
    return out


def _md_latency(part: dict[str, Any]) -> list[str]:
    if not part:
        return []
    out = [
        "## 1. Submit-to-result latency",
        "",
        "Five daemons, all executors of type `local` serving the builtins. A client of",
        'member n1 (not the owner) submits the builtin `noop` (`{"funcname": "noop"}`)',
        "one at a time, each after the previous result; after a warm-up, the first N",
        "successful processes count. The clock runs from just before `ApiClient.submit`",
        "to the moment the client's own reader of n1's event stream (`ApiClient.events`,",
        "`GET /v1/events`) receives the event that tells the outcome: `result` (the",
        "daemon emits it when the winning executor's Decide reaches the submitter) or",
        "`decided` (n1's keeper decided; with at most 5 keeping members every member",
        "keeps every record). No polling was needed; had no event come within",
        f"{EVENT_WAIT:g} s, the client would have polled `process(pid)` every 10 ms.",
        "",
    ]
    for name, r in part.items():
        ms, sub = r["result_ms"], r["submit_ms"]
        out += [
            f"### params {name}",
            "",
            f"{_code(r)}Command: `{r['command']}`. Told by: "
            + ", ".join(f"{n} x `{k}`" for k, n in r["result_method"].items())
            + f". Submitted "
            f"{r['submitted']} (warm-up {r['warmup']}); "
            f"{len(r['failed'])} ended failed (see below). Executors that ran them: "
            f"{r['executor_nodes']}.",
            "",
            "| | p50 | p95 | p99 | max | mean |",
            "|---|---|---|---|---|---|",
            f"| submit -> result (ms) | {ms['p50']} | {ms['p95']} | {ms['p99']} | {ms['max']} "
            f"| {ms['mean']} |",
            f"| submit -> `submit()` returned, acknowledged by a majority of keepers (ms) | "
            f"{sub['p50']} | {sub['p95']} | {sub['p99']} | {sub['max']} | {sub['mean']} |",
            "",
            "Where the time goes (from the daemons' event logs; wall clocks of one machine;",
            "indented rows split the row above them):",
            "",
            "| stage | p50 ms | p95 ms | n |",
            "|---|---|---|---|",
        ]
        for label, v in r["stages_ms"].items():
            shown = label.replace("  ", "&nbsp;&nbsp;&nbsp;&nbsp;", 1)
            out.append(f"| {shown} | {v['p50']} | {v['p95']} | {v['n']} |")
        slots = r["claim_slots"]
        out += [
            "",
            f"By the claim slot of the best-ranked executor that heard the announcement "
            f"(`claim_slot` = {slots['claim_slot_s']:g} s):",
            "",
            "| best slot | processes | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for slot, v in slots["by_best_slot"].items():
            rm = v["result_ms"]
            out.append(f"| {slot} | {v['count']} | {rm['p50']} | {rm['p95']} | {rm['max']} |")
        c = r["contention"]
        out += [
            "",
            f"Claim contention: {c['contended']} of {c['processes']} processes (failed ones "
            f"included) were claimed by more than one executor at once; "
            f"{c['needed_epoch_2_or_more']} needed a second ballot epoch or more.",
            "",
            "| claimants | n | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|---|",
        ]
        for k, v in c["result_ms_by_claimants"].items():
            if v.get("n"):
                out.append(f"| {k} | {v['n']} | {v['p50']} | {v['p95']} | {v['max']} |")
        if r["failed"]:
            reasons = _count(str(f["errors"][0]) if f["errors"] else "?" for f in r["failed"])
            out += [
                "",
                f"Failed noops ({len(r['failed'])} of {r['submitted']}): "
                + "; ".join(f"{n} x `{k}`" for k, n in reasons.items())
                + " (see What limits it).",
            ]
        out.append("")
    return out


def _md_throughput(part: dict[str, Any]) -> list[str]:
    if not part:
        return []
    out = [
        "## 2. Sustained throughput",
        "",
        'An owner without executor (`"executor": null` in its config.json: it submits,',
        "keeps records and votes, runs nothing) and three executor daemons (type `local`,",
        "capacity 2 each, the default, unless the entry says otherwise: `capacity` is",
        "how many processes an executor runs at once, `executor.capacity` in its",
        "config.json). Client threads call `ApiClient.submit` of `noop` back to back",
        "(each as soon as its previous submit returned, i.e. as fast as the API",
        "acknowledges), or, for entries with `batches of N`, `ApiClient.submit_many`",
        "with N noops a call (`POST /v1/processes/batch`, what `Colony.submit_many`",
        "does); results are told by the submitting node's event stream. Entries marked",
        "`owner executes (3 daemons)` have no fourth daemon: the owner, which takes the",
        "submits, is one of the three executors (as in bench/compare's 3-daemon colony).",
        "Throughput = successful processes / (first submit -> last result); in a run where",
        "some processes never ended, / (first submit -> end of the wait) instead. Each run",
        f"has a fresh colony. A run stops submitting after {SUBMIT_CAP:g} s and waits at most",
        f"{RESULT_WAIT:g} s after its last submit, less if no result came for {STALL:g} s.",
        "",
    ]
    for name, r in part.items():
        out += [
            f"### params {name}",
            "",
            f"{_code(r)}Command: `{r['command']}`",
            "",
            "| clients | through | submitted | successful | failed | no result | wall s "
            "| successful/s | acknowledged/s | submit p50 ms | acknowledged -> running p50 / "
            "p95 ms | executor slot held p50 ms | daemon CPU ms per process | load 1 min |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for run in r["runs"]:
            cpu = sum(run["daemon_cpu_s"].values())
            ended = run["successful"] + run["failed"]
            a2r, held = run["acknowledged_to_running_ms"], run["executor_slot_held_ms"]
            out.append(
                f"| {run['clients']} | {run['submitted_through']} | {run['submitted']} | "
                f"{run['successful']} | {run['failed']} | {run['without_result']} | "
                f"{run['wall_s']:.1f} | **{run['successful_per_s']}** | "
                f"{run['acknowledged_per_s']} | {run['submit_ms'].get('p50', '-')} | "
                f"{a2r.get('p50', '-')} / {a2r.get('p95', '-')} | {held.get('p50', '-')} | "
                f"{cpu / max(1, ended) * 1000:.0f} | "
                f"{run['load_average_1min'][0]} -> {run['load_average_1min'][1]} |"
            )
        out.append("")
        for run in r["runs"]:
            if run["failure_reasons"]:
                out.append(
                    f"- {run['clients']} client(s) {run['submitted_through']}: failures "
                    + "; ".join(f"{n} x `{k}`" for k, n in run["failure_reasons"].items())
                )
            cont = run["contention"]
            out.append(
                f"- {run['clients']} client(s) {run['submitted_through']}: daemon CPU seconds "
                f"{run['daemon_cpu_s']}; {cont['contended']} processes claimed by more than "
                f"one executor at once, {cont['needed_epoch_2_or_more']} needed epoch >= 2; "
                "completions per second of the run: "
                + _first(run["completions_per_second_of_run"], 40)
            )
        out.append("")
        for run in r["runs"]:
            windows = run.get("ack_to_first_claim_by_window", [])
            if windows:
                out.append(
                    f"- {run['clients']} client(s) {run['submitted_through']}: first claim "
                    "after acknowledgement, by when processes were acknowledged (s from the "
                    "first; p50 / max s, never claimed): "
                    + "; ".join(
                        f"{w['acknowledged_from_s']:g}+: {w['p50_s']} / {w['max_s']}"
                        + (f", {w['never_claimed']} never" if w["never_claimed"] else "")
                        for w in windows
                    )
                )
        out.append("")
        profiled = next((run for run in r["runs"] if run.get("profile")), None)
        if profiled:
            out += _md_profile(
                profiled["profile"],
                f"the first {next(iter(profiled['profile'].values()))['seconds']:g} s of the "
                f"{profiled['clients']}-client run, while submitting",
            )
        for run in r["runs"]:
            if run.get("profile_backlog"):
                out += _md_profile(
                    run["profile_backlog"],
                    f"{next(iter(run['profile_backlog'].values()))['seconds']:g} s from the "
                    f"last submit of the {run['clients']}-client run "
                    f"{run['submitted_through']}, "
                    f"{run['without_result_when_submits_ended']} processes then without result",
                )
    return out


def _first(values: Sequence[Any], n: int) -> str:
    shown = ", ".join(str(v) for v in values[:n])
    return f"[{shown}{', ...' if len(values) > n else ''}]"


def _md_profile(prof: dict[str, Any], when: str) -> list[str]:
    names = sorted({k for p in prof.values() for k in p["trio_thread_parts"]})
    out = [
        f"py-spy ({next(iter(prof.values()))['samples_per_s']} samples/s), {when}: how busy "
        "each daemon's trio thread was (samples of the samples possible) and on what; the "
        "worker threads' SQLite transactions (`Store.apply`, i.e. protocol progress) run "
        "beside it.",
        "",
        "| | " + " | ".join(prof) + " |",
        "|---|" + "---|" * len(prof),
        "| trio thread busy | "
        + " | ".join(
            f"{p['trio_thread_samples'] / (p['samples_per_s'] * p['seconds']) * 100:.0f}%"
            for p in prof.values()
        )
        + " |",
    ]
    for k in names:
        out.append(
            f"| {k} | "
            + " | ".join(f"{p['trio_thread_parts'].get(k, 0) * 100:.0f}%" for p in prof.values())
            + " |"
        )
    out.append(
        "| worker threads: Store.apply samples (of which commit) | "
        + " | ".join(
            f"{p['store_apply_samples']} ({p['store_commit_samples']})" for p in prof.values()
        )
        + " |"
    )
    return [*out, ""]


def _md_backlog(run: dict[str, Any]) -> list[str]:
    """The collapse of a run whose backlog outgrew the colony, with its numbers."""
    per_s = run["completions_per_second_of_run"]
    windows = run.get("ack_to_first_claim_by_window", [])
    late = [w for w in windows if w["never_claimed"] or (w["p50_s"] or 0) > 10]
    never = sum(w["never_claimed"] for w in windows)
    lines = [
        f"2. *Backlog collapse.* With {run['clients']} clients {run['submitted_through']}, "
        f"the API acknowledged {run['acknowledged_per_s']}/s, more than the colony "
        f"completes; {run['without_result_when_submits_ended']} processes were waiting when "
        f"the submits ended, and completions then fell from about "
        f"{statistics.median(per_s[:10]) if per_s else 0:.0f}/s to "
        f"{statistics.median(per_s[-30:]) if per_s else 0:.0f}/s (per second of the run: "
        f"{_first(per_s, 40)}); {run['without_result']} of {run['submitted']} never got a "
        "result in the run.",
    ]
    if late:
        claimed = [w for w in late if w["p50_s"] is not None]
        lines.append(
            "   Of the processes acknowledged from "
            f"{late[0]['acknowledged_from_s']:g} s on, {never} were never claimed"
            + (
                " and the others only "
                + ", ".join(f"{w['p50_s']:g} s" for w in claimed)
                + " (p50 per 10-s window) after their acknowledgement"
                if claimed
                else ""
            )
            + ": their announcements were not acted on. Consistent with that: py-libp2p "
            "drops what exceeds a "
            "peer's 32-RPC outbound queue silently (node/gossip.py; the publisher waits at "
            "most 1 s for room), and "
            f"a daemon publishes at most {PUBLISH_RATE or 50:g} announcements/s; the next "
            "chance is the keepers' re-announcement, 8 s after storing, then after 16 s, "
            "32 s (`reannounce_after`, doubling), from each of the 4 keepers, and every "
            "re-announcement round of the whole backlog queues behind the others at 50/s "
            "per daemon."
        )
    prof = run.get("profile_backlog") or {}
    ex = {k: v for k, v in prof.items() if k != "owner"}
    if ex:
        name, p = next(iter(ex.items()))
        busy = p["trio_thread_samples"] / (p["samples_per_s"] * p["seconds"])
        parts = p["trio_thread_parts"]
        gossip = parts.get("gossip (py-libp2p pubsub)", 0)
        streams = parts.get("py-libp2p streams: yamux, noise, sockets", 0)
        envelopes = parts.get("envelope decode + verify (direct and gossip)", 0) + parts.get(
            "envelope encode + sign", 0
        )
        lines.append(
            f"   py-spy in that phase, executor {name}: trio thread {busy * 100:.0f}% busy, of "
            f"which gossip {gossip * 100:.0f}%, py-libp2p streams {streams * 100:.0f}%, "
            f"envelopes {envelopes * 100:.0f}%, yet only {p['store_apply_samples']} samples "
            f"of SQLite transactions in {p['seconds']:g} s (compare the while-submitting "
            "profile above): busy with gossip and with messages that persist nothing, "
            "not with protocol progress. Such messages are the re-announcements of the "
            "backlog and what they set off, and the keepers' queries about quiet records "
            "(every `query_after` = 15 s per record and keeper); the profile does not "
            "tell them apart."
        )
    return lines


def _md_join(part: dict[str, Any]) -> list[str]:
    if not part:
        return []
    out = [
        "## 3. From `colonynode join` to the first process run on the new member",
        "",
        "A fresh colony of three daemons (owner + two executors of type `local`) per run;",
        "the owner issues a ticket (`colonynode invite`, not counted: the admin's step",
        "before); then the clock runs over `colonynode join COLONY --ticket T` (the",
        "command, from its start), `colonynode start` (returns once the daemon published",
        "its API), and one `noop` for the new member's own executor type submitted",
        "through the owner's API right after start returned, until the owner's event",
        "stream tells its result. The process ran on the new member in every run (checked).",
        "",
    ]
    for name, r in part.items():
        out += [
            f"### params {name}",
            "",
            f"{_code(r)}Command: `{r['command']}`. Any colonynode command costs "
            f"{r['cli_startup_s']:.2f} s before doing anything (`colonynode --help`: Python "
            "and imports).",
            "",
            "| run | invite s | join s | start s | submit s | first result s (running "
            "after) | total s |",
            "|---|---|---|---|---|---|---|",
        ]
        for i, run in enumerate(r["runs"]):
            out.append(
                f"| {i + 1} | {run['invite_s']} | {run['join_s']} | {run['start_s']} | "
                f"{run['submit_s']} | {run['first_result_s']} ({run['running_after_submit_s']})"
                f" | **{run['total_s']}** |"
            )
        med = r["median"]
        out += [
            f"| median | {med['invite_s']} | {med['join_s']} | {med['start_s']} | "
            f"{med['submit_s']} | {med['first_result_s']} | **{med['total_s']}** |",
            "",
        ]
    return out


def _md_limits(results: dict[str, Any]) -> list[str]:
    """The analysis: the reasoning is fixed, the numbers are this run's."""
    cpus = int(results["machine"]["cpus"] or 1)
    out = ["## What limits it", ""]
    # the entry with the best run: what the analysis explains
    tp = max(
        results.get("throughput", {}).values(),
        key=lambda e: max((run["successful_per_s"] for run in e["runs"]), default=0.0),
        default=None,
    )
    if tp:
        best = max(tp["runs"], key=lambda run: run["successful_per_s"])
        ended = best["successful"] + best["failed"]
        cpu_ms = sum(best["daemon_cpu_s"].values()) / max(1, ended) * 1000
        held = best["executor_slot_held_ms"].get("p50", math.nan)
        slots = tp["executors"] * tp["capacity_per_executor"]
        prof: dict[str, Any] = next(
            (run["profile"] for run in tp["runs"] if run.get("profile")), {}
        )
        out += [
            f"**Throughput ({best['successful_per_s']}/s at best, target 200/s).**",
            "",
            f"1. *CPU per process.* In the best run the {tp['daemons']} daemons used "
            f"{cpu_ms:.0f} ms of CPU per process, together ({best['daemon_cpu_s']} CPU "
            f"seconds for {ended} processes). On {cpus} cores that alone caps the colony at about "
            f"{cpus * 1000 / cpu_ms:.0f} processes/s even with the machine to itself (it "
            f"was not: load average {best['load_average_1min'][0]} -> "
            f"{best['load_average_1min'][1]}); 200/s needs about {cpus * 1000 / 200:.0f} ms "
            "per process. With three or four members a process has k = 3 keepers (never",
            "   an even number above 2), and a noop costs about 17 direct messages (StoreSpec,",
            "   StoreAck, Prepare, Promise, Accept, Accepted, Decide to 2 remote keepers each,",
            "   an executor's own keeper answering locally, up to 3 Offers, a Decide to the",
            "   submitter), no gossip, and at each keeper 4 committed SQLite transactions",
            "   (stored, promised, accepted, decided: `synchronous = FULL`, an fsync each",
            "   unless batched). Each direct message is CBOR-encoded, Ed25519-signed,",
            "   Noise-encrypted and Yamux-framed in Python on one side and undone and",
            "   verified on the other (many to one peer share one envelope).",
        ]
        if prof:
            ex = {k: v for k, v in prof.items() if k != "owner"} or prof
            name, p = next(iter(ex.items()))
            parts = p["trio_thread_parts"]
            busy = p["trio_thread_samples"] / (p["samples_per_s"] * p["seconds"])
            libp2p = parts.get("py-libp2p streams: yamux, noise, sockets", 0)
            gossip = parts.get("gossip (py-libp2p pubsub)", 0)
            env = parts.get("envelope decode + verify (direct and gossip)", 0) + parts.get(
                "envelope encode + sign", 0
            )
            core = parts.get("core state machine", 0)
            out += [
                f"   py-spy on executor {name}: its trio thread was busy {busy * 100:.0f}% of "
                f"the time; of that, py-libp2p's streams (Yamux frames and window updates, "
                f"Noise, sockets) {libp2p * 100:.0f}%, py-libp2p pubsub {gossip * 100:.0f}%, "
                f"envelope sign/verify and CBOR {env * 100:.0f}%, and the protocol core "
                f"itself only {core * 100:.0f}%. The transport, not the protocol logic, is "
                "where the CPU goes.",
            ]
        if prof.get("owner"):
            api = prof["owner"]["trio_thread_parts"].get("local API (HTTP)", 0)
            out.append(
                f"   The owner's trio thread spent {api * 100:.0f}% of its busy time in the "
                "local API: HTTP parsing, signed-request checks, JSON, creating and signing "
                "the specs, and the event stream the benchmark reads its results from (it "
                "serves every event of every process, about ten per process)."
            )
        out += [
            f"2. *Executor concurrency.* {tp['executors']} executors x capacity "
            f"{tp['capacity_per_executor']} = {slots} processes in flight. An executor holds "
            f"a slot from its claim (Prepare) to its decision for {held:.0f} ms (p50) in the "
            f"best run, so the executors cannot finish more than about "
            f"{slots / held * 1000:.0f} processes/s"
            + (
                f" (not what bound the best run, at {best['successful_per_s']}/s; "
                f"acknowledged -> running p50 "
                f"{best['acknowledged_to_running_ms'].get('p50', math.nan):.0f} ms)"
                if slots / held * 1000 > 2 * best["successful_per_s"]
                else f"; the rest waits (acknowledged -> running p50 "
                f"{best['acknowledged_to_running_ms'].get('p50', math.nan):.0f} ms)"
            )
            + ". The round trips are slow because the daemons are CPU-bound (1.).",
        ]
        one = [run for run in tp["runs"] if run["clients"] == 1]
        if one:
            sub = one[0]["submit_ms"]["p50"]
            out.append(
                f"2. *One client waits for each acknowledgement.* A submit returns once a "
                f"majority of keepers stored the spec: p50 {sub:.0f} ms under load, so one "
                f"client thread cannot submit more than about {1000 / sub:.0f}/s "
                f"(it got {one[0]['acknowledged_per_s']}/s acknowledged, "
                f"{one[0]['successful_per_s']}/s successful)."
            )
        worst = max(tp["runs"], key=lambda run: run.get("without_result_when_submits_ended", 0))
        if worst.get("without_result_when_submits_ended", 0) >= BACKLOG:
            out += _md_backlog(worst)
        if PUBLISH_RATE:
            out.append(
                f"3. *Gossip publish pacing.* A daemon publishes at most {PUBLISH_RATE:g} "
                "gossip messages per second (`PUBLISH_RATE` in node/daemon.py, because "
                "py-libp2p drops bursts), each a Batch of every announcement queued for its "
                "topic meanwhile, so pacing adds at most "
                f"{1000 / PUBLISH_RATE:.0f} ms and does not cap the rate of announcements."
            )
        spread = [run for run in tp["runs"] if "spread" in run["submitted_through"]]
        if spread:
            sp = spread[0]
            out.append(
                f"4. *Submitting through more daemons does not help*: spread over all four, "
                f"{sp['successful_per_s']}/s ({sum(sp['daemon_cpu_s'].values()):.0f} CPU s "
                "in the daemons): the executors then also serve the API and event streams, "
                "and four publishers announce, on the same two cores."
            )
        out.append("")
    lat = results.get("latency", {})
    if lat:
        name = "bench" if "bench" in lat else next(iter(lat))
        r = lat[name]
        st = r["stages_ms"]

        def p50(start: str) -> float:
            """The p50 of the stage whose label starts with ``start``."""
            found = [v for k, v in st.items() if k.strip().startswith(start)]
            return float(found[0].get("p50", math.nan)) if found else math.nan

        store = p50("submit -> stored") + p50("stored -> acknowledged")
        out += [
            f"**Latency (p50 {r['result_ms']['p50']:.0f} ms with params {name}, target 50 ms).**",
            "",
            "5. *The path is five sequential steps between processes*, each one or more",
            "   Noise/Yamux hops and most with an fsync at the receiving keepers: store",
            f"   (submit -> acknowledged, p50 {store:.0f} ms: the API's own commit of the",
            "   submission, the submitter's keeper, then a majority of keepers); announce",
            "   (an Offer straight to the best-ranked executors, the claim begun at the",
            "   executor's own keeper: p50",
            f"   {p50('acknowledged -> executor'):.0f} ms); prepare (a majority promised: p50",
            f"   {p50('own keeper promised -> running'):.0f} ms); accept (running -> chose, the",
            f"   noop included: p50 {p50('running -> chose'):.0f} ms); and the Decide to the",
            f"   submitter (p50 {p50('chose -> Decide received'):.0f} ms). Five daemons share",
            f"   {cpus} cores with each other and the machine's other work, so each hop also",
            "   waits for a CPU; the stage p95s are 2-4x their p50s.",
        ]
        slots = r["claim_slots"]["by_best_slot"]
        late = sum(v["count"] for k, v in slots.items() if k != "0")
        total = sum(v["count"] for v in slots.values())
        defaults = lat.get("defaults")
        line = (
            f"6. *Claim slots.* {late} of {total} processes had no executor in claim slot 0 "
            f"(exact ranks: the best-ranked executor claims at once, the next only "
            f"{r['claim_slots']['claim_slot_s']:g} s later if it did not)."
        )
        if defaults:
            d = defaults["claim_slots"]["by_best_slot"]
            dl = sum(v["count"] for k, v in d.items() if k != "0")
            line += (
                f" With the default 0.5 s slot, {dl} of "
                f"{sum(v['count'] for v in d.values())} processes waited it: p95 "
                f"{defaults['result_ms']['p95']:.0f} ms, p99 {defaults['result_ms']['p99']:.0f}"
                " ms."
            )
        out.append(line)
        c = r["contention"]
        fails = [f for rr in lat.values() for f in rr["failed"]]
        tp_fails = "; ".join(
            f"{run['failed']} of {run['submitted']} in the {run['clients']}-client throughput "
            f"run {run['submitted_through']} ({run['contention']['contended']} contended)"
            for entry in results.get("throughput", {}).values()
            for run in entry["runs"]
            if run["failed"]
        )
        submitted = sum(rr["submitted"] for rr in lat.values())
        out += [
            f"7. *Claim contention.* Among fewer than {EXACT_RANKS} matching executors "
            "each knows its exact rank, so one claims first and another only if it was "
            f"slow or busy: {c['contended']} of {c['processes']} processes were claimed by "
            f"two or more executors at once and {c['needed_epoch_2_or_more']} needed "
            "another ballot epoch; a claimant refused because another holds a live lease "
            "gives up (`leased`) instead of retrying at a higher epoch.",
            f"   Failed noops: {len(fails)} of {submitted} submitted in the latency runs"
            + (f"; {tp_fails} in the throughput runs" if tp_fails else "")
            + ". (Before the keepers counted only leases whose holders renewed them, and "
            "before the exact ranks, 4-15% of noops failed `maxretries exceeded` after "
            "contended claims: git history of this file.)",
            "",
        ]
    if tp and "fast" in results.get("throughput", {}):
        fast = results["throughput"]["fast"]
        run = fast["runs"][0]
        out += [
            f"8. *Short timers collapse under load.* With the **fast** set (tests' FAST: "
            "re-announce after 2 s, query after 4 s, 3 s leases) and "
            f"{run['clients']} clients, {run['successful']} of {run['submitted']} processes "
            f"succeeded within the run ({run['without_result']} never got a result; "
            f"{run['contention']['contended']} "
            f"contended, {run['contention']['needed_epoch_2_or_more']} at epoch >= 2): the "
            "backlog collapse above sets in sooner, keepers re-announcing waiting processes "
            "after 2 s and querying their peers about them every 4 s.",
            "",
        ]
    join = results.get("join", {})
    if join:
        lines = []
        for name, r in join.items():
            slow = [run for run in r["runs"] if run["first_result_s"] > 0.2]
            lines.append(
                f"{name}: {len(slow)} of {len(r['runs'])} runs took > 0.2 s to the first "
                f"result ({', '.join(str(run['first_result_s']) for run in r['runs'])} s)"
            )
        any_r = next(iter(join.values()))
        out += [
            "**Join.**",
            "",
            f"9. *Process start-up.* `join` ({any_r['median']['join_s']:.2f} s) and `start` "
            f"({any_r['median']['start_s']:.2f} s) are each a new Python process: "
            f"{any_r['cli_startup_s']:.2f} s pass before any command does anything "
            "(interpreter, typer, libp2p imports); `start` then forks the daemon, which "
            "imports again and opens its host, and the CLI polls for it every 0.1 s.",
            "10. *The new member's first ballot.* The new daemon knows only the addresses of "
            "its ticket's bootstrap member; its first Prepare to the other keepers may not "
            "be deliverable yet and is then resent after `request_timeout` (1 s by default, "
            "0.25 s in bench): " + "; ".join(lines) + ".",
            "",
        ]
    # number the items in order ("N. " where an item begins)
    n = 0
    for i, line in enumerate(out):
        if re.match(r"^\d+\. ", line):
            n += 1
            out[i] = re.sub(r"^\d+\. ", f"{n}. ", line)
    return out


if __name__ == "__main__":
    sys.exit(main())
