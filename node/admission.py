"""Admitting members: the join protocol on the wire, and what an admin's daemon does with
join requests, approvals, revocations and invitations.

The join protocol is the one stream a non-member may open (everything else is gated by
membership): one framed JoinRequest in, one framed JoinReply out, with a time limit and
a cap on concurrent requests so that strangers cannot tie the node up. Strangers cannot
fill the node either: a request is at most MAX_REQUEST bytes, its name is short and
printable (``join.check_name``), requests are rate-limited per requester and in all
(``JoinLimits``), and at most MAX_PENDING devices wait for an approval, one row each.
Every refusal is counted with the transport's (protocol ``join``) and answered with a
reply that says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from colonyp2p.core.effects import Effect
from colonyp2p.core.node import ColonyNode
from colonyp2p.errors import ColonyError, OversizeMessage, Unauthorized
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet, Role
from colonyp2p.node import colony, join
from colonyp2p.node.framing import close_stream, frame, read_frame, reset_stream
from colonyp2p.node.home import Home
from colonyp2p.node.transport import Transport

if TYPE_CHECKING:
    from colonyp2p.node.daemon import Daemon

JOIN_PROTOCOL = TProtocol("/colonyp2p/join/1.0.0")
JOIN_TIMEOUT = 15.0
# a request is a name (64 characters), a ticket (its issuer's addresses make most of it:
# a few hundred bytes each) and a signature
MAX_REQUEST = 16 * 1024
MAX_CONCURRENT_JOINS = 8
# A requester may send a few requests at once, then two a second (a device waiting for an
# approval asks every second, at each address it was given); all requesters together ten
# a second: a stranger's new key costs nothing, so the per-requester limit alone would
# bound nothing.
PEER_RATE, PEER_BURST = 2.0, 10.0
TOTAL_RATE, TOTAL_BURST = 10.0, 30.0
PEERS_KEPT = 4096  # requesters whose rate is remembered (the oldest forgotten first)
MAX_PENDING = 100  # devices waiting for an admin's approval, one row each
PENDING_TTL = 86400.0  # a row not asked again for a day makes room for a new one
PENDING = "pending:"
USED_TICKET = "ticket:"

log = logging.getLogger("colonyp2p.admission")

JoinHandler = Callable[[str, bytes], Awaitable[bytes]]


class JoinsBusy(ColonyError):
    """As many join requests as the node answers at once are in progress."""

    code = "busy"


class JoinRateLimited(join.JoinRefused):
    """More join requests than the node answers, from one requester or from all."""

    code = "join_rate"


class TooManyPending(join.JoinRefused):
    """As many devices as a node keeps are waiting for an admin's approval."""

    code = "join_pending_full"


class JoinLimits:
    """Token buckets: PEER_BURST requests at once per requester, refilled at PEER_RATE a
    second, and TOTAL_BURST / TOTAL_RATE for all requesters together."""

    def __init__(self) -> None:
        self._peers: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when
        self._total = (TOTAL_BURST, 0.0)

    def take(self, peer: str, now: float) -> None:
        """Count one request of ``peer`` at monotonic time ``now``, or raise
        JoinRateLimited (and count nothing)."""
        mine = _refill(self._peers.get(peer, (PEER_BURST, now)), PEER_RATE, PEER_BURST, now)
        if mine < 1:
            raise JoinRateLimited(
                f"too many join requests from {peer}: at most {PEER_BURST:g} at once, then "
                f"one every {1 / PEER_RATE:g} s"
            )
        total = _refill(self._total, TOTAL_RATE, TOTAL_BURST, now)
        if total < 1:
            raise JoinRateLimited(
                f"this node answers at most {TOTAL_RATE:g} join requests a second: "
                "ask again in a few seconds"
            )
        self._total = (total - 1, now)
        self._peers[peer] = (mine - 1, now)
        self._peers.move_to_end(peer)
        if len(self._peers) > PEERS_KEPT:
            self._peers.popitem(last=False)


def _refill(bucket: tuple[float, float], rate: float, burst: float, now: float) -> float:
    tokens, at = bucket
    return min(burst, tokens + max(0.0, now - at) * rate)


def serve_joins(transport: Transport, handler: JoinHandler) -> None:
    """Answer join requests on ``transport``'s running host with ``handler``."""
    slots = trio.Semaphore(MAX_CONCURRENT_JOINS)

    async def on_stream(stream: Any) -> None:
        peer = str(stream.muxed_conn.peer_id)
        if slots.value == 0:
            busy = JoinsBusy(f"{MAX_CONCURRENT_JOINS} joins at once")
            transport.refused(JOIN_PROTOCOL, peer, busy)
            await reset_stream(stream)
            return
        async with slots:
            try:
                with trio.fail_after(JOIN_TIMEOUT):
                    try:
                        raw = await read_frame(stream, MAX_REQUEST)
                    except OversizeMessage as exc:
                        # counted, and answered: the requester learns why (the rest of
                        # its frame is never read)
                        transport.refused(JOIN_PROTOCOL, peer, exc)
                        refusal = join.JoinReply("refused", f"join request too large: {exc}")
                        await stream.write(frame(join.encode(refusal)))
                        await close_stream(stream)
                        return
                    if raw is None:
                        await reset_stream(stream)
                        return
                    reply = await handler(peer, raw)
                    await stream.write(frame(reply))
                    await close_stream(stream)
            except Exception as exc:  # counted, logged once per reason (node/gate.py)
                transport.refused(JOIN_PROTOCOL, peer, exc)
                await reset_stream(stream)

    # the one protocol a non-member may use: joining is how one becomes a member
    transport.serve(JOIN_PROTOCOL, on_stream, strangers=True)


async def request_join(
    transport: Transport, addr: str, request: join.JoinRequest
) -> join.JoinReply:
    """Send ``request`` to the member at ``addr`` and return its answer."""
    member = await transport.connect(addr)
    with trio.fail_after(JOIN_TIMEOUT):
        stream = await transport.host.new_stream(ID.from_base58(member), [JOIN_PROTOCOL])
        try:
            await stream.write(frame(join.encode(request)))
            raw = await read_frame(stream, join.MAX_JOIN_BYTES)
        finally:
            await close_stream(stream)
    if raw is None:
        raise join.JoinRefused(f"{member} closed the join request without answering")
    return join.decode_reply(raw)


async def join_home(
    home: Home, colony_id: str, ticket: str, name: str, bootstrap: list[str], wait: float
) -> tuple[MembershipSet, ...]:
    """Join the colony ``colony_id`` from ``home`` (created when missing) with ``ticket``
    (whose inviter's addresses are tried besides ``bootstrap``), or without one waiting up
    to ``wait`` seconds for an admin's approval; records the membership chain."""
    join.check_name(name)
    if not home.exists():
        home.init()
    addrs = list(bootstrap)
    if ticket:
        t = join.Ticket.decode(ticket)
        if t.colony_id != colony_id:
            raise join.TicketError(f"the ticket is for colony {t.colony_id}, not {colony_id}")
        # the issuer first: only its node redeems the ticket
        addrs = [*t.bootstrap, *(a for a in addrs if a not in t.bootstrap)]
    if not addrs:
        raise join.JoinRefused("no member to ask: give --ticket or --bootstrap MULTIADDR")
    chain = await join_colony(home.identity(), colony_id, ticket, name, addrs, wait)
    colony.adopt_chain(home, chain)
    config = home.config()
    config.bootstrap = addrs
    home.save_config(config)
    return chain


async def join_colony(
    identity: Identity, colony_id: str, ticket: str, name: str, addrs: list[str], wait: float
) -> tuple[MembershipSet, ...]:
    """Ask the members at ``addrs`` to admit ``identity`` (with ``ticket``, or waiting up to
    ``wait`` seconds for an approval); the membership chain, verified down to ``colony_id``."""
    transport = Transport(
        identity,
        colony_id,
        is_member=lambda m: False,
        on_message=lambda s, m: None,
        on_announcement=lambda s, m: None,
    )
    deadline = time.monotonic() + wait
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        try:
            while True:
                reason = ""
                for addr in addrs:
                    request = join.JoinRequest.create(
                        identity, colony_id, name, ticket, time.time()
                    )
                    try:
                        reply = await request_join(transport, addr, request)
                    except (ColonyError, trio.TooSlowError, OSError) as exc:
                        reason = f"{addr}: {exc}"
                        continue
                    if reply.status == "admitted":
                        return (join.verify_chain(colony_id, reply.chain), *reply.chain)[1:]
                    if reply.status == "refused":
                        raise join.JoinRefused(f"refused: {reply.reason}")
                    reason = reply.reason
                if time.monotonic() >= deadline:
                    raise join.JoinRefused(
                        f"not admitted yet ({reason}); ask an admin to run "
                        f"`colonynode members approve {identity.member_id}`, then join again"
                    )
                await trio.sleep(1.0)
        finally:
            nursery.cancel_scope.cancel()


class Admission:
    """An admin's half of joining, run by its daemon."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.limits = JoinLimits()
        self._pending_lock = trio.Lock()  # the cap is checked and a row written at once

    @property
    def identity(self) -> Identity:
        return self.daemon.identity

    async def handle(self, peer: str, raw: bytes) -> bytes:
        try:
            self.limits.take(peer, time.monotonic())
            reply = await self._handle(peer, join.decode_request(raw))
        except ColonyError as exc:
            if self.daemon.transport is not None:  # counted by protocol and reason
                self.daemon.transport.refused(JOIN_PROTOCOL, peer, exc)
            reply = join.JoinReply("refused", str(exc))
        return join.encode(reply)

    async def _handle(self, peer: str, request: join.JoinRequest) -> join.JoinReply:
        request.check(peer)
        node = self.daemon.node
        assert node is not None
        if request.colony_id != node.membership.colony_id:
            raise join.JoinRefused(f"this node is in colony {node.membership.colony_id}")
        if node.membership.is_member(request.member_id):
            return join.JoinReply("admitted", chain=self.daemon.membership_chain())
        if not node.membership.can_administer(self.identity.member_id):
            raise join.JoinRefused("this member cannot admit anyone: ask the colony's admin")
        if not request.ticket:
            await self._wait_for_approval(request)
            return join.JoinReply("pending", "waiting for an admin: colonynode members approve")
        ticket = join.Ticket.decode(request.ticket)
        ticket.check(node.membership, time.time())
        if ticket.issuer != self.identity.member_id:
            # Tickets are spent in the store of the node that redeems them: were any admin's
            # node to redeem any admin's ticket, one ticket would admit a device per admin.
            where = f" (at {ticket.bootstrap[0]})" if ticket.bootstrap else ""
            raise join.TicketError(
                f"this ticket was issued by {ticket.issuer}, and only that member's node "
                f"redeems it: join through that node{where}"
            )
        used = await trio.to_thread.run_sync(
            self.daemon.store.get_meta, USED_TICKET + ticket.ticket_id
        )
        if used is not None:
            raise join.TicketError("the ticket was used already: ask for a new invite")
        # spent before the member is added: a crash in between wastes a ticket, never
        # lets one admit twice
        await self._set_meta(USED_TICKET + ticket.ticket_id, request.member_id.encode())
        await self.admit(request.member_id, ticket.role, request.name)
        return join.JoinReply("admitted", chain=self.daemon.membership_chain())

    async def _wait_for_approval(self, request: join.JoinRequest) -> None:
        """Keep ``request`` (its one row, replaced) for an admin's approval, unless
        MAX_PENDING others wait already."""
        async with self._pending_lock:
            pending = await self.pending()
            now = time.time()
            if request.member_id not in pending and len(pending) >= MAX_PENDING:
                for member_id, row in pending.items():
                    if now - float(row.get("at", 0.0)) > PENDING_TTL:
                        await self._delete_meta(PENDING + member_id)
                        break  # room for this one
                else:
                    raise TooManyPending(
                        f"{MAX_PENDING} devices already wait for an admin's approval here: "
                        "ask an admin to approve them (colonynode members approve ID) or for "
                        "a ticket (colonynode invite)"
                    )
            record = {"name": request.name, "at": now}
            await self._set_meta(PENDING + request.member_id, json.dumps(record).encode())

    async def _set_meta(self, key: str, value: bytes) -> None:
        await trio.to_thread.run_sync(self.daemon.store.set_meta, key, value)

    async def _delete_meta(self, key: str) -> None:
        await trio.to_thread.run_sync(self.daemon.store.delete_meta, key)

    async def admit(self, member_id: str, role: Role, name: str = "") -> MembershipSet:
        def change(node: ColonyNode, now: float) -> tuple[list[Effect], MembershipSet]:
            if node.membership.is_member(member_id):
                return [], node.membership
            new = node.membership.updated(self.identity, now, add=[Member(member_id, role, name)])
            return node.adopt_membership(new, now), new

        new = await self.daemon.call(change)
        await trio.to_thread.run_sync(self.daemon.store.delete_meta, PENDING + member_id)
        log.info("admitted %s as %s (membership v%d)", member_id, role, new.version)
        return new

    async def approve(self, member_id: str, role: Role = "executor") -> MembershipSet:
        pending = await self.pending()
        if member_id not in pending:
            raise join.JoinRefused(f"{member_id} has not asked to join")
        return await self.admit(member_id, role, str(pending[member_id].get("name", "")))

    async def revoke(self, member_id: str) -> MembershipSet:
        def change(node: ColonyNode, now: float) -> tuple[list[Effect], MembershipSet]:
            if not node.membership.is_member(member_id):
                raise Unauthorized(f"{member_id} is not a member")
            new = node.membership.updated(self.identity, now, remove=[member_id])
            return node.adopt_membership(new, now), new

        new = await self.daemon.call(change)
        assert self.daemon.transport is not None
        await self.daemon.transport.drop_non_members()
        log.info("revoked %s (membership v%d)", member_id, new.version)
        return new

    async def pending(self) -> dict[str, dict[str, Any]]:
        items = await trio.to_thread.run_sync(self.daemon.store.meta_items, PENDING)
        return {k[len(PENDING) :]: json.loads(v) for k, v in items.items()}

    def invite(self, role: Role, valid_for: float) -> join.Ticket:
        node = self.daemon.node
        assert node is not None and self.daemon.transport is not None
        if not node.membership.can_administer(self.identity.member_id):
            raise Unauthorized("only the colony's owner or an admin can invite")
        return join.Ticket.issue(
            self.identity,
            node.membership.colony_id,
            role,
            time.time() + valid_for,
            tuple(self.daemon.transport.addrs),
        )
