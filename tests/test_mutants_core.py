"""Promises of the client and the keeper that mutation testing found unchecked
(bench/mutation_score.py, bench/results/MUTATION.md): each test fails with a mutant that
survived the other tests."""

from __future__ import annotations

import dataclasses

from core_effects import observed as _observed
from core_effects import placed
from core_effects import submitted as _submitted

from colonyp2p.core import effects as fx
from colonyp2p.core.client import FOLLOW_UP_ROUNDS, SUBMISSIONS
from colonyp2p.core.messages import (
    Accept,
    Accepted,
    Install,
    InstallAck,
    Outcome,
    Prepare,
    Promise,
    StoreAck,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

OWNER, EXEC, EXEC2, SUBMITTER = (Identity.from_seed(bytes([40 + i]) * 32) for i in range(4))
GENESIS = MembershipSet.genesis(
    OWNER,
    "mutants",
    0.0,
    members=[
        Member(EXEC.member_id, "executor"),
        Member(EXEC2.member_id, "executor"),
        Member(SUBMITTER.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3, max_waiting_per_submitter=3, store_rate=1.0, store_burst=5.0)


def _spec(n: int, submitter: Identity = SUBMITTER) -> SignedSpec:
    return SignedSpec.create(FunctionSpec("work"), submitter, GENESIS.colony_id, 1.0, bytes([n]))


def _node(me: Identity) -> ColonyNode:
    node = ColonyNode(me.member_id, GENESIS, PARAMS, sign=me.sign)
    node.start(0.0)
    return node


def test_refusals_of_one_submission_do_not_count_against_another() -> None:
    client = _node(SUBMITTER)
    first, second = _spec(1), _spec(2)
    keepers = _submitted(client, first)
    assert set(_submitted(client, second)) == set(keepers)  # every keeper keeps both
    for k in keepers[:-1]:
        client.on_message(k, StoreAck(first.pid, refused="quota"), 1.1)
    effects = client.on_message(keepers[-1], StoreAck(second.pid, refused="quota"), 1.1)
    assert not _observed(effects, "refused")
    assert {first.pid, second.pid} <= set(client.client.pending)


def test_a_refusal_that_arrives_after_the_same_keeper_s_ack_ends_nothing() -> None:
    # the refusal of a first attempt overtaken by the ack of a resend: that keeper holds
    # the record, so the submission may run and is never reported refused
    client = _node(SUBMITTER)
    spec = _spec(3)
    keepers = _submitted(client, spec)
    client.on_message(keepers[0], StoreAck(spec.pid), 1.1)
    for k in keepers:
        assert not _observed(
            client.on_message(k, StoreAck(spec.pid, refused="quota"), 1.2), "refused"
        )
    assert spec.pid in client.client.pending


def test_the_refused_report_names_the_submission() -> None:
    client = _node(SUBMITTER)
    spec = _spec(4)
    keepers = _submitted(client, spec)
    effects: list[fx.Effect] = []
    for k in keepers:
        effects += client.on_message(k, StoreAck(spec.pid, refused="quota"), 1.1)
    assert [(e.pid, e.data) for e in _observed(effects, "refused")] == [
        (spec.pid, {"reason": "quota"})
    ]
    assert spec.pid not in client.client.pending


def test_an_acknowledged_submission_is_offered_for_follow_up_rounds_then_dropped() -> None:
    client = _node(SUBMITTER)
    spec = _spec(5)
    keepers = _submitted(client, spec)
    for k in keepers[:-1]:  # a majority: acknowledged, one keeper still to reach
        client.on_message(k, StoreAck(spec.pid), 1.1)
    now = 1.0
    for _ in range(FOLLOW_UP_ROUNDS):
        now += PARAMS.submit_retry
        effects = client.on_timer(("submit", spec.pid), now)
        sent = [e.to for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, StoreSpec)]
        assert sent == [keepers[-1]]
        assert spec.pid in client.client.pending
    effects = client.on_timer(("submit", spec.pid), now + PARAMS.submit_retry)
    assert not [e for e in effects if isinstance(e, fx.Send)]
    # the keepers own it now: the submitter forgets it, on disk too
    assert fx.Persist(SUBMISSIONS, spec.pid, None) in effects
    assert spec.pid not in client.client.pending


def test_a_submission_is_on_disk_before_it_leaves_and_offered_again_after_a_restart() -> None:
    client = _node(SUBMITTER)
    spec = _spec(6)
    effects = client.submit(spec, 1.0)
    stores = [e for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, StoreSpec)]
    store = stores[0].msg
    assert isinstance(store, StoreSpec)
    saved = fx.Persist(SUBMISSIONS, spec.pid, store)
    assert saved in effects and effects.index(saved) < effects.index(stores[0])
    assert fx.SetTimer(1.0 + PARAMS.submit_retry, ("submit", spec.pid)) in effects
    # submitting it again while it is pending sends nothing more
    assert not [e for e in client.submit(spec, 1.5) if isinstance(e, fx.Send | fx.Persist)]
    # a crash before any keeper answered: the restarted node offers it to every keeper
    again = ColonyNode(
        SUBMITTER.member_id,
        GENESIS,
        PARAMS,
        durable={SUBMISSIONS: {spec.pid: store}},
        sign=SUBMITTER.sign,
    )
    effects = again.start(5.0)
    resent = [e.to for e in effects if isinstance(e, fx.Send) and e.msg == store]
    assert sorted(resent) == sorted(store.keepers)
    assert fx.SetTimer(5.0 + PARAMS.submit_retry, ("submit", spec.pid)) in effects


def test_an_acknowledgement_is_reported_once_and_every_keeper_s_ends_the_submission() -> None:
    client = _node(SUBMITTER)
    spec = _spec(7)
    keepers = _submitted(client, spec)
    effects: list[fx.Effect] = []
    for k in keepers[:-1]:
        effects += client.on_message(k, StoreAck(spec.pid), 1.1)
    assert [(e.pid, e.data) for e in _observed(effects, "acknowledged")] == [
        (
            spec.pid,
            {"parents": [], "workflow_id": "", "keepers": list(keepers), "priority": 0},
        )
    ]
    effects = client.on_message(keepers[-1], StoreAck(spec.pid), 1.2)
    assert not _observed(effects, "acknowledged")
    assert fx.Persist(SUBMISSIONS, spec.pid, None) in effects
    assert spec.pid not in client.client.pending


def test_a_store_is_refused_by_name_and_a_quota_refusal_goes_to_its_submitter() -> None:
    spec = _spec(8)
    keeper = _node(OWNER)
    keepers = keeper.keepers_for(spec.pid)
    others = tuple(k for k in keepers if k != OWNER.member_id)
    effects = keeper.on_message(
        SUBMITTER.member_id, placed(StoreSpec(spec, others, 1), OWNER, EXEC, EXEC2, SUBMITTER), 1.0
    )
    assert _refused(effects) == ["not_keeper"]
    effects = keeper.on_message(
        SUBMITTER.member_id,
        placed(StoreSpec(spec, (*keepers, SUBMITTER.member_id), 1), OWNER, EXEC, EXEC2, SUBMITTER),
        1.0,
    )
    assert _refused(effects) == ["bad_keepers"]
    # one waiting record per submitter: the first is stored, the second refused to it
    one = ColonyNode(
        OWNER.member_id,
        GENESIS,
        dataclasses.replace(PARAMS, max_waiting_per_submitter=1),
        sign=OWNER.sign,
    )
    one.start(0.0)
    sends = [
        (e.to, e.msg)
        for n in (8, 9)
        for e in one.on_message(
            SUBMITTER.member_id,
            placed(StoreSpec(_spec(n), keepers, 1), OWNER, EXEC, EXEC2, SUBMITTER),
            1.0,
        )
        if isinstance(e, fx.Send)
    ]
    assert sends == [
        (SUBMITTER.member_id, StoreAck(_spec(8).pid)),
        (SUBMITTER.member_id, StoreAck(_spec(9).pid, refused="quota")),
    ]


def test_a_stored_record_is_reported_with_its_pid() -> None:
    keeper = _node(OWNER)
    spec = _spec(11)
    effects = keeper.on_message(
        SUBMITTER.member_id,
        placed(StoreSpec(spec, keeper.keepers_for(spec.pid), 1), OWNER, EXEC, EXEC2, SUBMITTER),
        1.0,
    )
    assert _observed(effects, "stored") == [fx.Observe("stored", spec.pid)]


def test_the_store_rate_refills_at_its_rate() -> None:
    params = dataclasses.replace(
        PARAMS, max_waiting_per_submitter=100, store_rate=2.0, store_burst=2.0
    )
    keeper = ColonyNode(OWNER.member_id, GENESIS, params, sign=OWNER.sign)
    keeper.start(0.0)
    keepers = keeper.keepers_for(_spec(10).pid)

    def stored(n: int, now: float) -> bool:
        effects = keeper.on_message(
            SUBMITTER.member_id,
            placed(StoreSpec(_spec(n), keepers, 1), OWNER, EXEC, EXEC2, SUBMITTER),
            now,
        )
        return any(isinstance(e, fx.Send) and isinstance(e.msg, StoreAck) for e in effects)

    assert [stored(n, 1.0) for n in range(10, 13)] == [True, True, False]
    assert stored(13, 1.5)  # two tokens a second: one after half a second
    assert not stored(14, 1.5)


def _kept_by_owner(n: int) -> SignedSpec:
    """A spec whose keepers include the owner."""
    ring = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    for i in range(100):
        spec = _spec(n * 100 + i)
        if OWNER.member_id in ring.keepers_for(spec.pid):
            return spec
    raise AssertionError("no nonce puts the spec at the owner")


def test_a_user_cannot_install_a_record_the_keeper_does_not_hold() -> None:
    # a genuine record, handed by a user (who may keep nothing) to a keeper without a copy
    spec = _kept_by_owner(1)
    holder = _node(EXEC)
    keepers = holder.keepers_for(spec.pid)
    holder.on_message(
        SUBMITTER.member_id, placed(StoreSpec(spec, keepers, 1), OWNER, EXEC, EXEC2, SUBMITTER), 1.0
    )
    rec = holder.record(spec.pid)
    assert rec is not None
    transfer = rec.transfer(rec.keepers, rec.config_version, rec.promised)
    keeper = _node(OWNER)
    effects = keeper.on_message(SUBMITTER.member_id, Install(transfer), 2.0)
    assert [e.code for e in effects if isinstance(e, fx.Reject)] == ["install_sender"]
    assert keeper.record(spec.pid) is None
    assert not [e for e in effects if isinstance(e, fx.Persist)]
    # the same from a keeper of the record is taken, reported and acknowledged to it
    effects = keeper.on_message(EXEC.member_id, Install(transfer), 2.0)
    assert keeper.record(spec.pid) is not None
    assert fx.Observe("installed", spec.pid, {"keepers": transfer.keepers}) in effects
    assert [(e.to, e.msg) for e in effects if isinstance(e, fx.Send)] == [
        (EXEC.member_id, InstallAck(spec.pid))
    ]


def test_an_install_naming_a_user_as_keeper_is_refused_as_such() -> None:
    spec = _kept_by_owner(2)
    holder = _node(EXEC)
    holder.on_message(
        SUBMITTER.member_id,
        placed(StoreSpec(spec, holder.keepers_for(spec.pid), 1), OWNER, EXEC, EXEC2, SUBMITTER),
        1.0,
    )
    rec = holder.record(spec.pid)
    assert rec is not None
    transfer = rec.transfer(rec.keepers, rec.config_version, rec.promised)
    to_users = dataclasses.replace(transfer, keepers=(*transfer.keepers, SUBMITTER.member_id))
    keeper = _node(OWNER)
    effects = keeper.on_message(EXEC.member_id, Install(to_users), 2.0)
    assert [e.code for e in effects if isinstance(e, fx.Reject)] == ["bad_keepers"]
    assert keeper.record(spec.pid) is None


# --- who may propose which value: five members that may keep, three keepers a record ---

X1, X2, X3, X4 = (Identity.from_seed(bytes([50 + i]) * 32) for i in range(4))
WIDE = MembershipSet.genesis(
    OWNER,
    "wide",
    0.0,
    members=[
        *(Member(x.member_id, "executor") for x in (X1, X2, X3, X4)),
        Member(SUBMITTER.member_id, "user"),
    ],
)


def _wide_keeper() -> tuple[ColonyNode, str, str, str]:
    """The owner keeping a record, another of its keepers, and an executor that keeps
    none of it (which may claim it)."""
    ring = ColonyNode(OWNER.member_id, WIDE, PARAMS, sign=OWNER.sign)
    for i in range(100):
        spec = SignedSpec.create(
            FunctionSpec("work"), SUBMITTER, WIDE.colony_id, 1.0, bytes([200, i])
        )
        keepers = ring.keepers_for(spec.pid)
        if OWNER.member_id in keepers:
            break
    else:
        raise AssertionError("no nonce puts the spec at the owner")
    node = ColonyNode(OWNER.member_id, WIDE, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    node.on_message(
        SUBMITTER.member_id, placed(StoreSpec(spec, keepers, 1), OWNER, EXEC, EXEC2, SUBMITTER), 1.0
    )
    fellow = next(k for k in keepers if k != OWNER.member_id)
    claimant = next(x.member_id for x in (X1, X2, X3, X4) if x.member_id not in keepers)
    return node, spec.pid, fellow, claimant


def _refused(effects: list[fx.Effect]) -> list[str]:
    return [e.code for e in effects if isinstance(e, fx.Reject)]


def _accepted(effects: list[fx.Effect]) -> list[bool]:
    return [e.msg.ok for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, Accepted)]


def test_a_claimant_that_keeps_no_copy_may_propose_its_run_s_outcome() -> None:
    for outcome in ("successful", "failed"):
        node, pid, _, claimant = _wide_keeper()
        tag = config_tag(node.keepers_of(pid))
        assert _refused(node.on_message(claimant, Prepare(pid, 1, "claim", tag), 2.0)) == []
        value = Outcome(outcome, executor=claimant, run_epoch=1)
        effects = node.on_message(claimant, Accept(pid, 1, value, tag), 2.1)
        assert _refused(effects) == [] and _accepted(effects) == [True], outcome


def test_a_claimant_re_proposes_only_what_this_keeper_accepted() -> None:
    node, pid, fellow, claimant = _wide_keeper()
    tag = config_tag(node.keepers_of(pid))
    # a fellow keeper's move: keepers propose any value
    moved = Outcome("moved", executor=fellow, run_epoch=1, moved_to=(X1.member_id,))
    assert [
        type(e.msg)
        for e in node.on_message(fellow, Prepare(pid, 1, "move", tag), 2.0)
        if isinstance(e, fx.Send)
    ] == [Promise]
    effects = node.on_message(fellow, Accept(pid, 1, moved, tag), 2.1)
    assert _refused(effects) == [] and _accepted(effects) == [True]
    # once the mover's lease ran out, a claimant that learnt the value from its promise
    # re-proposes it, and may resend that
    later = 2.1 + 2 * PARAMS.lease_seconds
    assert _refused(node.on_message(claimant, Prepare(pid, 2, "claim", tag), later)) == []
    for at in (later + 0.1, later + 0.2):
        effects = node.on_message(claimant, Accept(pid, 2, moved, tag), at)
        assert _refused(effects) == [] and _accepted(effects) == [True]
    # but a claim proposes no other move, nor anything else a keeper did not accept
    other = Outcome("moved", executor=claimant, run_epoch=3, moved_to=(X2.member_id,))
    later += 2 * PARAMS.lease_seconds
    assert _refused(node.on_message(claimant, Prepare(pid, 3, "claim", tag), later)) == []
    effects = node.on_message(claimant, Accept(pid, 3, other, tag), later + 0.1)
    assert _refused(effects) == ["bad_value"] and _accepted(effects) == [False]
