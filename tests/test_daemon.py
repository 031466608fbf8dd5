"""Real colonynode daemons, one process each, over loopback, driven by the real CLI."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import FAST, Cluster, Node, cluster, events, wait_for

from colonyp2p.core.messages import Message, Query, SpecAnnounce, StoreSpec
from colonyp2p.core.topics import spec_topic
from colonyp2p.errors import ApiError
from colonyp2p.identity import Identity
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.transport import ConnectFailed, Transport

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


def test_a_revoked_member_is_refused(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        n1 = c.join("n1", owner)
        gone = c.join("gone", owner)
        owner.cli("members", "revoke", gone.member_id)
        wait_for(partial(n1.has_version, 4), 20, "n1 to learn the revocation")
        # its own node may have learned it too (then it refuses its own key), or not yet
        try:
            answer = gone.submit({"funcname": "add", "args": [1, 2]})
            assert answer["acknowledged"] is False
        except ApiError as exc:
            assert exc.status == 403
        # whatever the revoked key sends now is refused and counted
        before = owner.status()["rejected"].get("not_member", 0)
        received = _intrude(gone.home.identity(), owner, Query("anything"))
        assert received == []
        assert owner.status()["rejected"].get("not_member", 0) > before


def _intrude(
    identity: Identity, target: Node, msg: Message, announce: SpecAnnounce | None = None
) -> list[object]:
    """Send ``msg`` to ``target`` as ``identity`` over a real libp2p host (and publish
    ``announce`` on its topic); what came back."""
    status = target.status()
    colony_id, addr = status["colony_id"], status["addrs"][0]
    received: list[object] = []

    async def run() -> None:
        transport = Transport(
            identity,
            colony_id,
            is_member=lambda m: True,  # the intruder would talk to anyone
            on_message=lambda s, m: received.append(m),
            on_announcement=lambda s, m: received.append(m),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            try:
                member = await transport.connect(addr)
            except ConnectFailed:
                member = target.member_id  # refused at the door is fine too
            if announce is not None:
                topic = spec_topic(colony_id, announce.spec.spec)
                await transport.subscribe(topic)
                await transport.publish(topic, announce)
            await transport.send(member, msg)
            await trio.sleep(1.0)  # give the daemon time to (not) answer
            nursery.cancel_scope.cancel()

    trio.run(run)
    return received


def test_a_non_member_with_the_right_addresses_gets_nothing_in(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        colony_id = owner.status()["colony_id"]
        stranger = Identity.generate()
        spec = SignedSpec.create(FunctionSpec("add", args=(1, 2)), stranger, colony_id, 0.0, b"x")
        keepers = (owner.member_id,)
        received = _intrude(
            stranger, owner, StoreSpec(spec, keepers, 1), SpecAnnounce(spec, keepers)
        )
        assert received == []
        refused = owner.status()["rejected"]
        assert refused.get("not_member", 0) >= 1
        assert spec.pid not in {p["pid"] for p in owner.processes()}
        with pytest.raises(ApiError) as unknown:
            owner.process(spec.pid)
        assert unknown.value.status == 404
