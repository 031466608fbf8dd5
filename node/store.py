"""The node's durable state: the core's Persist effects, kept in one SQLite file.

The protocol is safe only if what a step persists (a keeper's promise, a client's
unacknowledged submission) survives a crash before any message of that step leaves
the node. The daemon hands each step's effects to ``Store.apply``, which returns only
once they are committed, and rebuilds its ``ColonyNode`` from ``Store.load()`` after
a restart.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from colonyp2p import codec
from colonyp2p.core.client import SUBMISSIONS
from colonyp2p.core.effects import Persist
from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import StoreSpec
from colonyp2p.core.node import MEMBERSHIP
from colonyp2p.core.records import KeeperRecord
from colonyp2p.errors import StoreError
from colonyp2p.model.membership import MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.sqlitedb import failure as _failure
from colonyp2p.sqlitedb import init_schema
from colonyp2p.sqlitedb import transaction as _transaction

# The type of what each table the core persists holds. A new table needs a line
# here; a change that old files cannot be read with also needs SCHEMA_VERSION + 1.
TABLES: Mapping[str, type[Any]] = {
    RECORDS: KeeperRecord,
    SUBMISSIONS: StoreSpec,
    MEMBERSHIP: MembershipSet,
}

# A keeper record's spec never changes, but the record is rewritten at every step of
# its process (stored, promised, accepted, decided): the spec is stored once, in rows of
# this table keyed by pid, and the record's own rows leave it out. Encoding and
# checking the spec at every step cost a busy keeper a quarter of its CPU.
_RECORD_SPECS = "record-specs"

# Kept in SQLite's header (PRAGMA user_version): it can be read before knowing
# anything about the tables, and cannot collide with the daemon's meta keys.
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE state (tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
    " PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
)


class Store:
    """One node's state database. Every method takes a lock, so the daemon may call it
    from any one worker thread at a time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        tables: Mapping[str, type[Any]] = TABLES,
        max_pages: int | None = None,  # tests: make the disk "full" at this many pages
    ) -> None:
        self.path = Path(path)
        self._tables = dict(tables)
        self._split_specs = self._tables.get(RECORDS) is KeeperRecord
        self._specs_stored: dict[str, SignedSpec] = {}  # what the record-specs rows hold
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # SQLite would create the file under the umask (and its -wal and -shm
            # files copy the file's mode): create it private first.
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise _failure(exc, f"cannot open {self.path}") from exc
        try:
            self._setup(db, max_pages)
        except sqlite3.Error as exc:
            db.close()
            raise _failure(exc, f"{self.path} is not a readable colonyp2p store") from exc
        except BaseException:
            db.close()
            raise
        self._db = db

    def _setup(self, db: sqlite3.Connection, max_pages: int | None) -> None:
        init_schema(db, self.path, SCHEMA_VERSION, _SCHEMA, "a colonyp2p store")
        if max_pages is not None:
            db.execute(f"PRAGMA max_page_count = {int(max_pages)}")

    # --- the core's state ------------------------------------------------------------

    def apply(self, effects: Iterable[object]) -> None:
        """Commit every Persist among ``effects`` in one transaction (all or nothing);
        other effects are ignored. Returns once the commit is durable."""
        # Only the last value of a key in one transaction is ever read back.
        last: dict[tuple[str, object], Persist] = {}
        for e in effects:
            if isinstance(e, Persist):
                last[(e.table, e.key if type(e.key) is str else id(e))] = e
        rows = [self._encode(e) for e in last.values()]
        specs: dict[str, SignedSpec | None] = {}  # the record specs this batch writes
        if self._split_specs:
            for e in last.values():
                if e.table != RECORDS:
                    continue
                spec = None if e.value is None else e.value.spec
                stored = self._specs_stored.get(e.key)
                # the core's records keep their spec object from step to step
                if spec is not stored and (spec is None or spec != stored):
                    rows.append(self._spec_row(e.key, spec))
                    specs[e.key] = spec
        if not rows:
            return
        with self._lock:
            db = self._connection()
            with _transaction(db, f"cannot write to {self.path}"):
                for table, key, raw in rows:
                    if raw is None:
                        db.execute("DELETE FROM state WHERE tbl = ? AND key = ?", (table, key))
                    else:
                        db.execute(
                            "INSERT OR REPLACE INTO state (tbl, key, value) VALUES (?, ?, ?)",
                            (table, key, raw),
                        )
        for key, spec in specs.items():  # only once committed
            if spec is None:
                self._specs_stored.pop(key, None)
            else:
                self._specs_stored[key] = spec

    def _spec_row(self, pid: str, spec: SignedSpec | None) -> tuple[str, str, bytes | None]:
        if spec is None:
            return _RECORD_SPECS, pid, None
        return _RECORD_SPECS, pid, _checked_bytes(SignedSpec, spec, f"{RECORDS}/{pid}.spec")

    def _encode(self, effect: Persist) -> tuple[str, str, bytes | None]:
        table, key, value = effect.table, effect.key, effect.value
        tp = self._tables.get(table)
        if tp is None:
            raise StoreError(
                f"unknown table {table!r} (known: {', '.join(sorted(self._tables))}); "
                "register its type in colonyp2p.node.store.TABLES"
            )
        if type(key) is not str:
            raise StoreError(f"{table}: keys are strings, got {type(key).__name__}")
        if value is None:
            return table, key, None
        if not isinstance(value, tp):
            raise StoreError(f"{table}/{key}: expected a {tp.__name__}, got {type(value).__name__}")
        without_spec = self._split_specs and table == RECORDS
        return table, key, _checked_bytes(tp, value, f"{table}/{key}", without_spec)

    def load(self) -> dict[str, dict[str, Any]]:
        """Everything stored, as ``{table: {key: value}}`` (ColonyNode's ``durable``);
        every known table is present, empty if nothing is stored in it."""
        with self._lock:
            db = self._connection()
            try:
                rows = db.execute("SELECT tbl, key, value FROM state").fetchall()
            except sqlite3.Error as exc:
                raise _failure(exc, f"cannot read {self.path}") from exc
        out: dict[str, dict[str, Any]] = {table: {} for table in self._tables}
        specs = {key: raw for table, key, raw in rows if table == _RECORD_SPECS}
        self._specs_stored = {}
        for table, key, raw in rows:
            if table == _RECORD_SPECS:
                continue
            tp = self._tables.get(table)
            if tp is None:
                # Loading without it would restart the node with part of its state missing.
                raise StoreError(
                    f"{self.path} holds table {table!r}, unknown to this colonyp2p "
                    "(written by a newer version?)"
                )
            try:
                out[table][key] = self._decode(table, key, tp, raw, specs)
            except Exception as exc:
                raise StoreError(f"{self.path}: {table}/{key} is unreadable: {exc}") from exc
        return out

    def _decode(
        self, table: str, key: str, tp: type[Any], raw: bytes, specs: dict[str, bytes]
    ) -> Any:
        data = codec.loads(raw)  # rows written before the split hold their spec still
        if self._split_specs and table == RECORDS and isinstance(data, dict) and "spec" not in data:
            spec_raw = specs.get(key)
            if spec_raw is None:
                raise StoreError("its spec is missing")
            spec = codec.from_data(SignedSpec, codec.loads(spec_raw), f"{table}/{key}.spec")
            self._specs_stored[key] = spec
            return codec.from_data(tp, data, f"{table}/{key}", given={"spec": spec})
        return codec.from_data(tp, data, f"{table}/{key}")

    # --- the daemon's own settings -----------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        with self._lock:
            db = self._connection()
            try:
                row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            except sqlite3.Error as exc:
                raise _failure(exc, f"cannot read {self.path}") from exc
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        """Store a setting durably (returns once committed)."""
        self.set_meta_many({key: value})

    def set_meta_many(self, items: dict[str, bytes]) -> None:
        """Store settings durably in one transaction (all or none)."""
        for key, value in items.items():
            if type(value) is not bytes:
                raise StoreError(f"meta/{key}: values are bytes, got {type(value).__name__}")
        with self._lock:
            db = self._connection()
            with _transaction(db, f"cannot write to {self.path}"):
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", items.items()
                )

    def meta_items(self, prefix: str) -> dict[str, bytes]:
        """Every setting whose key starts with ``prefix``."""
        with self._lock:
            db = self._connection()
            try:
                rows = db.execute(
                    "SELECT key, value FROM meta WHERE substr(key, 1, ?) = ? ORDER BY key",
                    (len(prefix), prefix),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _failure(exc, f"cannot read {self.path}") from exc
        return {str(k): bytes(v) for k, v in rows}

    def delete_meta(self, key: str) -> None:
        with self._lock:
            db = self._connection()
            with _transaction(db, f"cannot write to {self.path}"):
                db.execute("DELETE FROM meta WHERE key = ?", (key,))

    # --- life cycle --------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _checked_bytes(tp: type[Any], value: Any, where: str, without_spec: bool = False) -> bytes:
    """A row's bytes, decoded once before they are stored: a value that encodes but does
    not decode (NaN or a non-string map key in an output) would make every restart
    fail. Anything may raise here (cbor2, the codec, __post_init__ checks)."""
    try:
        if without_spec:  # a keeper record, whose spec has a row of its own
            raw = codec.plain_bytes_without(value, "spec")
            codec.from_data(tp, codec.loads(raw), where, given={"spec": value.spec})
        else:
            raw = codec.plain_bytes(value)
            codec.from_data(tp, codec.loads(raw), where)
    except Exception as exc:
        raise StoreError(f"{where} cannot be stored and loaded back: {exc}") from exc
    return raw
