"""Promises of the proposer (core/proposer.py), the executor role (core/executor.py)
and the node's handling of lost peers (core/node.py) that mutation testing found
unchecked (bench/mutation_score.py, bench/results/MUTATION.md, "Run of 2026-12-08, the
rest of the core"): each test fails with a mutant that survived the other tests."""

from __future__ import annotations

import random

from core_effects import certificate, observed, placed, sent

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import (
    Accept,
    AdAnnounce,
    Decide,
    Outcome,
    Prepare,
    Promise,
    Refuse,
    Release,
    SpecAnnounce,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(99)
OWNER, K1, K2, K3, X, USER, STRANGER, Y = (Identity.from_seed(_rng.randbytes(32)) for _ in range(8))
GENESIS = MembershipSet.genesis(
    OWNER,
    "mutants-roles",
    0.0,
    members=[
        *(Member(i.member_id, "executor") for i in (K1, K2, K3, X, Y)),
        Member(USER.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3)
KEEPERS = (K1.member_id, K2.member_id, K3.member_id)
NEW = (K2.member_id, K3.member_id, OWNER.member_id)
AD = ExecutorAd.create(
    X, 0.0, executortype="edge", name="x", functions=("work",), hardware=Hardware()
)
Y_AD = ExecutorAd.create(
    Y, 0.0, executortype="edge", name="y", functions=("work",), hardware=Hardware()
)
SPEC = SignedSpec.create(FunctionSpec("work"), USER, GENESIS.colony_id, 1.0, b"roles")
PID = SPEC.pid


def _executor() -> ColonyNode:
    node = ColonyNode(X.member_id, GENESIS, PARAMS, ad=AD, sign=X.sign)
    node.start(0.0)
    return node


def _prepares(effects: list[fx.Effect]) -> list[tuple[str, Prepare]]:
    return sent(effects, Prepare)


def _claiming(node: ColonyNode, now: float = 1.0, round_: int = 0) -> list[fx.Effect]:
    """``node`` hears K1 announce SPEC at KEEPERS: it claims it at once (the only
    executor it knows)."""
    return node.on_announcement(K1.member_id, SpecAnnounce(SPEC, KEEPERS, round_), now)


def _promise(epoch: int = 1) -> Promise:
    return Promise(PID, epoch, PARAMS.lease_seconds, 0, None, 0, (), config_version=1)


def test_a_claim_refused_as_moved_is_claimed_again_where_the_record_went_from_epoch_one() -> None:
    node = _executor()
    assert {to for to, _ in _prepares(_claiming(node))} == set(KEEPERS)
    effects = node.on_message(K1.member_id, Refuse(PID, 1, "moved", moved_to=NEW), 2.0)
    claims = _prepares(effects)
    assert sorted(to for to, _ in claims) == sorted(NEW)
    assert {p for _, p in claims} == {Prepare(PID, 1, "claim", config_tag(NEW))}


def test_a_claim_refused_as_moved_nowhere_ends_and_the_next_announcement_is_claimed() -> None:
    node = _executor()
    _claiming(node)
    effects = node.on_message(K1.member_id, Refuse(PID, 1, "moved", moved_to=()), 2.0)
    assert _prepares(effects) == [] and not node.proposer.busy(PID)
    again = _claiming(node, 3.0, round_=1)
    assert {to for to, _ in _prepares(again)} == set(KEEPERS)


def test_a_cancel_ballot_proposes_a_failure_in_the_canceller_s_name_and_epoch() -> None:
    node = _executor()
    effects = node.cancel(SPEC, "no longer needed", 1.0)
    keepers = node.keepers_of(PID)
    assert {to for to, _ in _prepares(effects)} == set(keepers)
    epoch = _prepares(effects)[0][1].epoch
    effects = []
    for k in keepers[:2]:
        effects += node.on_message(k, _promise(epoch), 1.1)
    values = {a.value for _, a in sent(effects, Accept)}
    assert values == {
        Outcome("failed", errors=("no longer needed",), executor=X.member_id, run_epoch=epoch)
    }


def test_cancelling_its_own_run_stops_it_and_releases_its_lease() -> None:
    node = _executor()
    _claiming(node)
    effects: list[fx.Effect] = []
    for k in KEEPERS[:2]:
        effects += node.on_message(k, _promise(), 1.1)
    assert [e.epoch for e in effects if isinstance(e, fx.StartExecution)] == [1]
    effects = node.cancel(SPEC, "stop", 2.0)
    assert fx.CancelExecution(PID, 1, "cancelled") in effects
    assert observed(effects, "lease_lost") == [fx.Observe("lease_lost", PID, {"epoch": 1})]
    assert sorted(sent(effects, Release)) == sorted((k, Release(PID, 1)) for k in KEEPERS[:2])
    # then the cancel's own ballot
    assert {p.purpose for _, p in _prepares(effects)} == {"cancel"}


def test_a_lost_peer_is_reported_and_passed_over_but_never_itself_nor_a_stranger() -> None:
    node = _executor()
    effects = node.on_peer_lost(K1.member_id, 1.0)
    assert observed(effects, "peer_lost") == [fx.Observe("peer_lost", "", {"member": K1.member_id})]
    assert K1.member_id in node.lost
    for who in (X.member_id, STRANGER.member_id):
        assert not observed(node.on_peer_lost(who, 2.0), "peer_lost")
        assert who not in node.lost


REAL = Outcome("successful", output=(1,), executor=K2.member_id, run_epoch=3)


def _second_in_line() -> tuple[ColonyNode, SignedSpec, tuple[str, ...]]:
    """X, knowing Y's ad, and a process Y ranks better for, announced by its keepers: X
    waits a claim slot before it claims."""
    for n in range(64):
        node = _executor()
        node.on_announcement(Y.member_id, AdAnnounce(Y_AD), 0.0)
        spec = SignedSpec.create(FunctionSpec("work"), USER, GENESIS.colony_id, 1.0, bytes([n]))
        keepers = node.keepers_for(spec.pid)
        effects = node.on_announcement(keepers[0], SpecAnnounce(spec, keepers, 0), 1.0)
        if not _prepares(effects) and spec.pid in node.executor.candidates:
            return node, spec, keepers
    raise AssertionError("no nonce ranks Y first")


def test_a_process_its_keepers_decided_is_not_claimed_a_stranger_s_word_changes_nothing() -> None:
    later = 1.0 + 10 * PARAMS.claim_slot
    node, spec, keepers = _second_in_line()
    node.on_message(keepers[1], Decide(spec.pid, 3, REAL, config_tag(keepers)), 1.01)
    assert _prepares(node.on_timer(("claim",), later)) == []
    node, spec, keepers = _second_in_line()
    outsider = next(
        m for m in (OWNER.member_id, K1.member_id, K2.member_id, K3.member_id) if m not in keepers
    )
    node.on_message(outsider, Decide(spec.pid, 3, REAL, config_tag(keepers)), 1.01)
    assert {to for to, _ in _prepares(node.on_timer(("claim",), later))} == set(keepers)


def test_a_keeper_s_ballot_refused_as_decided_decides_its_record_with_the_certificate() -> None:
    node = ColonyNode(K1.member_id, GENESIS, PARAMS, sign=K1.sign)
    node.start(0.0)
    node.on_message(USER.member_id, placed(StoreSpec(SPEC, KEEPERS, 1), USER), 1.0)
    assert node.record(PID) is not None
    effects = node.cancel(SPEC, "stop", 2.0)
    epoch = _prepares(effects)[0][1].epoch
    cert = certificate(GENESIS.colony_id, PID, KEEPERS, 1, 3, REAL, K2, K3)
    refusal = Refuse(PID, epoch, "decided", decided=REAL, decided_epoch=3, certificate=cert)
    effects = node.on_message(K2.member_id, refusal, 2.1)
    rec = node.record(PID)
    assert rec is not None and rec.decided == REAL and rec.certificate == cert
    assert rec.decided_epoch == 3
    assert [(o.data["outcome"], o.data["epoch"]) for o in observed(effects, "result")] == [
        (REAL, 3)
    ]


def test_a_keeper_s_ballot_refused_with_a_certified_move_learns_the_move() -> None:
    node = ColonyNode(K1.member_id, GENESIS, PARAMS, sign=K1.sign)
    node.start(0.0)
    node.on_message(USER.member_id, placed(StoreSpec(SPEC, KEEPERS, 1), USER), 1.0)
    epoch = _prepares(node.cancel(SPEC, "stop", 2.0))[0][1].epoch
    move = Outcome("moved", executor=K2.member_id, run_epoch=3, moved_to=NEW, moved_version=2)
    cert = certificate(GENESIS.colony_id, PID, KEEPERS, 1, 3, move, K2, K3)
    refusal = Refuse(PID, epoch, "decided", decided=move, decided_epoch=3, certificate=cert)
    node.on_message(K2.member_id, refusal, 2.1)
    rec = node.record(PID)
    assert rec is not None and rec.decided == move
    assert node.keepers_of(PID) == NEW


def test_a_keeper_that_missed_a_move_takes_the_outcome_chosen_where_it_went_with_the_moves() -> (
    None
):
    node = ColonyNode(K1.member_id, GENESIS, PARAMS, sign=K1.sign)
    node.start(0.0)
    node.on_message(USER.member_id, placed(StoreSpec(SPEC, KEEPERS, 1), USER), 1.0)
    epoch = _prepares(node.cancel(SPEC, "stop", 2.0))[0][1].epoch
    move = Outcome("moved", executor=K2.member_id, run_epoch=2, moved_to=NEW, moved_version=2)
    moves = (certificate(GENESIS.colony_id, PID, KEEPERS, 1, 2, move, K2, K3),)
    there = certificate(GENESIS.colony_id, PID, NEW, 2, 3, REAL, K3, OWNER)
    refusal = Refuse(
        PID, epoch, "decided", decided=REAL, decided_epoch=3, certificate=there, moves=moves
    )
    node.on_message(K2.member_id, refusal, 2.1)
    rec = node.record(PID)
    assert rec is not None and rec.decided == REAL
    assert rec.certificate == there and rec.moves == moves
