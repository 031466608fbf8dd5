"""Promises of README.md and docs/DAEMON.md ("Joining") about joining without a ticket:
`colonynode join <colony> --bootstrap ADDR --wait S` waits until an admin approves the
device, which is then a member that works in the colony; and the join protocol, the one
protocol a stranger may open, has a time limit and a cap on concurrent requests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import Node, cluster, wait_for
from libp2p.host.exceptions import StreamFailure
from libp2p.peer.id import ID

from colonyp2p.identity import Identity
from colonyp2p.model.membership import MembershipSet
from colonyp2p.node import admission, join
from colonyp2p.node.admission import JOIN_PROTOCOL, MAX_CONCURRENT_JOINS, serve_joins
from colonyp2p.node.framing import frame, read_frame
from colonyp2p.node.transport import Transport

pytestmark = pytest.mark.slow


def test_a_device_joins_with_bootstrap_after_an_approval_and_is_then_a_member(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path / "c") as c:
        owner = c.found()
        colony_id = owner.status()["colony_id"]
        device = c.node("device")
        device.cli("init")
        device.configure("local")
        env = {**os.environ, "COLONYP2P_HOME": str(device.home.root)}
        args = ["join", colony_id, "--bootstrap", owner.addrs[0], "--wait", "60"]
        asking = subprocess.Popen(
            [sys.executable, "-m", "colonyp2p.node.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: device.member_id in owner.members()["pending"], 30, "the join request")
            # it waits: nobody approved it yet
            assert asking.poll() is None
            assert device.member_id not in _member_ids(owner)
            listed = owner.cli("members").stdout
            assert "pending" in listed.lower()
            owner.cli("members", "approve", device.member_id)
            _, errors = asking.communicate(timeout=60)
            assert asking.returncode == 0, errors
        finally:
            asking.kill()
            asking.wait()
        assert device.member_id in _member_ids(owner)
        assert device.member_id not in owner.members()["pending"]
        # the joiner is a member: it starts, adopts the colony's membership and its
        # submissions are stored and run
        device.cli("start")
        version = owner.status()["membership_version"]
        wait_for(lambda: device.has_version(version), 30, "the device on the latest version")
        assert device.status()["colony_id"] == colony_id
        pid = device.submit({"funcname": "add", "args": [40, 2]})["pid"]
        done = wait_for(lambda: device.finished(pid), 60, "the device's process")
        assert done["state"] == "successful", done
        assert done["output"] == [42.0]


def _member_ids(node: Node) -> set[str]:
    return {m["member_id"] for m in node.members()["members"]}


async def test_the_join_protocol_has_a_time_limit_and_a_cap_on_concurrent_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stranger holds at most MAX_CONCURRENT_JOINS join requests at once: the next
    stream is reset at once (counted as ``busy``); a request still unanswered after
    JOIN_TIMEOUT (here 1 s) is reset and counted, and so is a stream on which the
    stranger sends nothing; then the slots are free for an honest request."""
    monkeypatch.setattr(admission, "JOIN_TIMEOUT", 1.0)
    owner, stranger, honest = Identity.generate(), Identity.generate(), Identity.generate()
    colony_id = MembershipSet.genesis(owner, "limits", 0.0).colony_id
    holding: list[str] = []
    answered: list[str] = []

    async def handler(peer: str, raw: bytes) -> bytes:
        request = join.decode_request(raw)
        if request.name.startswith("hold"):
            holding.append(request.name)
            await trio.sleep_forever()  # an answer that never comes: only the limit ends it
        answered.append(peer)
        return join.encode(join.JoinReply("refused", "only a test"))

    def transport(identity: Identity) -> Transport:
        return Transport(
            identity,
            colony_id,
            is_member=lambda m: False,
            on_message=lambda s, m: None,
            on_announcement=lambda s, m: None,
        )

    server, bad, good = transport(owner), transport(stranger), transport(honest)

    def refused() -> dict[str, int]:
        counts: dict[str, int] = server.rejections.by_protocol_dict().get("join", {})
        return counts

    async def until(check: Callable[[], bool], what: str) -> None:
        with trio.move_on_after(20):  # a deadline against a hang only
            while not check():
                await trio.sleep(0.02)
        assert check(), f"timed out waiting for {what}: refused {refused()}"

    async def open_stream(peer: str) -> Any:
        return await bad.host.new_stream(ID.from_base58(peer), [JOIN_PROTOCOL])

    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            for t in (server, bad, good):
                await nursery.start(t.run)
            serve_joins(server, handler)
            peer = await bad.connect(server.addrs[0])
            held = []
            for i in range(MAX_CONCURRENT_JOINS):
                stream = await open_stream(peer)
                request = join.JoinRequest.create(stranger, colony_id, f"hold{i}", "", time.time())
                await stream.write(frame(join.encode(request)))
                held.append(stream)
            await until(lambda: len(holding) == MAX_CONCURRENT_JOINS, "every slot to be taken")
            # one more while all are taken: reset at once, unanswered, counted
            # (py-libp2p may see the reset during its protocol negotiation already)
            with suppress(StreamFailure):
                assert await _answer(await open_stream(peer)) is None
            await until(lambda: refused().get("busy") == 1, "the busy refusal to be counted")
            assert refused().get("TooSlowError", 0) == 0  # the held ones are still held
            # the held requests end at the time limit, unanswered, each counted
            for stream in held:
                assert await _answer(stream) is None
            await until(
                lambda: refused().get("TooSlowError") == MAX_CONCURRENT_JOINS,
                "the unanswered requests to be counted",
            )
            # a stream on which nothing is sent is ended by the time limit too
            silent = await open_stream(peer)
            assert await _answer(silent) is None
            await until(
                lambda: refused().get("TooSlowError") == MAX_CONCURRENT_JOINS + 1,
                "the silent stream to be counted",
            )
            # the slots are free again: an honest request is answered
            request = join.JoinRequest.create(honest, colony_id, "honest", "", time.time())
            reply = await admission.request_join(good, server.addrs[0], request)
            assert (reply.status, reply.reason) == ("refused", "only a test")
            assert answered == [honest.member_id]
            assert refused().get("busy") == 1
            nursery.cancel_scope.cancel()


async def _answer(stream: Any) -> bytes | None:
    """The frame the server answers on ``stream``, or None if it ended or was reset."""
    try:
        return await read_frame(stream, join.MAX_JOIN_BYTES)
    except Exception:
        return None
