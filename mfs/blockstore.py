"""A node's block store: content-addressed files on disk plus an SQLite index.

Layout under ``root``::

    blocks/<xy>/<cid>   one file per block; <xy> = the CID's next-to-last two
                        characters (every CIDv1 starts with "ba", so the first two
                        would put every block in one directory; this is the
                        "next-to-last/2" sharding of IPFS's flatfs: 1024 shards)
    tmp/                blocks being written; emptied when the store opens
    quarantine/         blocks that failed verification; emptied by gc()
    index.sqlite        blocks (cid, size, last_used), pins, labels
    lock                flock()ed while a process has the store open

Guarantees:

- A file under blocks/ is complete: it is written in tmp/, fsynced, then renamed.
- An index row exists only for a block whose file was fsynced before the row was
  committed, and a label row only once every block of its snapshot has an index
  row (see importer.commit_label): a crash or a full disk at any point leaves at
  worst unindexed files (``scrub`` adopts or removes them), never a label that
  points to missing data.
- ``get`` hashes the block every time it reads it: a flipped bit on disk is
  detected on every read, and the block is moved to quarantine/ and dropped from
  the index, so that the next ``put`` of the same content (from a peer, later)
  restores it.
- A put that would exceed the quota raises QuotaExceeded before it writes
  anything; a full disk (ENOSPC) raises StoreFull and removes the partial file.

Writes go through a ``BlockWriter`` batch: files are fsynced from a small thread
pool and the index rows of a batch are committed in one transaction. Serial fsyncs
(one journal commit each, ~2 ms) would bound an import to a few hundred small
files per second; concurrent ones share journal commits.

Pinning and garbage collection are mark-and-sweep: a pin names a root (a snapshot
CID, directly or through a label version) and ``gc`` keeps every block reachable
from a pin or held by an open writer, and deletes the rest. Reachability is
computed when gc runs rather than kept as per-block reference counts, so a pin may
be taken before the blocks arrive (a fetch under a pin), and a block quarantined
and fetched again is still protected by the pins above it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from colonyp2p.errors import (
    BadBlock,
    BadCid,
    BadManifest,
    BlockNotFound,
    QuotaExceeded,
    StoreError,
)
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.labels import Label
from colonyp2p.mfs.manifest import DirectorySnapshot, FileManifest, Manifest, decode, encode
from colonyp2p.sqlitedb import failure as _failure
from colonyp2p.sqlitedb import init_schema
from colonyp2p.sqlitedb import transaction as _transaction

SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE blocks (cid TEXT PRIMARY KEY, size INTEGER NOT NULL,"
    " last_used REAL NOT NULL) WITHOUT ROWID",
    # path and version are set for the pin of a label version, NULL for a snapshot pin
    "CREATE TABLE pins (key TEXT PRIMARY KEY, root TEXT NOT NULL, path TEXT,"
    " version INTEGER) WITHOUT ROWID",
    "CREATE TABLE labels (id TEXT PRIMARY KEY, path TEXT NOT NULL, version INTEGER NOT NULL,"
    " raw BLOB NOT NULL) WITHOUT ROWID",
    "CREATE INDEX labels_by_path ON labels (path, version)",
)
# A batch is committed (fsync, rename, one index transaction) at this many blocks or
# bytes, which bounds the unindexed files a crash can leave in tmp/.
FLUSH_BLOCKS = 1024
FLUSH_BYTES = 64 * 1024 * 1024
_FSYNC_THREADS = 16
# last_used is kept for a future LRU eviction of unpinned blocks; reads mark blocks in
# memory and the marks are written with the next commit (one write per read would
# fsync the index on every read).
_TOUCH_EVERY = 3600.0


@dataclass(frozen=True)
class Usage:
    """What the block store holds: ``bytes`` counts block contents (what the quota limits)."""

    blocks: int
    bytes: int
    quota: int | None

    @property
    def free(self) -> int | None:
        """Bytes that may still be put, or None without a quota."""
        return None if self.quota is None else max(0, self.quota - self.bytes)


@dataclass(frozen=True)
class GcReport:
    """What a garbage collection did."""

    freed_blocks: int
    freed_bytes: int
    kept_blocks: int
    kept_bytes: int
    # pinned roots whose tree could not be walked completely (a manifest is missing);
    # blocks below the missing manifest were not known to be reachable and were freed
    incomplete: tuple[str, ...]


@dataclass(frozen=True)
class ScrubReport:
    """What ``scrub`` found: blocks it dropped as corrupt or missing, files it adopted."""

    checked: int
    corrupt: tuple[str, ...]
    missing: tuple[str, ...]
    adopted: tuple[str, ...]
    removed: tuple[str, ...]


def _pin_key_snapshot(cid: str) -> str:
    return f"snapshot:{cid}"


def _pin_key_label(label: Label) -> str:
    return f"label:{label.label_id}"


_PIN_LABEL = "INSERT OR IGNORE INTO pins (key, root, path, version) VALUES (?, ?, ?, ?)"


def _pin_label_row(label: Label) -> tuple[str, str, str, int]:
    return (_pin_key_label(label), label.snapshot, label.path, label.version)


class BlockStore:
    """One node's blocks, pins and labels. Methods take a lock, so threads may share it."""

    def __init__(self, root: str | os.PathLike[str], *, quota: int | None = None) -> None:
        if quota is not None and (type(quota) is not int or quota < 0):
            raise StoreError(f"the quota is a number of bytes, got {quota!r}")
        self.root = Path(root)
        self.quota = quota
        self.blocks_dir = self.root / "blocks"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.db_path = self.root / "index.sqlite"
        self._lock = threading.RLock()
        self._held: Counter[str] = Counter()  # blocks open writers have put or reused
        self._reserved = 0  # bytes of blocks written by open writers, not yet indexed
        self._touched: dict[str, float] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._lock_fd = -1
        try:
            for d in (self.root, self.blocks_dir, self.tmp_dir, self.quarantine_dir):
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    f"{self.root} is in use by another process (one block store, one owner)"
                ) from None
            # What a crash left half-written: never indexed, never renamed into blocks/.
            for leftover in self.tmp_dir.iterdir():
                leftover.unlink(missing_ok=True)
            os.close(os.open(self.db_path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            self._release_lock_file()
            raise _failure(exc, f"cannot open the block store {self.root}") from exc
        except BaseException:
            self._release_lock_file()
            raise
        try:
            self._setup(db)
            self._used = int(db.execute("SELECT coalesce(sum(size), 0) FROM blocks").fetchone()[0])
        except sqlite3.Error as exc:
            db.close()
            self._release_lock_file()
            raise _failure(exc, f"{self.db_path} is not a readable block index") from exc
        except BaseException:
            db.close()
            self._release_lock_file()
            raise
        self._db = db

    def _setup(self, db: sqlite3.Connection) -> None:
        init_schema(db, self.db_path, SCHEMA_VERSION, _SCHEMA, "a block index")

    # --- paths ---------------------------------------------------------------------

    def block_path(self, cid: str) -> Path:
        """Where a block's file is (or would be). BadCid for anything but a colony CID,
        which is also what keeps a peer's "CID" from naming a file outside the store."""
        cids.parse(cid)
        return self.blocks_dir / cid[-3:-1] / cid

    # --- writing -------------------------------------------------------------------

    def writer(self) -> BlockWriter:
        """A batch of puts: committed when the ``with`` block ends without an error
        (or at ``flush``), discarded if it raises. Blocks it put or reused are safe
        from gc until it closes: pin what must outlive it before that."""
        return BlockWriter(self)

    def put(self, data: bytes, codec: cids.Codec = cids.RAW, expect: str | None = None) -> str:
        """Store one block durably and return its CID (a no-op if it is stored already).

        ``expect``: the CID the block must have (a block fetched from a peer), BadBlock
        if it has another.
        """
        with self.writer() as w:
            return w.put(data, codec, expect)

    def put_manifest(self, manifest: Manifest) -> str:
        """Store a manifest (dag-cbor) durably and return its CID."""
        with self.writer() as w:
            return w.put_manifest(manifest)

    # --- reading -------------------------------------------------------------------

    def has(self, cid: str) -> bool:
        """Whether the block is indexed and its file exists (``get`` may still find it
        corrupt: only a read verifies the content)."""
        path = self.block_path(cid)
        with self._lock:
            return self._indexed(cid) and path.exists()

    def get(self, cid: str) -> bytes:
        """A block's bytes, verified against its CID on every read.

        BlockNotFound if it is not stored; BadBlock if the file no longer matches its
        CID, in which case the block is quarantined and dropped from the index.
        """
        path = self.block_path(cid)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            with self._lock:
                if self._indexed(cid):
                    self._forget(cid)
                    raise BlockNotFound(
                        f"block {cid} was indexed but its file is gone; dropped from the index"
                    ) from None
            raise BlockNotFound(f"block {cid} is not in this store") from None
        except OSError as exc:
            raise _failure(exc, f"cannot read block {cid}") from exc
        try:
            cids.verify(cid, data)
        except BadBlock:
            self._quarantine(cid, path)
            raise BadBlock(
                f"block {cid} is corrupt on disk (it no longer hashes to its CID); it was "
                "moved to quarantine and must be fetched again"
            ) from None
        now = time.time()
        if now - self._touched.get(cid, 0.0) > _TOUCH_EVERY:
            with self._lock:
                self._touched[cid] = now
        return data

    def get_manifest(self, cid: str) -> Manifest:
        """A verified, decoded manifest."""
        if cids.parse(cid).codec != cids.DAG_CBOR:
            raise BadManifest(f"{cid} is a raw block, not a manifest")
        return decode(self.get(cid))

    def get_dir(self, cid: str) -> DirectorySnapshot:
        manifest = self.get_manifest(cid)
        if not isinstance(manifest, DirectorySnapshot):
            raise BadManifest(f"{cid} is a file manifest where a directory snapshot is expected")
        return manifest

    def get_file(self, cid: str) -> FileManifest:
        manifest = self.get_manifest(cid)
        if not isinstance(manifest, FileManifest):
            raise BadManifest(f"{cid} is a directory snapshot where a file manifest is expected")
        return manifest

    def walk(self, root: str) -> Iterator[tuple[str, Manifest | None]]:
        """Every block reachable from ``root``, each once, with its manifest (None for
        raw blocks and for manifests that are missing or corrupt)."""
        seen: set[str] = set()
        stack = [root]
        while stack:
            cid = stack.pop()
            if cid in seen:
                continue
            seen.add(cid)
            if cids.parse(cid).codec == cids.RAW:
                yield cid, None
                continue
            try:
                manifest = self.get_manifest(cid)
            except (BlockNotFound, BadBlock, BadManifest):
                yield cid, None
                continue
            yield cid, manifest
            if isinstance(manifest, FileManifest):
                stack.extend(b.cid for b in manifest.blocks)
            else:
                stack.extend(e.cid for e in manifest.entries)

    def missing(self, root: str) -> list[str]:
        """The blocks of ``root``'s tree this store lacks, sorted: empty when complete.

        A missing manifest hides what is below it; it is listed, and the list grows
        once it has been fetched.
        """
        out = []
        for cid, manifest in self.walk(root):
            if manifest is None and (cids.parse(cid).codec == cids.DAG_CBOR or not self.has(cid)):
                out.append(cid)
        return sorted(out)

    # --- pins ----------------------------------------------------------------------

    def pin_snapshot(self, cid: str) -> None:
        """Keep every block reachable from ``cid`` through gc (idempotent)."""
        cids.check(cid, cids.DAG_CBOR)
        self._execute(
            "INSERT OR IGNORE INTO pins (key, root) VALUES (?, ?)", (_pin_key_snapshot(cid), cid)
        )

    def unpin_snapshot(self, cid: str) -> bool:
        """Drop the pin on ``cid`` (labels pointing to it still keep it); whether there was one."""
        return self._execute("DELETE FROM pins WHERE key = ?", (_pin_key_snapshot(cid),)) > 0

    def pin_label(self, label: Label) -> None:
        """Keep the snapshot of this label version through gc (idempotent)."""
        self._execute(_PIN_LABEL, _pin_label_row(label))

    def unpin_label(self, path: str, version: int | None = None) -> int:
        """Drop the pins of ``path`` at ``version`` (every version if None; every fork of
        that version number). Returns how many pins were dropped."""
        if version is None:
            return self._execute("DELETE FROM pins WHERE path = ?", (path,))
        return self._execute("DELETE FROM pins WHERE path = ? AND version = ?", (path, version))

    def pins(self) -> dict[str, str]:
        """Every pin: key ("snapshot:<cid>" or "label:<label id>") -> root snapshot."""
        rows = self._query("SELECT key, root FROM pins ORDER BY key", ())
        return {str(k): str(r) for k, r in rows}

    # --- labels --------------------------------------------------------------------

    def record_label(self, label: Label, *, pin: bool = True) -> None:
        """Store a label (and its pin) in one transaction: both or neither.

        The caller checks first that the label's snapshot is complete here (see
        importer.commit_label); this only writes.
        """
        raw = label.encode()
        with self._lock:
            db = self._connection()
            with _transaction(db, f"cannot store label {label.path} v{label.version}"):
                db.execute(
                    "INSERT OR IGNORE INTO labels (id, path, version, raw) VALUES (?, ?, ?, ?)",
                    (label.label_id, label.path, label.version, raw),
                )
                if pin:
                    db.execute(_PIN_LABEL, _pin_label_row(label))

    def labels(self, path: str | None = None) -> list[Label]:
        """Stored labels (of ``path``, or all), by path, version and id."""
        if path is None:
            rows = self._query("SELECT raw FROM labels ORDER BY path, version, id", ())
        else:
            rows = self._query(
                "SELECT raw FROM labels WHERE path = ? ORDER BY version, id", (path,)
            )
        out = []
        for (raw,) in rows:
            try:
                out.append(Label.decode(bytes(raw)))
            except Exception as exc:
                raise StoreError(f"{self.db_path}: a stored label is unreadable: {exc}") from exc
        return out

    # --- space ---------------------------------------------------------------------

    def du(self) -> Usage:
        """Blocks and bytes stored, and the quota."""
        with self._lock:
            count = int(self._query("SELECT count(*) FROM blocks", ())[0][0])
            return Usage(blocks=count, bytes=self._used, quota=self.quota)

    def gc(self) -> GcReport:
        """Delete every block that no pin reaches and no open writer holds."""
        with self._lock:
            roots = sorted(set(self.pins().values()))
            marked: set[str] = set(self._held)
            incomplete = []
            for root in roots:
                complete = True
                for cid, manifest in self.walk(root):
                    marked.add(cid)
                    if manifest is None and cids.parse(cid).codec == cids.DAG_CBOR:
                        complete = False
                if not complete:
                    incomplete.append(root)
            rows = self._query("SELECT cid, size FROM blocks", ())
            victims = [(str(c), int(s)) for c, s in rows if c not in marked]
            db = self._connection()
            with _transaction(db, "cannot update the block index"):
                db.executemany("DELETE FROM blocks WHERE cid = ?", [(c,) for c, _ in victims])
            freed = sum(s for _, s in victims)
            self._used -= freed
            for cid, _ in victims:
                self._touched.pop(cid, None)
                with contextlib.suppress(FileNotFoundError):
                    self.block_path(cid).unlink()
            for bad in self.quarantine_dir.iterdir():
                bad.unlink(missing_ok=True)
            kept = len(rows) - len(victims)
            return GcReport(
                freed_blocks=len(victims),
                freed_bytes=freed,
                kept_blocks=kept,
                kept_bytes=self._used,
                incomplete=tuple(incomplete),
            )

    def scrub(self) -> ScrubReport:
        """Read and verify every block; drop corrupt and missing ones from the index, and
        index (or delete, if corrupt) block files a crash left unindexed."""
        with self._lock:
            indexed = {str(c) for (c,) in self._query("SELECT cid FROM blocks", ())}
            corrupt, missing = [], []
            for cid in sorted(indexed):
                try:
                    self.get(cid)
                except BadBlock:
                    corrupt.append(cid)
                except BlockNotFound:
                    missing.append(cid)
            adopted, removed = [], []
            for shard in self.blocks_dir.iterdir():
                if not shard.is_dir():
                    continue
                for path in shard.iterdir():
                    if path.name in indexed:
                        continue
                    try:
                        data = path.read_bytes()
                        cids.verify(path.name, data)
                    except (BadCid, BadBlock):
                        path.unlink(missing_ok=True)
                        removed.append(path.name)
                        continue
                    with self.writer() as w:
                        w.put(data, cids.parse(path.name).codec)
                    adopted.append(path.name)
            return ScrubReport(
                checked=len(indexed),
                corrupt=tuple(corrupt),
                missing=tuple(missing),
                adopted=tuple(sorted(adopted)),
                removed=tuple(sorted(removed)),
            )

    # --- internals -----------------------------------------------------------------

    def _indexed(self, cid: str) -> bool:
        row = self._query("SELECT 1 FROM blocks WHERE cid = ?", (cid,))
        return bool(row)

    def _forget(self, cid: str) -> None:
        with self._lock:
            rows = self._query("SELECT size FROM blocks WHERE cid = ?", (cid,))
            if rows:
                self._execute("DELETE FROM blocks WHERE cid = ?", (cid,))
                self._used -= int(rows[0][0])
            self._touched.pop(cid, None)

    def _quarantine(self, cid: str, path: Path) -> None:
        with self._lock:
            # Kept for a post-mortem until the next gc, out of blocks/ so a put of the
            # good content can take its place.
            with contextlib.suppress(OSError):
                os.replace(path, self.quarantine_dir / f"{cid}.{secrets.token_hex(4)}")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self._forget(cid)

    def _reserve(self, size: int) -> None:
        with self._lock:
            if self.quota is not None and self._used + self._reserved + size > self.quota:
                raise QuotaExceeded(
                    f"storing {size} more bytes would exceed the block store's quota of "
                    f"{self.quota} bytes ({self._used} stored, {self._reserved} being "
                    "written); nothing was written. Free space with `colonynode fs gc` "
                    "(`colonynode fs pin --unpin` what is no longer needed first) or raise "
                    "mfs.quota in config.json"
                )
            self._reserved += size

    def _unreserve(self, size: int) -> None:
        with self._lock:
            self._reserved -= size

    def _fsync_all(self, paths: Iterable[Path]) -> None:
        items = list(paths)
        if len(items) <= 2:
            for p in items:
                _fsync_path(p)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(_FSYNC_THREADS, thread_name_prefix="mfs-fsync")
        for _ in self._pool.map(_fsync_path, items):
            pass

    def _commit_rows(self, rows: list[tuple[str, int]]) -> int:
        """Index blocks whose files are durable, with the read marks collected so far;
        returns the bytes newly indexed (another writer may have indexed some first)."""
        now = time.time()
        touched = list(self._touched.items())
        added = 0
        db = self._connection()
        with _transaction(db, "cannot update the block index"):
            for cid, size in rows:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO blocks (cid, size, last_used) VALUES (?, ?, ?)",
                    (cid, size, now),
                )
                added += size * cursor.rowcount
            db.executemany(
                "UPDATE blocks SET last_used = ? WHERE cid = ?", [(t, c) for c, t in touched]
            )
        self._touched.clear()
        return added

    def _query(self, sql: str, args: tuple[object, ...]) -> list[Any]:
        with self._lock:
            db = self._connection()
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _failure(exc, f"cannot read {self.db_path}") from exc

    def _execute(self, sql: str, args: tuple[object, ...]) -> int:
        with self._lock:
            db = self._connection()
            with _transaction(db, f"cannot write to {self.db_path}"):
                return int(db.execute(sql, args).rowcount)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.root}: the block store is closed")
        return self._db

    def _release_lock_file(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = -1

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                if self._touched:
                    with contextlib.suppress(StoreError):
                        self._commit_rows([])
                self._db.close()
                self._db = None
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None
            self._release_lock_file()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BlockWriter:
    """A batch of block writes (see BlockStore.writer). Use from one thread."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self._pending: dict[str, tuple[Path, int]] = {}  # cid -> (tmp file, size)
        self._pending_bytes = 0
        self._held: set[str] = set()
        self._closed = False

    def put(self, data: bytes, codec: cids.Codec = cids.RAW, expect: str | None = None) -> str:
        """Write a block (committed at the next flush) and return its CID."""
        if self._closed:
            raise StoreError("this block writer is closed")
        if type(data) is not bytes:
            raise TypeError(f"a block is bytes, got {type(data).__name__}")
        cid = cids.cid_for(data, codec)
        if expect is not None and expect != cid:
            raise BadBlock(f"block announced as {expect} hashes to {cid}; refused")
        store = self.store
        with store._lock:
            self._hold(cid)
            if cid in self._pending:
                return cid
            if store._indexed(cid):
                if store.block_path(cid).exists():
                    return cid
                store._forget(cid)  # its file was lost: write it again
            store._reserve(len(data))
        tmp = store.tmp_dir / f"{cid}.{secrets.token_hex(4)}"
        try:
            _write_new(tmp, data)
        except OSError as exc:
            store._unreserve(len(data))
            raise _failure(exc, f"cannot write block {cid}") from exc
        self._pending[cid] = (tmp, len(data))
        self._pending_bytes += len(data)
        if len(self._pending) >= FLUSH_BLOCKS or self._pending_bytes >= FLUSH_BYTES:
            self.flush()
        return cid

    def put_manifest(self, manifest: Manifest) -> str:
        return self.put(encode(manifest), cids.DAG_CBOR)

    def flush(self) -> None:
        """Make every block put so far durable and indexed (all of them, or none)."""
        if not self._pending:
            return
        store = self.store
        pending = self._pending
        renamed: list[Path] = []
        try:
            store._fsync_all(tmp for tmp, _ in pending.values())
            dirs: set[Path] = set()
            new_shard = False
            for cid, (tmp, _) in pending.items():
                final = store.block_path(cid)
                if not final.parent.is_dir():
                    final.parent.mkdir(mode=0o700, exist_ok=True)
                    new_shard = True
                os.replace(tmp, final)
                renamed.append(final)
                dirs.add(final.parent)
            if new_shard:
                dirs.add(store.blocks_dir)
            store._fsync_all(dirs)
            with store._lock:
                store._used += store._commit_rows(
                    [(cid, size) for cid, (_, size) in pending.items()]
                )
                store._reserved -= self._pending_bytes
        except (OSError, StoreError) as exc:
            self._discard(renamed)
            if isinstance(exc, StoreError):
                raise
            raise _failure(exc, "cannot store blocks") from exc
        self._pending = {}
        self._pending_bytes = 0

    def _discard(self, renamed: Iterable[Path] = ()) -> None:
        """Remove what this batch wrote and has not indexed (renamed files too: a crash
        would have left them unindexed, and so does this)."""
        store = self.store
        with store._lock:
            for path in renamed:
                if not store._indexed(path.name):
                    path.unlink(missing_ok=True)
            for tmp, _ in self._pending.values():
                tmp.unlink(missing_ok=True)
            store._reserved -= self._pending_bytes
        self._pending = {}
        self._pending_bytes = 0

    def _hold(self, cid: str) -> None:
        if cid not in self._held:
            self._held.add(cid)
            self.store._held[cid] += 1

    def close(self, commit: bool = True) -> None:
        """Flush (or, with commit=False, discard) and release the blocks held from gc."""
        if self._closed:
            return
        try:
            if commit:
                self.flush()
            else:
                self._discard()
        finally:
            self._closed = True
            with self.store._lock:
                for cid in self._held:
                    self.store._held[cid] -= 1
                    if self.store._held[cid] <= 0:
                        del self.store._held[cid]
            self._held.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(commit=exc is None)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file, removing it if anything fails (no partial file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
