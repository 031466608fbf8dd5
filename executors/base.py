"""The executor plugin interface: what a node needs from anything that runs processes.

The daemon picks the executor named by its config (``executor.type``), announces the
capabilities it reports in the node's ad, and for each process it wins calls ``run``
inside a trio cancel scope: a lost lease, a cancel or maxexectime cancels the scope,
and the executor must then stop the work it started (kill the command, scancel the
Slurm job, delete the Kubernetes Job) before it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from colonyp2p.model.ads import Hardware
from colonyp2p.model.spec import FunctionSpec

LogSink = Callable[[str], None]

# Environment variables that decide what code runs or where it is found (the dynamic
# loader, interpreters, shells, locale and TLS files), or that the executor sets
# itself. A spec comes from any member: one that set LD_PRELOAD ran its own library
# inside an allowed command. A "PREFIX*" entry of executor.env never admits these;
# only an entry naming one in full does.
PROTECTED_PREFIXES = (
    "LD_", "DYLD_", "PYTHON", "PERL", "RUBY", "NODE_", "BASH_FUNC_", "JAVA_", "_JAVA_",
    "JDK_", "LUA_", "GCONV_", "MALLOC_", "COLONY_", "SLURM_", "KUBERNETES_",
)  # fmt: skip
PROTECTED_NAMES = frozenset(
    {
        "PATH", "HOME", "PWD", "TMPDIR", "SHELL", "USER", "LOGNAME", "IFS", "ENV",
        "BASH_ENV", "SHELLOPTS", "BASHOPTS", "PS4", "CDPATH", "GLOBIGNORE",
        "GLIBC_TUNABLES", "LOCPATH", "NLSPATH", "HOSTALIASES", "RESOLV_HOST_CONF",
        "LOCALDOMAIN", "TZDIR", "CLASSPATH", "GEM_HOME", "GEM_PATH", "OPENSSL_CONF",
        "OPENSSL_ENGINES", "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_EXEC_PATH",
    }
)  # fmt: skip


def protected(name: str) -> bool:
    return name in PROTECTED_NAMES or name.startswith(PROTECTED_PREFIXES)


def env_allowed(name: str, allowed: Sequence[str]) -> bool:
    """Whether config ``executor.env`` lets a spec set ``name``: listed by name, or
    matched by a ``PREFIX*`` entry when it is not a protected variable."""
    for entry in allowed:
        if entry == name:
            return True
        if entry.endswith("*") and name.startswith(entry[:-1]) and not protected(name):
            return True
    return False


def confine_env(env: Mapping[str, str], allowed: Sequence[str], log: LogSink) -> dict[str, str]:
    """The part of a spec's ``env`` that ``allowed`` (config ``executor.env``) lets
    through; what it drops is said once in the process's log, so that its submitter
    learns why a variable is missing."""
    kept = {k: v for k, v in env.items() if env_allowed(k, allowed)}
    dropped = sorted(set(env) - set(kept))
    if dropped:
        log(
            f"[env] not set, not allowed by this executor: {', '.join(dropped)} "
            "(the names a spec may set are listed in executor.env of the node's config.json)"
        )
    return kept


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
