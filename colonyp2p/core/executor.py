"""The executor role: which announced processes this node should claim, and when.

Executors rank themselves per process by rendezvous hashing: the best-ranked of
the matching executors claims at once, the next ones a slot later each, so
contention is rare and no coordinator is needed. Among a few matching executors
(EXACT_RANKS) each computes its exact rank, so one claims first; in larger colonies
an executor estimates its rank from its own score and the number of matching ads,
``claim_fanout`` of them per slot. Among processes it may claim,
an executor takes the highest priority first, then the oldest.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from colonyp2p.core.matching import matches
from colonyp2p.core.messages import SpecAnnounce
from colonyp2p.core.ranking import rendezvous_rank, rendezvous_score
from colonyp2p.identity import dht_key
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode

AGE_BUCKET = 5.0  # seconds: within a bucket, rendezvous order replaces strict FIFO
EXACT_RANKS = 64  # up to this many matching executors, each computes its exact rank
MAX_CLAIM_RETRIES = 3
SEEN_KEPT = 8192  # processes whose latest announcement round an executor remembers
OFFER_TO = 3  # a new process is offered to this many best-ranked executors (claim slots 0-2)


@dataclass(slots=True)
class Candidate:
    spec: SignedSpec
    keepers: tuple[str, ...]
    ready_at: float
    key: tuple[int, int, int, float]
    epoch_hint: int = 1
    retries: int = 0


class ExecutorRole:
    def __init__(self, node: ColonyNode, ad: ExecutorAd | None) -> None:
        self.node = node
        self.ad = ad
        self.capacity = ad.capacity if ad else 0
        self.my_key = dht_key(node.member_id)
        self.candidates: dict[str, Candidate] = {}
        self._pending: list[tuple[float, str]] = []  # (ready_at, pid)
        self._ready: list[tuple[tuple[int, int, int, float], str]] = []
        self.active: dict[str, int] = {}  # pid -> epoch of claims in flight or running
        self._wake_at = math.inf
        self._claiming = False  # try_claim is running (see there)
        self._again = False
        # per _match_key: a spec with it, and the executors whose ads match it
        self._matching: dict[object, tuple[FunctionSpec, set[str]]] = {}
        self._keys: dict[str, int] = {}
        self._retries: dict[str, int] = {}
        # (pid, announcer) -> the latest round taken up: the same announcement again (an
        # Offer and then its gossip) is not claimed twice. Per announcer, because keepers
        # count rounds each for itself: the round a keeper announces when it notices the
        # holder lost may be the one another keeper's announcement, refused a moment
        # earlier as leased, carried.
        self._seen: dict[tuple[str, str], int] = {}

    def ads_changed(self, old: ExecutorAd | None, new: ExecutorAd | None) -> None:
        """An ad was added, replaced or dropped: keep the match sets without recounting."""
        for s, members in self._matching.values():
            if old is not None and matches(s, old):
                members.discard(old.executor_id)
            if new is not None and matches(s, new):
                members.add(new.executor_id)

    def _matching_executors(self, spec: SignedSpec) -> set[str]:
        s = spec.spec
        key = _match_key(s)
        known = self._matching.get(key)
        if known is None:
            members = {ad.executor_id for ad in self.node.ads.values() if matches(s, ad)}
            self._matching[key] = (s, members)
            return members
        return known[1]

    def _key(self, member: str) -> int:
        key = self._keys.get(member)
        if key is None:
            key = self._keys[member] = dht_key(member)
        return key

    def _slot(self, spec: SignedSpec, score: float, limit: int) -> int:
        """How many claim slots this executor waits for ``spec``, up to ``limit``."""
        matching, me = self._matching_executors(spec), self.node.member_id
        others = len(matching) - (me in matching)
        if others < EXACT_RANKS:
            lost, key = self.node.lost, self._key
            keys = (key(m) for m in matching if m != me and m not in lost)
            return rendezvous_rank(self.my_key, keys, spec.pid, limit)
        return min(limit, int(score * (others + 1) / self.node.params.claim_fanout))

    def best_ranked(self, spec: SignedSpec, n: int) -> list[str] | None:
        """The ``n`` matching executors that rank best for ``spec`` (best first), lost
        ones passed over; None where ranks are not exact (EXACT_RANKS or more match)."""
        matching = self._matching_executors(spec)
        if len(matching) > EXACT_RANKS:
            return None
        pid, lost = spec.pid, self.node.lost
        scored = [(rendezvous_score(self._key(m), pid), m) for m in matching if m not in lost]
        return [m for _, m in heapq.nsmallest(n, scored)]

    def on_spec(
        self, item: SpecAnnounce, source: str, now: float, offered_rank: int | None = None
    ) -> None:
        """An announcement by ``source``; ``offered_rank`` where it came as an Offer,
        which the sender addressed by its own view of ranks: it may know of a
        better-ranked executor lost before we do, and then we claim as soon as it says."""
        ad = self.ad
        if ad is None:
            return
        spec, round_ = item.spec, item.round
        pid = spec.pid
        heard = (pid, source)
        if pid in self.candidates or pid in self.active or self._seen.get(heard, -1) >= round_:
            return
        if not matches(spec.spec, ad):
            return
        p = self.node.params
        score = rendezvous_score(self.my_key, pid)
        limit = p.candidate_slots * (2 ** min(round_, 10))
        slot = self._slot(spec, score, limit)
        if offered_rank is not None:
            slot = min(slot, offered_rank)
        if slot >= limit:
            return  # better-ranked executors will take it; a re-announcement widens the circle
        ready_at = now + slot * p.claim_slot
        # Within a priority and an age bucket, processes this executor ranks best first:
        # with a backlog, each executor then works through its own share, and claims
        # another's (contending with it) only once its own run out.
        key = (-spec.spec.priority, int(now // AGE_BUCKET), slot, score)
        self.candidates[pid] = Candidate(spec, item.keepers, ready_at, key)
        seen = self._seen
        seen[heard] = round_
        if len(seen) > SEEN_KEPT:
            del seen[next(iter(seen))]
        heapq.heappush(self._pending, (ready_at, pid))
        self.try_claim(now)

    def try_claim(self, now: float) -> None:
        # A claim this node's own keeper refuses ends inside begin() (the message loops
        # back), and its end calls try_claim again: with a backlog of such claims that
        # recursed once per candidate, until Python's limit killed the daemon. The outer
        # call's loop takes the next candidate instead.
        if self._claiming:
            self._again = True
            return
        self._claiming = True
        try:
            self._again = True
            while self._again:  # once more where a nested call had something new
                self._again = False
                self._claim_ready(now)
        finally:
            self._claiming = False

    def _claim_ready(self, now: float) -> None:
        pending, ready, candidates = self._pending, self._ready, self.candidates
        while pending and pending[0][0] <= now:
            _, pid = heapq.heappop(pending)
            c = candidates.get(pid)
            if c is not None:
                heapq.heappush(ready, (c.key, pid))
        while ready and len(self.active) < self.capacity:
            _, pid = heapq.heappop(ready)
            c = candidates.pop(pid, None)
            if c is None or pid in self.active:
                continue
            self._claim(c, now)
        if pending and len(self.active) < self.capacity:
            at = pending[0][0]
            if at < self._wake_at:
                self._wake_at = at
                self.node.set_timer(at, ("claim",))

    def on_wake(self, now: float) -> None:
        self._wake_at = math.inf
        self.try_claim(now)

    def _claim(self, c: Candidate, now: float) -> None:
        pid = c.spec.pid
        # Mark it active first: the ballot may end inside begin() (our own keeper answers at once).
        self.active[pid] = c.epoch_hint
        self._retries[pid] = c.retries
        if not self.node.proposer.begin(c.spec, c.keepers, c.epoch_hint, "claim"):
            del self.active[pid]

    def ballot_finished(self, pid: str, epoch: int) -> None:
        if self.active.get(pid) == epoch:
            del self.active[pid]
            if len(self._retries) > 4096:  # only recent retries matter
                self._retries.clear()
            self.try_claim(self.node.now)

    def claim_refused(self, pid: str, now: float) -> None:
        """Someone holds it, it is not ready, or it is done: forget it until announced again."""
        self.forget(pid)

    def retry_claim(
        self, spec: SignedSpec, keepers: tuple[str, ...], epoch: int, now: float
    ) -> None:
        pid = spec.pid
        retries = self._retries.get(pid, 0) + 1
        if retries > MAX_CLAIM_RETRIES or self.ad is None or not matches(spec.spec, self.ad):
            # (a keeper's own move ballot refused as moved lands here too: its executor
            # must not claim what it cannot run; keepers refuse such claims, claim_ad)
            return
        c = Candidate(spec, keepers, now, (-spec.spec.priority, int(now // AGE_BUCKET), 0, 0.0))
        c.epoch_hint, c.retries = epoch, retries
        self.candidates[pid] = c
        heapq.heappush(self._pending, (now, pid))
        self.try_claim(now)

    def on_moved(self, spec: SignedSpec, keepers: tuple[str, ...], now: float) -> None:
        if keepers and self.ad is not None:
            self.retry_claim(spec, keepers, 1, now)

    def forget(self, pid: str) -> None:
        self.candidates.pop(pid, None)
        self._retries.pop(pid, None)


def _match_key(s: FunctionSpec) -> tuple[object, ...]:
    """What matching (core/matching.py) reads of a spec: keyed by its conditions whole,
    a workflow's dependencies, which differ from child to child, would make every child
    scan every ad again."""
    c = s.conditions
    where = (c.executortype, c.executornames, c.location)
    return (s.funcname, *where, c.nodes, c.cpu, c.mem, c.storage, c.gpu)
