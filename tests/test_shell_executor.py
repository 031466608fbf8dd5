"""The shell executor runs real commands: these tests start real processes (sh, echo,
sleep, env, printf), because what matters is what the kernel sees: the argument
vector, the environment, the process group and who is left alive after a kill."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.shell import (
    KILLED_AT_DEADLINE,
    LineSplitter,
    ShellExecutor,
    stringify,
)
from colonyp2p.model.spec import FunctionSpec

MINIMAL_ENV = {"PATH", "HOME", "PWD", "TMPDIR", "LANG", "COLONY_PROCESS_ID"}


class Log:
    """A log sink that remembers each line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def request(
    tmp_path: Path,
    funcname: str,
    *args: Any,
    env: dict[str, str] | None = None,
    maxexectime: float = -1,
    deadline: float | None = None,
    inputs: tuple[Any, ...] = (),
) -> RunRequest:
    spec = FunctionSpec(funcname, args=args, env=env or {}, maxexectime=maxexectime)
    return RunRequest("pid-" + funcname, spec, inputs, tmp_path, deadline)


async def run(
    tmp_path: Path, funcname: str, *args: Any, executor: ShellExecutor | None = None, **kw: Any
) -> tuple[RunResult, Log]:
    log = Log()
    with trio.fail_after(10):
        result = await (executor or ShellExecutor()).run(
            request(tmp_path, funcname, *args, **kw), log
        )
    return result, log


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def wait_for_file(path: Path, timeout: float = 5.0) -> str:
    with trio.fail_after(timeout):
        while not (path.exists() and path.read_text().strip()):
            await trio.sleep(0.02)
    return path.read_text().strip()


async def test_success_returns_exit_code_and_stdout(tmp_path: Path) -> None:
    result, log = await run(tmp_path, "echo", "hello", 42, True)
    assert result == RunResult(True, output=(0, "hello 42 true"))
    assert log.lines == ["hello 42 true"]


async def test_failure_returns_exit_code_and_stderr_tail(tmp_path: Path) -> None:
    script = "echo partial; echo 'it broke' >&2; echo 'really' >&2; exit 3"
    result, log = await run(tmp_path, "sh", "-c", script)
    assert not result.ok
    assert result.errors == ("sh exited with code 3", "it broke\nreally")
    assert "partial" in log.lines
    assert "stderr: it broke" in log.lines


async def test_killed_by_signal_says_which(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, "sh", "-c", "kill -SEGV $$")
    assert not result.ok
    assert result.errors[0] == "sh killed by SIGSEGV"


async def test_runs_in_workdir_and_lines_stream_as_they_come(tmp_path: Path) -> None:
    # the command waits for a file that the log sink writes on reading its first line:
    # were lines held back until the end, it would never end (run() fails after 10 s)
    go = tmp_path / "go"
    log = Log()

    def sink(line: str) -> None:
        log(line)
        go.touch()

    script = f"pwd; while [ ! -e {go} ]; do sleep 0.02; done; echo late"
    with trio.fail_after(10):
        result = await ShellExecutor().run(request(tmp_path, "sh", "-c", script), sink)
    assert result.ok
    assert log.lines == [str(tmp_path), "late"]


def _seen(log: Log) -> dict[str, str]:
    """The environment ``env`` printed (the executor's own [env] note left out)."""
    return dict(line.split("=", 1) for line in log.lines if not line.startswith("[env]"))


async def test_env_is_the_allowed_spec_env_on_a_minimal_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAEMON_SECRET", "do-not-leak")
    executor = ShellExecutor(env_allowed=("FOO", "LANG"))
    spec_env = {"FOO": "bar baz", "LANG": "en_US.UTF-8", "BAR": "1"}
    result, log = await run(tmp_path, "env", env=spec_env, executor=executor)
    assert result.ok
    env = _seen(log)
    assert "DAEMON_SECRET" not in env
    assert set(env) <= MINIMAL_ENV | {"FOO"}
    assert env["FOO"] == "bar baz"
    assert env["LANG"] == "en_US.UTF-8"  # allowed by its full name: the spec wins
    assert env["HOME"] == str(tmp_path)
    assert env["COLONY_PROCESS_ID"] == "pid-env"
    assert "BAR" not in env
    # by default a spec sets nothing at all
    result, log = await run(tmp_path, "env", env=spec_env)
    assert result.ok and set(_seen(log)) <= MINIMAL_ENV and _seen(log)["LANG"] == "C.UTF-8"


async def test_loader_and_interpreter_variables_from_a_spec_are_dropped(tmp_path: Path) -> None:
    """The attack: with allow = ["echo"], a spec set LD_PRELOAD to a library it had
    mounted and ran its own code inside echo. The command's environment must lack it,
    whatever PREFIX* pattern the config allows, and the process's log says so."""
    spec_env = {
        "LD_PRELOAD": str(tmp_path / "evil.so"),
        "LD_LIBRARY_PATH": str(tmp_path),
        "PYTHONPATH": str(tmp_path),
        "PATH": str(tmp_path),
        "OMP_NUM_THREADS": "4",
    }
    executor = ShellExecutor(allowed=("env",), env_allowed=("OMP_*", "LD_*", "PY*", "P*"))
    result, log = await run(tmp_path, "env", env=spec_env, executor=executor)
    assert result.ok
    env = _seen(log)
    assert "LD_PRELOAD" not in env and "LD_LIBRARY_PATH" not in env and "PYTHONPATH" not in env
    assert env["PATH"] != str(tmp_path)
    assert env["OMP_NUM_THREADS"] == "4"
    assert log.lines[0] == (
        "[env] not set, not allowed by this executor: LD_LIBRARY_PATH, LD_PRELOAD, PATH, "
        "PYTHONPATH (the names a spec may set are listed in executor.env of the node's "
        "config.json)"
    )
    # only a config that names one in full lets it through
    named = ShellExecutor(allowed=("env",), env_allowed=("LD_PRELOAD",))
    result, log = await run(tmp_path, "env", env={"LD_PRELOAD": ""}, executor=named)
    assert result.ok and _seen(log)["LD_PRELOAD"] == ""


async def test_inputs_are_a_json_file(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, "sh", "-c", 'cat "$COLONY_INPUTS"', inputs=([1, 2], "x"))
    assert result.ok
    assert json.loads(result.output[1]) == [[1, 2], "x"]


async def test_hostile_args_are_passed_literally(tmp_path: Path) -> None:
    victim = tmp_path / "x"
    victim.write_text("still here")
    hostile = ["; rm -rf x", "$(touch pwned)", "`touch pwned2`", "a && rm x", "*", "'\"", "\\n"]
    result, log = await run(tmp_path, "printf", "%s\\n", *hostile)
    assert result.ok
    assert log.lines == hostile
    assert victim.read_text() == "still here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]


async def test_allow_list_refuses_other_commands(tmp_path: Path) -> None:
    executor = ShellExecutor(allowed=("echo",))
    assert executor.functions() == ("echo",)
    victim = tmp_path / "x"
    victim.write_text("kept")
    result, log = await run(tmp_path, "rm", "x", executor=executor)
    assert not result.ok
    assert "not on this executor's allow-list" in result.errors[0]
    assert log.lines == []
    assert victim.exists()
    ok, _ = await run(tmp_path, "echo", "fine", executor=executor)
    assert ok.ok


async def test_unknown_command_is_a_failed_result(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, "no-such-command-here")
    assert not result.ok
    assert "not found" in result.errors[0]


async def test_deadline_kills_the_process_group(tmp_path: Path) -> None:
    script = "echo $$ > sh.pid; sleep 30 & echo $! > child.pid; echo going to sleep >&2; wait"
    result, _ = await run(tmp_path, "sh", "-c", script, maxexectime=0.8)
    assert not result.ok
    assert result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert "going to sleep" in result.errors[1]
    # the leader and its child are dead (run() returned long before the 30 s were up)
    assert not alive(int((tmp_path / "sh.pid").read_text()))
    assert not alive(int((tmp_path / "child.pid").read_text()))


async def test_request_deadline_applies_too(tmp_path: Path) -> None:
    script = "echo $$ > sleep.pid; exec sleep 30"
    result, _ = await run(tmp_path, "sh", "-c", script, deadline=time.time() + 0.5)
    assert not result.ok
    assert result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert not alive(int((tmp_path / "sleep.pid").read_text()))


async def test_sigterm_ignored_gets_sigkill_after_grace(tmp_path: Path) -> None:
    executor = ShellExecutor(grace=0.5)
    script = "echo $$ > sh.pid; trap '' TERM; echo ready; while true; do sleep 0.1; done"
    result, log = await run(tmp_path, "sh", "-c", script, maxexectime=0.5, executor=executor)
    assert not result.ok
    assert result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert "ready" in log.lines  # the trap was set before the deadline
    # a shell that ignores SIGTERM and never ends by itself is gone: SIGKILL reached it
    assert not alive(int((tmp_path / "sh.pid").read_text()))


async def test_cancellation_kills_the_process_group_and_propagates(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    log = Log()
    req = request(tmp_path, "sh", "-c", "sleep 30 & echo $! > child.pid; echo $$ > sh.pid; wait")
    finished: list[RunResult] = []
    with trio.fail_after(30):  # against a hang only
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def go() -> None:
                    finished.append(await ShellExecutor().run(req, log))

                nursery.start_soon(go)
                child = int(await wait_for_file(pidfile))
                leader = int(await wait_for_file(tmp_path / "sh.pid"))
                assert alive(child)
                scope.cancel()
    assert scope.cancelled_caught  # the Cancelled went through run(), not swallowed
    assert finished == []
    assert not alive(child)
    assert not alive(leader)


async def test_children_left_behind_are_killed_after_a_normal_exit(tmp_path: Path) -> None:
    result, _ = await run(tmp_path, "sh", "-c", "sleep 30 & echo $! > child.pid")
    assert result.ok
    assert not alive(int((tmp_path / "child.pid").read_text()))


def test_hardware_is_this_machine() -> None:
    hw = ShellExecutor().hardware()
    assert hw.cores == len(os.sched_getaffinity(0))
    with open("/proc/meminfo", encoding="ascii") as meminfo:  # MemTotal, in KiB
        total = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    assert hw.memory == total * 1024


def test_stringify_spells_json_scalars() -> None:
    assert [stringify(v) for v in ("a b", 1, 2.5, True, False, None, [1, "x"], {"b": 1})] == [
        "a b",
        "1",
        "2.5",
        "true",
        "false",
        "null",
        '[1, "x"]',
        '{"b": 1}',
    ]


def test_line_splitter_keeps_partial_lines_and_bad_utf8() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\r\ntw") == ["one"]
    assert splitter.feed(b"o\n\xff\n") == ["two", "\ufffd"]
    assert splitter.feed(b"end") == []
    assert splitter.flush() == ["end"]
    assert splitter.flush() == []
