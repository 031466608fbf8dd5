"""The discrete-event simulator: many protocol cores in one process, on virtual time.

Everything random (the colony, the workload, every delay, loss and fault) is
drawn from one ``random.Random(seed)`` in event order, and nothing iterates
over a hash-ordered collection, so a scenario and a seed fix the whole run;
``trace_digest`` hashes every event processed to prove it.

The engine is a driver of the core like the daemon: it delivers messages and
timers to ``ColonyNode`` and carries out the effects it returns, persisting to
an in-memory "disk" per member that survives the member's crashes.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from colonyp2p.core.effects import (
    CancelExecution,
    Observe,
    Persist,
    Publish,
    Reject,
    Send,
    SetTimer,
    StartExecution,
)
from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import AdAnnounce, Announcement, Message, SpecAnnounce
from colonyp2p.core.node import ColonyNode, ExecutionResult
from colonyp2p.core.topics import colony_topic, spec_topic, subscriptions
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.simulations.byzantine import Byzantine
from colonyp2p.simulations.checker import Checker, Violation
from colonyp2p.simulations.colony import Colony, build
from colonyp2p.simulations.scenario import Scenario

# event kinds
(
    MSG,
    GOSSIP,
    TIMER,
    DONE,
    SUBMIT,
    CRASH,
    RESTART,
    CUT,
    HEAL,
    JOIN,
    REVOKE,
    SAMPLE,
    CHECK,
    LOST,
    BYZANTINE,
    SETTLED,
) = range(16)
KIND_NAMES = (
    "msg",
    "gossip",
    "timer",
    "done",
    "submit",
    "crash",
    "restart",
    "partition",
    "heal",
    "join",
    "revoke",
    "sample",
    "check",
    "lost",
    "byzantine",
    "settled",
)
CHECK_EVERY = 10.0  # simulated seconds between colony-wide durability checks
CUT_OFF_AFTER = 5.0  # a revoked member's device is cut off this long after the revocation
RETRY = 1.0  # an action that needs a member who is down is tried again this much later


@dataclass(slots=True)
class Sample:
    t: float
    waiting: int
    running: int
    successful: int
    failed: int


@dataclass
class Result:
    scenario: Scenario
    seed: int
    nodes: int
    executors: int
    specs: int
    workflow_specs: int
    successful: int
    failed: int
    lost: list[str]
    duplicate_results: int
    stale_epoch_accepts: int
    terminal: bool
    simulated_seconds: float
    last_fault: float  # when the last scheduled fault (or submission window) ended
    wall_seconds: float
    events: int
    trace_digest: str
    samples: list[Sample]
    counters: dict[str, int]
    violation: Violation | None = None
    history: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON summary (keys documented in the README)."""
        out: dict[str, Any] = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "nodes": self.nodes,
            "executors": self.executors,
            "specs": self.specs,
            "workflow_specs": self.workflow_specs,
            "processes_successful": self.successful,
            "processes_failed": self.failed,
            "lost": len(self.lost),
            "duplicate_results": self.duplicate_results,
            "stale_epoch_accepts": self.stale_epoch_accepts,
            "terminal": self.terminal,
            "simulated_seconds": round(self.simulated_seconds, 3),
            "last_fault": round(self.last_fault, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "events": self.events,
            "events_per_wall_second": round(self.events / max(self.wall_seconds, 1e-9)),
            "trace_digest": self.trace_digest,
            "counters": dict(sorted(self.counters.items())),
            "violation": None,
        }
        if self.violation is not None:
            v = self.violation
            out["violation"] = {
                "invariant": v.invariant,
                "pid": v.pid,
                "detail": v.detail,
                "at": v.at,
                "history": self.history,
            }
        return out


class Simulation:
    """One run of a scenario with a seed. ``focus`` records the history of one process."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        *,
        focus: str | None = None,
        node_factory: Callable[..., ColonyNode] = ColonyNode,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        self.colony: Colony = build(scenario, self.rng)
        self.focus = focus
        self._history: list[tuple[float, int, bool, str]] = []  # (t, member, observed, text)
        self.node_factory = node_factory
        self.params = scenario.params
        self.net = scenario.network
        self.checker = Checker()
        self.counters: Counter[str] = Counter()
        self.queue: list[tuple[float, int, int, Any, Any, Any]] = []
        self.seq = 0
        self.now = 0.0
        self.events = 0
        self.hasher = hashlib.sha256()
        colony = self.colony
        self.colony_id = colony.membership.colony_id
        self.membership = colony.membership  # the newest version the admin issued
        # per member, by index
        self.mids: list[str] = [i.member_id for i in colony.identities]
        # index = member index, joiners appended: each node signs with its own key
        self.keys: list[Identity] = list(colony.identities)
        self.index: dict[str, int] = {m: i for i, m in enumerate(self.mids)}
        self.ads: list[ExecutorAd | None] = [colony.ads.get(i) for i in range(len(self.mids))]
        self.boot: list[MembershipSet] = [colony.membership] * len(self.mids)
        self.nodes: list[ColonyNode | None] = [None] * len(self.mids)
        self.incarnation: list[int] = [0] * len(self.mids)
        self.disks: list[dict[str, dict[str, Any]]] = [{} for _ in self.mids]
        skew = scenario.faults.clock_skew
        self.skew: list[float] = [self.rng.uniform(-skew, skew) for _ in self.mids]
        self.revoked: list[int] = []
        self.side: list[int] = [0] * len(self.mids)
        self.partitioned = False
        self.subscribers: dict[str, list[int]] = {}
        self.executions: dict[tuple[int, str, int], bool] = {}  # -> reports an error
        self.samples: list[Sample] = []
        self.pending_submissions = len(colony.submissions)
        self.all_pids: list[str] = []
        self.seen_ads: dict[tuple[str, float], bytearray] = {}
        # who has heard from whom: a member's crash closes its connections to these (a
        # cut does not: no connection closes when a network fails silently)
        self.contacts: list[set[int]] = [set() for _ in self.mids]
        for idx in range(len(self.mids)):
            self._subscribe(idx)
        # members that lie, one attack every byzantine_every seconds each: users run no
        # core; keepers run one (honest about what they keep)
        self.keeper_liars = scenario.faults.byzantine_role == "keeper"
        self.liars = set(colony.byzantine)
        self.byzantine = Byzantine(self)
        self.checker.liars = set(self.byzantine.liars)
        self.checker.marked_only = self.keeper_liars
        self.issued: dict[int, MembershipSet] = {colony.membership.version: colony.membership}

    # --- the event queue -------------------------------------------------------------------

    def push(self, at: float, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, a, b, c))

    def node_now(self, idx: int) -> float:
        return self.now + self.skew[idx]

    # --- running ---------------------------------------------------------------------------

    def run(
        self,
        progress: Callable[[Simulation], None] | None = None,
        stop_at_event: int | None = None,
    ) -> Result:
        started = time.perf_counter()
        self._schedule_faults()
        for i, sub in enumerate(self.colony.submissions):
            self.push(sub.at, SUBMIT, i)
            for spec in sub.specs:
                self.checker.submitted_spec(spec.pid, spec.parents)
                self.all_pids.append(spec.pid)
        for idx in range(len(self.mids)):
            if idx not in self.liars or self.keeper_liars:
                self._boot(idx)
        every = self.scenario.faults.byzantine_every
        for idx in self.colony.byzantine:
            self.push(self.rng.uniform(0.0, every), BYZANTINE, idx)
        self.push(0.0, SAMPLE)
        self.push(CHECK_EVERY, CHECK)
        violation: Violation | None = None
        limit = self.scenario.max_simulated_seconds
        try:
            while self.queue:
                at, _, kind, a, b, c = heapq.heappop(self.queue)
                if at > limit:
                    self.now = limit
                    break
                self.now = at
                self.events += 1
                self._dispatch(kind, a, b, c)
                if self.events == stop_at_event:
                    break
                if progress is not None and self.events % 20000 == 0:
                    progress(self)
                if not self.pending_submissions and self._all_terminal():
                    break
            self.checker.check_descendants_failed(self.now)
            self._check_ads()
        except Violation as v:
            violation = v
        if progress is not None:
            progress(self)
        c = self.checker
        result = Result(
            scenario=self.scenario,
            seed=self.seed,
            nodes=len(self.colony.membership.members),
            executors=len(self.colony.ads),
            specs=len(self.all_pids),
            workflow_specs=self.scenario.workload.workflow_specs,
            successful=c.successful,
            failed=c.failed,
            lost=c.lost(),
            duplicate_results=len(c.duplicate_results),
            stale_epoch_accepts=c.stale_epoch_accepts,
            terminal=len(c.terminal) == len(self.all_pids),
            simulated_seconds=self.now,
            last_fault=self.last_fault,
            wall_seconds=time.perf_counter() - started,
            events=self.events,
            trace_digest=self.hasher.hexdigest(),
            samples=self.samples,
            counters=dict(self.counters),
            violation=violation,
        )
        return result

    def _all_terminal(self) -> bool:
        return len(self.checker.terminal) == len(self.all_pids)

    def _dispatch(self, kind: int, a: Any, b: Any, c: Any) -> None:
        if kind == MSG:
            self._deliver(a, b, c)
        elif kind == GOSSIP:
            self._deliver_gossip(a, b, c)
        elif kind == TIMER:
            node = self.nodes[a]
            if node is not None and self.incarnation[a] == b[0]:
                pid = c[1] if len(c) > 1 and isinstance(c[1], str) else ""
                self._trace(f"T #{a} {c[0]}", pid)
                self._apply(a, node.on_timer(c, max(self.node_now(a), b[1])))
        elif kind == DONE:
            self._done(a, b)
        elif kind == SUBMIT:
            self._submit(a)
        elif kind == CRASH:
            self._crash(a)
        elif kind == RESTART:
            self._restart(a)
        elif kind == CUT:
            self._cut(a)
        elif kind == HEAL:
            self._heal(a)
        elif kind == JOIN:
            self._join(a)
        elif kind == REVOKE:
            self._revoke(a)
        elif kind == SAMPLE:
            self._sample()
        elif kind == LOST:
            node = self.nodes[a]
            if node is not None and self.incarnation[a] == c:
                self._trace(f"L #{a} lost #{b}")
                self.counters["peers_lost"] += 1
                self._apply(a, node.on_peer_lost(self.mids[b], self.node_now(a)))
        elif kind == CHECK:
            self.checker.check_stored(self.revoked, self.now)
            self.push(self.now + CHECK_EVERY, CHECK)
        elif kind == SETTLED:
            stuck = self.checker.lost()
            if stuck:
                raise Violation(
                    "stuck",
                    stuck[0],
                    f"{len(stuck)} acknowledged processes not ended "
                    f"{self.scenario.settle_seconds:g} s after the last fault "
                    f"(t={self.last_fault:g} s)",
                    self.now,
                )
        elif kind == BYZANTINE:
            self._trace(f"B #{a}")
            self.byzantine.attack(a)
            self.push(self.now + self.scenario.faults.byzantine_every, BYZANTINE, a)

    def _check_ads(self) -> None:
        """No member learned an ad of a Byzantine user (users run nothing)."""
        if self.keeper_liars:
            return
        for idx, node in enumerate(self.nodes):
            if node is None:
                continue
            for liar in sorted(self.byzantine.liars):
                if liar in node.ads:
                    raise Violation("forged_ad", "", f"member #{idx} keeps {liar[:12]}'s ad", 0.0)

    def _trace(self, line: str, pid: str = "") -> None:
        self.hasher.update(f"{self.now!r} {line}\n".encode())

    def _note(self, line: str, member: int = -1) -> None:
        """A fault or membership event (of ``member``, or of the colony when -1)."""
        self.hasher.update(f"{self.now!r} {line}\n".encode())
        if self.focus is not None:
            self._history.append((self.now, member, False, line))

    @property
    def history(self) -> list[str]:
        """The focused process's history, cut to what shows a violation: what each member
        did about the process (promised, accepted, started, decided, ...), and the faults
        of those members and of the colony, in order."""
        involved = {member for _, member, observed, _ in self._history if observed}
        return [
            f"t={t:10.3f}  {text}"
            for t, member, observed, text in self._history
            if observed or member == -1 or member in involved
        ]

    # --- members ---------------------------------------------------------------------------

    def _subscribe(self, idx: int) -> None:
        for topic in subscriptions(self.colony_id, self.ads[idx]):
            self.subscribers.setdefault(topic, []).append(idx)

    def _unsubscribe(self, idx: int) -> None:
        for members in self.subscribers.values():
            if idx in members:
                members.remove(idx)

    def _boot(self, idx: int) -> None:
        node = self.node_factory(
            self.mids[idx],
            self.boot[idx],
            self.params,
            ad=self.ads[idx],
            durable=self.disks[idx],
            sign=self.keys[idx].sign,
        )
        self.nodes[idx] = node
        self._apply(idx, node.start(self.node_now(idx)))

    def _crash(self, idx: int) -> None:
        if self.nodes[idx] is None:
            return
        self._note(f"#{idx} crashes", idx)
        self.counters["crashes"] += 1
        self.nodes[idx] = None
        self.incarnation[idx] += 1
        for key in [k for k in self.executions if k[0] == idx]:
            del self.executions[key]
        # the kernel closes a dead process's connections: its peers notice (the daemon's
        # transport reports a peer whose stream ends with its connection)
        self.contacts[idx].clear()
        for other, heard in enumerate(self.contacts):
            if idx in heard:
                heard.discard(idx)
                if self.nodes[other] is not None:
                    at = self.now + self.net.latency
                    self.push(at, LOST, other, idx, self.incarnation[other])

    def _restart(self, idx: int) -> None:
        if self.nodes[idx] is not None or idx in self.revoked:
            return
        self._note(f"#{idx} restarts from its disk", idx)
        self.counters["restarts"] += 1
        self._boot(idx)

    # --- effects ---------------------------------------------------------------------------

    def _apply(self, idx: int, effects: list[Any]) -> None:
        for e in effects:
            t = type(e)
            if t is Send:
                self._send(idx, e.to, e.msg)
            elif t is SetTimer:
                at = max(self.now, e.at - self.skew[idx])
                # the node's clock must read at least e.at when it fires, despite rounding
                self.push(at, TIMER, idx, (self.incarnation[idx], e.at), e.key)
            elif t is Persist:
                table = self.disks[idx].setdefault(e.table, {})
                if e.value is None:
                    table.pop(e.key, None)
                else:
                    table[e.key] = e.value
                if e.table == RECORDS:
                    self.checker.persisted(idx, e.key, e.value, self.now)
            elif t is Publish:
                self._publish(idx, e.item)
            elif t is Observe:
                if self.focus is not None and e.pid == self.focus:
                    text = f"#{idx} {e.kind} {_short(e.data, self.index)}"
                    self._history.append((self.now, idx, True, text))
                self.checker.observed(idx, e, self.now)
                if e.kind == "membership":
                    node = self.nodes[idx]
                    if node is not None:
                        self.checker.adopted(idx, node.membership, self.issued, self.now)
            elif t is StartExecution:
                self._start(idx, e)
            elif t is CancelExecution:
                if self.executions.pop((idx, e.pid, e.epoch), None) is not None:
                    self.counters["runs_cancelled"] += 1
            elif t is Reject:
                self.counters[f"rejected_{e.code}"] += 1

    def _send(self, src: int, to: str, msg: Message) -> None:
        dst = self.index.get(to)
        if dst is None:
            self.counters["sent_to_stranger"] += 1
            return
        net = self.net
        rng = self.rng
        self.counters["messages"] += 1
        if net.loss and rng.random() < net.loss:
            self.counters["messages_lost"] += 1
            return
        self.push(self.now + net.latency + net.jitter * rng.random(), MSG, dst, src, msg)
        if net.duplicate and rng.random() < net.duplicate:
            self.counters["messages_duplicated"] += 1
            self.push(self.now + net.latency + net.jitter * rng.random(), MSG, dst, src, msg)

    def _deliver(self, dst: int, src: int, msg: Message) -> None:
        pid = getattr(msg, "pid", "")
        self._trace(f"M #{src}->#{dst} {type(msg).__name__} {_epoch(msg)}", pid)
        node = self.nodes[dst]
        if node is None:
            self.counters["messages_to_down_member"] += 1
            return
        if self.partitioned and self.side[src] != self.side[dst]:
            self.counters["messages_partitioned"] += 1
            return
        self.contacts[dst].add(src)
        self._apply(dst, node.on_message(self.mids[src], msg, self.node_now(dst)))

    def _publish(self, src: int, item: Announcement) -> None:
        if isinstance(item, SpecAnnounce):
            topic = spec_topic(self.colony_id, item.spec.spec)
        else:
            topic = colony_topic(self.colony_id)
        self.counters["gossip_published"] += 1
        delay = self.net.gossip_latency * (0.5 + self.rng.random())
        self.push(self.now + delay, GOSSIP, src, item, topic)

    def _deliver_gossip(self, src: int, item: Announcement, topic: str) -> None:
        pid = item.spec.pid if isinstance(item, SpecAnnounce) else ""
        self._trace(f"G #{src} {type(item).__name__}", pid)
        seen: bytearray | None = None
        if isinstance(item, AdAnnounce):
            # GossipSub's seen-cache: a republished ad reaches only members that missed it
            key = (item.ad.executor_id, item.ad.issued_at)
            seen = self.seen_ads.get(key)
            if seen is None:
                seen = self.seen_ads[key] = bytearray(len(self.mids))
        loss = self.net.gossip_loss
        rng = self.rng
        publisher = self.mids[src]
        nodes = self.nodes
        partitioned = self.partitioned
        side = self.side[src]
        for dst in self.subscribers.get(topic, ()):
            if dst == src:
                continue
            node = nodes[dst]
            if node is None or (partitioned and self.side[dst] != side):
                continue
            if seen is not None and seen[dst]:
                continue
            if loss and rng.random() < loss:
                continue
            if seen is not None:
                seen[dst] = 1
            self.counters["gossip_delivered"] += 1
            self._apply(dst, node.on_announcement(publisher, item, self.node_now(dst)))

    # --- executions ------------------------------------------------------------------------

    def _start(self, idx: int, e: StartExecution) -> None:
        self.checker.started(self.mids[idx], e, self.now)
        kwargs = e.spec.spec.kwargs
        seconds = float(kwargs.get("seconds", 1.0))
        if kwargs.get("hang"):
            seconds = max(seconds, e.spec.spec.maxexectime * 3 + self.params.lease_seconds)
        key = (idx, e.pid, e.epoch)
        self.executions[key] = bool(kwargs.get("error"))
        self.push(self.now + seconds, DONE, idx, key)

    def _done(self, idx: int, key: tuple[int, str, int]) -> None:
        error = self.executions.pop(key, None)
        if error is None:
            return  # cancelled, or its member crashed
        node = self.nodes[idx]
        if node is None:
            return
        _, pid, epoch = key
        self._trace(f"done #{idx} epoch {epoch}", pid)
        self.counters["runs_finished"] += 1
        result = (
            ExecutionResult(False, (), ("simulated error",))
            if error
            else ExecutionResult(True, (f"{pid[:12]}@{epoch}",))
        )
        self.checker.finished(pid, self.mids[idx], epoch, result.ok, result.output)
        self._apply(idx, node.on_execution_done(pid, epoch, result, self.node_now(idx)))

    # --- workload --------------------------------------------------------------------------

    def _submit(self, i: int) -> None:
        sub = self.colony.submissions[i]
        node = self.nodes[sub.submitter]
        if node is None:
            self.push(self.now + RETRY, SUBMIT, i)  # the user waits for the device to be back
            return
        self.pending_submissions -= 1
        for spec in sub.specs:
            self._trace(f"submit #{sub.submitter}", spec.pid)
        self._apply(sub.submitter, node.submit_workflow(sub.specs, self.node_now(sub.submitter)))
        if self.liars:  # they hear of every process (gossip carries its spec)
            submitter = self.mids[sub.submitter]
            for spec in sub.specs:
                self.byzantine.learned(spec, node.keepers_of(spec.pid), submitter)

    # --- faults ----------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        f = self.scenario.faults
        rng = self.rng
        candidates = [i for i in range(len(self.mids)) if i not in self.liars]
        crashes = round(f.crash_fraction * len(candidates))
        last = 0.0
        for idx in sorted(rng.sample(candidates, crashes)):
            at = rng.uniform(*f.crash_window)
            self.push(at, CRASH, idx)
            back = at + rng.uniform(*f.downtime)
            self.push(back, RESTART, idx)
            last = max(last, back)
        for i, p in enumerate(f.partitions):
            self.push(p.at, CUT, i)
            self.push(p.heal, HEAL, i)
            last = max(last, p.heal)
        for i in range(f.churn.joins):
            at = rng.uniform(*f.churn.window)
            self.push(at, JOIN, i)
            last = max(last, at)
        executors = sorted(self.colony.ads)
        for idx in sorted(rng.sample(executors, f.churn.revokes)):
            at = rng.uniform(*f.churn.window)
            self.push(at, REVOKE, idx)
            last = max(last, at + CUT_OFF_AFTER)
        # The liveness check (scenario.settle_seconds): submissions count as the last
        # "fault" too, so a run without faults is checked from its last submission.
        self.last_fault = max(last, self.scenario.workload.submit_window[1])
        self.push(self.last_fault + self.scenario.settle_seconds, SETTLED)

    def _cut(self, i: int) -> None:
        p = self.scenario.faults.partitions[i]
        n = len(self.mids)
        cut = set(self.rng.sample(range(n), round(p.fraction * n)))
        self.side = [1 if idx in cut else 0 for idx in range(n)]
        self.partitioned = True
        self.counters["partitions"] += 1
        self._note(f"partition #{i}: {len(cut)} of {n} members cut off")

    def _heal(self, i: int) -> None:
        self.partitioned = False
        self._note(f"heal #{i}")

    def _admin(self) -> ColonyNode | None:
        return self.nodes[0]

    def _change_membership(self, new: MembershipSet) -> None:
        owner = self.nodes[0]
        assert owner is not None
        self.membership = new
        self.issued[new.version] = new
        self._apply(0, owner.adopt_membership(new, self.node_now(0)))

    def _join(self, i: int) -> None:
        if self.nodes[0] is None:
            self.push(self.now + RETRY, JOIN, i)
            return
        ident, ad = self.colony.spares[i]
        new = self.membership.updated(
            self.colony.owner, self.node_now(0), add=[Member(ident.member_id, "executor")]
        )
        idx = len(self.mids)
        self._note(f"join #{idx} (membership v{new.version})")
        self.counters["joins"] += 1
        self.mids.append(ident.member_id)
        self.keys.append(ident)
        self.index[ident.member_id] = idx
        self.ads.append(ad)
        self.boot.append(new)
        self.nodes.append(None)
        self.incarnation.append(0)
        self.disks.append({})
        self.skew.append(self.rng.uniform(-1, 1) * self.scenario.faults.clock_skew)
        self.side.append(0)
        self.contacts.append(set())
        for seen in self.seen_ads.values():
            seen.append(0)
        self._subscribe(idx)
        self._change_membership(new)
        self._boot(idx)

    def _revoke(self, idx: int) -> None:
        if self.nodes[0] is None:
            self.push(self.now + RETRY, REVOKE, idx)
            return
        if idx in self.revoked:
            return
        new = self.membership.updated(self.colony.owner, self.node_now(0), remove=[self.mids[idx]])
        self._note(f"revoke #{idx} (membership v{new.version})")
        self.counters["revocations"] += 1
        self._change_membership(new)
        self.revoked.append(idx)
        self._unsubscribe(idx)
        self.push(self.now + CUT_OFF_AFTER, CRASH, idx)

    # --- plot samples ----------------------------------------------------------------------

    def _sample(self) -> None:
        c = self.checker
        running = len({key[1] for key in self.executions})
        done = c.successful + c.failed
        waiting = max(0, len(c.acknowledged) - done - running)
        self.samples.append(Sample(self.now, waiting, running, c.successful, c.failed))
        self.push(self.now + self.scenario.sample_every, SAMPLE)


def _epoch(msg: Any) -> str:
    epoch = getattr(msg, "epoch", None)
    return "" if epoch is None else f"e{epoch}"


def _short(data: dict[str, Any], index: dict[str, int]) -> str:
    parts = []
    for k, v in data.items():
        if isinstance(v, str) and v in index:
            v = f"#{index[v]}"
        elif isinstance(v, str) and len(v) > 24:
            v = v[:24]
        elif isinstance(v, list | tuple):
            v = f"[{len(v)}]"
        parts.append(f"{k}={v}")
    return " ".join(parts)


def simulate(
    scenario: Scenario, seed: int, progress: Callable[[Simulation], None] | None = None
) -> Result:
    """Run ``scenario`` with ``seed``. On a violation, replay the same run up to it,
    recording the violating process's history (the run is deterministic, so the replay
    meets the same violation at the same event)."""
    result = Simulation(scenario, seed).run(progress)
    if result.violation is not None:
        replay = Simulation(scenario, seed, focus=result.violation.pid)
        replay.run(stop_at_event=result.events)
        result.history = replay.history
    return result
