"""The daemon's rules for ``LogLines`` (Daemon._received_logs), with the core and the store
stood in for: whose lines it takes for which process, its own submissions found in the
store after a restart, and the lease holder preferred to the ads where it keeps the
record. (tests/test_zero_trust_logs.py attacks real daemons over the network.)"""

from __future__ import annotations

import itertools
import os
import time
from collections import OrderedDict, deque
from types import SimpleNamespace
from typing import Any

import trio

from colonyp2p import codec, wire
from colonyp2p.core.messages import LogLines
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.colonyos_json import function_spec_from_colonyos
from colonyp2p.model.signed import SignedSpec
from colonyp2p.node import daemon as daemon_module
from colonyp2p.node import logs
from colonyp2p.node.backend import SUBMITTED
from colonyp2p.node.daemon import Daemon
from colonyp2p.node.quotas import Buckets

ME, EXEC, OTHER, USER = (Identity.from_seed(bytes([n]) * 32) for n in range(1, 5))
COLONY = "c0" * 32


class Counting:
    def __init__(self) -> None:
        self.rejections = wire.RejectionCounter()

    def refused(self, protocol: str, peer: object, exc: BaseException) -> None:
        self.rejections.count(exc, protocol)


def spec(executortype: str, submitter: Identity = ME) -> SignedSpec:
    fs = function_spec_from_colonyos(
        {"funcname": "echo", "conditions": {"executortype": executortype}}
    )
    return SignedSpec.create(fs, submitter, COLONY, time.time(), os.urandom(12))


def ad(identity: Identity, executortype: str) -> ExecutorAd:
    return ExecutorAd.create(identity, time.time(), executortype=executortype, name="x")


def daemon(rows: dict[str, bytes] | None = None) -> Any:
    """A Daemon with only what its log handling uses."""
    d: Any = Daemon.__new__(Daemon)
    rows = rows or {}
    d.identity = ME
    d.node = SimpleNamespace(
        records={},
        record=lambda pid: d.node.records.get(pid),
        client=SimpleNamespace(pending={}),
        ads={EXEC.member_id: ad(EXEC, "local"), OTHER.member_id: ad(OTHER, "gpu")},
    )
    d.store = SimpleNamespace(get_meta=rows.get)
    d.transport = Counting()
    d.kept_logs = logs.KeptLogs()
    d._log_rates = Buckets(logs.LOG_RATE, logs.LOG_BURST)
    d._mine, d._not_mine = OrderedDict(), OrderedDict()
    d._log_checks_send, d._log_checks = trio.open_memory_channel[Any](4)
    d._log_checks_bytes = 0
    d.events, d.event_seq, d._expected = deque(maxlen=100), 0, {}
    d._event_added = trio.Event()
    return d


def refused(d: Any) -> dict[str, int]:
    counts: dict[str, dict[str, int]] = d.transport.rejections.by_protocol_dict()
    return counts.get("logs", {})


async def test_lines_only_from_an_executor_whose_ad_matches_a_process_submitted_here() -> None:
    d = daemon()
    mine, theirs = spec("local"), spec("local", submitter=OTHER)
    d._remember_spec(mine.pid, mine.spec)  # what submit_signed does
    d._received_logs(EXEC.member_id, LogLines(mine.pid, 1, 0, ("from the executor",)))
    d._received_logs(OTHER.member_id, LogLines(mine.pid, 1, 1, ("its ad says gpu",)))
    d._received_logs(USER.member_id, LogLines(mine.pid, 1, 1, ("no ad at all",)))
    d._received_logs(EXEC.member_id, LogLines("garbage", 1, 0, ("not a pid",)))
    d.node.records[theirs.pid] = SimpleNamespace(spec=theirs, holder="", promised=0)
    d._received_logs(EXEC.member_id, LogLines(theirs.pid, 1, 0, ("not submitted here",)))
    assert d.logs_of(mine.pid) == ["from the executor"]
    assert d.logs_of(theirs.pid) == []
    assert refused(d) == {"log_not_executor": 2, "log_unknown_process": 2}
    # a batch sent again repeats nothing
    d._received_logs(EXEC.member_id, LogLines(mine.pid, 1, 0, ("from the executor", "next")))
    assert d.logs_of(mine.pid) == ["from the executor", "next"]


async def test_the_lease_holder_is_preferred_where_the_node_keeps_the_record() -> None:
    d = daemon()
    mine = spec("local")
    d._remember_spec(mine.pid, mine.spec)
    other_exec = Identity.generate()
    d.node.ads[other_exec.member_id] = ad(other_exec, "local")  # matches too
    d.node.records[mine.pid] = SimpleNamespace(spec=mine, holder=EXEC.member_id, promised=2)
    d._received_logs(other_exec.member_id, LogLines(mine.pid, 2, 0, ("not the holder",)))
    d._received_logs(EXEC.member_id, LogLines(mine.pid, 2, 0, ("the holder",)))
    # an earlier epoch's holder is not known here: its ad decides
    d._received_logs(other_exec.member_id, LogLines(mine.pid, 1, 0, ("epoch 1",)))
    assert d.logs_of(mine.pid) == ["the holder", "epoch 1"]
    assert refused(d) == {"log_not_executor": 1}


async def test_a_submission_only_the_store_knows_is_looked_up_there() -> None:
    mine, theirs = spec("local"), spec("local", submitter=OTHER)
    rows = {SUBMITTED + s.pid: codec.plain_bytes(s) for s in (mine, theirs)}
    d = daemon(rows)  # as after a restart: nothing in memory
    unknown = os.urandom(32).hex()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d._check_logs)
        d._received_logs(EXEC.member_id, LogLines(mine.pid, 1, 0, ("after a restart",)))
        d._received_logs(EXEC.member_id, LogLines(theirs.pid, 1, 0, ("another's",)))
        d._received_logs(EXEC.member_id, LogLines(unknown, 1, 0, ("nobody's",)))
        with trio.fail_after(10):
            while sum(refused(d).values()) < 2 or not d.logs_of(mine.pid):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert d.logs_of(mine.pid) == ["after a restart"]
    assert refused(d) == {"log_unknown_process": 2}
    assert d._log_checks_bytes == 0
    # remembered: the next batch needs no lookup
    assert d._my_spec(mine.pid) == mine.spec and d._my_spec(unknown) is None


async def test_a_sender_beyond_its_rate_is_refused() -> None:
    d = daemon()
    mine = spec("local")
    d._remember_spec(mine.pid, mine.spec)
    line = "x" * 4000
    batch = (line,) * 250  # about 1 MB
    for i in range(20):
        d._received_logs(EXEC.member_id, LogLines(mine.pid, 1, i * 250, batch))
    assert refused(d).get("log_rate", 0) >= 10
    assert sum(map(logs.size, d.logs_of(mine.pid))) <= logs.BYTES_PER_PROCESS
    assert d.logs_of(mine.pid)[-1] == logs.CAP_NOTE


async def test_an_executor_ships_a_submitter_no_more_than_it_takes() -> None:
    d = daemon()
    sent: list[LogLines] = []
    d._outbox = lambda to: SimpleNamespace(send_nowait=sent.append)
    d._ship_rates = Buckets(logs.SHIP_RATE, logs.SHIP_BURST)
    d._logs = {}
    buf = d._logs[("p" * 64, 1)] = daemon_module._LogBuffer(OTHER.member_id)
    for i in range(20_000):
        buf.add(f"{i} " + "y" * 1000)
    assert buf.full and buf.lines[-1] == logs.CAP_NOTE  # no more than a submitter keeps
    buf.done = True
    d._flush_logs("p" * 64, 1)
    cost = sum(logs.cost(m.lines) for m in sent)
    assert 0 < cost <= logs.SHIP_BURST < logs.LOG_BURST
    assert buf.lines, "the rest waits for the bucket"
    assert ("p" * 64, 1) in d._logs
    # numbered without gaps, so the submitter's repeat check holds
    assert [m.first for m in sent] == list(
        itertools.accumulate([0] + [len(m.lines) for m in sent[:-1]])
    )
