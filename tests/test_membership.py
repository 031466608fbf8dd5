"""Membership: genesis, updates by owner and admins, and what a node refuses to adopt."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from colonyp2p import codec
from colonyp2p.errors import (
    BadSignature,
    MembershipGap,
    StaleMembership,
    Unauthorized,
    ValidationError,
)
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet, colony_id_for, follow_chain

OWNER = Identity.from_seed(b"\x01" * 32)
ADMIN = Identity.from_seed(b"\x02" * 32)
EXECUTOR = Identity.from_seed(b"\x03" * 32)
USER = Identity.from_seed(b"\x04" * 32)
STRANGER = Identity.from_seed(b"\x05" * 32)


@pytest.fixture
def genesis() -> MembershipSet:
    return MembershipSet.genesis(
        OWNER,
        "lab",
        10.0,
        members=[
            Member(ADMIN.member_id, "admin", "admin-laptop"),
            Member(EXECUTOR.member_id, "executor", "pi-1"),
            Member(USER.member_id, "user", "phone"),
        ],
    )


def test_genesis(genesis: MembershipSet) -> None:
    assert genesis.version == 1
    assert genesis.colony_id == colony_id_for(OWNER.public_key)
    assert len(genesis.colony_id) == 64
    assert genesis.owner_id == OWNER.member_id
    assert genesis.signer == OWNER.member_id
    assert genesis.role_of(OWNER.member_id) == "owner"
    assert genesis.role_of(USER.member_id) == "user"
    assert genesis.role_of(STRANGER.member_id) is None
    assert genesis.is_member(EXECUTOR.member_id)
    assert not genesis.is_member(STRANGER.member_id)
    assert genesis.member_ids == tuple(sorted(m.member_id for m in genesis.members))
    assert set(genesis.keeper_ids) == {OWNER.member_id, ADMIN.member_id, EXECUTOR.member_id}
    assert list(genesis.keeper_ids) == sorted(genesis.keeper_ids)
    assert genesis.admins == (ADMIN.member_id,)
    genesis.verify_genesis()
    decoded = codec.from_data(MembershipSet, codec.loads_canonical(codec.canonical_bytes(genesis)))
    assert decoded == genesis
    decoded.verify_genesis()
    assert decoded.role_of(ADMIN.member_id) == "admin"


def test_genesis_lets_the_owner_name_itself_only_as_owner() -> None:
    named = MembershipSet.genesis(OWNER, "lab", 0, members=[Member(OWNER.member_id, "owner", "me")])
    assert named.member(OWNER.member_id) == Member(OWNER.member_id, "owner", "me")
    with pytest.raises(ValidationError):
        MembershipSet.genesis(OWNER, "lab", 0, members=[Member(OWNER.member_id, "admin")])


def test_genesis_refuses_a_foreign_owner_or_signer(genesis: MembershipSet) -> None:
    # a document listing someone else's key as owner of this colony
    forged = dataclasses.replace(
        genesis,
        members=(Member(STRANGER.member_id, "owner"),),
        signer=STRANGER.member_id,
    )
    forged = dataclasses.replace(forged, signature=_sign(STRANGER, forged))
    with pytest.raises(ValidationError):
        forged.verify_genesis()
    # signed by an admin: not self-certifying
    by_admin = dataclasses.replace(genesis, signer=ADMIN.member_id)
    by_admin = dataclasses.replace(by_admin, signature=_sign(ADMIN, by_admin))
    with pytest.raises(Unauthorized):
        by_admin.verify_genesis()
    with pytest.raises(BadSignature):
        dataclasses.replace(genesis, name="other").verify_genesis()


def _sign(identity: Identity, doc: MembershipSet) -> bytes:
    return identity.sign(codec.canonical_bytes(dataclasses.replace(doc, signature=b"")))


@pytest.mark.parametrize("signer", [OWNER, ADMIN])
def test_owner_and_admin_update(genesis: MembershipSet, signer: Identity) -> None:
    newcomer = Identity.generate()
    v2 = genesis.updated(
        signer,
        20.0,
        add=[Member(newcomer.member_id, "executor")],
        remove=[USER.member_id],
        set_roles={EXECUTOR.member_id: "admin"},
    )
    assert v2.version == 2 and v2.signer == signer.member_id and v2.issued_at == 20.0
    assert v2.colony_id == genesis.colony_id and v2.name == genesis.name
    assert v2.role_of(newcomer.member_id) == "executor"
    assert v2.role_of(EXECUTOR.member_id) == "admin"
    assert not v2.is_member(USER.member_id)  # revoked: absent from the newer version
    genesis.verify_successor(v2)
    v3 = v2.updated(EXECUTOR, 30.0, remove=[newcomer.member_id])  # an admin since v2
    v2.verify_successor(v3)
    assert not v3.is_member(newcomer.member_id)
    v4 = v3.updated(ADMIN, 40.0, remove=[EXECUTOR.member_id])
    v3.verify_successor(v4)
    assert follow_chain(genesis, (v2, v3, v4)) is v4
    assert follow_chain(v4, ()) is v4


def _resigned(doc: MembershipSet, signer: Identity, **changes: Any) -> MembershipSet:
    unsigned = dataclasses.replace(doc, signer=signer.member_id, signature=b"", **changes)
    return dataclasses.replace(unsigned, signature=_sign(signer, unsigned))


def test_a_jump_signed_by_a_revoked_admin_is_refused(genesis: MembershipSet) -> None:
    # The attack: the admin is revoked in v2; a member that missed v2 is offered, by the
    # revoked admin, a version far ahead that keeps it and adds an admin of its own. Its
    # signer is an admin of v1, which judged it before: the member followed the revoked
    # admin, and the jump (2^63 - 1) shut every genuine version out.
    revocation = genesis.updated(OWNER, 20.0, remove=[ADMIN.member_id])
    own = genesis.updated(ADMIN, 21.0, add=[Member(STRANGER.member_id, "admin")])
    jump = _resigned(own, ADMIN, version=2**63 - 1)
    with pytest.raises(MembershipGap, match="versions 2 to 9223372036854775806 are missing"):
        genesis.verify_successor(jump)
    # the genuine revocation is adopted, and the revoked admin signs nothing after it
    assert follow_chain(genesis, (revocation,)) is revocation
    with pytest.raises(MembershipGap):
        revocation.verify_successor(jump)
    next_one = _resigned(own, ADMIN, version=3)
    with pytest.raises(Unauthorized, match="not a member in version 2"):
        revocation.verify_successor(next_one)


def test_a_version_that_skips_one_is_refused_even_when_genuine(genesis: MembershipSet) -> None:
    v2 = genesis.updated(OWNER, 20.0, remove=[USER.member_id])
    v3 = v2.updated(OWNER, 30.0, remove=[EXECUTOR.member_id])
    with pytest.raises(MembershipGap, match="version 3 does not follow version 1"):
        genesis.verify_successor(v3)
    with pytest.raises(MembershipGap):
        follow_chain(genesis, (v3,))
    # a chain with a forged link is refused at that link
    forged = _resigned(v3, EXECUTOR)
    with pytest.raises(Unauthorized, match=r"signed by .* role 'executor' in version 2"):
        follow_chain(genesis, (v2, forged))


@pytest.mark.parametrize("signer", [EXECUTOR, USER, STRANGER])
def test_update_refused_for_other_roles(genesis: MembershipSet, signer: Identity) -> None:
    with pytest.raises(Unauthorized):
        genesis.updated(signer, 20.0, remove=[USER.member_id])


def test_nobody_removes_or_demotes_the_owner(genesis: MembershipSet) -> None:
    with pytest.raises(Unauthorized):
        genesis.updated(ADMIN, 20.0, remove=[OWNER.member_id])
    with pytest.raises(Unauthorized):
        genesis.updated(ADMIN, 20.0, set_roles={OWNER.member_id: "admin"})
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, remove=[OWNER.member_id])
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, set_roles={OWNER.member_id: "user"})
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, set_roles={ADMIN.member_id: "owner"})
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, add=[Member(STRANGER.member_id, "owner")])


def test_update_refuses_unknown_and_duplicate_members(genesis: MembershipSet) -> None:
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, remove=[STRANGER.member_id])
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, set_roles={STRANGER.member_id: "user"})
    with pytest.raises(ValidationError):
        genesis.updated(OWNER, 20.0, add=[Member(USER.member_id, "executor")])


def test_successor_signed_by_a_non_admin_is_unauthorized(genesis: MembershipSet) -> None:
    v2 = genesis.updated(OWNER, 20.0, set_roles={USER.member_id: "admin"})
    # USER is an admin in v2, so it may sign v3; a node still at v1 needs v2 to know it
    v3 = v2.updated(USER, 30.0, remove=[EXECUTOR.member_id])
    v2.verify_successor(v3)
    with pytest.raises(MembershipGap, match="version 2 is missing"):
        genesis.verify_successor(v3)
    # an executor forging a next version of its own
    forged = dataclasses.replace(genesis, version=2, signer=EXECUTOR.member_id)
    forged = dataclasses.replace(forged, signature=_sign(EXECUTOR, forged))
    with pytest.raises(Unauthorized):
        genesis.verify_successor(forged)


def test_stale_versions_are_refused(genesis: MembershipSet) -> None:
    v2 = genesis.updated(OWNER, 20.0, remove=[USER.member_id])
    with pytest.raises(StaleMembership):
        v2.verify_successor(genesis)
    with pytest.raises(StaleMembership):
        v2.verify_successor(v2)
    # a different v2 than the one we have is no successor either
    other_v2 = genesis.updated(ADMIN, 21.0, remove=[EXECUTOR.member_id])
    with pytest.raises(StaleMembership):
        v2.verify_successor(other_v2)


def test_forged_signature_is_refused(genesis: MembershipSet) -> None:
    v2 = genesis.updated(ADMIN, 20.0, remove=[USER.member_id])
    # readding the revoked user to a signed document
    tampered = dataclasses.replace(v2, members=(*v2.members, Member(USER.member_id, "user")))
    with pytest.raises(BadSignature):
        genesis.verify_successor(tampered)
    # claiming the owner signed what the admin signed
    with pytest.raises(BadSignature):
        genesis.verify_successor(dataclasses.replace(v2, signer=OWNER.member_id))


def test_wrong_colony_is_refused(genesis: MembershipSet) -> None:
    other = MembershipSet.genesis(
        STRANGER, "elsewhere", 0, members=[Member(OWNER.member_id, "admin")]
    )
    v2 = other.updated(OWNER, 20.0, remove=[])
    with pytest.raises(StaleMembership):
        genesis.verify_successor(v2)
    # same colony id, but an owner whose key does not derive it (signed by our admin)
    hijack = dataclasses.replace(
        genesis,
        version=2,
        members=(Member(ADMIN.member_id, "admin"), Member(STRANGER.member_id, "owner")),
        signer=ADMIN.member_id,
    )
    hijack = dataclasses.replace(hijack, signature=_sign(ADMIN, hijack))
    with pytest.raises(ValidationError):
        genesis.verify_successor(hijack)


def test_lookups_are_built_once(genesis: MembershipSet) -> None:
    members = [Member(Identity.generate().member_id, "executor") for _ in range(200)]
    big = genesis.updated(OWNER, 20.0, add=members)
    assert len(big) == 204
    assert all(big.is_member(m.member_id) for m in members)
    assert big.member_ids is big.member_ids  # cached
