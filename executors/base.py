"""The executor plugin interface: what a node needs from anything that runs processes.

The daemon picks the executor named by its config (``executor.type``), announces the
capabilities it reports in the node's ad, and for each process it wins calls ``run``
inside a trio cancel scope: a lost lease, a cancel or maxexectime cancels the scope,
and the executor must then stop the work it started (kill the command, scancel the
Slurm job, delete the Kubernetes Job) before it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from colonyp2p.model.ads import Hardware
from colonyp2p.model.spec import FunctionSpec

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    ok: bool
    output: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRequest:
    pid: str
    spec: FunctionSpec
    inputs: tuple[Any, ...]  # the parents' outputs, in dependency order
    # a directory of this process's own; the daemon creates it for executors that
    # say they use one (``uses_workdir``), and spec.fs directives create what they fill
    workdir: Path
    deadline: float | None = None  # wall-clock time (time.time()) by which it must end


class Executor(Protocol):
    # Whether runs need their work directory to exist beforehand (a command's cwd).
    # A Python call does not: creating and removing a directory per process cost a
    # busy node about a tenth of its CPU in journal work.
    uses_workdir: bool

    @property
    def executortype(self) -> str:
        """The type specs ask for in ``conditions.executortype`` (python, shell, slurm, ...)."""
        ...

    def functions(self) -> tuple[str, ...]:
        """The funcnames it serves; empty for any (a shell or a batch system)."""
        ...

    def hardware(self) -> Hardware:
        """What it offers, for the node's ad (cores, memory, GPUs, nodes)."""
        ...

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        """Run one process; stream its log lines to ``log``; return its outcome.
        Failures of the work are results (ok=False with the reason), not exceptions."""
        ...
