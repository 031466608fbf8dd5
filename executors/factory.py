"""The executor a node's config asks for (``executor.kind``), built with its settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import Executor
from colonyp2p.executors.python import PythonExecutor, Registry, builtin

if TYPE_CHECKING:
    from colonyp2p.node.home import ExecutorConfig

KINDS = ("python",)


def make(config: ExecutorConfig, registry: Registry | None = None) -> Executor:
    if config.kind == "python":
        if registry is None:
            registry = builtin() if config.builtin else Registry()
            registry.load(config.functions)
        return PythonExecutor(registry, config.type)
    raise ValidationError(f"{config.kind!r} is not one of {', '.join(KINDS)}", "executor.kind")
