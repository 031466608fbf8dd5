"""A bare py-libp2p host that speaks to a colony daemon with a key of the test's choice:
a member's (valid key, hostile bytes) or a stranger's. It opens streams on any protocol
and writes whatever the test hands it, so that tests can send what no colonyp2p node
would: garbage, truncated, oversized and nested frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from colonyp2p.identity import Identity


class Attacker:
    def __init__(self, host: Any, target: Any) -> None:
        self.host = host
        self.target = target  # the daemon's PeerInfo
        self.last_error: Exception | None = None  # why the last send was refused

    async def connect(self) -> None:
        with trio.fail_after(10):
            await self.host.connect(self.target)

    async def send(self, protocol: str, payload: bytes) -> str:
        """Open a stream on ``protocol``, write ``payload`` and half-close it (so that the
        daemon reads all of it: a reset would discard what it had not read yet); what
        happened, for the test's output: ``refused`` (the daemon would not negotiate the
        protocol), ``sent``, or ``reset`` (the daemon dropped the stream first)."""
        stream = None
        for _ in range(2):  # the daemon may have closed the connection: dial afresh once
            try:
                await self.connect()
                with trio.fail_after(10):
                    stream = await self.host.new_stream(self.target.peer_id, [TProtocol(protocol)])
                break
            except Exception as exc:
                self.last_error = exc
                with suppress(Exception):
                    await self.host.disconnect(self.target.peer_id)
        if stream is None:
            return "refused"
        try:
            with trio.fail_after(10):
                await stream.write(payload)
                await stream.close()
            return "sent"
        except Exception:
            with trio.CancelScope(shield=True), trio.move_on_after(1), suppress(Exception):
                await stream.reset()
            return "reset"


@asynccontextmanager
async def attacker(identity: Identity, target_addr: str) -> AsyncIterator[Attacker]:
    """A host with ``identity``'s key, ready to dial the node at ``target_addr``."""
    key_pair = create_new_key_pair(identity.seed)
    noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
    listen = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
    host = new_host(
        key_pair=key_pair,
        sec_opt={NOISE_PROTOCOL_ID: noise},
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        listen_addrs=[listen],
    )
    target = info_from_p2p_addr(multiaddr.Multiaddr(target_addr))
    try:
        async with host.run([listen]):
            network: Any = host.get_network()
            await network.event_background_nursery_created.wait()
            await network.auto_connector.stop()
            yield Attacker(host, target)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5), suppress(Exception):
            await host.close()
