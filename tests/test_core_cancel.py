"""Cancelling a running process: the submitter's (or an admin's) ``cancel`` ballot ends
a live lease, the holder hears so at once and stops its run, and a result that a keeper
already accepted still wins (docs/PROTOCOL.md, *Who may send what*)."""

from __future__ import annotations

from typing import TypeVar

from core_effects import placed
from core_effects import sent as _sent

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import (
    Accept,
    Accepted,
    Outcome,
    Prepare,
    Promise,
    Refuse,
    Renew,
    RenewAck,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

M = TypeVar("M")
OWNER, EXEC, EXEC2, SUBMITTER, OTHER = (Identity.from_seed(bytes([40 + i]) * 32) for i in range(5))
GENESIS = MembershipSet.genesis(
    OWNER,
    "cancel",
    0.0,
    members=[
        Member(EXEC.member_id, "executor"),
        Member(EXEC2.member_id, "executor"),
        Member(SUBMITTER.member_id, "user"),
        Member(OTHER.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3)
KEEPERS = (OWNER.member_id, EXEC.member_id, EXEC2.member_id)
TAG = config_tag(KEEPERS)
RESULT = Outcome("successful", output=(42,), executor=EXEC.member_id, run_epoch=1)
CANCELLED = Outcome("failed", errors=("cancelled by x",), executor=SUBMITTER.member_id, run_epoch=2)


def _running() -> tuple[ColonyNode, SignedSpec]:
    """The owner keeps a process that EXEC claimed (epoch 1) and runs."""
    spec = SignedSpec.create(FunctionSpec("sleep"), SUBMITTER, GENESIS.colony_id, 1.0, b"c")
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    node.on_message(SUBMITTER.member_id, placed(StoreSpec(spec, KEEPERS, 1), SUBMITTER, OWNER), 1.0)
    effects = node.on_message(EXEC.member_id, Prepare(spec.pid, 1, "claim", TAG), 2.0)
    assert _sent(effects, Promise)
    return node, spec


def test_the_submitter_s_cancel_ends_a_live_lease_and_tells_its_holder() -> None:
    node, spec = _running()
    effects = node.on_message(SUBMITTER.member_id, Prepare(spec.pid, 2, "cancel", TAG), 3.0)
    promises = _sent(effects, Promise)
    assert [(to, p.epoch) for to, p in promises] == [(SUBMITTER.member_id, 2)]
    told = _sent(effects, RenewAck)
    assert told == [(EXEC.member_id, RenewAck(spec.pid, 1, False, 0.0))]
    # the holder's renewal and its late result are refused from now on
    renew = node.on_message(EXEC.member_id, Renew(spec.pid, 1, TAG), 3.5)
    assert [r.ok for _, r in _sent(renew, RenewAck)] == [False]
    late = node.on_message(EXEC.member_id, Accept(spec.pid, 1, RESULT, TAG), 3.6)
    assert [a.ok for _, a in _sent(late, Accepted)] == [False]
    done = node.on_message(SUBMITTER.member_id, Accept(spec.pid, 2, CANCELLED, TAG), 3.7)
    assert [a.ok for _, a in _sent(done, Accepted)] == [True]


def test_a_result_accepted_before_the_cancel_is_what_the_cancel_finishes() -> None:
    node, spec = _running()
    node.on_message(EXEC.member_id, Accept(spec.pid, 1, RESULT, TAG), 3.0)
    effects = node.on_message(SUBMITTER.member_id, Prepare(spec.pid, 2, "cancel", TAG), 3.5)
    ((_, promise),) = _sent(effects, Promise)
    assert promise.accepted == RESULT


def test_only_the_submitter_or_an_admin_cancels_and_a_plain_fail_waits_for_the_lease() -> None:
    node, spec = _running()
    for sender in (OTHER.member_id, EXEC2.member_id):  # a user; a fellow keeper
        effects = node.on_message(sender, Prepare(spec.pid, 5, "cancel", TAG), 3.0)
        assert [e.code for e in effects if isinstance(e, fx.Reject)] == ["ballot_sender"]
        assert not _sent(effects, Promise) and not _sent(effects, RenewAck)
    fail = node.on_message(EXEC2.member_id, Prepare(spec.pid, 5, "fail", TAG), 3.0)
    assert [r.reason for _, r in _sent(fail, Refuse)] == ["leased"]
    # the owner (an admin) may: its own node promises (delivered to itself, not sent)
    admin = node.on_message(OWNER.member_id, Prepare(spec.pid, 6, "cancel", TAG), 3.0)
    assert [to for to, _ in _sent(admin, RenewAck)] == [EXEC.member_id]
    rec = node.record(spec.pid)
    assert rec is not None and (rec.promised, rec.holder) == (6, OWNER.member_id)


def test_the_holder_stops_its_run_when_a_majority_says_its_lease_is_over() -> None:
    spec = SignedSpec.create(FunctionSpec("sleep"), SUBMITTER, GENESIS.colony_id, 1.0, b"h")
    executor = ColonyNode(EXEC.member_id, GENESIS, PARAMS, sign=EXEC.sign)
    executor.start(0.0)
    executor.proposer.begin(spec, KEEPERS, 1, "claim")
    for k in KEEPERS:
        executor.on_message(k, Promise(spec.pid, 1, 10.0, 0, None, 0, ()), 1.0)
    over = RenewAck(spec.pid, 1, False, 0.0)
    assert not [
        e for e in executor.on_message(KEEPERS[0], over, 2.0) if isinstance(e, fx.CancelExecution)
    ]
    stopped = executor.on_message(KEEPERS[1], over, 2.0)
    assert [e.reason for e in stopped if isinstance(e, fx.CancelExecution)] == ["lease lost"]


def test_a_node_cancelling_what_it_runs_stops_its_own_run_first() -> None:
    spec = SignedSpec.create(FunctionSpec("sleep"), EXEC, GENESIS.colony_id, 1.0, b"own")
    node = ColonyNode(EXEC.member_id, GENESIS, PARAMS, sign=EXEC.sign)
    node.start(0.0)
    node.proposer.begin(spec, KEEPERS, 1, "claim")
    for k in KEEPERS:
        node.on_message(k, Promise(spec.pid, 1, 10.0, 0, None, 0, ()), 1.0)
    effects = node.cancel(spec, "cancelled by me", 2.0)
    assert [e.reason for e in effects if isinstance(e, fx.CancelExecution)] == ["cancelled"]
    prepares = [p for _, p in _sent(effects, Prepare)]
    assert {p.purpose for p in prepares} == {"cancel"}
