"""Carrying out one scheduled fault on real daemons, and noticing the daemons that died
without being told to.

- partition / one_way / heal, loss, bandwidth: the topology's nftables sets and chains and
  tbf qdiscs (bench/faults/topology.py);
- kill / restart: SIGKILL to the daemon (tests/cluster.py ``kill9``), then ``start`` as the
  CLI starts it, in the node's namespace;
- pause / resume: SIGSTOP to the daemon's process group (its session: the daemon and any
  worker processes), SIGCONT after longer than a lease;
- skew / skew_off: the daemon is killed and started again under libfaketime (Debian's
  ``faketime``) with its wall clock (and monotonic clock, by a constant) that many seconds
  off, then again without; its API calls are made under the same clock (the local API
  refuses stale timestamps). libfaketime cannot move a running process's clock here: with
  the monotonic clock left alone its ``clock_nanosleep`` fails (EINVAL), so the skew comes
  with a restart;
- disk_full / disk_free: the disk node's home is a small tmpfs of its own (made by the run);
  a file fills it to ENOSPC, and is removed after; a daemon that stopped meanwhile (the
  documented behaviour: it stops before it acknowledges what it could not keep) is
  started again. Its log lives outside that file system, so no event is lost.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import time
from contextlib import suppress
from pathlib import Path

from cluster import Node

from .history import History
from .schedule import Event
from .topology import Topology

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faketime_missing() -> str:
    if not Path(FAKETIME_LIB).exists() or shutil.which("faketime") is None:
        return "libfaketime (Debian's faketime) is not installed"
    return ""


class Injector:
    def __init__(
        self,
        topology: Topology,
        nodes: dict[str, Node],
        history: History,
        disk_home: Path | None,
    ) -> None:
        self.topology = topology
        self.nodes = nodes
        self.history = history
        self.disk_home = disk_home  # the disk node's tmpfs, or None when none was made
        self.base_prefix = {name: list(node.prefix) for name, node in nodes.items()}
        self.down: set[str] = set()  # killed or stopped by the harness, on purpose
        self.paused: set[str] = set()
        self.disk_full = False
        # (from, to, seconds): when a node's clock ran off, for reading its log's times
        self.skews: dict[str, list[tuple[float, float, float]]] = {n: [] for n in nodes}
        self._skewed_since: dict[str, tuple[float, float]] = {}
        self.restarts = 0

    # --- the schedule ---------------------------------------------------------------

    def apply(self, event: Event) -> None:
        handler = getattr(self, f"_{event.kind}")
        try:
            note: str = handler(event)
        except Exception as exc:  # a fault that could not be made is recorded, not fatal
            note = f"failed: {type(exc).__name__}: {exc}"
        # a handler's "ok: ..." is an observation about a fault that was made
        done = not note or note.startswith("ok: ")
        self.history.add("fault", event=_event_dict(event), done=done, note=note)
        print(f"  fault {event.describe()}" + (f"  [{note}]" if note else ""), flush=True)

    def heal_all(self) -> None:
        """Whatever is still in force at the end (a replayed schedule cut short, an
        interrupted run): network whole, every daemon running, unskewed."""
        for name in list(self.paused):
            self._resume(Event(0, "resume", (name,)))
        if self.topology.net is not None:
            self.topology.heal()
            for name in self.nodes:
                if self.topology.can_filter() == "":
                    self.topology.loss(name, 0)
                self.topology.bandwidth(name, 0)
        if self.disk_full:
            self._disk_free(Event(0, "disk_free", ()))
        for name in list(self._skewed_since):
            self._skew_off(Event(0, "skew_off", (name,)))
        for name in list(self.down):
            self._start(name)

    def resume_all(self) -> None:
        for name in list(self.paused):
            with suppress(Exception):
                self._resume(Event(0, "resume", (name,)))

    # --- daemons that died on their own -----------------------------------------------

    def watch(self) -> None:
        """Record (and start again) each daemon that exited without the harness's doing."""
        for name, node in self.nodes.items():
            if name in self.down or not node.children:
                continue
            code = node.children[-1].poll()
            if code is None:
                continue
            tail = _tail(node)
            # the disk node stopped by its full disk: also when the exit is noticed just
            # after the disk was emptied (a write failed while full, the exit came later)
            disk = (
                self.disk_home is not None
                and name == self._disk_name()
                and (self.disk_full or any("StoreFull" in line for line in tail))
            )
            self.history.add("crash", node=name, code=code, log_tail=tail, disk_full=disk)
            print(
                f"  {name}'s daemon exited {code}" + (" (disk full)" if disk else " UNEXPECTEDLY")
            )
            self.down.add(name)
            if not (disk and self.disk_full):  # a full disk's node comes back at disk_free
                self._start(name)

    # --- each fault -------------------------------------------------------------------

    def _partition(self, e: Event) -> str:
        return self.topology.partition(e.args["groups"])

    def _one_way(self, e: Event) -> str:
        return self.topology.one_way(e.nodes[0], e.args["to"])

    def _heal(self, e: Event) -> str:
        return self.topology.heal()

    def _loss(self, e: Event) -> str:
        for name in e.nodes:
            why = self.topology.loss(name, int(e.args["percent"]))
            if why:
                return why
        return ""

    def _loss_off(self, e: Event) -> str:
        for name in e.nodes:
            why = self.topology.loss(name, 0)
            if why:
                return why
        return ""

    def _bandwidth(self, e: Event) -> str:
        return self.topology.bandwidth(e.nodes[0], float(e.args["mbit"]))

    def _bandwidth_off(self, e: Event) -> str:
        return self.topology.bandwidth(e.nodes[0], 0)

    def _kill(self, e: Event) -> str:
        name = e.nodes[0]
        if name in self.down:
            return "already down"
        self._sigkill(name)
        return ""

    def _restart(self, e: Event) -> str:
        name = e.nodes[0]
        if name not in self.down:
            return "not down"
        if self.disk_full and name == self._disk_name():
            return "its disk is full: it comes back at disk_free"
        self._start(name)
        return ""

    def _pause(self, e: Event) -> str:
        name = e.nodes[0]
        if name in self.down:
            return "down"
        os.killpg(self.nodes[name].pid, signal.SIGSTOP)
        self.paused.add(name)
        return ""

    def _resume(self, e: Event) -> str:
        name = e.nodes[0]
        if name not in self.paused:
            return "not paused"
        self.paused.discard(name)
        os.killpg(self.nodes[name].pid, signal.SIGCONT)
        return ""

    def _skew(self, e: Event) -> str:
        name, seconds = e.nodes[0], float(e.args["seconds"])
        why = faketime_missing()
        if why:
            return why
        if name in self.down or name in self.paused or name in self._skewed_since:
            return "down, paused or skewed already"
        self._sigkill(name)
        node = self.nodes[name]
        node.prefix = [
            *self.base_prefix[name],
            "env",
            f"LD_PRELOAD={FAKETIME_LIB}",
            f"FAKETIME={seconds:+g}s",
        ]
        self._skewed_since[name] = (time.time(), seconds)
        self._start(name)
        return ""

    def _skew_off(self, e: Event) -> str:
        name = e.nodes[0]
        if name not in self._skewed_since:
            return "not skewed"
        if name not in self.down:
            self._sigkill(name)
        since, seconds = self._skewed_since.pop(name)
        self.skews[name].append((since, time.time(), seconds))
        self.nodes[name].prefix = list(self.base_prefix[name])
        self._start(name)
        return ""

    def _disk_full(self, e: Event) -> str:
        if self.disk_home is None:
            return "no small file system for the disk node (needs root and tmpfs)"
        filler = self.disk_home / "filler"
        block = b"\0" * (1 << 20)
        with filler.open("wb") as f:
            try:
                while True:
                    f.write(block)
                    f.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        self.disk_full = True
        return ""

    def _disk_free(self, e: Event) -> str:
        if self.disk_home is None:
            return "no small file system for the disk node"
        self.watch()  # a daemon that stopped while the disk was full is noted as such
        (self.disk_home / "filler").unlink(missing_ok=True)
        self.disk_full = False
        name = self._disk_name()
        if name in self.down:
            self._start(name)
            return "ok: its daemon had stopped, started again"
        # SQLite writes into its WAL's pages already allocated: a short full disk may
        # not touch a daemon at all, which is worth knowing when reading a run
        return "ok: its daemon ran through it"

    # --- helpers ------------------------------------------------------------------------

    def _disk_name(self) -> str:
        assert self.disk_home is not None
        return self.disk_home.name

    def _sigkill(self, name: str) -> None:
        node = self.nodes[name]
        self.down.add(name)
        node.kill9()
        node.children[-1].wait()  # reaped

    def _start(self, name: str) -> None:
        node = self.nodes[name]
        remote = node._remote  # the cluster's API caller runs under the node's old prefix
        if remote is not None:
            remote.close()
            node._remote = None
        node.start()
        self.down.discard(name)
        self.restarts += 1

    def skew_intervals(self) -> dict[str, list[tuple[float, float, float]]]:
        out = {n: list(v) for n, v in self.skews.items()}
        for name, (since, seconds) in self._skewed_since.items():
            out[name].append((since, float("inf"), seconds))
        return out


def _event_dict(e: Event) -> dict[str, object]:
    return {"at": e.at, "kind": e.kind, "nodes": list(e.nodes), "args": e.args}


def _tail(node: Node, lines: int = 8) -> list[str]:
    try:
        return node.home.log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
