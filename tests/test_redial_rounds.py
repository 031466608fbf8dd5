"""A node of a large colony redials a bounded number of members per round: the bootstrap
members first, then a random sample of the others (node/redial.py)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import cast

import trio

from colonyp2p.identity import Identity
from colonyp2p.node.peers import PeerBook
from colonyp2p.node.redial import DIALS_PER_ROUND, Redialer
from colonyp2p.node.store import Store
from colonyp2p.node.transport import Transport


class _Transport:
    def __init__(self) -> None:
        self.member_id = Identity.generate().member_id
        self.up: set[str] = set()

    def add_addrs(self, member: str, addrs: list[str]) -> None:
        pass

    def connected(self) -> set[str]:
        return set(self.up)


def test_a_round_dials_the_bootstrap_members_then_a_sample_of_the_rest(tmp_path: Path) -> None:
    ids = [Identity.from_seed(bytes([i % 256, i // 256]) * 16).member_id for i in range(200)]
    fake = _Transport()
    members = {fake.member_id, *ids}
    boot = ids[:3]
    with Store(tmp_path / "state.db") as store:
        book = PeerBook(store)
        for i, m in enumerate(ids):
            book.learn(m, [f"/ip4/192.0.2.{i % 250 + 1}/tcp/4001"])
        book.save(members.__contains__)
        bootstrap = [f"/ip4/192.0.2.1/tcp/4001/p2p/{m}" for m in boot]
        rng = random.Random(1)
        redial = Redialer(
            cast(Transport, fake), store, bootstrap, members.__contains__, jitter=rng.random
        )
        trio.run(redial.load)
        first = redial.round_targets()
        second = redial.round_targets()
    assert len(first) == len(second) == DIALS_PER_ROUND
    assert set(first[:3]) == set(second[:3]) == set(boot)  # the bootstrap members, each round
    assert set(first[3:]) != set(second[3:])  # another sample of the others
    assert len(set(first)) == DIALS_PER_ROUND and fake.member_id not in first
    fake.up = set(first)  # connected members are not dialed again
    with Store(tmp_path / "state.db") as store:
        assert not set(first) & set(redial.round_targets())
