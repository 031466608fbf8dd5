"""Functions a python executor serves, by name: what its worker threads or worker
processes call. Free of trio, so that a worker process starts quickly and small."""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable, Iterable
from typing import Any

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import RunResult


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

    def items(self) -> list[tuple[str, Callable[..., Any]]]:
        return sorted(self._functions.items())

    def call(
        self, funcname: str, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: tuple[Any, ...]
    ) -> RunResult:
        """Call a function here and now (in this thread)."""
        prepared = self.prepare(funcname, args, kwargs, inputs)
        if isinstance(prepared, RunResult):
            return prepared
        return outcome(prepared)

    def prepare(
        self, funcname: str, args: tuple[Any, ...], kwargs: dict[str, Any], inputs: tuple[Any, ...]
    ) -> Callable[[], Any] | RunResult:
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
        return lambda: fn(*args, **call_kwargs)


def outcome(call: Callable[[], Any]) -> RunResult:
    """Call it: its return value as the output, an exception as the errors."""
    try:
        value = call()
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
