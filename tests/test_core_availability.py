"""Keepers of new specs are chosen among the members a node can count on to answer: a
member that never started, lost its connections, or left requests unanswered for a
lease is passed over until it is heard from again. Records keep their real keeper set,
so a spec stored around such a member is still found: its workflow children get their
inputs, and it can be cancelled and asked about by members that did not store it."""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable
from typing import Any

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import AdAnnounce, Query, StoreAck, StoreSpec
from colonyp2p.core.node import ColonyNode, ExecutionResult
from colonyp2p.core.params import Params
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import Conditions, FunctionSpec
from colonyp2p.model.workflow import WorkflowSpec, sign_workflow

_rng = random.Random(31)
OWNER, EXEC_A, EXEC_B, EXEC_C, GHOST = (Identity.from_seed(_rng.randbytes(32)) for _ in range(5))
EXECUTORS = (EXEC_A, EXEC_B, EXEC_C, GHOST)
MEMBERSHIP = MembershipSet.genesis(
    OWNER, "availability", 0.0, members=[Member(e.member_id, "executor") for e in EXECUTORS]
)
A, B, C, G, OWN = (i.member_id for i in (EXEC_A, EXEC_B, EXEC_C, GHOST, OWNER))
LEASE = 3.0
PARAMS = Params(keepers=3, lease_seconds=LEASE, renew_every=1.0, reannounce_after=2.0)
ADS = {
    e.member_id: ExecutorAd.create(
        e, 0.0, executortype="edge", name=f"e{n}", functions=("work",), hardware=Hardware()
    )
    for n, e in enumerate(EXECUTORS)
}


def _spec(n: int, funcname: str = "work", by: Identity = EXEC_A) -> SignedSpec:
    return SignedSpec.create(FunctionSpec(funcname), by, MEMBERSHIP.colony_id, 1.0, n.to_bytes(4))


def _stores(effects: Iterable[fx.Effect]) -> dict[str, StoreSpec]:
    return {
        e.msg.spec.pid: e.msg
        for e in effects
        if isinstance(e, fx.Send) and isinstance(e.msg, StoreSpec)
    }


def _kept_by(node: ColonyNode, member: str, first: int = 0, **kw: Any) -> SignedSpec:
    """A spec whose canonical keepers include ``member``."""
    n = first
    while member not in node.keepers_for(_spec(n, **kw).pid):
        n += 1
    return _spec(n, **kw)


class Net:
    """Cores wired together in memory on one clock: a message takes 1 ms, gossip 5 ms
    and reaches every running member, a run takes 0.1 s and outputs its pid's first 8
    characters. Members not in ``running`` never started; those in ``stopped`` receive
    nothing (a SIGSTOPped daemon)."""

    def __init__(self, running: Iterable[Identity], start: float = 0.0) -> None:
        self.nodes = {
            i.member_id: ColonyNode(
                i.member_id, MEMBERSHIP, PARAMS, ad=ADS.get(i.member_id), sign=i.sign
            )
            for i in running
        }
        self.now = start
        self.stopped: set[str] = set()
        self.queue: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self.seq = 0
        self.observed: list[tuple[str, fx.Observe]] = []
        self.runs: list[tuple[str, fx.StartExecution]] = []
        self.sent: list[tuple[str, fx.Send]] = []
        for member, node in self.nodes.items():
            self.apply(member, node.start(start))

    def push(self, at: float, kind: str, *args: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, args))

    def apply(self, member: str, effects: list[fx.Effect]) -> None:
        now = self.now
        for e in effects:
            if isinstance(e, fx.Send):
                self.sent.append((member, e))
                if e.to in self.nodes:
                    self.push(now + 0.001, "msg", e.to, member, e.msg)
            elif isinstance(e, fx.Publish):
                for other in self.nodes:
                    if other != member:
                        self.push(now + 0.005, "gossip", other, member, e.item)
            elif isinstance(e, fx.SetTimer):
                self.push(max(e.at, now), "timer", member, e.key)
            elif isinstance(e, fx.StartExecution):
                self.runs.append((member, e))
                self.push(now + 0.1, "done", member, e.pid, e.epoch)
            elif isinstance(e, fx.Observe):
                self.observed.append((member, e))

    def send(self, frm: str, to: str, msg: Any) -> None:
        """A message a driver sends on its own (the daemon's status queries)."""
        self.push(self.now + 0.001, "msg", to, frm, msg)

    def run(self, until: float) -> None:
        while self.queue and self.queue[0][0] <= until:
            at, _, kind, args = heapq.heappop(self.queue)
            self.now = at
            member = args[0]
            if member in self.stopped:
                continue
            node = self.nodes[member]
            if kind == "msg":
                effects = node.on_message(args[1], args[2], at)
            elif kind == "gossip":
                effects = node.on_announcement(args[1], args[2], at)
            elif kind == "timer":
                effects = node.on_timer(args[1], at)
            else:
                output = (args[1][:8],)
                effects = node.on_execution_done(
                    args[1], args[2], ExecutionResult(True, output), at
                )
            self.apply(member, effects)
        self.now = until

    def call(self, member: str, effects: list[fx.Effect]) -> list[fx.Effect]:
        """Effects of a local command on ``member`` (carried out)."""
        self.apply(member, effects)
        return effects

    def decided(self, pid: str) -> set[str]:
        return {
            e.data["kind"]
            for _, e in self.observed
            if e.kind == "decided" and e.pid == pid and e.data["kind"] != "moved"
        }


def test_a_member_never_heard_from_is_not_chosen_once_a_lease_has_passed() -> None:
    net = Net((OWNER, EXEC_A, EXEC_B, EXEC_C))
    a = net.nodes[A]
    early = _kept_by(a, G)
    # within the first lease nobody has been heard from yet: the canonical keepers
    stores = _stores(net.call(A, a.submit(early, 0.5)))
    assert G in stores[early.pid].keepers
    net.run(LEASE + 1.0)
    late = _kept_by(a, G, first=10_000)
    store = _stores(net.call(A, a.submit(late, net.now)))[late.pid]
    assert G not in store.keepers and len(store.keepers) == 3
    assert store.keepers == a.placement(late.pid) != a.keepers_for(late.pid)
    net.run(net.now + 0.05)
    assert any(e.kind == "acknowledged" and e.pid == late.pid for _, e in net.observed)
    # the ghost starts at last: its ad says it runs, and it keeps new specs again
    ghost = net.nodes[G] = ColonyNode(G, MEMBERSHIP, PARAMS, ad=ADS[G], sign=GHOST.sign)
    net.apply(G, ghost.start(net.now))
    net.run(net.now + 0.1)
    again = _kept_by(a, G, first=20_000)
    assert G in _stores(net.call(A, a.submit(again, net.now)))[again.pid].keepers


def test_a_lost_or_silent_member_is_passed_over_until_it_is_heard_from() -> None:
    node = ColonyNode(A, MEMBERSHIP, PARAMS, ad=ADS[A], sign=EXEC_A.sign)
    node.start(0.0)
    for member in (B, C, G):  # every member runs: their ads arrive
        node.on_announcement(member, AdAnnounce(ADS[member]), 0.1)
    node.on_message(OWN, Query("0" * 64), 0.1)  # the owner has no ad: it says something
    lost = _kept_by(node, B)
    node.on_peer_lost(B, 1.0)
    store = _stores(node.submit(lost, 1.0))[lost.pid]
    assert B not in store.keepers
    node.on_message(B, StoreAck("1" * 64), 1.5)  # heard from again
    back = _kept_by(node, B, first=5_000)
    assert B in _stores(node.submit(back, 1.5))[back.pid].keepers

    # C takes a spec but never answers, while the client keeps asking
    silent = _kept_by(node, C, first=10_000)
    asked = _stores(node.submit(silent, 2.0))[silent.pid]
    assert C in asked.keepers
    for keeper in asked.keepers:
        if keeper != C:
            node.on_message(keeper, StoreAck(silent.pid), 2.01)
    t = 2.0
    while t < 2.0 + LEASE + 1.5:
        t += PARAMS.submit_retry
        node.on_timer(("submit", silent.pid), t)
    assert node.unavailable(C)
    skipped = _kept_by(node, C, first=20_000)
    assert C not in _stores(node.submit(skipped, t))[skipped.pid].keepers
    node.on_message(C, StoreAck(silent.pid), t + 0.1)  # C answers after all
    assert not node.unavailable(C)
    used = _kept_by(node, C, first=30_000)
    assert C in _stores(node.submit(used, t + 0.1))[used.pid].keepers


def _workflow(n: int) -> tuple[SignedSpec, SignedSpec]:
    wf = WorkflowSpec(
        "availability",
        (
            FunctionSpec("work", nodename="parent"),
            FunctionSpec("work", nodename="child", conditions=Conditions(dependencies=("parent",))),
        ),
    )
    parent, child = sign_workflow(wf, EXEC_A, MEMBERSHIP.colony_id, 1.0 + n, lambda: b"wf")
    return parent, child


def test_children_of_a_parent_stored_off_its_canonical_keepers_get_its_output() -> None:
    net = Net((OWNER, EXEC_A, EXEC_B, EXEC_C))
    net.run(LEASE + 1.0)
    a = net.nodes[A]
    n = 0
    while G not in a.keepers_for(_workflow(n)[0].pid):
        n += 1
    parent, child = _workflow(n)
    stores = _stores(net.call(A, a.submit_workflow((parent, child), net.now)))
    placed = stores[parent.pid].keepers
    assert G not in placed and placed != a.keepers_for(parent.pid)
    # the child's keepers are told where the parent really is
    assert [ref.keepers for ref in stores[child.pid].parents] == [placed]
    net.run(net.now + 15.0)
    assert net.decided(parent.pid) == {"successful"}
    assert net.decided(child.pid) == {"successful"}
    child_runs = [e for _, e in net.runs if e.pid == child.pid]
    assert child_runs and child_runs[-1].inputs == (parent.pid[:8],)


def test_cancel_and_status_find_a_record_stored_off_its_canonical_keepers() -> None:
    net = Net((OWNER, EXEC_A, EXEC_B, EXEC_C))
    net.run(LEASE + 1.0)
    a, owner = net.nodes[A], net.nodes[OWN]

    def off_canonical(first: int) -> tuple[SignedSpec, tuple[str, ...]]:
        n = first
        while True:
            spec = _spec(n, funcname="nobody-runs-this")
            placed = a.placement(spec.pid)
            if G in a.keepers_for(spec.pid) and OWN not in placed:
                return spec, placed
            n += 1

    # the submitter cancels: it knows where it stored the spec
    mine, placed = off_canonical(0)
    net.call(A, a.submit(mine, net.now))
    net.run(net.now + 0.5)
    assert a.keepers_of(mine.pid) == placed
    net.call(A, a.cancel(mine, "cancelled by its submitter", net.now))
    net.run(net.now + 2.0)
    assert net.decided(mine.pid) == {"failed"}

    # an admin that neither stored nor keeps it: the canonical keepers do not know it;
    # asking the next closest (as the daemon's status query does) finds its keepers
    theirs, placed = off_canonical(100_000)
    net.call(A, a.submit(theirs, net.now))
    net.run(net.now + 0.5)
    assert owner.keepers_of(theirs.pid) == owner.keepers_for(theirs.pid) != placed
    assert set(placed) <= set(owner.keeper_candidates(theirs.pid))
    for member in owner.keeper_candidates(theirs.pid):
        if member in net.nodes and member != OWN:
            net.send(OWN, member, Query(theirs.pid, proof=True))
    net.run(net.now + 0.5)
    assert owner.keepers_of(theirs.pid) == placed
    net.call(OWN, owner.cancel(theirs, "cancelled by an admin", net.now))
    net.run(net.now + 2.0)
    assert net.decided(theirs.pid) == {"failed"}
