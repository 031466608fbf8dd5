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
    or Kubernetes Jobs; imported only when asked for."""
    if config.kind == "python":
        if config.isolation not in ISOLATIONS:
            raise ValidationError(
                f"{config.isolation!r} is not one of {', '.join(ISOLATIONS)}", "executor.isolation"
            )
        pool = None
        if config.isolation == "process":
            if registry is not None:
                raise ValidationError(
                    "worker processes serve the config's functions only; functions "
                    "registered in code run in threads (isolation = 'thread')",
                    "executor.isolation",
                )
            pool = WorkerPool(config.functions, config.builtin, config.workers)
        if registry is None:
            registry = builtin() if config.builtin else Registry()
            registry.load(config.functions)
        return PythonExecutor(registry, config.type, pool)
    allowed = tuple(config.functions) or None
    if config.kind == "shell":
        from colonyp2p.executors.shell import ShellExecutor

        return ShellExecutor(executortype=config.type, allowed=allowed)
    if config.kind == "slurm":
        from colonyp2p.executors.slurm import SlurmExecutor

        return SlurmExecutor(
            partition=config.partition or None, executortype=config.type, allowed=allowed
        )
    if config.kind == "kubernetes":
        from colonyp2p.executors.kubernetes import KubernetesExecutor

        return KubernetesExecutor(namespace=config.namespace, executortype=config.type)
    raise ValidationError(f"{config.kind!r} is not one of {', '.join(KINDS)}", "executor.kind")
