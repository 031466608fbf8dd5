"""Per-sender quotas: token buckets keyed by member, for what peers may make a node do
per unit of time (log lines received, labels stored). A bucket holds up to ``burst``
units and refills at ``rate`` a second; the buckets of the members heard from least
recently are forgotten beyond ``kept`` (a forgotten member starts again with a full
bucket, which bounds the table, not the member: it is a member, there are few).

Times are monotonic seconds (``trio.current_time()`` or ``time.monotonic()``).
"""

from __future__ import annotations

from collections import OrderedDict

KEPT = 4096  # members whose buckets are remembered


class Buckets:
    def __init__(self, rate: float, burst: float, *, kept: int = KEPT) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a bucket needs a positive rate and burst")
        self.rate, self.burst, self.kept = float(rate), float(burst), kept
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def available(self, key: str, now: float) -> float:
        """The units ``key`` may spend at ``now``."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def take(self, key: str, amount: float, now: float) -> bool:
        """Spend ``amount`` of ``key``'s units at ``now``; False (and nothing spent) when
        its bucket holds fewer."""
        tokens = self.available(key, now)
        if tokens < amount:
            return False
        self._buckets[key] = (tokens - amount, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.kept:
            self._buckets.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._buckets)
