"""The keeper ring's XOR-closest lookup (core/ranking.py ``KeeperRing.closest``) gives
exactly what sorting every member by its XOR distance gives, for any colony size and
any point: it decides who keeps every record, so a difference would move records."""

from __future__ import annotations

import heapq

from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.core.ranking import KeeperRing
from colonyp2p.identity import dht_key

# member ids are base58 text: ASCII
members = st.lists(
    st.text(st.characters(codec="ascii"), min_size=1, max_size=12),
    min_size=1,
    max_size=300,
    unique=True,
)


def _by_scan(ids: list[str], target: int, n: int) -> list[str]:
    keys = [(dht_key(m), m) for m in ids]
    return [m for _, m in heapq.nsmallest(n, keys, key=lambda km: km[0] ^ target)]


@settings(max_examples=150, deadline=None)
@given(ids=members, target=st.integers(0, 2**256 - 1), n=st.integers(0, 400))
def test_the_closest_members_are_those_a_full_scan_finds_in_the_same_order(
    ids: list[str], target: int, n: int
) -> None:
    assert KeeperRing(1, ids).closest(target, n) == _by_scan(ids, target, n)


@settings(max_examples=50, deadline=None)
@given(ids=members, n=st.integers(1, 8))
def test_a_member_s_own_point_finds_it_first(ids: list[str], n: int) -> None:
    ring = KeeperRing(1, ids)
    for m in ids[:20]:
        assert ring.closest(dht_key(m), n)[0] == m


def test_unavailable_members_are_passed_over_in_a_large_colony() -> None:
    ids = [f"member-{i}" for i in range(5000)]
    ring = KeeperRing(1, ids)
    pid = "ab" * 32
    canonical = ring.keepers_for(pid, 5)
    assert list(canonical) == _by_scan(ids, int(pid, 16), 5)
    down = set(canonical[:3])
    chosen = ring.available_keepers_for(pid, 5, down.__contains__)
    assert list(chosen) == [m for m in _by_scan(ids, int(pid, 16), 10) if m not in down][:5]
