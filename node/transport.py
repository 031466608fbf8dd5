"""Moves colony envelopes between members over py-libp2p (TCP + Noise + Yamux, GossipSub).

The protocol core is sans-IO: it hands its driver ``Send`` and ``Publish`` effects and
expects verified messages back. This module is the part of the driver that touches the
network, and the one place where the network's view of a peer (its libp2p PeerID, proved
by the Noise handshake) meets the colony's view (its member id, proved by the envelope
signature). Both are the same Ed25519 key, so a frame is accepted only when its envelope
is signed by the very peer whose stream carried it.

Membership is consulted on every inbound stream, frame and gossip message, never cached,
because it changes at run time: a revoked member's next frame is refused and its stream
reset. Non-members get neither a direct message nor a pubsub stream from us (see
:mod:`colonyp2p.node.gossip`), so they can neither read nor inject colony traffic.
Everything refused is counted in ``rejections`` (by the WireError code) and changes
nothing else.

Direct messages are one-way: one long-lived outbound stream per peer carries
length-prefixed envelopes (see :mod:`colonyp2p.node.framing`); the answer comes back
on the peer's own stream to us. A send that cannot be delivered is counted and dropped,
never raised, because the core resends on its own timers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, get_args

import multiaddr
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from colonyp2p import wire
from colonyp2p.core.messages import MAX_BATCH, Announcement, Batch, Message
from colonyp2p.errors import ColonyError, NotAMember, OversizeMessage, WireError
from colonyp2p.identity import Identity
from colonyp2p.node import gossip, libp2p_fixes
from colonyp2p.node.framing import close_stream, frame, read_frame, reset_stream
from colonyp2p.node.gate import Gate, label
from colonyp2p.node.gossip import origin
from colonyp2p.node.supervise import Health, supervise

libp2p_fixes.apply()

if TYPE_CHECKING:
    # trio-typing's stubs shadow trio's own annotations and lack trio.TaskStatus
    from trio_typing import TaskStatus

# 2.0.0: placements, votes and certificates (core/provenance.py); a 1.0.0 node's
# StoreSpec has no placement and it refuses the new fields, so the two do not talk
MSG_PROTOCOL: Final = TProtocol("/colonyp2p/msg/2.0.0")
DEFAULT_LISTEN: Final = ("/ip4/127.0.0.1/tcp/0",)
# announcements waiting for verification (py-libp2p's own channels hold 32); what
# overflows is counted
GOSSIP_QUEUE: Final = 4096
OPEN_TIMEOUT: Final = 10.0
MAX_ADDRS_PER_MEMBER: Final = 8
CLOSE_TIMEOUT: Final = 5.0
_PERMANENT_TTL: Final = 0  # py-libp2p peerstore: ttl 0 never expires

_DIRECT: Final = get_args(Message)
_ANNOUNCEMENTS: Final = get_args(Announcement)

OnMessage = Callable[[str, Message], None]
OnAnnouncement = Callable[[str, Announcement], None]
OnPeerLost = Callable[[str], None]

log = logging.getLogger(__name__)


class SenderMismatch(WireError):
    """An envelope signed by another member than the peer that sent it (relayed or replayed)."""

    code = "sender_mismatch"


class WrongChannel(WireError):
    """An announcement on a direct stream, or a direct message published as gossip."""

    code = "wrong_channel"


class ConnectFailed(ColonyError):
    code = "connect_failed"


@dataclass
class _Outbound:
    lock: trio.Lock = field(default_factory=trio.Lock)
    stream: Any = None


class Transport:
    """One member's network endpoint in one colony.

    ``on_message(sender, msg)`` receives verified direct messages and
    ``on_announcement(publisher, item)`` verified gossip; both are called from the
    transport's tasks and must not block (hand over to a channel if needed).
    ``now`` is the clock for envelope timestamps and the replay window.
    """

    def __init__(
        self,
        identity: Identity,
        colony_id: str,
        *,
        is_member: Callable[[str], bool],
        on_message: OnMessage,
        on_announcement: OnAnnouncement,
        listen_addrs: Sequence[str] = DEFAULT_LISTEN,
        now: Callable[[], float] = time.time,
        open_timeout: float = OPEN_TIMEOUT,
        psk: str | None = None,
        on_peer_lost: OnPeerLost | None = None,
        health: Health | None = None,
    ) -> None:
        self.identity = identity
        self.colony_id = colony_id
        self.member_id = identity.member_id
        self.rejections = wire.RejectionCounter()
        self.stats: Counter[str] = Counter()
        self._is_member = is_member
        self._on_message = on_message
        self._on_announcement = on_announcement
        self._on_peer_lost = on_peer_lost
        self._listen = [multiaddr.Multiaddr(a) for a in listen_addrs]
        self._now = now
        self._open_timeout = open_timeout
        if psk is not None and (len(psk) != 64 or not all(c in "0123456789abcdef" for c in psk)):
            raise ValueError("a private network's key is 64 lowercase hex digits (32 bytes)")
        self._psk = psk
        self._replay = wire.ReplayGuard()
        self._seq = 0
        self._book: dict[str, list[Any]] = {}
        self._out: dict[str, _Outbound] = {}
        self._topics: set[str] = set()
        self._joined: set[str] = set()
        self._gossip_in: trio.MemorySendChannel[Any]
        self._gossip_out: trio.MemoryReceiveChannel[Any]
        self._gossip_in, self._gossip_out = trio.open_memory_channel(GOSSIP_QUEUE)
        self._host: Any = None
        # protocols non-members may negotiate (the admission handshake; see node/gate.py)
        self._open_protocols: set[str] = set()
        self.gate: Gate | None = None
        # supervised subsystems (gossip), shared with the daemon's
        self.health = health if health is not None else Health()
        self._gossip_up = trio.Event()  # set once GossipSub first runs
        self._last_seqno = 0  # the last gossip seqno of the previous GossipSub, if any
        self._pubsub: gossip.ColonyPubsub | None = None
        self._router: GossipSub | None = None
        self._nursery: trio.Nursery | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the host until cancelled; ``nursery.start(t.run)`` returns once it listens."""
        if self._host is not None:
            raise RuntimeError("a Transport runs once")
        key_pair = create_new_key_pair(self.identity.seed)
        noise = NoiseTransport(key_pair, noise_privkey=create_new_x25519_key_pair().private_key)
        host = self._host = new_host(
            key_pair=key_pair,
            # only Noise and Yamux: the defaults add plaintext and SECIO, and Mplex
            # deadlocks a stream that is read and written at once
            sec_opt={NOISE_PROTOCOL_ID: noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            # with the default of 3, every dial waits out a 250 ms Happy Eyeballs timer
            connection_config=ConnectionConfig(max_connections_per_peer=1),
            listen_addrs=self._listen,
            # a private network: connections without the colony's pre-shared key fail
            # before any handshake (libp2p pnet)
            psk=self._psk,
        )
        self.gate = Gate(
            host,
            is_member=self._is_member,
            rejections=self.rejections,
            open_protocols=self._open_protocols,
        )
        self.gate.install()
        host.set_stream_handler(MSG_PROTOCOL, self._handle_stream)
        try:
            async with host.run(self._listen):
                network: Any = host.get_network()
                # the swarm starts its AutoConnector in its own task; stopping it
                # before that would be undone
                await network.event_background_nursery_created.wait()
                # it would dial every peer in the peerstore, densifying the topology
                await network.auto_connector.stop()
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        nursery.start_soon(supervise, "gossip", self._run_gossip, self.health)
                        nursery.start_soon(self._deliver_gossip)
                        await self._gossip_up.wait()
                        task_status.started()
                        await trio.sleep_forever()
                finally:
                    self._nursery = None
                    # close the network before the pubsub service stops, so that no
                    # inbound RPC reaches a pubsub whose nursery is already closed
                    await _close(host)
        finally:
            self._pubsub = None
            await _close(host)  # host.run() leaves the listener and sockets open

    async def _run_gossip(self) -> None:
        """One life of GossipSub on the host (supervised: a failure starts a new one).

        A new life cannot take over its predecessor's streams: each peer's inbound
        pubsub stream is read by a task of the pubsub that accepted it, and peers keep
        writing to it. So a restart reconnects to every member it was connected to, and
        GossipSub starts on the new connections as on any new connection."""
        host = self._host
        network: Any = host.get_network()
        before = list(network.notifees)
        gate = self.gate
        assert gate is not None
        router = gossip.new_router()
        pubsub = gossip.ColonyPubsub(
            host,
            router,
            is_member=self._is_member,
            refuse=lambda peer, exc: gate.refused("gossip", peer, exc),
            deliver=self._queue_gossip,
        )
        # py-libp2p numbers a publisher's messages from the clock's second, and peers drop
        # a (publisher, seqno) they saw: a pubsub started within seconds of its
        # predecessor would reuse its numbers, and its messages would be dropped as seen
        pubsub.counter = max(pubsub.counter, self._last_seqno + 1)
        # the notifee through which this pubsub hears of connections: one that ended
        # must stop hearing (it would wait on a channel nobody reads)
        notifees = [n for n in network.notifees if n not in before]
        try:
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                self._pubsub, self._router = pubsub, router
                self._joined.clear()
                for topic in list(self._topics):
                    await self._join(topic)
                if self._gossip_up.is_set():
                    await self._reconnect_all()
                self._gossip_up.set()
                await trio.sleep_forever()
        finally:
            self._last_seqno = pubsub.counter
            self._pubsub = self._router = None
            for notifee in notifees:
                network.remove_notifee(notifee)

    async def _reconnect_all(self) -> None:
        host = self._running_host()
        peers = [str(p) for p in host.get_connected_peers()]
        for peer in peers:
            with contextlib.suppress(Exception):
                await host.disconnect(ID.from_base58(peer))
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(self.reach, peer)

    def serve(self, protocol: TProtocol, handler: Any, *, strangers: bool = False) -> None:
        """Serve ``protocol`` on this host (running); to non-members too only with
        ``strangers``, and then ``handler`` must check who asks."""
        if strangers:
            self._open_protocols.add(protocol)
            if self.gate is not None:
                self.gate.open_to_strangers(protocol)
        self._running_host().set_stream_handler(protocol, handler)

    def refused(self, protocol: str, peer: object, exc: BaseException) -> None:
        """Count (and log once per reason) input refused on ``protocol``."""
        if self.gate is not None:
            self.gate.refused(protocol, peer, exc)
        else:
            self.rejections.count(exc, label(protocol))

    @property
    def host(self) -> Any:
        """The libp2p host while running (for services that share it, such as the DHT)."""
        return self._running_host()

    @property
    def running(self) -> bool:
        return self._nursery is not None

    @property
    def addrs(self) -> list[str]:
        """Full multiaddrs (with ``/p2p/<member id>``) that others can connect to."""
        return [] if self._host is None else [str(a) for a in self._host.get_addrs()]

    def knows(self, member_id: str) -> bool:
        """Whether the address book has an address of ``member_id``."""
        return bool(self._book.get(member_id))

    def add_addrs(self, member_id: str, addrs: Iterable[str]) -> None:
        """Teach the address book where ``member_id`` listens (multiaddrs, with or without
        the ``/p2p/`` part, which must then name the same member); these are dialed
        first, the newest first, before any address libp2p learned by itself."""
        book = self._book.setdefault(member_id, [])
        for text in reversed(list(addrs)):
            addr = multiaddr.Multiaddr(text)
            peer = addr.get_peer_id()
            if peer is not None:
                if peer != member_id:
                    raise ValueError(f"{text} names {peer}, not {member_id}")
                addr = addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer}"))
            # newest first: a member that restarted elsewhere is dialed where it is now
            if addr in book:
                book.remove(addr)
            book.insert(0, addr)
        del book[MAX_ADDRS_PER_MEMBER:]  # members re-announce theirs; old ones fade out

    async def connect(self, addr: str) -> str:
        """Dial a full multiaddr, remember it in the address book, return the member id.
        Raises ConnectFailed (also for a malformed address): the caller asked for this
        connection explicitly."""
        host = self._running_host()
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise ConnectFailed(f"not a multiaddr with /p2p/<member id>: {addr!r}") from exc
        member_id = str(info.peer_id)
        self.add_addrs(member_id, [str(a) for a in info.addrs])
        try:
            with trio.fail_after(self._open_timeout):
                await host.connect(info)
        except Exception as exc:
            raise ConnectFailed(f"cannot connect to {addr}: {exc!r}") from exc
        return member_id

    async def reach(self, member_id: str) -> bool:
        """Make sure there is a connection to member ``member_id``, dialing its known
        addresses as ``send`` does; whether there is one."""
        if member_id == self.member_id or not self.running or not self._is_member(member_id):
            return False
        if member_id in self.connected():
            return True
        out = self._out.setdefault(member_id, _Outbound())
        async with out.lock:  # the stream opened is the one ``send`` then writes to
            if out.stream is None:
                out.stream = await self._open_stream(member_id)
            return out.stream is not None

    def connected(self) -> set[str]:
        """Member ids of the peers this host has a connection to."""
        return set() if self._host is None else {str(p) for p in self._host.get_connected_peers()}

    async def drop_non_members(self) -> int:
        """Disconnect every connected peer that is not (or no longer) a member; call it
        after a membership change, so a revoked member also loses its gossip stream."""
        host = self._running_host()
        dropped = 0
        for peer in list(host.get_connected_peers()):
            if not self._is_member(str(peer)):
                await host.disconnect(peer)
                dropped += 1
        return dropped

    # --- direct messages -------------------------------------------------------------

    async def send(self, to: str, msg: Message) -> bool:
        """Send one message to a member; True once written to its stream.

        Never raises for the network: an unreachable peer costs up to ``open_timeout``,
        then the message is counted in ``stats["send_failed"]`` and dropped. Raises only
        for what is the caller's bug (not a direct message type, oversize).
        """
        return await self.send_many(to, (msg,)) == 1

    async def send_many(self, to: str, msgs: Sequence[Message]) -> int:
        """Send messages to a member in order, as few envelopes as fit (see ``Batch``);
        how many were written. Fails as ``send`` does, per envelope."""
        for msg in msgs:
            if not isinstance(msg, _DIRECT):
                raise TypeError(f"{type(msg).__name__} is not a direct message")
        # never to a non-member: it would read colony traffic (the core may still name
        # a member revoked a moment ago)
        if to == self.member_id or not self.running or not self._is_member(to):
            self.stats["send_dropped"] += len(msgs)
            return 0
        sent = 0
        for count, raw in self._envelopes(msgs, wire.MAX_MESSAGE_SIZE):
            if await self._send_raw(to, raw):
                sent += count
            else:
                self.stats["send_failed"] += count
        self.stats["sent"] += sent
        return sent

    def _envelopes(self, items: Sequence[object], max_size: int) -> list[tuple[int, bytes]]:
        """Sealed envelopes for ``items``, a Batch where more than one fit in one."""
        if len(items) == 1:
            return [(1, self._seal(items[0], max_size))]
        if len(items) <= MAX_BATCH:
            try:
                return [(len(items), self._seal(wire.batch(items), max_size))]
            except OversizeMessage:
                pass
        half = len(items) // 2
        return self._envelopes(items[:half], max_size) + self._envelopes(items[half:], max_size)

    async def _send_raw(self, to: str, sealed: bytes) -> bool:
        out = self._out.setdefault(to, _Outbound())
        # one frame at a time per peer: concurrent writes would interleave their bytes
        async with out.lock:
            raw = frame(sealed)
            for _ in range(2):
                stream, fresh = out.stream, out.stream is None
                if stream is None:
                    stream = out.stream = await self._open_stream(to)
                    if stream is None:
                        break
                if await self._write(out, stream, raw, to):
                    return True
                if fresh:
                    break  # a stream that fails at once would fail again
                # else the long-lived stream died (peer restarted, connection lost): reopen
        return False

    async def _write(self, out: _Outbound, stream: Any, raw: bytes, to: str) -> bool:
        written = False
        try:
            await stream.write(raw)
            written = True
        except Exception as exc:
            log.debug("write to %s failed: %r", to, exc)
        finally:
            if not written:
                # also on cancellation: half a frame would desynchronise the stream
                out.stream = None
                await reset_stream(stream)
        return written

    async def open_stream(self, to: str, protocol: TProtocol) -> Any:
        """A new stream to member ``to`` on ``protocol`` (for request/response services
        such as the block exchange), dialed as ``send`` dials; None if unreachable."""
        if to == self.member_id or not self.running or not self._is_member(to):
            return None
        return await self._open_stream(to, protocol)

    async def _open_stream(self, to: str, protocol: TProtocol = MSG_PROTOCOL) -> Any:
        host = self._host  # if it closes meanwhile, new_stream fails and we return None
        try:
            peer = ID.from_base58(to)
        except Exception:
            log.debug("cannot send to %r: not a member id", to)
            return None
        network: Any = host.get_network()
        with trio.move_on_after(self._open_timeout):
            if network.get_connections(peer):
                return await self._new_stream(host, peer, protocol)
            # py-libp2p dials only the first address of each transport class, and then
            # refuses to dial the peer at all for 60 s once that failed (its negative
            # cache). Hand it one address at a time, newest first, so that a member
            # that moved or restarted is reached at once through its new address.
            store = host.get_peerstore()
            for addr in self._candidates(to, store, peer):
                store.clear_addrs(peer)
                # ttl 0: never expires (host.connect() files addresses for 120 s only)
                store.add_addrs(peer, [addr], _PERMANENT_TTL)
                network.unblock_peer(peer)
                stream = await self._new_stream(host, peer, protocol)
                if stream is not None:
                    self.add_addrs(to, [str(addr)])  # the address that worked goes first
                    return stream
            return None
        log.debug("opening a stream to %s timed out", to)
        return None

    def _candidates(self, to: str, store: Any, peer: ID) -> list[Any]:
        candidates = list(self._book.get(to, ()))
        try:
            learned = store.addrs(peer)  # e.g. from identify, for a peer that dialed us
        except Exception:  # py-libp2p raises for unknown and expired peers alike
            learned = []
        return candidates + [a for a in learned if a not in candidates]

    async def _new_stream(self, host: Any, peer: ID, protocol: TProtocol = MSG_PROTOCOL) -> Any:
        try:
            return await host.new_stream(peer, [protocol])
        except Exception as exc:
            log.debug("cannot open a stream to %s: %r", peer, exc)
            return None

    async def _handle_stream(self, stream: Any) -> None:
        # runs in the swarm's per-connection nursery: an exception escaping here would
        # tear down the whole connection, so none may
        peer = str(stream.muxed_conn.peer_id)
        if not self._is_member(peer):
            self.rejections.count(NotAMember(f"stream from {peer}, not a member"), "msg")
            await reset_stream(stream)
            return
        try:
            while True:
                raw = await read_frame(stream, wire.MAX_MESSAGE_SIZE)
                if raw is None:
                    await close_stream(stream)
                    return
                if not self._is_member(peer):  # revoked while the stream was open
                    self.rejections.count(
                        NotAMember(f"frame from {peer}, no longer a member"), "msg"
                    )
                    break
                self._receive(peer, raw)
        except OversizeMessage as exc:
            self.rejections.count(exc, "msg")  # the stream is mid-frame now: unusable
        except Exception as exc:
            log.debug("stream from %s ended: %r", peer, exc)
        finally:
            # Checked here, where the peer's stream ends with its connection: py-libp2p
            # tells its notifees of a closed connection only 100 ms later.
            if self._on_peer_lost is not None and self._lost(stream):
                try:
                    self._on_peer_lost(peer)
                except Exception:
                    log.exception("the lost-peer callback failed for %s", peer)
        await reset_stream(stream)

    def _lost(self, stream: Any) -> bool:
        """Whether ``stream`` ended with its connection and no other connection to the
        peer remains (one replaced by a newer dial is not a lost peer)."""
        muxed = stream.muxed_conn
        if not _closing(muxed) or self._host is None:
            return False
        try:
            others = self._host.get_network().get_connections(muxed.peer_id)
        except Exception:
            others = []
        return all(c.muxed_conn is muxed or _closing(c.muxed_conn) for c in others)

    def _receive(self, peer: str, raw: bytes) -> None:
        try:
            env, msgs = self._open_envelope(raw, peer, _DIRECT, record=True)
        except ColonyError as exc:
            self.rejections.count(exc, "msg")
            return
        self.stats["received"] += len(msgs)
        for msg in msgs:
            _call(self._on_message, env.sender, msg)

    # --- gossip ----------------------------------------------------------------------

    async def subscribe(self, topic: str) -> None:
        """Receive ``topic``'s announcements (now if running, else from ``run``)."""
        self._topics.add(topic)
        if self._nursery is not None:
            await self._join(topic)

    async def publish(self, topic: str, item: Announcement) -> bool:
        """Publish a signed announcement; False (counted) if the pubsub refused it."""
        return await self.publish_many(topic, (item,)) == 1

    async def publish_many(self, topic: str, items: Sequence[Announcement]) -> int:
        """Publish announcements on ``topic`` in as few gossip messages as fit (a Batch
        each); how many went out. Each gossip message counts against py-libp2p's
        per-topic rate, so batching is what lets a busy node announce at all."""
        for item in items:
            if not isinstance(item, _ANNOUNCEMENTS):
                raise TypeError(f"{type(item).__name__} is not an announcement")
        published = 0
        for count, raw in self._envelopes(items, gossip.MAX_SIZE):
            if self._pubsub is None or not self.running:
                self.stats["publish_dropped"] += count
                continue
            try:
                await self._pubsub.wait_for_room()
                await self._pubsub.publish(topic, raw)
            except Exception as exc:
                log.warning("publishing on %s failed: %r", topic, exc)
                self.stats["publish_dropped"] += count
                continue
            published += count
        self.stats["published"] += published
        return published

    def mesh(self, topic: str) -> set[str]:
        """Members in this host's GossipSub mesh for ``topic``."""
        mesh = self._router.mesh if self._router is not None else {}
        return {str(p) for p in mesh.get(topic, ())}

    async def _join(self, topic: str) -> None:
        if topic in self._joined or self._pubsub is None:
            return
        self._joined.add(topic)
        self._pubsub.set_topic_validator(topic, self._validate_gossip, False)
        # the returned subscription stays empty: ColonyPubsub hands messages to
        # _queue_gossip instead
        await self._pubsub.subscribe(topic)

    def _validate_gossip(self, forwarder: ID, msg: Any) -> bool:
        # Decides whether pubsub forwards the message to our mesh, so forged or stale
        # envelopes go no further than us. Stateless (the replay guard is only checked):
        # the delivery task verifies again and records, which costs one more signature
        # check per announcement but keeps the guard's state in one place.
        if str(forwarder) == self.member_id:
            return True  # our own publication
        try:
            self._open_envelope(msg.data, origin(msg), _ANNOUNCEMENTS, record=False)
        except ColonyError as exc:
            self.rejections.count(exc, "gossip")
            return False
        return True

    def _queue_gossip(self, msg: Any) -> None:
        if origin(msg) == self.member_id:
            return  # pubsub echoes our own publications; the core loops back by itself
        try:
            self._gossip_in.send_nowait(msg)
        except trio.WouldBlock:
            self.stats["gossip_overflow"] += 1
            log.warning("gossip queue full: dropped an announcement from %s", origin(msg))

    async def _deliver_gossip(self) -> None:
        async for msg in self._gossip_out:
            try:
                env, items = self._open_envelope(msg.data, origin(msg), _ANNOUNCEMENTS, record=True)
            except ColonyError as exc:
                self.rejections.count(exc, "gossip")
                continue
            self.stats["announcements"] += len(items)
            for item in items:
                _call(self._on_announcement, env.sender, item)

    # --- envelopes -------------------------------------------------------------------

    def _seal(self, msg: object, max_size: int) -> bytes:
        now = self._now()
        self._seq = wire.next_seq(self._seq, now)
        return wire.encode(self.identity, self.colony_id, self._seq, now, msg, max_size=max_size)

    def _open_envelope(
        self, raw: bytes, peer: str, kinds: tuple[type, ...], *, record: bool
    ) -> tuple[wire.Envelope, list[Any]]:
        """Decode and check ``raw`` as sent by ``peer``: the envelope and what it carries
        (one message, or a batch's). The replay guard is consulted last, and changed only
        with ``record``, so a refused envelope consumes no seq."""
        now = self._now()
        env = wire.decode(
            raw, colony_id=self.colony_id, is_member=self._is_member, now=now, replay=None
        )
        if env.sender != peer:
            raise SenderMismatch(f"envelope from {env.sender} arrived from {peer}")
        if isinstance(env.body, Batch):
            carried = wire.unbatch(env.body, kinds)
        elif isinstance(env.body, kinds):
            carried = [env.body]
        else:
            raise WrongChannel(f"{env.type} from {peer} on the wrong channel")
        if record:
            self._replay.accept(env.sender, env.seq, env.timestamp, now)
        else:
            self._replay.check(env.sender, env.seq, env.timestamp, now)
        return env, carried

    def _running_host(self) -> Any:
        if self._host is None or not self.running:
            raise RuntimeError("the transport is not running")
        return self._host


def _closing(muxed: Any) -> bool:
    """Whether a muxed connection is closed or closing (Yamux sets
    ``event_shutting_down`` before it wakes the connection's streams)."""
    shutting = getattr(muxed, "event_shutting_down", None)
    return bool(muxed.is_closed or (shutting is not None and shutting.is_set()))


def _call(callback: Callable[[str, Any], None], sender: str, body: Any) -> None:
    try:
        callback(sender, body)
    except Exception:
        # a driver bug must not cost the peer its stream or the other subscribers
        log.exception("colony callback failed on a %s from %s", type(body).__name__, sender)


async def _close(host: Any) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT):
        try:
            await host.close()
        except Exception as exc:
            log.debug("host close failed: %r", exc)
