"""The colony's membership set: versioned, signed by the owner or an admin.

The colony id is derived from the owner's public key, so the owner is fixed
for the life of a colony: a membership set whose owner does not derive its
colony id is invalid, and no update can remove, demote or replace the owner.
A member moves from version v to v + 1 only: each version is judged by the one
before it (its signer must be an owner or admin there), so a member that missed
versions needs every one between, and a revoked admin, absent from (or demoted in)
the version that revoked it, can sign nothing that follows that version.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Literal, get_args

from colonyp2p.errors import MembershipGap, StaleMembership, Unauthorized, ValidationError
from colonyp2p.identity import Identity, is_member_id, public_key_from_member_id, verify
from colonyp2p.model.checks import as_float, as_tuple, check_int, check_str, set_field
from colonyp2p.model.signing import unsigned_bytes

Role = Literal["owner", "admin", "executor", "user"]
ROLES: tuple[Role, ...] = get_args(Role)
# Who may sign a new membership version.
ADMIN_ROLES: frozenset[str] = frozenset({"owner", "admin"})
# Who keeps process records: every role but "user", which is a client-only role
# (a laptop that submits and goes to sleep must not hold authoritative state).
KEEPER_ROLES: frozenset[str] = frozenset({"owner", "admin", "executor"})
COLONY_ID_DOMAIN = b"colonyp2p-colony:"
MAX_MEMBERS = 100_000

_NO_ROLES: Mapping[str, Role] = MappingProxyType({})

# Decoding a member id is base58 arithmetic; a big colony's membership set is
# rebuilt on every update and every receipt, with the same ids each time.
_valid_member_id = functools.lru_cache(maxsize=1 << 16)(is_member_id)


def colony_id_for(owner_public_key: bytes) -> str:
    """The colony id of the colony owned by this Ed25519 public key (64 hex characters)."""
    return hashlib.sha256(COLONY_ID_DOMAIN + owner_public_key).hexdigest()


@dataclass(frozen=True)
class Member:
    """One member of a colony: its key (as a member id), its role and a name for people."""

    member_id: str
    role: Role
    name: str = ""

    def __post_init__(self) -> None:
        if type(self.member_id) is not str or not _valid_member_id(self.member_id):
            raise ValidationError(f"{self.member_id!r} is not a member id", "member_id")
        if self.role not in ROLES:
            raise ValidationError(f"{self.role!r} is not one of {', '.join(ROLES)}", "role")
        check_str(self.name, "name", 256)


@dataclass(frozen=True)
class MembershipSet:
    """One version of a colony's membership, signed by its owner or an admin."""

    colony_id: str
    name: str
    version: int
    members: tuple[Member, ...]
    issued_at: float
    signer: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        check_str(self.colony_id, "colony_id", 128, nonempty=True)
        check_str(self.name, "name", 256)
        check_int(self.version, "version", 1)
        members = as_tuple(self.members, "members")
        set_field(self, "members", members)
        if len(members) > MAX_MEMBERS:
            raise ValidationError(f"at most {MAX_MEMBERS} members, got {len(members)}", "members")
        by_id: dict[str, Member] = {}
        owners = []
        for i, member in enumerate(members):
            if not isinstance(member, Member):
                raise ValidationError(
                    f"must be a Member, got {type(member).__name__}", f"members[{i}]"
                )
            if member.member_id in by_id:
                raise ValidationError(f"{member.member_id} is listed twice", f"members[{i}]")
            by_id[member.member_id] = member
            if member.role == "owner":
                owners.append(member.member_id)
        if len(owners) != 1:
            raise ValidationError(
                f"a colony has exactly one owner, this lists {len(owners)}", "members"
            )
        set_field(self, "issued_at", as_float(self.issued_at, "issued_at"))
        check_str(self.signer, "signer", 128)
        if type(self.signature) is not bytes:
            raise ValidationError("must be bytes", "signature")
        # Validation built the index anyway: hand it to the cached property.
        self.__dict__["_by_id"] = by_id
        self.__dict__["owner_id"] = owners[0]

    # --- lookups ---------------------------------------------------------------

    @cached_property
    def _by_id(self) -> dict[str, Member]:
        return {m.member_id: m for m in self.members}

    @cached_property
    def owner_id(self) -> str:
        """The member id of the colony's owner."""
        return next(m.member_id for m in self.members if m.role == "owner")

    def member(self, member_id: str) -> Member | None:
        """The member with this id, or None if it is not (or no longer) a member."""
        return self._by_id.get(member_id)

    def role_of(self, member_id: str) -> Role | None:
        """The member's role, or None if it is not a member."""
        member = self._by_id.get(member_id)
        return None if member is None else member.role

    def is_member(self, member_id: str) -> bool:
        """Whether this id is in this version of the membership (O(1))."""
        return member_id in self._by_id

    def can_administer(self, member_id: str) -> bool:
        """Whether this member may sign the next membership version (owner or admin)."""
        member = self._by_id.get(member_id)
        return member is not None and member.role in ADMIN_ROLES

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._by_id

    def __len__(self) -> int:
        return len(self.members)

    @cached_property
    def member_ids(self) -> tuple[str, ...]:
        """Every member id, sorted."""
        return tuple(sorted(self._by_id))

    @cached_property
    def keeper_ids(self) -> tuple[str, ...]:
        """The members that keep process records (owner, admins, executors), sorted."""
        return tuple(sorted(m.member_id for m in self.members if m.role in KEEPER_ROLES))

    @cached_property
    def admins(self) -> tuple[str, ...]:
        """The members with the admin role, sorted (the owner is not listed: see owner_id)."""
        return tuple(sorted(m.member_id for m in self.members if m.role == "admin"))

    # --- creating and changing --------------------------------------------------

    @classmethod
    def genesis(
        cls, owner: Identity, name: str, now: float, members: Iterable[Member] = ()
    ) -> MembershipSet:
        """Version 1 of a new colony owned (and signed) by ``owner``.

        ``members`` may list the owner itself (with role "owner") to give it a name.
        """
        listed = {owner.member_id: Member(owner.member_id, "owner")}
        for member in members:
            if member.member_id == owner.member_id and member.role != "owner":
                raise ValidationError("the colony's creator is its owner", "members")
            if member.member_id in listed and member.member_id != owner.member_id:
                raise ValidationError(f"{member.member_id} is listed twice", "members")
            listed[member.member_id] = member
        unsigned = cls(
            colony_id=colony_id_for(owner.public_key),
            name=name,
            version=1,
            members=tuple(sorted(listed.values(), key=lambda m: m.member_id)),
            issued_at=now,
            signer=owner.member_id,
        )
        return dataclasses.replace(unsigned, signature=owner.sign(unsigned_bytes(unsigned)))

    def updated(
        self,
        signer: Identity,
        now: float,
        add: Iterable[Member] = (),
        remove: Iterable[str] = (),
        set_roles: Mapping[str, Role] = _NO_ROLES,
    ) -> MembershipSet:
        """The next version, signed by ``signer`` (the owner or an admin of this version).

        Removals apply first, then additions, then role changes. Raises Unauthorized
        when the signer may not make the change, ValidationError when nobody may.
        """
        signer_role = self.role_of(signer.member_id)
        if signer_role not in ADMIN_ROLES:
            raise Unauthorized(
                f"{signer.member_id} is {_describe(signer_role)}: only the owner or an admin "
                "can change the membership"
            )
        by_id = dict(self._by_id)
        for member_id in remove:
            if member_id == self.owner_id:
                _refuse_owner_change(signer_role, "remove the owner")
            if by_id.pop(member_id, None) is None:
                raise ValidationError(f"{member_id} is not a member", "remove")
        for member in add:
            if member.member_id in by_id:
                raise ValidationError(
                    f"{member.member_id} is already a member (change roles with set_roles)", "add"
                )
            if member.role == "owner":
                raise ValidationError(_ONE_OWNER, "add")
            by_id[member.member_id] = member
        for member_id, role in set_roles.items():
            if member_id == self.owner_id:
                if role == "owner":
                    continue
                _refuse_owner_change(signer_role, "demote the owner")
            if role not in ROLES:
                raise ValidationError(f"{role!r} is not one of {', '.join(ROLES)}", "set_roles")
            if role == "owner":
                raise ValidationError(_ONE_OWNER, "set_roles")
            current = by_id.get(member_id)
            if current is None:
                raise ValidationError(f"{member_id} is not a member", "set_roles")
            by_id[member_id] = dataclasses.replace(current, role=role)
        unsigned = MembershipSet(
            colony_id=self.colony_id,
            name=self.name,
            version=self.version + 1,
            members=tuple(sorted(by_id.values(), key=lambda m: m.member_id)),
            issued_at=now,
            signer=signer.member_id,
        )
        return dataclasses.replace(unsigned, signature=signer.sign(unsigned_bytes(unsigned)))

    # --- verifying -----------------------------------------------------------------

    def verify_signature(self) -> None:
        """Raise BadSignature unless ``signer`` signed exactly this document."""
        _ = self._verified

    @cached_property
    def _verified(self) -> bool:
        # The set is immutable, so one successful check holds for the object's life; a large
        # colony's set takes milliseconds to encode, and every announcement re-verifies it.
        verify(self.signer, unsigned_bytes(self), self.signature)
        return True

    def check_owner_derives_colony_id(self) -> None:
        """Raise ValidationError unless the owner's key derives this colony id."""
        try:
            key = public_key_from_member_id(self.owner_id)
        except ValueError as exc:  # Member validation makes this unreachable; stay safe
            raise ValidationError(str(exc), "members") from exc
        if colony_id_for(key) != self.colony_id:
            raise ValidationError(
                f"the owner {self.owner_id} does not own colony {self.colony_id}", "colony_id"
            )

    def verify_genesis(self) -> None:
        """Check a first membership document, trusted on its own: signed by its owner,
        whose key derives the colony id. Any version signed by the owner passes."""
        self.check_owner_derives_colony_id()
        if self.signer != self.owner_id:
            raise Unauthorized(
                f"a first membership document must be signed by the owner {self.owner_id}, "
                f"not {self.signer}"
            )
        self.verify_signature()

    def verify_successor(self, new: MembershipSet) -> None:
        """Check that ``new`` is the next version after this one: version + 1 exactly,
        signed by an owner or admin of this version.

        Only the version just before can judge a signer: an admin revoked in version 9
        is still an admin of version 8, so a member at 8 that accepted a jump to any
        later version signed by it would follow the revoked admin (a jump to 2^63 - 1
        would even shut the genuine versions out for good).
        """
        if new.colony_id != self.colony_id:
            raise StaleMembership(
                f"membership of colony {new.colony_id} offered to colony {self.colony_id}"
            )
        if new.version <= self.version:
            raise StaleMembership(f"version {new.version} does not replace version {self.version}")
        if new.version != self.version + 1:
            first, last = self.version + 1, new.version - 1
            missing = f"version {first} is" if first == last else f"versions {first} to {last} are"
            raise MembershipGap(
                f"version {new.version} does not follow version {self.version}: {missing} missing"
            )
        signer_role = self.role_of(new.signer)
        if signer_role not in ADMIN_ROLES:
            raise Unauthorized(
                f"version {new.version} is signed by {new.signer}, who is "
                f"{_describe(signer_role)} in version {self.version}"
            )
        new.check_owner_derives_colony_id()
        new.verify_signature()


def follow_chain(current: MembershipSet, chain: Iterable[MembershipSet]) -> MembershipSet:
    """The last version of ``chain`` once each was checked as the successor of the one
    before it, the first as the successor of ``current``; raises what the first step
    that fails raises (an empty chain leaves ``current``)."""
    for new in chain:
        current.verify_successor(new)
        current = new
    return current


_ONE_OWNER = "a colony has one owner, the key its id derives from; it cannot be given away"


def _describe(role: Role | None) -> str:
    return "not a member" if role is None else f"a member with role {role!r}"


def _refuse_owner_change(signer_role: Role | None, what: str) -> None:
    if signer_role == "admin":
        raise Unauthorized(f"an admin cannot {what}")
    raise ValidationError(f"cannot {what}: the colony id derives from the owner's key", "members")
