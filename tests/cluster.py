"""Real colonynode daemons for tests: each node is a home directory and a daemon process
started with the real CLI, on 127.0.0.1. Every wait has a deadline; teardown kills
whatever is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import Home, alive

T = TypeVar("T")
CLI_TIMEOUT = 60.0
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


# Run inside a node's network namespace (see Node.prefix): API calls made in one process
# there, since the node's local API listens on that namespace's own 127.0.0.1.
_REMOTE_CALLS = """
import json, sys
from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import Home
home = Home(sys.argv[1])
runtime = home.runtime()
if runtime is None:
    sys.exit(f"the node in {home.root} is not running")
out = []
with ApiClient(str(runtime["api"]), home.identity(), timeout=float(sys.argv[3])) as api:
    for method, args in json.loads(sys.argv[2]):
        try:
            out.append({"ok": getattr(api, method)(*args)})
        except Exception as exc:
            out.append({"error": f"{type(exc).__name__}: {exc}"})
print(json.dumps(out))
"""


class Node:
    def __init__(self, root: Path, name: str, prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.home = Home(root / name)
        # e.g. ["ip", "netns", "exec", NS]: every command for this node runs so, and its
        # API is then reached through such commands rather than from this process
        self.prefix = list(prefix)

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLONYP2P_HOME": str(self.home.root), "COLUMNS": "200"}
        done = subprocess.run(
            [*self.prefix, sys.executable, "-m", "colonyp2p.node.cli", *args],
            env=env,
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
        done = subprocess.run(
            [
                *self.prefix,
                sys.executable,
                "-c",
                _REMOTE_CALLS,
                str(self.home.root),
                json.dumps([[method, list(args)] for method, args in calls]),
                str(timeout),
            ],
            capture_output=True,
            text=True,
            timeout=total if total is not None else CLI_TIMEOUT + timeout * len(calls),
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise AssertionError(f"API calls on {self.name} failed:\n{done.stdout}{done.stderr}")
        answers: list[dict[str, Any]] = json.loads(done.stdout)
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
        """The owner: init, colony create, configure, start."""
        owner = self.node("owner", prefix)
        owner.cli("init")
        owner.cli("colony", "create", "testcolony")
        owner.configure(executortype, params=params, listen=listen, mfs=mfs)
        owner.cli("start")
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
        """A new device joins with a ticket from ``via`` and starts (unless not ``start``)."""
        ticket = via.cli("invite", "--role", role).stdout.strip().replace("\n", "")
        colony_id = via.status()["colony_id"]
        node = self.node(name, prefix)
        node.cli("init")
        node.configure(executortype, params=params, listen=listen, kind=kind, mfs=mfs)
        node.cli("join", colony_id, "--ticket", ticket, "--name", name)
        if start:
            node.cli("start")
        return node

    def shutdown(self) -> None:
        for node in self.nodes:
            runtime = node.home.runtime()
            if runtime is not None:
                with suppress(ProcessLookupError):
                    os.kill(int(runtime["pid"]), signal.SIGKILL)


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
