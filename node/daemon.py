"""The colonynode daemon: the trio + libp2p driver of the protocol core.

One task owns the ``ColonyNode``: it takes inputs (verified messages and
announcements from the transport, finished executions, local commands) from one
channel, in batches, runs them through the core with the wall clock, and carries
out the effects: first every Persist of the batch in one SQLite transaction, then
the sends, publications, timers and executions. Nothing is sent before what it
depends on is on disk, so a daemon killed with SIGKILL loses nothing it
acknowledged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import math
import os
import platform
import re
import signal
import sqlite3
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import outcome
import trio

from colonyp2p import codec
from colonyp2p.core.effects import (
    CancelExecution,
    Effect,
    Observe,
    Persist,
    Publish,
    Reject,
    Send,
    SetTimer,
    StartExecution,
)
from colonyp2p.core.matching import unmet_condition
from colonyp2p.core.messages import (
    MAX_BATCH,
    Accept,
    AdAnnounce,
    Announcement,
    Decide,
    LogLines,
    Message,
    Offer,
    Outcome,
    PeerAddrs,
    Prepare,
    Query,
    Release,
    Renew,
    SpecAnnounce,
    Status,
    StoreSpec,
)
from colonyp2p.core.node import MEMBERSHIP, ColonyNode, ExecutionResult
from colonyp2p.core.params import Params
from colonyp2p.core.topics import colony_topic, spec_topic, subscriptions
from colonyp2p.errors import ColonyError, StoreError
from colonyp2p.executors.base import Executor, RunRequest
from colonyp2p.executors.factory import make
from colonyp2p.executors.process_pool import WorkerPool
from colonyp2p.executors.python import PythonExecutor, Registry
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node import api, logs
from colonyp2p.node.admission import Admission, serve_joins
from colonyp2p.node.backend import SUBMITTED, DaemonBackend
from colonyp2p.node.discovery import Discovery
from colonyp2p.node.fs import FsService
from colonyp2p.node.home import Config, Home, HomeError
from colonyp2p.node.ports import remember_ports, sticky_ports
from colonyp2p.node.quotas import Buckets
from colonyp2p.node.redial import Redialer
from colonyp2p.node.store import Store
from colonyp2p.node.supervise import Health, supervise
from colonyp2p.node.transport import Transport

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("colonyp2p.daemon")
T = TypeVar("T")

BATCH = 256  # inputs run through the core per persistence round
ADDRS_EVERY = 15.0  # seconds between announcements of our listen addresses
MESH_PEERS = 8  # members this node dials as it learns of them, at most
ADDRS_SOON = 0.5  # seconds: how soon we answer a newcomer's with ours
ADDRS_FIRST = (1.0, 2.0, 4.0)  # seconds between the first announcements after start
DISCOVER_EVERY = 60.0  # seconds between looks for members in the DHT
PUBLISH_RATE = 50.0  # gossip publications per second at most (py-libp2p drops bursts)
EVENTS_KEPT = 10_000
OUTCOMES_KEPT = 100_000
LOG_EVERY = 0.25  # seconds between log batches to submitters
LOG_BATCH = 500  # lines per batch
# Lines from other members wait here while the store says whether this node submitted
# their process (the rest is refused, counted as busy); the answers are remembered.
LOG_CHECKS_WAITING = 256
LOG_CHECKS_BYTES = 16 * 1024 * 1024  # and at most this much of them
SPECS_REMEMBERED = 10_000  # of this node's submissions, and of pids that are not
STATUS_RECHECK = 0.05  # s: how often status_of looks whether a keeper it waits for is lost
# messages that ask and state nothing this node has yet to make durable (see _carry_out)
REQUESTS = (StoreSpec, Prepare, Accept, Decide, Renew, Release, Query, Offer)
# Test-only fault point (tests/test_ack_durability.py), read once at start: the name of a
# table; the daemon SIGKILLs itself at its first commit persisting a row of it, once all
# it queued to send has been written, before the commit. It lands a kill where sends
# made before the commit (acknowledgements of what is not durable yet) would escape.
KILL_AT_COMMIT_ENV = "COLONYP2P_TEST_KILL_AT_COMMIT"
KILL_FLUSH_LIMIT = 10.0  # s: how long the fault waits for the senders before killing


class CoreFailed(ColonyError):
    """The protocol core or the store failed: the one failure that ends a daemon."""

    code = "core_failed"


class ListenFailed(ColonyError):
    code = "listen_failed"


class NotInAColony(ColonyError):
    code = "not_in_colony"


@dataclass
class _LogBuffer:
    """What a run printed and its submitter has yet to get: ``lines`` not sent yet,
    ``sent`` sent before them; no more than a submitter keeps of a process
    (node/logs.py), then a note saying so."""

    submitter: str
    lines: list[str] = field(default_factory=list)
    sent: int = 0
    bytes: int = 0
    full: bool = False
    done: bool = False  # the run ended: dropped once everything is sent

    def add(self, line: str) -> None:
        if self.full:
            return
        n = logs.size(line)
        total = self.sent + len(self.lines) + 1
        if total >= logs.LINES_PER_PROCESS or self.bytes + n > (
            logs.BYTES_PER_PROCESS - logs.size(logs.CAP_NOTE)
        ):
            self.full = True
            line, n = logs.CAP_NOTE, logs.size(logs.CAP_NOTE)
        self.lines.append(line)
        self.bytes += n


@dataclass(frozen=True)
class _Input:
    kind: str  # message, announcement, done, lost, call
    a: Any = None
    b: Any = None
    c: Any = None


class Daemon:
    """A running member. ``await nursery.start(daemon.run)`` returns once it listens."""

    def __init__(
        self,
        home: Home,
        *,
        params: Params | None = None,
        registry: Registry | None = None,  # python functions, for embedding
        listen: list[str] | None = None,
    ) -> None:
        self.home = home
        self.identity: Identity = home.identity()
        self.config: Config = home.config()
        self.params = params or self._params(self.config)
        self.executor_impl: Executor | None = (
            None if self.config.executor is None else make(self.config.executor, registry)
        )
        self.listen = listen or self.config.listen
        self.store = Store(home.state_path)
        self.node: ColonyNode | None = None
        self.transport: Transport | None = None
        send, recv = trio.open_memory_channel[_Input](math.inf)
        self._inbox_send, self._inbox = send, recv
        self._timers: list[tuple[float, int, tuple[Any, ...]]] = []
        self._timer_seq = 0
        self._outboxes: dict[str, trio.MemorySendChannel[Message]] = {}
        pub_send, pub_recv = trio.open_memory_channel[tuple[str, Announcement]](math.inf)
        self._publish_send, self._publish_recv = pub_send, pub_recv
        self._runs: dict[tuple[str, int], trio.CancelScope] = {}
        self._status_waiters: dict[str, list[trio.MemorySendChannel[tuple[str, Status]]]] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.outcomes: dict[str, Outcome] = {}  # results this node learned, newest last
        self._logs: dict[tuple[str, int], _LogBuffer] = {}
        # lines from other members: who may send them, how much, and what is kept
        self.kept_logs = logs.KeptLogs()
        self._log_rates = Buckets(logs.LOG_RATE, logs.LOG_BURST)
        self._ship_rates = Buckets(logs.SHIP_RATE, logs.SHIP_BURST)
        self._mine: OrderedDict[str, FunctionSpec] = OrderedDict()  # this node submitted
        self._not_mine: OrderedDict[str, None] = OrderedDict()
        checks_send, checks_recv = trio.open_memory_channel[tuple[str, LogLines]](
            LOG_CHECKS_WAITING
        )
        self._log_checks_send, self._log_checks = checks_send, checks_recv
        self._log_checks_bytes = 0
        self.event_seq = 0
        self._event_added = trio.Event()
        # what API calls wait for, by pid: looked up, never scanned for in ``events``,
        # which a busy node refills every second
        self._expected: dict[tuple[str, str], trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self.started_at = 0.0
        self.api_port = 0
        self.discovery: Discovery | None = None
        self._membership_changed = False
        self._addrs_due = trio.Event()  # set: announce our addresses now
        self.redial: Redialer | None = None  # finds the colony again (node/redial.py)
        self.health = Health()  # supervised subsystems, for `colonynode status`
        self.admission = Admission(self)
        self.fs = FsService(self)  # the meta-filesystem (node/fs.py)
        self._kill_at_commit = os.environ.get(KILL_AT_COMMIT_ENV, "")  # tests only

    @staticmethod
    def _params(config: Config) -> Params:
        fields = {f.name: f.type for f in dataclasses.fields(Params)}
        unknown = sorted(set(config.params) - set(fields))
        if unknown:
            raise HomeError(f"config.json: params has no {unknown[0]!r}")
        values: dict[str, Any] = {
            k: int(v) if fields[k] in (int, "int") else float(v) for k, v in config.params.items()
        }
        return Params(**values)

    # --- lifecycle -------------------------------------------------------------------

    def _ad(self, membership: MembershipSet) -> ExecutorAd | None:
        ex, impl = self.config.executor, self.executor_impl
        if (
            ex is None
            or impl is None
            or membership.role_of(self.identity.member_id)
            not in (
                "owner",
                "admin",
                "executor",
            )
        ):
            return None
        return ExecutorAd.create(
            self.identity,
            time.time(),
            executortype=ex.type,
            name=ex.name or f"{platform.node() or 'node'}-{self.identity.member_id[-6:]}",
            functions=impl.functions(),
            location=ex.location,
            platform=platform.system().lower(),
            architecture=platform.machine(),
            hardware=impl.hardware(),
            capacity=ex.capacity,
        )

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        durable = await trio.to_thread.run_sync(self.store.load)
        saved = durable.get(MEMBERSHIP, {})
        membership = saved.get("current")
        if not isinstance(membership, MembershipSet):
            raise NotInAColony(
                "this node is not in a colony yet: run `colonynode colony create NAME` "
                "or `colonynode join COLONY_ID --ticket T`"
            )
        ad = self._ad(membership)
        node = self.node = ColonyNode(
            self.identity.member_id,
            membership,
            self.params,
            ad=ad,
            durable=durable,
            sign=self.identity.sign,
        )
        colony_id = membership.colony_id
        transport = self.transport = Transport(
            self.identity,
            colony_id,
            is_member=lambda m: node.membership.is_member(m),
            on_message=self._on_message,
            on_announcement=self._on_announcement,
            on_peer_lost=self._on_peer_lost,
            # port 0 means the port of the previous run (node/ports.py)
            listen_addrs=sticky_ports(self.home, self.listen),
            psk=self.config.psk or None,
            health=self.health,
        )
        health = self.health
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(transport.run)
                if not transport.addrs:
                    # py-libp2p logs a failed listen and carries on deaf: refuse instead
                    raise ListenFailed(
                        f"cannot listen on {', '.join(self.listen)}: the port is in use "
                        "or the address is not this machine's"
                    )
                remember_ports(self.home, self.listen, transport.host.get_transport_addrs())
                redial = self.redial = Redialer(
                    transport,
                    self.store,
                    self.config.bootstrap,
                    is_member=lambda m: node.membership.is_member(m),  # the current version
                )
                await redial.load()  # where members were before a restart
                serve_joins(transport, self.admission.handle)
                if self.config.dht != "off":
                    self.discovery = Discovery(
                        transport,
                        colony_id,
                        self.identity,
                        is_member=lambda m: node.membership.is_member(m),
                        server=self.config.dht == "server",
                        mdns=self.config.mdns,
                    )
                    await nursery.start(self.discovery.run)
                    nursery.start_soon(
                        supervise, "discovery", partial(self._discover, self.discovery), health
                    )
                await nursery.start(self.fs.run)
                if self._worker_pool is not None:
                    await self._worker_pool.warm()
                self.api_port = await nursery.start(
                    api.serve, DaemonBackend(self), "127.0.0.1", self.config.api_port
                )
                for topic in subscriptions(colony_id, ad):
                    await transport.subscribe(topic)
                for addr in self.config.bootstrap:
                    await self._connect(addr)
                nursery.start_soon(redial.run)  # never raises
                self.started_at = time.time()
                await self._carry_out(node.start(self.started_at))
                nursery.start_soon(self._core_task)
                nursery.start_soon(supervise, "publisher", self._publisher, health)
                nursery.start_soon(supervise, "addresses", self._announce_addrs, health)
                nursery.start_soon(supervise, "logs", self._ship_logs, health)
                nursery.start_soon(supervise, "log-checks", self._check_logs, health)
                self._event("started", "", {"member": self.identity.member_id})
                self.home.publish_runtime(
                    {
                        "pid": os.getpid(),
                        "api": f"http://127.0.0.1:{self.api_port}",
                        "member_id": node.member_id,
                        "colony_id": colony_id,
                        "addrs": transport.addrs,
                    }
                )
                log.info("member %s listening on %s", node.member_id, transport.addrs)
                task_status.started()
        finally:
            self.home.clear_runtime()
            if self._worker_pool is not None:
                with trio.CancelScope(shield=True):
                    await self._worker_pool.close()
            await trio.to_thread.run_sync(self.store.close)

    @property
    def _worker_pool(self) -> WorkerPool | None:
        """The python executor's worker processes, with isolation "process"."""
        impl = self.executor_impl
        return impl.pool if isinstance(impl, PythonExecutor) else None

    def _should_dial(self, member: str) -> bool:
        """Connect to members as we learn of them, up to MESH_PEERS connections, so gossip
        has a mesh without waiting for a direct message. Of two members, the one with
        the smaller id dials: they learn of each other at about the same time."""
        assert self.transport is not None
        return member > self.identity.member_id and len(self.transport.connected()) < MESH_PEERS

    async def _dial(self, member: str) -> None:
        assert self.transport is not None
        try:
            reached = await self.transport.reach(member)
        except Exception as exc:  # one dial's bug must not end the node
            log.warning("dialing %s failed: %r", member, exc)
            return
        if not reached:
            log.debug("member %s not reachable at its announced addresses", member)

    async def _connect(self, addr: str) -> None:
        assert self.transport is not None
        try:
            await self.transport.connect(addr)
        except ColonyError as exc:
            log.warning("bootstrap %s unreachable: %s", addr, exc)

    # --- inputs ----------------------------------------------------------------------

    def _on_message(self, sender: str, msg: Message) -> None:
        if isinstance(msg, LogLines):
            self._received_logs(sender, msg)
            return
        if isinstance(msg, Status):
            for waiter in self._status_waiters.get(msg.pid, ()):
                waiter.send_nowait((sender, msg))
        self._inbox_send.send_nowait(_Input("message", sender, msg))

    def _on_announcement(self, publisher: str, item: Announcement) -> None:
        if isinstance(item, PeerAddrs) and self.transport is not None:
            new = not self.transport.knows(publisher)
            if new:
                # a member new to us (just joined, or we just started): tell it where
                # we listen now rather than at our next round
                self._addrs_due.set()
            try:
                self.transport.add_addrs(publisher, item.addrs)
                if self.redial is not None:
                    self.redial.learned(publisher, item.addrs)  # kept for restarts
            except ValueError as exc:
                log.warning("bad addresses from %s: %s", publisher, exc)
                return
            if new and self._nursery is not None and self._should_dial(publisher):
                self._nursery.start_soon(self._dial, publisher)
        # Addresses go on to the core too: they say their member runs, and the core
        # passes over members it never heard from when it places new specs
        # (core/availability.py).
        self._inbox_send.send_nowait(_Input("announcement", publisher, item))

    def _on_peer_lost(self, member: str) -> None:
        log.info("connection to member %s lost", member)
        if self.redial is not None:
            self.redial.peer_lost()  # the last one? then it redials
        self._inbox_send.send_nowait(_Input("lost", member))

    async def call(self, fn: Callable[[ColonyNode, float], tuple[list[Effect], T]]) -> T:
        """Run ``fn`` on the core in the core task, carry out the effects it returns, and
        give back its value (or raise its exception)."""
        done_send, done_recv = trio.open_memory_channel[outcome.Outcome[T]](1)
        self._inbox_send.send_nowait(_Input("call", fn, done_send))
        async with done_recv:
            result = await done_recv.receive()
        return result.unwrap()

    # --- the core task ---------------------------------------------------------------

    async def _core_task(self) -> None:
        """The core loop, the one task whose failure ends the daemon: a node that cannot
        run its protocol or make its state durable must not carry on half alive. What it
        acknowledged is on disk, so a restart picks up from there."""
        try:
            await self._core_loop()
        except Exception as exc:
            log.critical("the protocol core failed; the daemon stops", exc_info=exc)
            store = isinstance(exc, StoreError | sqlite3.Error | OSError)
            where = "the store" if store else "the core"
            raise CoreFailed(
                f"{where} failed ({type(exc).__name__}: {exc}); the daemon stopped. Nothing "
                f"it acknowledged is lost; see {self.home.log_path} and start it again"
            ) from exc

    async def _core_loop(self) -> None:
        node = self.node
        assert node is not None
        while True:
            batch: list[_Input] = []
            deadline = self._next_timer_deadline()
            with trio.move_on_at(deadline):
                batch.append(await self._inbox.receive())
            while len(batch) < BATCH:
                try:
                    batch.append(self._inbox.receive_nowait())
                except trio.WouldBlock:
                    break
            now = time.time()
            effects: list[Effect] = []
            replies: list[
                tuple[trio.MemorySendChannel[outcome.Outcome[Any]], outcome.Outcome[Any]]
            ] = []
            for item in batch:
                if item.kind == "call":
                    try:
                        out, value = item.a(node, now)
                    except Exception as exc:
                        replies.append((item.b, outcome.Error(exc)))
                        continue
                    replies.append((item.b, outcome.Value(value)))
                else:
                    out = self._step(node, item, now)
                effects.extend(out)
            while self._timers and self._timers[0][0] <= now:
                _, _, key = heapq.heappop(self._timers)
                effects.extend(node.on_timer(key, now))
            await self._carry_out(effects)
            for reply, out in replies:
                reply.send_nowait(out)

    def _step(self, node: ColonyNode, item: _Input, now: float) -> list[Effect]:
        if item.kind == "message":
            return node.on_message(item.a, item.b, now)
        if item.kind == "announcement":
            return node.on_announcement(item.a, item.b, now)
        if item.kind == "done":
            return node.on_execution_done(item.a, item.b, item.c, now)
        if item.kind == "lost":
            return node.on_peer_lost(item.a, now)
        raise AssertionError(item.kind)

    def _next_timer_deadline(self) -> float:
        if not self._timers:
            return math.inf
        return trio.current_time() + max(0.0, self._timers[0][0] - time.time())

    async def _carry_out(self, effects: list[Effect]) -> None:
        persists = [e for e in effects if isinstance(e, Persist)]
        if any(p.table == MEMBERSHIP and p.key == "current" for p in persists):
            self._membership_changed = True  # (the core keeps every version, core/catchup.py)
        if persists:
            # Requests leave while the step is made durable: they promise nothing, and
            # no answer to them is read before the commit is done (the core task waits
            # for it). Everything else leaves after: a full disk stops the daemon here,
            # before it acknowledged or promised what it could not keep.
            for e in effects:
                if isinstance(e, Send) and isinstance(e.msg, REQUESTS):
                    self._outbox(e.to).send_nowait(e.msg)
            if self._kill_at_commit and any(p.table == self._kill_at_commit for p in persists):
                await self._kill_before_commit()
            await trio.to_thread.run_sync(self.store.apply, persists)
        for e in effects:
            if isinstance(e, Send):
                if not (persists and isinstance(e.msg, REQUESTS)):
                    self._outbox(e.to).send_nowait(e.msg)
            elif isinstance(e, Publish):
                self._publish_send.send_nowait((self._topic(e.item), e.item))
            elif isinstance(e, SetTimer):
                self._timer_seq += 1
                heapq.heappush(self._timers, (e.at, self._timer_seq, e.key))
            elif isinstance(e, StartExecution):
                self._start(e)
            elif isinstance(e, CancelExecution):
                scope = self._runs.pop((e.pid, e.epoch), None)
                if scope is not None:
                    scope.cancel()
                    self._event("cancelled", e.pid, {"epoch": e.epoch, "reason": e.reason})
            elif isinstance(e, Observe):
                if e.kind == "result":
                    self._learned_outcome(e.pid, e.data["outcome"])
                else:
                    self._event(e.kind, e.pid, e.data)
            elif isinstance(e, Reject):
                log.debug("refused: %s %s", e.code, e.detail)
        if self._membership_changed and self.transport is not None:
            self._membership_changed = False
            # a new member learns where we listen at once, not at our next round
            self._addrs_due.set()
            # a revoked member loses its connections (and with them its gossip) at once
            await self.transport.drop_non_members()

    async def _kill_before_commit(self) -> None:
        """The test-only fault point (KILL_AT_COMMIT_ENV): wait until every sender has
        written what was queued for it (each idle on an empty outbox), then SIGKILL."""
        with trio.move_on_after(KILL_FLUSH_LIMIT):
            while not all(
                box.statistics().current_buffer_used == 0
                and box.statistics().tasks_waiting_receive > 0
                for box in self._outboxes.values()
            ):
                await trio.sleep(0.01)
        log.warning("test fault %s: killed before a commit", KILL_AT_COMMIT_ENV)
        os.kill(os.getpid(), signal.SIGKILL)

    def _learned_outcome(self, pid: str, value: Outcome) -> None:
        """An outcome the core accepted from a sender entitled to tell it (the record's
        keepers, or this node's own ballot or record: core ``report_result``); a Decide
        from anyone else is never cached (any member can send one)."""
        if pid in self.outcomes:
            return
        self.outcomes[pid] = value
        while len(self.outcomes) > OUTCOMES_KEPT:
            del self.outcomes[next(iter(self.outcomes))]
        self._event("result", pid, {"outcome": value.kind, "executor": value.executor})

    def _topic(self, item: Announcement) -> str:
        assert self.node is not None
        colony = self.node.membership.colony_id
        if isinstance(item, SpecAnnounce):
            return spec_topic(colony, item.spec.spec)
        return colony_topic(colony)

    # --- network tasks ---------------------------------------------------------------

    def _outbox(self, to: str) -> trio.MemorySendChannel[Message]:
        box = self._outboxes.get(to)
        if box is None:
            send, recv = trio.open_memory_channel[Message](math.inf)
            box = self._outboxes[to] = send
            assert self._nursery is not None
            self._nursery.start_soon(
                supervise, "sender", partial(self._sender, to, recv), self.health
            )
        return box

    async def _sender(self, to: str, recv: trio.MemoryReceiveChannel[Message]) -> None:
        # One task per peer: a slow or unreachable peer delays only its own messages.
        # What queued up meanwhile goes out together, in one envelope (a Batch).
        assert self.transport is not None
        async for msg in recv:
            await self.transport.send_many(to, _drain(recv, [msg]))

    async def _publisher(self) -> None:
        assert self.transport is not None
        async for first in self._publish_recv:
            by_topic: dict[str, list[Announcement]] = {}
            for topic, item in _drain(self._publish_recv, [first]):
                by_topic.setdefault(topic, []).append(item)
            for topic, items in by_topic.items():
                await self.transport.publish_many(topic, items)
                await trio.sleep(1.0 / PUBLISH_RATE)

    async def _announce_addrs(self) -> None:
        assert self.transport is not None and self.node is not None
        # quickly at first: the first announcements may go out before gossip has a mesh
        pauses = itertools.chain(ADDRS_FIRST, itertools.repeat(ADDRS_EVERY))
        while True:
            topic = colony_topic(self.node.membership.colony_id)
            addrs = tuple(self.transport.addrs)
            if addrs:
                self._publish_send.send_nowait((topic, PeerAddrs(addrs)))
            # our ad too, for the same reason: the core publishes it at start, when the
            # mesh may have no peers yet, and then only once a minute
            ad = self.node.executor.ad
            if ad is not None:
                self._publish_send.send_nowait((topic, AdAnnounce(ad)))
            with trio.move_on_after(next(pauses)):
                await self._addrs_due.wait()
                await trio.sleep(ADDRS_SOON)  # one announcement for a burst of newcomers
            self._addrs_due = trio.Event()

    async def _discover(self, discovery: Discovery) -> None:
        """Members found in the DHT fill the address book (for members that joined while
        this node was away, or that no gossip has introduced yet)."""
        await discovery.announced.wait()
        while True:
            found = await discovery.find_members()
            log.debug("the DHT knows %d members", len(found))
            await trio.sleep(DISCOVER_EVERY)

    # --- logs ------------------------------------------------------------------------

    async def _ship_logs(self) -> None:
        """Send what running processes printed to their submitters, in batches, at most
        SHIP_RATE a second to each (below what a submitter takes from one sender)."""
        while True:
            await trio.sleep(LOG_EVERY)
            for pid, epoch in list(self._logs):
                self._flush_logs(pid, epoch)

    def _flush_logs(self, pid: str, epoch: int) -> None:
        buf = self._logs.get((pid, epoch))
        if buf is None:
            return
        if buf.submitter == self.identity.member_id:
            buf.lines.clear()  # kept here already (_keep_line)
        now = trio.current_time()
        while buf.lines:
            budget = self._ship_rates.available(buf.submitter, now)
            batch: list[str] = []
            spent = logs.MESSAGE_COST
            for line in buf.lines[:LOG_BATCH]:
                more = logs.size(line) + logs.LINE_COST
                if spent + more > budget:
                    break
                batch.append(line)
                spent += more
            if not batch or not self._ship_rates.take(buf.submitter, spent, now):
                break  # the rest in a later round
            self._outbox(buf.submitter).send_nowait(LogLines(pid, epoch, buf.sent, tuple(batch)))
            buf.sent += len(batch)
            del buf.lines[: len(batch)]
        if buf.done and not buf.lines:
            del self._logs[(pid, epoch)]

    def _keep_line(self, pid: str, epoch: int, line: str) -> None:
        """Keep a line ``pid`` printed (for the API, within node/logs.py's caps) and make
        it an event; lines beyond the caps are neither."""
        kept = self.kept_logs.add(pid, line)
        if kept is not None:
            self._event("log", pid, {"line": kept, "epoch": epoch})

    def _received_logs(self, sender: str, msg: LogLines) -> None:
        """Lines a member sent of a process: taken only for a process this node
        submitted, from a member entitled to run it, within the sender's rate (see
        node/logs.py); the rest is refused, counted, and changes nothing. Lines that
        are taken, or need the store asked, cost the sender (a refusal decided at once
        costs it nothing more than the message's decoding already did)."""
        try:
            spec = self._my_spec(msg.pid)
            if spec is _UNKNOWN:
                cost = self._charge(sender, msg)
                if self._log_checks_bytes + cost > LOG_CHECKS_BYTES:
                    raise logs.LogsBusy("too many log lines already wait for a check")
                try:  # the store knows: asked in _check_logs
                    self._log_checks_send.send_nowait((sender, msg))
                except trio.WouldBlock:
                    raise logs.LogsBusy(
                        f"{LOG_CHECKS_WAITING} batches of log lines already wait for a check"
                    ) from None
                self._log_checks_bytes += cost
                return
            self._take_logs(sender, msg, spec, charged=False)
        except logs.LogRefused as exc:
            self._refuse_logs(sender, exc)

    def _charge(self, sender: str, msg: LogLines) -> int:
        """Take what ``msg`` costs from ``sender``'s bucket (the cost), or refuse it."""
        cost = logs.cost(msg.lines)
        if not self._log_rates.take(sender, cost, trio.current_time()):
            raise logs.LogRateLimited(
                f"{sender} sent more log lines than this node takes from one member "
                f"({logs.LOG_RATE // 1024} KiB a second after {logs.LOG_BURST // 2**20} MiB)"
            )
        return cost

    def _refuse_logs(self, sender: str, exc: logs.LogRefused) -> None:
        # counted by reason under refused.logs; logged once per reason, then at debug
        if self.transport is not None:
            self.transport.refused("logs", sender, exc)

    async def _check_logs(self) -> None:
        """Lines of processes this node has not looked up yet: whether it submitted them
        is in the store (the API's ``submitted:`` rows), asked one batch at a time."""
        async for sender, msg in self._log_checks:
            self._log_checks_bytes -= logs.cost(msg.lines)
            spec = self._my_spec(msg.pid)
            if spec is _UNKNOWN:
                raw = await trio.to_thread.run_sync(self.store.get_meta, SUBMITTED + msg.pid)
                spec = None
                with contextlib.suppress(ColonyError):  # a row it cannot read: not taken
                    signed = None if raw is None else _signed_spec(raw)
                    if (
                        signed
                        and signed.pid == msg.pid
                        and signed.submitter == self.identity.member_id
                    ):
                        spec = signed.spec
                self._remember_spec(msg.pid, spec)
            try:
                self._take_logs(sender, msg, spec, charged=True)
            except logs.LogRefused as exc:
                self._refuse_logs(sender, exc)

    def _remember_spec(self, pid: str, spec: FunctionSpec | None) -> None:
        table: OrderedDict[str, Any] = self._not_mine if spec is None else self._mine
        table[pid] = spec
        table.move_to_end(pid)
        while len(table) > SPECS_REMEMBERED:
            table.popitem(last=False)

    def _my_spec(self, pid: str) -> object:
        """The spec of ``pid`` if this node submitted it, None if it did not, _UNKNOWN
        when only the store can tell."""
        spec = self._mine.get(pid)
        if spec is not None:
            self._mine.move_to_end(pid)
            return spec
        if pid in self._not_mine or not _PID.fullmatch(pid):
            return None
        node = self.node
        if node is not None:
            rec = node.record(pid)
            pending = node.client.pending.get(pid)
            signed = rec.spec if rec is not None else pending.spec if pending else None
            if signed is not None:
                mine = signed.spec if signed.submitter == self.identity.member_id else None
                self._remember_spec(pid, mine)
                return mine
        return _UNKNOWN

    def _take_logs(self, sender: str, msg: LogLines, spec: object, *, charged: bool) -> None:
        if not isinstance(spec, FunctionSpec):
            raise logs.NotSubmittedHere(
                f"{sender} sent log lines of process {msg.pid[:64]!r}, which this node did "
                "not submit"
            )
        why = self._not_entitled(sender, msg.pid, msg.epoch, spec)
        if why:
            raise logs.NotEntitled(f"log lines of process {msg.pid[:16]} refused: {why}")
        if not charged:
            self._charge(sender, msg)
        seen = self.kept_logs.seen(msg.pid, msg.epoch)
        for n, line in enumerate(msg.lines, start=msg.first):
            if n >= seen:  # a resent batch repeats nothing
                self._keep_line(msg.pid, msg.epoch, line)
        self.kept_logs.saw(msg.pid, msg.epoch, msg.first + len(msg.lines))

    def _not_entitled(self, sender: str, pid: str, epoch: int, spec: FunctionSpec) -> str:
        """Why ``sender`` may not send lines of ``pid``'s run ``epoch`` ("" if it may): the
        lease holder of that epoch where this node keeps the record and knows it, else a
        member whose executor ad matches the spec."""
        node = self.node
        if node is None:
            return "the node is starting"
        rec = node.record(pid)
        if rec is not None and rec.holder and rec.promised == epoch:
            if sender == rec.holder:
                return ""
            return f"{sender} does not hold its lease of epoch {epoch} ({rec.holder} does)"
        ad = node.ads.get(sender)
        if ad is None:
            return f"{sender} announced no executor"
        unmet = unmet_condition(spec, ad)
        return f"{sender}'s executor cannot run it: {unmet}" if unmet else ""

    # --- executions ------------------------------------------------------------------

    def _start(self, e: StartExecution) -> None:
        scope = trio.CancelScope()
        self._runs[(e.pid, e.epoch)] = scope
        self._event("running", e.pid, {"epoch": e.epoch, "funcname": e.spec.spec.funcname})
        assert self._nursery is not None
        self._nursery.start_soon(self._execute, e, scope)

    async def _execute(self, e: StartExecution, scope: trio.CancelScope) -> None:
        spec = e.spec.spec
        result = None
        workdir = self.home.root / "work" / e.pid[:32]
        buf = self._logs[(e.pid, e.epoch)] = _LogBuffer(e.spec.submitter)
        with scope:
            assert self.executor_impl is not None
            if self.executor_impl.uses_workdir:
                workdir.mkdir(parents=True, exist_ok=True)
            deadline = time.time() + spec.maxexectime if spec.maxexectime > 0 else None
            request = RunRequest(e.pid, spec, e.inputs, workdir, deadline)

            def log(line: str) -> None:
                line = line[: logs.MAX_LINE]
                self._keep_line(e.pid, e.epoch, line)
                buf.add(line)

            impl = self.executor_impl
            try:
                # sync directives (spec.fs) around the run, for every executor kind
                run = await self.fs.around_run(spec, workdir, log, lambda: impl.run(request, log))
                result = ExecutionResult(run.ok, run.output, run.errors)
            except Exception as exc:
                # an executor's bug fails this process (a retry may run it elsewhere),
                # not the node that runs the others
                self.health.failed("executor", exc, restarting=False)
                log(f"the executor failed: {type(exc).__name__}: {exc}")
                result = ExecutionResult(False, (), (f"executor failed: {exc!r}",))
        # a run that left nothing behind leaves no directory either (a node runs
        # millions); files a run wrote stay for whoever wants them (where none was
        # created, this is one failing syscall)
        with contextlib.suppress(OSError):
            workdir.rmdir()
        self._runs.pop((e.pid, e.epoch), None)
        buf.done = True  # what SHIP_RATE holds back goes in the next rounds
        self._flush_logs(e.pid, e.epoch)
        if result is not None:
            self._inbox_send.send_nowait(_Input("done", e.pid, e.epoch, result))

    # --- what the local API asks -----------------------------------------------------

    async def submit_signed(self, specs: tuple[SignedSpec, ...]) -> None:
        for spec in specs:  # whose log lines it takes (_received_logs)
            if spec.submitter == self.identity.member_id:
                self._remember_spec(spec.pid, spec.spec)
                self._not_mine.pop(spec.pid, None)
        await self.call(lambda node, now: (node.submit_workflow(specs, now), None))

    async def status_of(self, pid: str, timeout: float = 2.0) -> Status | None:
        """Ask the process's keepers (or our own record) where it stands."""
        node = self.node
        assert node is not None and self.transport is not None
        rec = node.record(pid)
        if rec is not None and rec.decided is not None and rec.decided.kind != "moved":
            return node.status(pid, time.time())
        known = self.outcomes.get(pid)
        if known is not None:
            return Status(pid, True, known.kind, decided=known)
        send, recv = trio.open_memory_channel[tuple[str, Status]](16)
        self._status_waiters.setdefault(pid, []).append(send)
        best: Status | None = None
        asked: set[str] = set()
        waiting: set[str] = set()
        deadline = trio.current_time() + timeout

        def ask(keepers: tuple[str, ...]) -> None:
            nonlocal best
            for keeper in keepers:
                if keeper in asked:
                    continue
                asked.add(keeper)
                if keeper == node.member_id:
                    if rec is not None:
                        best = node.status(pid, time.time())
                    continue
                if keeper not in node.lost:
                    # with the proof: an outcome is shown only where it holds (below)
                    self._outbox(keeper).send_nowait(Query(pid, proof=True))
                    waiting.add(keeper)

        async def answers() -> bool:
            """Until every keeper asked has answered, or was lost meanwhile, or a decided
            answer came (True). A dead keeper does not answer, nor does one that stopped
            answering or never started (node.unavailable): an answer of theirs is taken
            if it comes, but nothing waits for it."""
            nonlocal best
            while trio.current_time() < deadline:
                if not {k for k in waiting - node.lost if not node.unavailable(k)}:
                    break
                with trio.move_on_after(STATUS_RECHECK):
                    sender, status = await recv.receive()
                    if sender not in asked:
                        continue  # only the keepers asked answer (anyone can send a Status)
                    waiting.discard(sender)
                    if not status.known:
                        continue
                    decided = status.decided
                    real = decided is not None and decided.kind != "moved"
                    if real and not node.believes(status):
                        continue  # an outcome without its proof: the sender's word
                    if best is None or _rank(status) > _rank(best):
                        best = status
                    if status.decided is not None and status.decided.kind != "moved":
                        return True
            return False

        try:
            # where the record is as far as the node knows (its own submissions and
            # records, what keepers told it), else the canonical keepers
            ask(node.keepers_of(pid))
            if not await answers() and best is None:
                # Nobody asked keeps it: its submitter passed over members it thought
                # unavailable, so it is among the next closest. Their answers name the
                # record's keepers, which the core then remembers.
                ask(node.keeper_candidates(pid))
                await answers()
        finally:
            self._status_waiters[pid].remove(send)
            if not self._status_waiters[pid]:
                del self._status_waiters[pid]
        return best

    def membership_chain(self) -> tuple[MembershipSet, ...]:
        """Every membership version this node adopted, oldest first (from the genesis
        for the founder and for members that joined with a chain)."""
        return () if self.node is None else self.node.catchup.versions()

    def _event(self, kind: str, pid: str, data: dict[str, Any]) -> None:
        self.event_seq += 1
        event: dict[str, Any] = {"seq": self.event_seq, "t": time.time(), "kind": kind, "pid": pid}
        for k, v in data.items():
            event["outcome" if k == "kind" else k] = _jsonable(v)
        self.events.append(event)
        # a process's lines are the event stream's, not the log file's: a peer's lines
        # would grow it (they go there at debug level only)
        if kind != "log":
            log.info("%s", json.dumps(event, sort_keys=True))
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s", json.dumps(event, sort_keys=True))
        expected = self._expected.pop((kind, pid), None)
        if expected is not None:
            expected.set()
        self._event_added.set()
        self._event_added = trio.Event()

    async def wait_event(self) -> None:
        await self._event_added.wait()

    def expect(self, kind: str, pid: str) -> trio.Event:
        """An Event set when the next ``kind`` event about ``pid`` happens (call ``forget``
        with the same arguments when no longer waiting)."""
        return self._expected.setdefault((kind, pid), trio.Event())

    def forget(self, kind: str, pid: str) -> None:
        self._expected.pop((kind, pid), None)

    def logs_of(self, pid: str) -> list[str]:
        """What ``pid`` printed, as far as this node saw and keeps (node/logs.py)."""
        return self.kept_logs.lines_of(pid)

    def events_after(self, seq: int) -> list[dict[str, Any]]:
        """The kept events numbered above ``seq``, oldest first."""
        events = self.events
        new = events[-1]["seq"] - seq if events else 0  # seqs are consecutive
        if new <= 0:
            return []
        if new >= len(events):
            return list(events)
        # from the right: a follower asks for the last few of thousands kept, and a
        # deque is cheap to read only from its ends
        return list(itertools.islice(reversed(events), new))[::-1]


def _signed_spec(raw: bytes) -> SignedSpec:
    return codec.from_data(SignedSpec, codec.loads(raw), "spec")


_UNKNOWN = object()  # whether this node submitted a process: only its store can tell
_PID = re.compile(r"[0-9a-f]{64}")


def _drain(recv: trio.MemoryReceiveChannel[T], items: list[T]) -> list[T]:
    """``items`` and whatever else waits in ``recv`` now, up to a batch."""
    while len(items) < MAX_BATCH:
        try:
            items.append(recv.receive_nowait())
        except trio.WouldBlock:
            break
    return items


def _rank(status: Status) -> int:
    if status.decided is not None and status.decided.kind != "moved":
        return 3
    return {"running": 2, "waiting": 1}.get(status.state, 0)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)
