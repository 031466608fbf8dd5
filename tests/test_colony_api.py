"""The Python API against real daemons: submit, wait, failures, workflows, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from cluster import cluster

from colonyp2p import Colony, ProcessFailed, SyncColony, WaitTimeout
from colonyp2p.errors import DaemonNotRunning
from colonyp2p.model.spec import Conditions, FunctionSpec
from colonyp2p.model.workflow import WorkflowSpec

pytestmark = pytest.mark.slow


def test_the_python_api_runs_work_and_reports_failures(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        c.join("edge", owner, executortype="edge")
        with SyncColony.connect(owner.home.root) as colony:
            process = colony.submit("add", 40, 2, executortype="edge")
            assert process.wait(timeout=30) == [42.0]
            assert process.result == [42.0]
            assert process.state == "successful"
            batch = colony.submit_many(
                [
                    FunctionSpec("add", args=(i, 1), conditions=Conditions(executortype="edge"))
                    for i in range(3)
                ]
            )
            assert [p.wait(timeout=30) for p in batch] == [[1.0], [2.0], [3.0]]

            failing = colony.submit("fail", "no luck")
            with pytest.raises(ProcessFailed, match="no luck"):
                failing.wait(timeout=30)

            wrong = colony.submit("add", "a", "b")  # the function raises TypeError
            with pytest.raises(ProcessFailed, match="TypeError"):
                wrong.wait(timeout=30)

            nowhere = colony.submit("add", 1, executortype="nobody-has-this")
            with pytest.raises(WaitTimeout, match="no executor matches"):
                nowhere.wait(timeout=2)
            assert nowhere.cancel() == "failed"

            listed = {p["pid"] for p in colony.processes()}
            assert {process.pid, failing.pid, nowhere.pid} <= listed

        async def workflow() -> list[object]:
            async with Colony.connect(owner.home.root) as colony:
                wf = WorkflowSpec(
                    "api",
                    (
                        FunctionSpec("add", nodename="a", args=(1, 2)),
                        FunctionSpec("add", nodename="b", args=(10,)),
                        FunctionSpec(
                            "add",
                            nodename="sum",
                            conditions=Conditions(dependencies=("a", "b")),
                        ),
                    ),
                )
                procs = await colony.submit_workflow(wf)
                return await procs["sum"].wait(timeout=30)

        assert trio.run(workflow) == [13.0]


def test_connecting_to_a_node_that_is_not_running_says_so(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="colonynode start"):
        Colony.connect(tmp_path / "nothing")
