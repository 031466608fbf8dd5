"""How keepers count tries: a lease that ran out after its holder renewed it is one try
used; one that ran out with no renewal (a claim that lost a contended ballot and whose
Release was lost, or an executor that died as it started) counts against a budget three
times larger; a process out of tries is failed by its keepers, not handed to a claim."""

from __future__ import annotations

import random

from core_effects import placed

from colonyp2p.core import effects as fx
from colonyp2p.core.keeper import SILENT_EXPIRIES_PER_TRY
from colonyp2p.core.messages import Prepare, Promise, Refuse, Renew, RenewAck, StoreSpec
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(5)
OWNER, EXEC_A, EXEC_B = (Identity.from_seed(_rng.randbytes(32)) for _ in range(3))
GENESIS = MembershipSet.genesis(
    OWNER,
    "leases",
    0.0,
    members=[Member(EXEC_A.member_id, "executor"), Member(EXEC_B.member_id, "executor")],
)
PARAMS = Params(keepers=1)
A, B = EXEC_A.member_id, EXEC_B.member_id
EXPIRED = 2.0 + PARAMS.lease_seconds + 0.1


def _keeper_with_spec(maxretries: int = 1) -> tuple[ColonyNode, str]:
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    spec = SignedSpec.create(
        FunctionSpec("work", maxretries=maxretries), OWNER, GENESIS.colony_id, 1.0, b"n"
    )
    node.on_message(OWNER.member_id, placed(StoreSpec(spec, (OWNER.member_id,), 1), OWNER), 1.0)
    return node, spec.pid


def _sent(effects: list[fx.Effect], to: str) -> list[object]:
    return [e.msg for e in effects if isinstance(e, fx.Send) and e.to == to]


def _promise(effects: list[fx.Effect], to: str) -> Promise:
    promises = [m for m in _sent(effects, to) if isinstance(m, Promise)]
    assert len(promises) == 1, _sent(effects, to)
    return promises[0]


def _started(node: ColonyNode, pid: str, holder: str, epoch: int, now: float) -> None:
    """A renewal from the holder: it runs the process."""
    tag = config_tag((OWNER.member_id,))
    acks = _sent(node.on_message(holder, Renew(pid, epoch, tag), now), holder)
    assert acks == [RenewAck(pid, epoch, True, PARAMS.lease_seconds)]


def test_a_holder_asking_again_while_its_lease_lives_uses_no_try() -> None:
    node, pid = _keeper_with_spec()
    assert _promise(node.on_message(A, Prepare(pid, 1, "claim"), 2.0), A).expired_attempts == 0
    # Its retry at a higher epoch overtakes the Release of epoch 1.
    again = _promise(node.on_message(A, Prepare(pid, 2, "claim"), 2.1), A)
    assert again.expired_attempts == 0


def test_a_lease_that_ran_out_while_its_holder_ran_is_one_try_used() -> None:
    node, pid = _keeper_with_spec()
    node.on_message(A, Prepare(pid, 1, "claim"), 2.0)
    _started(node, pid, A, 1, 2.0)
    taken = _promise(node.on_message(B, Prepare(pid, 2, "claim"), EXPIRED + 0.1), B)
    assert taken.expired_attempts == 1


def test_leases_that_ran_out_unrenewed_use_no_try_until_three_times_the_budget() -> None:
    # e.g. claims that lost their ballots and whose Releases were lost with a connection
    node, pid = _keeper_with_spec(maxretries=0)
    node.on_message(A, Prepare(pid, 1, "claim"), 2.0)
    now, holders = 2.0, [B, A]
    for epoch in range(2, SILENT_EXPIRIES_PER_TRY + 1):
        now += PARAMS.lease_seconds + 0.1
        holder = holders[epoch % 2]
        taken = _promise(node.on_message(holder, Prepare(pid, epoch, "claim"), now), holder)
        assert taken.expired_attempts == 0
        assert node.keeper.records[pid].silent_expiries == epoch - 1
    # one more unrenewed expiry and it is out of tries
    now += PARAMS.lease_seconds + 0.1
    refused = _sent(node.on_message(B, Prepare(pid, 9, "claim"), now), B)
    assert [type(m) for m in refused] == [Refuse]
    node.on_timer(("tick",), now + 1.0)
    rec = node.keeper.records[pid]
    assert rec.decided is not None and rec.decided.kind == "failed"
    assert "before their holders renewed them" in rec.decided.errors[0]


def test_a_process_out_of_tries_is_refused_to_claims_and_failed_by_its_keepers() -> None:
    node, pid = _keeper_with_spec(maxretries=0)
    node.on_message(A, Prepare(pid, 1, "claim"), 2.0)
    _started(node, pid, A, 1, 2.0)
    refused = _sent(node.on_message(B, Prepare(pid, 2, "claim"), EXPIRED), B)
    assert [type(m) for m in refused] == [Refuse]
    assert isinstance(refused[0], Refuse) and refused[0].reason == "not_ready"
    assert node.keeper.records[pid].expired_attempts == 1
    # its keeper (the only one here) fails it, with the reason
    node.on_timer(("tick",), EXPIRED + 1.0)
    rec = node.keeper.records[pid]
    assert rec.decided is not None and rec.decided.kind == "failed"
    assert "maxretries exceeded: 1 leases expired (maxretries 0)" in rec.decided.errors[0]
