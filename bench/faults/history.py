"""The run's history: one JSON object a line, appended as things happen (thread-safe), and
read back by the checker. Every record has ``type`` and ``t`` (wall-clock seconds; for
events read from a daemon's log, corrected by the clock skew the harness gave that node).

Types written by the harness itself:
  ``submit``       {client, node, kind: single|workflow, pids, parents: {pid: [pid]}, workflow}
  ``ack``          {client, node, pids, acknowledged: bool}
  ``submit_error`` {client, node, kind, error} (the answer never came: pids unknown)
  ``fault``        {event: {...}, done: bool, note}
  ``crash``        {node, code, log_tail} (a daemon that exited without being told to)
  ``final``        {pid, state, executor, node} (the process as a node shows it at the end)
Read from the daemons' logs after the run (tests/cluster.py ``events``):
  ``start``    {node, pid, epoch}             (``running``: an executor starts a run)
  ``promised`` {node, pid, epoch, version}    (a keeper promised a ballot)
  ``accepted`` {node, pid, epoch, version, value}
  ``decided``  {node, pid, epoch, value, outcome, by: keeper|proposer}
  ``result``   {node, pid, outcome, executor} (the submitter's node learned the result)
  ``fence``    {node, pid, what: fenced|lease_lost|late_result, epoch}
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]


class History:
    """Appends records to a JSON-lines file and keeps them in memory for the report."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Record] = []
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")

    def add(self, type_: str, t: float | None = None, **fields: Any) -> Record:
        record: Record = {"type": type_, "t": time.time() if t is None else t, **fields}
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self.records.append(record)
            self._file.write(line + "\n")
            self._file.flush()  # a run that dies still leaves what happened so far
        return record

    def extend(self, records: Iterable[Record]) -> None:
        for record in records:
            self.add(record.pop("type"), record.pop("t"), **record)

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path) -> list[Record]:
    return list(_lines(path))


def _lines(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                record: Record = json.loads(line)
                yield record


def unskewed(t: float, skews: Iterable[tuple[float, float, float]]) -> float:
    """A time a daemon logged, on the real clock: ``skews`` are (from, to, seconds), the
    real times between which the harness ran that daemon's clock ``seconds`` off."""
    for since, until, seconds in skews:
        if since <= t - seconds <= until:
            return t - seconds
    return t


def from_daemon_events(
    node: str, events: Iterable[Record], skews: Iterable[tuple[float, float, float]] = ()
) -> list[Record]:
    """History records for the events in one daemon's log that the checker reads, in the
    log's order, their times on the real clock (see ``unskewed``)."""
    out: list[Record] = []
    skews = list(skews)
    for e in events:
        kind, pid = e.get("kind"), e.get("pid", "")
        t = unskewed(float(e.get("t", 0.0)), skews)
        base: Record = {"type": "", "t": t, "node": node, "pid": pid}
        if kind == "running":
            out.append({**base, "type": "start", "epoch": e.get("epoch")})
        elif kind == "promised":
            out.append(
                {**base, "type": "promised", "epoch": e.get("epoch"), "version": e.get("version")}
            )
        elif kind == "accepted":
            out.append(
                {
                    **base,
                    "type": "accepted",
                    "epoch": e.get("epoch"),
                    "version": e.get("version"),
                    "value": e.get("value"),
                    "outcome": e.get("outcome"),
                }
            )
        elif kind in ("decided", "chose"):
            out.append(
                {
                    **base,
                    "type": "decided",
                    "epoch": e.get("epoch"),
                    "value": e.get("value"),
                    "outcome": e.get("outcome"),
                    "by": "keeper" if kind == "decided" else "proposer",
                }
            )
        elif kind in ("fenced", "lease_lost", "late_result"):
            # a run that lost its lease, or whose result came too late: faults at work
            out.append({**base, "type": "fence", "what": kind, "epoch": e.get("epoch")})
        elif kind == "result":
            out.append(
                {
                    **base,
                    "type": "result",
                    "outcome": e.get("outcome"),
                    "executor": e.get("executor"),
                }
            )
    return out


def skews_from_faults(records: Iterable[Record]) -> dict[str, list[tuple[float, float, float]]]:
    """When each node's clock ran off, from the history's own ``skew``/``skew_off`` faults
    (for reading the logs of a run that was interrupted before it read them)."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    since: dict[str, tuple[float, float]] = {}
    for r in records:
        if r["type"] != "fault" or not r.get("done"):
            continue
        kind, nodes = r["event"]["kind"], r["event"]["nodes"]
        if kind == "skew":
            since[nodes[0]] = (r["t"], float(r["event"]["args"]["seconds"]))
        elif kind == "skew_off" and nodes[0] in since:
            start, seconds = since.pop(nodes[0])
            out.setdefault(nodes[0], []).append((start, r["t"], seconds))
    for name, (start, seconds) in since.items():
        out.setdefault(name, []).append((start, float("inf"), seconds))
    return out


def read_daemon_logs(logs: Path, records: Iterable[Record]) -> list[Record]:
    """The checker's records from every daemon log in ``logs`` (WORKDIR/logs/NAME.log)."""
    skews = skews_from_faults(records)
    out: list[Record] = []
    for log in sorted(logs.glob("*.log")):
        events = []
        for line in log.read_text(errors="replace").splitlines():
            _, _, tail = line.partition(" INFO ")  # as tests/cluster.py ``events``
            if tail.startswith("{"):
                try:
                    events.append(json.loads(tail))
                except json.JSONDecodeError:
                    continue
        out += from_daemon_events(log.stem, events, skews.get(log.stem, []))
    return out
