"""Promises of the membership and signed-spec models that mutation testing found
unchecked (bench/mutation_score.py, bench/results/MUTATION.md): each test fails with a
mutant that survived the other tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from colonyp2p.errors import (
    ColonyError,
    StaleMembership,
    Unauthorized,
    ValidationError,
)
from colonyp2p.identity import Identity
from colonyp2p.model import membership
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import MAX_NONCE, SignedSpec
from colonyp2p.model.spec import FunctionSpec

OWNER, ADMIN, EXECUTOR, USER, STRANGER = (
    Identity.from_seed(bytes([60 + i]) * 32) for i in range(5)
)
GENESIS = MembershipSet.genesis(
    OWNER,
    "lab",
    10.0,
    members=[
        Member(ADMIN.member_id, "admin"),
        Member(EXECUTOR.member_id, "executor"),
        Member(USER.member_id, "user"),
    ],
)


def test_who_is_a_member_and_who_may_administer() -> None:
    for who in (OWNER, ADMIN, EXECUTOR, USER):
        assert who.member_id in GENESIS
    assert STRANGER.member_id not in GENESIS
    assert GENESIS.can_administer(OWNER.member_id)
    assert GENESIS.can_administer(ADMIN.member_id)
    for who in (EXECUTOR, USER, STRANGER):
        assert not GENESIS.can_administer(who.member_id)


def _v2_of_another_colony() -> MembershipSet:
    other = MembershipSet.genesis(
        STRANGER, "elsewhere", 0, members=[Member(OWNER.member_id, "admin")]
    )
    return other.updated(OWNER, 20.0, remove=[])


def _hijack() -> MembershipSet:
    """A v2 of this colony, signed by its admin, naming an owner whose key does not
    derive the colony id."""
    doc = dataclasses.replace(
        GENESIS,
        version=2,
        members=(Member(ADMIN.member_id, "admin"), Member(STRANGER.member_id, "owner")),
        signer=ADMIN.member_id,
    )
    return dataclasses.replace(doc, signature=ADMIN.sign(b"unchecked"))


OWN, A, E, U, S = (i.member_id for i in (OWNER, ADMIN, EXECUTOR, USER, STRANGER))
ONLY_ADMINS = "only the owner or an admin can change the membership"
OWNER_KEY = "the colony id derives from the owner's key"
ONE_OWNER = "a colony has one owner, the key its id derives from; it cannot be given away"
# each refusal: the call, the error class, and the message a user reads
REFUSALS: list[tuple[str, Callable[[], object], type[ColonyError], str]] = [
    (
        "an executor changes the membership",
        lambda: GENESIS.updated(EXECUTOR, 20.0, remove=[U]),
        Unauthorized,
        f"{E} is a member with role 'executor': {ONLY_ADMINS}",
    ),
    (
        "a stranger changes the membership",
        lambda: GENESIS.updated(STRANGER, 20.0, remove=[U]),
        Unauthorized,
        f"{S} is not a member: {ONLY_ADMINS}",
    ),
    (
        "an admin removes the owner",
        lambda: GENESIS.updated(ADMIN, 20.0, remove=[OWN]),
        Unauthorized,
        "an admin cannot remove the owner",
    ),
    (
        "an admin demotes the owner",
        lambda: GENESIS.updated(ADMIN, 20.0, set_roles={OWN: "user"}),
        Unauthorized,
        "an admin cannot demote the owner",
    ),
    (
        "the owner removes itself",
        lambda: GENESIS.updated(OWNER, 20.0, remove=[OWN]),
        ValidationError,
        f"members: cannot remove the owner: {OWNER_KEY}",
    ),
    (
        "the owner demotes itself",
        lambda: GENESIS.updated(OWNER, 20.0, set_roles={OWN: "admin"}),
        ValidationError,
        f"members: cannot demote the owner: {OWNER_KEY}",
    ),
    (
        "a genesis naming its creator other than owner",
        lambda: MembershipSet.genesis(OWNER, "lab", 1.0, members=[Member(OWN, "admin")]),
        ValidationError,
        "members: the colony's creator is its owner",
    ),
    (
        "a genesis listing a member twice",
        lambda: MembershipSet.genesis(OWNER, "lab", 1.0, members=[Member(U, "user")] * 2),
        ValidationError,
        f"members: {U} is listed twice",
    ),
    (
        "adding a second owner",
        lambda: GENESIS.updated(OWNER, 20.0, add=[Member(S, "owner")]),
        ValidationError,
        f"add: {ONE_OWNER}",
    ),
    (
        "making a member owner",
        lambda: GENESIS.updated(OWNER, 20.0, set_roles={A: "owner"}),
        ValidationError,
        f"set_roles: {ONE_OWNER}",
    ),
    (
        "an unknown role",
        lambda: GENESIS.updated(OWNER, 20.0, set_roles={A: "root"}),  # type: ignore[dict-item]
        ValidationError,
        "set_roles: 'root' is not one of owner, admin, executor, user",
    ),
    (
        "a role for a stranger",
        lambda: GENESIS.updated(OWNER, 20.0, set_roles={S: "user"}),
        ValidationError,
        f"set_roles: {S} is not a member",
    ),
    (
        "removing a stranger",
        lambda: GENESIS.updated(OWNER, 20.0, remove=[S]),
        ValidationError,
        f"remove: {S} is not a member",
    ),
    (
        "adding a member twice",
        lambda: GENESIS.updated(OWNER, 20.0, add=[Member(U, "executor")]),
        ValidationError,
        f"add: {U} is already a member (change roles with set_roles)",
    ),
    (
        "a first document signed by an admin",
        lambda: dataclasses.replace(GENESIS, signer=A).verify_genesis(),
        Unauthorized,
        f"a first membership document must be signed by the owner {OWN}, not {A}",
    ),
    (
        "a version of another colony",
        lambda: GENESIS.verify_successor(_v2_of_another_colony()),
        StaleMembership,
        f"membership of colony {_v2_of_another_colony().colony_id} "
        f"offered to colony {GENESIS.colony_id}",
    ),
    (
        "an older version",
        lambda: GENESIS.updated(OWNER, 20.0, remove=[U]).verify_successor(GENESIS),
        StaleMembership,
        "version 1 does not replace version 2",
    ),
    (
        "an owner whose key does not derive the colony id",
        lambda: GENESIS.verify_successor(_hijack()),
        ValidationError,
        f"colony_id: the owner {S} does not own colony {GENESIS.colony_id}",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_each_membership_refusal_says_why(
    call: Callable[[], object], error: type[ColonyError], message: str
) -> None:
    with pytest.raises(error) as refused:
        call()
    assert str(refused.value) == message


def test_naming_the_owner_owner_again_changes_nothing_and_stops_nothing() -> None:
    v2 = GENESIS.updated(OWNER, 20.0, set_roles={OWN: "owner", U: "executor"})
    assert v2.role_of(OWN) == "owner"
    assert v2.role_of(U) == "executor"  # the change after the owner's is made too


def _owner_only(**fields: object) -> MembershipSet:
    """A membership set built field by field (unsigned), the owner its only member unless
    ``fields`` say otherwise."""
    doc: dict[str, object] = {
        "colony_id": GENESIS.colony_id,
        "name": "lab",
        "version": 1,
        "members": (Member(OWN, "owner"),),
        "issued_at": 1.0,
        "signer": OWN,
    }
    doc.update(fields)
    return MembershipSet(**doc)  # type: ignore[arg-type]


MEMBERSHIP_FIELD_REFUSALS: list[tuple[dict[str, object], str]] = [
    ({"colony_id": 1}, "colony_id: must be a string, got int"),
    ({"colony_id": ""}, "colony_id: must not be empty"),
    ({"colony_id": "c" * 129}, "colony_id: must be at most 128 characters, got 129"),
    ({"name": None}, "name: must be a string, got NoneType"),
    ({"name": "n" * 257}, "name: must be at most 256 characters, got 257"),
    ({"version": 0}, "version: must be at least 1, got 0"),
    ({"version": 1.0}, "version: must be an integer, got float"),
    ({"members": {OWN: "owner"}}, "members: must be a list, got dict"),
    ({"members": (Member(OWN, "owner"), OWN)}, "members[1]: must be a Member, got str"),
    (
        {"members": (Member(OWN, "owner"), Member(U, "user"), Member(U, "admin"))},
        f"members[2]: {U} is listed twice",
    ),
    ({"members": (Member(U, "user"),)}, "members: a colony has exactly one owner, this lists 0"),
    (
        {"members": (Member(OWN, "owner"), Member(U, "owner"))},
        "members: a colony has exactly one owner, this lists 2",
    ),
    ({"issued_at": "1"}, "issued_at: must be a number, got str"),
    ({"signer": 1}, "signer: must be a string, got int"),
    ({"signer": "s" * 129}, "signer: must be at most 128 characters, got 129"),
    ({"signature": "sig"}, "signature: must be bytes"),
]


@pytest.mark.parametrize(("fields", "message"), MEMBERSHIP_FIELD_REFUSALS)
def test_a_malformed_membership_set_is_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _owner_only(**fields)
    assert str(refused.value) == message


def test_a_membership_set_built_field_by_field_answers_lookups() -> None:
    doc = _owner_only(
        members=[Member(U, "user"), Member(OWN, "owner", "me"), Member(A, "admin")],
        issued_at=5,
        signer="",
    )
    assert type(doc.members) is tuple and len(doc) == 3
    assert doc.issued_at == 5.0 and type(doc.issued_at) is float
    assert doc.owner_id == OWN
    assert doc.member(OWN) == Member(OWN, "owner", "me")
    assert doc.role_of(U) == "user" and doc.role_of(S) is None
    assert doc.member_ids == tuple(sorted((U, OWN, A)))
    assert doc.keeper_ids == tuple(sorted((OWN, A)))
    assert doc.admins == (A,)
    # an unsigned document's signature is refused as such, not skipped
    with pytest.raises(ColonyError):
        doc.verify_signature()


def test_a_colony_holds_at_most_max_members(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membership, "MAX_MEMBERS", 3)
    three = (Member(OWN, "owner"), Member(A, "admin"), Member(U, "user"))
    assert len(_owner_only(members=three)) == 3
    with pytest.raises(ValidationError) as refused:
        _owner_only(members=(*three, Member(E, "executor")))
    assert str(refused.value) == "members: at most 3 members, got 4"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"member_id": "x"}, "member_id: 'x' is not a member id"),
        ({"member_id": 1}, "member_id: 1 is not a member id"),
        ({"member_id": OWN[:-1]}, f"member_id: {OWN[:-1]!r} is not a member id"),
        ({"role": "root"}, "role: 'root' is not one of owner, admin, executor, user"),
        ({"name": 1}, "name: must be a string, got int"),
        ({"name": "n" * 257}, "name: must be at most 256 characters, got 257"),
    ],
)
def test_a_malformed_member_is_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    member: dict[str, object] = {"member_id": U, "role": "user", "name": "n" * 256}
    member.update(fields)
    with pytest.raises(ValidationError) as refused:
        Member(**member)  # type: ignore[arg-type]
    assert str(refused.value) == message


# --- signed specs -------------------------------------------------------------------


def _signed(**fields: object) -> SignedSpec:
    spec: dict[str, object] = {
        "spec": FunctionSpec(funcname="f"),
        "colony_id": "c" * 128,
        "submitter": U,
        "submitted_at": 1.0,
        "nonce": b"n" * MAX_NONCE,
        "parents": ("p" * 128,),
        "workflow_id": "w" * 128,
    }
    spec.update(fields)
    return SignedSpec(**spec)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"spec": "f"}, "spec: must be a FunctionSpec, got str"),
        ({"colony_id": 1}, "colony_id: must be a string, got int"),
        ({"colony_id": "c" * 129}, "colony_id: must be at most 128 characters, got 129"),
        ({"submitter": None}, "submitter: must be a string, got NoneType"),
        ({"submitter": "s" * 129}, "submitter: must be at most 128 characters, got 129"),
        ({"submitted_at": "1"}, "submitted_at: must be a number, got str"),
        ({"nonce": "n"}, f"nonce: must be at most {MAX_NONCE} bytes"),
        ({"nonce": b"n" * (MAX_NONCE + 1)}, f"nonce: must be at most {MAX_NONCE} bytes"),
        ({"parents": "p"}, "parents: must be a list of strings, got str"),
        ({"parents": ["p", 1]}, "parents[1]: must be a string, got int"),
        ({"parents": ["p" * 129]}, "parents[0]: must be at most 128 characters, got 129"),
        ({"workflow_id": 1}, "workflow_id: must be a string, got int"),
        ({"workflow_id": "w" * 129}, "workflow_id: must be at most 128 characters, got 129"),
        ({"signature": "sig"}, "signature: must be bytes"),
    ],
)
def test_a_malformed_signed_spec_is_refused_naming_the_field(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _signed(**fields)
    assert str(refused.value) == message


def test_a_signed_spec_at_its_bounds_is_taken_and_normalised() -> None:
    spec = _signed(submitted_at=3, parents=["a", "b"])
    assert spec.submitted_at == 3.0 and type(spec.submitted_at) is float
    assert spec.parents == ("a", "b")
    assert _signed().nonce == b"n" * MAX_NONCE
    signed = SignedSpec.create(FunctionSpec(funcname="f"), USER, "c", 2, b"", ["p"], "w")
    assert signed.valid() and signed.submitter == U and signed.parents == ("p",)
    assert signed.submitted_at == 2.0 and type(signed.submitted_at) is float
    assert not dataclasses.replace(signed, nonce=b"x").valid()
