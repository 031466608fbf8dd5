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
from colonyp2p.model.membership import Member, MembershipSet

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
