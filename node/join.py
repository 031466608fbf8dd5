"""Joining a colony: invitation tickets, the join request a new device sends, and the
admin node's answer.

A ticket is a single-use invitation signed by an owner or admin: colony id, role,
expiry, the inviter's addresses. The device sends a JoinRequest signed with its own
key (on a protocol non-members may open, see ``Transport.set_join_handler``); the
admin's daemon checks the ticket and the signature, adds the device to the
membership and answers with the chain of membership sets from the colony's genesis,
which the device verifies link by link down to the colony id it was given. Without
a ticket the request waits until an admin approves it (``colonynode members approve``).

Only the ticket's issuer redeems it: the issuer's node spends the ticket's id in its
own store before admitting anyone with it, so one ticket admits one device however
many admins the colony has (another admin refuses it, naming the issuer).
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Literal

import base58

from colonyp2p import codec
from colonyp2p.errors import ColonyError, MembershipError, ValidationError
from colonyp2p.identity import Identity, verify
from colonyp2p.model.membership import MembershipSet, Role, follow_chain
from colonyp2p.model.signing import unsigned_bytes

TICKET_PREFIX = "colony-ticket:"
MAX_JOIN_BYTES = 16 << 20  # a reply carries the membership chain
# A device's name is shown to admins (``colonynode members``): short, and printable, so
# that no stranger's request writes terminal escapes into an admin's screen.
MAX_NAME = 64
JoinStatus = Literal["admitted", "pending", "refused"]


class TicketError(ColonyError):
    code = "ticket"


class JoinRefused(ColonyError):
    code = "join_refused"


def check_name(name: str) -> None:
    """Raise ValidationError unless ``name`` is a device name an admin may be shown: at
    most MAX_NAME characters, every one printable (no control characters, so no ANSI
    escape sequences, no line breaks, no invisible formatting)."""
    if type(name) is not str:
        raise ValidationError(f"must be a string, got {type(name).__name__}", "name")
    if len(name) > MAX_NAME:
        raise ValidationError(f"at most {MAX_NAME} characters, got {len(name)}", "name")
    if not name.isprintable():
        bad = next(c for c in name if not c.isprintable())
        raise ValidationError(f"only printable characters, got {bad!a}", "name")


@dataclass(frozen=True)
class Ticket:
    colony_id: str
    role: Role
    issuer: str
    ticket_id: str
    expires_at: float
    bootstrap: tuple[str, ...] = ()
    signature: bytes = b""

    @classmethod
    def issue(
        cls,
        admin: Identity,
        colony_id: str,
        role: Role,
        expires_at: float,
        bootstrap: tuple[str, ...],
    ) -> Ticket:
        if role == "owner":
            raise TicketError("a colony has one owner: invite as admin, executor or user")
        unsigned = cls(
            colony_id, role, admin.member_id, secrets.token_hex(16), expires_at, bootstrap
        )
        return dataclasses.replace(unsigned, signature=admin.sign(unsigned_bytes(unsigned)))

    def encode(self) -> str:
        return TICKET_PREFIX + base58.b58encode(codec.canonical_bytes(self)).decode()

    @classmethod
    def decode(cls, text: str) -> Ticket:
        text = text.strip()
        if not text.startswith(TICKET_PREFIX):
            raise TicketError(f"not a colony ticket (it must start with {TICKET_PREFIX!r})")
        try:
            raw = base58.b58decode(text[len(TICKET_PREFIX) :])
            return codec.from_data(cls, codec.loads_canonical(raw), "ticket")
        except (ValueError, ColonyError) as exc:
            raise TicketError(f"the ticket is damaged: {exc}") from None

    def check(self, membership: MembershipSet, now: float) -> None:
        """Raise TicketError unless an admin of ``membership`` issued it and it is still valid
        (single use is the admin node's to enforce)."""
        if self.colony_id != membership.colony_id:
            raise TicketError(f"the ticket is for colony {self.colony_id}, not this one")
        if not membership.can_administer(self.issuer):
            raise TicketError(f"the ticket's issuer {self.issuer} is not an admin of the colony")
        try:
            verify(self.issuer, unsigned_bytes(self), self.signature)
        except ColonyError:
            raise TicketError("the ticket's signature is not its issuer's") from None
        if now > self.expires_at:
            raise TicketError("the ticket has expired: ask for a new invite")


@dataclass(frozen=True)
class JoinRequest:
    colony_id: str
    member_id: str
    name: str
    ticket: str  # an encoded Ticket, or "" to ask for an admin's approval
    timestamp: float
    signature: bytes = b""

    @classmethod
    def create(
        cls, identity: Identity, colony_id: str, name: str, ticket: str, now: float
    ) -> JoinRequest:
        unsigned = cls(colony_id, identity.member_id, name, ticket, now)
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned_bytes(unsigned)))

    def check(self, peer: str) -> None:
        if self.member_id != peer:
            raise JoinRefused(f"request for {self.member_id} sent by {peer}")
        check_name(self.name)
        verify(self.member_id, unsigned_bytes(self), self.signature)


@dataclass(frozen=True)
class JoinReply:
    status: JoinStatus
    reason: str = ""
    chain: tuple[MembershipSet, ...] = ()  # genesis first, then every version since


def encode(obj: JoinRequest | JoinReply) -> bytes:
    return codec.canonical_bytes(obj)


def decode_request(raw: bytes) -> JoinRequest:
    return codec.from_data(JoinRequest, codec.loads_canonical(raw), "join request")


def decode_reply(raw: bytes) -> JoinReply:
    return codec.from_data(JoinReply, codec.loads_canonical(raw), "join reply")


def verify_chain(colony_id: str, chain: tuple[MembershipSet, ...]) -> MembershipSet:
    """The newest set of ``chain`` once every link is checked from a genesis of
    ``colony_id``; raises MembershipError otherwise."""
    if not chain:
        raise MembershipError("the admin sent no membership")
    first = chain[0]
    if first.colony_id != colony_id:
        raise MembershipError(f"the admin answered for colony {first.colony_id}")
    first.verify_genesis()
    return follow_chain(first, chain[1:])
