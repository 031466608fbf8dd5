"""The python executor on its own: what a run of a registered function gives back, what
it says when the function is unknown, the arguments are wrong or it raises, the bounds
of the built-ins, and where each kind of function runs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from colonyp2p.errors import ValidationError
from colonyp2p.executors import builtin as builtin_functions
from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.builtin import MAX_PRIMES, MAX_TEXT
from colonyp2p.executors.factory import make
from colonyp2p.executors.python import PythonExecutor, Registry, builtin
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.home import ExecutorConfig


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


# --- the built-ins: bounded, and ended with their run ------------------------------------


async def _builtin(funcname: str, *args: Any) -> RunResult:
    request = RunRequest("p" * 64, FunctionSpec(funcname, args=args), (), Path("."))
    return await PythonExecutor(builtin()).run(request, lambda line: None)


async def test_built_ins_refuse_arguments_beyond_their_bounds() -> None:
    """The attack: primes(1e9) in the default thread kept ~1.1 GiB and a core for 15 s
    after its run had failed on time. A limit that large is refused before any memory
    is taken."""
    huge = await _builtin("primes", 1_000_000_000)
    assert huge == RunResult(
        False,
        errors=(
            "ValueError: primes: limit must be a whole number from 0 to 50000000, got 1000000000",
            huge.errors[1],
        ),
    )
    assert "Traceback" in huge.errors[1]
    # specs carry 64-bit integers at most; called directly, a larger one is not printed
    with pytest.raises(ValueError, match=r"got an integer of 1329 bits$"):
        builtin_functions.primes(10**400)
    assert (await _builtin("primes", 1000.0)).errors[0].startswith("ValueError: primes: limit")
    assert (await _builtin("primes", MAX_PRIMES // 10)).ok
    assert (await _builtin("sleep", 86400)).errors[0] == (
        "ValueError: sleep: seconds must be from 0 to 3600, got 86400"
    )
    # a spec is 1 MiB at most; the text's own bound holds for direct calls too
    with pytest.raises(ValueError, match=f"sha256: text may be {MAX_TEXT} characters at most"):
        builtin_functions.sha256("x" * (MAX_TEXT + 1))
    assert (await _builtin("wordcount", 3)).errors[0] == (
        "ValueError: wordcount: text must be a string, got int"
    )


async def test_a_cancelled_built_in_ends_with_its_run() -> None:
    """A thread cannot be killed: a built-in sleeping in one stops when its run is
    cancelled (lease lost, cancel, maxexectime), instead of holding the thread for an hour."""
    ended = threading.Event()
    registry = Registry()

    def nap(seconds: float) -> float:
        try:
            return builtin_functions.sleep(seconds)
        finally:
            ended.set()

    registry.register("nap", nap)
    executor = PythonExecutor(registry)
    request = RunRequest("p" * 64, FunctionSpec("nap", args=(3600,)), (), Path("."))
    with trio.move_on_after(0.3):
        await executor.run(request, lambda line: None)
    with trio.fail_after(10):  # the deadline; the thread ends about at once
        while not ended.is_set():
            await trio.sleep(0.01)


def test_entry_points_run_in_worker_processes_by_default_built_ins_in_threads() -> None:
    executor = make(ExecutorConfig(functions=["getpid=os:getpid"]))
    assert isinstance(executor, PythonExecutor) and executor.pool is not None
    assert executor.pooled == {"getpid"}
    assert "getpid" not in executor.registry and "primes" in executor.registry
    assert set(executor.functions()) == {"getpid", *builtin().names}
    # functions registered in code (Colony.embedded) run in threads, beside the pool
    mine = Registry()
    mine.register("mine", lambda: 1)
    embedded = make(ExecutorConfig(), mine)
    assert isinstance(embedded, PythonExecutor) and embedded.pool is None
    assert "mine" in embedded.registry and "echo" in embedded.registry
    # an operator who wants threads for the entry points says so
    threads = make(ExecutorConfig(functions=["getpid=os:getpid"], isolation="thread"))
    assert isinstance(threads, PythonExecutor) and threads.pool is None
    assert "getpid" in threads.registry
