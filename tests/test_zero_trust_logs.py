"""Log lines between real daemons, attacked with members' own valid keys: a daemon takes
``LogLines`` only for a process it submitted and only from a member entitled to run it,
keeps at most its caps of what even such a member floods it with, and writes none of
it to its daemon.log; a real executor's lines still arrive, and ``colonynode logs``
prints them with no terminal escape left in them.

The attackers are bare libp2p hosts (tests/attacker.py) with the keys of members that
joined and never started: ``mallory`` (role user: no executor, no ad) and ``rogue``
(role executor, which announces an ad of its own over CatchUp, as a starting node does)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from attacker import attacker
from cluster import Cluster, Node, cluster, wait_for
from libp2p.custom_types import TProtocol

from colonyp2p import wire
from colonyp2p.core.messages import CatchUp, LogLines
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.node import logs
from colonyp2p.node.framing import frame

MSG = "/colonyp2p/msg/2.0.0"
# the tests share one colony (the module's fixture): one worker makes it, once
pytestmark = pytest.mark.xdist_group("zero-trust-logs")
_seq = time.time_ns() // 1000  # fresh for the replay guard, across tests and runs


def envelope(identity: Identity, colony_id: str, msg: object) -> bytes:
    global _seq
    _seq += 1
    return frame(wire.encode(identity, colony_id, _seq, time.time(), msg))


def refused_logs(node: Node) -> dict[str, int]:
    refused: dict[str, dict[str, int]] = node.status()["refused"]
    return dict(refused.get("logs", {}))


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, Node]]]:
    with cluster(Path(tmp_path_factory.mktemp("logs"))) as c:
        owner = c.found()  # runs "local" processes itself
        worker = c.join("worker", owner, executortype="worker", kind="shell")
        mallory = c.join("mallory", owner, role="user", start=False)
        rogue = c.join("rogue", owner, role="executor", start=False)
        yield c, {"owner": owner, "worker": worker, "mallory": mallory, "rogue": rogue}


async def announce_ad(rogue: Node, owner: Node, executortype: str) -> None:
    """``rogue``'s own signed ad, told to ``owner`` as a starting node tells it; returns
    once the owner knows it."""
    identity = rogue.home.identity()
    status = await trio.to_thread.run_sync(owner.status)
    ad = ExecutorAd.create(
        identity, time.time(), executortype=executortype, name=f"rogue-{executortype}"
    )
    ask = CatchUp(status["membership_version"], ad, 1, False)
    async with attacker(identity, owner.addrs[0]) as host:
        assert await host.send(MSG, envelope(identity, status["colony_id"], ask)) == "sent"

    def known() -> bool:
        members = owner.members()["members"]
        mine = [m for m in members if m["member_id"] == identity.member_id]
        return bool(mine and (mine[0]["executor"] or {}).get("type") == executortype)

    await trio.to_thread.run_sync(wait_for, known, 30, f"the owner to learn {executortype} ad")


async def test_spoofed_lines_of_a_running_process_are_refused_and_never_shown(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    _, nodes = colony
    owner, mallory, rogue = nodes["owner"], nodes["mallory"], nodes["rogue"]
    colony_id = owner.status()["colony_id"]
    pid = owner.submit(
        {"funcname": "sleep", "args": [20], "conditions": {"executortype": "local"}}
    )["pid"]
    running = await trio.to_thread.run_sync(
        wait_for, lambda: owner.process(pid)["state"] == "running" and owner.process(pid), 30, "run"
    )
    epoch = running["epoch"]
    before = refused_logs(owner)
    spoof = LogLines(pid, epoch, 0, ("SPOOFED by a user \x1b[2J",))
    random_pid = os.urandom(32).hex()
    mallory_id = mallory.home.identity()
    async with attacker(mallory_id, owner.addrs[0]) as host:
        payload = envelope(mallory_id, colony_id, spoof)
        payload += envelope(mallory_id, colony_id, LogLines(random_pid, 1, 0, ("SPOOFED",)))
        payload += envelope(mallory_id, colony_id, LogLines("not a pid", 1, 0, ("SPOOFED",)))
        assert await host.send(MSG, payload) == "sent"
    # an executor whose ad matches the spec, but which does not hold the lease
    await announce_ad(rogue, owner, "local")
    rogue_id = rogue.home.identity()
    async with attacker(rogue_id, owner.addrs[0]) as host:
        lines = LogLines(pid, epoch, 0, ("SPOOFED by an executor",))
        assert await host.send(MSG, envelope(rogue_id, colony_id, lines)) == "sent"

    def counted() -> dict[str, int] | None:
        now = refused_logs(owner)
        grew = {k: now.get(k, 0) - before.get(k, 0) for k in now}
        ok = grew.get("log_not_executor", 0) >= 2 and grew.get("log_unknown_process", 0) >= 2
        return grew if ok else None

    grew = await trio.to_thread.run_sync(wait_for, counted, 30, "the refusals to be counted")
    assert grew == {"log_not_executor": 2, "log_unknown_process": 2}, grew
    process = owner.process(pid)
    assert not [line for line in process["logs"] if "SPOOFED" in line], process["logs"]
    shown = await trio.to_thread.run_sync(lambda: owner.cli("logs", pid[:16]).stdout)
    assert "SPOOFED" not in shown


async def test_a_flood_from_an_entitled_member_is_bounded_and_not_written_to_the_log(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    _, nodes = colony
    owner, rogue = nodes["owner"], nodes["rogue"]
    colony_id = owner.status()["colony_id"]
    # nobody runs a "sink": the process waits, and the rogue's ad matches it
    pid = owner.submit({"funcname": "noop", "conditions": {"executortype": "sink"}})["pid"]
    await announce_ad(rogue, owner, "sink")
    log_size = owner.home.log_path.stat().st_size
    before = owner.status()
    rogue_id = rogue.home.identity()
    line = "x" * 4000
    payload = b"".join(
        envelope(rogue_id, colony_id, LogLines(pid, 1, i * 250, (f"{i} {line}",) * 250))
        for i in range(32)  # 32 MB of lines of one process
    )
    payload += b"".join(  # and of processes the node never heard of
        envelope(rogue_id, colony_id, LogLines(os.urandom(32).hex(), 1, 0, (line,)))
        for _ in range(300)
    )
    sentinel = envelope(rogue_id, colony_id, LogLines("sentinel", 1, 0, ("x",)))  # refused at once
    async with attacker(rogue_id, owner.addrs[0]) as host:
        await host.connect()
        stream = await host.host.new_stream(host.target.peer_id, [TProtocol(MSG)])
        with trio.fail_after(120):  # a slow machine reads 32 MB slowly: the bucket refills
            data = payload + sentinel
            for start in range(0, len(data), 1 << 20):
                await stream.write(data[start : start + (1 << 20)])
            await stream.close()

    def all_read() -> dict[str, Any] | None:
        status = owner.status()
        unknown = status["refused"].get("logs", {}).get("log_unknown_process", 0)
        return (
            status
            if unknown > before["refused"].get("logs", {}).get("log_unknown_process", 0)
            else None
        )

    # frames of one stream are taken in order: the sentinel's refusal follows every other
    status = await trio.to_thread.run_sync(wait_for, all_read, 90, "the flood to be read")
    refused = status["refused"]["logs"]
    assert refused.get("log_rate", 0) >= 1, refused  # more than the sender's bucket holds
    kept = owner.process(pid)["logs"]
    assert len(kept) <= logs.LINES_PER_PROCESS
    assert sum(map(logs.size, kept)) <= logs.BYTES_PER_PROCESS
    assert kept[-1] == logs.CAP_NOTE  # the cap was reached, and said so
    grown = status["logs"]["bytes"] - before["logs"]["bytes"]
    assert grown <= logs.BYTES_PER_PROCESS, status["logs"]
    assert status["logs"]["bytes"] <= logs.BUDGET
    assert status["logs"]["dropped_lines"] > before["logs"]["dropped_lines"]
    # 32 MB arrived; the log file took a few lines (a warning per refusal reason)
    assert owner.home.log_path.stat().st_size - log_size < 64 * 1024


async def test_a_real_executor_s_lines_arrive_and_are_shown_without_escapes(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    _, nodes = colony
    owner = nodes["owner"]
    script = "echo hello from the worker; printf '\\033[31mred\\033[0m\\n'; printf 'a\\rb\\n'"
    pid = owner.submit(
        {"funcname": "sh", "args": ["-c", script], "conditions": {"executortype": "worker"}}
    )["pid"]
    done = await trio.to_thread.run_sync(wait_for, lambda: owner.finished(pid), 60, "the process")
    assert done["state"] == "successful", done
    kept = await trio.to_thread.run_sync(
        wait_for,
        lambda: (lines := owner.process(pid)["logs"]) and len(lines) >= 3 and lines,
        30,
        "the worker's lines at the submitter",
    )
    assert "hello from the worker" in kept
    assert "\x1b[31mred\x1b[0m" in kept  # kept as printed; the API gives what it got
    shown = await trio.to_thread.run_sync(lambda: owner.cli("logs", pid[:16]).stdout)
    assert "hello from the worker" in shown
    assert "\x1b" not in shown and "\r" not in shown
    assert "red" in shown and "a\\x0db" in shown
