"""Repair under churn (issue "The protocol under heavy churn"), each found by the
simulator's churn scenarios: a fellow keeper holding an older configuration of the same
keeper set, or of another set it was in, gets the newer one; a fellow that refuses a
keeper's ballot as "unknown" gets the record at once; and while one of a record's
keepers is revoked, executors' claims wait, so that they do not duel with the ballot
that moves the record to current members."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from core_effects import placed
from core_effects import sent as _sent

from colonyp2p.core.messages import Install, Prepare, Promise, Query, Refuse, Status, StoreSpec
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

M = TypeVar("M")
OWNER, A, B, C, D, USER = (Identity.from_seed(bytes([70 + i]) * 32) for i in range(6))
GENESIS = MembershipSet.genesis(
    OWNER,
    "churn",
    0.0,
    members=[
        Member(A.member_id, "executor"),
        Member(B.member_id, "executor"),
        Member(C.member_id, "executor"),
        Member(D.member_id, "executor"),
        Member(USER.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3)
KEEPERS = (OWNER.member_id, A.member_id, B.member_id)
TAG = config_tag(KEEPERS)


def _keeper(version: int = 1) -> tuple[ColonyNode, SignedSpec]:
    spec = SignedSpec.create(FunctionSpec("work"), USER, GENESIS.colony_id, 1.0, b"churn")
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    node.on_message(USER.member_id, placed(StoreSpec(spec, KEEPERS, version), USER, OWNER), 1.0)
    assert node.record(spec.pid) is not None
    return node, spec


def test_a_fellow_with_an_older_configuration_of_the_same_keepers_gets_ours() -> None:
    node, spec = _keeper(version=7)
    older = Status(spec.pid, True, "waiting", 3, config=TAG, keepers=KEEPERS, config_version=2)
    effects = node.on_message(A.member_id, older, 2.0)
    ((to, install),) = _sent(effects, Install)
    assert to == A.member_id and install.transfer.config_version == 7
    # a fellow of the same configuration is a replica: nothing to send
    same = dataclasses.replace(older, config_version=7)
    assert not _sent(node.on_message(B.member_id, same, 2.0), Install)


def test_a_fellow_with_an_older_configuration_of_another_keeper_set_gets_ours() -> None:
    # A was a keeper of the record in an earlier set (with C and D) and missed the moves
    # that brought it here: it answers about that set's record. Left out, it never
    # promised in ours, and with two of five keepers revoked the three left were never
    # a majority again (churn-small seed 82).
    node, spec = _keeper(version=7)
    earlier = (A.member_id, C.member_id, D.member_id)
    older = Status(
        spec.pid, True, "waiting", 4, config=config_tag(earlier), keepers=earlier, config_version=2
    )
    ((to, install),) = _sent(node.on_message(A.member_id, older, 2.0), Install)
    assert to == A.member_id and install.transfer.config_version == 7
    # an answer about another set's record from a member that is no keeper of ours gets
    # nothing, and neither does one about a newer configuration
    assert not _sent(node.on_message(C.member_id, older, 2.0), Install)
    newer = dataclasses.replace(older, config_version=9)
    assert not _sent(node.on_message(A.member_id, newer, 2.0), Install)


def test_a_fellow_refusing_a_keeper_s_ballot_as_unknown_gets_the_record_at_once() -> None:
    node, spec = _keeper()
    rec = node.record(spec.pid)
    assert rec is not None
    node.proposer.begin(spec, KEEPERS, rec.promised + 1, "fail", reason="test")
    effects = node.on_message(A.member_id, Refuse(spec.pid, rec.promised + 1, "unknown"), 2.0)
    assert [to for to, _ in _sent(effects, Install)] == [A.member_id]


def test_claims_wait_while_a_keeper_is_revoked() -> None:
    node, spec = _keeper()
    without_b = GENESIS.updated(OWNER, 1.5, remove=[B.member_id])
    node.adopt_membership(without_b, 1.5)
    effects = node.on_message(C.member_id, Prepare(spec.pid, 1, "claim", TAG), 2.0)
    assert [r.reason for _, r in _sent(effects, Refuse)] == ["not_ready"]
    # the keepers' own ballot (the move) is not held up
    move = node.on_message(A.member_id, Prepare(spec.pid, 2, "move", TAG), 2.1)
    assert _sent(move, Promise)
    # and a record whose keepers are all current members is claimed as before
    other, spec2 = _keeper()
    claim = other.on_message(C.member_id, Prepare(spec2.pid, 1, "claim", TAG), 2.0)
    assert _sent(claim, Promise)
    assert not _sent(claim, Query)


def test_a_keeper_s_ballot_cut_off_by_another_s_is_retried_once_then_waits() -> None:
    # Keepers whose ballots cut each other off used to start the next at once, for ever
    # (the fault harness: ten daemons' keepers at epoch 48 of one process, none deciding).
    node, spec = _keeper()
    rec = node.record(spec.pid)
    assert rec is not None
    epoch = rec.promised + 1
    node.proposer.begin(spec, KEEPERS, epoch, "fail", reason="test")
    node.on_message(A.member_id, Refuse(spec.pid, epoch, "stale_epoch", promised=5), 2.0)
    effects = node.on_message(B.member_id, Refuse(spec.pid, epoch, "stale_epoch", promised=5), 2.0)
    # a majority refused: one retry, at once, above the epoch they promised
    assert {p.epoch for _, p in _sent(effects, Prepare)} == {6}
    node.on_message(A.member_id, Refuse(spec.pid, 6, "stale_epoch", promised=9), 2.1)
    effects = node.on_message(B.member_id, Refuse(spec.pid, 6, "stale_epoch", promised=9), 2.1)
    # cut off again: no third ballot now; the keeper's next turn comes a lease later
    assert not _sent(effects, Prepare)
    assert not node.proposer.busy(spec.pid)
