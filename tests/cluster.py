"""Real colonynode daemons for tests: each node is a home directory and a daemon process
started as the real CLI starts it (``start --foreground``), on 127.0.0.1; devices join
with the real ``colonynode join``, while keys, colonies and tickets are made in this
process as the CLI's commands make them. Every wait has a deadline; teardown kills
whatever is left."""

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from forker import ForkedChild, fork_cli, fork_daemon

from colonyp2p.node import colony
from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import Home, alive

T = TypeVar("T")
CLI_TIMEOUT = 60.0
START_TIMEOUT = 60.0
# Short leases so that a killed executor's process moves on within seconds.
FAST = {"lease_seconds": 3.0, "renew_every": 1.0, "reannounce_after": 2.0, "query_after": 4.0}


def wait_for(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy, or fail saying ``what``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the node may be restarting: try again
            last = exc
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last})")


# Run inside a node's network namespace (see Node.prefix), since the node's local API
# listens on that namespace's own 127.0.0.1: one process per node, started at the first
# call, answers each line of calls (JSON) with one line of answers, so that a poll costs
# a request, not a new Python process.
_REMOTE_CALLS = """
import json, sys
from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import Home
home = Home(sys.argv[1])
for line in sys.stdin:
    calls, timeout = json.loads(line)
    out = []
    runtime = home.runtime()
    if runtime is None:
        out = [{"error": f"the node in {home.root} is not running"}] * len(calls)
    else:
        with ApiClient(str(runtime["api"]), home.identity(), timeout=timeout) as api:
            for method, args in calls:
                try:
                    out.append({"ok": getattr(api, method)(*args)})
                except Exception as exc:
                    out.append({"error": f"{type(exc).__name__}: {exc}"})
    print(json.dumps(out), flush=True)
"""


class _Remote:
    """The process that makes a namespaced node's API calls (see _REMOTE_CALLS)."""

    def __init__(self, prefix: Sequence[str], root: Path) -> None:
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-c", _REMOTE_CALLS, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def call(self, calls: list[list[Any]], timeout: float, total: float) -> list[dict[str, Any]]:
        """The answers, or an AssertionError once ``total`` seconds passed or the process
        ended (it is then of no further use)."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps([calls, timeout]).encode() + b"\n")
        stdin.flush()
        deadline = time.monotonic() + total
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([stdout], [], [], left)[0]:
                raise AssertionError(f"no answer within {total:g} s")
            chunk = os.read(stdout.fileno(), 1 << 20)
            if not chunk:
                raise AssertionError(f"the API caller exited {self.process.wait()}")
            line += chunk
        answers: list[dict[str, Any]] = json.loads(line)
        return answers

    def close(self) -> None:
        with suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()


class Node:
    def __init__(self, root: Path, name: str, prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.home = Home(root / name)
        # e.g. ["ip", "netns", "exec", NS]: every command for this node runs so, and its
        # API is then reached through such commands rather than from this process
        self.prefix = list(prefix)
        self.children: list[subprocess.Popen[bytes] | ForkedChild] = []  # started by start()
        self._remote: _Remote | None = None  # makes API calls inside the namespace
        self._remote_lock = threading.Lock()

    def env(self) -> dict[str, str]:
        return {**os.environ, "COLONYP2P_HOME": str(self.home.root), "COLUMNS": "200"}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.prefix, sys.executable, "-m", "colonyp2p.node.cli", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"colonynode {' '.join(args)} on {self.name} exited {done.returncode}:\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def start(self) -> None:
        """``colonynode start`` without the CLI process in between: the daemon as
        ``start`` runs it (``start --foreground``, its output in the node's log, a session
        of its own), waited for until it published its runtime. (``ip netns exec`` execs
        the command: the daemon's pid is the child's.)"""
        assert self.home.runtime() is None, f"{self.name} is already running"
        child: subprocess.Popen[bytes] | ForkedChild
        if self.prefix or os.environ.get("COLONYP2P_TEST_NO_FORKER"):
            command = [sys.executable, "-m", "colonyp2p.node.cli", "start", "--foreground"]
            with open(self.home.log_path, "ab") as log:
                child = subprocess.Popen(
                    [*self.prefix, *command],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    env=self.env(),
                    start_new_session=True,
                )
        else:  # forked from a process that imported the daemon once (tests/forker.py)
            argv = ["start", "--foreground", "--home", str(self.home.root)]
            child = fork_daemon(argv, self.env(), self.home.log_path)
        self.children.append(child)

        def up() -> bool:
            if child.poll() is not None:
                tail = self.home.log_path.read_text(errors="replace").splitlines()[-5:]
                raise AssertionError(
                    f"{self.name}'s daemon exited {child.returncode} at start:\n" + "\n".join(tail)
                )
            runtime = self.home.runtime()
            return runtime is not None and runtime.get("pid") == child.pid

        deadline = time.monotonic() + START_TIMEOUT
        while not up():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}'s daemon did not come up in {START_TIMEOUT} s")
            time.sleep(0.05)

    @property
    def member_id(self) -> str:
        return self.home.identity().member_id

    def configure(
        self,
        executortype: str | None = None,
        params: dict[str, float] | None = None,
        listen: Sequence[str] = (),
        kind: str = "python",
        mfs: dict[str, Any] | None = None,
    ) -> None:
        config = self.home.config()
        if mfs is not None:
            config.mfs = dict(mfs)
        # the tests' files live in the temporary directory, not in the user's home (the
        # default of what the local API's fs operations may touch)
        config.mfs.setdefault("paths", [tempfile.gettempdir()])
        if executortype is not None and config.executor is not None:
            config.executor.type = executortype
            config.executor.kind = kind
        config.params = dict(FAST if params is None else params)
        if listen:
            config.listen = list(listen)
        self.home.save_config(config)

    def runtime(self) -> dict[str, Any]:
        runtime = self.home.runtime()
        assert runtime is not None, f"{self.name} is not running"
        return runtime

    @property
    def pid(self) -> int:
        return int(self.runtime()["pid"])

    @property
    def addrs(self) -> list[str]:
        return list(self.runtime()["addrs"])

    def api(self) -> ApiClient:
        return ApiClient(str(self.runtime()["api"]), self.home.identity(), timeout=20.0)

    def call(self, fn: Callable[[ApiClient], T]) -> T:
        with self.api() as api:
            return fn(api)

    def requests(
        self,
        calls: Sequence[tuple[str, Sequence[Any]]],
        timeout: float = 20.0,
        total: float | None = None,
    ) -> list[Any]:
        """The answers to ApiClient calls (method name, arguments), made in one client
        (in one process inside the namespace when the node has a prefix); raises on the
        first call that failed. ``timeout`` bounds each call, ``total`` (for a node with a
        prefix) all of them."""
        if not self.prefix:
            with ApiClient(
                str(self.runtime()["api"]), self.home.identity(), timeout=timeout
            ) as api:
                return [getattr(api, method)(*args) for method, args in calls]
        with self._remote_lock:
            if self._remote is None:
                self._remote = _Remote(self.prefix, self.home.root)
            try:
                answers = self._remote.call(
                    [[method, list(args)] for method, args in calls],
                    timeout,
                    total if total is not None else CLI_TIMEOUT + timeout * len(calls),
                )
            except AssertionError as exc:
                self._remote.close()
                self._remote = None
                raise AssertionError(f"API calls on {self.name} failed: {exc}") from None
        for (method, args), answer in zip(calls, answers, strict=True):
            if "error" in answer:
                raise AssertionError(f"{method}{tuple(args)} on {self.name}: {answer['error']}")
        return [answer["ok"] for answer in answers]

    def request(self, method: str, *args: Any) -> Any:
        """One ApiClient call by name (see requests)."""
        return self.requests([(method, args)])[0]

    def status(self) -> dict[str, Any]:
        if self.prefix:
            answer: dict[str, Any] = self.request("status")
            return answer
        return self.call(ApiClient.status)

    def has_version(self, version: int) -> bool:
        """Whether the node runs with membership ``version`` (for wait_for)."""
        return bool(self.status()["membership_version"] == version)

    def members(self) -> dict[str, Any]:
        if self.prefix:
            answer: dict[str, Any] = self.request("members")
            return answer
        return self.call(ApiClient.members)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        if self.prefix:
            answer: dict[str, Any] = self.request("submit", spec)
            return answer
        with self.api() as api:
            return api.submit(spec)

    def process(self, pid: str) -> dict[str, Any]:
        if self.prefix:
            answer: dict[str, Any] = self.request("process", pid)
            return answer
        with self.api() as api:
            return api.process(pid)

    def processes(self) -> list[dict[str, Any]]:
        if self.prefix:
            answer: list[dict[str, Any]] = self.request("processes")
            return answer
        with self.api() as api:
            return api.processes()

    def finished(self, pid: str) -> dict[str, Any] | None:
        """The process once it ended, else None (for wait_for)."""
        process = self.process(pid)
        return process if process["state"] in ("successful", "failed") else None

    def kill9(self) -> None:
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not alive(pid), 10, f"{self.name} to die")


class Cluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []

    def node(self, name: str, prefix: Sequence[str] = ()) -> Node:
        node = Node(self.root, name, prefix)
        self.nodes.append(node)
        return node

    def found(
        self,
        executortype: str = "local",
        *,
        prefix: Sequence[str] = (),
        listen: Sequence[str] = (),
        mfs: dict[str, Any] | None = None,
        params: dict[str, float] | None = None,
    ) -> Node:
        """The owner: init, colony create, configure, start. (Set-up steps that need no
        daemon are made in this process, as the CLI's commands make them: a CLI process
        costs a second of CPU, more on a loaded machine; tests/test_cli_node.py and the
        docs' examples run the commands themselves.)"""
        owner = self.node("owner", prefix)
        owner.home.init()
        colony.create(owner.home, "testcolony", now=time.time())
        owner.configure(executortype, params=params, listen=listen, mfs=mfs)
        owner.start()
        return owner

    def join(
        self,
        name: str,
        via: Node,
        executortype: str = "local",
        role: str = "executor",
        *,
        prefix: Sequence[str] = (),
        listen: Sequence[str] = (),
        kind: str = "python",
        mfs: dict[str, Any] | None = None,
        start: bool = True,
        params: dict[str, float] | None = None,
    ) -> Node:
        """A new device joins with a ticket from ``via`` and starts (unless not ``start``);
        once it runs, every running node that was at ``via``'s version before runs with the
        new one (a node that started a moment before a change can miss its announcement
        and learn it only from the next, half a minute later)."""
        in_step = self._in_step(via)
        ticket = str(via.request("invite", role, 86400.0)["ticket"])
        colony_id = via.status()["colony_id"]
        node = self.node(name, prefix)
        _join(node, colony_id, ticket, executortype, listen, kind, mfs, params)
        if start:
            node.start()
            self._settle(via, [*in_step, node])
        return node

    def join_all(self, via: Node, names: Sequence[str], **each: Any) -> list[Node]:
        """Devices ``names`` join with tickets from ``via``, one after the other, as
        ``join`` makes them join with the keyword arguments ``each`` (or those of
        ``each["per"][name]``, a dict per device), then start all at once (a thread each:
        their daemons' start-ups overlap); returns once every running node runs with the
        membership that holds them all. (Joins at once are refused now and then: a join
        stream's negotiation fails at the admitting node.)"""
        per: dict[str, dict[str, Any]] = each.pop("per", {})
        in_step = self._in_step(via)
        colony_id = via.status()["colony_id"]
        nodes = []
        for name in names:
            kw = {**each, **per.get(name, {})}
            ticket = str(via.request("invite", kw.pop("role", "executor"), 86400.0)["ticket"])
            node = self.node(name, kw.pop("prefix", ()))
            _join(
                node,
                colony_id,
                ticket,
                kw.pop("executortype", "local"),
                kw.pop("listen", ()),
                kw.pop("kind", "python"),
                kw.pop("mfs", None),
                kw.pop("params", None),
            )
            assert not kw, f"join_all does not take {sorted(kw)}"
            nodes.append(node)
        failed: list[BaseException] = []

        def start(node: Node) -> None:
            try:
                node.start()
            except BaseException as exc:
                failed.append(exc)

        threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            raise failed[0]
        self._settle(via, [*in_step, *nodes])
        return nodes

    def _in_step(self, via: Node) -> list[Node]:
        """The running nodes (outside namespaces) at ``via``'s membership version."""
        version = _version(via)
        running = [
            n for n in self.nodes if not n.prefix and n.home.runtime() is not None and n is not via
        ]
        return [n for n in running if _version(n) == version]

    def _settle(self, via: Node, nodes: Sequence[Node]) -> None:
        """Wait until ``nodes`` (those outside namespaces) run with ``via``'s version."""
        version = via.status()["membership_version"]
        for n in nodes:
            if not n.prefix:
                wait_for(partial(n.has_version, version), 45, f"{n.name} at v{version}")

    def shutdown(self) -> None:
        for node in self.nodes:
            runtime = node.home.runtime()
            if runtime is not None:
                with suppress(ProcessLookupError):
                    os.kill(int(runtime["pid"]), signal.SIGKILL)
        for node in self.nodes:
            if node._remote is not None:
                node._remote.close()
            for child in node.children:  # reaped, not left as zombies
                with suppress(ProcessLookupError):
                    child.kill()
                child.wait()


def _join(
    node: Node,
    colony_id: str,
    ticket: str,
    executortype: str,
    listen: Sequence[str],
    kind: str,
    mfs: dict[str, Any] | None,
    params: dict[str, float] | None,
) -> None:
    """``node``'s device made and joined with ``ticket`` (not started)."""
    node.home.init()
    node.configure(executortype, params=params, listen=listen, kind=kind, mfs=mfs)
    # the CLI, in a process of its own: py-libp2p leaves the join's connection open
    # when the joining transport stops (the process's exit closes it)
    argv = ["join", colony_id, "--ticket", ticket, "--name", node.name]
    if node.prefix or os.environ.get("COLONYP2P_TEST_NO_FORKER"):
        node.cli(*argv)
        return
    done = fork_cli([*argv, "--home", str(node.home.root)], node.env(), CLI_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(
            f"colonynode join on {node.name} exited {done.returncode}:\n{done.stdout}\n"
            f"{done.stderr}"
        )


def _version(node: Node) -> int | None:
    try:
        return int(node.status()["membership_version"])
    except Exception:  # not up (yet, or any more)
        return None


@contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    c = Cluster(root)
    try:
        yield c
    finally:
        c.shutdown()


def events(node: Node) -> list[dict[str, Any]]:
    """The node's log lines that are events (JSON)."""
    out = []
    for line in node.home.log_path.read_text(errors="replace").splitlines():
        _, _, tail = line.partition(" INFO ")
        if tail.startswith("{"):
            out.append(json.loads(tail))
    return out
