"""Authenticated is not authorized: each attack a member with a valid key made at commit
a39bfc1 (issue "Zero trust inside the colony"), replayed against the core. M is a member
of role ``user`` without a daemon that speaks the protocol with its own key; every one of
these changed state on the old code. See docs/PROTOCOL.md, *Who may send what*."""

from __future__ import annotations

import dataclasses
import random

from core_effects import certificate, placed

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import (
    Accept,
    Decide,
    Install,
    Outcome,
    ParentOutcomes,
    ParentRef,
    Prepare,
    Promise,
    Purpose,
    Query,
    Refuse,
    SpecAnnounce,
    Status,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.core.records import KeeperRecord
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import Conditions, FunctionSpec

_rng = random.Random(11)
OWNER, EXEC, EXEC2, EXEC3, SUBMITTER, M = (Identity.from_seed(_rng.randbytes(32)) for _ in range(6))
GENESIS = MembershipSet.genesis(
    OWNER,
    "authorization",
    0.0,
    members=[
        Member(EXEC.member_id, "executor"),
        Member(EXEC2.member_id, "executor"),
        Member(EXEC3.member_id, "executor"),
        Member(SUBMITTER.member_id, "user"),
        Member(M.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3)
CPU_AD = ExecutorAd.create(EXEC, 0.0, executortype="cpu", name="cpu-1")
_RING = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
FORGED = Outcome("successful", output=("M was here",), executor=M.member_id, run_epoch=1)


def _spec(
    submitter: Identity = SUBMITTER,
    executortype: str = "",
    parents: tuple[str, ...] = (),
    nonce: bytes = b"n",
) -> SignedSpec:
    """A spec the owner keeps (three keepers among four members that may keep)."""
    spec = FunctionSpec("work", conditions=Conditions(executortype=executortype))
    for i in range(100):
        signed = SignedSpec.create(
            spec, submitter, GENESIS.colony_id, 1.0, nonce + bytes([i]), parents
        )
        if OWNER.member_id in _RING.keepers_for(signed.pid):
            return signed
    raise AssertionError("no nonce puts the spec at the owner")


def _node(me: Identity = OWNER) -> ColonyNode:
    node = ColonyNode(me.member_id, GENESIS, PARAMS, sign=me.sign)
    node.start(0.0)
    node.learn_ad(CPU_AD)
    return node


def _keeper_with(spec: SignedSpec, parents: tuple[ParentRef, ...] = ()) -> ColonyNode:
    """The owner's node keeping ``spec``, stored by its submitter."""
    node = _node()
    keepers = node.keepers_for(spec.pid)
    assert OWNER.member_id in keepers
    node.on_message(
        spec.submitter,
        placed(StoreSpec(spec, keepers, 1, parents), OWNER, EXEC, EXEC2, EXEC3, SUBMITTER, M),
        2.0,
    )
    assert node.record(spec.pid) is not None
    return node


def _rejects(effects: list[fx.Effect]) -> list[str]:
    return [e.code for e in effects if isinstance(e, fx.Reject)]


def _sent(effects: list[fx.Effect], kind: type) -> list[fx.Send]:
    return [e for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, kind)]


def _results(effects: list[fx.Effect]) -> list[fx.Observe]:
    return [e for e in effects if isinstance(e, fx.Observe) and e.kind == "result"]


# --- Install ---------------------------------------------------------------------------


def test_a_user_s_install_of_a_forged_outcome_is_refused() -> None:
    spec = _spec()
    node = _keeper_with(spec)
    rec = node.record(spec.pid)
    assert rec is not None
    before = rec
    forged = dataclasses.replace(
        rec.transfer(rec.keepers, rec.config_version + 1, rec.promised), decided=FORGED
    )
    effects = node.on_message(M.member_id, Install(forged), 3.0)
    assert _rejects(effects) == ["install_sender"]
    assert node.record(spec.pid) == before
    assert not [e for e in effects if isinstance(e, fx.Persist)]


def test_a_planted_spec_with_a_bad_signature_enters_nowhere() -> None:
    # M plants a spec naming the owner as its submitter, with a zero signature.
    planted = dataclasses.replace(_spec(OWNER, nonce=b"planted"), signature=b"\0" * 64)
    keepers = _RING.keepers_for(planted.pid)
    me = next(i for i in (OWNER, EXEC, EXEC2, EXEC3) if i.member_id == keepers[0])
    node = _node(me)
    record = KeeperRecord(planted, planted.pid, keepers, 1)
    # handed off by a member that may keep records: still refused for the spec
    install = Install(record.transfer(keepers, 1, 0))
    assert _rejects(node.on_message(keepers[1], install, 2.0)) == ["bad_spec"]
    # stored by "its submitter" (the envelope says the owner sent it)
    store = placed(StoreSpec(planted, keepers, 1), OWNER, EXEC, EXEC2, EXEC3, SUBMITTER, M)
    assert _rejects(node.on_message(OWNER.member_id, store, 2.0)) == ["bad_spec"]
    # announced on gossip and offered directly: no executor considers it
    announce = SpecAnnounce(planted, keepers)
    assert _rejects(node.on_announcement(OWNER.member_id, announce, 2.0)) == ["bad_spec"]
    assert node.record(planted.pid) is None
    assert planted.pid not in node.executor.candidates
    # and a node does not submit one either
    assert _rejects(node.submit(planted, 2.0)) == ["bad_spec"]


def _signers(keepers: tuple[str, ...]) -> list[Identity]:
    return [i for i in (OWNER, EXEC, EXEC2, EXEC3, SUBMITTER, M) if i.member_id in keepers]


def test_an_install_never_replaces_a_decided_outcome_with_another() -> None:
    spec = _spec()
    node = _keeper_with(spec)
    real = Outcome("successful", output=(1,), executor=EXEC.member_id, run_epoch=1)
    keepers = node.keepers_of(spec.pid)
    fellow = next(k for k in keepers if k != OWNER.member_id)
    cert = certificate(GENESIS.colony_id, spec.pid, keepers, 1, 1, real, *_signers(keepers))
    node.on_message(fellow, Decide(spec.pid, 1, real, config_tag(keepers), cert), 3.0)
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided == real
    forged = dataclasses.replace(
        rec.transfer(rec.keepers, rec.config_version + 1, rec.promised), decided=FORGED
    )
    assert _rejects(node.on_message(fellow, Install(forged), 4.0)) == ["install_decided"]
    assert node.record(spec.pid) == rec


def test_an_executor_that_keeps_no_copy_cannot_replace_a_waiting_record() -> None:
    """The attack of the issue by a member that may keep records (an executor device): an
    Install of a newer configuration with a forged outcome, sent to the record's keepers."""
    spec = _spec()
    node = _keeper_with(spec)
    rec = node.record(spec.pid)
    assert rec is not None
    outsider = next(i.member_id for i in (EXEC, EXEC2, EXEC3) if i.member_id not in rec.keepers)
    asked: list[set[str]] = []
    for keepers in (rec.keepers, (*rec.keepers[:-1], outsider)):
        forged = dataclasses.replace(
            rec.transfer(keepers, rec.config_version + 1, rec.promised), decided=FORGED
        )
        effects = node.on_message(outsider, Install(forged), 3.0)
        assert _rejects(effects) == ["install_sender"]
        assert node.record(spec.pid) == rec
        assert not [e for e in effects if isinstance(e, fx.Persist)]
        asked.append({e.to for e in _sent(effects, Query)})
    # the keeper asked its fellows where the record is, once per query_after
    assert asked == [set(rec.keepers) - {OWNER.member_id}, set()]


def test_a_hand_off_from_a_set_the_record_moved_to_is_taken_once_its_keepers_said_so() -> None:
    spec = _spec()
    node = _keeper_with(spec)
    rec = node.record(spec.pid)
    assert rec is not None
    outsider = next(i.member_id for i in (EXEC, EXEC2, EXEC3) if i.member_id not in rec.keepers)
    fellow = next(k for k in rec.keepers if k != OWNER.member_id)
    newer = (OWNER.member_id, outsider, fellow)
    handoff = Install(rec.transfer(newer, rec.config_version + 2, rec.promised))
    effects = node.on_message(outsider, handoff, 3.0)
    assert _rejects(effects) == ["install_sender"]
    assert {e.to for e in _sent(effects, Query)} == set(rec.keepers) - {OWNER.member_id}
    # a fellow keeper answers: the record moved (through a set this node missed)
    moved = Outcome(
        "moved",
        executor=fellow,
        run_epoch=rec.promised + 1,
        moved_to=(
            fellow,
            outsider,
            EXEC3.member_id if outsider != EXEC3.member_id else EXEC.member_id,
        ),
        moved_version=rec.config_version + 1,
    )
    status = Status(
        spec.pid,
        True,
        "moved",
        rec.promised + 1,
        moved,
        rec.promised + 1,
        moved_to=moved.moved_to,
        config=config_tag(rec.keepers),
        keepers=rec.keepers,
    )
    node.on_message(fellow, status, 3.5)
    # the hand-off must also prove itself (docs/PROTOCOL.md, Provenance): the two moves,
    # each certified by a majority of the set it left
    first = certificate(
        GENESIS.colony_id,
        spec.pid,
        rec.keepers,
        rec.config_version,
        rec.promised + 1,
        moved,
        *_signers(rec.keepers),
    )
    onward = Outcome(
        "moved", executor=fellow, run_epoch=1, moved_to=newer, moved_version=rec.config_version + 2
    )
    second = certificate(
        GENESIS.colony_id,
        spec.pid,
        moved.moved_to,
        moved.moved_version,
        1,
        onward,
        *_signers(moved.moved_to),
    )
    proven = Install(dataclasses.replace(handoff.transfer, moves=(first, second)))
    assert _rejects(node.on_message(outsider, handoff, 4.0)) == ["install_proof"]
    assert not _rejects(node.on_message(outsider, proven, 4.0))
    taken = node.record(spec.pid)
    assert taken is not None and taken.keepers == newer


# --- Decide to the submitter -------------------------------------------------------------


def test_the_submitter_takes_an_outcome_only_from_the_record_s_keepers() -> None:
    spec = _spec()
    client = _node(SUBMITTER)
    client.submit(spec, 1.0)
    keepers = client.keepers_of(spec.pid)
    # M's Decide: no result, and the client asks the keepers instead
    effects = client.on_message(M.member_id, Decide(spec.pid, 1, FORGED), 2.0)
    assert not _results(effects)
    asked = {e.to for e in _sent(effects, Query)}
    assert asked == set(keepers) - {SUBMITTER.member_id}
    # the keepers' answer is the result, with its certificate (docs/PROTOCOL.md,
    # Provenance): without one, a keeper's word alone is not
    real = Outcome("successful", output=(42,), executor=EXEC.member_id, run_epoch=1)
    status = Status(spec.pid, True, "successful", 1, real, 1, keepers=keepers)
    assert not _results(client.on_message(keepers[0], status, 3.0))
    cert = certificate(GENESIS.colony_id, spec.pid, keepers, 1, 1, real, *_signers(keepers))
    certified = dataclasses.replace(status, certificate=cert)
    results = _results(client.on_message(keepers[0], certified, 3.0))
    assert [r.data["outcome"] for r in results] == [real]
    # and a forged Status from M afterwards changes nothing (nor before: M is no keeper)
    forged = Status(spec.pid, True, "successful", 1, FORGED, 1, keepers=(M.member_id,))
    assert not _results(client.on_message(M.member_id, forged, 4.0))
    assert client.keepers_of(spec.pid) == keepers
    # a Decide about a process this node did not submit makes it ask nobody
    other = _spec(nonce=b"not mine")
    effects = client.on_message(M.member_id, Decide(other.pid, 1, FORGED), 5.0)
    assert not _results(effects) and not _sent(effects, Query)


def test_a_forged_status_does_not_redirect_where_a_record_is() -> None:
    spec = _spec()
    node = _node(SUBMITTER)
    forged = Status(spec.pid, True, "successful", 1, FORGED, 1, keepers=(M.member_id,))
    node.on_message(M.member_id, forged, 2.0)
    assert M.member_id not in node.keepers_of(spec.pid)


def test_an_executor_s_status_does_not_redirect_the_submitter_s_own_process() -> None:
    """A member that may keep records claims to keep the submitter's process, then tells
    it a forged outcome as its "keeper": the submitter placed the record itself and
    learns where it went only from the keepers it knows."""
    client = _node(SUBMITTER)
    spec = _spec()
    client.submit(spec, 1.0)
    placed = client.keepers_of(spec.pid)
    liar = next(i for i in (EXEC, EXEC2, EXEC3) if i.member_id not in placed)
    value = dataclasses.replace(FORGED, executor=liar.member_id)
    redirect = Status(spec.pid, True, "running", 1, None, 0, keepers=(liar.member_id,))
    client.on_message(liar.member_id, redirect, 2.0)
    assert client.keepers_of(spec.pid) == placed
    forged = Status(spec.pid, True, "successful", 1, value, 1, keepers=(liar.member_id,))
    assert not _results(client.on_message(liar.member_id, forged, 2.5))


# --- ballots -----------------------------------------------------------------------------


def test_a_user_s_claim_is_refused_and_its_accept_and_decide_change_nothing() -> None:
    spec = _spec(executortype="gpu")
    node = _keeper_with(spec)
    tag = config_tag(node.keepers_of(spec.pid))
    effects = node.on_message(M.member_id, Prepare(spec.pid, 1, "claim", tag), 3.0)
    assert _rejects(effects) == ["claim_role"]
    assert not _sent(effects, Promise)
    node.on_message(M.member_id, Accept(spec.pid, 1, FORGED, tag), 3.1)
    node.on_message(M.member_id, Decide(spec.pid, 1, FORGED, tag), 3.2)
    rec = node.record(spec.pid)
    assert rec is not None and rec.accepted is None and rec.decided is None and rec.holder == ""


def test_a_claim_from_an_executor_whose_ad_does_not_match_is_refused() -> None:
    spec = _spec(executortype="gpu")
    node = _keeper_with(spec)
    tag = config_tag(node.keepers_of(spec.pid))
    effects = node.on_message(EXEC.member_id, Prepare(spec.pid, 1, "claim", tag), 3.0)
    assert _rejects(effects) == ["claim_ad"]
    assert [type(e.msg) for e in effects if isinstance(e, fx.Send)] == [Refuse]
    # an executor whose ad is not known here yet may claim (ads gossip; see the docs)
    effects = node.on_message(EXEC2.member_id, Prepare(spec.pid, 1, "claim", tag), 3.0)
    assert not _rejects(effects) and _sent(effects, Promise)


def test_fail_recover_and_move_ballots_only_from_keepers_or_a_cancelling_submitter() -> None:
    spec = _spec(submitter=M)  # M's own spec: M may cancel it
    other = _spec(nonce=b"other")
    node = _keeper_with(spec)
    node.on_message(
        SUBMITTER.member_id,
        placed(
            StoreSpec(other, node.keepers_for(other.pid), 1),
            OWNER,
            EXEC,
            EXEC2,
            EXEC3,
            SUBMITTER,
            M,
        ),
        2.0,
    )
    tag = config_tag(node.keepers_of(other.pid))
    purposes: tuple[Purpose, ...] = ("fail", "recover", "move")
    for epoch, purpose in enumerate(purposes, start=1):
        effects = node.on_message(M.member_id, Prepare(other.pid, epoch, purpose, tag), 3.0)
        assert _rejects(effects) == ["ballot_sender"], purpose
    rec = node.record(other.pid)
    assert rec is not None and rec.promised == 0
    # M cancels its own process: allowed, but only a failure may be decided by it
    tag = config_tag(node.keepers_of(spec.pid))
    effects = node.on_message(M.member_id, Prepare(spec.pid, 1, "fail", tag), 3.0)
    assert not _rejects(effects) and _sent(effects, Promise)
    effects = node.on_message(M.member_id, Accept(spec.pid, 1, FORGED, tag), 3.1)
    assert _rejects(effects) == ["bad_value"]
    cancelled = Outcome("failed", errors=("cancelled",), executor=M.member_id, run_epoch=1)
    effects = node.on_message(M.member_id, Accept(spec.pid, 1, cancelled, tag), 3.2)
    assert not _rejects(effects)


def test_a_claim_holder_cannot_decide_a_move() -> None:
    spec = _spec()
    node = _keeper_with(spec)
    keepers = node.keepers_of(spec.pid)
    tag = config_tag(keepers)
    # an executor that is no keeper of the record (keepers run moves, and may propose any)
    claimant = next(e.member_id for e in (EXEC, EXEC2, EXEC3) if e.member_id not in keepers)
    assert _sent(node.on_message(claimant, Prepare(spec.pid, 1, "claim", tag), 3.0), Promise)
    moved = Outcome("moved", executor=claimant, run_epoch=1, moved_to=(M.member_id,))
    effects = node.on_message(claimant, Accept(spec.pid, 1, moved, tag), 3.1)
    assert _rejects(effects) == ["bad_value"]
    node.on_message(claimant, Decide(spec.pid, 1, moved, tag), 3.2)
    rec = node.record(spec.pid)
    assert rec is not None and rec.accepted is None and rec.decided is None


# --- workflow inputs ---------------------------------------------------------------------


def _child_keeper() -> tuple[ColonyNode, SignedSpec, SignedSpec]:
    parent = _spec(nonce=b"parent")
    child = _spec(parents=(parent.pid,), nonce=b"child")
    probe = _node()
    parent_keepers = probe.keepers_for(parent.pid)
    node = _keeper_with(child, (ParentRef(parent.pid, parent_keepers),))
    node.on_timer(("tick",), 3.0)  # the child's keeper polls its parent's keepers
    return node, parent, child


def test_a_child_takes_its_parent_s_outcome_only_from_the_parent_s_keepers() -> None:
    node, parent, child = _child_keeper()
    # a Decide, a Status and a ParentOutcomes from M: the child learns nothing
    node.on_message(M.member_id, Decide(parent.pid, 1, FORGED), 4.0)
    status = Status(parent.pid, True, "successful", 1, FORGED, 1, keepers=(M.member_id,))
    node.on_message(M.member_id, status, 4.1)
    effects = node.on_message(M.member_id, ParentOutcomes(child.pid, ((parent.pid, FORGED),)), 4.2)
    assert _rejects(effects) == ["parent_sender"]
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ()
    # the parent's keeper's answer is taken
    real = Outcome("successful", output=(7,), executor=EXEC.member_id, run_epoch=1)
    keeper = rec.parents[0].keepers[0]
    node.on_message(keeper, Status(parent.pid, True, "successful", 1, real, 1), 5.0)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ((parent.pid, real),)
    assert rec.inputs() == (7,)


def test_a_forged_move_of_a_parent_is_refused() -> None:
    node, parent, _ = _child_keeper()
    moved = Outcome("moved", moved_to=(M.member_id,), moved_version=2)
    status = Status(parent.pid, True, "moved", 1, moved, 1, moved_to=(M.member_id,))
    assert _rejects(node.on_message(M.member_id, status, 4.0)) == ["parent_sender"]
    assert parent.pid not in node.keeper._parent_moved


# --- announcements -----------------------------------------------------------------------


def test_an_announcement_naming_a_user_as_keeper_is_refused() -> None:
    spec = _spec(executortype="cpu")
    node = ColonyNode(EXEC.member_id, GENESIS, PARAMS, ad=CPU_AD, sign=EXEC.sign)
    node.start(0.0)
    # M re-announces a real spec with itself as its keeper: an executor would claim from M
    effects = node.on_announcement(M.member_id, SpecAnnounce(spec, (M.member_id,)), 2.0)
    assert _rejects(effects) == ["bad_keepers"]
    effects = node.on_announcement(SUBMITTER.member_id, SpecAnnounce(spec, (M.member_id,)), 2.0)
    assert _rejects(effects) == ["bad_keepers"]
    # nor may M announce it at its real keepers: it is neither its submitter nor a keeper
    real = SpecAnnounce(spec, node.keepers_for(spec.pid))
    assert _rejects(node.on_announcement(M.member_id, real, 2.0)) == ["announce_sender"]
    assert spec.pid not in node.executor.candidates and not node.executor.active
    # a user's ad is not learned: users run nothing
    ad = ExecutorAd.create(M, 0.0, executortype="cpu", name="m")
    node.learn_ad(ad)
    assert M.member_id not in node.ads
