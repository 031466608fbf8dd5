"""Block exchange between members: a small request/response protocol over libp2p streams.

Why not py-libp2p's Bitswap: see docs/MFS.md (measured; in short, its blocks are capped
at 512 KiB where ours reach 4 MiB, it gates nothing by membership, and it moved a file
several times slower than this protocol on the same connection).

The protocol, ``/colonyp2p/blocks/1.0.0``, on a member-gated stream (a non-member's
stream is reset before anything is read): the client writes length-prefixed requests
(canonical CBOR, see ``encode_request``), the server answers each in order, so a client
may pipeline requests on one stream:

- ``Want(cids)``: one frame per CID, in order: ``b"\\x01" + bytes`` or ``b"\\x00"``
  (not here, or corrupt here: a server reads every block through the block store,
  which verifies it and quarantines what no longer hashes to its CID);
- ``ListLabels()``: one frame, the CBOR list of the label ids the server holds;
- ``GetLabels(ids)``: one frame, the CBOR list of those signed labels' bytes;
- ``PushLabels(labels)``: one frame, the CBOR count of labels the server admitted.

The client (``Fetcher``) never trusts a block: ``BlockWriter.put(expect=cid)`` hashes it
before it is written, and a block that does not match is dropped, counted, and asked of
another provider. Work is shared between providers as a queue of CIDs that each
provider's stream pulls from in small batches, with two batches in flight per stream,
so a fast provider serves more; a provider whose stream fails or stalls gets its
in-flight CIDs requeued for the others. Blocks already in the store are never asked
for (``missing`` walks the local tree first), and what has arrived is made durable every
``FLUSH_EVERY`` blocks, so a download interrupted by a crash resumes where it was.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import cbor2
import trio
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.stream_muxer.exceptions import MuxedStreamEOF, MuxedStreamError

from colonyp2p import codec
from colonyp2p.errors import (
    BadBlock,
    BlockNotFound,
    ColonyError,
    MalformedMessage,
    MfsError,
    StoreError,
)
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore, BlockWriter
from colonyp2p.mfs.chunking import MAX_BLOCK_SIZE
from colonyp2p.mfs.manifest import MAX_MANIFEST_SIZE, FileManifest
from colonyp2p.node.framing import (
    HEADER_SIZE,
    IncompleteFrame,
    close_stream,
    frame,
    read_frame,
    reset_stream,
)

log = logging.getLogger(__name__)

BLOCKS_PROTOCOL: Final = TProtocol("/colonyp2p/blocks/1.0.0")
MAX_WANT: Final = 64  # CIDs per request
MAX_IDS: Final = 65536  # label ids per list
MAX_REQUEST: Final = 4 * 1024 * 1024
MAX_REPLY: Final = max(MAX_BLOCK_SIZE, MAX_MANIFEST_SIZE) + 1
BATCH_BYTES: Final = 2 * 1024 * 1024  # a Want asks for about this much (or MAX_WANT CIDs)
UNKNOWN_SIZE: Final = 16 * 1024  # what a manifest counts for in a batch
DEPTH: Final = 3  # requests in flight per stream
REOPEN_DELAY: Final = 0.5  # seconds before a failed stream open is tried once more
STALL_TIMEOUT: Final = 20.0  # seconds without a frame before a provider counts as gone
FLUSH_EVERY: Final = 32  # blocks between commits of fetched blocks
MAX_CONCURRENT_SERVES: Final = 32
_HAVE, _NOT_HERE = b"\x01", b"\x00"


class BadExchangeMessage(MfsError):
    """A block-exchange request or reply that is malformed or too large."""

    code = "bad_exchange_message"


# --- the messages --------------------------------------------------------------------


@dataclass(frozen=True)
class Want:
    cids: tuple[str, ...]


@dataclass(frozen=True)
class ListLabels:
    pass


@dataclass(frozen=True)
class GetLabels:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class PushLabels:
    labels: tuple[bytes, ...]


Request = Want | ListLabels | GetLabels | PushLabels


def encode_request(request: Request) -> bytes:
    """A request's bytes (canonical CBOR); what ``decode_request`` gives back."""
    body: dict[str, Any]
    if isinstance(request, Want):
        body = {"op": "want", "cids": list(request.cids)}
    elif isinstance(request, ListLabels):
        body = {"op": "list_labels"}
    elif isinstance(request, GetLabels):
        body = {"op": "get_labels", "ids": list(request.ids)}
    else:
        body = {"op": "push_labels", "labels": list(request.labels)}
    raw: bytes = cbor2.dumps(body, canonical=True)
    if len(raw) > MAX_REQUEST:
        raise BadExchangeMessage(f"a request of {len(raw)} bytes (at most {MAX_REQUEST})")
    return raw


def decode_request(raw: bytes) -> Request:
    """The request in ``raw``; BadExchangeMessage for anything else (never another error)."""
    if len(raw) > MAX_REQUEST:
        raise BadExchangeMessage(f"a request of {len(raw)} bytes (at most {MAX_REQUEST})")
    try:
        body = codec.loads(raw)
    except MalformedMessage as exc:
        raise BadExchangeMessage(str(exc)) from None
    if not isinstance(body, dict) or not isinstance(body.get("op"), str):
        raise BadExchangeMessage("a request is a map with an op")
    op = body["op"]
    keys = {"want": {"cids"}, "list_labels": set(), "get_labels": {"ids"}}
    keys["push_labels"] = {"labels"}
    if op not in keys or set(body) != {"op"} | keys[op]:
        raise BadExchangeMessage(f"unknown request {op!r} or fields {sorted(map(str, body))}")
    if op == "want":
        items = _list_of(body["cids"], str, MAX_WANT, "cids")
        for item in items:
            if not cids.is_cid(item):
                raise BadExchangeMessage(f"{item[:80]!r} is not a colony CID")
        return Want(items)
    if op == "list_labels":
        return ListLabels()
    if op == "get_labels":
        return GetLabels(_ids(body["ids"]))
    return PushLabels(_list_of(body["labels"], bytes, MAX_IDS, "labels"))


def _list_of(value: object, kind: type, limit: int, what: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) > limit:
        raise BadExchangeMessage(f"{what} must be a list of at most {limit}")
    if not all(type(v) is kind for v in value):
        raise BadExchangeMessage(f"{what} must hold {kind.__name__} only")
    return tuple(value)


def _ids(value: object) -> tuple[str, ...]:
    ids = _list_of(value, str, MAX_IDS, "ids")
    for item in ids:
        if len(item) != 64 or not all(c in "0123456789abcdef" for c in item):
            raise BadExchangeMessage(f"{item[:80]!r} is not a label id")
    return ids


def encode_reply(value: list[str] | list[bytes] | int) -> bytes:
    raw: bytes = cbor2.dumps(value, canonical=True)
    return raw


def decode_ids(raw: bytes) -> tuple[str, ...]:
    try:
        return _ids(codec.loads(raw))
    except MalformedMessage as exc:
        raise BadExchangeMessage(str(exc)) from None


def decode_raws(raw: bytes) -> tuple[bytes, ...]:
    try:
        return _list_of(codec.loads(raw), bytes, MAX_IDS, "labels")
    except MalformedMessage as exc:
        raise BadExchangeMessage(str(exc)) from None


# --- serving -------------------------------------------------------------------------


class LabelSource(Protocol):
    """What the server needs from the node's labels."""

    def label_ids(self) -> list[str]: ...

    def labels_raw(self, ids: Sequence[str]) -> list[bytes]: ...

    async def receive_labels(self, sender: str, raws: Sequence[bytes]) -> int: ...


class BlockServer:
    """Answers block and label requests from members; ``rate`` caps the bytes per
    second it sends (for devices on a thin uplink; None: no cap)."""

    def __init__(
        self,
        store: BlockStore,
        labels: LabelSource,
        is_member: Callable[[str], bool],
        *,
        rate: float | None = None,
        refuse: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self.store, self.labels, self._is_member, self.rate = store, labels, is_member, rate
        # told of every request refused as malformed or failing (the node counts them)
        self._refuse = refuse
        self.stats: Counter[str] = Counter()
        self._slots = trio.Semaphore(MAX_CONCURRENT_SERVES)
        self._next_free = 0.0

    def install(self, host: Any) -> None:
        host.set_stream_handler(BLOCKS_PROTOCOL, self.handle)

    async def handle(self, stream: Any) -> None:
        # a stream handler runs in the connection's nursery: nothing may escape
        peer = str(stream.muxed_conn.peer_id)
        if not self._is_member(peer):
            self.stats["refused_non_member"] += 1
            await reset_stream(stream)
            return
        if self._slots.value == 0:
            self.stats["refused_busy"] += 1
            await reset_stream(stream)
            return
        async with self._slots:
            try:
                while True:
                    raw = await read_frame(stream, MAX_REQUEST)
                    if raw is None:
                        await close_stream(stream)
                        return
                    if not self._is_member(peer):  # revoked meanwhile
                        self.stats["refused_non_member"] += 1
                        break
                    await self._answer(peer, stream, decode_request(raw))
            except (StreamError, MuxedStreamError) as exc:  # the peer went away
                log.debug("block stream from %s ended: %r", peer, exc)
            except Exception as exc:
                self.stats["refused_malformed"] += 1
                if self._refuse is not None:
                    self._refuse(peer, exc)
            await reset_stream(stream)

    async def _answer(self, peer: str, stream: Any, request: Request) -> None:
        if isinstance(request, Want):
            # the next block is read (and verified) while this one is written
            blocks_in, blocks_out = trio.open_memory_channel[bytes | None](1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_ahead, request.cids, blocks_in)
                async for data in blocks_out:
                    if data is None:
                        self.stats["not_here"] += 1
                        await stream.write(frame(_NOT_HERE))
                        continue
                    # header and status byte, then the block as it is: no copy of it
                    await stream.write((len(data) + 1).to_bytes(HEADER_SIZE, "big") + _HAVE)
                    await stream.write(data)
                    self.stats["served_blocks"] += 1
                    self.stats["served_bytes"] += len(data)
                    await self._pace(len(data))
        elif isinstance(request, ListLabels):
            await stream.write(frame(encode_reply(self.labels.label_ids())))
        elif isinstance(request, GetLabels):
            await stream.write(frame(encode_reply(self.labels.labels_raw(request.ids))))
        else:
            admitted = await self.labels.receive_labels(peer, request.labels)
            await stream.write(frame(encode_reply(admitted)))

    async def _read_ahead(
        self, wanted: Sequence[str], out: trio.MemorySendChannel[bytes | None]
    ) -> None:
        async with out:
            for cid in wanted:
                await out.send(await trio.to_thread.run_sync(self._read, cid))

    def _read(self, cid: str) -> bytes | None:
        try:
            return self.store.get(cid)
        except BadBlock:
            self.stats["corrupt_here"] += 1  # quarantined by get: fetched again later
            return None
        except (BlockNotFound, StoreError):
            return None

    async def _pace(self, size: int) -> None:
        if not self.rate:
            return
        now = trio.current_time()
        self._next_free = max(now, self._next_free) + size / self.rate
        await trio.sleep_until(self._next_free)


# --- fetching ------------------------------------------------------------------------

OpenStream = Callable[[str], Awaitable[Any]]
FindProviders = Callable[[], Awaitable[list[str]]]


@dataclass
class FetchState:
    """What a fetch has done so far (read by progress displays while it runs)."""

    root: str
    total_bytes: int = 0  # of the blocks that were missing, once the manifests are here
    fetched_blocks: int = 0
    fetched_bytes: int = 0
    stored_blocks: int = 0  # durable in the store (what a restart keeps)
    had_blocks: int = 0  # already here when the fetch began
    bad_blocks: int = 0
    not_found: int = 0
    provider_failures: int = 0
    lost: dict[str, str] = field(default_factory=dict)  # provider -> why it was dropped last
    by_provider: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None  # when the tree was complete (None: still fetching)
    lookup_seconds: float = 0.0  # spent finding providers
    rounds: int = 0  # manifests first, then what they name: one round per tree level

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "total_bytes": self.total_bytes,
            "fetched_blocks": self.fetched_blocks,
            "fetched_bytes": self.fetched_bytes,
            "stored_blocks": self.stored_blocks,
            "had_blocks": self.had_blocks,
            "bad_blocks": self.bad_blocks,
            "not_found": self.not_found,
            "provider_failures": self.provider_failures,
            "lost": dict(self.lost),
            "by_provider": dict(self.by_provider),
            "lookup_seconds": round(self.lookup_seconds, 3),
            "rounds": self.rounds,
            "seconds": round((self.ended or time.monotonic()) - self.started, 3),
        }


class _Gone(Exception):
    """A provider's stream failed or stalled."""


class Fetcher:
    """Fetches the blocks of a snapshot that the local store lacks from members.

    ``open_stream(member)`` opens a block stream to a member (None if unreachable);
    ``find_providers()`` names members that may hold the snapshot (asked again when
    every known one failed or lacked a block).
    """

    def __init__(self, store: BlockStore, open_stream: OpenStream) -> None:
        self.store = store
        self._open = open_stream

    async def fetch(
        self,
        root: str,
        find_providers: FindProviders,
        *,
        state: FetchState | None = None,
        manifests_only: bool = False,
    ) -> FetchState:
        """Make ``root``'s tree complete in the store (blocks unpinned: pin before or
        after as needed); with ``manifests_only``, its manifests (enough to list it).
        Raises BlockNotFound when no reachable member has a block."""
        state = state or FetchState(root)
        first = True
        providers: list[str] = []
        while True:
            missing, sizes, present = await trio.to_thread.run_sync(_missing, self.store, root)
            if manifests_only:
                missing = [c for c in missing if cids.parse(c).codec == cids.DAG_CBOR]
                sizes = {}
            if first:
                state.had_blocks = present
                first = False
            if not missing:
                state.ended = time.monotonic()
                return state
            state.total_bytes = max(state.total_bytes, state.fetched_bytes + sum(sizes.values()))
            if not providers:
                began = time.monotonic()
                providers = await find_providers()
                state.lookup_seconds += time.monotonic() - began
            if not providers:
                raise BlockNotFound(
                    f"no member provides {root} (first missing block: {missing[0]})"
                )
            state.rounds += 1
            transfer = _Transfer(self, missing, sizes, providers, state, find_providers)
            await transfer.run()
            providers = transfer.live()


def _missing(store: BlockStore, root: str) -> tuple[list[str], dict[str, int], int]:
    """The blocks of ``root``'s tree missing here, the sizes of those the manifests
    give, and how many blocks are here already."""
    sizes: dict[str, int] = {}
    missing: list[str] = []
    present = 0
    for cid, manifest in store.walk(root):
        if isinstance(manifest, FileManifest):
            for ref in manifest.blocks:
                sizes[ref.cid] = ref.size
        if manifest is None and (cids.parse(cid).codec == cids.DAG_CBOR or not store.has(cid)):
            missing.append(cid)
        else:
            present += 1
    return missing, {c: sizes[c] for c in missing if c in sizes}, present


class _Transfer:
    """One round: the given CIDs from the given providers, until all are stored."""

    def __init__(
        self,
        fetcher: Fetcher,
        wanted: list[str],
        sizes: dict[str, int],
        providers: list[str],
        state: FetchState,
        find_providers: FindProviders,
    ) -> None:
        self.fetcher, self.state, self.find_providers = fetcher, state, find_providers
        self.sizes = sizes
        self.queue: deque[str] = deque(wanted)
        self.remaining: set[str] = set(wanted)
        self.queued: set[str] = set(wanted)
        self.doubled: set[str] = set()  # CIDs asked of a second provider at the end
        self.refused: dict[str, set[str]] = {}  # cid -> providers that lacked it or lied
        self.providers: dict[str, bool] = dict.fromkeys(providers, True)  # member -> alive
        self.inflight: dict[str, set[str]] = {}  # provider -> CIDs asked of it, unanswered
        self.changed = trio.Event()
        send, recv = trio.open_memory_channel[tuple[str, bytes, str]](8)
        self._to_store, self._from_net = send, recv
        self._failure: ColonyError | None = None
        self._rediscovered = False
        self._nursery: trio.Nursery | None = None

    def live(self) -> list[str]:
        return [p for p, alive in self.providers.items() if alive]

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def _cancel(self) -> None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._store_task)
            for provider in self.live():
                nursery.start_soon(self._worker, provider)
            nursery.start_soon(self._watch)
        if self._failure is not None:
            raise self._failure

    async def _watch(self) -> None:
        """End the round when everything is stored; find more providers when every
        known one failed or lacks what is left."""
        while True:
            if not self.remaining:
                self._cancel()
                return
            # nothing asked of anyone, nothing being stored, and nobody left to ask
            idle = not any(self.inflight.values()) and len(self.remaining) == len(self.queue)
            stuck = idle and all(not self._candidates(c) for c in self.queue)
            if stuck and not await self._rediscover():
                left = list(self.queue)
                self.state.not_found += len(left)
                self._failure = BlockNotFound(
                    f"no reachable member has block {left[0]} of {self.state.root} "
                    f"({len(left)} blocks missing); what arrived is kept, so a later "
                    "fetch resumes"
                )
                self._cancel()
                return
            await self.changed.wait()

    def _candidates(self, cid: str) -> list[str]:
        refused = self.refused.get(cid, set())
        return [p for p in self.live() if p not in refused]

    async def _rediscover(self) -> bool:
        if self._rediscovered:
            return False
        self._rediscovered = True
        assert self._nursery is not None
        for provider in await self.find_providers():
            if not self.providers.get(provider, False):
                self.providers[provider] = True
                self._nursery.start_soon(self._worker, provider)
        # a provider that lacked a block may have it by now (its own fetch went on)
        self.refused.clear()
        self._poke()
        return True

    def _take(self, provider: str) -> list[str]:
        batch: list[str] = []
        skipped: list[str] = []
        size = 0
        while self.queue and len(batch) < MAX_WANT and size < BATCH_BYTES:
            cid = self.queue.popleft()
            self.queued.discard(cid)
            if cid not in self.remaining:
                continue
            if provider in self.refused.get(cid, ()):
                skipped.append(cid)
            else:
                batch.append(cid)
                size += self.sizes.get(cid, UNKNOWN_SIZE)
        self.queue.extendleft(reversed(skipped))
        self.queued.update(skipped)
        self.inflight.setdefault(provider, set()).update(batch)
        return batch

    def _end_game(self, provider: str) -> list[str]:
        """Nothing left to hand out: ask this provider too for what another one still
        owes (the first copy to arrive counts), so a slow provider's last batch does
        not hold up the end. Each CID is asked twice at most."""
        mine = self.inflight.setdefault(provider, set())
        batch: list[str] = []
        size = 0
        for other, owed in self.inflight.items():
            if other == provider:
                continue
            for cid in sorted(owed):
                if size >= BATCH_BYTES or len(batch) >= MAX_WANT:
                    break
                if cid in self.doubled or cid in mine or provider in self.refused.get(cid, ()):
                    continue
                batch.append(cid)
                size += self.sizes.get(cid, UNKNOWN_SIZE)
        self.doubled.update(batch)
        mine.update(batch)
        return batch

    def _requeue(self, cid: str, provider: str | None = None) -> None:
        if cid not in self.remaining:
            return
        if provider is not None:
            self.refused.setdefault(cid, set()).add(provider)
        if cid not in self.queued:
            self.queued.add(cid)
            self.queue.appendleft(cid)  # first: it is late already
        self._poke()

    async def _worker(self, provider: str) -> None:
        stream = await self.fetcher._open(provider)
        if stream is None and self.remaining:
            # a stream open can fail on a busy peer with the connection up (py-libp2p's
            # protocol negotiation): one more try before the provider counts as lost
            await trio.sleep(REOPEN_DELAY)
            stream = await self.fetcher._open(provider)
        if stream is None:
            self._lost(provider, "unreachable")
            return
        pending_send, pending_recv = trio.open_memory_channel[list[str]](DEPTH - 1)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, provider, stream, pending_recv)
                async with pending_send:
                    while self.remaining:
                        batch = self._take(provider)
                        if not batch and not self.inflight.get(provider):
                            batch = self._end_game(provider)  # idle: help the slowest
                        if not batch:
                            await self.changed.wait()
                            continue
                        await pending_send.send(batch)
                        try:
                            await stream.write(frame(encode_request(Want(tuple(batch)))))
                        except Exception as exc:
                            raise _Gone(repr(exc)) from exc
        except* _Gone as group:
            self._lost(provider, str(group.exceptions[0]))
        except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
            self._lost(provider, repr(group.exceptions[0]))
        finally:
            for cid in self.inflight.pop(provider, set()):
                self._requeue(cid)
            await reset_stream(stream)

    def _lost(self, provider: str, why: str) -> None:
        log.info("provider %s lost: %s", provider, why)
        self.providers[provider] = False
        self.state.provider_failures += 1
        self.state.lost[provider] = why
        self._poke()

    async def _reader(
        self, provider: str, stream: Any, pending: trio.MemoryReceiveChannel[list[str]]
    ) -> None:
        inflight = self.inflight.setdefault(provider, set())
        async for batch in pending:
            for cid in batch:
                try:
                    with trio.move_on_after(STALL_TIMEOUT) as scope:
                        data = await read_block(stream)
                except Exception as exc:
                    raise _Gone(repr(exc)) from exc
                if scope.cancelled_caught:
                    raise _Gone("stalled")
                inflight.discard(cid)
                if data is not None:
                    self.state.fetched_blocks += 1
                    self.state.fetched_bytes += len(data)
                    self.state.by_provider[provider] += len(data)
                    await self._to_store.send((cid, data, provider))
                else:
                    self._requeue(cid, provider)

    async def _store_task(self) -> None:
        """Verify and write what the readers hand over; commit it every FLUSH_EVERY
        blocks or second. A commit (fsync of the files, then the index) runs beside the
        next writes, with a writer of its own, so the network does not wait for the disk;
        one commit at a time, so memory stays bounded."""
        store = self.fetcher.store
        writer: BlockWriter = store.writer()
        unflushed: list[str] = []
        last_flush = time.monotonic()
        committed = trio.Event()
        committed.set()

        async def commit(w: BlockWriter, count: int, done: trio.Event) -> None:
            with trio.CancelScope(shield=True):  # blocks written are committed or dropped
                try:
                    await trio.to_thread.run_sync(w.close, True)
                    self.state.stored_blocks += count
                except StoreError as exc:
                    self._failure = self._failure or exc
                    self._cancel()
                finally:
                    done.set()

        try:
            while True:
                item = None
                with trio.move_on_after(0.5):
                    item = await self._from_net.receive()
                if item is not None:
                    cid, data, provider = item
                    if cid in self.remaining:
                        try:
                            await trio.to_thread.run_sync(
                                writer.put, data, cids.parse(cid).codec, cid
                            )
                        except BadBlock:
                            self.state.bad_blocks += 1
                            log.warning("provider %s sent a corrupt block %s", provider, cid)
                            self._requeue(cid, provider)
                            continue
                        unflushed.append(cid)
                        self.remaining.discard(cid)
                if unflushed and (
                    len(unflushed) >= FLUSH_EVERY
                    or len(self.remaining) == 0
                    or time.monotonic() - last_flush > 1.0
                ):
                    await committed.wait()
                    committed = trio.Event()
                    assert self._nursery is not None
                    self._nursery.start_soon(commit, writer, len(unflushed), committed)
                    writer, unflushed = store.writer(), []
                    last_flush = time.monotonic()
                if item is not None:
                    self._poke()
        except StoreError as exc:
            self._failure = self._failure or exc
            self._cancel()
        finally:
            with trio.CancelScope(shield=True):
                await committed.wait()
                try:
                    await trio.to_thread.run_sync(writer.close, True)
                    self.state.stored_blocks += len(unflushed)
                except StoreError as exc:
                    self._failure = self._failure or exc


async def read_block(stream: Any) -> bytes | None:
    """One answer to a wanted CID: the block, or None for "not here". Read as chunks
    joined once: a 4 MiB block is not copied three times on its way to the store."""
    head = await _read_chunks(stream, HEADER_SIZE + 1)
    size = int.from_bytes(head[:HEADER_SIZE], "big")
    if not 1 <= size <= MAX_REPLY:
        raise BadExchangeMessage(f"an answer of {size} bytes")
    if head[HEADER_SIZE:] != _HAVE:
        if size != 1:
            raise BadExchangeMessage("a not-here answer with a body")
        return None
    return await _read_chunks(stream, size - 1)


async def _read_chunks(stream: Any, n: int) -> bytes:
    chunks: list[bytes] = []
    left = n
    while left:
        try:
            chunk: bytes = await stream.read(left)
        except (StreamEOF, MuxedStreamEOF):
            chunk = b""
        if not chunk:
            raise IncompleteFrame(f"stream ended after {n - left} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def rate_or_none(value: object) -> float | None:
    """A configured rate in bytes per second (None: unlimited)."""
    if value in (None, 0, "", "0"):
        return None
    rate = float(value)  # type: ignore[arg-type]
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"a rate is a positive number of bytes per second, got {value!r}")
    return rate
