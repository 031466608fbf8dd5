"""Joining without trusting the joiner: a ticket admits one device however many admins
the colony has, and a stranger cannot fill an admin's store or its screen with join
requests (size, name, rate and pending-row limits, each refusal counted and explained)."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from cluster import Node, cluster, wait_for

from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.errors import ColonyError, ValidationError
from colonyp2p.identity import Identity
from colonyp2p.model.membership import MembershipSet
from colonyp2p.node import join
from colonyp2p.node.admission import (
    MAX_PENDING,
    MAX_REQUEST,
    PEER_BURST,
    PEER_RATE,
    TOTAL_BURST,
    TOTAL_RATE,
    Admission,
    JoinLimits,
    JoinRateLimited,
    TooManyPending,
    request_join,
)
from colonyp2p.node.store import Store
from colonyp2p.node.transport import Transport

# a terminal escape that clears an admin's screen, then one that turns it red
ESCAPES = "\x1b[2J\x1b[31m"


def _ask(identity: Identity, addr: str, requests: list[join.JoinRequest]) -> list[join.JoinReply]:
    """Send ``requests`` one after another to the node at ``addr`` as ``identity`` (a
    stranger's libp2p host); their answers."""
    replies: list[join.JoinReply] = []

    async def run() -> None:
        transport = Transport(
            identity,
            requests[0].colony_id,
            is_member=lambda m: False,
            on_message=lambda s, m: None,
            on_announcement=lambda s, m: None,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            for request in requests:
                replies.append(await request_join(transport, addr, request))
            nursery.cancel_scope.cancel()

    trio.run(run)
    return replies


def _request(identity: Identity, colony_id: str, name: str, ticket: str = "") -> join.JoinRequest:
    return join.JoinRequest.create(identity, colony_id, name, ticket, time.time())


def _error(done: object) -> str:
    lines = [ln for ln in str(getattr(done, "stderr", "")).splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, done
    return lines[0]


def _refused(node: Node) -> dict[str, int]:
    counts: dict[str, int] = node.status()["refused"].get("join", {})
    return counts


@pytest.mark.slow
def test_a_ticket_admits_one_device_only_where_it_was_issued(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        admin = c.join("admin", owner, role="admin")
        colony_id = owner.status()["colony_id"]
        # tickets as `colonynode invite` asks for them (an executor's, valid for a day)
        text, spare = (str(owner.request("invite", "executor", 86400.0)["ticket"]) for _ in "ab")
        ticket = join.Ticket.decode(text)
        first = c.node("first")
        first.home.init()
        first.cli("join", colony_id, "--ticket", text, "--name", "first")
        # The attack: the same ticket redeemed at the other admin admitted a second device
        # (each node kept the tickets it spent in its own store).
        second = Identity.generate()
        where = f"{ticket.bootstrap[0]}"
        expected = (
            f"this ticket was issued by {owner.member_id}, and only that member's node "
            f"redeems it: join through that node (at {where})"
        )
        (reply,) = _ask(second, admin.addrs[0], [_request(second, colony_id, "second", text)])
        assert (reply.status, reply.reason) == ("refused", expected)
        assert _refused(admin).get("ticket") == 1
        # and an unused ticket too: only its issuer's node spends it
        (reply,) = _ask(second, admin.addrs[0], [_request(second, colony_id, "second", spare)])
        assert (reply.status, reply.reason) == ("refused", expected)
        wait_for(lambda: admin.status()["membership_version"] == 3, 20, "admin to see v3")
        for node in (owner, admin):
            ids = {m["member_id"] for m in node.members()["members"]}
            assert first.member_id in ids and second.member_id not in ids
        # A device whose inviter is away and that asks another admin is told where to go.
        owner.cli("stop")
        third = c.node("third")
        third.home.init()
        done = third.cli(
            "join", colony_id, "--ticket", spare, "--bootstrap", admin.addrs[0], check=False
        )
        assert done.returncode == 1
        assert _error(done) == f"error: refused: {expected}"


@pytest.mark.slow
def test_a_stranger_cannot_fill_an_admins_store_with_join_requests(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        status = owner.status()
        colony_id, addr = status["colony_id"], status["addrs"][0]
        # The attack: 60 ticketless requests with 60 KB names, escapes included, added 60
        # pending rows and megabytes to the admin's store in seconds.
        big = ESCAPES + "A" * 60_000
        for stranger in (Identity.generate() for _ in range(3)):
            replies = _ask(stranger, addr, [_request(stranger, colony_id, big)] * 20)
            for reply in replies:
                assert reply.status == "refused"
                assert reply.reason.startswith("join request too large: frame of ")
                assert reply.reason.endswith(f" bytes exceeds {MAX_REQUEST}")
        assert owner.members()["pending"] == {}
        assert _refused(owner).get("oversize") == 60
        # a short name with escapes is refused for its characters
        rogue = Identity.generate()
        (reply,) = _ask(rogue, addr, [_request(rogue, colony_id, ESCAPES + "admin")])
        assert (reply.status, reply.reason) == (
            "refused",
            "name: only printable characters, got '\\x1b'",
        )
        assert owner.members()["pending"] == {}
        # one requester has one row, whatever it sends, and no more than its rate
        eager = Identity.generate()
        replies = _ask(eager, addr, [_request(eager, colony_id, "eager")] * 40)
        statuses = {(r.status, r.reason) for r in replies}
        assert statuses == {
            ("pending", "waiting for an admin: colonynode members approve"),
            (
                "refused",
                f"too many join requests from {eager.member_id}: at most {PEER_BURST:g} at "
                f"once, then one every {1 / PEER_RATE:g} s",
            ),
        }
        pending = owner.members()["pending"]
        assert list(pending) == [eager.member_id] and pending[eager.member_id]["name"] == "eager"
        refused = _refused(owner)
        assert refused.get("invalid") == 1
        assert refused.get("join_rate") == sum(r.status == "refused" for r in replies)
        # the CLI checks a name before it asks anyone
        device = c.node("device")
        device.cli("init")
        done = device.cli("join", colony_id, "--bootstrap", addr, "--name", "x" * 65, check=False)
        assert _error(done) == "error: name: at most 64 characters, got 65"


# --- the limits, without a network --------------------------------------------------------


def test_join_limits_per_requester_and_in_all() -> None:
    limits = JoinLimits()
    for _ in range(int(PEER_BURST)):
        limits.take("a", 100.0)
    with pytest.raises(JoinRateLimited, match="too many join requests from a"):
        limits.take("a", 100.0)
    limits.take("a", 100.0 + 1 / PEER_RATE)  # refilled
    # all requesters together: each new key has its own burst, the node's total does not
    now = 200.0
    taken = 0
    with pytest.raises(JoinRateLimited, match=f"at most {TOTAL_RATE:g} join requests a second"):
        for i in range(1000):
            limits.take(f"key{i}", now)
            taken += 1
    assert taken == TOTAL_BURST
    limits.take("fresh", now + 1.0)  # refilled


class _Transport:
    """What Admission uses of the daemon's transport: the refusal count."""

    def __init__(self) -> None:
        self.counts: list[tuple[str, str]] = []

    def refused(self, protocol: str, peer: str, exc: BaseException) -> None:
        assert isinstance(exc, ColonyError)
        self.counts.append((protocol, exc.code))


def test_at_most_max_pending_devices_wait_and_each_has_one_row(tmp_path: Path) -> None:
    owner = Identity.generate()
    genesis = MembershipSet.genesis(owner, "limits", 0.0)
    transport = _Transport()
    store = Store(tmp_path / "state.db")
    daemon: Any = SimpleNamespace(  # the parts of a Daemon that Admission uses
        identity=owner,
        node=ColonyNode(owner.member_id, genesis, Params(), sign=owner.sign),
        store=store,
        transport=transport,
        membership_chain=lambda: (genesis,),
    )
    admission = Admission(daemon)
    waiting = [Identity.generate() for _ in range(MAX_PENDING)]

    async def run() -> None:
        for ident in waiting:
            reply = await admission._handle(
                ident.member_id, _request(ident, genesis.colony_id, "d")
            )
            assert reply.status == "pending"
        # a device that waits already asks again: its row is replaced, not added
        again = _request(waiting[0], genesis.colony_id, "renamed")
        assert (await admission._handle(waiting[0].member_id, again)).status == "pending"
        late = Identity.generate()
        with pytest.raises(TooManyPending) as full:
            await admission._handle(late.member_id, _request(late, genesis.colony_id, "late"))
        assert str(full.value) == (
            f"{MAX_PENDING} devices already wait for an admin's approval here: ask an admin "
            "to approve them (colonynode members approve ID) or for a ticket (colonynode invite)"
        )
        # through the handler: refused, counted, and answered
        raw = join.encode(_request(late, genesis.colony_id, "late"))
        reply = join.decode_reply(await admission.handle(late.member_id, raw))
        assert (reply.status, reply.reason) == ("refused", str(full.value))
        assert transport.counts == [("/colonyp2p/join/1.0.0", "join_pending_full")]
        pending = await admission.pending()
        assert len(pending) == MAX_PENDING and pending[waiting[0].member_id]["name"] == "renamed"

    with store:
        trio.run(run)


def test_names_are_short_and_printable() -> None:
    for good in ("", "pi-4 in the shed", "Büro-Rechner", "x" * join.MAX_NAME):
        join.check_name(good)
    for bad, why in (
        ("x" * (join.MAX_NAME + 1), "name: at most 64 characters, got 65"),
        ("evil\x1b[31m", "name: only printable characters, got '\\x1b'"),
        ("two\nlines", "name: only printable characters, got '\\n'"),
        ("\u202eevil", "name: only printable characters, got '\\u202e'"),  # right-to-left
        ("csi\x9b31m", "name: only printable characters, got '\\x9b'"),
    ):
        with pytest.raises(ValidationError) as refused:
            join.check_name(bad)
        assert str(refused.value) == why
