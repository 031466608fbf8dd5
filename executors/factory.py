"""The executor a node's config asks for (``executor.kind``), built with its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import Executor
from colonyp2p.executors.process_pool import WorkerPool
from colonyp2p.executors.python import PythonExecutor, Registry, builtin

if TYPE_CHECKING:
    from colonyp2p.node.home import ExecutorConfig

KINDS = ("python", "shell", "slurm", "kubernetes")
ISOLATIONS = ("thread", "process")  # where a python executor calls functions


def make(config: ExecutorConfig, registry: Registry | None = None) -> Executor:
    """Python functions, shell commands (``functions`` is then the allow-list), Slurm jobs
    or Kubernetes Jobs; imported only when asked for.

    A python executor calls the built-ins and the functions of ``registry`` (registered
    in code) in threads, and the config's entry points in worker processes unless the
    config asks for ``isolation = "thread"`` (see executors/python.py)."""
    if config.kind == "python":
        if config.isolation not in ISOLATIONS:
            raise ValidationError(
                f"{config.isolation!r} is not one of {', '.join(ISOLATIONS)}", "executor.isolation"
            )
        threads = registry if registry is not None else Registry()
        if config.builtin:
            for name, fn in builtin().items():
                if name not in threads:
                    threads.register(name, fn)
        entries = Registry()
        entries.load(config.functions)  # they exist, and their names (for the ad)
        if config.isolation == "thread" or not entries.names:
            for name, fn in entries.items():
                threads.register(name, fn)
            return PythonExecutor(threads, config.type)
        pool = WorkerPool(config.functions, False, config.workers)
        return PythonExecutor(threads, config.type, pool, entries.names)
    allowed = tuple(config.functions) or None
    env = tuple(config.env)
    if config.kind == "shell":
        from colonyp2p.executors.shell import ShellExecutor

        return ShellExecutor(executortype=config.type, allowed=allowed, env_allowed=env)
    if config.kind == "slurm":
        from colonyp2p.executors.slurm import SlurmExecutor

        return SlurmExecutor(
            partition=config.partition or None,
            executortype=config.type,
            allowed=allowed,
            env_allowed=env,
        )
    if config.kind == "kubernetes":
        from colonyp2p.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(
            namespace=config.namespace, executortype=config.type, env_allowed=env
        )
    raise ValidationError(f"{config.kind!r} is not one of {', '.join(KINDS)}", "executor.kind")
