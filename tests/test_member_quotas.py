"""Quotas per member on what it makes a node store: labels pushed or pulled (node/fs.py)
and DHT provider records (node/discovery.py). Beyond them a member's input is refused,
counted by protocol and code as ``colonynode status`` shows them, and not stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from attacker import attacker
from cluster import cluster, wait_for
from test_discovery import COLONY as DHT_COLONY
from test_discovery import announced, eventually, link, network

from colonyp2p import wire
from colonyp2p.identity import Identity
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.exchange import BLOCKS_PROTOCOL, PushLabels, encode_request
from colonyp2p.mfs.labels import Label, LabelLog
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.node import fs as fs_module
from colonyp2p.node.discovery import content_key
from colonyp2p.node.framing import frame
from colonyp2p.node.fs import FsService
from colonyp2p.node.gate import label as protocol_label
from colonyp2p.node.quotas import Buckets

OWNER, USER = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x03" * 32)
MEMBERS = MembershipSet.genesis(OWNER, "quotas", 1.0, members=[Member(USER.member_id, "user")])
COLONY = MEMBERS.colony_id


class Counting:
    """The transport's side of refusals: counted by protocol and reason."""

    def __init__(self) -> None:
        self.rejections = wire.RejectionCounter()

    def refused(self, protocol: str, peer: object, exc: BaseException) -> None:
        self.rejections.count(exc, protocol_label(protocol))


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[FsService, Counting]]:
    transport = Counting()
    daemon: Any = SimpleNamespace(
        config=SimpleNamespace(mfs={"paths": [str(tmp_path)]}),
        home=SimpleNamespace(root=tmp_path / "home"),
        node=SimpleNamespace(membership=MEMBERS),
        transport=transport,
        _event=lambda *args: None,
    )
    fs = FsService(daemon)
    fs.store = BlockStore(tmp_path / "mfs")
    fs.log = LabelLog(COLONY)
    try:
        yield fs, transport
    finally:
        fs.store.close()


def labels(n: int, path: str = "/data") -> list[bytes]:
    return [
        Label.create(
            USER, COLONY, f"{path}/{i}", 1, cids.manifest_cid(i.to_bytes(4, "big")), [], 1.0
        ).encode()
        for i in range(n)
    ]


async def test_a_member_s_labels_beyond_its_rate_are_refused_and_not_stored(
    service: tuple[FsService, Counting],
) -> None:
    fs, transport = service
    fs._label_rates = Buckets(rate=0.001, burst=5)  # the same rule, smaller numbers
    raws = labels(8)
    assert await fs.receive_labels(USER.member_id, raws) == 5
    assert transport.rejections.by_protocol_dict() == {"blocks": {"label_rate": 1}}
    assert len(fs.label_ids()) == 5
    assert fs.store is not None and len(fs.store.labels()) == 5  # nothing more on disk
    # what was already here costs nothing: asked again, nothing is refused for it
    assert await fs.receive_labels(USER.member_id, raws[:5]) == 0
    assert transport.rejections.by_protocol_dict() == {"blocks": {"label_rate": 1}}
    # another member has a bucket of its own
    assert await fs.receive_labels(OWNER.member_id, raws[5:]) == 3


async def test_oversized_labels_and_label_sets_are_refused(
    service: tuple[FsService, Counting], monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, transport = service
    long_path = "/" + "/".join(["\U0001f600" * 255] * 16)  # 4,096 characters, 16 KiB
    big = Label.create(USER, COLONY, long_path, 1, cids.manifest_cid(b"x"), [], 1.0).encode()
    assert len(big) > fs_module.MAX_LABEL_BYTES
    assert await fs.receive_labels(USER.member_id, [big]) == 0
    monkeypatch.setattr(fs_module, "MAX_LABEL_SET_BYTES", 1000)
    raws = labels(10, "/set")
    taken = await fs.receive_labels(USER.member_id, raws)
    assert 0 < taken < 10
    assert sum(map(len, raws[:taken])) <= 1000
    assert transport.rejections.by_protocol_dict() == {"blocks": {"label_oversize": 2}}
    assert len(fs.label_ids()) == taken


async def test_provider_records_beyond_a_member_s_cap_are_refused_and_counted() -> None:
    async with network() as net:
        keeper = await net.add(max_provided=3)
        member = await net.add()
        await link(keeper, member)
        await net.start([keeper, member])
        await announced([member])  # its colony key reached the keeper: one record
        keys = [content_key(DHT_COLONY, f"snapshot-{i}") for i in range(5)]
        for key in keys:
            await member.discovery.provide(key)

        def refused() -> int:
            return (
                keeper.transport.rejections.by_protocol_dict()
                .get("kad", {})
                .get("provider_quota", 0)
            )

        async def settled() -> bool:
            return refused() >= 3

        await eventually(settled)
        assert keeper.discovery.held_providers()[member.id] == 3
        assert refused() == 3
        assert keeper.discovery.stats["provider_refused"] == 3
        # a member renews what it provides: a record already held is never refused
        await member.discovery.provide(keys[0])  # returns once the keeper echoed it
        assert refused() == 3
        assert keeper.discovery.held_providers()[member.id] == 3


async def test_a_member_pushing_an_oversized_label_to_a_daemon_is_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        mallory = c.join("mallory", owner, role="user", start=False)
        identity = mallory.home.identity()
        colony_id = owner.status()["colony_id"]
        path = "/" + "/".join(["\U0001f600" * 255] * 16)
        big = Label.create(identity, colony_id, path, 1, cids.manifest_cid(b"x"), [], 1.0)
        small = Label.create(identity, colony_id, "/ok", 1, cids.manifest_cid(b"y"), [], 1.0)
        push = frame(encode_request(PushLabels((big.encode(), small.encode()))))
        async with attacker(identity, owner.addrs[0]) as host:
            assert await host.send(BLOCKS_PROTOCOL, push) == "sent"

        def counted() -> dict[str, int] | None:
            refused: dict[str, int] = owner.status()["refused"].get("blocks", {})
            return refused if refused.get("label_oversize") else None

        refused = await trio.to_thread.run_sync(wait_for, counted, 30, "the refusal")
        assert refused == {"label_oversize": 1}, refused
        heads = owner.call(lambda api: api.fs("ls"))["labels"]
        assert [h["path"] for h in heads] == ["/ok"], heads
