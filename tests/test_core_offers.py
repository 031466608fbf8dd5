"""Two shortcuts around waiting: an announcement goes straight to the executor that ranks
first (an Offer), and a member whose connections all dropped loses its leases at once
and is passed over in rankings until it is heard from again."""

from __future__ import annotations

import random
import sys

from core_effects import placed
from hypothesis import given
from hypothesis import strategies as st

from colonyp2p.core import effects as fx
from colonyp2p.core.executor import OFFER_TO
from colonyp2p.core.messages import (
    AdAnnounce,
    Offer,
    Prepare,
    Promise,
    Query,
    Refuse,
    Renew,
    SpecAnnounce,
    StoreSpec,
)
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.ranking import config_tag, rendezvous_rank, rendezvous_score
from colonyp2p.identity import Identity, dht_key
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

_rng = random.Random(23)
OWNER, EXEC_A, EXEC_B, EXEC_C = (Identity.from_seed(_rng.randbytes(32)) for _ in range(4))
EXECUTORS = (EXEC_A, EXEC_B, EXEC_C)
GENESIS = MembershipSet.genesis(
    OWNER, "offers", 0.0, members=[Member(e.member_id, "executor") for e in EXECUTORS]
)
PARAMS = Params(keepers=1)
ADS = {
    e.member_id: ExecutorAd.create(
        e, 0.0, executortype="edge", name=f"e{n}", functions=("work",), hardware=Hardware()
    )
    for n, e in enumerate(EXECUTORS)
}


def _sent(effects: list[fx.Effect], to: str | None = None) -> list[object]:
    return [e.msg for e in effects if isinstance(e, fx.Send) and to in (None, e.to)]


def _spec(n: int, maxretries: int = 0) -> SignedSpec:
    spec = FunctionSpec("work", maxretries=maxretries)
    return SignedSpec.create(spec, OWNER, GENESIS.colony_id, 1.0, n.to_bytes(4, "big"))


def _kept_here(node: ColonyNode, first: int) -> SignedSpec:
    """A spec (from nonce ``first`` on) whose one keeper is ``node``: it is acknowledged
    in the submitting step, which then announces it."""
    return next(
        s
        for s in (_spec(n) for n in range(first, first + 64))
        if node.keepers_for(s.pid) == (node.member_id,)
    )


def _ranked(pid: str) -> list[str]:
    """The executors in the order they rank for ``pid`` (best first)."""
    return sorted(ADS, key=lambda m: rendezvous_score(dht_key(m), pid))


def _node(me: Identity = OWNER) -> ColonyNode:
    node = ColonyNode(me.member_id, GENESIS, PARAMS, ad=ADS.get(me.member_id), sign=me.sign)
    node.start(0.0)
    for ad in ADS.values():
        if ad.executor_id != me.member_id:
            node.on_announcement(ad.executor_id, AdAnnounce(ad), 0.0)
    return node


def _offered(effects: list[fx.Effect]) -> list[str]:
    return [e.to for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, Offer)]


def test_a_new_process_is_offered_to_the_best_ranked_executors_and_not_gossiped() -> None:
    node = _node()
    spec = _kept_here(node, 1)
    effects = node.submit(spec, 1.0)  # its own keeper acknowledges: the client publishes
    assert _offered(effects) == _ranked(spec.pid)[:OFFER_TO]
    announce = SpecAnnounce(spec, (OWNER.member_id,), 0)
    offers = [m for m in _sent(effects) if isinstance(m, Offer)]
    assert offers == [Offer(announce, rank) for rank in range(OFFER_TO)]
    assert not [e for e in effects if isinstance(e, fx.Publish)]


def test_a_re_announcement_goes_on_gossip_and_to_the_best_ranked_executor() -> None:
    node = _node()
    spec = _kept_here(node, 64)
    node.submit(spec, 1.0)
    later = node.on_timer(("tick",), 1.0 + PARAMS.reannounce_after + 0.5)
    published = [e.item for e in later if isinstance(e, fx.Publish)]
    assert published == [SpecAnnounce(spec, (OWNER.member_id,), 1)]
    assert _offered(later) == _ranked(spec.pid)[:1]


def test_without_known_executors_a_new_process_goes_on_gossip() -> None:
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)  # no ads heard yet
    node.start(0.0)
    effects = node.submit(_kept_here(node, 128), 1.0)
    assert not _offered(effects)
    assert [type(e.item) for e in effects if isinstance(e, fx.Publish)] == [SpecAnnounce]


def test_a_lost_executor_is_not_offered_and_not_counted_in_ranks() -> None:
    node = _node()
    spec = _kept_here(node, 192)
    best, second = _ranked(spec.pid)[:2]
    node.on_peer_lost(best, 0.5)
    effects = node.submit(spec, 1.0)
    assert _offered(effects) == [m for m in _ranked(spec.pid) if m != best]
    # the second executor, knowing the first lost too, claims at once (slot 0)
    executor = _node(next(e for e in EXECUTORS if e.member_id == second))
    executor.on_peer_lost(best, 0.5)
    claims = executor.on_message(OWNER.member_id, Offer(SpecAnnounce(spec, ("k",), 0)), 1.0)
    assert any(isinstance(m, Prepare) for m in _sent(claims, "k"))


def test_an_offered_executor_does_not_claim_again_when_gossip_brings_the_same_round() -> None:
    spec = _spec(3)
    executor = _node(next(e for e in EXECUTORS if e.member_id == _ranked(spec.pid)[0]))
    keeper = OWNER.member_id
    announce = SpecAnnounce(spec, (keeper,), 0)
    first = executor.on_message(keeper, Offer(announce), 1.0)
    claims = [m for m in _sent(first, keeper) if isinstance(m, Prepare)]
    assert len(claims) == 1
    # someone else holds it: the claim ends, the executor forgets the process
    executor.on_message(keeper, Refuse(spec.pid, claims[0].epoch, "leased", 5), 1.01)
    assert spec.pid not in executor.executor.active
    # the same announcement, by gossip a moment later, is not claimed again
    again = executor.on_announcement(keeper, announce, 1.05)
    assert not [m for m in _sent(again) if isinstance(m, Prepare)]
    # a later round (a keeper announcing it again) is
    later = executor.on_announcement(keeper, SpecAnnounce(spec, (keeper,), 1), 9.0)
    assert [m for m in _sent(later) if isinstance(m, Prepare)]


def test_a_lost_holder_s_lease_ends_at_once_and_another_claim_is_promised() -> None:
    node = ColonyNode(OWNER.member_id, GENESIS, PARAMS, sign=OWNER.sign)
    node.start(0.0)
    spec = _spec(4, maxretries=1)
    node.on_message(OWNER.member_id, placed(StoreSpec(spec, (OWNER.member_id,), 1), OWNER), 1.0)
    a, b = EXEC_A.member_id, EXEC_B.member_id
    node.on_message(a, Prepare(spec.pid, 1, "claim"), 2.0)
    tag = config_tag((OWNER.member_id,))
    node.on_message(a, Renew(spec.pid, 1, tag), 3.0)
    refused = _sent(node.on_message(b, Prepare(spec.pid, 2, "claim"), 3.5), b)
    assert [type(m) for m in refused] == [Refuse]  # its lease lives: b gives up
    lost = node.on_peer_lost(a, 4.0)
    republished = [e.item for e in lost if isinstance(e, fx.Publish)]
    assert [type(i) for i in republished] == [SpecAnnounce]  # at once, no tick needed
    promised = _sent(node.on_message(b, Prepare(spec.pid, 3, "claim"), 4.01), b)
    assert [type(m) for m in promised] == [Promise]
    assert isinstance(promised[0], Promise) and promised[0].expired_attempts == 1


def test_a_lost_member_heard_from_again_is_ranked_again() -> None:
    node = _node()
    a = EXEC_A.member_id
    node.on_peer_lost(a, 1.0)
    assert a in node.lost
    node.on_message(a, Query("nothing"), 2.0)
    assert a not in node.lost
    spec = next(
        s for s in (_kept_here(node, n * 64) for n in range(4, 40)) if _ranked(s.pid)[0] == a
    )
    assert _offered(node.submit(spec, 3.0))[0] == a


def test_an_offer_s_rank_stands_for_a_better_ranked_executor_lost_before_we_knew() -> None:
    spec = _spec(7)
    second = _ranked(spec.pid)[1]
    executor = _node(next(e for e in EXECUTORS if e.member_id == second))
    keeper = OWNER.member_id
    # we have not yet noticed that ``best`` is lost; the sender has, and offers rank 0
    claims = executor.on_message(keeper, Offer(SpecAnnounce(spec, (keeper,), 0), 0), 1.0)
    assert [m for m in _sent(claims, keeper) if isinstance(m, Prepare)]
    # without that, we would wait a claim slot for ``best``
    other = _node(next(e for e in EXECUTORS if e.member_id == second))
    waits = other.on_message(keeper, Offer(SpecAnnounce(spec, (keeper,), 0), 1), 1.0)
    assert not [m for m in _sent(waits, keeper) if isinstance(m, Prepare)]


@given(
    keys=st.lists(st.integers(0, 2**64 - 1), max_size=80),
    me=st.integers(0, 2**64 - 1),
    pid=st.text("0123456789abcdef", min_size=64, max_size=64),
    limit=st.integers(1, 100),
)
def test_an_executor_s_rank_counts_the_better_scores_up_to_the_limit(
    keys: list[int], me: int, pid: str, limit: int
) -> None:
    better = sum(rendezvous_score(k, pid) < rendezvous_score(me, pid) for k in keys)
    assert rendezvous_rank(me, iter(keys), pid, limit) == min(better, limit)


def test_a_keeper_that_notices_a_lost_holder_re_announces_at_once_out_of_turn() -> None:
    # The keeper first in turn may not have noticed the loss yet, and a claim it refused
    # as leased meanwhile has given up: waiting for its turn would cost a stagger.
    first, me = EXEC_C.member_id, EXEC_B.member_id
    node = ColonyNode(me, GENESIS, PARAMS, sign=EXEC_B.sign)
    node.start(0.0)
    spec = _spec(11)
    keepers = (first, me)
    node.on_message(OWNER.member_id, placed(StoreSpec(spec, keepers, 1), OWNER), 1.0)
    node.on_message(EXEC_A.member_id, Prepare(spec.pid, 1, "claim", config_tag(keepers)), 2.0)
    lost = node.on_peer_lost(EXEC_A.member_id, 3.0)
    again = [e.item for e in lost if isinstance(e, fx.Publish)]
    assert [type(i) for i in again] == [SpecAnnounce]  # not PARAMS.stagger s later
    assert first not in node.lost  # its turn comes first, had it been an expiry


def test_another_keeper_s_announcement_of_the_same_round_is_taken_up() -> None:
    # Keepers count rounds each for itself. A claim refused as leased (this keeper had
    # not yet noticed the holder lost) must not make the executor deaf to the round the
    # other keeper announces when it notices.
    spec = _spec(12)
    me = _ranked(spec.pid)[0]
    executor = _node(next(e for e in EXECUTORS if e.member_id == me))
    keeper, other = OWNER.member_id, next(m for m in ADS if m != me)
    keepers = (keeper, other)
    first = executor.on_message(keeper, Offer(SpecAnnounce(spec, keepers, 1)), 1.0)
    (claim,) = [m for m in _sent(first, keeper) if isinstance(m, Prepare)]
    executor.on_message(keeper, Refuse(spec.pid, claim.epoch, "leased", 5), 1.01)
    assert spec.pid not in executor.executor.active
    again = executor.on_message(other, Offer(SpecAnnounce(spec, keepers, 1)), 1.02)
    assert [m for m in _sent(again, keeper) if isinstance(m, Prepare)]


def test_a_backlog_its_own_keeper_refuses_is_worked_through_without_recursion() -> None:
    """A claim the node's own keeper refuses ends inside the claim (the Prepare loops
    back), and each end takes the next candidate: a daemon with a backlog of those died
    of RecursionError in a 5-daemon throughput run."""
    node = _node(EXEC_A)
    me, other = EXEC_A.member_id, EXEC_B.member_id
    holding = [_spec(10_000 + i) for i in range(node.executor.capacity)]
    for s in holding:  # kept elsewhere: these claims wait for an answer and fill the slots
        node.on_message(OWNER.member_id, Offer(SpecAnnounce(s, (other,), 0), 0), 1.0)
    assert len(node.executor.active) == node.executor.capacity
    # kept here, by a keeper that has never heard of them: refused at once ("unknown")
    backlog = [_spec(20_000 + i) for i in range(3 * sys.getrecursionlimit() // 10)]
    for s in backlog:
        node.on_message(OWNER.member_id, Offer(SpecAnnounce(s, (me,), 0), 0), 1.0)
    assert set(node.executor.candidates) == {s.pid for s in backlog}
    out = node.on_message(other, Refuse(holding[0].pid, 1, "leased", 1), 1.0)
    assert not node.executor.candidates  # every one claimed, and refused
    assert set(node.executor.active) == {s.pid for s in holding[1:]}
    assert not [m for m in _sent(out) if isinstance(m, Prepare)]  # all of them local


def test_an_unanswered_prepare_is_resent_backing_off_then_given_up() -> None:
    """Keepers that answer late are busy: resends come after 1, 2, 4, 4 and 4 request
    timeouts, not at a fixed pace, and then the claim is given up."""
    node = _node(EXEC_A)
    other = EXEC_B.member_id
    spec = _spec(30_000)
    key = ("ballot", spec.pid, 1)
    out = node.on_message(OWNER.member_id, Offer(SpecAnnounce(spec, (other,), 0), 0), 1.0)
    assert [m for m in _sent(out, other) if isinstance(m, Prepare)]
    timeout = PARAMS.request_timeout
    waits = []
    now = 1.0
    while True:
        due = [e.at for e in out if isinstance(e, fx.SetTimer) and e.key == key]
        if not due:
            break
        waits.append(round((due[0] - now) / timeout, 6))
        now = due[0]
        out = node.on_timer(key, now)
        resent = [m for m in _sent(out, other) if isinstance(m, Prepare)]
        assert bool(resent) == bool([e for e in out if isinstance(e, fx.SetTimer)])
    assert waits == [1, 2, 4, 4, 4]
    assert spec.pid not in node.executor.active and spec.pid not in node.executor.candidates
