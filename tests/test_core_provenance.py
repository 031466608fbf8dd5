"""Provenance (core/provenance.py): what one member's valid key cannot make others believe.

A member that may keep records (an executor device, an admin) used to be believed by
members that never held a record: it could hand them a record with a forged outcome, or
tell a member that did not submit a process any outcome of it, or tell a child's keepers
its parent's. These are the attacks of docs/PROTOCOL.md, "What these rules do not
settle", as they were before certificates; each is refused now, and the genuine
hand-off, result and parent outcome still go through."""

from __future__ import annotations

import dataclasses
import random

from core_effects import certificate, placed, rejects, sent
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import (
    Certificate,
    Decide,
    Install,
    Outcome,
    ParentOutcomes,
    ParentProof,
    ParentRef,
    Query,
    Status,
    StoreSpec,
    Transfer,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.provenance import certificate_ok, place, record_config
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(23)
OWNER, A, B, C, D, E, LIAR, USER = (Identity.from_seed(_rng.randbytes(32)) for _ in range(8))
KEYS = (OWNER, A, B, C, D, E, LIAR, USER)
GENESIS = MembershipSet.genesis(
    OWNER,
    "provenance",
    0.0,
    members=[
        *(Member(i.member_id, "executor") for i in (A, B, C, D, E, LIAR)),
        Member(USER.member_id, "user"),
    ],
)
COLONY = GENESIS.colony_id
PARAMS = Params(keepers=3)
OLD = (A.member_id, B.member_id, C.member_id)  # where USER placed the spec
NEW = (C.member_id, D.member_id, E.member_id)  # where a move certified by OLD took it
REAL = Outcome("successful", output=(42,), executor=A.member_id, run_epoch=3)
FORGED = Outcome("successful", output=("forged",), executor=LIAR.member_id, run_epoch=9)


def _key(member: str) -> Identity:
    return next(i for i in KEYS if i.member_id == member)


def _spec(nonce: bytes = b"p", parents: tuple[str, ...] = ()) -> SignedSpec:
    return SignedSpec.create(FunctionSpec("work"), USER, COLONY, 1.0, nonce, parents)


def _node(me: Identity) -> ColonyNode:
    node = ColonyNode(me.member_id, GENESIS, PARAMS, sign=me.sign)
    node.start(0.0)
    return node


def _transfer(spec: SignedSpec, keepers: tuple[str, ...] = OLD, **kw: object) -> Transfer:
    """The record as its submitter placed it at OLD, with ``kw`` changed."""
    base = Transfer(
        spec=spec,
        keepers=keepers,
        config_version=1,
        parents=(),
        promised=0,
        expired_attempts=0,
        decided=None,
        decided_epoch=0,
        placement=place(USER.sign, spec, OLD, 1, ()),
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _cert(
    spec: SignedSpec,
    value: Outcome,
    signers: tuple[Identity, ...],
    keepers: tuple[str, ...] = OLD,
    version: int = 1,
) -> Certificate:
    return certificate(COLONY, spec.pid, keepers, version, 3, value, *signers)


MOVE = Outcome("moved", executor=A.member_id, run_epoch=2, moved_to=NEW, moved_version=1)


# --- handing a record to a member that never held it -----------------------------------


def test_a_forged_outcome_handed_to_a_member_without_a_copy_is_refused() -> None:
    spec = _spec()
    node = _node(A)  # a keeper the StoreSpec has not reached
    for cert in (None, _cert(spec, FORGED, (LIAR,)), _cert(spec, FORGED, (A, LIAR))):
        # no certificate; the liar's vote alone; a majority's worth of votes with one
        # from outside the keeper set
        forged = _transfer(spec, decided=FORGED, decided_epoch=3, certificate=cert)
        assert rejects(node.on_message(LIAR.member_id, Install(forged), 2.0)) == ["install_proof"]
    assert node.record(spec.pid) is None


def test_a_record_handed_to_a_keeper_set_of_the_sender_s_choosing_is_refused() -> None:
    spec = _spec()
    node = _node(D)
    mine = (LIAR.member_id, D.member_id, E.member_id)
    planted = _transfer(spec, keepers=mine)  # the placement says OLD
    assert rejects(node.on_message(LIAR.member_id, Install(planted), 2.0)) == ["install_proof"]
    # a placement of its own: not signed by the spec's submitter
    own = dataclasses.replace(planted, placement=place(LIAR.sign, spec, mine, 1, ()))
    assert rejects(node.on_message(LIAR.member_id, Install(own), 2.0)) == ["install_proof"]
    # a "move" to its set, signed by itself
    move = dataclasses.replace(MOVE, moved_to=mine)
    moved = dataclasses.replace(planted, moves=(_cert(spec, move, (LIAR, A)),))
    assert rejects(node.on_message(LIAR.member_id, Install(moved), 2.0)) == ["install_proof"]
    assert node.record(spec.pid) is None


def test_a_certified_hand_off_is_installed_and_its_outcome_travels_with_its_proof() -> None:
    spec = _spec()
    node = _node(D)
    handoff = _transfer(spec, keepers=NEW, moves=(_cert(spec, MOVE, (A, B)),))
    assert rejects(node.on_message(C.member_id, Install(handoff), 2.0)) == []
    rec = node.record(spec.pid)
    assert rec is not None and rec.keepers == NEW and rec.moves == handoff.moves
    # decided later by a majority of the new set: a member that never held it takes
    # the outcome with the whole chain, and nothing less
    decided = dataclasses.replace(
        handoff, decided=REAL, decided_epoch=3, certificate=_cert(spec, REAL, (D, E), NEW)
    )
    fresh = _node(E)
    assert rejects(fresh.on_message(D.member_id, Install(decided), 3.0)) == []
    kept = fresh.record(spec.pid)
    assert kept is not None and kept.decided == REAL
    assert record_config(spec, kept.placement, kept.moves) == (NEW, 1)
    unchained = dataclasses.replace(decided, moves=())
    assert rejects(_node(C).on_message(D.member_id, Install(unchained), 3.0)) == ["install_proof"]


def test_a_stored_spec_without_its_submitter_s_placement_is_refused() -> None:
    spec = _spec()
    node = _node(A)
    bare = StoreSpec(spec, OLD, 1)
    other = dataclasses.replace(placed(bare, USER), keepers=(A.member_id, D.member_id, E.member_id))
    for store in (bare, other):
        assert rejects(node.on_message(USER.member_id, store, 1.0)) == ["bad_placement"]
    assert node.record(spec.pid) is None
    node.on_message(USER.member_id, placed(bare, USER), 1.0)
    assert node.record(spec.pid) is not None


# --- deciding ---------------------------------------------------------------------------


def _kept_by_a(spec: SignedSpec) -> ColonyNode:
    node = _node(A)
    node.on_message(USER.member_id, placed(StoreSpec(spec, OLD, 1), USER), 1.0)
    return node


def test_one_keeper_s_word_does_not_decide_for_its_fellows() -> None:
    spec = _spec()
    node = _kept_by_a(spec)
    effects = node.on_message(B.member_id, Decide(spec.pid, 3, FORGED, config_tag(OLD)), 2.0)
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided is None
    # it asks its fellows instead
    assert {to for to, _ in sent(effects, Query)} == {B.member_id, C.member_id}
    status = Status(spec.pid, True, "successful", 3, FORGED, 3, keepers=OLD, config_version=1)
    node.on_message(B.member_id, status, 2.5)
    assert node.record(spec.pid) == rec
    cert = _cert(spec, REAL, (B, C))
    node.on_message(LIAR.member_id, Decide(spec.pid, 3, REAL, config_tag(OLD), cert), 3.0)
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided == REAL and rec.certificate == cert


# --- results at members that did not submit ----------------------------------------------


def _results(effects: list[fx.Effect]) -> list[fx.Observe]:
    return [e for e in effects if isinstance(e, fx.Observe) and e.kind == "result"]


def test_a_member_that_did_not_submit_shows_an_outcome_only_with_its_proof() -> None:
    spec = _spec()
    node = _node(D)
    liar_says = Status(spec.pid, True, "successful", 9, FORGED, 9, keepers=(LIAR.member_id,))
    for _ in range(2):  # once to be learned as "keeper", once believed: no more
        assert _results(node.on_message(LIAR.member_id, liar_says, 2.0)) == []
    cert = _cert(spec, FORGED, (LIAR, A, B))  # votes of a set the record never had
    shaped = dataclasses.replace(
        liar_says, certificate=cert, spec=spec, placement=place(LIAR.sign, spec, OLD, 1, ())
    )
    assert _results(node.on_message(LIAR.member_id, shaped, 2.5)) == []
    proven = Status(
        spec.pid,
        True,
        "successful",
        3,
        REAL,
        3,
        keepers=NEW,
        config_version=1,
        moves=(_cert(spec, MOVE, (B, C)),),
        certificate=_cert(spec, REAL, (C, E), NEW),
        placement=place(USER.sign, spec, OLD, 1, ()),
        spec=spec,
    )
    assert [r.data["outcome"] for r in _results(node.on_message(E.member_id, proven, 3.0))] == [
        REAL
    ]


def test_the_submitter_takes_the_holder_s_certified_decide_without_asking_its_keepers() -> None:
    node = _node(USER)
    spec = _spec(b"own")
    node.submit(spec, 1.0)
    keepers = node.keepers_of(spec.pid)
    signers = tuple(_key(k) for k in keepers[:2])
    cert = certificate(COLONY, spec.pid, keepers, 1, 3, REAL, *signers)
    effects = node.on_message(
        A.member_id, Decide(spec.pid, 3, REAL, config_tag(keepers), cert), 2.0
    )
    assert [r.data["outcome"] for r in _results(effects)] == [REAL]
    assert sent(effects, Query) == []
    # without the certificate the holder's word makes the submitter ask the keepers
    other = _spec(b"own-2")
    node.submit(other, 1.0)
    effects = node.on_message(A.member_id, Decide(other.pid, 3, REAL, ""), 2.0)
    assert _results(effects) == [] and sent(effects, Query)


# --- parent outcomes ----------------------------------------------------------------------


def test_a_parent_s_outcome_is_taken_only_with_its_certificate() -> None:
    parent = _spec(b"parent")
    child = _spec(b"child", parents=(parent.pid,))
    node = _node(A)
    store = StoreSpec(child, OLD, 1, (ParentRef(parent.pid, OLD),))
    node.on_message(USER.member_id, placed(store, USER), 1.0)
    node.on_timer(("tick",), 10.0)  # it asks the parent's keepers
    # a keeper of the parent alone (its ParentRef names it)
    alone = Status(parent.pid, True, "successful", 3, FORGED, 3, keepers=OLD, config_version=1)
    node.on_message(B.member_id, alone, 11.0)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ()
    # the parent moved, says its keeper, and the liar now "keeps" it
    moved_there = dataclasses.replace(MOVE, moved_to=(LIAR.member_id,))
    node.on_message(B.member_id, Status(parent.pid, True, "moved", 3, moved_there, 3), 11.5)
    liar = dataclasses.replace(alone, keepers=(LIAR.member_id,))
    node.on_message(LIAR.member_id, liar, 12.0)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ()
    # the parent's certificate, after a certified move: anyone may bring it
    proven = Status(
        parent.pid,
        True,
        "successful",
        3,
        REAL,
        3,
        moves=(_cert(parent, MOVE, (A, C)),),
        certificate=_cert(parent, REAL, (D, E), NEW),
    )
    node.on_message(LIAR.member_id, proven, 13.0)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ((parent.pid, REAL),)


# --- the certificate itself ----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    voters=st.lists(st.sampled_from(KEYS), max_size=6),
    tamper=st.sampled_from(["none", "value", "epoch", "keepers", "version", "signature"]),
)
def test_a_certificate_holds_only_for_a_majority_of_its_keepers_on_what_they_signed(
    voters: list[Identity], tamper: str
) -> None:
    spec = _spec()
    cert = certificate(COLONY, spec.pid, OLD, 1, 3, REAL, *voters)
    if tamper == "value":
        cert = dataclasses.replace(cert, value=FORGED)
    elif tamper == "epoch":
        cert = dataclasses.replace(cert, epoch=4)
    elif tamper == "keepers":
        cert = dataclasses.replace(cert, keepers=(*OLD[:2], LIAR.member_id))
    elif tamper == "version":
        cert = dataclasses.replace(cert, config_version=2)
    elif tamper == "signature" and cert.votes:
        vote = cert.votes[0]
        flipped = bytes([vote.signature[0] ^ 1]) + vote.signature[1:]
        cert = dataclasses.replace(
            cert, votes=(dataclasses.replace(vote, signature=flipped), *cert.votes[1:])
        )
    honest = {i.member_id for i in voters} & set(OLD)
    first = cert.votes[0].keeper if cert.votes else ""
    if tamper == "signature" and sum(1 for v in cert.votes if v.keeper == first) == 1:
        honest.discard(first)  # the flipped vote counts for nothing (unless it voted twice)
    expected = tamper in ("none", "signature") and len(honest) >= 2
    assert certificate_ok(COLONY, spec.pid, cert) == expected


def test_a_fellow_keeper_s_parent_outcomes_are_taken_only_with_their_proofs() -> None:
    parent = _spec(b"parent-2")
    child = _spec(b"child-2", parents=(parent.pid,))
    node = _node(A)
    store = StoreSpec(child, OLD, 1, (ParentRef(parent.pid, NEW),))
    node.on_message(USER.member_id, placed(store, USER), 1.0)
    shared = ParentOutcomes(child.pid, ((parent.pid, FORGED),))
    node.on_message(B.member_id, shared, 2.0)  # B keeps the child with A
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ()
    proof = ParentProof(parent.pid, (), _cert(parent, REAL, (D, E), NEW))
    wrong = dataclasses.replace(shared, proofs=(proof,))  # a proof, of another outcome
    node.on_message(B.member_id, wrong, 2.5)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ()
    node.on_message(B.member_id, ParentOutcomes(child.pid, ((parent.pid, REAL),), (proof,)), 3.0)
    rec = node.record(child.pid)
    assert rec is not None and rec.parent_outcomes == ((parent.pid, REAL),)


def test_a_keeper_of_the_new_set_alone_cannot_replace_a_moved_record() -> None:
    """The simulator's Byzantine keepers found it: a member of the set a record moved
    to may replace the old set's copy, but only with what the proof says."""
    spec = _spec(b"moved")
    node = _kept_by_a(spec)
    rec = node.record(spec.pid)
    assert rec is not None
    moved_there = dataclasses.replace(
        MOVE, moved_to=(C.member_id, D.member_id, LIAR.member_id), moved_version=2
    )
    node.on_message(
        B.member_id, Decide(spec.pid, 2, moved_there, "", _cert(spec, moved_there, (B, C))), 2.0
    )
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided == moved_there
    forged = _transfer(spec, config_version=2, decided=FORGED, decided_epoch=9)
    assert rejects(node.on_message(LIAR.member_id, Install(forged), 3.0)) == ["install_proof"]
    assert node.record(spec.pid) == rec


def test_a_member_that_did_not_submit_learns_where_a_record_is_only_from_a_proof() -> None:
    spec = _spec(b"where")
    node = _node(D)
    before = node.keepers_of(spec.pid)
    liar_says = Status(spec.pid, True, "waiting", 0, keepers=(LIAR.member_id,))
    node.on_message(LIAR.member_id, liar_says, 2.0)
    assert node.keepers_of(spec.pid) == before
    answer = Status(
        spec.pid,
        True,
        "waiting",
        0,
        keepers=NEW,
        config_version=1,
        moves=(_cert(spec, MOVE, (A, B)),),
        placement=place(USER.sign, spec, OLD, 1, ()),
        spec=spec,
    )
    node.on_message(C.member_id, answer, 3.0)
    assert node.keepers_of(spec.pid) == NEW


def test_an_outcome_chosen_where_the_record_moved_is_kept_with_the_moves_that_prove_it() -> None:
    """A keeper that missed its record's move still learns the outcome chosen by the set
    it moved to, and keeps the moves with the certificate: it can hand the record on
    (churn-small seed 34 refused 1,773 such hand-offs before)."""
    spec = _spec(b"elsewhere")
    node = _kept_by_a(spec)  # at OLD: the move to NEW never reached it
    moved = (_cert(spec, MOVE, (B, C)),)
    there = _cert(spec, REAL, (D, E), NEW)
    node.on_message(D.member_id, Decide(spec.pid, 3, REAL, "", there), 2.0)
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided is None  # no proof of NEW: not believed
    node.on_message(D.member_id, Decide(spec.pid, 3, REAL, "", there, moved), 2.5)
    rec = node.record(spec.pid)
    assert rec is not None and rec.decided == REAL
    assert rec.certificate == there and rec.moves == moved
    handed = rec.transfer((A.member_id, B.member_id, E.member_id), 2, rec.promised)
    assert rejects(_node(E).on_message(A.member_id, Install(handed), 3.0)) == []
