"""How keepers count attempts: a lease that ran out is one try used; a claim that lost a
contended ballot and asks again before its Release arrives is not."""

from __future__ import annotations

import random

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import Prepare, Promise, StoreSpec
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
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


def _keeper_with_spec() -> tuple[ColonyNode, str]:
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS)
    node.start(0.0)
    spec = SignedSpec.create(
        FunctionSpec("work", maxretries=0), OWNER, GENESIS.colony_id, 1.0, b"n"
    )
    node.on_message(OWNER.member_id, StoreSpec(spec, (OWNER.member_id,), 1), 1.0)
    return node, spec.pid


def _promise(effects: list[fx.Effect], to: str) -> Promise:
    sent = [e.msg for e in effects if isinstance(e, fx.Send) and e.to == to]
    promises = [m for m in sent if isinstance(m, Promise)]
    assert len(promises) == 1, sent
    return promises[0]


def test_a_holder_asking_again_while_its_lease_lives_uses_no_attempt() -> None:
    node, pid = _keeper_with_spec()
    a = EXEC_A.member_id
    assert _promise(node.on_message(a, Prepare(pid, 1, "claim"), 2.0), a).expired_attempts == 0
    # Its retry at a higher epoch overtakes the Release of epoch 1.
    again = _promise(node.on_message(a, Prepare(pid, 2, "claim"), 2.1), a)
    assert again.expired_attempts == 0
    assert node.keeper.records[pid].expired_attempts == 0


def test_a_lease_that_ran_out_is_one_attempt_used() -> None:
    node, pid = _keeper_with_spec()
    a, b = EXEC_A.member_id, EXEC_B.member_id
    node.on_message(a, Prepare(pid, 1, "claim"), 2.0)
    after_expiry = 2.0 + PARAMS.lease_seconds + 0.1
    taken = _promise(node.on_message(b, Prepare(pid, 2, "claim"), after_expiry), b)
    assert taken.expired_attempts == 1
    # The same holder coming back after its own lease ran out used a try as well.
    node2, pid2 = _keeper_with_spec()
    node2.on_message(a, Prepare(pid2, 1, "claim"), 2.0)
    back = _promise(node2.on_message(a, Prepare(pid2, 2, "claim"), after_expiry), a)
    assert back.expired_attempts == 1
