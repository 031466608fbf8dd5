"""Who keeps a process (XOR-closest members) and who should claim it first (rendezvous)."""

from __future__ import annotations

import hashlib
import heapq
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Final

from colonyp2p.identity import dht_key

_MASK64 = (1 << 64) - 1


def majority(n: int) -> int:
    return n // 2 + 1


def pid_key(pid: str) -> int:
    """Process ids are sha256 hex digests: their value is their place on the XOR ring."""
    return int(pid, 16)


KEY_BITS: Final = 256  # a member's ring position is a sha256 (dht_key)
_SCAN: Final = 48  # ranges this small are scanned rather than split further


class KeeperRing:
    """The members that may keep records, with their ring positions, in one membership version.

    The positions are kept sorted, so that the XOR-closest members of a point are found
    by walking the implicit binary trie of the sorted keys (``closest``): at each bit,
    the half of the range that agrees with the point is closer than the whole other
    half. That costs about ``k`` times the tree's depth (log2 of the members), not a
    scan of every member: with 10,000 members a scan was the simulator's largest cost.
    """

    __slots__ = ("_ids", "_sorted", "members", "version")

    def __init__(self, version: int, member_ids: Sequence[str]) -> None:
        self.version = version
        self.members = tuple(member_ids)
        # member ids differ, and so (sha256) do their keys
        order = sorted((dht_key(m), m) for m in self.members)
        self._sorted = [key for key, _ in order]
        self._ids = [m for _, m in order]

    def closest(self, target: int, n: int) -> list[str]:
        """The ``n`` members XOR-closest to ``target``, closest first (as a sort of every
        member by ``key ^ target`` would give: no two keys are at the same distance)."""
        keys = self._sorted
        out: list[int] = []  # indexes into keys, closest first

        def visit(lo: int, hi: int, bit: int) -> None:
            # every key in [lo, hi) has the same bits above ``bit``
            if len(out) >= n or lo >= hi:
                return
            if hi - lo <= _SCAN or bit < 0:
                need = n - len(out)
                out.extend(heapq.nsmallest(need, range(lo, hi), key=lambda i: keys[i] ^ target))
                return
            ones = (keys[lo] >> (bit + 1) << (bit + 1)) | (1 << bit)
            mid = bisect_left(keys, ones, lo, hi)  # the first key with this bit set
            if target >> bit & 1:
                visit(mid, hi, bit - 1)
                visit(lo, mid, bit - 1)
            else:
                visit(lo, mid, bit - 1)
                visit(mid, hi, bit - 1)

        visit(0, len(keys), KEY_BITS - 1)
        ids = self._ids
        return [ids[i] for i in out[:n]]

    def keepers_for(self, pid: str, k: int) -> tuple[str, ...]:
        """The canonical keepers of ``pid``: the ``k`` XOR-closest members, closest first."""
        return tuple(self.closest(pid_key(pid), k))

    def available_keepers_for(
        self, pid: str, k: int, unavailable: Callable[[str], bool]
    ) -> tuple[str, ...]:
        """The ``k`` XOR-closest members for which ``unavailable`` is false, closest first;
        where fewer are available, the closest unavailable ones fill the set (so it is
        the canonical set when none is available). Deterministic given ``unavailable``."""
        target = pid_key(pid)
        size = len(self._sorted)
        take = min(2 * k, size)
        while True:
            best = self.closest(target, take)
            chosen = [m for m in best if not unavailable(m)][:k]
            if len(chosen) == k or take >= size:
                break
            take = min(2 * take, size)  # more were skipped than we looked past
        if len(chosen) < k:
            fill = [m for m in best if m not in chosen][: k - len(chosen)]
            picked = set(chosen).union(fill)
            return tuple(m for m in best if m in picked)
        return tuple(chosen)


@lru_cache(maxsize=65536)
def config_tag(keepers: tuple[str, ...]) -> str:
    """Names one keeper set. A process's record moves between keeper sets when the membership
    changes; ballot messages carry the tag so that a keeper never mixes up the record of one
    set with a ballot meant for another (both may be held by the same member)."""
    return hashlib.sha256("\n".join(keepers).encode()).hexdigest()[:16]


def distance(pid: str, member_id: str) -> int:
    return pid_key(pid) ^ dht_key(member_id)


def _mix(member_key: int, pid_bits: int) -> int:
    """splitmix64 of a member's key and a process's first 64 bits."""
    x = (member_key ^ pid_bits) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def rendezvous_score(member_key: int, pid: str) -> float:
    """A deterministic pseudo-random number in [0, 1) per (member, process)."""
    return _mix(member_key, int(pid[:16], 16)) / 2.0**64


def rendezvous_rank(member_key: int, others: Iterable[int], pid: str, limit: int) -> int:
    """How many of ``others`` (member keys) score below ``member_key`` for ``pid``,
    counted up to ``limit``. Every executor that hears an announcement ranks itself
    among all matching executors, so this is the simulator's hottest loop: it stops at
    ``limit`` (an executor ranked that far down ignores the process anyway), which
    makes a colony's ranking work about n log n per process instead of n squared."""
    bits = int(pid[:16], 16)
    mine = _mix(member_key, bits)
    rank = 0
    for key in others:
        if _mix(key, bits) < mine:
            rank += 1
            if rank >= limit:
                break
    return rank
