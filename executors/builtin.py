"""Small functions every node serves out of the box, so a new colony can run real work
before anyone registers their own: arithmetic, text, hashing, a CPU-bound prime count."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

__all__ = ["add", "echo", "fail", "noop", "primes", "sha256", "sleep", "wordcount"]


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
    time.sleep(float(seconds))
    return float(seconds)


def fail(message: str = "failed on purpose") -> None:
    raise RuntimeError(message)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def wordcount(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


def primes(limit: int) -> int:
    """How many primes are below ``limit`` (a CPU-bound job)."""
    if limit < 3:
        return 0
    sieve = bytearray([1]) * limit
    sieve[0:2] = b"\0\0"
    for i in range(2, math.isqrt(limit - 1) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, limit, i)))
    return sum(sieve)
