"""A starting node learns the executors' ads from one member (CatchUp/CaughtUp) instead of
waiting a minute for their republication, and a forged relayed ad changes nothing. A node
behind by several membership versions gets each of them, and adopts them only as a chain
from its own version; an answer nobody asked for is refused."""

from __future__ import annotations

import dataclasses
import random
from typing import Any, TypeVar

from colonyp2p.core import effects as fx
from colonyp2p.core.catchup import (
    CATCHUP_ADS,
    CATCHUP_AFTER,
    CHAIN_STEPS,
    history_key,
)
from colonyp2p.core.messages import AdAnnounce, CatchUp, CaughtUp, MembershipAnnounce
from colonyp2p.core.node import MEMBERSHIP, ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.signing import unsigned_bytes
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
    return ColonyNode(me.member_id, membership, Params(), ad=ADS.get(me.member_id), sign=me.sign)


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
    assert answer.chain == () and answer.ask == ask.ask  # the asker's version is current
    newcomer.on_message(OWNER.member_id, answer, 0.2)
    assert newcomer.ads == ADS
    assert not _sent(newcomer.on_timer(("catchup", 1), 1.0), CatchUp)
    spec = SignedSpec.create(FunctionSpec("work"), USER, GENESIS.colony_id, 1.0, b"n")
    ranked = newcomer.executor.best_ranked(spec, 3)
    assert ranked is not None and sorted(ranked) == sorted(ADS)


def test_a_forged_relayed_ad_refuses_the_whole_answer() -> None:
    newcomer = _node(EXEC_A)
    ((asked, ask),) = _sent(newcomer.start(0.0), CatchUp)
    genuine = ADS[EXEC_B.member_id]
    forged = dataclasses.replace(ADS[OWNER.member_id], capacity=64)  # signature no longer fits
    effects = newcomer.on_message(asked, CaughtUp((genuine, forged), ask=ask.ask), 0.1)
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
    assert answer.chain == (newer,) and answer.newest == newer.version
    restarted.on_message(OWNER.member_id, answer, 6.2)
    assert restarted.membership.version == newer.version
    assert late.member_id in restarted.ads


def test_ads_of_members_since_removed_are_skipped_not_refused() -> None:
    newcomer = _node(EXEC_A)
    ((asked, ask),) = _sent(newcomer.start(0.0), CatchUp)
    stranger = Identity.from_seed(_rng.randbytes(32))
    answer = CaughtUp((_ad(stranger), ADS[EXEC_B.member_id]), ask=ask.ask)
    effects = newcomer.on_message(asked, answer, 0.1)
    assert not [e for e in effects if isinstance(e, fx.Reject)]
    assert set(newcomer.ads) == {EXEC_A.member_id, EXEC_B.member_id}


def test_many_ads_are_answered_in_several_messages() -> None:
    count = CATCHUP_ADS + 10
    idents = [Identity.from_seed(_rng.randbytes(32)) for _ in range(count)]
    big = MembershipSet.genesis(
        OWNER, "big", 0.0, members=[Member(i.member_id, "executor") for i in idents]
    )
    owner = ColonyNode(OWNER.member_id, big, Params(), sign=OWNER.sign)
    owner.start(0.0)
    for ident in idents:
        owner.on_announcement(ident.member_id, AdAnnounce(_ad(ident)), 0.0)
    asker = idents[0].member_id
    answers = _sent(owner.on_message(asker, CatchUp(big.version), 0.1), CaughtUp)
    assert [len(a.ads) for _, a in answers] == [CATCHUP_ADS, count - 1 - CATCHUP_ADS]
    relayed = [ad.executor_id for _, a in answers for ad in a.ads]
    assert sorted(relayed) == sorted(i.member_id for i in idents[1:])


# --- membership versions ------------------------------------------------------------------


def _rejects(effects: list[fx.Effect]) -> list[str]:
    return [e.code for e in effects if isinstance(e, fx.Reject)]


def _versions(*changes: tuple[Identity, dict[str, Any]]) -> list[MembershipSet]:
    """GENESIS and the versions after it, each made by (signer, MembershipSet.updated's
    keyword arguments)."""
    out = [GENESIS]
    for i, (signer, kwargs) in enumerate(changes):
        out.append(out[-1].updated(signer, float(i + 1), **kwargs))
    return out


def _at(me: Identity, versions: list[MembershipSet]) -> ColonyNode:
    """A node that adopted every one of ``versions`` (its durable history)."""
    saved = {history_key(m.version): m for m in versions}
    node = ColonyNode(
        me.member_id,
        GENESIS,
        Params(),
        ad=ADS.get(me.member_id),
        durable={MEMBERSHIP: {"current": versions[-1], **saved}},
        sign=me.sign,
    )
    node.start(0.0)
    return node


def _forge(doc: MembershipSet, signer: Identity, **changes: Any) -> MembershipSet:
    unsigned = dataclasses.replace(doc, signer=signer.member_id, signature=b"", **changes)
    return dataclasses.replace(unsigned, signature=signer.sign(unsigned_bytes(unsigned)))


def test_a_revoked_admin_s_jump_is_refused_and_the_genuine_version_adopted_later() -> None:
    # The attack: C (EXEC_B) is at v1, where ADMIN is an admin; v2 revoked ADMIN while C was
    # away; ADMIN sends C a v2^63-1 of its own, keeping itself and adding an admin.
    revocation = GENESIS.updated(OWNER, 1.0, remove=[ADMIN.member_id])
    accomplice = Identity.from_seed(_rng.randbytes(32))
    own = GENESIS.updated(ADMIN, 2.0, add=[Member(accomplice.member_id, "admin")])
    jump = _forge(own, ADMIN, version=2**63 - 1)
    c = _node(EXEC_B)
    c.start(0.0)
    effects = c.on_announcement(ADMIN.member_id, MembershipAnnounce(jump), 1.0)
    assert c.membership is GENESIS
    # too far ahead to judge: C asks the publisher for the versions between, and answers
    # only the versions that follow its own, one by one
    asks = dict(_sent(effects, CatchUp))
    assert sorted(asks) == sorted([ADMIN.member_id, OWNER.member_id])
    assert {(a.have_version, a.ads) for a in asks.values()} == {(1, False)}
    answer = CaughtUp(chain=(jump,), ask=asks[ADMIN.member_id].ask)
    assert _rejects(c.on_message(ADMIN.member_id, answer, 1.1)) == ["membership_gap"]
    assert c.membership is GENESIS
    # the owner's answer brings the genuine version; the jump stays refused
    ((_, genuine),) = _sent(
        _at(OWNER, [GENESIS, revocation]).on_message(EXEC_B.member_id, asks[OWNER.member_id], 1.2),
        CaughtUp,
    )
    assert not _rejects(c.on_message(OWNER.member_id, genuine, 1.3))
    assert c.membership is revocation
    assert not c.membership.is_member(ADMIN.member_id)
    c.on_announcement(OWNER.member_id, MembershipAnnounce(jump), 5.0)
    assert c.membership is revocation
    # and what the revoked admin signs next is refused
    after = _forge(own, ADMIN, version=3)
    refused = c.on_announcement(OWNER.member_id, MembershipAnnounce(after), 6.0)
    assert _rejects(refused) == ["unauthorized"]
    assert c.membership is revocation


def test_a_member_behind_by_several_versions_gets_the_chain_and_adopts_it() -> None:
    promoted = {"set_roles": {EXEC_A.member_id: "admin"}}
    versions = _versions(
        (OWNER, promoted),
        (EXEC_A, {"remove": [USER.member_id]}),  # an admin since v2 only
        (ADMIN, {"remove": [EXEC_A.member_id]}),
    )
    owner = _at(OWNER, versions)
    behind = _node(EXEC_B)
    behind.start(0.0)
    effects = behind.on_announcement(OWNER.member_id, MembershipAnnounce(versions[-1]), 1.0)
    ((to, ask),) = _sent(effects, CatchUp)
    assert to == OWNER.member_id and behind.membership is GENESIS
    ((_, answer),) = _sent(owner.on_message(EXEC_B.member_id, ask, 1.1), CaughtUp)
    assert answer.chain == tuple(versions[1:]) and answer.ask == ask.ask
    effects = behind.on_message(OWNER.member_id, answer, 1.2)
    assert not _rejects(effects)
    assert behind.membership is versions[-1]
    assert behind.catchup.versions() == tuple(versions)
    # every version is kept durably, for members behind this one and for joins
    kept = {e.key for e in effects if isinstance(e, fx.Persist) and e.table == MEMBERSHIP}
    assert kept == {"current", *(history_key(v) for v in (2, 3, 4))}


def test_a_chain_with_a_forged_step_changes_nothing() -> None:
    v2 = GENESIS.updated(OWNER, 1.0, remove=[USER.member_id])
    by_executor = _forge(v2.updated(OWNER, 2.0, remove=[ADMIN.member_id]), EXEC_A)
    behind = _node(EXEC_B)
    ((asked, ask),) = _sent(behind.start(0.0), CatchUp)
    answer = CaughtUp((ADS[EXEC_A.member_id],), chain=(v2, by_executor), ask=ask.ask)
    effects = behind.on_message(asked, answer, 0.1)
    assert _rejects(effects) == ["unauthorized"]
    assert behind.membership is GENESIS and EXEC_A.member_id not in behind.ads
    assert _sent(behind.on_timer(("catchup", 1), 1.0), CatchUp)  # not an answer


def test_an_answer_nobody_asked_for_is_refused() -> None:
    v2 = GENESIS.updated(OWNER, 1.0, remove=[USER.member_id])
    node = _node(EXEC_B)
    ((asked, ask),) = _sent(node.start(0.0), CatchUp)
    assert asked == OWNER.member_id
    ad = ADS[EXEC_A.member_id]
    for sender, msg in (
        (OWNER.member_id, CaughtUp((ad,), chain=(v2,), ask=ask.ask + 1)),  # never asked
        (ADMIN.member_id, CaughtUp((ad,), chain=(v2,), ask=ask.ask)),  # asked someone else
        (OWNER.member_id, CaughtUp((ad,), chain=(v2,))),  # no question at all
    ):
        assert _rejects(node.on_message(sender, msg, 0.1)) == ["unsolicited"]
    assert node.membership is GENESIS and EXEC_A.member_id not in node.ads
    assert node.counters["unsolicited"] == 3
    # the answer to the question asked counts
    node.on_message(OWNER.member_id, CaughtUp((ad,), chain=(v2,), ask=ask.ask), 0.2)
    assert node.membership is v2 and EXEC_A.member_id in node.ads


def test_a_long_chain_comes_in_several_answers() -> None:
    changes = [(OWNER, {"set_roles": {USER.member_id: r}}) for r in ("admin", "user") * 40]
    versions = _versions(*changes)
    assert len(versions) > CHAIN_STEPS + 1
    owner = _at(OWNER, versions)
    behind = _node(EXEC_B)
    behind.start(0.0)
    effects = behind.on_announcement(OWNER.member_id, MembershipAnnounce(versions[-1]), 1.0)
    answers = 0
    while asks := _sent(effects, CatchUp):
        ((_, ask),) = asks
        ((_, answer),) = _sent(owner.on_message(EXEC_B.member_id, ask, 1.1), CaughtUp)
        assert len(answer.chain) <= CHAIN_STEPS
        effects = behind.on_message(OWNER.member_id, answer, 1.2)
        answers += 1
    assert answers == 2 and behind.membership is versions[-1]


def test_a_next_version_on_gossip_is_adopted_without_asking() -> None:
    v2 = GENESIS.updated(ADMIN, 1.0, remove=[USER.member_id])
    node = _node(EXEC_B)
    node.start(0.0)
    effects = node.on_announcement(ADMIN.member_id, MembershipAnnounce(v2), 1.0)
    assert node.membership is v2 and not _sent(effects, CatchUp)
    # a different v2 (another admin's, or the same admin's twice) is counted, not adopted
    other = GENESIS.updated(OWNER, 1.5, remove=[EXEC_A.member_id])
    effects = node.on_announcement(OWNER.member_id, MembershipAnnounce(other), 2.0)
    assert _rejects(effects) == ["membership_fork"] and node.membership is v2
