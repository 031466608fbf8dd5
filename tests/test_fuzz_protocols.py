"""Every protocol a daemon serves, fuzzed from a member's key and from a stranger's: a
real daemon (the owner, also an executor) takes garbage, truncated, oversized and nested
frames on gossip, identify, the DHT, joining, colony messages and blocks, and raw bytes
on its TCP port and its local API. Throughout it answers its members and runs work, and
``colonynode status`` counts what it refused, by protocol and reason.

Payloads come from hypothesis strategies over the protobuf shapes (pubsub RPC, identify,
Kademlia) and CBOR shapes (colony envelopes, join and block requests), derandomized so a
failure replays; they are drawn once and sent over one connection per identity, which
keeps the test to seconds per protocol."""

from __future__ import annotations

import functools
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import cbor2
import pytest
import trio
from attacker import attacker
from cluster import Cluster, Node, cluster, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.identity.identify.pb import identify_pb2
from libp2p.kad_dht.pb import kademlia_pb2
from libp2p.pubsub.pb import rpc_pb2
from libp2p.utils.varint import encode_uvarint

from colonyp2p.identity import Identity

T = TypeVar("T")
EXAMPLES = 25  # payloads per protocol and shape
GOSSIP = ("/meshsub/1.2.0", "/meshsub/1.1.0")
IDENTIFY, IDENTIFY_PUSH = "/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0"
KAD = "/ipfs/kad/1.0.0"
MSG, JOIN, BLOCKS = "/colonyp2p/msg/2.0.0", "/colonyp2p/join/1.0.0", "/colonyp2p/blocks/1.0.0"
MEMBERS_ONLY = {
    GOSSIP[0]: "gossip",
    IDENTIFY: "identify",
    IDENTIFY_PUSH: "identify-push",
    KAD: "kad",
    MSG: "msg",
    BLOCKS: "blocks",
}


def draw(strategy: st.SearchStrategy[T], n: int = EXAMPLES) -> list[T]:
    """``n`` examples of ``strategy``, drawn by hypothesis's engine (derandomized)."""
    out: list[T] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        out.append(value)

    collect()
    return out[:n]


# --- shapes ----------------------------------------------------------------------------

texts = st.text(max_size=40)
blobs = st.binary(max_size=200)


@st.composite
def pubsub_rpcs(draw: st.DrawFn) -> bytes:
    rpc = rpc_pb2.RPC()
    for _ in range(draw(st.integers(0, 3))):
        rpc.subscriptions.add(subscribe=draw(st.booleans()), topicid=draw(texts))
    for _ in range(draw(st.integers(0, 3))):
        msg = rpc.publish.add(
            from_id=draw(blobs), data=draw(blobs), seqno=draw(blobs), signature=draw(blobs)
        )
        msg.topicIDs.extend(draw(st.lists(texts, max_size=3)))
    if draw(st.booleans()):
        control = rpc.control
        for _ in range(draw(st.integers(0, 3))):
            control.ihave.add(topicID=draw(texts)).messageIDs.extend(
                draw(st.lists(blobs, max_size=3))
            )
            control.graft.add(topicID=draw(texts))
            control.prune.add(topicID=draw(texts))
    return bytes(rpc.SerializeToString())


@st.composite
def identifies(draw: st.DrawFn) -> bytes:
    msg = identify_pb2.Identify(
        protocol_version=draw(texts),
        agent_version=draw(texts),
        public_key=draw(blobs),
        observed_addr=draw(blobs),
    )
    msg.listen_addrs.extend(draw(st.lists(blobs, max_size=3)))
    msg.protocols.extend(draw(st.lists(texts, max_size=3)))
    return bytes(msg.SerializeToString())


@st.composite
def kad_messages(draw: st.DrawFn) -> bytes:
    msg = kademlia_pb2.Message(key=draw(blobs))
    # any enum number, valid or not (protobuf keeps unknown values of an open enum)
    setattr(msg, "type", draw(st.integers(0, 5)))  # noqa: B010 - the stubs say enum only
    if draw(st.booleans()):
        msg.record.key = draw(blobs)
        msg.record.value = draw(blobs)
    for _ in range(draw(st.integers(0, 3))):
        peer = msg.closerPeers.add(id=draw(blobs))
        peer.addrs.extend(draw(st.lists(blobs, max_size=2)))
    return bytes(msg.SerializeToString())


cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts | blobs,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def envelopes(draw: st.DrawFn) -> bytes:
    """CBOR maps shaped like a colony envelope, with any values."""
    keys = ["v", "colony", "sender", "seq", "ts", "type", "body", "sig"]
    chosen = draw(st.lists(st.sampled_from(keys), unique=True))
    return bytes(cbor2.dumps({k: draw(cbor_values) for k in chosen}))


def nested_cbor(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"  # [[[...[0]...]]]


def nested_protobuf(depth: int) -> bytes:
    # a length-delimited field holding itself, ``depth`` times (wire type 2, field 1)
    inner = b""
    for _ in range(depth):
        inner = b"\x0a" + encode_uvarint(len(inner)) + inner
    return inner


def varint_framed(body: bytes) -> bytes:
    return bytes(encode_uvarint(len(body))) + body


def length_framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def payloads(shape: st.SearchStrategy[bytes], framing: Any, oversize: bytes) -> list[bytes]:
    """Well-formed frames of ``shape``, the same cut short, raw bytes, frames that
    claim more than the limit, and deep nesting."""
    bodies = draw(shape)
    out = [framing(b) for b in bodies]
    out += [framing(b)[: max(1, len(framing(b)) // 2)] for b in bodies[:10]]
    out += [framing(b) + framing(b)[:3] for b in bodies[:5]]  # a whole frame, then a cut one
    out += draw(st.binary(min_size=1, max_size=512), 15)
    out.append(oversize)
    return out


PROTOBUF_OVERSIZE = bytes(encode_uvarint(1 << 31)) + b"\x00" * 64
FRAME_OVERSIZE = struct.pack(">I", 0xFFFFFFF0) + b"\x00" * 64


@functools.cache
def cases() -> dict[str, list[bytes]]:
    nested_pb = [varint_framed(nested_protobuf(d)) for d in (100, 1000, 5000)]
    nested_cb = [length_framed(nested_cbor(d)) for d in (100, 10_000, 100_000)]
    cbor_shapes = envelopes() | cbor_values.map(cbor2.dumps)
    return {
        GOSSIP[0]: payloads(pubsub_rpcs(), varint_framed, PROTOBUF_OVERSIZE) + nested_pb,
        GOSSIP[1]: [bytes.fromhex("020aff")],  # a member's: once ended a daemon
        IDENTIFY_PUSH: payloads(identifies(), varint_framed, PROTOBUF_OVERSIZE) + nested_pb,
        KAD: payloads(kad_messages(), varint_framed, PROTOBUF_OVERSIZE) + nested_pb,
        MSG: payloads(cbor_shapes, length_framed, FRAME_OVERSIZE) + nested_cb,
        JOIN: payloads(cbor_shapes, length_framed, FRAME_OVERSIZE) + nested_cb,
        BLOCKS: payloads(cbor_shapes, length_framed, FRAME_OVERSIZE) + nested_cb,
    }


# --- the colony --------------------------------------------------------------------------


# the tests that use it run in one worker (in --dist loadgroup), which makes it once
COLONY = pytest.mark.xdist_group("fuzz-colony")


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Node, Node]]:
    """The owner (an executor) and a member whose key the attacker uses (a user: never
    started, it keeps no records)."""
    with cluster(Path(tmp_path_factory.mktemp("fuzz"))) as c:
        owner = c.found()
        member = c.join("mallory", owner, role="user", start=False)
        yield c, owner, member


def still_serves(owner: Node) -> dict[str, Any]:
    """The owner answers its API and runs a process to the end; its status."""
    pid = owner.submit({"funcname": "add", "args": [40, 2]})["pid"]
    done = wait_for(lambda: owner.finished(pid), 30, f"process {pid} to end")
    assert done["state"] == "successful", done
    assert done["output"] == [42.0], done
    status = owner.status()
    assert status["subsystems"].get("gossip", {}).get("state") == "running", status
    return status


async def checked(owner: Node) -> dict[str, Any]:
    return await trio.to_thread.run_sync(still_serves, owner)


@COLONY
async def test_a_stranger_negotiates_nothing_but_joining(
    colony: tuple[Cluster, Node, Node],
) -> None:
    _, owner, _ = colony
    before = (await checked(owner))["refused"]
    async with attacker(Identity.generate(), owner.addrs[0]) as stranger:
        answers = {p: await stranger.send(p, b"\x00") for p in [*MEMBERS_ONLY, GOSSIP[1], JOIN]}
        # the six bytes that ended a daemon from a fresh key, on the newest gossip
        answers["the old crash"] = await stranger.send(GOSSIP[0], bytes.fromhex("060affffffff0f"))
    assert answers == {
        **{p: "refused" for p in [*MEMBERS_ONLY, GOSSIP[1], "the old crash"]},
        JOIN: "sent",
    }
    refused = (await checked(owner))["refused"]
    for name in MEMBERS_ONLY.values():
        grew = refused.get(name, {}).get("not_member", 0) - before.get(name, {}).get(
            "not_member", 0
        )
        assert grew >= 1, (name, refused)


@pytest.mark.parametrize("who", ["member", "stranger"])
@COLONY
async def test_garbage_on_every_protocol_costs_only_its_stream(
    colony: tuple[Cluster, Node, Node], who: str
) -> None:
    _, owner, member = colony
    identity = member.home.identity() if who == "member" else Identity.generate()
    outcomes: dict[str, dict[str, int]] = {}
    async with attacker(identity, owner.addrs[0]) as mallory:
        for protocol, frames in cases().items():
            if who == "stranger" and protocol != JOIN:
                # refused at negotiation, whatever would follow: a few suffice
                frames = frames[::20]
            seen = outcomes.setdefault(protocol, {})
            for raw in frames:
                result = await mallory.send(protocol, raw)
                seen[result] = seen.get(result, 0) + 1
            await checked(owner)  # after each protocol: it serves, it runs work
    print(f"{who}: {outcomes}")
    refused = (await checked(owner))["refused"]
    print(f"{who}: status refused {refused}")
    if who == "member":
        # every protocol was negotiated, and each counted what it refused
        for protocol in (GOSSIP[0], IDENTIFY_PUSH, KAD, MSG, BLOCKS):
            assert outcomes[protocol].get("refused", 0) == 0, (protocol, outcomes)
        for name in ("gossip", "msg", "blocks", "join"):
            reasons = {r: n for r, n in refused.get(name, {}).items() if r != "not_member"}
            assert reasons, (name, refused)
    else:
        for protocol in outcomes.keys() - {JOIN}:
            assert set(outcomes[protocol]) == {"refused"}, (protocol, outcomes)
        assert "join" in refused, refused


@COLONY
async def test_raw_bytes_on_the_listening_port_and_the_local_api(
    colony: tuple[Cluster, Node, Node],
) -> None:
    _, owner, _ = colony
    port = int(owner.addrs[0].split("/tcp/")[1].split("/")[0])
    api_port = int(str(owner.runtime()["api"]).rsplit(":", 1)[1])
    junk = draw(st.binary(min_size=1, max_size=4096), 30)
    http = [
        b"GET / HTTP/1.1\r\n\r\n",
        b"POST /v1/processes HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
        b"POST /v1/processes HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 100_000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS hello
        b"GET /v1/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ]

    def blast(target_port: int, frames: list[bytes]) -> None:
        for raw in frames:
            with socket.create_connection(("127.0.0.1", target_port), timeout=5) as sock:
                try:  # the daemon may hang up at any point: that is its right
                    sock.sendall(raw)
                    sock.shutdown(socket.SHUT_WR)
                    sock.settimeout(2)
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass

    await trio.to_thread.run_sync(blast, port, [*junk, b"/multistream/1.0.0\n" * 3])
    await trio.to_thread.run_sync(blast, api_port, [*junk, *http])
    status = await checked(owner)
    assert status["peers"] >= 0
    os.kill(owner.pid, 0)  # still the same process
