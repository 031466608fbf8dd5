"""Promises of the record's provenance (core/provenance.py) and of what a node believes
(core/node.py: ``proven``, ``believes``, ``_on_status``, ``learned_decision``) that
mutation testing found unchecked (bench/mutation_score.py, bench/results/MUTATION.md,
"Run of 2026-12-08, the rest of the core"): each test fails with a mutant that
survived the other tests."""

from __future__ import annotations

import dataclasses
import random

import cbor2
import pytest
from core_effects import certificate, placed, rejects, sent

from colonyp2p.codec import to_data
from colonyp2p.core import effects as fx
from colonyp2p.core import node as node_module
from colonyp2p.core import provenance
from colonyp2p.core.messages import (
    Certificate,
    Decide,
    Install,
    InstallAck,
    Outcome,
    ParentOutcomes,
    ParentRef,
    Query,
    SpecAnnounce,
    Status,
    StoreSpec,
    Transfer,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.provenance import follow, follow_from, place
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(1208)
OWNER, A, B, C, D, E, USER = (Identity.from_seed(_rng.randbytes(32)) for _ in range(7))
GENESIS = MembershipSet.genesis(
    OWNER,
    "mutants-provenance",
    0.0,
    members=[
        *(Member(i.member_id, "executor") for i in (A, B, C, D, E)),
        Member(USER.member_id, "user"),
    ],
)
COLONY = GENESIS.colony_id
OLD = (A.member_id, B.member_id, C.member_id)
NEW = (C.member_id, D.member_id, E.member_id)
SPEC = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"mutants")
PID = SPEC.pid


def _move(keepers: tuple[str, ...], version: int, to: tuple[str, ...], to_version: int) -> Outcome:
    return Outcome("moved", executor=keepers[0], run_epoch=2, moved_to=to, moved_version=to_version)


def _certified(
    keepers: tuple[str, ...], version: int, value: Outcome, *signers: Identity
) -> Certificate:
    return certificate(COLONY, PID, keepers, version, 2, value, *signers)


def _chain(n: int) -> tuple[Certificate, ...]:
    """``n`` certified moves from OLD at version 1, back and forth between OLD and NEW,
    each to the next version."""
    moves: list[Certificate] = []
    here, there = OLD, NEW
    for version in range(1, n + 1):
        signers = (A, B) if here == OLD else (D, E)
        moves.append(_certified(here, version, _move(here, version, there, version + 1), *signers))
        here, there = there, here
    return tuple(moves)


# --- following a record's moves --------------------------------------------------------


def test_without_moves_a_record_is_where_it_started_at_any_version_unless_one_is_named() -> None:
    assert follow(COLONY, PID, OLD, None, ()) == (OLD, -1)
    assert follow(COLONY, PID, OLD, 3, ()) == (OLD, 3)
    # from a configuration no move leaves: a decision of those keepers, at any version
    assert follow_from(COLONY, PID, NEW, _chain(1)[:0]) == (NEW, -1)


def test_a_move_counts_only_from_the_keepers_and_version_the_record_was_at() -> None:
    moves = _chain(1)
    assert follow(COLONY, PID, OLD, 1, moves) == (NEW, 2)
    assert follow(COLONY, PID, OLD, None, moves) == (NEW, 2)  # the move names the version
    # the same certified move, but the record was at another version of OLD
    assert follow(COLONY, PID, OLD, 2, moves) is None
    # or at other keepers (the move's version matching)
    assert follow(COLONY, PID, NEW, 1, moves) is None
    # a move certified by NEW's majority, claiming to leave OLD
    forged = _certified(OLD, 1, _move(OLD, 1, NEW, 2), D, E)
    assert follow(COLONY, PID, OLD, 1, (forged,)) is None


def test_a_chain_of_at_most_max_moves_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(provenance, "MAX_MOVES", 2)
    assert follow(COLONY, PID, OLD, 1, _chain(2)) == (OLD, 3)
    assert follow(COLONY, PID, OLD, 1, _chain(3)) is None


def test_follow_from_starts_at_the_configuration_a_child_named() -> None:
    moves = _chain(3)  # OLD@1 -> NEW@2 -> OLD@3 -> NEW@4
    assert follow_from(COLONY, PID, NEW, moves) == (NEW, 4)
    assert follow_from(COLONY, PID, OLD, moves) == (NEW, 4)
    broken = (*moves[:2], dataclasses.replace(moves[2], epoch=9))  # its votes no longer hold
    assert follow_from(COLONY, PID, NEW, broken) is None


def test_a_decision_is_proven_only_for_a_real_outcome_in_its_configuration() -> None:
    real = Outcome("successful", output=(1,), executor=A.member_id, run_epoch=2)
    chosen = _certified(OLD, 1, real, A, B)
    assert provenance.decision_ok(COLONY, PID, (OLD, 1), chosen)
    assert provenance.decision_ok(COLONY, PID, (OLD, -1), chosen, real)
    assert not provenance.decision_ok(COLONY, PID, (OLD, 2), chosen)
    assert not provenance.decision_ok(COLONY, PID, (NEW, 1), chosen)
    # a certified move is where the record went, not its outcome
    move = _move(OLD, 1, NEW, 2)
    moved = _certified(OLD, 1, move, A, B)
    assert provenance.certificate_ok(COLONY, PID, moved)
    assert not provenance.decision_ok(COLONY, PID, (OLD, 1), moved)
    assert not provenance.decision_ok(COLONY, PID, (OLD, 1), moved, move)


def test_a_vote_counts_only_for_the_process_value_and_configuration_it_was_given_for() -> None:
    real = Outcome("successful", output=(1,), executor=A.member_id, run_epoch=2)
    other = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"another")
    assert provenance.certificate_ok(COLONY, PID, _certified(OLD, 1, real, A, B))
    for colony, pid, value, epoch, version in (
        ("c" * 64, PID, real, 2, 1),  # another colony's
        (COLONY, other.pid, real, 2, 1),  # another process's
        (COLONY, PID, dataclasses.replace(real, output=(2,)), 2, 1),  # another value
        (COLONY, PID, real, 3, 1),  # another epoch
        (COLONY, PID, real, 2, 2),  # another membership version
    ):
        votes = certificate(colony, pid, OLD, version, epoch, value, A, B).votes
        shown = Certificate(OLD, 1, 2, real, votes)
        assert not provenance.certificate_ok(COLONY, PID, shown), (colony, pid, epoch, version)


def test_votes_and_placements_are_signed_in_the_protocol_s_layout() -> None:
    """What a vote and a placement sign is part of the protocol (/colonyp2p/msg/2.0.0):
    another member checks them from the same bytes, each under a tag naming its kind."""
    real = Outcome("successful", output=(1,), executor=A.member_id, run_epoch=2)
    vote = provenance.vote_bytes(COLONY, PID, OLD, 1, 2, real)
    assert cbor2.loads(vote) == ["colonyp2p/vote/1", COLONY, PID, list(OLD), 1, 2, to_data(real)]
    ref = ParentRef("f" * 64, NEW)
    placement = provenance.placement_bytes(COLONY, PID, OLD, 1, (ref,))
    assert cbor2.loads(placement) == [
        "colonyp2p/placement/1",
        COLONY,
        PID,
        list(OLD),
        1,
        [[ref.pid, list(NEW)]],
    ]
    assert vote == cbor2.dumps(cbor2.loads(vote), canonical=True)


def test_a_certificate_names_each_keeper_once() -> None:
    real = Outcome("successful", output=(1,), executor=A.member_id, run_epoch=2)
    twice = (A.member_id, A.member_id, B.member_id)
    assert not provenance.certificate_ok(COLONY, PID, _certified(twice, 1, real, A, B))
    assert not provenance.certificate_ok(COLONY, PID, _certified((), 1, real, A, B))
    assert provenance.certificate_ok(COLONY, PID, _certified(OLD, 1, real, A, B))


# --- the keeper: who may replace a record it holds (KeeperRole._install_refusal) ---------

PARAMS = Params(keepers=3)


def _node(me: Identity) -> ColonyNode:
    node = ColonyNode(me.member_id, GENESIS, PARAMS, sign=me.sign)
    node.start(0.0)
    return node


def _transfer(keepers: tuple[str, ...], version: int, **kw: object) -> Transfer:
    """SPEC as USER placed it at OLD (version 1), handed over at ``keepers``."""
    base = Transfer(
        spec=SPEC,
        keepers=keepers,
        config_version=version,
        parents=(),
        promised=0,
        expired_attempts=0,
        decided=None,
        decided_epoch=0,
        placement=place(USER.sign, SPEC, OLD, 1, ()),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _kept_at_old(me: Identity) -> ColonyNode:
    node = _node(me)
    assert (
        rejects(node.on_message(USER.member_id, placed(StoreSpec(SPEC, OLD, 1), USER), 1.0)) == []
    )
    assert node.record(PID) is not None
    return node


def test_a_record_decided_moved_is_replaced_only_by_a_keeper_it_knows() -> None:
    move = _move(OLD, 1, NEW, 2)
    cert = _certified(OLD, 1, move, A, B)
    node = _kept_at_old(C)  # C keeps it at OLD, and at NEW once it moved
    node.on_message(A.member_id, Decide(PID, 2, move, config_tag(OLD), cert), 2.0)
    rec = node.record(PID)
    assert rec is not None and rec.decided == move
    handoff = _transfer(NEW, 2, moves=(cert,))
    # the genuine hand-off, from a member that keeps neither set: refused, and the
    # keeper asks those it knows where the record went
    effects = node.on_message(OWNER.member_id, Install(handoff), 3.0)
    assert rejects(effects) == ["install_sender"]
    assert node.record(PID) == rec
    assert {to for to, _ in sent(effects, Query)} == {
        A.member_id,
        B.member_id,
        D.member_id,
        E.member_id,
    }
    assert sent(effects, InstallAck) == []
    # from a keeper of the set it moved to: installed over the moved record
    effects = node.on_message(D.member_id, Install(handoff), 3.5)
    assert rejects(effects) == []
    rec = node.record(PID)
    assert rec is not None and rec.keepers == NEW and rec.config_version == 2
    assert rec.decided is None and rec.moves == (cert,)
    assert sent(effects, InstallAck) == [(D.member_id, InstallAck(PID))]


def test_the_same_configuration_again_from_a_member_that_keeps_it_not_is_acknowledged() -> None:
    # nothing is replaced, so nothing is refused: a late resend, from anyone that may keep
    node = _kept_at_old(A)
    rec = node.record(PID)
    effects = node.on_message(D.member_id, Install(_transfer(OLD, 1)), 2.0)
    assert rejects(effects) == []
    assert sent(effects, InstallAck) == [(D.member_id, InstallAck(PID))]
    assert node.record(PID) == rec


def _announced(effects: list[fx.Effect]) -> list[SpecAnnounce]:
    return [
        e.item for e in effects if isinstance(e, fx.Publish) and isinstance(e.item, SpecAnnounce)
    ]


def _ticks(node: ColonyNode, start: float, n: int = 3) -> list[fx.Effect]:
    effects: list[fx.Effect] = []
    for i in range(1, n + 1):
        effects += node.on_timer(("tick",), start + i * PARAMS.tick)
    return effects


def test_a_record_handed_to_a_new_keeper_is_announced_at_its_first_check() -> None:
    node = _node(A)  # first of OLD: no stagger
    effects = node.on_message(B.member_id, Install(_transfer(OLD, 1)), 2.0)
    assert rejects(effects) == [] and node.record(PID) is not None
    effects += _ticks(node, 2.0)
    assert [(a.spec.pid, a.keepers) for a in _announced(effects)] == [(PID, OLD)]


def test_a_superseded_record_acts_again_once_the_newer_configuration_is_installed() -> None:
    move = _move(OLD, 1, NEW, 2)
    node = _kept_at_old(C)  # C keeps it at OLD; first of NEW
    node.keeper.superseded(PID)  # a ballot met NEW's record: ours stops acting
    assert _announced(_ticks(node, 1.0)) == []
    handoff = _transfer(NEW, 2, moves=(_certified(OLD, 1, move, A, B),))
    effects = node.on_message(A.member_id, Install(handoff), 2.0)
    assert rejects(effects) == []
    effects += _ticks(node, 2.0)
    assert [(a.spec.pid, a.keepers) for a in _announced(effects)] == [(PID, NEW)]


PARENT = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"parent")
CHILD = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"child", (PARENT.pid,))
PARENTS = (ParentRef(PARENT.pid, OLD),)
FORGED = Outcome("successful", output=("forged",), executor=E.member_id, run_epoch=9)


def _child_transfer(keepers: tuple[str, ...], version: int, **kw: object) -> Transfer:
    """CHILD as USER placed it at OLD (version 1), handed over at ``keepers`` with a
    parent outcome no certificate proves."""
    base = Transfer(
        spec=CHILD,
        keepers=keepers,
        config_version=version,
        parents=PARENTS,
        promised=0,
        expired_attempts=0,
        decided=None,
        decided_epoch=0,
        parent_outcomes=((PARENT.pid, FORGED),),
        placement=place(USER.sign, CHILD, OLD, 1, PARENTS),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_a_new_record_s_parent_outcomes_are_left_to_be_asked_for_again() -> None:
    node = _node(A)
    assert rejects(node.on_message(B.member_id, Install(_child_transfer(OLD, 1)), 2.0)) == []
    rec = node.record(CHILD.pid)
    assert rec is not None and rec.parent_outcomes == ()


def test_a_replaced_record_takes_no_parent_outcome_on_its_sender_s_word() -> None:
    node = _node(C)  # keeps CHILD at OLD, and at NEW once it moved
    store = StoreSpec(CHILD, OLD, 1, PARENTS)
    assert rejects(node.on_message(USER.member_id, placed(store, USER), 1.0)) == []
    move = Outcome("moved", executor=A.member_id, run_epoch=2, moved_to=NEW, moved_version=2)
    cert = certificate(COLONY, CHILD.pid, OLD, 1, 2, move, A, B)
    handoff = _child_transfer(NEW, 2, moves=(cert,))
    assert rejects(node.on_message(A.member_id, Install(handoff), 2.0)) == []
    rec = node.record(CHILD.pid)
    assert rec is not None and rec.keepers == NEW
    assert rec.parent_outcomes == ()  # the forged one, taken on A's word, fails this


# --- what a member that keeps no copy believes (ColonyNode.believes, _proven_keepers) ----

REAL = Outcome("successful", output=(42,), executor=A.member_id, run_epoch=3)
PLACED = place(USER.sign, SPEC, OLD, 1, ())


def _results(effects: list[fx.Effect]) -> list[Outcome]:
    return [e.data["outcome"] for e in effects if isinstance(e, fx.Observe) and e.kind == "result"]


def test_an_outcome_is_believed_only_with_the_certificate_of_that_very_outcome() -> None:
    move = _move(OLD, 1, NEW, 2)
    proof = {
        "keepers": NEW,
        "config_version": 2,
        "moves": (_certified(OLD, 1, move, A, B),),
        "certificate": certificate(COLONY, PID, NEW, 2, 3, REAL, D, E),
        "placement": PLACED,
        "spec": SPEC,
    }
    forged = Outcome("successful", output=("forged",), executor=E.member_id, run_epoch=3)
    node = _node(B)
    lie = Status(PID, True, "successful", 3, forged, 3, **proof)  # type: ignore[arg-type]
    assert not node.believes(lie)
    assert _results(node.on_message(E.member_id, lie, 2.0)) == []
    truth = dataclasses.replace(lie, decided=REAL)
    assert node.believes(truth)
    effects = node.on_message(E.member_id, truth, 2.5)
    assert _results(effects) == [REAL]
    assert [e.data["epoch"] for e in effects if isinstance(e, fx.Observe)] == [3]
    # nothing decided, or a move (certified or not), is no outcome to show
    assert not node.believes(dataclasses.replace(truth, decided=None))
    moved = dataclasses.replace(truth, decided=move, certificate=proof["moves"][0])  # type: ignore[index]
    assert not node.believes(moved)


def test_where_a_record_is_is_learned_from_a_proof_that_ends_with_the_move_reported() -> None:
    move = _move(OLD, 1, NEW, 2)
    cert = _certified(OLD, 1, move, A, B)
    node = _node(D)  # keeps no copy, did not submit
    before = node.keepers_of(PID)
    assert before != NEW
    # A, a keeper of OLD, says the record moved, with the move's certificate
    said = Status(
        PID,
        True,
        "moved",
        2,
        move,
        2,
        moved_to=NEW,
        keepers=OLD,
        config_version=1,
        certificate=cert,
        placement=PLACED,
        spec=SPEC,
    )
    node.on_message(A.member_id, dataclasses.replace(said, certificate=None), 2.0)
    assert node.keepers_of(PID) == before  # no certificate: not proven
    node.on_message(A.member_id, said, 2.5)
    assert node.keepers_of(PID) == NEW


def _decided_after_a_move(moved_from: int, version: int) -> Status:
    """REAL decided at NEW (``version``), moved there from OLD at ``moved_from``, with
    the submitter's placement at OLD, version 1."""
    move = _move(OLD, moved_from, NEW, version)
    return Status(
        PID,
        True,
        "successful",
        3,
        REAL,
        3,
        keepers=NEW,
        config_version=version,
        moves=(_certified(OLD, moved_from, move, A, B),),
        certificate=certificate(COLONY, PID, NEW, version, 3, REAL, D, E),
        placement=PLACED,
        spec=SPEC,
    )


def test_where_a_decided_record_is_is_learned_from_its_moves() -> None:
    node = _node(D)
    said = _decided_after_a_move(1, 2)
    node.on_message(E.member_id, said, 2.0)
    assert node.keepers_of(PID) == NEW


def test_another_process_s_spec_and_placement_prove_nothing_about_this_one() -> None:
    # E submits a process of its own, placed at itself alone, and brings its spec and
    # placement as the "proof" that it keeps SPEC
    own = SignedSpec.create(FunctionSpec("work"), E, COLONY, 1.0, b"own")
    mine = (E.member_id,)
    node = _node(D)
    before = node.keepers_of(PID)
    said = Status(
        PID,
        True,
        "waiting",
        0,
        keepers=mine,
        config_version=1,
        placement=place(E.sign, own, mine, 1, ()),
        spec=own,
    )
    node.on_message(E.member_id, said, 2.0)
    assert node.keepers_of(PID) == before


def test_a_move_counts_only_from_the_version_the_submitter_placed_the_record_at() -> None:
    # a move of OLD at version 2 (the record came back to OLD later, say) does not
    # follow from the placement at OLD, version 1
    said = _decided_after_a_move(2, 3)
    node = _node(B)
    assert not node.believes(said)
    assert _results(node.on_message(E.member_id, said, 2.0)) == []


def test_a_result_is_reported_once_and_a_move_never(monkeypatch: pytest.MonkeyPatch) -> None:
    node = _node(B)
    node.on_timer(("tick",), 1.0)
    move = _move(OLD, 1, NEW, 2)
    other = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"other").pid
    third = SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, b"third").pid
    monkeypatch.setattr(node_module, "RESULTS_KEPT", 2)
    observed: list[tuple[str, Outcome]] = []

    def report(pid: str, value: Outcome) -> None:
        node.out = []
        node.report_result(pid, 3, value)
        observed.extend((e.pid, e.data["outcome"]) for e in node.out if isinstance(e, fx.Observe))

    report(PID, move)
    node.out = []
    node.report_result(PID, 3, REAL)
    assert node.out == [
        fx.Observe(
            "result",
            PID,
            {"kind": "successful", "executor": A.member_id, "epoch": 3, "outcome": REAL},
        )
    ]
    observed.append((PID, REAL))
    report(PID, REAL)
    report(other, REAL)
    report(PID, REAL)  # two kept: still known
    assert observed == [(PID, REAL), (other, REAL)]
    report(third, REAL)  # the oldest is forgotten beyond RESULTS_KEPT
    report(PID, REAL)
    assert observed[2:] == [(third, REAL), (PID, REAL)]


def test_the_submitter_learns_where_its_record_went_from_the_keepers_it_placed_it_at() -> None:
    node = _node(USER)
    node.submit(SPEC, 1.0)
    placed_at = node.keepers_of(PID)
    k = placed_at[0]
    others = tuple(i.member_id for i in (A, B, C, D, E) if i.member_id not in placed_at)
    elsewhere = (k, *others[:2])
    # an answer that does not know the record, or whose sender is not among the keepers
    # it names, teaches nothing
    node.on_message(k, Status(PID, False, keepers=elsewhere), 2.0)
    node.on_message(k, Status(PID, True, "waiting", keepers=others), 2.1)
    assert node.keepers_of(PID) == placed_at
    # one of its keepers names where the record is
    node.on_message(k, Status(PID, True, "waiting", keepers=elsewhere), 2.2)
    assert node.keepers_of(PID) == elsewhere
    # and then where it moved
    there = (others[0], *placed_at[1:])
    move = Outcome("moved", executor=k, run_epoch=2, moved_to=there, moved_version=2)
    moved = Status(PID, True, "moved", 2, move, 2, moved_to=there, keepers=elsewhere)
    node.on_message(k, moved, 2.3)
    assert node.keepers_of(PID) == there


def test_a_keeper_shows_the_outcome_its_record_took_from_a_fellow_s_certified_status() -> None:
    node = _kept_at_old(A)
    said = Status(
        PID,
        True,
        "successful",
        3,
        REAL,
        3,
        keepers=OLD,
        config_version=1,
        certificate=certificate(COLONY, PID, OLD, 1, 3, REAL, B, C),
    )
    effects = node.on_message(B.member_id, said, 2.0)
    rec = node.record(PID)
    assert rec is not None and rec.decided == REAL
    shown = [e.data for e in effects if isinstance(e, fx.Observe) and e.kind == "result"]
    assert [(d["outcome"], d["epoch"]) for d in shown] == [(REAL, 3)]


def test_the_submitter_takes_a_decide_only_with_the_certificate_of_that_outcome() -> None:
    node = _node(USER)
    node.submit(SPEC, 1.0)
    placed_at = node.keepers_of(PID)
    keys = {i.member_id: i for i in (A, B, C, D, E)}
    cert = certificate(COLONY, PID, placed_at, 1, 3, REAL, *(keys[k] for k in placed_at[:2]))
    forged = Outcome("successful", output=("forged",), executor=E.member_id, run_epoch=3)
    holder = placed_at[0]
    effects = node.on_message(holder, Decide(PID, 3, forged, config_tag(placed_at), cert), 2.0)
    assert _results(effects) == []
    effects = node.on_message(holder, Decide(PID, 3, REAL, config_tag(placed_at), cert), 2.5)
    shown = [e.data for e in effects if isinstance(e, fx.Observe) and e.kind == "result"]
    assert [(d["outcome"], d["epoch"]) for d in shown] == [(REAL, 3)]


def test_a_parent_s_certified_decide_feeds_its_child_and_is_shared_with_its_fellows() -> None:
    node = _node(A)  # keeps CHILD at OLD; PARENT is kept at OLD too
    store = StoreSpec(CHILD, OLD, 1, PARENTS)
    assert rejects(node.on_message(USER.member_id, placed(store, USER), 1.0)) == []
    cert = certificate(COLONY, PARENT.pid, OLD, 1, 3, REAL, B, C)
    effects = node.on_message(B.member_id, Decide(PARENT.pid, 3, REAL, config_tag(OLD), cert), 2.0)
    rec = node.record(CHILD.pid)
    assert rec is not None and rec.parent_outcomes == ((PARENT.pid, REAL),)
    shared = sent(effects, ParentOutcomes)
    assert sorted(to for to, _ in shared) == sorted((B.member_id, C.member_id))
    for _, msg in shared:
        assert msg.outcomes == ((PARENT.pid, REAL),)
        assert [(p.parent, p.certificate) for p in msg.proofs] == [(PARENT.pid, cert)]
