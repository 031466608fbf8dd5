"""One run of the fault harness, from the namespaces to the verdict; everything it started
(daemons, API callers, namespaces, the disk node's tmpfs) is gone when it returns or
raises, Ctrl-C included."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cluster import FAST, Cluster, Node, wait_for

from .checker import ENDED, Verdict, check
from .faults import Injector
from .history import History, Record, from_daemon_events
from .schedule import Schedule, generate
from .topology import Topology
from .workload import ApiLine, Client

DISK_MB = 48  # the disk node's home: room for its state at these workloads, and quick to fill


@dataclass
class Options:
    nodes: int = 5
    seconds: float = 120.0  # of faults (and workload); then the drain
    seed: int = 1
    loopback: bool = False
    rate: float = 3.0  # processes a second submitted, all clients together
    clients: int = 3
    workflow_share: float = 0.2  # of submissions
    sleep_share: float = 0.5  # of single specs, that sleep 1 to 4 s rather than echo
    drain: float = 180.0  # at most this long for every acknowledged process to end
    replay: Path | None = None  # a schedule file written by an earlier run
    schedule: Schedule | None = None  # or one made by the caller (the test's)
    main: dict[str, int] | None = None  # episode weights (schedule.MAIN by default)
    network: dict[str, int] | None = None
    params: dict[str, float] = field(default_factory=lambda: dict(FAST))
    quiet: bool = False


@dataclass
class Outcome:
    verdict: Verdict
    schedule: Schedule
    records: list[Record]
    mode: str
    why_loopback: str
    started: float  # wall clock when the workload started
    seconds: dict[str, float]  # set-up, faults, drain
    restarts: int


class LogTail:
    """The JSON events of every daemon's log, read incrementally (a log of a long run is
    large, and it is read every few seconds while draining)."""

    def __init__(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        self.offsets = dict.fromkeys(nodes, 0)
        self.events: dict[str, list[Record]] = {n: [] for n in nodes}
        self._decided: set[str] = set()

    def poll(self) -> None:
        for name, node in self.nodes.items():
            try:
                with node.home.log_path.open("rb") as f:
                    f.seek(self.offsets[name])
                    chunk = f.read()
            except FileNotFoundError:
                continue
            end = chunk.rfind(b"\n") + 1  # a line being written is read next time
            self.offsets[name] += end
            for line in chunk[:end].decode(errors="replace").splitlines():
                _, _, tail = line.partition(" INFO ")  # as tests/cluster.py ``events``
                if tail.startswith("{"):
                    with suppress(json.JSONDecodeError):
                        e = json.loads(tail)
                        self.events[name].append(e)
                        if e.get("kind") in ("decided", "chose") and e.get("outcome") != "moved":
                            self._decided.add(e["pid"])

    def decided(self) -> set[str]:
        """The processes some node logged a real decision for (not a hand-over)."""
        return self._decided


def run(opts: Options, workdir: Path, history_path: Path) -> Outcome:
    names = ["owner", *(f"n{i}" for i in range(1, opts.nodes))]
    lease = float(opts.params.get("lease_seconds", 10.0))
    if opts.schedule is not None:
        schedule = opts.schedule
    elif opts.replay is not None:
        schedule = Schedule.read(opts.replay)
    else:
        schedule = generate(
            opts.seed, names, opts.seconds, lease, main=opts.main, network=opts.network
        )
    names = schedule.nodes

    def say(text: str) -> None:
        if not opts.quiet:
            print(text, flush=True)

    say(schedule.describe())
    t_setup = time.monotonic()
    topology = Topology(names, loopback=opts.loopback, tag=f"cpf{int(time.time()) % 100000}")
    c = Cluster(workdir)
    history = History(history_path)
    disk_home: Path | None = None
    stop = threading.Event()
    clients: list[Client] = []
    injector: Injector | None = None
    try:
        topology.start()
        if topology.why_loopback:
            say(f"loopback, no network faults: {topology.why_loopback}")
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name in names:
            home = workdir / name
            home.mkdir(parents=True, exist_ok=True)
            if name == schedule.disk_node and _mount_tmpfs(home):
                disk_home = home
            # the log outside the node's home: a full disk loses no event
            (home / "daemon.log").symlink_to(workdir / "logs" / f"{name}.log")
        # --- the colony: the owner founds it, the others join, all in their namespaces -
        owner = c.found(
            prefix=topology.prefixes["owner"], listen=topology.listen("owner"), params=opts.params
        )
        per = {n: {"prefix": topology.prefixes[n], "listen": topology.listen(n)} for n in names[1:]}
        joined = c.join_all(owner, names[1:], per=per, params=opts.params)
        nodes = {"owner": owner, **{node.name: node for node in joined}}
        for node in nodes.values():
            wait_for(
                partial(node.has_version, len(names)), 60, f"{node.name} at the full membership"
            )
        setup = time.monotonic() - t_setup
        say(f"{len(names)} daemons up ({topology.mode}) in {setup:.0f} s")

        # --- workload and faults ---------------------------------------------------------
        injector = Injector(topology, nodes, history, disk_home)
        started = time.time()
        history.add("begin", started, mode=topology.mode, nodes=names, seed=schedule.seed)
        order = [nodes[n] for n in names]
        for i in range(opts.clients):
            client = Client(
                i,
                order,
                history,
                rate=opts.rate / opts.clients,
                workflow_share=opts.workflow_share,
                sleep_share=opts.sleep_share,
                seed=schedule.seed,
                stop=stop,
            )
            clients.append(client)
            client.start()
        logs = LogTail(nodes)
        t0 = time.monotonic()
        last_said = t0
        for event in [*schedule.events, None]:
            at = schedule.seconds if event is None else event.at
            while time.monotonic() - t0 < at:
                injector.watch()
                if time.monotonic() - last_said > 15:
                    last_said = time.monotonic()
                    logs.poll()
                    say(_progress(history, logs, time.monotonic() - t0))
                time.sleep(min(0.5, max(0.0, at - (time.monotonic() - t0))))
            if event is not None:
                injector.apply(event)
        injector.heal_all()
        stop.set()
        for client in clients:
            client.join(timeout=60)
        end_of_faults = time.time()
        history.add("end_of_faults", end_of_faults)
        faults_s = time.monotonic() - t0
        say(f"faults over after {faults_s:.0f} s; draining")

        # --- every acknowledged process ends (or the drain's deadline passes) -----------
        t_drain = time.monotonic()
        acked = {
            p
            for r in history.records
            if r["type"] == "ack" and r["acknowledged"]
            for p in r["pids"]
        }
        submitter = {
            p: r["node"] for r in history.records if r["type"] == "submit" for p in r["pids"]
        }
        pending = set(acked)
        lines = {n: ApiLine(node) for n, node in nodes.items()}

        def final(pid: str, *, ended_only: bool) -> bool:
            """Record how ``pid`` stands, asked where it was submitted (where ended, if
            ``ended_only``); whether it was recorded."""
            view = lines[submitter[pid]].call("process", pid)
            if ended_only and view["state"] not in ENDED:
                return False
            history.add(
                "final",
                pid=pid,
                state=view["state"],
                executor=view["executor"],
                node=submitter[pid],
            )
            return True

        try:
            while time.monotonic() - t_drain < opts.drain:
                injector.watch()
                logs.poll()
                pending -= logs.decided()
                if len(pending) <= 100:
                    for pid in sorted(pending):
                        with suppress(Exception):
                            if final(pid, ended_only=True):
                                pending.discard(pid)
                if not pending:
                    break
                say(f"  draining: {len(pending)} acknowledged processes not ended yet")
                time.sleep(3.0)
            # how the rest stand, for the report: a few, within a minute (a view asks the
            # record's keepers, which may not answer)
            asked_until = time.monotonic() + 60
            for pid in sorted(pending)[:100]:
                if time.monotonic() > asked_until:
                    break
                with suppress(Exception):
                    final(pid, ended_only=False)
        finally:
            for line in lines.values():
                line.close()
        drain_s = time.monotonic() - t_drain
        injector.watch()
        logs.poll()
        skews = injector.skew_intervals()
        for name in names:
            history.extend(from_daemon_events(name, logs.events[name], skews[name]))
        verdict = check(history.records, end_of_faults=end_of_faults)
        verdict.figures["unexpected_exits"] = len(verdict.violations["crash"])
        verdict.figures["restarts"] = injector.restarts
        return Outcome(
            verdict,
            schedule,
            list(history.records),
            topology.mode,
            topology.why_loopback,
            started,
            {"setup": round(setup, 1), "faults": round(faults_s, 1), "drain": round(drain_s, 1)},
            injector.restarts,
        )
    finally:
        stop.set()
        for client in clients:  # each closes its API callers on the way out
            client.join(timeout=5)
        if injector is not None:
            injector.resume_all()  # a stopped daemon is killed all the same, but not left so
        c.shutdown()
        history.close()
        if disk_home is not None:
            subprocess.run(
                ["umount", "-l", str(disk_home)], capture_output=True, timeout=30, check=False
            )
        topology.close()


def _mount_tmpfs(home: Path) -> bool:
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", str(home)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


def _progress(history: History, logs: LogTail, elapsed: float) -> str:
    records = list(history.records)  # the clients append meanwhile
    acked = sum(len(r["pids"]) for r in records if r["type"] == "ack" and r["acknowledged"])
    errors = sum(r["type"] == "submit_error" for r in records)
    decided = len(logs.decided())
    return f"  {elapsed:5.0f} s: {acked} acknowledged, {decided} decided, {errors} failed submits"


def summary(outcome: Outcome) -> dict[str, Any]:
    v = outcome.verdict
    return {"ok": v.ok, "counts": v.counts(), **v.figures, "seconds": outcome.seconds}
