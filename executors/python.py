"""The python executor: runs a spec's funcname as a registered Python function.

Functions are registered by name (``Registry.register`` or a ``module:function``
entry point in the node's config). A run calls ``fn(*args, **kwargs)`` in a worker
thread, with ``inputs=[...]`` added to kwargs for a workflow child (its parents'
outputs, in dependency order). The return value is the output; an exception fails
the process with its traceback.
"""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import trio

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import LogSink, RunRequest, RunResult
from colonyp2p.model.ads import Hardware


class Registry:
    """Function names a node serves, and what they call."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    def register(self, name: str, fn: Callable[..., Any]) -> None:
        if not name or not callable(fn):
            raise ValidationError(f"cannot register {fn!r} as {name!r}")
        self._functions[name] = fn

    def load(self, entry_points: Iterable[str]) -> None:
        """Register ``name=module:function`` or ``module:function`` (named after the function)."""
        for entry in entry_points:
            name, _, target = entry.rpartition("=")
            module_name, _, attr = target.partition(":")
            if not module_name or not attr:
                raise ValidationError(f"{entry!r} is not name=module:function", "functions")
            try:
                fn = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                raise ValidationError(f"cannot load {target!r}: {exc}", "functions") from exc
            self.register(name or attr, fn)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._functions))

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    async def run(
        self, funcname: str, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: tuple[Any, ...]
    ) -> RunResult:
        fn = self._functions.get(funcname)
        if fn is None:
            return RunResult(False, errors=(f"function {funcname!r} is not served here",))
        call_kwargs = dict(kwargs)
        if inputs:
            call_kwargs["inputs"] = list(inputs)
        try:
            inspect.signature(fn).bind(*args, **call_kwargs)
        except TypeError as exc:
            return RunResult(False, errors=(f"wrong arguments for {funcname}: {exc}",))
        except ValueError:
            pass  # builtins without a signature: let the call say
        try:
            value = await trio.to_thread.run_sync(
                lambda: fn(*args, **call_kwargs),
                abandon_on_cancel=True,  # type: ignore[call-arg]  # stubs predate it
            )
        except Exception as exc:
            tb = "".join(traceback.format_exception(exc))
            return RunResult(False, errors=(f"{type(exc).__name__}: {exc}", tb))
        return RunResult(True, output=(value,))


def builtin() -> Registry:
    """The functions every node serves unless told otherwise: enough to try a colony."""
    from colonyp2p.executors import builtin as functions

    registry = Registry()
    for name in functions.__all__:
        registry.register(name, getattr(functions, name))
    return registry


class PythonExecutor:
    """The Executor (executors/base.py) for registered Python functions."""

    uses_workdir = False

    def __init__(self, registry: Registry, executortype: str = "python") -> None:
        self.registry = registry
        self._type = executortype

    @property
    def executortype(self) -> str:
        return self._type

    def functions(self) -> tuple[str, ...]:
        return self.registry.names

    def hardware(self) -> Hardware:
        return machine_hardware()

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        return await self.registry.run(spec.funcname, spec.args, spec.kwargs, request.inputs)


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
