"""The python executor: runs a spec's funcname as a registered Python function.

Functions are registered by name (``Registry.register`` or a ``module:function``
entry point in the node's config). A run calls ``fn(*args, **kwargs)`` with
``inputs=[...]`` added to kwargs for a workflow child (its parents' outputs, in
dependency order). The return value is the output; an exception fails the process
with its traceback.

Where a call runs decides whether a time limit can end it. The config's entry points
run in worker processes (``isolation = "process"``, the default; see
executors/process_pool.py), which are killed when the run is cancelled, loses its
lease or passes maxexectime. A thread cannot be killed, so threads run only the
built-ins (bounded, and stopped through ``builtin.STOP``), functions registered in
code (``Colony.embedded``: they cannot be sent to another process), and entry points
whose config asks for ``isolation = "thread"``.
"""

from __future__ import annotations

import os
import threading

import trio

from colonyp2p.executors import builtin as builtin_functions
from colonyp2p.executors.base import LogSink, RunRequest, RunResult
from colonyp2p.executors.process_pool import WorkerPool
from colonyp2p.executors.registry import Registry, builtin, outcome
from colonyp2p.model.ads import Hardware

__all__ = ["PythonExecutor", "Registry", "builtin", "machine_hardware"]


class PythonExecutor:
    """The Executor (executors/base.py) for registered Python functions."""

    uses_workdir = False

    def __init__(
        self,
        registry: Registry,
        executortype: str = "python",
        pool: WorkerPool | None = None,
        pooled: tuple[str, ...] = (),
    ) -> None:
        # what is called in threads of the node's process
        self.registry = registry
        self._type = executortype
        # worker processes (see executors/process_pool.py), and the names they are
        # asked for (the config's entry points); a name in both goes to the pool
        self.pool = pool
        self.pooled = frozenset(pooled) if pool is not None else frozenset()

    @property
    def executortype(self) -> str:
        return self._type

    def functions(self) -> tuple[str, ...]:
        return tuple(sorted({*self.registry.names, *self.pooled}))

    def hardware(self) -> Hardware:
        return machine_hardware()

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        if self.pool is not None and spec.funcname in self.pooled:
            # a spec's fs directives fill the run's working directory: the call runs
            # there, so that it reads and writes them by relative paths
            cwd = str(request.workdir) if spec.fs.snapshots or spec.fs.dirs else None
            return await self.pool.run(
                spec.funcname, spec.args, spec.kwargs, request.inputs, log, spec.maxretries, cwd
            )
        prepared = self.registry.prepare(spec.funcname, spec.args, spec.kwargs, request.inputs)
        if isinstance(prepared, RunResult):
            return prepared
        stop = threading.Event()

        def call() -> RunResult:
            # the built-ins look at STOP (set below once the run is over) to end with it
            token = builtin_functions.STOP.set(stop)
            try:
                return outcome(prepared)
            finally:
                builtin_functions.STOP.reset(token)

        try:
            return await trio.to_thread.run_sync(
                call,
                abandon_on_cancel=True,  # type: ignore[call-arg]  # stubs predate it
            )
        finally:
            stop.set()


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
