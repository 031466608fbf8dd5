"""Daemons for tests forked from a process that has imported the daemon's code once.

A daemon's imports cost about 1.4 s of CPU (py-libp2p alone 0.9 s), and the suite starts
some 350 daemons: that was the largest single cost of `make test` on a busy machine. Each
test process starts one server (``_SERVER``, at its first daemon) that imports the CLI
and the daemon, then forks a child per request. The child is the real daemon as
``colonynode start --foreground --home H`` runs it: a session of its own, the node's
environment, its output appended to the node's log, ``main()`` of the real CLI. Only the
imports are shared, done before any trio loop, thread or socket exists; the child puts its
environment's ``PYTHONPATH`` first on ``sys.path``, as a new interpreter would. (``random``
reseeds itself in a forked child; keys and nonces come from the OS.)

The server reaps its children and keeps their exit statuses, so that ``ForkedChild`` can
answer ``poll()`` as ``subprocess.Popen`` does. Nodes in a network namespace still start
through ``ip netns exec`` (tests/cluster.py).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

ANSWER_TIMEOUT = 60.0  # the first answer waits for the server's imports

_SERVER = r"""
import json, os, signal, sys, traceback

import colonyp2p.node.cli as cli
import colonyp2p.node.daemon  # noqa: F401  (the imports every child shares)
import colonyp2p.node.cli_node  # noqa: F401

codes = {}


def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        codes[pid] = os.waitstatus_to_exitcode(status)


signal.signal(signal.SIGCHLD, reap)
out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write to the answers
print(json.dumps({"ready": os.getpid()}), file=out, flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if req["op"] == "poll":
        reap()
        print(json.dumps({"code": codes.get(req["pid"])}), file=out, flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the daemon reaps its own
            os.setsid()
            os.environ.clear()
            os.environ.update(req["env"])
            # as a new interpreter would read it (a test may set it for its daemons)
            extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            sys.path[:0] = [p for p in extra if p not in sys.path]
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(req["stdout"], flags, 0o600), 1)
            os.dup2(os.open(req["stderr"], flags, 0o600), 2)
            os.closerange(3, 1 << 16)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", closefd=False, buffering=1)
            sys.stderr = open(2, "w", closefd=False, buffering=1)
            sys.argv = ["colonynode", *req["argv"]]
            cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), file=out, flush=True)
"""


class _Server:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # an import error shows in the test's output
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self.lock = threading.Lock()
        self._buffer = b""
        self._read()  # {"ready": pid}: the imports are done

    def ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        with self.lock:
            stdin.write(json.dumps(request).encode() + b"\n")
            stdin.flush()
            return self._read()

    def _read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise AssertionError(f"the daemon forker did not answer in {ANSWER_TIMEOUT} s")
            chunk = os.read(stdout.fileno(), 1 << 16)
            if not chunk:
                raise AssertionError(f"the daemon forker exited {self.process.wait()}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None


_server: _Server | None = None
_server_lock = threading.Lock()


def _the_server() -> _Server:
    global _server
    with _server_lock:
        if _server is None or not _server.alive():
            _server = _Server()
        return _server


class ForkedChild:
    """A daemon forked by the server: what tests/cluster.py uses of ``subprocess.Popen``."""

    def __init__(self, server: _Server, pid: int) -> None:
        self._server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            code = self._server.ask({"op": "poll", "pid": self.pid})["code"]
            self.returncode = None if code is None else int(code)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon {self.pid} did not exit in {timeout} s")
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode


def fork_daemon(argv: Sequence[str], env: Mapping[str, str], log: Path) -> ForkedChild:
    """``colonynode ARGV`` in a child of the server, its output appended to ``log``."""
    return _fork(argv, env, log, log)


def fork_cli(
    argv: Sequence[str], env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``colonynode ARGV`` run to its end in a child of the server, as ``subprocess.run``
    with captured output would run it (for the harness's own commands, such as a join:
    the consoles of the CLI are made at import, in the server, 80 columns wide)."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out", Path(tmp) / "err"
        code = _fork(argv, env, out, err).wait(timeout)
        return subprocess.CompletedProcess(
            ["colonynode", *argv],
            code,
            out.read_text(errors="replace") if out.exists() else "",
            err.read_text(errors="replace") if err.exists() else "",
        )


def _fork(argv: Sequence[str], env: Mapping[str, str], stdout: Path, stderr: Path) -> ForkedChild:
    server = _the_server()
    request = {"op": "fork", "argv": list(argv), "env": dict(env)}
    answer = server.ask(request | {"stdout": str(stdout), "stderr": str(stderr)})
    return ForkedChild(server, int(answer["pid"]))
