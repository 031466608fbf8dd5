"""The python executor's worker processes (isolation "process"): calls run in other
processes, prints come back as log lines, a killed worker's call runs again on another
worker (up to maxretries), a cancelled call's worker is killed, and no worker outlives
its node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import cluster, wait_for

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.factory import make
from colonyp2p.executors.process_pool import WorkerDied, WorkerPool, _Worker
from colonyp2p.executors.python import PythonExecutor, Registry
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.node.home import ExecutorConfig

# stdlib functions, so that the worker (a fresh interpreter) can import them
ENTRIES = ["getpid=os:getpid", "say=builtins:print", "nap=time:sleep", "write_fd=os:write"]


def _pool() -> WorkerPool:
    return WorkerPool(ENTRIES, builtin=True)


async def _until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = trio.current_time() + timeout
    while not check():
        if trio.current_time() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        await trio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (trio reaps its own children; this one may be another's)
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_calls_run_in_worker_processes_and_prints_come_back_as_log_lines() -> None:
    pool = _pool()
    try:
        lines: list[str] = []
        got = await pool.run("getpid", (), {}, (), lines.append, 0)
        assert got.ok and got.output[0] != os.getpid()
        said = await pool.run("say", ("hello", "colony"), {}, (), lines.append, 0)
        assert said == RunResult(True, output=(None,))
        assert lines == ["hello colony"]
        echoed = await pool.run("echo", (1, "a"), {"k": 2}, (3,), lines.append, 0)
        assert echoed.output == ({"args": [1, "a"], "kwargs": {"k": 2, "inputs": [3]}},)
        failed = await pool.run("fail", ("boom",), {}, (), lines.append, 0)
        assert not failed.ok and failed.errors[0] == "RuntimeError: boom"
        unknown = await pool.run("nope", (), {}, (), lines.append, 0)
        assert unknown.errors == ("function 'nope' is not served here",)
        # frames larger than a pipe holds (64 KiB) arrive in pieces, both ways
        big = "x" * 1_000_000
        assert (await pool.run("echo", (big,), {}, (), lines.append, 0)).output == (
            {"args": [big], "kwargs": {}},
        )
        # a function writing to file descriptor 1 does not corrupt the replies
        await pool.run("write_fd", (1, b"not a frame\n"), {}, (), lines.append, 0)
        again = await pool.run("getpid", (), {}, (), lines.append, 0)
        assert again.ok and again.output == got.output  # the same worker, still in step
    finally:
        await pool.close()


async def test_calls_beyond_the_workers_wait_for_one() -> None:
    pool = WorkerPool(ENTRIES, builtin=False, workers=2)
    try:
        most = 0
        done: list[RunResult] = []

        async def call() -> None:
            done.append(await pool.run("nap", (0.2,), {}, (), print, 0))

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(call)
                # both workers busy at once: waited for, not left to a lucky sample
                await _until(lambda: len(pool.busy_pids) == 2, "both workers busy")
                while len(done) < 5:
                    most = max(most, len(pool.busy_pids))
                    await trio.sleep(0.005)
        assert done == [RunResult(True, output=(None,))] * 5
        assert most == 2  # never a third at once
        assert pool.started <= 3  # two workers and a spare, not a Python per call
    finally:
        await pool.close()


async def test_a_killed_worker_s_call_runs_again_on_another_worker() -> None:
    pool = _pool()
    try:
        await pool.warm()
        lines: list[str] = []
        result: list[RunResult] = []

        async def call() -> None:
            result.append(await pool.run("nap", (0.5,), {}, (), lines.append, 1))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await _until(lambda: pool.busy_pids, "a busy worker")
            victim = pool.busy_pids[0]
            os.kill(victim, signal.SIGKILL)
        assert result == [RunResult(True, output=(None,))]
        assert lines == [
            f"[python] the worker process {victim} was killed by SIGKILL: running nap again"
        ]
        assert victim not in pool.idle_pids and pool.idle_pids
    finally:
        await pool.close()


async def test_a_call_whose_workers_keep_dying_fails_after_maxretries() -> None:
    pool = _pool()
    try:
        lines: list[str] = []
        result: list[RunResult] = []

        async def call() -> None:
            result.append(await pool.run("nap", (30,), {}, (), lines.append, 1))

        async def kill_busy(times: int) -> None:
            killed: list[int] = []
            for _ in range(times):
                await _until(lambda: [p for p in pool.busy_pids if p not in killed], "a worker")
                pid = next(p for p in pool.busy_pids if p not in killed)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call)
            await kill_busy(2)
        assert len(result) == 1 and not result[0].ok
        assert len(result[0].errors) == 2
        assert all("was killed by SIGKILL" in e for e in result[0].errors)
    finally:
        await pool.close()


async def test_a_cancelled_call_kills_its_worker() -> None:
    pool = _pool()
    try:
        busy: list[int] = []
        # a deadline against a hang only: how fast the cancel is is no business of a test
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pool.run, "nap", (60,), {}, (), print, 0)
                await _until(lambda: pool.busy_pids, "a busy worker")
                busy = pool.busy_pids
                nursery.cancel_scope.cancel()
        assert busy
        assert not _alive(busy[0])  # killed, not left to sleep out its 60 s
        assert busy[0] not in pool.idle_pids
        assert (await pool.run("getpid", (), {}, (), print, 0)).ok  # the pool goes on
    finally:
        await pool.close()


def test_workers_end_with_their_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL leaves no worker behind to finish a call nobody would
    hear the end of."""
    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, trio
        from colonyp2p.executors.process_pool import WorkerPool

        async def main():
            pool = WorkerPool(["nap=time:sleep"], builtin=False)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pool.run, "nap", (120,), {{}}, (), print, 0)
                while not pool.busy_pids:
                    await trio.sleep(0.01)
                with open({str(pids)!r}, "w") as f:
                    f.write(" ".join(map(str, pool.busy_pids)))

        trio.run(main)
        """
    )
    node = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and pids.read_text()):
            assert time.monotonic() < deadline, "the worker never started"
            assert node.poll() is None, "the node exited"
            time.sleep(0.02)
        worker = int(pids.read_text())
        assert _alive(worker)
        node.send_signal(signal.SIGKILL)
        node.wait()
        deadline = time.monotonic() + 10
        while _alive(worker):
            assert time.monotonic() < deadline, f"worker {worker} outlived its node"
            time.sleep(0.02)
    finally:
        node.kill()
        node.wait()


async def test_the_executor_runs_specs_in_workers_and_checks_the_name_first() -> None:
    executor = make(ExecutorConfig(functions=["getpid=os:getpid"], isolation="process"))
    assert isinstance(executor, PythonExecutor) and executor.pool is not None
    try:
        spec = FunctionSpec("getpid")
        got = await executor.run(RunRequest("p" * 64, spec, (), Path(".")), print)
        # it ran in one of the pool's workers (idle again now), not in this process
        assert got.ok and got.output[0] != os.getpid()
        assert got.output[0] in executor.pool.idle_pids
        started = executor.pool.started
        unknown = await executor.run(
            RunRequest("p" * 64, FunctionSpec("nope"), (), Path(".")), print
        )
        assert unknown.errors == ("function 'nope' is not served here",)
        assert executor.pool.started == started
    finally:
        await executor.pool.close()


def test_isolation_is_checked() -> None:
    with pytest.raises(ValidationError, match="'fork' is not one of thread, process"):
        make(ExecutorConfig(isolation="fork"))
    assert ExecutorConfig().isolation == "process"
    # functions registered in code run in threads beside the pool: no pool for none
    embedded = make(ExecutorConfig(), Registry())
    assert isinstance(embedded, PythonExecutor) and embedded.pool is None
    assert isinstance(make(ExecutorConfig()), PythonExecutor)


SPIN = """
import os, time

def spin(heartbeat):
    # a function that never returns, writing its pid and a beat every 20 ms
    while True:
        with open(heartbeat, "w") as f:
            f.write(f"{os.getpid()} {time.monotonic()}")
        time.sleep(0.02)
"""


def test_an_entry_point_past_maxexectime_is_really_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack: a call past maxexectime in the default thread isolation failed on time
    but its thread went on computing. An entry point of the config now runs in a worker
    process by default, and the process is killed when the run ends."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "spinmod.py").write_text(SPIN)
    # the daemon, and so its workers, find the module
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "mods"))
    heartbeat = tmp_path / "beat"
    with cluster(tmp_path / "c") as c:
        owner = c.node("owner")
        owner.cli("init")
        owner.cli("colony", "create", "spin")
        owner.configure("spinner")
        config = owner.home.config()
        assert config.executor is not None and config.executor.isolation == "process"
        config.executor.functions = ["spin=spinmod:spin"]
        owner.home.save_config(config)
        owner.start()
        spec = {
            "funcname": "spin",
            "args": [str(heartbeat)],
            # long enough for a worker to start on a busy machine (it must have beaten
            # once for the test to name it), short for the suite
            "maxexectime": 8,
            "conditions": {"executortype": "spinner"},
        }
        pid = owner.submit(spec)["pid"]
        done = wait_for(lambda: owner.finished(pid), 60, "the maxexectime failure")
        assert done["state"] == "failed"
        assert "maxexectime" in done["errors"][0], done["errors"]
        # (a read may fall between the truncation and the write of a beat)
        worker = int(wait_for(heartbeat.read_text, 10, "a beat").split()[0])
        assert worker != owner.pid  # it ran in a worker process, not in the node
        wait_for(lambda: not _alive(worker), 10, "the worker past maxexectime to be killed")
        # nothing writes the file any more: no other process ever ran the function
        assert int(wait_for(heartbeat.read_text, 10, "the last beat").split()[0]) == worker


async def test_a_worker_that_sends_garbage_is_killed_and_counts_as_died() -> None:
    # a process speaking the framing but not CBOR, then hanging: it must not hang the call
    garbage = "import sys, time; sys.stdout.buffer.write(b'\\0\\0\\0\\2\\xff\\xff'); "
    garbage += "sys.stdout.flush(); time.sleep(60)"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-c", garbage], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    worker = _Worker(process)
    with trio.fail_after(10), pytest.raises(WorkerDied, match="sent what is not a reply"):
        await worker.call({"funcname": "noop", "args": [], "kwargs": {}, "inputs": []}, print)
    assert process.returncode is not None
