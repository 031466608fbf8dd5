"""The libp2p transport: real hosts on 127.0.0.1, members gated, forgeries refused and counted."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
import trio
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from colonyp2p import wire
from colonyp2p.core.messages import AdAnnounce, Query, SpecAnnounce, StoreAck
from colonyp2p.core.topics import colony_topic, spec_topic
from colonyp2p.errors import OversizeMessage
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.framing import IncompleteFrame, frame, read_frame
from colonyp2p.node.transport import MSG_PROTOCOL, ConnectFailed, Transport

COLONY = "colony-test"
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def quiet_libp2p() -> Iterator[None]:
    # py-libp2p logs ERRORs during normal disconnects; they would drown real failures
    logger = logging.getLogger("libp2p")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@dataclass
class Node:
    identity: Identity
    transport: Transport
    messages: list[tuple[str, object]] = field(default_factory=list)
    announcements: list[tuple[str, object]] = field(default_factory=list)

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
        self,
        *,
        member: bool = True,
        is_member: Callable[[str], bool] | None = None,
        identity: Identity | None = None,
    ) -> Node:
        identity = identity or Identity.generate()
        if member:
            self.members.add(identity.member_id)
        node: Node
        transport = Transport(
            identity,
            COLONY,
            is_member=is_member or self.is_member,
            on_message=lambda sender, msg: node.messages.append((sender, msg)),
            on_announcement=lambda sender, item: node.announcements.append((sender, item)),
            open_timeout=3.0,
        )
        node = Node(identity, transport)
        await self.nursery.start(transport.run)
        return node


@asynccontextmanager
async def network(timeout: float = TIMEOUT) -> AsyncIterator[Net]:
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            yield Net(nursery)
            nursery.cancel_scope.cancel()


async def link(a: Node, b: Node) -> None:
    await a.transport.connect(b.transport.addrs[0])
    b.transport.add_addrs(a.id, a.transport.addrs)


async def link_all(nodes: list[Node]) -> None:
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            await link(a, b)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition``; the test's fail_after is the deadline."""
    while not condition():
        await trio.sleep(0.005)


def raw_frame(sender: Identity, msg: object, *, colony: str = COLONY, ts: float = 0.0) -> bytes:
    now = ts or time.time()
    return frame(wire.encode(sender, colony, wire.next_seq(0, now), now, msg))


async def raw_stream(src: Node, dst: Node) -> Any:
    """A stream on the colony protocol that the test writes bytes to by hand."""
    return await src.transport.host.new_stream(ID.from_base58(dst.id), [MSG_PROTOCOL])


# --- framing ------------------------------------------------------------------------------


class TrickleStream:
    """Hands out its bytes a few at a time, as a muxer may; then EOF."""

    def __init__(self, data: bytes, step: int = 3) -> None:
        self.data, self.step = data, step

    async def read(self, n: int) -> bytes:
        await trio.lowlevel.checkpoint()
        chunk, self.data = self.data[: min(n, self.step)], self.data[min(n, self.step) :]
        return chunk


async def test_frames_survive_partial_reads_and_end_cleanly_between_frames() -> None:
    payloads = [b"", b"x", bytes(range(256)) * 40]
    stream = TrickleStream(b"".join(frame(p) for p in payloads), step=7)
    assert [await read_frame(stream, 1 << 20) for _ in payloads] == payloads
    assert await read_frame(stream, 1 << 20) is None


async def test_a_truncated_or_oversize_frame_is_refused() -> None:
    with pytest.raises(IncompleteFrame):
        await read_frame(TrickleStream(frame(b"abcdef")[:-1]), 1 << 20)
    with pytest.raises(IncompleteFrame):
        await read_frame(TrickleStream(b"\x00\x00"), 1 << 20)
    with pytest.raises(OversizeMessage):
        await read_frame(TrickleStream(frame(b"x" * 11)), 10)


# --- direct messages --------------------------------------------------------------------


async def test_two_members_exchange_messages_intact_and_in_order() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        await link(a, b)
        sent = [Query(f"p{i}", watch=i % 2 == 0) if i % 3 else StoreAck(f"p{i}") for i in range(30)]
        for msg in sent:
            assert await a.transport.send(b.id, msg)
        assert await b.transport.send(a.id, StoreAck("reply"))
        await until(lambda: len(b.messages) == len(sent) and len(a.messages) == 1)
        assert b.messages == [(a.id, m) for m in sent]
        assert a.messages == [(b.id, StoreAck("reply"))]
        assert a.transport.rejections.total == b.transport.rejections.total == 0


async def test_five_members_all_to_all_in_order_per_sender() -> None:
    async with network() as net:
        nodes = [await net.add() for _ in range(5)]
        await link_all(nodes)

        async def talk(src: Node) -> None:
            for k in range(10):
                for dst in nodes:
                    if dst is not src:
                        assert await src.transport.send(dst.id, Query(f"{src.id}:{k}"))

        async with trio.open_nursery() as senders:
            for node in nodes:
                senders.start_soon(talk, node)
        await until(lambda: all(len(n.messages) == 40 for n in nodes))
        for dst in nodes:
            for src in nodes:
                if src is not dst:
                    got = [m for s, m in dst.messages if s == src.id]
                    assert got == [Query(f"{src.id}:{k}") for k in range(10)]


async def test_two_hundred_concurrent_sends_from_one_sender_all_arrive() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        await link(a, b)
        async with trio.open_nursery() as senders:
            for i in range(200):
                senders.start_soon(a.transport.send, b.id, StoreAck(f"p{i}"))
        await until(lambda: len(b.messages) == 200)
        # concurrent writes that interleaved their bytes would show up as malformed frames
        assert {m for _, m in b.messages} == {StoreAck(f"p{i}") for i in range(200)}
        assert b.transport.rejections.total == 0
        assert a.transport.stats["sent"] == 200


async def test_send_to_an_unreachable_member_is_counted_not_raised() -> None:
    async with network() as net:
        a = await net.add()
        gone = Identity.generate()
        net.members.add(gone.member_id)
        a.transport.add_addrs(gone.member_id, ["/ip4/127.0.0.1/tcp/1"])  # nothing listens
        assert not await a.transport.send(gone.member_id, Query("p"))
        nowhere = Identity.generate().member_id  # no address at all
        net.members.add(nowhere)
        assert not await a.transport.send(nowhere, Query("p"))
        assert not await a.transport.send(a.id, Query("p"))  # the core loops back itself
        assert not await a.transport.send(Identity.generate().member_id, Query("p"))  # stranger
        assert a.transport.stats["send_failed"] == 2
        assert a.transport.stats["send_dropped"] == 2
        with pytest.raises(ConnectFailed):
            await a.transport.connect("/ip4/127.0.0.1/tcp/1")  # no /p2p/<member id>
        with pytest.raises(ValueError, match="names"):
            a.transport.add_addrs(gone.member_id, [f"/ip4/127.0.0.1/tcp/1/p2p/{nowhere}"])


async def test_a_restarted_member_is_reached_again_through_the_address_book() -> None:
    async with network() as net:
        a = await net.add()
        b_identity = Identity.generate()
        async with trio.open_nursery() as first_life:
            b = Node(
                b_identity,
                Transport(
                    b_identity,
                    COLONY,
                    is_member=net.is_member,
                    on_message=lambda s, m: None,
                    on_announcement=lambda s, m: None,
                ),
            )
            net.members.add(b.id)
            await first_life.start(b.transport.run)
            await link(a, b)
            assert await a.transport.send(b.id, Query("first"))
            first_life.cancel_scope.cancel()
        await until(lambda: b.id not in a.transport.connected())
        b2 = await net.add(identity=b_identity)
        a.transport.add_addrs(b.id, b2.transport.addrs)
        assert await a.transport.send(b.id, Query("second"))
        await until(lambda: b2.messages == [(a.id, Query("second"))])


async def test_a_member_is_reached_through_its_announced_addresses() -> None:
    async with network() as net:
        a, b, c = await net.add(), await net.add(), await net.add()
        assert not await a.transport.reach(b.id)  # no address known yet
        a.transport.add_addrs(b.id, b.transport.addrs)
        assert await a.transport.reach(b.id)
        assert b.id in a.transport.connected()
        assert await a.transport.reach(b.id)  # already connected: nothing more to do
        net.members.discard(c.id)
        a.transport.add_addrs(c.id, c.transport.addrs)
        assert not await a.transport.reach(c.id)  # not a member: never dialed
        assert c.id not in a.transport.connected()
        # the stream opened is the one messages then use
        assert await a.transport.send(b.id, Query("hi"))
        await until(lambda: b.messages == [(a.id, Query("hi"))])


# --- membership ---------------------------------------------------------------------------


async def test_a_non_member_stream_is_refused_even_with_a_signed_envelope() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        mallory = await net.add(member=False, is_member=lambda _: True)
        await link(a, b)
        await link(mallory, a)
        await mallory.transport.send(a.id, Query("let me in"))  # correctly signed, by itself
        await until(lambda: a.transport.rejections["not_member"] == 1)
        # a member's message sent afterwards arrives; mallory's never does
        assert await b.transport.send(a.id, Query("member"))
        await until(lambda: len(a.messages) == 1)
        assert a.messages == [(b.id, Query("member"))]


def refused_msgs(node: Node) -> int:
    """What ``node`` refused on its colony streams because the peer is not a member."""
    return node.transport.rejections.by_protocol_dict().get("msg", {}).get("not_member", 0)


async def test_a_member_revoked_at_run_time_is_refused_afterwards() -> None:
    async with network() as net:
        a, c = await net.add(), await net.add()
        b = await net.add(is_member=lambda _: True)  # b would talk to anyone
        await link(a, b)
        await link(c, a)
        assert await b.transport.send(a.id, Query("before"))
        await until(lambda: a.messages == [(b.id, Query("before"))])
        net.members.discard(b.id)
        # on the stream already open: written, and refused as it arrives, and counted
        assert await b.transport.send(a.id, Query("after"))
        await until(lambda: refused_msgs(a) == 1)
        # a new stream is refused as it opens: b's negotiation fails, and a counts it
        with pytest.raises(StreamFailure):
            await raw_stream(b, a)
        await until(lambda: refused_msgs(a) == 2)
        assert not await a.transport.send(b.id, Query("to b"))  # nor does a talk to b
        # a's connection to b stays until its driver drops it (the daemon does, when the
        # membership changes): then it is closed on both sides
        assert b.id in a.transport.connected()
        assert await a.transport.drop_non_members() == 1
        await until(lambda: b.id not in a.transport.connected())
        await until(lambda: a.id not in b.transport.connected())
        # control: a member's message sent afterwards arrives; b's never did
        assert await c.transport.send(a.id, Query("control"))
        await until(lambda: len(a.messages) == 2)
        assert a.messages == [(b.id, Query("before")), (c.id, Query("control"))]


# --- forged frames ------------------------------------------------------------------------


async def test_forged_frames_are_refused_and_counted_and_good_ones_still_pass() -> None:
    async with network() as net:
        a, b, c = await net.add(), await net.add(), await net.add()
        await link(b, a)
        stream = await raw_stream(b, a)
        envelope = cbor2.loads(raw_frame(b.identity, Query("x"))[4:])
        envelope["sig"] = bytes([envelope["sig"][0] ^ 1]) + envelope["sig"][1:]
        forged = frame(cbor2.dumps(envelope, canonical=True))
        good = raw_frame(b.identity, Query("good"))
        for data in [
            forged,
            raw_frame(b.identity, Query("x"), colony="another-colony"),
            frame(b"\xff garbage \x00"),
            frame(b""),
            raw_frame(c.identity, Query("c's envelope, b's stream")),
            raw_frame(
                b.identity,
                AdAnnounce(ExecutorAd.create(b.identity, 1.0, executortype="t", name="n")),
            ),
            raw_frame(b.identity, Query("stale"), ts=time.time() - 3600),
            good,
            good,  # replayed
            raw_frame(b.identity, Query("after")),
        ]:
            await stream.write(data)
        await until(lambda: len(a.messages) == 2)
        assert a.messages == [(b.id, Query("good")), (b.id, Query("after"))]
        assert a.transport.rejections.as_dict() == {
            "bad_signature": 1,
            "wrong_colony": 1,
            "malformed": 2,
            "sender_mismatch": 1,
            "wrong_channel": 1,
            "replay": 2,
        }


async def test_messages_sent_together_travel_as_batches_in_order() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        await link(a, b)
        # big enough that one envelope cannot hold them all: the batch splits, in order
        sent = [Query(f"p{i}-" + "x" * 40_000) for i in range(150)]
        assert await a.transport.send_many(b.id, sent) == len(sent)
        await until(lambda: len(b.messages) == len(sent))
        assert b.messages == [(a.id, m) for m in sent]
        assert b.transport.stats["received"] == len(sent)
        assert b.transport.rejections.total == 0


async def test_a_batch_smuggling_an_announcement_is_refused_whole() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        await link(b, a)
        stream = await raw_stream(b, a)
        ad = AdAnnounce(ExecutorAd.create(b.identity, 1.0, executortype="t", name="n"))
        await stream.write(raw_frame(b.identity, wire.batch([Query("in"), ad])))
        await stream.write(raw_frame(b.identity, wire.batch([Query("ok1"), Query("ok2")])))
        await until(lambda: len(a.messages) == 2)
        assert a.messages == [(b.id, Query("ok1")), (b.id, Query("ok2"))]
        assert a.transport.rejections.as_dict() == {"malformed": 1}


async def test_an_oversize_frame_ends_the_stream_and_the_peer_can_reconnect() -> None:
    async with network() as net:
        a, b = await net.add(), await net.add()
        await link(b, a)
        stream = await raw_stream(b, a)
        await stream.write((wire.MAX_MESSAGE_SIZE + 1).to_bytes(4, "big") + b"x" * 1024)
        await until(lambda: a.transport.rejections["oversize"] == 1)
        assert await b.transport.send(a.id, Query("fine"))
        await until(lambda: a.messages == [(b.id, Query("fine"))])


# --- gossip -------------------------------------------------------------------------------


async def test_announcements_reach_the_other_members() -> None:
    async with network() as net:
        nodes = [await net.add() for _ in range(3)]
        publisher = nodes[0]
        spec = SignedSpec.create(FunctionSpec("work"), publisher.identity, COLONY, 1.0, b"n")
        topics = [colony_topic(COLONY), spec_topic(COLONY, spec.spec)]
        for node in nodes:
            for topic in topics:
                await node.transport.subscribe(topic)
        await link_all(nodes)
        others = {n.id for n in nodes[1:]}
        await until(lambda: all(publisher.transport.mesh(t) == others for t in topics))
        ad = AdAnnounce(ExecutorAd.create(publisher.identity, 1.0, executortype="t", name="n"))
        announce = SpecAnnounce(spec, keepers=(publisher.id,))
        assert await publisher.transport.publish(topics[0], ad)
        assert await publisher.transport.publish(topics[1], announce)
        await until(lambda: all(len(n.announcements) == 2 for n in nodes[1:]))
        for node in nodes[1:]:
            assert sorted(node.announcements, key=repr) == sorted(
                [(publisher.id, ad), (publisher.id, announce)], key=repr
            )
            assert node.transport.rejections.total == 0
        assert publisher.announcements == []  # the core loops its own back


async def test_a_burst_of_announcements_all_arrive() -> None:
    # three times what py-libp2p's subscription and outbound queues hold, without a pause
    async with network() as net:
        nodes = [await net.add() for _ in range(3)]
        topic = colony_topic(COLONY)
        for node in nodes:
            await node.transport.subscribe(topic)
        await link_all(nodes)
        publisher = nodes[0]
        await until(lambda: publisher.transport.mesh(topic) == {n.id for n in nodes[1:]})
        ads = [
            AdAnnounce(ExecutorAd.create(publisher.identity, float(k), executortype="t", name="n"))
            for k in range(100)
        ]
        for ad in ads:
            assert await publisher.transport.publish(topic, ad)
        await until(lambda: all(len(n.announcements) == len(ads) for n in nodes[1:]))
        for node in nodes[1:]:
            assert {item for _, item in node.announcements} == set(ads)
        # the same burst as batches: far fewer gossip messages, every announcement there
        more = [
            AdAnnounce(
                ExecutorAd.create(publisher.identity, 1000.0 + k, executortype="t", name="n")
            )
            for k in range(300)
        ]
        published = publisher.transport.stats["published"]
        assert await publisher.transport.publish_many(topic, more) == len(more)
        assert publisher.transport.stats["published"] == published + len(more)
        total = len(ads) + len(more)
        await until(lambda: all(len(n.announcements) == total for n in nodes[1:]))
        for node in nodes[1:]:
            assert [item for _, item in node.announcements[len(ads) :]] == more


async def test_announcements_of_a_non_member_are_dropped_and_counted() -> None:
    async with network() as net:
        a = await net.add()
        # b's membership view is stale: it still accepts mallory, and relays her gossip
        b = await net.add(is_member=lambda _: True)
        mallory = await net.add(member=False, is_member=lambda _: True)
        topic = colony_topic(COLONY)
        for node in (a, b, mallory):
            await node.transport.subscribe(topic)
        await link(a, b)
        await link(mallory, b)
        await until(
            lambda: a.id in b.transport.mesh(topic) and b.id in mallory.transport.mesh(topic)
        )
        ad = AdAnnounce(ExecutorAd.create(mallory.identity, 1.0, executortype="t", name="m"))
        assert await mallory.transport.publish(topic, ad)
        await until(lambda: a.transport.rejections["not_member"] >= 1)
        assert b.announcements == [(mallory.id, ad)]  # b relayed it
        mine = AdAnnounce(ExecutorAd.create(b.identity, 1.0, executortype="t", name="b"))
        assert await b.transport.publish(topic, mine)
        await until(lambda: len(a.announcements) == 1)
        assert a.announcements == [(b.id, mine)]


async def test_a_private_network_admits_only_holders_of_its_key() -> None:
    key = "ab" * 32
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            a, b, c = (
                Transport(
                    ident,
                    COLONY,
                    is_member=lambda m: True,
                    on_message=lambda s, m: None,
                    on_announcement=lambda s, m: None,
                    psk=psk,
                    open_timeout=2.0,
                )
                for ident, psk in (
                    (Identity.generate(), key),
                    (Identity.generate(), key),
                    (Identity.generate(), "cd" * 32),
                )
            )
            for t in (a, b, c):
                await nursery.start(t.run)
            assert await b.connect(a.addrs[0]) == a.member_id
            with pytest.raises(ConnectFailed):
                await c.connect(a.addrs[0])
            nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Transport(
            Identity.generate(),
            COLONY,
            is_member=lambda m: True,
            on_message=lambda s, m: None,
            on_announcement=lambda s, m: None,
            psk="short",
        )


async def test_quic_is_an_option() -> None:
    """Listening on a quic-v1 address runs the same protocol over QUIC (py-libp2p's)."""
    got = trio.Event()
    received: list[object] = []

    def on_message(sender: str, msg: object) -> None:
        received.append(msg)
        got.set()

    a_id, b_id = Identity.generate(), Identity.generate()
    quic = ["/ip4/127.0.0.1/udp/0/quic-v1"]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            a = Transport(
                a_id,
                COLONY,
                is_member=lambda m: True,
                on_message=on_message,
                on_announcement=lambda s, m: None,
                listen_addrs=quic,
            )
            b = Transport(
                b_id,
                COLONY,
                is_member=lambda m: True,
                on_message=lambda s, m: None,
                on_announcement=lambda s, m: None,
                listen_addrs=quic,
            )
            await nursery.start(a.run)
            await nursery.start(b.run)
            assert "/quic-v1/" in a.addrs[0]
            await b.connect(a.addrs[0])
            assert await b.send(a_id.member_id, Query("over-quic"))
            await got.wait()
            assert received == [Query("over-quic")]
            nursery.cancel_scope.cancel()


async def test_gossip_that_fails_is_restarted_and_carries_announcements_again() -> None:
    # a restart waits out its backoff, redials and forms a mesh again: more than the
    # other tests need on a busy machine
    async with network(timeout=45) as net:
        a, b = await net.add(), await net.add()
        topic = colony_topic(COLONY)
        for node in (a, b):
            await node.transport.subscribe(topic)
        await link(a, b)
        await until(lambda: a.transport.mesh(topic) == {b.id})

        def ad(name: str) -> AdAnnounce:
            return AdAnnounce(
                ExecutorAd.create(a.identity, time.time(), executortype="t", name=name)
            )

        assert await a.transport.publish(topic, ad("before"))
        await until(lambda: len(b.announcements) == 1)

        async def boom() -> None:
            raise RuntimeError("a library bug in a pubsub task")

        pubsub = a.transport._pubsub
        assert pubsub is not None
        pubsub.manager.run_task(boom)  # the whole pubsub service ends with it
        gossip = a.transport.health.subsystems["gossip"]
        await until(lambda: gossip.restarts == 1 and gossip.state == "running")
        assert "a library bug" in gossip.last_error
        assert a.transport._pubsub is not pubsub
        # the new GossipSub knows the connection made before it, and forms a mesh on it
        await until(lambda: a.transport.mesh(topic) == {b.id})
        after = ad("after")
        assert await a.transport.publish(topic, after)
        await until(lambda: len(b.announcements) == 2)
        assert b.announcements[1] == (a.id, after)
