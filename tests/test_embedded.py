"""Nodes embedded in a Python program: ``@colony.function`` served by the real daemon
running in the caller's trio nursery (or a thread, for SyncColony), and the reasons a
user gets for what cannot run: wrong arguments, an unknown function (waiting with the
reason, then failed at maxwaittime), through an embedded node and a daemon process."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
from cluster import FAST, cluster, wait_for

from colonyp2p import Colony, ProcessFailed, SyncColony
from colonyp2p.errors import ValidationError
from colonyp2p.node.home import HomeError, alive

pytestmark = pytest.mark.slow


def test_an_embedded_node_serves_its_decorated_functions(tmp_path: Path) -> None:
    colony = Colony.embedded(tmp_path / "node", colony="lab", params=FAST)

    @colony.function(executortype="edge")
    def scale(values: list[float], factor: float = 2.0) -> list[float]:
        return [v * factor for v in values]

    @colony.function(name="total", executortype="edge")
    def total_of(inputs: list[list[float]]) -> float:
        return sum(sum(values) for values in inputs)

    assert scale([1.0], 3.0) == [3.0]  # still a plain function
    with pytest.raises(ValidationError, match="a node serves one type"):
        colony.function(executortype="gpu")(total_of)

    async def main() -> None:
        async with colony:
            with pytest.raises(ValidationError, match="before it starts"):
                colony.function()(total_of)
            process = await colony.submit(
                "scale", [1.0, 2.0], kwargs={"factor": 10.0}, executortype="edge"
            )
            assert await process.wait(timeout=30) == [[10.0, 20.0]]
            wf = await colony.submit_workflow(
                {
                    "colonyname": "lab",
                    "functionspecs": [
                        {"nodename": "a", "funcname": "scale", "args": [[1, 2]]},
                        {"nodename": "b", "funcname": "scale", "args": [[3]]},
                        {
                            "nodename": "sum",
                            "funcname": "total",
                            "conditions": {"dependencies": ["a", "b"]},
                        },
                    ],
                }
            )
            assert await wf["sum"].wait(timeout=30) == [12.0]
            wrong = await colony.submit("scale", [1.0], 2.0, 3.0)
            with pytest.raises(ProcessFailed, match="wrong arguments for scale"):
                await wrong.wait(timeout=30)
        assert colony.daemon is None and colony.home.runtime() is None

    trio.run(main)
    with pytest.raises(HomeError, match="in no colony"):
        trio.run(Colony.embedded(tmp_path / "elsewhere").__aenter__)


def test_a_sync_embedded_node_joins_with_a_ticket_and_what_cannot_run_says_why(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        c.join("sh", owner, executortype="worker", kind="shell")
        ticket = owner.cli("invite").stdout.strip().replace("\n", "")
        edge = SyncColony.embedded(tmp_path / "edge", ticket=ticket, name="edge", params=FAST)

        @edge.function(executortype="edge")
        def greet(who: str) -> str:
            return f"hello {who}"

        with edge, SyncColony.connect(owner.home.root) as user:
            wait_for(lambda: edge.status()["peers"] >= 2, 40, "the new node to reach both")
            process = user.submit("greet", "colony", executortype="edge")
            assert process.wait(timeout=30) == ["hello colony"]
            assert process.executor == edge.node.member_id

            # Through the daemon processes: waiting with the reason, then failed...
            unknown = owner.submit(
                {
                    "funcname": "nobody-serves-this",
                    "maxwaittime": 10,
                    "conditions": {"executortype": "edge"},
                }
            )["pid"]
            view = owner.process(unknown)
            assert view["state"] == "waiting"
            assert "'nobody-serves-this' is not served" in view["waiting_reason"]
            # ... and a command that hangs, killed at maxexectime.
            marker = tmp_path / "hanging.pid"
            hang = {
                "funcname": "sh",
                "args": ["-c", f"echo $$ > {marker}; exec sleep 120"],
                "maxexectime": 3,
                "conditions": {"executortype": "worker"},
            }
            hanging = owner.submit(hang)["pid"]

            done = wait_for(partial(owner.finished, unknown), 30, "the maxwaittime failure")
            assert done["state"] == "failed"
            assert "maxwaittime exceeded: not started within 10 s" in done["errors"][0]
            done = wait_for(partial(owner.finished, hanging), 30, "the maxexectime failure")
            assert done["state"] == "failed"
            # The executor's kill or the keepers' end of the lease, whichever came first
            reason = done["errors"][0]
            assert "maxexectime" in reason and "still running" in reason, reason
            pid = int(marker.read_text())
            wait_for(lambda: not alive(pid), 10, "the hanging command to be killed")
        assert edge.node.home.runtime() is None
