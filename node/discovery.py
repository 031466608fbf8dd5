"""Finds the colony's members and their addresses through py-libp2p's Kademlia DHT.

Before gossip and direct streams reach a member, its address must be known, also to a
node that knows only one other member (or none: a LAN, with mDNS). The DHT runs on the
transport's host, and every member keeps two records in it, renewed every ``refresh`` s:
a provider record under a colony key, for ``find_members`` (sharded by member id, since
py-libp2p keeps at most k=20 providers per key on a node; records live 48 h, so "found"
means "announced", not "up"); and an address record, for ``lookup``, that only counts if
it is a canonical-CBOR AddrRecord signed by the member it names (strict validation plus
our validator), so nobody can redirect a member's traffic; the newest record wins.
Non-members are kept out as the transport keeps them out: their DHT streams are reset,
and they are never queried, told anything, put in the routing table or returned.

py-libp2p 0.8.1 pitfalls handled here: ``find_providers`` and ``get_value`` answer from
the local store whenever it holds something (a provider finds only itself; a fetched
record is served stale for 24 h), so we ask the k closest members ourselves with the
one-RPC helpers ``_get_providers_from_peer_with_closers`` and ``_get_from_peer`` (private;
libp2p is pinned) and de-duplicate by peer id. Servers refuse FIND_NODE for keys over 50
bytes that are not multihashes: the record key is hashed. Identify runs before our KAD
handler exists, so earlier connections look like DHT clients: bootstrap adds connected
members unchecked. No libp2p call bounds a whole operation: ours run under
``move_on_after``, errors are logged and counted, and the next round retries.

mDNS (``mdns=True``, off by default) uses py-libp2p's MDNSDiscovery in parts: its
``start()`` blocks the trio thread in zeroconf, and its listener writes to the peerstore
and reports peers from zeroconf's thread. We build and register it in a worker thread
with a peerstore of its own, advertise dialable addresses under a colony-specific service
type, carry peers into trio with the trio token, and connect to those that are members.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import random
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final

import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStore
from libp2p.records.validator import Validator
from libp2p.tools.anyio_service import background_trio_service

from colonyp2p import codec
from colonyp2p.errors import ColonyError
from colonyp2p.identity import Identity, verify
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.node.transport import MAX_ADDRS_PER_MEMBER, ConnectFailed, Transport

if TYPE_CHECKING:
    from trio_typing import TaskStatus

NAMESPACE: Final = "colonyp2p"
ADDRS_PREFIX: Final = f"/{NAMESPACE}/a/"
REFRESH: Final = 60.0
RETRY: Final = 5.0
TIMEOUT: Final = 10.0
SHARDS: Final = 4
MAX_RECORD: Final = 4096
MAX_CLOCK_SKEW: Final = 300.0  # a record from further in the future would win for too long
# Provider records this node keeps of one member (py-libp2p's store takes ADD_PROVIDER
# from any member, for any key, for 48 h). A member provides its colony key and each
# snapshot it holds; records beyond this are refused, counted under refused.kad.
MAX_PROVIDED: Final = 10_000

log = logging.getLogger(__name__)


class ProviderQuota(ColonyError):
    """More provider records from one member than a node keeps."""

    code = "provider_quota"


@dataclass(frozen=True)
class AddrRecord:
    """Where a member listens, signed by that member."""

    member_id: str
    colony_id: str
    addrs: tuple[str, ...]
    issued_at: float
    signature: bytes = b""

    @classmethod
    def create(
        cls, identity: Identity, colony_id: str, addrs: Sequence[str], now: float
    ) -> AddrRecord:
        unsigned = cls(
            identity.member_id, colony_id, tuple(addrs[:MAX_ADDRS_PER_MEMBER]), float(now)
        )
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned_bytes(unsigned)))

    def encode(self) -> bytes:
        return codec.canonical_bytes(self)


class AddrValidator(Validator):
    """The DHT's check of every ``/colonyp2p/...`` record it stores, serves or fetches."""

    def __init__(self, colony_id: str, now: Callable[[], float] = time.time) -> None:
        self.colony_id = colony_id
        self.now = now

    def decode(self, key: str, value: bytes) -> AddrRecord:
        """The record in ``value``; raises (any ColonyError or ValueError) unless it is a
        canonical AddrRecord of our colony, signed by the member that ``key`` names."""
        if not key.startswith(ADDRS_PREFIX):
            raise ValueError(f"no records under {key!r}")
        if len(value) > MAX_RECORD:
            raise ValueError(f"record of {len(value)} bytes")
        record = codec.from_data(AddrRecord, codec.loads_canonical(value))
        if key != addr_key(record.member_id):
            raise ValueError(f"record of {record.member_id} under {key!r}")
        if record.colony_id != self.colony_id:
            raise ValueError(f"record for colony {record.colony_id!r}")
        if len(record.addrs) > MAX_ADDRS_PER_MEMBER:
            raise ValueError(f"{len(record.addrs)} addresses")
        if not record.issued_at <= self.now() + MAX_CLOCK_SKEW:
            raise ValueError("record issued in the future")
        verify(record.member_id, unsigned_bytes(record), record.signature)
        return record

    def validate(self, key: str, value: bytes) -> None:
        self.decode(key, value)

    def select(self, key: str, values: list[bytes]) -> int:
        def rank(i: int) -> tuple[float, bytes]:
            try:
                return self.decode(key, values[i]).issued_at, values[i]
            except Exception:
                return -math.inf, b""

        # ties broken by the bytes, so that every node picks the same record
        return max(range(len(values)), key=rank)


def addr_key(member_id: str) -> str:
    """The DHT key of a member's address record. Hashed, because py-libp2p servers
    refuse FIND_NODE for keys longer than 50 bytes that are not multihashes, and a
    lookup could then not get past the local routing table."""
    return ADDRS_PREFIX + hashlib.sha256(member_id.encode()).hexdigest()[:32]


def provider_key(colony_id: str, shard: int) -> bytes:
    """A sha256 multihash: the DHT places provider records by it."""
    return (
        b"\x12\x20" + hashlib.sha256(f"{NAMESPACE}/members/{colony_id}/{shard}".encode()).digest()
    )


def content_key(colony_id: str, cid: str) -> bytes:
    """The provider key of a snapshot (or block) in a colony's DHT: a sha256 multihash,
    colony-scoped so that colonies sharing a DHT do not mix providers."""
    return b"\x12\x20" + hashlib.sha256(f"{NAMESPACE}/blocks/{colony_id}/{cid}".encode()).digest()


def shard_of(member_id: str, shards: int) -> int:
    return int.from_bytes(hashlib.sha256(member_id.encode()).digest()[:4], "big") % shards


class Discovery:
    """The DHT (and optionally mDNS) side of one member's transport; see the module doc."""

    def __init__(
        self,
        transport: Transport,
        colony_id: str,
        identity: Identity,
        *,
        is_member: Callable[[str], bool],
        server: bool = True,
        mdns: bool = False,
        refresh: float = REFRESH,
        timeout: float = TIMEOUT,
        shards: int = SHARDS,
        stagger: float = 1.0,
        now: Callable[[], float] = time.time,
        max_provided: int = MAX_PROVIDED,
    ) -> None:
        self.transport, self.colony_id, self.identity = transport, colony_id, identity
        self.member_id = identity.member_id
        self.validator = AddrValidator(colony_id, now)
        self.stats: Counter[str] = Counter()
        self.announced = trio.Event()  # set after the first announcement reached a peer
        self.dht: Any = None  # the running KadDHT
        self._is_member, self._now = is_member, now
        self._server, self._mdns, self._shards = server, mdns, shards
        self._refresh, self._timeout, self._stagger = refresh, timeout, stagger
        self._max_provided = max_provided

    # --- lifecycle -------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; a DHT that fails is rebuilt after ``refresh`` seconds,
        because discovery is an optimisation the daemon must survive without."""
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        while True:
            try:
                await self._run_dht(ready)
            except Exception:
                self.stats["dht_crashed"] += 1
                log.exception("the DHT failed; restarting it in %.0f s", self._refresh)
            ready()
            await trio.sleep(self._refresh)

    async def _run_dht(self, ready: Callable[[], None]) -> None:
        host = self.transport.host
        mode = DHTMode.SERVER if self._server else DHTMode.CLIENT
        dht = KadDHT(host, mode, strict_validation=True)
        dht.register_validator(NAMESPACE, self.validator)
        self._members_only(dht)
        self._cap_providers(dht.provider_store)
        if self._server:
            host.set_stream_handler(KAD_PROTOCOL, self._handle_dht_stream)  # replaces KadDHT's
        try:
            async with background_trio_service(dht), trio.open_nursery() as nursery:
                self.dht = dht
                if self._mdns:
                    nursery.start_soon(self._run_mdns)  # zeroconf takes seconds to start
                ready()
                await trio.sleep(random.uniform(0, self._stagger))  # not all nodes at once
                while True:
                    await self._bounded("bootstrap", self._bootstrap, dht)
                    told = await self.announce()
                    # only now: a starting colony waits for the announcements, whose own
                    # lookups find the k closest members without a refreshed table
                    await self._bounded("refresh", dht.refresh_routing_table)
                    # alone (yet): try again soon, someone may connect or appear on mDNS
                    await trio.sleep(self._refresh if told else min(self._refresh, RETRY))
        finally:
            self.dht = None
            if self._server:
                with contextlib.suppress(Exception):
                    host.remove_stream_handler(KAD_PROTOCOL)

    def _members_only(self, dht: Any) -> None:
        """Keep non-members out of everything the DHT sends: its lookups would otherwise
        query any connected peer, then give it our provider and address records."""
        routing, table = dht.peer_routing, dht.routing_table
        query, closest, add = (
            routing._query_peer_for_closest,
            routing.find_closest_peers_network,
            table.add_peer,
        )

        async def query_member(peer: Any, key: bytes) -> list[Any]:
            if not self._is_member(str(peer)):
                return []
            return self._member_peers(await query(peer, key))

        async def closest_members(key: bytes, count: int = 20) -> list[Any]:
            return self._member_peers(await closest(key, count))

        async def add_member(peer: Any, **kw: Any) -> bool:
            peer_id = peer if isinstance(peer, ID) else peer.peer_id
            return self._is_member(str(peer_id)) and bool(await add(peer, **kw))

        # instance attributes: the provider and value stores call through these objects
        routing._query_peer_for_closest = query_member
        routing.find_closest_peers_network = closest_members
        table.add_peer = add_member

    def _cap_providers(self, store: Any) -> None:
        """Keep at most ``max_provided`` provider records of each other member: an
        ADD_PROVIDER beyond is refused and counted. The keys a member provides are
        tracked here, and recounted against the store (expired records dropped) when a
        member reaches the cap."""
        add = store.add_provider
        held: dict[str, set[bytes]] = {}  # provider -> keys

        def still_held(peer: str, keys: set[bytes]) -> set[bytes]:
            out = set()
            for key in keys:
                record = store.providers.get(key, {}).get(peer)
                if record is not None and not record.is_expired():
                    out.add(key)
            return out

        def add_capped(key: bytes, provider: Any) -> None:
            peer = str(provider.peer_id) if provider is not None and provider.peer_id else ""
            if peer and peer != self.member_id:
                keys = held.setdefault(peer, set())
                if key not in keys and len(keys) >= self._max_provided:
                    keys = held[peer] = still_held(peer, keys)
                    if len(keys) >= self._max_provided:
                        self.stats["provider_refused"] += 1
                        self.transport.refused(
                            KAD_PROTOCOL,
                            peer,
                            ProviderQuota(
                                f"{peer} provides more than the {self._max_provided} keys "
                                "this node keeps provider records of for one member"
                            ),
                        )
                        return
                keys.add(key)
            add(key, provider)

        store.add_provider = add_capped  # an instance attribute: KadDHT calls through it

    def held_providers(self) -> dict[str, int]:
        """Provider records the local store holds, by provider (for tests and status)."""
        out: Counter[str] = Counter()
        dht = self.dht
        if dht is not None:
            for providers in dht.provider_store.providers.values():
                out.update(p for p, r in providers.items() if not r.is_expired())
        return dict(out)

    async def _handle_dht_stream(self, stream: Any) -> None:
        dht = self.dht
        if dht is None or not self._is_member(str(stream.muxed_conn.peer_id)):
            self.stats["dht_stream_refused"] += 1
            with contextlib.suppress(Exception):
                await stream.reset()
            return
        await dht.handle_stream(stream)

    async def _bounded(self, what: str, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``fn(*args)`` for at most ``timeout``, counting and logging what went wrong."""
        with trio.move_on_after(self._timeout) as scope:
            try:
                await fn(*args)
            except Exception as exc:
                self.stats[f"{what}_failed"] += 1
                log.warning("DHT %s failed: %r", what, exc)
        if scope.cancelled_caught:
            self.stats[f"{what}_timeout"] += 1
            log.warning("DHT %s timed out after %.0f s", what, self._timeout)

    def _member_peers(self, peers: Sequence[Any]) -> list[Any]:
        return [p for p in peers if str(p) != self.member_id and self._is_member(str(p))]

    async def _bootstrap(self, dht: Any) -> None:
        table = dht.routing_table
        for peer in table.get_peer_ids():
            if not self._is_member(str(peer)):
                table.remove_peer(peer)  # revoked since it was added
        for peer in self._member_peers(self.transport.host.get_connected_peers()):
            await dht.add_peer(peer, skip_server_mode_check=True)

    # --- announcing ------------------------------------------------------------------

    async def announce(self) -> bool:
        """Provide the colony key and put our address record now; True if the provider
        record reached at least one other node (a lone member has nobody to tell)."""
        dht = self.dht
        if dht is None:
            return False
        key = provider_key(self.colony_id, shard_of(self.member_id, self._shards))
        told = []

        async def provide() -> None:
            told.append(await dht.provider_store.provide(key))

        addrs = _dialable(self.transport.addrs)
        record = AddrRecord.create(self.identity, self.colony_id, addrs, self._now())
        async with trio.open_nursery() as nursery:  # independent: at once
            nursery.start_soon(
                self._bounded, "put", dht.put_value, addr_key(self.member_id), record.encode()
            )
            nursery.start_soon(self._bounded, "provide", provide)
        if told and told[0]:
            self.stats["announced"] += 1
            self.announced.set()
            return True
        return False

    # --- finding ---------------------------------------------------------------------

    async def find_members(self) -> list[str]:
        """Members that announced themselves (not us), sorted; their addresses go to the
        transport's address book; [] while the DHT is not running."""
        keys = [provider_key(self.colony_id, i) for i in range(self._shards)]
        return await self._providers("find_members", keys)

    async def provide(self, key: bytes) -> bool:
        """Announce that this member provides ``key`` (a multihash, e.g. a snapshot's
        ``content_key``); True if the record reached another node."""
        dht = self.dht
        if dht is None:
            return False
        told: list[bool] = []

        async def provide() -> None:
            told.append(bool(await dht.provider_store.provide(key)))

        await self._bounded("provide_content", provide)
        return bool(told and told[0])

    async def find_providers(self, key: bytes) -> list[str]:
        """Members (not us) that announced ``key``, sorted; their addresses go to the
        transport's address book; [] while the DHT is not running."""
        return await self._providers("find_providers", [key])

    async def _providers(self, what: str, keys: list[bytes]) -> list[str]:
        """The members that provide any of ``keys``, asked of the k closest members to
        each key (py-libp2p's own find_providers answers from the local store) and
        de-duplicated by peer id; non-members are counted and left out."""
        dht = self.dht
        if dht is None:
            return []
        store = dht.provider_store
        infos = [info for key in keys for info in store.get_providers(key)]

        async def ask(peer: Any, key: bytes) -> None:
            providers, _ = await store._get_providers_from_peer_with_closers(peer, key)
            infos.extend(providers)

        await self._bounded(what, self._ask_closest, dht, keys, ask)
        found: dict[str, dict[str, None]] = {}  # ordered sets: one entry per storing node
        for info in infos:
            found.setdefault(str(info.peer_id), {}).update(dict.fromkeys(map(str, info.addrs)))
        found.pop(self.member_id, None)
        for member_id in [m for m in found if not self._is_member(m)]:
            self.stats["non_member_provider"] += 1
            del found[member_id]
        for member_id, addrs in found.items():
            self._teach(member_id, list(addrs))
        return sorted(found)

    async def lookup(self, member_id: str) -> list[str]:
        """Where ``member_id`` listens, from its newest valid address record ([] if none
        was found); the addresses also go to the transport's address book."""
        dht = self.dht
        if dht is None:
            return []
        key = addr_key(member_id)
        raw_key = key.encode()
        values: list[bytes] = []
        local = dht.value_store.get(raw_key)
        if local is not None:
            values.append(local.value)

        async def ask(peer: Any, key: bytes) -> None:
            value = await dht.value_store._get_from_peer(peer, key)
            if isinstance(value, bytes):
                values.append(value)

        await self._bounded("lookup", self._ask_closest, dht, [raw_key], ask)
        records = []
        for value in values:
            try:
                records.append(self.validator.decode(key, value))
            except Exception as exc:
                self.stats["record_refused"] += 1  # a node that stored it unchecked
                log.debug("refused an address record for %s: %r", member_id, exc)
        if not records:
            return []
        best = max(records, key=lambda r: (r.issued_at, r.encode()))
        return self._teach(member_id, best.addrs)

    async def _ask_closest(
        self, dht: Any, keys: list[bytes], ask: Callable[[Any, bytes], Awaitable[None]]
    ) -> None:
        """``ask`` each of the k members closest to each key (at once)."""

        async def around(key: bytes) -> None:
            peers = await dht.peer_routing.find_closest_peers_network(key)  # members only
            async with trio.open_nursery() as nursery:
                for peer in peers:
                    nursery.start_soon(ask, peer, key)

        async with trio.open_nursery() as nursery:
            for key in keys:
                nursery.start_soon(around, key)

    def _teach(self, member_id: str, addrs: Sequence[str]) -> list[str]:
        """Give ``addrs`` to the transport's address book; those it took."""
        good = []
        for addr in addrs:
            try:
                self.transport.add_addrs(member_id, [addr])
                good.append(addr)
            except Exception as exc:  # malformed, or naming another peer
                self.stats["bad_addr"] += 1
                log.debug("bad address %r for %s: %r", addr, member_id, exc)
        return good

    # --- mDNS ------------------------------------------------------------------------

    async def _run_mdns(self) -> None:
        token = trio.lowlevel.current_trio_token()
        found_in, found_out = trio.open_memory_channel[Any](64)

        def found(info: Any) -> None:  # zeroconf's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_offer, found_in, info)

        # its listener writes every peer it hears of into the swarm's peerstore, from
        # zeroconf's thread: give it a peerstore of its own, we hand members over
        swarm: Any = SimpleNamespace(get_peer_id=self.transport.host.get_id, peerstore=PeerStore())
        addrs = _dialable(self.transport.addrs)
        service = f"_p2p-{self.colony_id[:10]}._udp.local."  # DNS-SD allows 15 characters
        try:
            mdns = await trio.to_thread.run_sync(
                lambda: MDNSDiscovery(swarm, listen_addrs=addrs, service_type=service)
            )
        except Exception as exc:  # no multicast, port 5353 taken, ...: the DHT still works
            self.stats["mdns_failed"] += 1
            log.warning("mDNS unavailable: %r", exc)
            return
        peerDiscovery.register_peer_discovered_handler(found)
        try:
            await trio.to_thread.run_sync(mdns.broadcaster.register)
            async for info in found_out:
                if str(info.peer_id) != self.member_id and self._is_member(str(info.peer_id)):
                    await self._connect(str(info.peer_id), [str(a) for a in info.addrs])
        finally:
            peerDiscovery.unregister_peer_discovered_handler(found)
            with trio.CancelScope(shield=True):  # zeroconf's own timeouts bound it
                await trio.to_thread.run_sync(_stop_mdns, mdns)

    async def _connect(self, peer: str, addrs: list[str]) -> None:
        for addr in self._teach(peer, addrs):
            if peer in self.transport.connected():
                return
            try:
                await self.transport.connect(f"{addr}/p2p/{peer}")
                self.stats["mdns_connected"] += 1
            except ConnectFailed as exc:
                log.debug("mDNS peer %s unreachable at %s: %s", peer, addr, exc)


def _dialable(addrs: Sequence[str]) -> list[str]:
    """Others cannot dial a wildcard address: name this machine's LAN address instead."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # sends nothing; picks the outgoing interface
            ip = probe.getsockname()[0]
    except OSError:
        ip = "127.0.0.1"
    return [a.replace("/ip4/0.0.0.0/", f"/ip4/{ip}/") for a in addrs]


def _offer(channel: trio.MemorySendChannel[Any], info: Any) -> None:
    # when full, drop: mDNS announces again
    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
        channel.send_nowait(info)


def _stop_mdns(mdns: Any) -> None:
    # MDNSDiscovery.stop() also cancels the cleanup task that we never started
    mdns.broadcaster.unregister()
    mdns.listener.stop()
    mdns.zeroconf.close()
