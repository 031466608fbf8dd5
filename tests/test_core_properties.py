"""Hypothesis drives a small colony's cores through arbitrary schedules: any delivery order,
duplicates, losses, crashes with restarts from durable state, timers fired at any time,
runs that succeed or fail, peers suspected lost (rightly or not). Safety must hold in
every schedule: at most one outcome is chosen per process, no keeper accepts below an
epoch it promised, and acknowledged processes stay stored at a majority."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from colonyp2p.core import effects as fx
from colonyp2p.core.keeper import KeeperRole
from colonyp2p.core.messages import Message
from colonyp2p.core.node import ColonyNode, ExecutionResult
from colonyp2p.core.params import Params
from colonyp2p.core.proposer import Proposer
from colonyp2p.core.ranking import majority
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec

N_NODES = 4
PARAMS = Params(
    keepers=3,
    lease_seconds=5.0,
    renew_every=2.0,
    reannounce_after=3.0,
    query_after=6.0,
    stagger=1.0,
    claim_slot=0.2,
)
_rng = random.Random(7)
IDS = [Identity.from_seed(_rng.randbytes(32)) for _ in range(N_NODES)]
MEMBERSHIP = MembershipSet.genesis(
    IDS[0], "props", 0.0, members=[Member(i.member_id, "executor") for i in IDS[1:]]
)
ADS = [
    ExecutorAd.create(
        i,
        0.0,
        executortype="edge",
        name=f"e{n}",
        functions=("work",),
        hardware=Hardware(cores=2, memory=1 << 30),
    )
    for n, i in enumerate(IDS)
]


class ColonySchedules(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pending_announcements: list[tuple[str, str, Any]] = []
        self.now = 0.0
        self.durable: dict[str, dict[str, dict[str, Any]]] = {i.member_id: {} for i in IDS}
        self.nodes: dict[str, ColonyNode] = {}
        self.wire: list[tuple[str, str, Message]] = []  # (to, from, msg)
        self.timers: list[tuple[float, str, tuple[Any, ...]]] = []
        self.runs: list[tuple[str, str, int]] = []  # (node, pid, epoch)
        self.accepts: dict[tuple[str, tuple[str, ...], int, str], set[str]] = defaultdict(set)
        self.chosen: dict[str, set[str]] = defaultdict(set)
        self.promised: dict[tuple[str, str], int] = {}
        self.stale_accepts = 0
        self.acknowledged: set[str] = set()
        self.specs = 0
        for n, ident in enumerate(IDS):
            node = ColonyNode(ident.member_id, MEMBERSHIP, PARAMS, ad=ADS[n], sign=ident.sign)
            self.nodes[ident.member_id] = node
            self.apply(ident.member_id, node.start(self.now))

    def apply(self, mid: str, effects: list[fx.Effect]) -> None:
        for e in effects:
            if isinstance(e, fx.Persist):
                table = self.durable[mid].setdefault(e.table, {})
                if e.value is None:
                    table.pop(e.key, None)
                else:
                    table[e.key] = e.value
            elif isinstance(e, fx.Send):
                self.wire.append((e.to, mid, e.msg))
            elif isinstance(e, fx.Publish):
                for other in self.nodes:
                    if other != mid and hasattr(e.item, "spec"):
                        self.nodes_announce(other, mid, e.item)
            elif isinstance(e, fx.SetTimer):
                self.timers.append((e.at, mid, e.key))
            elif isinstance(e, fx.StartExecution):
                self.runs.append((mid, e.pid, e.epoch))
            elif isinstance(e, fx.Observe):
                self.observe(mid, e)

    def nodes_announce(self, to: str, frm: str, item: Any) -> None:
        self.pending_announcements.append((to, frm, item))

    def observe(self, mid: str, e: fx.Observe) -> None:
        if e.kind == "acknowledged":
            self.acknowledged.add(e.pid)
        elif e.kind == "promised":
            key = (mid, e.pid)
            self.promised[key] = max(self.promised.get(key, 0), e.data["epoch"])
        elif e.kind == "accepted":
            if e.data["epoch"] < self.promised.get((mid, e.pid), 0):
                self.stale_accepts += 1
            keepers = tuple(e.data["keepers"])
            group = self.accepts[(e.pid, keepers, e.data["epoch"], e.data["value"])]
            group.add(mid)
            if len(group) >= majority(len(keepers)) and e.data["kind"] != "moved":
                self.chosen[e.pid].add(e.data["value"])

    # --- rules -------------------------------------------------------------------------

    @precondition(lambda self: self.specs < 2)
    @rule(client=st.integers(0, N_NODES - 1), seed=st.integers(0, 2**32))
    def submit(self, client: int, seed: int) -> None:
        ident = IDS[client]
        spec = SignedSpec.create(
            FunctionSpec(funcname="work", args=(seed,), maxretries=2),
            ident,
            MEMBERSHIP.colony_id,
            self.now,
            seed.to_bytes(8, "big"),
        )
        self.specs += 1
        self.apply(ident.member_id, self.nodes[ident.member_id].submit(spec, self.now))

    @precondition(lambda self: self.wire)
    @rule(data=st.data(), duplicate=st.booleans())
    def deliver(self, data: st.DataObject, duplicate: bool) -> None:
        i = data.draw(st.integers(0, len(self.wire) - 1))
        to, frm, msg = self.wire[i] if duplicate else self.wire.pop(i)
        self.apply(to, self.nodes[to].on_message(frm, msg, self.now))

    @precondition(lambda self: self.wire or self.pending_announcements)
    @rule(budget=st.integers(1, 60))
    def flush(self, budget: int) -> None:
        """A calm stretch: messages and announcements arrive in order."""
        while budget and (self.wire or self.pending_announcements):
            budget -= 1
            if self.wire:
                to, frm, msg = self.wire.pop(0)
                self.apply(to, self.nodes[to].on_message(frm, msg, self.now))
            if self.pending_announcements:
                to, frm, item = self.pending_announcements.pop(0)
                self.apply(to, self.nodes[to].on_announcement(frm, item, self.now))

    @precondition(lambda self: self.timers)
    @rule()
    def fire_due_timers(self) -> None:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, mid, key in due:
            self.apply(mid, self.nodes[mid].on_timer(key, self.now))

    @precondition(lambda self: self.wire)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.wire.pop(data.draw(st.integers(0, len(self.wire) - 1)))

    @precondition(lambda self: self.pending_announcements)
    @rule(data=st.data(), lose=st.booleans())
    def gossip(self, data: st.DataObject, lose: bool) -> None:
        i = data.draw(st.integers(0, len(self.pending_announcements) - 1))
        to, frm, item = self.pending_announcements.pop(i)
        if not lose:
            self.apply(to, self.nodes[to].on_announcement(frm, item, self.now))

    @precondition(lambda self: self.timers)
    @rule(data=st.data())
    def fire_timer(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.timers) - 1))
        at, mid, key = self.timers.pop(i)
        self.now = max(self.now, at)
        self.apply(mid, self.nodes[mid].on_timer(key, self.now))

    @precondition(lambda self: self.runs)
    @rule(data=st.data(), ok=st.booleans())
    def finish_run(self, data: st.DataObject, ok: bool) -> None:
        mid, pid, epoch = self.runs.pop(data.draw(st.integers(0, len(self.runs) - 1)))
        result = ExecutionResult(ok, (f"out-{mid[-4:]}-{epoch}",), () if ok else ("boom",))
        self.apply(mid, self.nodes[mid].on_execution_done(pid, epoch, result, self.now))

    @rule(dt=st.floats(0.1, 8.0))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(at=st.integers(0, N_NODES - 1), peer=st.integers(0, N_NODES - 1))
    def suspect(self, at: int, peer: int) -> None:
        """A connection drop, true or not: the node ends the peer's leases at once."""
        mid = IDS[at].member_id
        self.apply(mid, self.nodes[mid].on_peer_lost(IDS[peer].member_id, self.now))

    @rule(victim=st.integers(0, N_NODES - 1))
    def crash_and_restart(self, victim: int) -> None:
        mid = IDS[victim].member_id
        self.wire = [w for w in self.wire if w[0] != mid]
        self.timers = [t for t in self.timers if t[1] != mid]
        self.runs = [r for r in self.runs if r[0] != mid]
        self.pending_announcements = [a for a in self.pending_announcements if a[0] != mid]
        node = ColonyNode(
            mid,
            MEMBERSHIP,
            PARAMS,
            ad=ADS[victim],
            durable=self.durable[mid],
            sign=IDS[victim].sign,
        )
        self.nodes[mid] = node
        self.apply(mid, node.start(self.now))

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def one_outcome_per_process(self) -> None:
        for pid, values in self.chosen.items():
            assert len(values) <= 1, f"{pid[:12]} has two chosen outcomes: {values}"

    @invariant()
    def no_stale_accepts(self) -> None:
        assert self.stale_accepts == 0

    @invariant()
    def acknowledged_specs_are_stored_at_a_majority(self) -> None:
        for pid in self.acknowledged:
            holders = sum(1 for d in self.durable.values() if pid in d.get("records", {}))
            assert holders >= majority(PARAMS.keepers), f"{pid[:12]} stored at {holders}"


TestColonySchedules = ColonySchedules.TestCase
TestColonySchedules.settings = settings(
    max_examples=300,
    stateful_step_count=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _unfenced_on_accept(original: Any) -> Any:
    """A broken keeper that accepts any epoch from whoever sends it (no fencing)."""

    def on_accept(self: Any, sender: str, msg: Any, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is not None and rec.decided is None:
            self.records[msg.pid] = dataclasses.replace(rec, promised=msg.epoch, holder=sender)
        original(self, sender, msg, now)

    return on_accept


def _forgetful_promised(original: Any) -> Any:
    """A broken proposer that ignores outcomes accepted in earlier ballots (breaks Paxos)."""

    def promised(self: Any, b: Any, now: float) -> None:
        b.promises = {k: dataclasses.replace(p, accepted=None) for k, p in b.promises.items()}
        original(self, b, now)

    return promised


def _hunt_for_a_violation(examples: int) -> None:
    class Hunt(ColonySchedules.TestCase):  # type: ignore[valid-type,misc]
        settings = settings(
            max_examples=examples,
            stateful_step_count=150,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
            derandomize=True,  # the same examples every run: a hunt that cannot flake
        )

    with pytest.raises(AssertionError):
        Hunt().runTest()


def test_the_schedules_catch_a_keeper_without_fencing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KeeperRole, "on_accept", _unfenced_on_accept(KeeperRole.on_accept))
    _hunt_for_a_violation(400)


def test_the_schedules_catch_a_proposer_that_forgets_accepted_outcomes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Proposer, "_promised", _forgetful_promised(Proposer._promised))
    _hunt_for_a_violation(1500)
