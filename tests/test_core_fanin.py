"""A gather's keeper learns its parents' outcomes one by one: it writes the record once,
when the last parent is known (not once per parent: a fan-in of n would write O(n^2)
bytes), and after a restart it asks the parents' keepers again for what it lost."""

from __future__ import annotations

import random
from typing import Any

from core_effects import certificate, placed

from colonyp2p.core import effects as fx
from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import Outcome, ParentRef, Query, Status, StoreSpec
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.records import KeeperRecord
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(11)
OWNER, PARENT_KEEPER = (Identity.from_seed(_rng.randbytes(32)) for _ in range(2))
GENESIS = MembershipSet.genesis(
    OWNER, "fanin", 0.0, members=[Member(PARENT_KEEPER.member_id, "executor")]
)
PARAMS = Params(keepers=1)
P = PARENT_KEEPER.member_id
PARENTS = tuple(ParentRef(f"parent-{i:03d}", (P,)) for i in range(40))


def _done(i: int) -> Status:
    outcome = Outcome("successful", output=(i,), executor=P, run_epoch=1)
    pid = PARENTS[i].pid
    cert = certificate(GENESIS.colony_id, pid, (P,), 1, 1, outcome, PARENT_KEEPER)
    return Status(pid, True, "successful", 1, outcome, 1, certificate=cert)


def _persisted(effects: list[fx.Effect], pid: str) -> list[KeeperRecord]:
    return [
        e.value
        for e in effects
        if isinstance(e, fx.Persist) and e.table == RECORDS and e.key == pid
    ]


def _queried(effects: list[fx.Effect]) -> set[str]:
    return {
        e.msg.pid
        for e in effects
        if isinstance(e, fx.Send) and e.to == P and isinstance(e.msg, Query) and e.msg.watch
    }


def _apply(durable: dict[str, dict[str, Any]], effects: list[fx.Effect]) -> None:
    for e in effects:
        if isinstance(e, fx.Persist):
            durable.setdefault(e.table, {})[e.key] = e.value


def _gather_keeper() -> tuple[ColonyNode, str, dict[str, dict[str, Any]]]:
    durable: dict[str, dict[str, Any]] = {}
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, durable=durable, sign=OWNER.sign)
    _apply(durable, node.start(0.0))
    spec = SignedSpec.create(FunctionSpec("gather"), OWNER, GENESIS.colony_id, 1.0, b"g")
    store = placed(StoreSpec(spec, (OWNER.member_id,), 1, PARENTS), OWNER)
    _apply(durable, node.on_message(OWNER.member_id, store, 1.0))
    first_poll = node.on_timer(("tick",), 1.5)
    _apply(durable, first_poll)
    assert _queried(first_poll) == {p.pid for p in PARENTS}
    return node, spec.pid, durable


def test_the_record_is_written_once_when_the_last_parent_is_known() -> None:
    node, pid, durable = _gather_keeper()
    written: list[KeeperRecord] = []
    for i in range(len(PARENTS)):
        effects = node.on_message(P, _done(i), 2.0 + i * 0.01)
        _apply(durable, effects)
        written += _persisted(effects, pid)
    assert len(written) == 1
    assert written[0].ready()
    assert written[0].inputs() == tuple(range(len(PARENTS)))


def test_a_restart_asks_again_for_the_parents_it_had_not_written() -> None:
    node, pid, durable = _gather_keeper()
    for i in range(30):
        _apply(durable, node.on_message(P, _done(i), 2.0))
    restarted = ColonyNode(OWNER.member_id, GENESIS, PARAMS, durable=durable, sign=OWNER.sign)
    effects = restarted.start(3.0)
    effects += restarted.on_timer(("tick",), 3.5)
    _apply(durable, effects)
    kept = durable[RECORDS][pid]
    assert _queried(effects) >= {p.pid for p in PARENTS if kept.parent_outcome(p.pid) is None}
    for i in range(len(PARENTS)):
        _apply(durable, restarted.on_message(P, _done(i), 4.0))
    rec = durable[RECORDS][pid]
    assert rec.ready() and rec.inputs() == tuple(range(len(PARENTS)))
