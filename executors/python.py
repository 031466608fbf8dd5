"""The python executor: runs a spec's funcname as a registered Python function.

Functions are registered by name (``Registry.register`` or a ``module:function``
entry point in the node's config). A run calls ``fn(*args, **kwargs)`` in a worker
thread, or with ``isolation = "process"`` in a worker process (see
executors/process_pool.py), with ``inputs=[...]`` added to kwargs for a workflow
child (its parents' outputs, in dependency order). The return value is the output;
an exception fails the process with its traceback.
"""

from __future__ import annotations

import os

import trio

from colonyp2p.executors.base import LogSink, RunRequest, RunResult
from colonyp2p.executors.process_pool import WorkerPool
from colonyp2p.executors.registry import Registry, builtin, outcome
from colonyp2p.model.ads import Hardware

__all__ = ["PythonExecutor", "Registry", "builtin", "machine_hardware"]


class PythonExecutor:
    """The Executor (executors/base.py) for registered Python functions."""

    uses_workdir = False

    def __init__(
        self, registry: Registry, executortype: str = "python", pool: WorkerPool | None = None
    ) -> None:
        self.registry = registry
        self._type = executortype
        # None: calls run in threads of the node's process; else in worker processes,
        # which serve the same functions (see executors/process_pool.py)
        self.pool = pool

    @property
    def executortype(self) -> str:
        return self._type

    def functions(self) -> tuple[str, ...]:
        return self.registry.names

    def hardware(self) -> Hardware:
        return machine_hardware()

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        if self.pool is None:
            prepared = self.registry.prepare(spec.funcname, spec.args, spec.kwargs, request.inputs)
            if isinstance(prepared, RunResult):
                return prepared
            return await trio.to_thread.run_sync(
                outcome,
                prepared,
                abandon_on_cancel=True,  # type: ignore[call-arg]  # stubs predate it
            )
        if spec.funcname not in self.registry:  # say so without a worker's round trip
            return RunResult(False, errors=(f"function {spec.funcname!r} is not served here",))
        return await self.pool.run(
            spec.funcname, spec.args, spec.kwargs, request.inputs, log, spec.maxretries
        )


def machine_hardware() -> Hardware:
    """This machine's cores and memory, for an ad."""
    memory = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    memory = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    return Hardware(cores=os.cpu_count() or 1, memory=memory)
