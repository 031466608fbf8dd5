"""The shell executor: runs a spec's funcname as a command on this machine.

A spec reaches this executor from any member of the colony, so the command line is
built as an argument vector and never handed to a shell: an argument like
``"; rm -rf ~"`` arrives as one literal argument. Where the node's config lists the
commands it serves (``allowed``), anything else is refused before it starts.

The command is looked up on the executor's PATH, not on one the spec sets, so that a
spec cannot point an allowed name at a program of its own. It does not inherit the
daemon's environment (which may hold keys, tokens or a config path): it gets a small
fixed one, with those variables of the spec's ``env`` on top that the node's config
allows by name (``env_allowed``; none by default, and never the loader's or an
interpreter's unless named in full: see executors/base.py, ``confine_env``: with
LD_PRELOAD from a spec, an allowed ``echo`` loaded a library of the spec's choosing).
It runs in a process group of its own, so
that a deadline or a cancel can stop everything it started, children included, and
not only the first process.

Results: exit code 0 is ok with output ``(0, last lines of stdout)``; anything else
fails with ``("<command> exited with code N" or "... killed by SIGX", stderr tail)``;
a run past its deadline (the daemon's, or maxexectime) is SIGTERMed, SIGKILLed after a
grace period, and fails with "killed at maxexectime: ...".

A parent's outputs (in a workflow) are written as JSON to ``colony-inputs.json`` in
the working directory and named by ``COLONY_INPUTS``: a file rather than a variable,
because a variable is limited to 128 KiB by the kernel.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import trio

from colonyp2p.executors.base import LogSink, RunRequest, RunResult, confine_env
from colonyp2p.model.ads import Hardware

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INPUTS_FILE = "colony-inputs.json"
TAIL_LINES = 50  # lines of stdout (output) and stderr (errors) a result carries
GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL
DRAIN_SECONDS = 1.0  # to read what is left in the pipes once the process is gone
MAX_LINE = 64 * 1024  # a line longer than this is logged in pieces
KILLED_AT_DEADLINE = "killed at maxexectime"


def stringify(value: object) -> str:
    """One command-line argument from one spec argument.

    Specs come from JSON, where true is not "True": booleans and null are written the
    way JSON (and most command-line tools) spell them, and lists and maps as JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return json.dumps(value, sort_keys=True, default=str)


def base_environment(
    workdir: Path, pid: str, path: str = DEFAULT_PATH, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What every command gets before the spec's env: enough to find programs and write
    files, nothing of the daemon's own environment."""
    env = {
        "PATH": path,
        "HOME": str(workdir),
        "PWD": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "COLONY_PROCESS_ID": pid,
    }
    if extra:
        env.update(extra)
    return env


def write_inputs(workdir: Path, inputs: tuple[Any, ...]) -> Path | None:
    """Store a workflow child's inputs for the command; None when it has none."""
    if not inputs:
        return None
    target = workdir / INPUTS_FILE
    target.write_text(json.dumps(list(inputs), default=str))
    return target


def effective_deadline(request: RunRequest, started: float) -> float | None:
    """The wall-clock time by which the run must end: the daemon's deadline or the
    spec's maxexectime counted from ``started``, whichever comes first."""
    candidates: list[float] = []
    if request.deadline is not None:
        candidates.append(request.deadline)
    if request.spec.maxexectime > 0:
        candidates.append(started + request.spec.maxexectime)
    return min(candidates) if candidates else None


def trio_deadline(wall: float | None) -> float:
    """A wall-clock deadline in trio's clock (which is not the wall clock)."""
    if wall is None:
        return math.inf
    return trio.current_time() + (wall - time.time())


def tail_text(lines: Iterable[str]) -> str:
    return "\n".join(lines)


def machine_hardware() -> Hardware:
    """This machine's cores, memory and CPU model, for the node's ad."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    memory = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()[:256]
                    break
    except OSError:
        pass
    return Hardware(cpu=model, cores=cores, memory=max(memory, 0))


class LineSplitter:
    """Bytes in, whole decoded lines out; a partial last line waits for more bytes."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        buffer = self._pending + data
        *complete, self._pending = buffer.split(b"\n")
        while len(self._pending) > MAX_LINE:
            complete.append(self._pending[:MAX_LINE])
            self._pending = self._pending[MAX_LINE:]
        return [_decode(line) for line in complete]

    def flush(self) -> list[str]:
        rest, self._pending = self._pending, b""
        return [_decode(rest)] if rest else []


def _decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace").removesuffix("\r")


def emit(lines: list[str], prefix: str, tail: deque[str], log: LogSink) -> None:
    for line in lines:
        tail.append(line)
        log(prefix + line)


async def _pump(
    stream: trio.abc.ReceiveStream, prefix: str, tail: deque[str], log: LogSink
) -> None:
    splitter = LineSplitter()
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                break
            emit(splitter.feed(data), prefix, tail, log)
    finally:
        # What arrived before a cancel is still worth logging.
        emit(splitter.flush(), prefix, tail, log)


def _signal_group(pgid: int, signum: int) -> bool:
    """Signal a process group; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # Its pid was reused by someone else's group: nothing of ours is left.
        return False
    return True


def group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running.

    A zombie counts as gone: it runs nothing, and in a container whose init reaps
    orphans late, waiting for zombies to vanish would waste the whole grace period.
    Without /proc, any member (zombies included) counts.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return _signal_group(pgid, 0)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat.rpartition(")")[2].split()
        # After the command name: state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


async def stop_group(process: trio.Process, grace: float) -> None:
    """SIGTERM the process's whole group, SIGKILL what is left after ``grace``, and
    reap the leader. Call it shielded: it must finish even while being cancelled."""
    pgid = process.pid
    if _signal_group(pgid, signal.SIGTERM):
        with trio.move_on_after(grace):
            await process.wait()
            # The leader is gone; its children get the rest of the grace period.
            while group_alive(pgid):
                await trio.sleep(0.05)
    await kill_group(pgid)
    await process.wait()


async def kill_group(pgid: int, timeout: float = 2.0) -> None:
    """SIGKILL a group and wait until its processes are dead, not merely signalled:
    on a busy machine a killed process can take a moment to be scheduled and die."""
    if not _signal_group(pgid, signal.SIGKILL):
        return
    with trio.move_on_after(timeout):
        while group_alive(pgid):
            await trio.sleep(0.01)


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exited with code {code}"


class ShellExecutor:
    """Runs commands (optionally only those on an allow-list) in process groups of their own."""

    uses_workdir = True

    def __init__(
        self,
        executortype: str = "shell",
        allowed: tuple[str, ...] | None = None,
        *,
        path: str = DEFAULT_PATH,
        base_env: Mapping[str, str] | None = None,
        env_allowed: tuple[str, ...] = (),
        tail_lines: int = TAIL_LINES,
        grace: float = GRACE_SECONDS,
        hardware: Hardware | None = None,
    ) -> None:
        self._executortype = executortype
        self.allowed = allowed
        self.path = path
        self.base_env = dict(base_env or {})
        self.env_allowed = env_allowed  # what a spec's env may set (config executor.env)
        self.tail_lines = tail_lines
        self.grace = grace
        self._hardware = hardware

    @property
    def executortype(self) -> str:
        return self._executortype

    def functions(self) -> tuple[str, ...]:
        # The allow-list is also what the ad announces, so that specs for commands this
        # node refuses are never matched to it in the first place.
        return tuple(sorted(self.allowed)) if self.allowed else ()

    def hardware(self) -> Hardware:
        if self._hardware is None:
            self._hardware = machine_hardware()
        return self._hardware

    def refusal(self, funcname: str) -> str | None:
        """Why ``funcname`` is not run here, or None."""
        if self.allowed is not None and funcname not in self.allowed:
            return f"command {funcname!r} is not on this executor's allow-list"
        if shutil.which(funcname, path=self.path) is None:
            return f"command {funcname!r} not found on PATH {self.path}"
        return None

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        refused = self.refusal(spec.funcname)
        if refused is not None:
            return RunResult(False, errors=(refused,))
        program = shutil.which(spec.funcname, path=self.path)
        assert program is not None
        argv = [program, *(stringify(arg) for arg in spec.args)]
        env = base_environment(request.workdir, request.pid, self.path, self.base_env)
        started = time.time()
        deadline = effective_deadline(request, started)
        try:
            inputs = write_inputs(request.workdir, request.inputs)
            if inputs is not None:
                env["COLONY_INPUTS"] = str(inputs)
            env.update(confine_env(spec.env, self.env_allowed, log))
            process = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=request.workdir,
                env=env,
                start_new_session=True,  # a group of its own: killpg reaches its children
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in an argument
            return RunResult(False, errors=(f"cannot start {spec.funcname}: {exc}",))
        return await self._supervise(process, spec.funcname, deadline, started, log)

    async def _supervise(
        self,
        process: trio.Process,
        funcname: str,
        deadline: float | None,
        started: float,
        log: LogSink,
    ) -> RunResult:
        out: deque[str] = deque(maxlen=self.tail_lines)
        err: deque[str] = deque(maxlen=self.tail_lines)
        timed_out = False
        assert process.stdout is not None and process.stderr is not None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump, process.stdout, "", out, log)
                nursery.start_soon(_pump, process.stderr, "stderr: ", err, log)
                with trio.move_on_at(trio_deadline(deadline)) as waiting:
                    await process.wait()
                if waiting.cancelled_caught:
                    timed_out = True
                    with trio.CancelScope(shield=True):
                        await stop_group(process, self.grace)
                else:
                    # Whatever the command left behind in its group goes with it.
                    if group_alive(process.pid):
                        with trio.CancelScope(shield=True):
                            await kill_group(process.pid)
                # A process that escaped the group (setsid) may hold the pipes open:
                # read what is there, but do not wait for it.
                nursery.cancel_scope.deadline = trio.current_time() + DRAIN_SECONDS
        except BaseException:
            with trio.CancelScope(shield=True):
                await stop_group(process, self.grace)
            raise
        finally:
            with trio.CancelScope(shield=True):
                await _close(process)
        code = process.returncode
        assert code is not None
        if timed_out:
            elapsed = time.time() - started
            return RunResult(
                False,
                errors=(
                    f"{KILLED_AT_DEADLINE}: {funcname} was still running when its deadline "
                    f"passed after {elapsed:.1f} s",
                    tail_text(err),
                ),
            )
        if code == 0:
            return RunResult(True, output=(0, tail_text(out)))
        return RunResult(False, errors=(f"{funcname} {_exit_reason(code)}", tail_text(err)))


async def _close(process: trio.Process) -> None:
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            await stream.aclose()
