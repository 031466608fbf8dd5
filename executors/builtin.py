"""Small functions every node serves out of the box, so a new colony can run real work
before anyone registers their own: arithmetic, text, hashing, a CPU-bound prime count.

Any member may ask any node for them, and they run in a thread of the node's own
process (executors/python.py), where nothing can be killed: so every argument that
sets how much memory or time a call takes is bounded (``MAX_PRIMES``, ``MAX_SLEEP``,
``MAX_TEXT``) and refused beyond with a ValueError that says the bound, and the calls
that take long (``sleep``, ``primes``) look at ``stop``, which the executor sets when
the run is cancelled (lease lost, cancel, maxexectime), so that they end with it.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from contextvars import ContextVar
from typing import Any

__all__ = ["add", "echo", "fail", "noop", "primes", "sha256", "sleep", "wordcount"]

MAX_PRIMES = 50_000_000  # primes(limit): a sieve of limit bytes, about 0.5 s of CPU
MAX_SLEEP = 3600.0  # seconds
MAX_TEXT = 1 << 20  # characters of sha256's and wordcount's text (the API's body limit)

# Set by the executor around a call in its thread: set once the run is over, when the
# call should stop. Unset in a worker process, which is killed instead.
STOP: ContextVar[threading.Event | None] = ContextVar("colonyp2p_builtin_stop", default=None)


class Stopped(Exception):
    """The run ended (cancelled, lease lost, maxexectime) while the call was going."""


def _check_stop() -> None:
    stop = STOP.get()
    if stop is not None and stop.is_set():
        raise Stopped("stopped: its run was cancelled or ran out of time")


def _shown(value: object) -> str:
    """``value`` for an error message, without printing a number of a million digits."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _text(fn: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValueError(f"{fn}: text must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"{fn}: text may be {MAX_TEXT} characters at most, got {len(text)}")
    return text


def noop() -> None:
    return None


def echo(*args: Any, **kwargs: Any) -> Any:
    """Its arguments back (and a workflow child's ``inputs``)."""
    return {"args": list(args), "kwargs": kwargs}


def add(*numbers: float, inputs: list[Any] | None = None) -> float:
    """The sum of its arguments and of its parents' numeric outputs."""
    extra = [v for v in inputs or () if isinstance(v, int | float)]
    return float(sum(numbers) + sum(extra))


def sleep(seconds: float) -> float:
    """Wait ``seconds`` (up to MAX_SLEEP), or until the run is stopped."""
    ok = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not ok or not 0 <= seconds <= MAX_SLEEP:  # NaN fails the comparison too
        raise ValueError(f"sleep: seconds must be from 0 to {MAX_SLEEP:g}, got {_shown(seconds)}")
    stop = STOP.get()
    if stop is None:
        time.sleep(float(seconds))
    elif stop.wait(float(seconds)):
        _check_stop()
    return float(seconds)


def fail(message: str = "failed on purpose") -> None:
    raise RuntimeError(message)


def sha256(text: str) -> str:
    return hashlib.sha256(_text("sha256", text).encode()).hexdigest()


def wordcount(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in _text("wordcount", text).lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def primes(limit: int) -> int:
    """How many primes are below ``limit`` (a CPU-bound job), ``limit`` up to MAX_PRIMES."""
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_PRIMES:
        raise ValueError(
            f"primes: limit must be a whole number from 0 to {MAX_PRIMES}, got {_shown(limit)}"
        )
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, math.isqrt(limit - 1) + 1):
        if sieve[i]:
            _check_stop()
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sieve.count(1)
