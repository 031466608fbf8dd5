"""The core refuses what it must not act on, counts it, and changes nothing: messages and
announcements from non-members and revoked members, membership sets that are stale,
forged or signed without the right, and specs for another colony."""

from __future__ import annotations

import dataclasses
import random

from core_effects import placed

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import (
    AdAnnounce,
    MembershipAnnounce,
    Prepare,
    Query,
    SpecAnnounce,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(3)
OWNER, ADMIN, EXEC, OTHER, STRANGER = (Identity.from_seed(_rng.randbytes(32)) for _ in range(5))
GENESIS = MembershipSet.genesis(
    OWNER,
    "refusals",
    0.0,
    members=[Member(ADMIN.member_id, "admin"), Member(EXEC.member_id, "executor")],
)
PARAMS = Params(keepers=3)


def _node() -> ColonyNode:
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    return node


def _spec(submitter: Identity = EXEC, colony_id: str = GENESIS.colony_id) -> SignedSpec:
    return SignedSpec.create(FunctionSpec("work"), submitter, colony_id, 1.0, b"n")


def _state(node: ColonyNode) -> tuple[object, ...]:
    return (node.membership, dict(node.keeper.records), dict(node.ads), node.revoked)


def _only_rejects(effects: list[fx.Effect], code: str) -> None:
    assert effects, "a refusal must be reported"
    assert all(isinstance(e, fx.Reject) and e.code == code for e in effects), effects


def test_non_member_messages_and_announcements_change_nothing() -> None:
    node = _node()
    before = _state(node)
    spec = _spec(STRANGER)
    for msg in (
        placed(StoreSpec(spec, (OWNER.member_id,), 1), OWNER, ADMIN, EXEC, OTHER, STRANGER),
        Prepare(spec.pid, 1, "claim"),
        Query(spec.pid),
    ):
        _only_rejects(node.on_message(STRANGER.member_id, msg, 2.0), "not_member")
    ad = ExecutorAd.create(STRANGER, 0.0, executortype="edge", name="intruder")
    _only_rejects(node.on_announcement(STRANGER.member_id, AdAnnounce(ad), 2.0), "not_member")
    _only_rejects(
        node.on_announcement(STRANGER.member_id, SpecAnnounce(spec, (OWNER.member_id,)), 2.0),
        "not_member",
    )
    assert _state(node) == before
    assert node.counters["not_member"] == 5


def test_a_revoked_member_is_refused_from_the_next_version_on() -> None:
    node = _node()
    spec = _spec()
    assert not [
        e
        for e in node.on_message(
            EXEC.member_id,
            placed(StoreSpec(spec, (OWNER.member_id,), 1), OWNER, ADMIN, EXEC, OTHER, STRANGER),
            2.0,
        )
        if isinstance(e, fx.Reject)
    ]
    revoked = GENESIS.updated(OWNER, 3.0, remove=[EXEC.member_id])
    node.on_announcement(ADMIN.member_id, MembershipAnnounce(revoked), 3.0)
    assert node.membership.version == 2
    before = _state(node)
    _only_rejects(node.on_message(EXEC.member_id, Query(spec.pid), 4.0), "not_member")
    assert _state(node) == before


def test_membership_sets_that_are_stale_forged_or_unauthorised_are_refused() -> None:
    node = _node()
    v2 = GENESIS.updated(OWNER, 1.0, add=[Member(OTHER.member_id, "user")])
    node.on_announcement(ADMIN.member_id, MembershipAnnounce(v2), 1.0)
    assert node.membership == v2
    before = _state(node)
    # stale: the genesis again is silently ignored (gossip repeats itself)
    assert node.on_announcement(ADMIN.member_id, MembershipAnnounce(GENESIS), 2.0) == []
    # forged: a higher version whose signature does not match
    forged = dataclasses.replace(
        v2.updated(OWNER, 2.0, remove=[ADMIN.member_id]), signature=b"\0" * 64
    )
    _only_rejects(
        node.on_announcement(ADMIN.member_id, MembershipAnnounce(forged), 2.0), "bad_signature"
    )
    # unauthorised: signed by a member without the right to change the membership
    unsigned = dataclasses.replace(
        v2.updated(OWNER, 2.0, remove=[ADMIN.member_id]), signer=EXEC.member_id, signature=b""
    )
    by_executor = dataclasses.replace(unsigned, signature=EXEC.sign(unsigned_bytes(unsigned)))
    _only_rejects(
        node.on_announcement(ADMIN.member_id, MembershipAnnounce(by_executor), 2.0),
        "unauthorized",
    )
    assert _state(node) == before


def test_a_spec_for_another_colony_is_refused() -> None:
    node = _node()
    before = _state(node)
    other = MembershipSet.genesis(STRANGER, "elsewhere", 0.0)
    spec = _spec(OWNER, other.colony_id)
    _only_rejects(node.submit(spec, 1.0), "wrong_colony")
    _only_rejects(
        node.on_announcement(ADMIN.member_id, SpecAnnounce(spec, (OWNER.member_id,)), 1.0),
        "wrong_colony",
    )
    assert _state(node) == before


def test_a_spec_stored_in_another_member_s_name_is_refused() -> None:
    # The envelope proves who sent the StoreSpec; a submitter field naming someone else
    # would let the sender act as them (cancel, receive logs).
    node = _node()
    before = _state(node)
    forged = _spec(EXEC)
    _only_rejects(
        node.on_message(
            ADMIN.member_id,
            placed(StoreSpec(forged, (OWNER.member_id,), 1), OWNER, ADMIN, EXEC, OTHER, STRANGER),
            2.0,
        ),
        "not_submitter",
    )
    assert _state(node) == before
