"""The work every framework runs, plain functions (stdlib only) shared by colonyp2p's
python executor (``executor.functions`` in config.json), Celery, Dask and Ray."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path


def noop(*_: object) -> None:
    """Nothing (an argument, if any, only makes each call a distinct task)."""
    return None


def add(*numbers: float, inputs: list[float] | None = None) -> float:
    """A fan-out child returns its number; the gather sums its parents' outputs."""
    return float(sum(numbers) + sum(v for v in inputs or () if isinstance(v, int | float)))


def attempt(path: str, hold: float) -> list[int]:
    """Notes each start and end in ``path``; the first attempt holds for ``hold`` seconds
    (it is killed meanwhile), a later one ends at once. Returns (pid, parent pid)."""
    marker = Path(path)
    first = not marker.exists()
    with marker.open("a") as f:
        f.write(f"start {os.getpid()} {os.getppid()} {time.time()}\n")
    if first:
        time.sleep(hold)
    with marker.open("a") as f:
        f.write(f"done {os.getpid()} {time.time()}\n")
    return [os.getpid(), os.getppid()]


def attempts(path: str) -> dict[str, object]:
    """What ``attempt`` noted: how many starts and ends, the first start's (pid, ppid)."""
    lines = Path(path).read_text().splitlines() if Path(path).exists() else []
    starts = [line.split() for line in lines if line.startswith("start ")]
    return {
        "started": len(starts),
        "completed": sum(1 for line in lines if line.startswith("done ")),
        "first": [int(starts[0][1]), int(starts[0][2])] if starts else None,
    }


def checksum(data: bytes) -> list[int]:
    """The input's length and CRC-32, to show the worker got all of it intact."""
    return [len(data), zlib.crc32(data)]


def total(values: list[float]) -> float:
    """A gather that receives its parents' outputs as one list (Celery's chord, Dask)."""
    return float(sum(values))


def pid(*_: object) -> int:
    """The worker process's id."""
    return os.getpid()
