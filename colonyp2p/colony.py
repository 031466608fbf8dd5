"""The Python API: submit specs and workflows to a colony and follow their processes.

    from colonyp2p import Colony

    async with Colony.connect() as colony:           # the node running in ~/.colonyp2p
        process = await colony.submit("add", 40, 2, executortype="edge")
        print(await process.wait(timeout=30))        # [42.0]

    colony = SyncColony.connect()                    # the same without trio
    print(colony.submit("add", 1, 2).wait())

A ``Colony`` talks to a running ``colonynode`` daemon through its local API, with
requests signed by the node's key (or another member's ``identity``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trio

from colonyp2p.errors import ColonyError
from colonyp2p.identity import Identity
from colonyp2p.model.colonyos_json import function_spec_to_colonyos, workflow_to_colonyos
from colonyp2p.model.spec import Conditions, FunctionSpec
from colonyp2p.model.workflow import WorkflowSpec

T = TypeVar("T")
FINAL = ("successful", "failed")
POLL = 0.1


class ProcessFailed(ColonyError):
    """A process ended failed; ``errors`` holds what its executor or keepers said."""

    code = "process_failed"

    def __init__(self, pid: str, errors: list[str]) -> None:
        self.pid = pid
        self.errors = errors
        super().__init__(f"process {pid[:16]} failed: {errors[0] if errors else 'no reason'}")


class WaitTimeout(ColonyError):
    code = "timeout"


def spec_json(
    spec: FunctionSpec | dict[str, Any] | str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    **conditions: Any,
) -> dict[str, Any]:
    """ColonyOS function-spec JSON for a FunctionSpec, a JSON dict, or a funcname with
    arguments and conditions (``executortype="edge"``, ``cpu=2000``, ``mem=...``)."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, FunctionSpec):
        return function_spec_to_colonyos(spec)
    fs = FunctionSpec(
        funcname=spec, args=args, kwargs=dict(kwargs or {}), conditions=Conditions(**conditions)
    )
    return function_spec_to_colonyos(fs)


@dataclass
class Process:
    """A submitted process. ``state`` and ``result`` are as last seen; ``wait`` follows it."""

    colony: Colony
    pid: str
    state: str = "waiting"
    output: list[Any] | None = None
    errors: list[str] | None = None

    async def refresh(self) -> str:
        view = await self.colony._call(lambda api: api.process(self.pid))
        self.state = view["state"]
        if self.state in FINAL:
            self.output, self.errors = view["output"], view["errors"]
        return self.state

    @property
    def result(self) -> list[Any] | None:
        """The output once successful (None before)."""
        return self.output if self.state == "successful" else None

    async def wait(self, timeout: float | None = None) -> list[Any]:
        """The output once the process ended; raises ProcessFailed or WaitTimeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while await self.refresh() not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                raise WaitTimeout(f"process {self.pid[:16]} is {self.state} after {timeout:g} s")
            await trio.sleep(POLL)
        if self.state == "failed":
            raise ProcessFailed(self.pid, self.errors or [])
        return self.output or []

    async def cancel(self) -> str:
        """Fail a process that has not started (a running one runs to its end)."""
        view = await self.colony._call(lambda api: api.cancel(self.pid))
        self.state = view["state"]
        return self.state

    async def logs(self) -> AsyncIterator[str]:
        """The lines the process prints, as they reach this node, until it ends."""
        seen = 0
        while True:
            view = await self.colony._call(lambda api: api.process(self.pid))
            lines = view.get("logs", [])
            for line in lines[seen:]:
                yield str(line)
            seen = max(seen, len(lines))
            if view["state"] in FINAL:
                self.state = view["state"]
                return
            await trio.sleep(POLL)


class Colony:
    """A connection to a running node. Use ``async with Colony.connect(...) as colony``."""

    def __init__(self, api_url: str, identity: Identity) -> None:
        from colonyp2p.node.api_client import ApiClient

        self._client = ApiClient(api_url, identity)
        self._lock = trio.Lock()

    @classmethod
    def connect(cls, home: str | Path | None = None, identity: Identity | None = None) -> Colony:
        """The node running from ``home`` (default ``~/.colonyp2p`` or COLONYP2P_HOME)."""
        from colonyp2p.errors import DaemonNotRunning
        from colonyp2p.node.home import Home

        h = Home(home)
        runtime = h.runtime()
        if runtime is None:
            raise DaemonNotRunning(f"no node is running from {h.root}: run `colonynode start`")
        return cls(str(runtime["api"]), identity or h.identity())

    async def __aenter__(self) -> Colony:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client.close()

    async def _call(self, fn: Callable[[Any], T]) -> T:
        async with self._lock:  # one httpx client, used from one thread at a time
            return await trio.to_thread.run_sync(fn, self._client)

    async def submit(
        self,
        spec: FunctionSpec | dict[str, Any] | str,
        *args: Any,
        kwargs: dict[str, Any] | None = None,
        **conditions: Any,
    ) -> Process:
        """Submit a spec (or a funcname with its arguments and conditions)."""
        body = spec_json(spec, args, kwargs, **conditions)
        answer = await self._call(lambda api: api.submit(body))
        return Process(self, answer["pid"])

    async def submit_workflow(self, workflow: WorkflowSpec | dict[str, Any]) -> dict[str, Process]:
        """Submit a workflow; its processes by nodename."""
        body = workflow if isinstance(workflow, dict) else workflow_to_colonyos(workflow)
        answer = await self._call(lambda api: api.submit_workflow(body))
        return {name: Process(self, pid) for name, pid in answer["pids"].items()}

    async def processes(
        self, state: str | None = None, executortype: str | None = None
    ) -> list[dict[str, Any]]:
        views: list[dict[str, Any]] = await self._call(lambda api: api.processes(state))
        if executortype is None:
            return views
        return [v for v in views if v.get("executortype", "") == executortype]


class SyncColony:
    """``Colony`` for code that does not run trio: every call blocks until done."""

    def __init__(self, colony: Colony) -> None:
        self._colony = colony

    @classmethod
    def connect(
        cls, home: str | Path | None = None, identity: Identity | None = None
    ) -> SyncColony:
        return cls(Colony.connect(home, identity))

    def __enter__(self) -> SyncColony:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._colony._client.close()

    def submit(
        self, spec: FunctionSpec | dict[str, Any] | str, *args: Any, **kw: Any
    ) -> SyncProcess:
        process = trio.run(lambda: self._colony.submit(spec, *args, **kw))
        return SyncProcess(process)

    def submit_workflow(self, workflow: WorkflowSpec | dict[str, Any]) -> dict[str, SyncProcess]:
        procs = trio.run(self._colony.submit_workflow, workflow)
        return {name: SyncProcess(p) for name, p in procs.items()}

    def processes(self, state: str | None = None) -> list[dict[str, Any]]:
        return trio.run(self._colony.processes, state)


class SyncProcess:
    def __init__(self, process: Process) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def state(self) -> str:
        return trio.run(self._process.refresh)

    @property
    def result(self) -> list[Any] | None:
        return self._process.result

    def wait(self, timeout: float | None = None) -> list[Any]:
        return trio.run(self._process.wait, timeout)

    def cancel(self) -> str:
        return trio.run(self._process.cancel)

    def logs(self) -> Iterator[str]:
        lines: list[str] = []

        async def collect() -> None:
            async for line in self._process.logs():
                lines.append(line)

        trio.run(collect)
        return iter(lines)
