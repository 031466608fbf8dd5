"""The fixes colonyp2p applies to py-libp2p (node/libp2p_fixes.py): pinned to the version
they were written for, and each shown to work on real hosts."""

from __future__ import annotations

import struct
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream

import colonyp2p.node.transport  # noqa: F401 - the daemon's transport applies the fixes
from colonyp2p.node import libp2p_fixes
from colonyp2p.node.framing import read_frame

PROTO = TProtocol("/colonyp2p-test/whole-writes/1.0.0")


def test_the_fixes_are_for_the_installed_version() -> None:
    # A new py-libp2p may have fixed these itself, or moved what they patch: re-examine
    # each fix in libp2p_fixes.py (and docs/LIBP2P.md), then change PINNED.
    assert libp2p_fixes.installed_version() == libp2p_fixes.PINNED
    assert libp2p_fixes.applied()


def test_applying_twice_wraps_once() -> None:
    write = YamuxStream.write
    libp2p_fixes.apply()
    assert YamuxStream.write is write


def _host() -> Any:
    key_pair = create_new_key_pair()
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    return new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
    )


def _message(writer: int, seq: int, size: int) -> bytes:
    head = struct.pack(">BI", writer, seq)
    return head + bytes([writer + 1]) * (size - len(head))


async def test_concurrent_writers_on_one_stream_deliver_whole_messages() -> None:
    """Messages of several yamux frames (over 64 KiB), written to one stream by three
    tasks at once and read by a slow reader: each arrives whole and in its writer's
    order. Without the fix every such message is interleaved with another."""
    writers, per_writer = 3, 8
    sizes = [70_000 + 9_000 * i for i in range(per_writer)]
    received: list[bytes] = []
    done = trio.Event()

    async def reader(stream: Any) -> None:
        try:
            while (raw := await read_frame(stream, 1 << 20)) is not None:
                received.append(raw)
                await trio.sleep(0.002)  # slow: the send window runs empty
        finally:
            done.set()

    a, b = _host(), _host()
    b.set_stream_handler(PROTO, reader)
    listen = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    with trio.fail_after(60):
        async with a.run(listen), b.run(listen):
            await a.connect(PeerInfo(b.get_id(), b.get_addrs()))
            stream = await a.new_stream(b.get_id(), [PROTO])

            async def write(writer: int) -> None:
                for seq, size in enumerate(sizes):
                    body = _message(writer, seq, size)
                    await stream.write(struct.pack(">I", len(body)) + body)

            async with trio.open_nursery() as nursery:
                for w in range(writers):
                    nursery.start_soon(write, w)
            await stream.close()
            await done.wait()
            await a.close()
            await b.close()
    assert len(received) == writers * per_writer
    order: dict[int, list[int]] = {}
    for raw in received:
        writer, seq = struct.unpack(">BI", raw[:5])
        assert raw == _message(writer, seq, sizes[seq]), f"message {writer}/{seq} damaged"
        order.setdefault(writer, []).append(seq)
    assert order == {w: list(range(per_writer)) for w in range(writers)}
