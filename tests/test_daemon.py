"""Real colonynode daemons, one process each, over loopback, driven by the real CLI."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import FAST, Cluster, Node, cluster, events, wait_for

from colonyp2p.core.messages import Message, Query, SpecAnnounce, Status, StoreSpec
from colonyp2p.core.topics import spec_topic
from colonyp2p.errors import ApiError
from colonyp2p.identity import Identity
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.transport import Transport

pytestmark = pytest.mark.slow


def test_five_daemons_form_a_colony_and_run_a_function_on_another(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        others = [c.join(f"n{i}", owner) for i in range(1, 4)]
        edge = c.join("edge", owner, executortype="edge")
        members = owner.members()
        assert len(members["members"]) == 5
        assert {m["member_id"] for m in members["members"]} == {
            n.member_id for n in (owner, *others, edge)
        }
        # every member learns the newest membership by gossip
        for node in (owner, *others, edge):
            wait_for(partial(node.has_version, 5), 20, f"{node.name} to learn membership v5")
        submitted = (
            others[0]
            .cli("submit", "--func", "add", "--arg", "40", "--arg", "2", "--executortype", "edge")
            .stdout.strip()
        )
        process = wait_for(lambda: others[0].finished(submitted), 30, "the result")
        assert process["state"] == "successful"
        assert process["output"] == [42.0]
        assert process["executor"] == edge.member_id
        # the run wrote nothing, so it leaves no work directory behind
        assert not (edge.home.root / "work" / submitted[:32]).exists()
        # independent specs at once: all run, or (one of them bad) none is created
        add = {"funcname": "add", "args": [1, 2], "conditions": {"executortype": "edge"}}
        many = others[1].call(lambda api: api.submit_many([add, {**add, "args": [3, 4]}]))
        assert many["acknowledged"] is True
        outputs = [
            wait_for(partial(others[1].finished, pid), 30, "a batch-submitted process")["output"]
            for pid in many["pids"]
        ]
        assert outputs == [[3.0], [7.0]]
        before = len(others[1].call(lambda api: api.processes()))
        with pytest.raises(ApiError, match=r"specs\[1\]") as refused:
            others[1].call(lambda api: api.submit_many([add, {"args": [1]}]))
        assert refused.value.status == 400
        assert len(others[1].call(lambda api: api.processes())) == before


def _kill_the_runner(
    c: Cluster, sleep_s: float, deadline: float, params: dict[str, float] | None = None
) -> tuple[Node, Node, dict[str, Any]]:
    """Two workers; the one that starts a ``sleep`` is SIGKILLed. Returns the owner, the
    other worker and the process as it ended."""
    owner = c.found(params=params)
    w1 = c.join("w1", owner, executortype="worker", params=params)
    w2 = c.join("w2", owner, executortype="worker", params=params)
    spec = {
        "funcname": "sleep",
        "args": [sleep_s],
        "conditions": {"executortype": "worker"},
        "maxretries": 3,
    }
    pid = owner.submit(spec)["pid"]

    def runner() -> Node | None:
        for w in (w1, w2):
            if any(e["kind"] == "running" and e["pid"] == pid for e in events(w)):
                return w
        return None

    first = wait_for(runner, 20, "a worker to start the process")
    second = w2 if first is w1 else w1
    first.kill9()
    process = wait_for(lambda: owner.finished(pid), deadline, "the process to finish elsewhere")
    return owner, second, process


def test_a_killed_executor_s_process_runs_elsewhere_and_is_accepted_once(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner, second, process = _kill_the_runner(c, 2.0, 40)
        assert process["state"] == "successful"
        assert process["executor"] == second.member_id
        assert process["output"] == [2.0]
        # accepted once: every keeper that decided it decided the same run
        decided = {
            (e.get("executor", ""), e.get("value"))
            for node in (owner, second)
            for e in events(node)
            if e["kind"] == "decided" and e["pid"] == process["pid"] and e.get("outcome") != "moved"
        }
        assert len({value for _, value in decided}) == 1, decided


def test_a_killed_executor_s_process_moves_on_when_its_connections_drop(
    tmp_path: Path,
) -> None:
    # Leases far longer than the deadline: the process can only finish in time because
    # the keepers end a lease at once when every connection to its holder drops. (A
    # holder cut off without a closed connection waits for its lease: test_partition.)
    with cluster(tmp_path) as c:
        _, second, process = _kill_the_runner(c, 5.0, 60, {**FAST, "lease_seconds": 600.0})
        assert process["state"] == "successful"
        assert process["executor"] == second.member_id


def test_a_daemon_restarted_after_sigkill_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        n1 = c.join("n1", owner)
        n2 = c.join("n2", owner)
        pids = [n1.submit({"funcname": "add", "args": [i, 1]})["pid"] for i in range(6)]
        results = {pid: wait_for(partial(n1.finished, pid), 30, "results") for pid in pids}
        n1.kill9()
        n1.cli("start")
        after = n1.processes()
        assert {p["pid"] for p in after} >= set(pids)
        for pid in pids:
            again = wait_for(partial(n1.finished, pid), 30, "results after restart")
            assert again["output"] == results[pid]["output"]
        # and the colony still works through the restarted member
        pid = n1.submit({"funcname": "add", "args": [1, 1]})["pid"]
        assert wait_for(lambda: n1.finished(pid), 30, "a new result")["output"] == [2.0]
        assert n2.status()["membership_version"] == 3


DEADLINE = 60.0  # s: for a few exchanges with a daemon on a busy machine


async def _until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds, or fail saying ``what``."""
    with trio.move_on_after(timeout):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


async def _answered(transport: Transport, to: str, inbox: list[object], tag: str) -> None:
    """Send ``to`` a Query its core answers whatever it knows (a Status), and wait for the
    answer: the member's path through ``to`` is live."""
    assert await transport.send(to, Query(tag)), f"{tag}: not sent"
    await _until(lambda: Status(tag, False) in inbox, f"the answer to {tag}")


def _refused_streams(node: Node) -> int:
    """Colony streams ``node`` refused as the stream opened, their peer not a member."""
    return int(node.status()["refused"].get("msg", {}).get("not_member", 0))


def _disconnected(transport: Transport, member: str) -> bool:
    return member not in transport.connected()


def _guest(identity: Identity, colony_id: str, inbox: list[object]) -> Transport:
    """A libp2p host for ``identity`` driven by the test; what it receives goes to
    ``inbox``. It would talk to anyone, and never closes a connection itself."""
    return Transport(
        identity,
        colony_id,
        is_member=lambda m: True,
        on_message=lambda s, m: inbox.append(m),
        on_announcement=lambda s, m: inbox.append(m),
    )


def test_a_revoked_member_is_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        n1 = c.join("n1", owner)
        stays = c.join("stays", owner, role="user", start=False)
        gone = c.join("gone", owner, start=False)
        wait_for(partial(n1.has_version, 4), 20, "n1 to learn membership v4")
        status = n1.status()
        colony_id = status["colony_id"]
        stays_inbox: list[object] = []
        gone_inbox: list[object] = []

        async def run() -> None:
            member = _guest(stays.home.identity(), colony_id, stays_inbox)
            revoked = _guest(gone.home.identity(), colony_id, gone_inbox)
            async with trio.open_nursery() as nursery:
                await nursery.start(member.run)
                await nursery.start(revoked.run)
                for node in (owner, n1):
                    addr = (await trio.to_thread.run_sync(node.status))["addrs"][0]
                    assert await member.connect(addr) == node.member_id
                    assert await revoked.connect(addr) == node.member_id
                    # before: gone's message is answered over the connection it keeps open
                    await _answered(revoked, node.member_id, gone_inbox, f"before-{node.name}")
                refused = await trio.to_thread.run_sync(_refused_streams, n1)
                await trio.to_thread.run_sync(owner.cli, "members", "revoke", gone.member_id)
                # n1 learns the revocation from the owner, as a member that did not make it
                await trio.to_thread.run_sync(
                    wait_for, partial(n1.has_version, 5), 20, "n1 to learn the revocation"
                )
                # each closes gone's connection itself (gone never closes one): the owner
                # as it revokes, n1 as it applies the new membership
                for node in (owner, n1):
                    await _until(
                        partial(_disconnected, revoked, node.member_id),
                        f"{node.name} to close the revoked member's connection",
                        timeout=20,
                    )
                # gone sends the same again: its stream died with its connection, and the
                # new connection's stream is refused as it opens, and counted
                assert not await revoked.send(n1.member_id, Query("after"))
                assert await trio.to_thread.run_sync(_refused_streams, n1) > refused
                # control: a member's message sent afterwards is answered
                await _answered(member, n1.member_id, stays_inbox, "control")
                assert gone_inbox == [Status("before-owner", False), Status("before-n1", False)]
                nursery.cancel_scope.cancel()

        trio.run(run)


def _intrude(
    identity: Identity,
    control: Identity,
    target: Node,
    msg: Message,
    announce: SpecAnnounce | None = None,
) -> list[object]:
    """Send ``msg`` to ``target`` as ``identity`` over a real libp2p host (and publish
    ``announce`` on its topic), then a control message as the member ``control`` once
    the target counted the intruder's stream refused; what came back to the intruder
    by the time the control message was answered."""
    status = target.status()
    colony_id, addr = status["colony_id"], status["addrs"][0]
    received: list[object] = []
    answers: list[object] = []

    async def run() -> None:
        intruder = _guest(identity, colony_id, received)
        member = _guest(control, colony_id, answers)
        refused = await trio.to_thread.run_sync(_refused_streams, target)
        async with trio.open_nursery() as nursery:
            await nursery.start(intruder.run)
            await nursery.start(member.run)
            # a connection carries nothing yet: the gate refuses a stranger's streams
            assert await intruder.connect(addr) == target.member_id
            if announce is not None:
                topic = spec_topic(colony_id, announce.spec.spec)
                await intruder.subscribe(topic)
                await intruder.publish(topic, announce)
            assert not await intruder.send(target.member_id, msg)
            await _until(
                lambda: _refused_streams(target) > refused, "the intruder's stream refused"
            )
            assert await member.connect(addr) == target.member_id
            await _answered(member, target.member_id, answers, "control")
            nursery.cancel_scope.cancel()

    trio.run(run)
    return received


def test_a_non_member_with_the_right_addresses_gets_nothing_in(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        colony_id = owner.status()["colony_id"]
        member = c.join("member", owner, role="user", start=False)
        stranger = Identity.generate()
        spec = SignedSpec.create(FunctionSpec("add", args=(1, 2)), stranger, colony_id, 0.0, b"x")
        keepers = (owner.member_id,)
        received = _intrude(
            stranger,
            member.home.identity(),
            owner,
            StoreSpec(spec, keepers, 1),
            SpecAnnounce(spec, keepers),
        )
        assert received == []
        refused = owner.status()["rejected"]
        assert refused.get("not_member", 0) >= 1
        assert spec.pid not in {p["pid"] for p in owner.processes()}
        with pytest.raises(ApiError) as unknown:
            owner.process(spec.pid)
        assert unknown.value.status == 404
