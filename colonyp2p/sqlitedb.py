"""What the node's state store (node/store.py) and the block store's index
(mfs/blockstore.py) do alike with SQLite: open a schema durably, run a transaction,
and turn SQLite's and the OS's errors into StoreError (StoreFull for a full disk).
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator, Sequence

from colonyp2p.errors import StoreError, StoreFull


def init_schema(
    db: sqlite3.Connection, path: object, version: int, schema: Sequence[str], what: str
) -> None:
    """Make ``db`` durable (WAL + FULL) and create ``schema`` in an empty file; refuse a
    file from a newer colonyp2p, or an SQLite file that is not ``what``."""
    found = db.execute("PRAGMA user_version").fetchone()[0]
    if found > version:
        raise StoreError(
            f"{path} has schema version {found}, newer than the {version} this colonyp2p "
            "reads: it was written by a newer colonyp2p; upgrade to open it"
        )
    # WAL + FULL: a commit is fsynced before it returns, so it survives SIGKILL and
    # power loss. A filesystem without WAL support keeps the rollback journal,
    # which with FULL is just as durable, only slower.
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("PRAGMA fullfsync = ON")  # macOS: fsync alone does not reach the disk
    if found == 0:
        with transaction(db, f"cannot initialise {path}"):
            if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{path} is an SQLite file but not {what}")
            for statement in schema:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version}")


@contextlib.contextmanager
def transaction(db: sqlite3.Connection, doing: str) -> Iterator[None]:
    """BEGIN ... COMMIT, rolled back on any error, with SQLite's errors made StoreErrors."""
    try:
        # IMMEDIATE takes the write lock up front, so a busy database fails the call
        # before anything is written rather than at COMMIT.
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk among them).
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise failure(exc, doing) from exc


def failure(exc: OSError | sqlite3.Error, doing: str) -> StoreError:
    """The StoreError for ``exc``: StoreFull when the disk (or a disk quota) is full."""
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        # SQLite reports ENOSPC as SQLITE_FULL too.
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        full = code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    if full:
        return StoreFull(f"{doing}: the disk is full ({exc}); nothing was written")
    return StoreError(f"{doing}: {exc}")
