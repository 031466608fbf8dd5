"""Worker processes for the python executor's ``isolation = "process"``.

Each call runs in a worker process of its own at the time (``executors/worker.py``),
so a function can use a core of its own (no GIL shared with the node), is really
stopped when its run is cancelled (lost lease, cancel, maxexectime: the worker is
killed), and cannot take its node down when it crashes or is killed.

A worker that dies during a call (killed, out of memory, a crash in native code) is
replaced and the call run again on another worker, up to the spec's ``maxretries``
times, within the same lease: the keepers see one run and its outcome. One idle
worker is kept spare beyond those in use, so that a re-run starts at once instead of
after a Python start-up.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import cbor2
import trio

from colonyp2p.executors.base import LogSink, RunResult
from colonyp2p.executors.worker import HEADER, MAX_FRAME, encode_frame

log = logging.getLogger(__name__)

SPARES = 1  # idle workers kept beyond those in use


class WorkerDied(Exception):
    """The worker process ended during a call."""


class _Garbage(EOFError):
    """The worker sent what is not a reply: it is killed and counts as died."""


class _Worker:
    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = bytearray()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def call(self, message: dict[str, Any], log_line: LogSink) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            await stdin.send_all(encode_frame(message))
            while True:
                reply = await self._frame(stdout)
                if "log" in reply:
                    log_line(str(reply["log"]))
                    continue
                return reply
        except _Garbage as exc:
            self.kill()
            with trio.move_on_after(5):
                await self.process.wait()
            raise WorkerDied(f"sent what is not a reply ({exc})") from exc
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError) as exc:
            raise WorkerDied(await self._ended()) from exc

    async def _frame(self, stdout: trio.abc.ReceiveStream) -> dict[str, Any]:
        while True:
            if len(self._buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(self._buffer)
                if size > MAX_FRAME:
                    raise _Garbage(f"a frame of {size} bytes")
                end = HEADER.size + size
                if len(self._buffer) >= end:
                    body = bytes(self._buffer[HEADER.size : end])
                    del self._buffer[:end]
                    try:
                        reply = cbor2.loads(body)
                    except Exception as exc:
                        raise _Garbage(f"not CBOR: {exc}") from exc
                    if not isinstance(reply, dict):
                        raise _Garbage(f"a {type(reply).__name__}, not a map")
                    return reply
            chunk = await stdout.receive_some(1 << 16)
            if not chunk:
                raise EOFError("end of stream")
            self._buffer += chunk

    async def _ended(self) -> str:
        with trio.move_on_after(5):
            await self.process.wait()
        code = self.process.returncode
        if code is None:
            self.kill()
            return "stopped answering"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with status {code}"

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class WorkerPool:
    """Up to ``workers`` calls at once (0: one per core; more wait for a worker), each in
    a worker process of its own, and ``SPARES`` idle workers more, started as needed."""

    def __init__(self, entry_points: Sequence[str], builtin: bool, workers: int = 0) -> None:
        # calls at once: the node's capacity counts processes in flight, most of them in
        # a protocol round, not computing; a worker each would start a Python per slot
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self._slots = trio.Semaphore(self.workers)
        self._starting = 0
        node = ["--node", str(os.getpid())]
        self._command = [sys.executable, "-m", "colonyp2p.executors.worker", *node]
        self._command += (["--builtin"] if builtin else []) + list(entry_points)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self.started = 0  # workers started so far (tests, benchmarks)

    @property
    def busy_pids(self) -> list[int]:
        """The process ids of the workers in a call now."""
        return sorted(w.pid for w in self._busy)

    @property
    def idle_pids(self) -> list[int]:
        return sorted(w.pid for w in self._idle)

    async def _start(self) -> _Worker:
        """A new worker; the caller counted it in ``_starting`` already."""
        try:
            process = await trio.lowlevel.open_process(
                self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        finally:
            self._starting -= 1
        self.started += 1
        return _Worker(process)

    async def _spare(self) -> None:
        worker = await self._start()
        self._idle.append(worker)

    def _more_spares(self, nursery: trio.Nursery) -> None:
        """Start a spare if none is idle or on its way, within workers + SPARES."""
        alive = len(self._idle) + len(self._busy) + self._starting
        if len(self._idle) + self._starting < SPARES and alive < self.workers + SPARES:
            self._starting += 1
            nursery.start_soon(self._spare)

    async def _take(self) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.returncode is None:
                return worker
            # it died idle (killed, out of memory): not the next call's death
            log.warning(
                "the idle worker process %d ended (status %s)",
                worker.pid,
                worker.process.returncode,
            )
        self._starting += 1
        return await self._start()

    async def warm(self) -> None:
        """Start the spare workers now (it takes them a tenth of a second to import), so
        that the first call does not wait for a start-up."""
        while len(self._idle) + self._starting < SPARES:
            self._starting += 1
            await self._spare()

    async def run(
        self,
        funcname: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        inputs: tuple[Any, ...],
        log_line: LogSink,
        maxretries: int,
        cwd: str | None = None,
    ) -> RunResult:
        message = {"funcname": funcname, "args": args, "kwargs": kwargs, "inputs": inputs}
        if cwd is not None:
            message["cwd"] = cwd  # the call runs there (see worker.py)
        deaths: list[str] = []
        async with self._slots, trio.open_nursery() as nursery:
            while True:
                worker = await self._take()
                self._busy.add(worker)
                # not for a re-run: a Python start-up takes a core for about 0.1 s, which
                # the re-run, the one call waited for, would share
                if not deaths:
                    self._more_spares(nursery)
                try:
                    reply = await worker.call(message, log_line)
                except WorkerDied as died:
                    deaths.append(f"the worker process {worker.pid} {died}")
                    log.warning("%s during %s", deaths[-1], funcname)
                    if len(deaths) > max(0, maxretries):
                        return RunResult(False, errors=tuple(deaths))
                    log_line(f"[python] {deaths[-1]}: running {funcname} again")
                    continue
                except BaseException:
                    # cancelled (lost lease, cancel, maxexectime) or broken: the call
                    # may be running still, so the worker goes
                    worker.kill()
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await worker.process.wait()
                    raise
                finally:
                    self._busy.discard(worker)
                self._idle.append(worker)
                ok = bool(reply.get("ok"))
                output = tuple(reply.get("output") or ())
                errors = tuple(str(e) for e in reply.get("errors") or ())
                return RunResult(ok, output, errors)

    async def close(self) -> None:
        """Stop the idle workers (a busy one is killed by its run's cancellation)."""
        idle, self._idle = self._idle, []
        for worker in idle:
            stdin = worker.process.stdin
            if stdin is not None:
                with trio.move_on_after(1):
                    await stdin.aclose()
        for worker in idle:
            with trio.move_on_after(2):
                await worker.process.wait()
            worker.kill()
