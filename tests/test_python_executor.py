"""The python executor on its own: what a run of a registered function gives back, and
what it says when the function is unknown, the arguments are wrong or it raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.python import PythonExecutor, Registry
from colonyp2p.model.spec import FunctionSpec


def _executor() -> PythonExecutor:
    registry = Registry()

    def scale(values: list[float], factor: float = 2.0) -> list[float]:
        return [v * factor for v in values]

    def total(*, inputs: list[Any]) -> float:
        return float(sum(inputs))

    def explode(message: str) -> None:
        raise ValueError(message)

    for fn in (scale, total, explode):
        registry.register(fn.__name__, fn)
    return PythonExecutor(registry, "edge")


async def _run(funcname: str, *args: Any, inputs: tuple[Any, ...] = (), **kw: Any) -> RunResult:
    spec = FunctionSpec(funcname, args=args, kwargs=kw)
    request = RunRequest("p" * 64, spec, inputs, Path("."))
    return await _executor().run(request, lambda line: None)


async def test_the_return_value_is_the_output_and_inputs_come_as_a_kwarg() -> None:
    assert await _run("scale", [1, 2], factor=3) == RunResult(True, output=([3, 6],))
    assert await _run("total", inputs=(1, 2.5)) == RunResult(True, output=(3.5,))


async def test_each_failure_says_what_went_wrong() -> None:
    unknown = await _run("nope")
    assert not unknown.ok and unknown.errors == ("function 'nope' is not served here",)
    wrong = await _run("scale", [1], 2, 3)
    assert not wrong.ok and wrong.errors[0].startswith("wrong arguments for scale:")
    raised = await _run("explode", "no luck")
    assert not raised.ok and raised.errors[0] == "ValueError: no luck"
    assert "Traceback" in raised.errors[1] and "raise ValueError(message)" in raised.errors[1]


def test_functions_listed_in_a_config_must_exist() -> None:
    registry = Registry()
    registry.load(["plus=colonyp2p.executors.builtin:add", "colonyp2p.executors.builtin:echo"])
    assert registry.names == ("echo", "plus")
    with pytest.raises(ValidationError, match="is not name=module:function"):
        registry.load(["justaname"])
    with pytest.raises(ValidationError, match="cannot load"):
        registry.load(["colonyp2p.executors.builtin:nothing"])
