"""Where the colony's members listen, kept across restarts.

A member learns the others' addresses from their ``PeerAddrs`` gossip; the transport's
address book holds them in memory only. A node that restarts (after a crash, say) with
an empty book can reach nobody: it has no connection to receive gossip on, and members
do not look for it. So the book is also kept in the node's state store (one ``meta`` row
per member, ``peer:<member id>``, a JSON list of multiaddrs, newest first) and loaded at
start into the transport, for :mod:`colonyp2p.node.redial` to dial.

It is bounded: ``MAX_ADDRS_PER_MEMBER`` addresses per member (the transport keeps as
many), and current members only (a revoked member's row is deleted at the next write).
It is written in a task of its own, at most once every ``SAVE_EVERY`` seconds and only
what changed: members re-announce the same addresses every 15 s, which writes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Final

import trio

from colonyp2p.node.store import Store
from colonyp2p.node.transport import MAX_ADDRS_PER_MEMBER

log = logging.getLogger("colonyp2p.daemon")

PREFIX: Final = "peer:"
SAVE_EVERY: Final = 5.0  # s between writes at most
PRUNE_EVERY: Final = 60.0  # s between looks for revoked members when nothing changes

IsMember = Callable[[str], bool]


class PeerBook:
    """Members' addresses, in memory and in ``store``. ``learn`` is called from the trio
    thread; the store is written from a worker thread with a snapshot taken before, so
    the two never share a dict."""

    def __init__(self, store: Store, *, per_member: int = MAX_ADDRS_PER_MEMBER) -> None:
        self.store = store
        self.per_member = per_member
        self._book: dict[str, list[str]] = {}
        self._dirty: set[str] = set()  # members whose row is to be (re)written
        self._gone: set[str] = set()  # members whose row is to be deleted
        self._changed = trio.Event()
        self.writes = 0

    def load(self, is_member: IsMember) -> dict[str, list[str]]:
        """Read the book back (blocking: call it from a worker thread at start); rows of
        non-members and damaged rows are skipped, and deleted at the next write."""
        for key, raw in self.store.meta_items(PREFIX).items():
            member = key[len(PREFIX) :]
            try:
                addrs = json.loads(raw)
            except ValueError:
                addrs = None
            ok = isinstance(addrs, list) and all(isinstance(a, str) for a in addrs)
            if not ok or not addrs or not is_member(member):
                self._gone.add(member)
                continue
            self._book[member] = _normal(member, addrs)[: self.per_member]
        return self.known()

    def known(self) -> dict[str, list[str]]:
        """A copy of the book: member id -> addresses, newest first."""
        return {m: list(a) for m, a in self._book.items()}

    def learn(self, member: str, addrs: Iterable[str]) -> None:
        """``member`` announced ``addrs`` (already accepted by the transport): they go
        first, as in the transport's book."""
        old = self._book.get(member, [])
        new = list(dict.fromkeys([*_normal(member, addrs), *old]))[: self.per_member]
        if new != old:
            self._book[member] = new
            self._dirty.add(member)
            self._gone.discard(member)
            self._changed.set()

    def forget_non_members(self, is_member: IsMember) -> None:
        for member in [m for m in self._book if not is_member(m)]:
            del self._book[member]
            self._dirty.discard(member)
            self._gone.add(member)

    def save(self, is_member: IsMember) -> None:
        """Write what changed now (blocking)."""
        rows, gone = self._take(is_member)
        if rows or gone:
            self._write(rows, gone)

    async def keep(self, is_member: IsMember) -> None:
        """Write changes as they come, throttled, until cancelled (then once more)."""
        try:
            while True:
                with trio.move_on_after(PRUNE_EVERY):
                    await self._changed.wait()
                self._changed = trio.Event()
                await self._flush(is_member)
                await trio.sleep(SAVE_EVERY)
        finally:
            with trio.CancelScope(shield=True):
                await self._flush(is_member)

    async def _flush(self, is_member: IsMember) -> None:
        rows, gone = self._take(is_member)
        if not rows and not gone:
            return
        try:
            await trio.to_thread.run_sync(self._write, rows, gone)
        except Exception as exc:  # a full disk: the next change tries again
            log.warning("cannot keep the members' addresses: %s", exc)
            self._dirty |= {k[len(PREFIX) :] for k in rows} - set(gone)
            self._gone |= set(gone) - set(self._book)

    def _take(self, is_member: IsMember) -> tuple[dict[str, bytes], list[str]]:
        self.forget_non_members(is_member)
        rows = {
            PREFIX + m: json.dumps(self._book[m]).encode() for m in self._dirty if m in self._book
        }
        gone = sorted(self._gone)
        self._dirty.clear()
        self._gone.clear()
        return rows, gone

    def _write(self, rows: dict[str, bytes], gone: list[str]) -> None:
        if rows:
            self.store.set_meta_many(rows)
        for member in gone:
            self.store.delete_meta(PREFIX + member)
        self.writes += 1


def _normal(member: str, addrs: Iterable[str]) -> list[str]:
    """Addresses without their ``/p2p/<member>`` part (the book is keyed by member)."""
    suffix = f"/p2p/{member}"
    return [a[: -len(suffix)] if a.endswith(suffix) else a for a in addrs]
