"""Finds the colony's members and their addresses through py-libp2p's Kademlia DHT.

Gossip and direct streams need a connection first; a member that knows one other member
(or none: a LAN with mDNS) must still learn where everybody else listens. The DHT runs on
the transport's own host, so its lookups ride the same Noise-authenticated connections,
and every member keeps two kinds of records in it, refreshed every ``refresh`` seconds:

* a provider record under a key derived from the colony id, so ``find_members`` learns
  who is in the colony (sharded by member id: py-libp2p keeps at most k=20 providers per
  key on each node). Provider records live 48 h, so "found" means "announced", not "up".
* a signed address record under ``/colonyp2p/addrs/<member id>``, so ``lookup`` learns
  where one given member listens. The DHT runs with strict validation and our validator:
  a record must be a canonical-CBOR AddrRecord signed by the member named in the key, so
  nobody can redirect a member's traffic; between two records the newest wins.

Non-members are kept out like the transport keeps them out: their DHT streams are reset,
they are never queried, never bootstrapped into the routing table, and never returned.

py-libp2p 0.8.1 pitfalls worked around here:
* ``find_providers`` and ``get_value`` answer from the local store when it holds anything,
  without asking the network: a provider always finds itself (and only itself), and a
  fetched address record is cached for 24 h, stale after its member moved. We ask the k
  closest members ourselves through the one-RPC helpers ``_get_providers_from_peer_with_
  closers`` and ``_get_from_peer`` (private: libp2p is pinned), and keep the newest record.
* ``find_providers`` returns duplicates: results are de-duplicated by peer id.
* Identify runs before our KAD handler exists, so peers connected earlier look like DHT
  clients and ``add_peer`` skips them: bootstrap adds connected members unchecked.
* No DHT call has a deadline of its own that bounds a whole operation: each is under
  ``move_on_after``; an error is logged and counted, and the next round retries.

mDNS (``mdns=True``, off by default): py-libp2p's MDNSDiscovery is usable only in parts.
Its ``start()`` registers the service with zeroconf's blocking API on the trio thread,
and its listener reports peers from zeroconf's thread through a process-wide singleton.
We therefore run the construction and registration in a worker thread, hop discovered
peers into trio through the trio token, and connect to those that are members. The
service type is colony-specific (``_p2p-<colony id prefix>``), so other libp2p nodes on
the LAN are not even resolved.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery
from libp2p.kad_dht.common import PROTOCOL_ID as KAD_PROTOCOL
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.records.validator import Validator
from libp2p.tools.anyio_service import background_trio_service

from colonyp2p import codec
from colonyp2p.identity import Identity, verify
from colonyp2p.model.checks import as_float, as_str_tuple, check_str
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.node.transport import MAX_ADDRS_PER_MEMBER, ConnectFailed, Transport

if TYPE_CHECKING:
    from trio_typing import TaskStatus

NAMESPACE: Final = "colonyp2p"
ADDRS_PREFIX: Final = f"/{NAMESPACE}/addrs/"
REFRESH: Final = 60.0
TIMEOUT: Final = 10.0
SHARDS: Final = 4
MAX_RECORD: Final = 4096
MAX_ADDR: Final = 256
MAX_CLOCK_SKEW: Final = 300.0  # a record from further in the future would win for too long

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddrRecord:
    """Where a member listens, signed by that member."""

    member_id: str
    colony_id: str
    addrs: tuple[str, ...]
    issued_at: float
    signature: bytes = b""

    def __post_init__(self) -> None:
        check_str(self.member_id, "member_id", 128)
        check_str(self.colony_id, "colony_id", 128)
        object.__setattr__(self, "addrs", as_str_tuple(self.addrs, "addrs", MAX_ADDR))
        object.__setattr__(self, "issued_at", as_float(self.issued_at, "issued_at"))

    @classmethod
    def create(
        cls, identity: Identity, colony_id: str, addrs: Sequence[str], now: float
    ) -> AddrRecord:
        unsigned = cls(identity.member_id, colony_id, tuple(addrs[:MAX_ADDRS_PER_MEMBER]), now)
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned_bytes(unsigned)))

    def encode(self) -> bytes:
        return codec.canonical_bytes(self)


class AddrValidator(Validator):  # type: ignore[misc]
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
        if key != ADDRS_PREFIX + record.member_id:
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


def provider_key(colony_id: str, shard: int) -> bytes:
    """A sha256 multihash: the DHT places provider records by it."""
    return (
        b"\x12\x20" + hashlib.sha256(f"{NAMESPACE}/members/{colony_id}/{shard}".encode()).digest()
    )


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
    ) -> None:
        self.transport = transport
        self.colony_id = colony_id
        self.identity = identity
        self.member_id = identity.member_id
        self.validator = AddrValidator(colony_id, now)
        self.stats: Counter[str] = Counter()
        self.announced = trio.Event()  # set after the first announcement reached a peer
        self._is_member = is_member
        self._server = server
        self._mdns = mdns
        self._refresh = refresh
        self._timeout = timeout
        self._shards = shards
        self._stagger = stagger
        self._now = now
        self.dht: Any = None

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
        if self._server:
            host.set_stream_handler(KAD_PROTOCOL, self._handle_dht_stream)  # replaces KadDHT's
        try:
            async with background_trio_service(dht), trio.open_nursery() as nursery:
                self.dht = dht
                if self._mdns:
                    await nursery.start(self._run_mdns)
                ready()
                await trio.sleep(random.uniform(0, self._stagger))  # not all nodes at once
                while True:
                    await self._bounded("bootstrap", self._bootstrap())
                    await self.announce()
                    await trio.sleep(self._refresh)
        finally:
            self.dht = None
            if self._server:
                try:
                    host.remove_stream_handler(KAD_PROTOCOL)
                except Exception as exc:
                    log.debug("removing the DHT handler failed: %r", exc)

    async def _handle_dht_stream(self, stream: Any) -> None:
        dht = self.dht
        if dht is None or not self._is_member(str(stream.muxed_conn.peer_id)):
            self.stats["dht_stream_refused"] += 1
            try:
                await stream.reset()
            except Exception as exc:
                log.debug("resetting a DHT stream failed: %r", exc)
            return
        await dht.handle_stream(stream)

    async def _bounded(self, what: str, work: Awaitable[object]) -> bool:
        """Await ``work`` for at most ``timeout``; True if it finished without error."""
        with trio.move_on_after(self._timeout):
            try:
                await work
            except Exception as exc:
                self.stats[f"{what}_failed"] += 1
                log.warning("DHT %s failed: %r", what, exc)
                return False
            return True
        self.stats[f"{what}_timeout"] += 1
        log.warning("DHT %s timed out after %.0f s", what, self._timeout)
        return False

    def _dht(self) -> Any:
        if self.dht is None:
            raise RuntimeError("discovery is not running")
        return self.dht

    def _member_peers(self, peers: Sequence[Any]) -> list[Any]:
        return [p for p in peers if str(p) != self.member_id and self._is_member(str(p))]

    async def _bootstrap(self) -> None:
        dht = self._dht()
        table = dht.routing_table
        for peer in table.get_peer_ids():
            if not self._is_member(str(peer)):
                table.remove_peer(peer)  # revoked since it was added
        for peer in self._member_peers(self.transport.host.get_connected_peers()):
            await dht.add_peer(peer, skip_server_mode_check=True)
        await dht.refresh_routing_table()

    # --- announcing ------------------------------------------------------------------

    async def announce(self) -> bool:
        """Provide the colony key and put our address record now; True if the provider
        record reached at least one other node (a lone member has nobody to tell)."""
        dht = self._dht()
        key = provider_key(self.colony_id, shard_of(self.member_id, self._shards))
        provided = [False]

        async def provide() -> None:
            provided[0] = bool(await dht.provider_store.provide(key))

        record = AddrRecord.create(self.identity, self.colony_id, self.transport.addrs, self._now())
        put_ok = await self._bounded(
            "put", dht.put_value(ADDRS_PREFIX + self.member_id, record.encode())
        )
        provide_ok = await self._bounded("provide", provide())
        self.stats["announced"] += put_ok and provide_ok and provided[0]
        if provided[0]:
            self.announced.set()
        return provided[0]

    # --- finding ---------------------------------------------------------------------

    async def find_members(self) -> list[str]:
        """Members that announced themselves (not us), sorted; their addresses go to the
        transport's address book."""
        dht = self._dht()
        found: dict[str, list[str]] = {}

        async def shard(i: int) -> None:
            key = provider_key(self.colony_id, i)
            infos = list(dht.provider_store.get_providers(key))

            async def ask(peer: Any) -> None:
                providers, _ = await dht.provider_store._get_providers_from_peer_with_closers(
                    peer, key
                )
                infos.extend(providers)

            peers = await dht.peer_routing.find_closest_peers_network(key)
            async with trio.open_nursery() as nursery:
                for peer in self._member_peers(peers):
                    nursery.start_soon(ask, peer)
            for info in infos:
                addrs = found.setdefault(str(info.peer_id), [])
                addrs.extend(str(a) for a in info.addrs if str(a) not in addrs)

        async def all_shards() -> None:
            async with trio.open_nursery() as nursery:
                for i in range(self._shards):
                    nursery.start_soon(shard, i)

        await self._bounded("find_members", all_shards())
        members = []
        for member_id, addrs in found.items():
            if member_id == self.member_id:
                continue
            if not self._is_member(member_id):
                self.stats["non_member_provider"] += 1
                continue
            members.append(member_id)
            self._teach(member_id, addrs)
        return sorted(members)

    async def lookup(self, member_id: str) -> list[str]:
        """Where ``member_id`` listens, from its newest valid address record ([] if none
        was found); the addresses also go to the transport's address book."""
        dht = self._dht()
        key = ADDRS_PREFIX + member_id
        raw_key = key.encode()
        values: list[bytes] = []
        local = dht.value_store.get(raw_key)
        if local is not None:
            values.append(local.value)

        async def ask(peer: Any) -> None:
            value = await dht.value_store._get_from_peer(peer, raw_key)
            if isinstance(value, bytes):
                values.append(value)

        async def query() -> None:
            peers = await dht.peer_routing.find_closest_peers_network(raw_key)
            async with trio.open_nursery() as nursery:
                for peer in self._member_peers(peers):
                    nursery.start_soon(ask, peer)

        await self._bounded("lookup", query())
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

    def _teach(self, member_id: str, addrs: Sequence[str]) -> list[str]:
        good = []
        for addr in addrs:
            try:
                self.transport.add_addrs(member_id, [addr])
            except Exception as exc:  # malformed, or naming another peer
                self.stats["bad_addr"] += 1
                log.debug("bad address %r for %s: %r", addr, member_id, exc)
                continue
            good.append(addr)
        return good

    # --- mDNS ------------------------------------------------------------------------

    async def _run_mdns(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        host = self.transport.host
        token = trio.lowlevel.current_trio_token()
        found_in, found_out = trio.open_memory_channel[Any](64)

        def found(info: Any) -> None:  # zeroconf's thread
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(_offer, found_in, info)

        service = f"_p2p-{self.colony_id[:10]}._udp.local."
        mdns = await trio.to_thread.run_sync(
            lambda: MDNSDiscovery(host.get_network(), service_type=service, host=host)
        )
        peerDiscovery.register_peer_discovered_handler(found)
        try:
            await trio.to_thread.run_sync(mdns.broadcaster.register)
            task_status.started()
            async for info in found_out:
                peer = str(info.peer_id)
                if peer == self.member_id or not self._is_member(peer):
                    continue
                self._teach(peer, [str(a) for a in info.addrs])
                if peer not in self.transport.connected() and info.addrs:
                    try:
                        await self.transport.connect(f"{info.addrs[0]}/p2p/{peer}")
                        self.stats["mdns_connected"] += 1
                    except ConnectFailed as exc:
                        log.debug("mDNS peer %s unreachable: %s", peer, exc)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(found)
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                await trio.to_thread.run_sync(_stop_mdns, mdns, abandon_on_cancel=True)


def _offer(channel: trio.MemorySendChannel[Any], info: Any) -> None:
    # when full, drop: mDNS announces again
    with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
        channel.send_nowait(info)


def _stop_mdns(mdns: Any) -> None:
    # MDNSDiscovery.stop() also cancels the cleanup task that we never started
    mdns.broadcaster.unregister()
    mdns.listener.stop()
    mdns.zeroconf.close()
