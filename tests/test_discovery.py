"""Discovery over the Kademlia DHT: real hosts on 127.0.0.1, records signed, non-members out."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import KadDHT
from libp2p.peer.id import ID
from libp2p.records.record import make_signed_put_record

from colonyp2p import codec
from colonyp2p.errors import BadSignature, MalformedMessage
from colonyp2p.identity import Identity
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.node import discovery
from colonyp2p.node.discovery import AddrRecord, AddrValidator, Discovery, addr_key, content_key
from colonyp2p.node.transport import Transport

COLONY = "c0" * 32
TIMEOUT = 60.0  # generous: one process carries every host, and CI may be loaded


@pytest.fixture(autouse=True)
def quiet_libp2p() -> Iterator[None]:
    # py-libp2p logs a WARNING for every DHT request it serves; they would drown failures
    logger = logging.getLogger("libp2p")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@dataclass
class Node:
    identity: Identity
    transport: Transport
    discovery: Discovery

    @property
    def id(self) -> str:
        return self.identity.member_id


@dataclass
class Net:
    """Hosts in one nursery; ``members`` is the colony's membership as every member sees it."""

    nursery: trio.Nursery
    members: set[str] = field(default_factory=set)

    def is_member(self, member_id: str) -> bool:
        return member_id in self.members

    async def add(
        self, *, member: bool = True, is_member: Callable[[str], bool] | None = None, **kw: Any
    ) -> Node:
        identity = Identity.generate()
        if member:
            self.members.add(identity.member_id)
        gate = is_member or self.is_member
        transport = Transport(
            identity,
            COLONY,
            is_member=gate,
            on_message=lambda sender, msg: None,
            on_announcement=lambda sender, item: None,
            open_timeout=3.0,
        )
        await self.nursery.start(transport.run)
        kw = {"stagger": 0.3, "timeout": 10.0} | kw
        return Node(
            identity, transport, Discovery(transport, COLONY, identity, is_member=gate, **kw)
        )

    async def start(self, nodes: list[Node]) -> None:
        for node in nodes:
            await self.nursery.start(node.discovery.run)


@asynccontextmanager
async def network() -> AsyncIterator[Net]:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            yield Net(nursery)
            nursery.cancel_scope.cancel()


async def line(net: Net, n: int) -> list[Node]:
    """``n`` members, each connected to its neighbours only."""
    nodes = [await net.add() for _ in range(n)]
    for a, b in itertools.pairwise(nodes):
        await link(a, b)
    return nodes


async def link(a: Node, b: Node) -> None:
    await a.transport.connect(b.transport.addrs[0])
    b.transport.add_addrs(a.id, a.transport.addrs)


async def announced(nodes: list[Node]) -> None:
    for node in nodes:
        await node.discovery.announced.wait()


async def eventually(probe: Callable[[], Awaitable[bool]]) -> None:
    """Ask until ``probe`` holds; the test's fail_after is the deadline."""
    while not await probe():
        await trio.sleep(0.1)


async def finds(node: Node, expected: set[str]) -> None:
    async def probe() -> bool:
        return set(await node.discovery.find_members()) == expected

    await eventually(probe)


def signed(identity: Identity, record: AddrRecord) -> bytes:
    """``record`` signed by ``identity``, whoever it names."""
    return dataclasses.replace(record, signature=identity.sign(unsigned_bytes(record))).encode()


# --- the whole thing -------------------------------------------------------------------


async def test_members_in_a_line_find_each_other_and_their_addresses() -> None:
    async with network() as net:
        # six hosts: the ends are five hops apart, beyond any one member's neighbours
        nodes = await line(net, 6)
        assert [len(n.transport.connected()) for n in nodes] == [1] + [2] * 4 + [1]
        await net.start(nodes)
        await announced(nodes)
        everyone = {n.id for n in nodes}
        for node in nodes:
            await finds(node, everyone - {node.id})
        first, last = nodes[0], nodes[-1]
        for node in nodes[1:]:
            assert await first.discovery.lookup(node.id) == node.transport.addrs

        # a member that moved publishes a newer record; lookups do not serve a cached one
        moved = ["/ip4/127.0.0.1/tcp/9", *last.transport.addrs]
        newer = AddrRecord.create(last.identity, COLONY, moved, time.time() + 1)
        await last.discovery.dht.put_value(addr_key(last.id), newer.encode())
        assert await first.discovery.lookup(last.id) == moved
        assert not any(n.discovery.stats["record_refused"] for n in nodes)

        # content: a snapshot provided at one end is found at the other
        key = content_key(COLONY, "bafyreiexample")
        assert await last.discovery.find_providers(key) == []
        assert await first.discovery.provide(key)
        assert await last.discovery.find_providers(key) == [first.id]


async def test_forged_and_stale_address_records_are_refused_and_never_returned() -> None:
    async with network() as net:
        nodes = await line(net, 4)
        await net.start(nodes)
        await announced(nodes)
        victim, mallory = nodes[1], nodes[2]  # mallory is a member, but not the victim
        key = addr_key(victim.id)
        evil = ("/ip4/127.0.0.1/tcp/6666",)
        claim = AddrRecord(victim.id, COLONY, evil, time.time() + 10)
        forgeries = [
            dataclasses.replace(claim, signature=mallory.identity.sign(unsigned_bytes(claim))),
            AddrRecord.create(mallory.identity, COLONY, evil, time.time() + 10),  # wrong key
        ]
        stale = AddrRecord.create(victim.identity, COLONY, evil, time.time() - 60)

        # mallory's signature on the victim's record; the victim's key holding mallory's
        refusals = [(BadSignature, "forged"), (ValueError, "record of .* under")]
        for record, (error, match) in zip(forgeries, refusals, strict=True):
            with pytest.raises(error, match=match):
                mallory.discovery.validator.validate(key, record.encode())
            # put_value runs the same validator and lets its error through
            with pytest.raises(error, match=match):
                await mallory.discovery.dht.put_value(key, record.encode())
        # straight to the other nodes' DHT, past mallory's own checks
        dht = mallory.discovery.dht
        for value in [r.encode() for r in forgeries] + [stale.encode()]:
            put = make_signed_put_record(key.encode(), value, dht.host.get_private_key())
            for node in nodes:
                if node is not mallory:
                    assert not await dht.value_store._store_at_peer(
                        node.transport.host.get_id(), key.encode(), value, record=put
                    )
        # and into mallory's own store, as a node that kept a record unchecked would
        forged = forgeries[0].encode()
        dht.value_store.put_record(
            key.encode(), make_signed_put_record(key.encode(), forged, dht.host.get_private_key())
        )

        for node in nodes:
            assert await node.discovery.lookup(victim.id) == victim.transport.addrs
            if node is not mallory:
                stored = node.discovery.dht.value_store.get(key.encode()).value
                assert node.discovery.validator.decode(key, stored).addrs != evil
        assert mallory.discovery.stats["record_refused"] >= 1


async def test_non_members_are_neither_found_nor_served() -> None:
    async with network() as net:
        nodes = await line(net, 4)
        revoked = await net.add()
        client = await net.add(server=False)  # behind a NAT: asks, never answers
        outsider = await net.add(member=False, is_member=lambda _: True)
        await link(revoked, nodes[3])
        await link(client, nodes[2])
        await link(outsider, nodes[0])
        await net.start([*nodes, revoked, client, outsider])
        await announced([*nodes, revoked, client])

        assert not await outsider.discovery.announce()  # every member resets its streams
        assert await outsider.discovery.find_members() == []
        net.members.discard(revoked.id)
        members = {n.id for n in [*nodes, client]}
        for node in [*nodes, client]:
            await finds(node, members - {node.id})
            assert await node.discovery.lookup(outsider.id) == []
        assert sum(n.discovery.stats["non_member_provider"] for n in nodes) >= 1
        # refused by the transport's gate before the DHT parses a byte of theirs
        refused = [dict(n.transport.rejections.by_protocol.get("kad", {})) for n in nodes]
        assert sum(r.get("not_member", 0) for r in refused) >= 1, refused
        # a client serves no DHT: multiselect finds no KAD handler there
        with pytest.raises(StreamFailure):
            await nodes[2].transport.host.new_stream(ID.from_base58(client.id), [KAD_PROTOCOL])


async def test_a_failing_dht_is_logged_and_retried_never_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runs: list[KadDHT] = []

    class FlakyDHT(KadDHT):
        async def run(self) -> None:
            runs.append(self)
            if len(runs) == 1:
                raise RuntimeError("boom")
            await super().run()

    monkeypatch.setattr(discovery, "KadDHT", FlakyDHT)
    async with network() as net:
        nodes = await line(net, 2)
        for node in nodes:
            node.discovery = Discovery(
                node.transport,
                COLONY,
                node.identity,
                is_member=net.is_member,
                refresh=0.3,
                timeout=0.5,
            )
        await net.start(nodes)
        await announced(nodes)  # the first DHT died, its successor announced
        assert len(runs) == 3 and nodes[0].discovery.stats["dht_crashed"] == 1

        dht = nodes[0].discovery.dht

        async def hang(key: bytes) -> bool:
            await trio.sleep_forever()
            raise AssertionError

        async def fail(key: str, value: bytes) -> None:
            raise RuntimeError("put failed")

        dht.provider_store.provide = hang
        dht.put_value = fail
        assert not await nodes[0].discovery.announce()
        stats = nodes[0].discovery.stats
        assert stats["provide_timeout"] >= 1 and stats["put_failed"] >= 1


# --- the validator ---------------------------------------------------------------------


def test_the_validator_accepts_only_signed_canonical_records_of_our_colony() -> None:
    alice, bob = Identity.generate(), Identity.generate()
    validator = AddrValidator(COLONY)
    key = addr_key(alice.member_id)
    now = time.time()
    good = AddrRecord.create(alice, COLONY, ["/ip4/10.0.0.1/tcp/4001"], now)
    validator.validate(key, good.encode())
    data = codec.to_data(good)
    many = ("/ip4/10.0.0.1/tcp/1",) * 9
    refused: dict[str, tuple[str, bytes, type[Exception], str]] = {
        "other key": (addr_key(bob.member_id), good.encode(), ValueError, "record of .* under"),
        "other colony": (
            key,
            AddrRecord.create(alice, "ff" * 32, [], now).encode(),
            ValueError,
            "record for colony 'ff",
        ),
        "bad signature": (
            key,
            dataclasses.replace(good, signature=bytes(64)).encode(),
            BadSignature,
            "forged or corrupted signature",
        ),
        "signed by bob": (
            key,
            dataclasses.replace(good, signature=bob.sign(unsigned_bytes(good))).encode(),
            BadSignature,
            "forged or corrupted signature",
        ),
        "future": (
            key,
            AddrRecord.create(alice, COLONY, [], now + 3600).encode(),
            ValueError,
            "in the future",
        ),
        "not canonical": (
            key,
            cbor2.dumps(dict(reversed(list(data.items())))),
            MalformedMessage,
            "not in canonical form",
        ),
        "unknown field": (
            key,
            cbor2.dumps({**data, "x": 1}, canonical=True),
            MalformedMessage,
            r"unknown fields \['x'\]",
        ),
        "too many addrs": (
            key,
            signed(alice, AddrRecord(alice.member_id, COLONY, many, now)),
            ValueError,
            "9 addresses",
        ),
        "garbage": (key, b"\xff\x00", MalformedMessage, "not CBOR"),
        "other namespace": ("/colonyp2p/x/1", good.encode(), ValueError, "no records under"),
    }
    for case, (k, value, error, match) in refused.items():
        # the error the validator's contract names (ValueError or a ColonyError) and why:
        # any other exception is a bug in the validator, not a refusal
        with pytest.raises(error, match=match):
            validator.validate(k, value)
            pytest.fail(case)


def test_the_validator_selects_the_newest_record_whatever_the_order() -> None:
    alice = Identity.generate()
    validator = AddrValidator(COLONY)
    key = addr_key(alice.member_id)
    old, new = (AddrRecord.create(alice, COLONY, [], t).encode() for t in (1.0, 2.0))
    assert validator.select(key, [old, new]) == 1
    assert validator.select(key, [new, old]) == 0
    assert validator.select(key, [b"junk", old]) == 1


# --- mDNS (a LAN only: multicast is noisy and often absent in CI) --------------------------


@pytest.mark.skipif(not os.environ.get("COLONYP2P_TEST_MDNS"), reason="set COLONYP2P_TEST_MDNS=1")
async def test_members_on_a_lan_find_each_other_by_mdns() -> None:
    async with network() as net:
        a, b = await net.add(mdns=True), await net.add(mdns=True)
        await net.start([a, b])
        while b.id not in a.transport.connected():
            await trio.sleep(0.05)
