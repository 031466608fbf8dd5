"""The executor a node's config asks for (``executor.kind``), built with its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import Executor
from colonyp2p.executors.python import PythonExecutor, Registry, builtin

if TYPE_CHECKING:
    from colonyp2p.node.home import ExecutorConfig

KINDS = ("python", "shell", "slurm", "kubernetes")


def make(config: ExecutorConfig, registry: Registry | None = None) -> Executor:
    """Python functions, shell commands (``functions`` is then the allow-list), Slurm jobs
    or Kubernetes Jobs; imported only when asked for."""
    if config.kind == "python":
        if registry is None:
            registry = builtin() if config.builtin else Registry()
            registry.load(config.functions)
        return PythonExecutor(registry, config.type)
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
