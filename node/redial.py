"""Finding the colony again: a node dials the members it knows when it starts and
whenever it has lost every connection.

Members dial each other as they learn of each other (``Daemon._should_dial``), and
otherwise only when they have something to send. A node that restarted (or whose network
came back) is dialed by nobody: its members may be busy with each other, and a member
that moved to a new address is looked for where it was. So the node dials them itself,
whichever of a pair would otherwise dial, at the addresses kept in its state store
(:mod:`colonyp2p.node.peers`) and its ``bootstrap`` config:

- at start, the members it knows, once;
- then, while it is connected to no member at all, the members it knows again, after
  pauses that double from ``FIRST_PAUSE`` to ``MAX_PAUSE`` seconds, with jitter (so that
  members cut off together do not dial in step), until one connection stands.

A round dials at most ``DIALS_PER_ROUND`` members: the bootstrap members first, then a
random sample of the others (another at each round). A node of a colony of thousands
needs a few connections to find the rest (gossip, the DHT, members dialing it as they
learn its addresses), not one to each member at once.

Members revoked meanwhile are not dialed (the transport also refuses to). The task never
raises: what fails is logged and counted (``status``).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Final

import multiaddr
import trio

from colonyp2p.node.peers import IsMember, PeerBook
from colonyp2p.node.store import Store
from colonyp2p.node.transport import Transport

log = logging.getLogger("colonyp2p.daemon")

FIRST_PAUSE: Final = 0.5  # s before the first redial once cut off
MAX_PAUSE: Final = 30.0  # s between redials at most
CHECK_EVERY: Final = 1.0  # s between looks at whether any member is still connected
DIALS_AT_ONCE: Final = 8  # dials in flight at once (each may take the open timeout)
DIALS_PER_ROUND: Final = 32  # members dialed in one round at most


class Redialer:
    def __init__(
        self,
        transport: Transport,
        store: Store,
        bootstrap: Sequence[str],
        is_member: IsMember,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.transport = transport
        self.book = PeerBook(store)
        self._bootstrap = bootstrap
        self._is_member = is_member
        self._jitter = jitter
        self._lost = trio.Event()
        self._bootstrapped: set[str] = set()  # members named by the bootstrap addresses
        self.stats: Counter[str] = Counter()

    async def load(self) -> None:
        """Teach the transport where members were: the bootstrap addresses, then the
        kept ones (newer, so dialed first)."""
        for addr in self._bootstrap:
            try:
                member = multiaddr.Multiaddr(addr).get_peer_id()
                if member is not None:
                    self.transport.add_addrs(str(member), [addr])
                    self._bootstrapped.add(str(member))
            except Exception as exc:  # the daemon's own bootstrap dial reports it
                log.debug("bootstrap %s ignored: %r", addr, exc)
        known = await trio.to_thread.run_sync(self.book.load, self._is_member)
        for member, addrs in known.items():
            try:
                self.transport.add_addrs(member, addrs)
            except ValueError as exc:
                log.warning("kept addresses of %s ignored: %s", member, exc)
        log.info("knows where %d members listened", len(known))

    def learned(self, member: str, addrs: Sequence[str]) -> None:
        """``member`` announced ``addrs`` (and the transport took them)."""
        self.book.learn(member, addrs)

    def peer_lost(self) -> None:
        """A connection ended: look now whether it was the last."""
        self._lost.set()

    def targets(self) -> list[str]:
        """The members to dial: current ones whose addresses are known, other than us."""
        me = self.transport.member_id
        if not self._is_member(me):
            return []  # revoked ourselves: every member would refuse us
        known = set(self.book.known()) | self._bootstrapped
        return sorted(m for m in known if m != me and self._is_member(m))

    def connected(self) -> set[str]:
        me = self.transport.member_id
        return {m for m in self.transport.connected() if m != me and self._is_member(m)}

    def status(self) -> dict[str, Any]:
        """For ``colonynode status``."""
        return {
            "members_known": len(self.targets()),
            "members_connected": len(self.connected()),
            "redials_failed": self.stats["failed"],
        }

    async def run(self) -> None:
        """Keep the address book and redial, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._keep_book)
            await self._dial_all()
            pause = FIRST_PAUSE
            while True:
                try:
                    cut_off = bool(self.targets()) and not self.connected()
                except Exception:
                    log.exception("cannot tell whether the node is cut off")
                    cut_off = False
                if not cut_off:
                    pause = FIRST_PAUSE
                    with trio.move_on_after(CHECK_EVERY):
                        await self._lost.wait()
                    self._lost = trio.Event()
                    continue
                if pause == FIRST_PAUSE:
                    log.warning("connected to no member: redialing the members known")
                    self.stats["cut_off"] += 1
                await trio.sleep(pause * (0.5 + self._jitter()))
                pause = min(pause * 2, MAX_PAUSE)
                await self._dial_all()

    async def _keep_book(self) -> None:
        try:
            await self.book.keep(self._is_member)
        except Exception:  # not worth the redialing (nor the daemon) to stop for
            log.exception("keeping the members' addresses failed")
            self.stats["errors"] += 1

    def round_targets(self) -> list[str]:
        """Whom one round dials: members not connected, the bootstrap ones first, then a
        random sample of the rest, ``DIALS_PER_ROUND`` in all."""
        connected = self.connected()
        targets = [m for m in self.targets() if m not in connected]
        first = [m for m in targets if m in self._bootstrapped]
        rest = [m for m in targets if m not in self._bootstrapped]
        room = max(0, DIALS_PER_ROUND - len(first))
        if len(rest) > room:
            rest = sorted(rest, key=lambda _: self._jitter())[:room]
        return (first + rest)[:DIALS_PER_ROUND]

    async def _dial_all(self) -> None:
        try:
            limiter = trio.Semaphore(DIALS_AT_ONCE)
            async with trio.open_nursery() as nursery:
                for member in self.round_targets():
                    nursery.start_soon(self._dial, member, limiter)
        except Exception:
            log.exception("redialing failed")
            self.stats["errors"] += 1

    async def _dial(self, member: str, limiter: trio.Semaphore) -> None:
        async with limiter:
            if not self._is_member(member):
                return  # revoked while waiting for its turn
            self.stats["dialed"] += 1
            try:
                reached = await self.transport.reach(member)
            except Exception as exc:
                log.debug("dialing %s failed: %r", member, exc)
                reached = False
        if not reached:
            self.stats["failed"] += 1
            log.debug("member %s not reachable at the addresses known", member)
