"""A member's valid key is no licence to fill the keepers: each keeper stores at most
``max_waiting_per_submitter`` undecided records per submitter and new ones at
``store_rate`` a second after a burst (issue "Zero trust inside the colony", quotas per
member). Over the quota the keeper answers a refusal that the submitter's node reports
once every keeper refused, so nothing reported refused can run."""

from __future__ import annotations

import dataclasses

from core_effects import observed as _observed
from core_effects import placed
from core_effects import rejects as _rejects
from core_effects import submitted as _submitted

from colonyp2p.core import effects as fx
from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import Outcome, StoreAck, StoreSpec
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

OWNER, EXEC, EXEC2, SUBMITTER, OTHER = (Identity.from_seed(bytes([i]) * 32) for i in range(5))
GENESIS = MembershipSet.genesis(
    OWNER,
    "quota",
    0.0,
    members=[
        Member(EXEC.member_id, "executor"),
        Member(EXEC2.member_id, "executor"),
        Member(SUBMITTER.member_id, "user"),
        Member(OTHER.member_id, "user"),
    ],
)
PARAMS = Params(keepers=3, max_waiting_per_submitter=3, store_rate=1.0, store_burst=5.0)
KEEPERS = (OWNER.member_id, EXEC.member_id, EXEC2.member_id)


def _spec(n: int, submitter: Identity = SUBMITTER) -> SignedSpec:
    return SignedSpec.create(FunctionSpec("work"), submitter, GENESIS.colony_id, 1.0, bytes([n]))


def _keeper(params: Params = PARAMS) -> ColonyNode:
    node = ColonyNode(OWNER.member_id, GENESIS, params, sign=OWNER.sign)
    node.start(0.0)
    return node


def _store(node: ColonyNode, spec: SignedSpec, now: float) -> list[fx.Effect]:
    return node.on_message(
        spec.submitter,
        placed(StoreSpec(spec, KEEPERS, 1), OWNER, EXEC, EXEC2, SUBMITTER, OTHER),
        now,
    )


def _acks(effects: list[fx.Effect]) -> list[StoreAck]:
    return [e.msg for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, StoreAck)]


def test_a_keeper_refuses_records_past_a_submitter_s_quota_and_stores_others() -> None:
    node = _keeper()
    for n in range(3):
        assert _acks(_store(node, _spec(n), 1.0)) == [StoreAck(_spec(n).pid)]
    over = _spec(3)
    effects = _store(node, over, 1.0)
    assert _acks(effects) == [StoreAck(over.pid, refused="quota")]
    assert _rejects(effects) == ["store_quota"]
    assert node.record(over.pid) is None
    assert not [e for e in effects if isinstance(e, fx.Persist)]
    # another member's processes are not held against it
    other = _spec(0, OTHER)
    assert _acks(_store(node, other, 1.0)) == [StoreAck(other.pid)]
    # a record already kept is acknowledged again, whatever the quota
    assert _acks(_store(node, _spec(0), 1.0)) == [StoreAck(_spec(0).pid)]


def test_a_decided_record_frees_its_submitter_s_place() -> None:
    node = _keeper()
    for n in range(3):
        _store(node, _spec(n), 1.0)
    assert node.keeper.waiting_of(SUBMITTER.member_id) == 3
    rec = node.record(_spec(0).pid)
    assert rec is not None
    node.keeper.decide(rec, 1, Outcome("failed", errors=("cancelled",)), 2.0)
    assert node.keeper.waiting_of(SUBMITTER.member_id) == 2
    assert _acks(_store(node, _spec(3), 2.0)) == [StoreAck(_spec(3).pid)]


def test_a_keeper_restarted_counts_what_it_holds() -> None:
    node = _keeper()
    for n in range(3):
        _store(node, _spec(n), 1.0)
    durable = {RECORDS: dict(node.keeper.records)}
    again = ColonyNode(OWNER.member_id, GENESIS, PARAMS, durable=durable, sign=OWNER.sign)
    again.start(5.0)
    assert again.keeper.waiting_of(SUBMITTER.member_id) == 3
    assert _rejects(_store(again, _spec(3), 5.0)) == ["store_quota"]


def test_a_flood_of_new_records_is_held_to_the_store_rate() -> None:
    node = _keeper(dataclasses.replace(PARAMS, max_waiting_per_submitter=100))
    taken = [bool(_acks(_store(node, _spec(n), 1.0))) for n in range(8)]
    assert taken == [True] * 5 + [False] * 3  # the burst, then nothing at the same instant
    # not answered (the submitter's resend comes later), counted
    assert node.counters["store_rate"] == 3
    assert _acks(_store(node, _spec(5), 2.0)) == [StoreAck(_spec(5).pid)]  # a token a second


def _client() -> ColonyNode:
    node = ColonyNode(SUBMITTER.member_id, GENESIS, PARAMS, sign=SUBMITTER.sign)
    node.start(0.0)
    return node


def test_the_submitter_reports_refused_only_once_every_keeper_refused() -> None:
    client = _client()
    spec = _spec(9)
    keepers = _submitted(client, spec)
    refusal = StoreAck(spec.pid, refused="quota")
    for k in keepers[:-1]:
        assert not _observed(client.on_message(k, refusal, 1.1), "refused")
    effects = client.on_message(keepers[-1], refusal, 1.1)
    assert [e.data for e in _observed(effects, "refused")] == [{"reason": "quota"}]
    assert spec.pid not in client.client.pending


def test_a_submission_one_keeper_stored_stays_pending_and_is_offered_again() -> None:
    client = _client()
    spec = _spec(10)
    keepers = _submitted(client, spec)
    client.on_message(keepers[0], StoreAck(spec.pid), 1.1)
    refusal = StoreAck(spec.pid, refused="quota")
    for k in keepers[1:]:
        assert not _observed(client.on_message(k, refusal, 1.1), "refused")
    assert spec.pid in client.client.pending
    resent = client.on_timer(("submit", spec.pid), 2.5)
    sent_to = {e.to for e in resent if isinstance(e, fx.Send) and isinstance(e.msg, StoreSpec)}
    assert sent_to == set(keepers[1:])


def test_a_revoked_keeper_s_ack_does_not_count_towards_the_majority() -> None:
    client = _client()
    spec = _spec(11)
    keepers = _submitted(client, spec)
    client.on_message(keepers[0], StoreAck(spec.pid), 1.1)
    revoked = GENESIS.updated(OWNER, 1.2, remove=[keepers[0]])
    client.adopt_membership(revoked, 1.2)
    # two acks, one from a member no longer in the colony: not acknowledged yet
    assert not _observed(client.on_message(keepers[1], StoreAck(spec.pid), 1.3), "acknowledged")
    assert _observed(client.on_message(keepers[2], StoreAck(spec.pid), 1.5), "acknowledged")
