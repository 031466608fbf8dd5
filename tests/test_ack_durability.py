"""A daemon acknowledges only what is durable: a keeper SIGKILLed in the middle of the
commit of a stored spec has acknowledged nothing it then lost (docs/DAEMON.md, *Inside
the daemon*). The kill comes from the daemon's test-only fault point
(``KILL_AT_COMMIT_ENV``), so it lands in the window where an acknowledgement sent
before the commit would escape, every time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from cluster import cluster, wait_for
from core_effects import placed

from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import Message, Query, Status, StoreAck, StoreSpec
from colonyp2p.identity import Identity
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.daemon import KILL_AT_COMMIT_ENV
from colonyp2p.node.home import alive
from colonyp2p.node.transport import Transport

pytestmark = pytest.mark.slow

DEADLINE = 60.0  # s: for one exchange with a daemon on a busy machine


async def _until(condition: Callable[[], bool]) -> None:
    """Poll ``condition``; the caller's fail_after is the deadline."""
    while not condition():
        await trio.sleep(0.01)


def _store(
    client: Identity, colony_id: str, addr: str, store: StoreSpec, *, dies: bool
) -> list[Message]:
    """Send ``store`` to the keeper at ``addr`` as ``client``, over a real libp2p host,
    after a control Query that the keeper answers (its answers then take the stream
    they will take afterwards). With ``dies``, return once the keeper's connection has
    been lost: the stream handler reads every frame the keeper wrote before its death
    before it reports the loss. Else return once the keeper acknowledged. Everything the
    keeper sent is returned."""
    received: list[Message] = []
    lost = trio.Event()

    def on_message(sender: str, msg: Message) -> None:
        received.append(msg)

    async def run() -> None:
        transport = Transport(
            client,
            colony_id,
            is_member=lambda m: True,
            on_message=on_message,
            on_announcement=lambda s, m: None,
            on_peer_lost=lambda m: lost.set(),
        )
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                keeper = await transport.connect(addr)
                control = Query(f"control-{time.time_ns()}")
                assert await transport.send(keeper, control)
                await _until(lambda: Status(control.pid, False) in received)
                assert await transport.send(keeper, store)
                if dies:
                    await lost.wait()
                else:
                    await _until(lambda: StoreAck(store.spec.pid) in received)
                nursery.cancel_scope.cancel()

    trio.run(run)
    return received


def test_a_keeper_killed_mid_commit_had_acknowledged_nothing_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        client = c.join("client", owner, role="user", start=False)
        keeper = c.join("keeper", owner, start=False)
        monkeypatch.setenv(KILL_AT_COMMIT_ENV, RECORDS)
        keeper.start()
        monkeypatch.delenv(KILL_AT_COMMIT_ENV)  # the restart below runs without the fault
        daemon_pid = keeper.pid
        status = keeper.status()
        colony_id, addr = status["colony_id"], status["addrs"][0]
        identity = client.home.identity()
        spec = SignedSpec.create(
            FunctionSpec("add", args=(1, 2)), identity, colony_id, time.time(), os.urandom(12)
        )
        store = placed(StoreSpec(spec, (keeper.member_id,), status["membership_version"]), identity)

        received = _store(identity, colony_id, addr, store, dies=True)
        wait_for(lambda: not alive(daemon_pid), 10, "the keeper to die")
        # the fault killed it (and not a crash): the kill landed in the commit
        assert "killed before a commit" in keeper.home.log_path.read_text(errors="replace")
        acknowledged = {m.pid for m in received if isinstance(m, StoreAck) and not m.refused}

        keeper.start()
        kept = {p["pid"] for p in keeper.processes()}
        assert acknowledged <= kept, (
            f"acknowledged before the SIGKILL but lost by the restart: {acknowledged - kept}"
        )
        # the kill came before the commit, so nothing of it was durable, nor acknowledged
        assert spec.pid not in kept
        # control: the restarted keeper stores and acknowledges the same spec, and keeps it
        received = _store(identity, colony_id, keeper.addrs[0], store, dies=False)
        assert StoreAck(spec.pid) in received
        assert spec.pid in {p["pid"] for p in keeper.processes()}
