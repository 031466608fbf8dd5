"""A starting node learns the executors' ads from one member (CatchUp/CaughtUp) instead of
waiting a minute for their republication, and a forged relayed ad changes nothing."""

from __future__ import annotations

import dataclasses
import random
from typing import TypeVar

from colonyp2p.core import effects as fx
from colonyp2p.core.catchup import CATCHUP_ADS, CATCHUP_AFTER
from colonyp2p.core.messages import AdAnnounce, CatchUp, CaughtUp
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(31)
OWNER, ADMIN, EXEC_A, EXEC_B, USER = (Identity.from_seed(_rng.randbytes(32)) for _ in range(5))
GENESIS = MembershipSet.genesis(
    OWNER,
    "catchup",
    0.0,
    members=[
        Member(ADMIN.member_id, "admin"),
        Member(EXEC_A.member_id, "executor"),
        Member(EXEC_B.member_id, "executor"),
        Member(USER.member_id, "user"),
    ],
)


def _ad(who: Identity, at: float = 0.0) -> ExecutorAd:
    return ExecutorAd.create(who, at, executortype="edge", name="e", functions=("work",))


M = TypeVar("M")
ADS = {e.member_id: _ad(e) for e in (OWNER, EXEC_A, EXEC_B)}


def _node(me: Identity, membership: MembershipSet = GENESIS) -> ColonyNode:
    return ColonyNode(me.member_id, membership, Params(), ad=ADS.get(me.member_id))


def _sent(effects: list[fx.Effect], kind: type[M]) -> list[tuple[str, M]]:
    """(receiver, message) of each ``kind`` message sent."""
    return [(e.to, e.msg) for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, kind)]


def _timers(effects: list[fx.Effect], kind: str) -> list[fx.SetTimer]:
    return [e for e in effects if isinstance(e, fx.SetTimer) and e.key[0] == kind]


def _knowing_all(me: Identity = OWNER) -> ColonyNode:
    node = _node(me)
    node.start(0.0)
    for ad in ADS.values():
        if ad.executor_id != me.member_id:
            node.on_announcement(ad.executor_id, AdAnnounce(ad), 0.0)
    return node


def test_a_starting_node_asks_the_admins_first_then_the_others_until_one_answers() -> None:
    node = _node(EXEC_A)
    asked: list[str] = []
    effects = node.start(0.0)
    now = 0.0
    for attempt in range(len(CATCHUP_AFTER) + 2):
        asked += [to for to, _ in _sent(effects, CatchUp)]
        timers = _timers(effects, "catchup")
        if not timers:
            break
        assert timers[0].at == now + CATCHUP_AFTER[attempt]
        now = timers[0].at
        effects = node.on_timer(timers[0].key, now)
    others = sorted(m for m in GENESIS.member_ids if m not in (OWNER.member_id, ADMIN.member_id))
    others.remove(EXEC_A.member_id)
    # the owner and the admin first; then the rest, each once (4 others in all)
    assert asked[:2] == [OWNER.member_id, ADMIN.member_id]
    assert sorted(asked[2:]) == others
    assert len(asked) == len(GENESIS.member_ids) - 1


def test_an_answer_stops_the_asking_and_teaches_every_ad() -> None:
    owner = _knowing_all(OWNER)
    newcomer = _node(EXEC_A)
    ((_, ask),) = _sent(newcomer.start(0.0), CatchUp)
    assert ask.ad == ADS[EXEC_A.member_id]  # the asker's own ad rides along
    ((to, answer),) = _sent(owner.on_message(EXEC_A.member_id, ask, 0.1), CaughtUp)
    assert to == EXEC_A.member_id
    assert {ad.executor_id for ad in answer.ads} == {OWNER.member_id, EXEC_B.member_id}
    assert answer.membership is None  # the asker's version is current
    newcomer.on_message(OWNER.member_id, answer, 0.2)
    assert newcomer.ads == ADS
    assert not _sent(newcomer.on_timer(("catchup", 1), 1.0), CatchUp)
    spec = SignedSpec.create(FunctionSpec("work"), USER, GENESIS.colony_id, 1.0, b"n")
    ranked = newcomer.executor.best_ranked(spec, 3)
    assert ranked is not None and sorted(ranked) == sorted(ADS)


def test_a_forged_relayed_ad_refuses_the_whole_answer() -> None:
    newcomer = _node(EXEC_A)
    newcomer.start(0.0)
    genuine = ADS[EXEC_B.member_id]
    forged = dataclasses.replace(ADS[OWNER.member_id], capacity=64)  # signature no longer fits
    effects = newcomer.on_message(ADMIN.member_id, CaughtUp((genuine, forged)), 0.1)
    assert [e.code for e in effects if isinstance(e, fx.Reject)] == ["bad_ad"]
    assert set(newcomer.ads) == {EXEC_A.member_id}
    # not an answer: the asking goes on
    assert _sent(newcomer.on_timer(("catchup", 1), 1.0), CatchUp)


def test_an_ad_in_someone_elses_name_is_refused_and_not_answered() -> None:
    owner = _node(OWNER)
    owner.start(0.0)
    effects = owner.on_message(EXEC_A.member_id, CatchUp(1, ADS[EXEC_B.member_id]), 0.1)
    assert [e.code for e in effects if isinstance(e, fx.Reject)] == ["bad_ad"]
    assert not _sent(effects, CaughtUp)
    assert EXEC_B.member_id not in owner.ads


def test_a_newer_membership_comes_with_the_answer_and_its_members_ads_count() -> None:
    late = Identity.from_seed(_rng.randbytes(32))
    newer = GENESIS.updated(OWNER, 5.0, add=[Member(late.member_id, "executor")])
    owner = _node(OWNER, newer)
    owner.start(0.0)
    owner.on_announcement(late.member_id, AdAnnounce(_ad(late)), 0.0)
    restarted = _node(EXEC_B)  # it missed the join while it was down
    ((_, ask),) = _sent(restarted.start(6.0), CatchUp)
    ((_, answer),) = _sent(owner.on_message(EXEC_B.member_id, ask, 6.1), CaughtUp)
    assert answer.membership == newer
    restarted.on_message(OWNER.member_id, answer, 6.2)
    assert restarted.membership.version == newer.version
    assert late.member_id in restarted.ads


def test_ads_of_members_since_removed_are_skipped_not_refused() -> None:
    newcomer = _node(EXEC_A)
    newcomer.start(0.0)
    stranger = Identity.from_seed(_rng.randbytes(32))
    answer = CaughtUp((_ad(stranger), ADS[EXEC_B.member_id]))
    effects = newcomer.on_message(OWNER.member_id, answer, 0.1)
    assert not [e for e in effects if isinstance(e, fx.Reject)]
    assert set(newcomer.ads) == {EXEC_A.member_id, EXEC_B.member_id}


def test_many_ads_are_answered_in_several_messages() -> None:
    count = CATCHUP_ADS + 10
    idents = [Identity.from_seed(_rng.randbytes(32)) for _ in range(count)]
    big = MembershipSet.genesis(
        OWNER, "big", 0.0, members=[Member(i.member_id, "executor") for i in idents]
    )
    owner = ColonyNode(OWNER.member_id, big, Params())
    owner.start(0.0)
    for ident in idents:
        owner.on_announcement(ident.member_id, AdAnnounce(_ad(ident)), 0.0)
    asker = idents[0].member_id
    answers = _sent(owner.on_message(asker, CatchUp(big.version), 0.1), CaughtUp)
    assert [len(a.ads) for _, a in answers] == [CATCHUP_ADS, count - 1 - CATCHUP_ADS]
    relayed = [ad.executor_id for _, a in answers for ad in a.ads]
    assert sorted(relayed) == sorted(i.member_id for i in idents[1:])
