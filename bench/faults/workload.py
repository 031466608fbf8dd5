"""The clients: threads that submit single specs and small workflows through the colony's
daemons for the whole run, each at its share of a steady rate, recording every submit,
acknowledgement and failed call in the history.

A client starts at a daemon of its own (client i at node i) and moves to the next one
after a failed call (its daemon killed, paused, skewed, partitioned away from its
keepers), as a user would. Processes are the python executor's built-ins: ``echo`` with
a unique argument (its output names the process) or ``sleep`` for 1 to 4 s; a workflow
is a chain with a shortcut, a -> b -> c and a -> c, so that a child has one and two
parents.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from cluster import Node, _Remote

from colonyp2p.node.api_client import ApiClient

from .history import History

MAX_RETRIES = 100  # expired leases a process survives: faults expire many
CALL_TIMEOUT = 30.0  # a submit waits up to 10 s for its acknowledgement in the daemon


class ApiLine:
    """One client's calls to one node's local API: in this process for a node on loopback,
    else through a process of its own inside the node's namespace (tests/cluster.py's
    ``_Remote``), made again when the node's command prefix changed (a clock skew) or
    the last call failed."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._remote: _Remote | None = None
        self._prefix: list[str] = []

    def call(self, method: str, *args: Any) -> Any:
        node = self.node
        if not node.prefix:
            runtime = node.home.runtime()
            if runtime is None:
                raise RuntimeError(f"{node.name} is not running")
            with ApiClient(str(runtime["api"]), node.home.identity(), timeout=CALL_TIMEOUT) as api:
                return getattr(api, method)(*args)
        if self._remote is None or self._prefix != node.prefix:
            self.close()
            self._prefix = list(node.prefix)
            self._remote = _Remote(self._prefix, node.home.root)
        try:
            (answer,) = self._remote.call([[method, list(args)]], CALL_TIMEOUT, CALL_TIMEOUT + 15)
        except AssertionError:
            self.close()
            raise
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["ok"]

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
            self._remote = None


class Client(threading.Thread):
    def __init__(
        self,
        index: int,
        nodes: list[Node],
        history: History,
        *,
        rate: float,
        workflow_share: float,
        sleep_share: float,
        seed: int,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"client{index}", daemon=True)
        self.index = index
        self.nodes = nodes
        self.history = history
        self.rate = rate  # processes a second, this client's share
        self.workflow_share = workflow_share
        self.sleep_share = sleep_share  # of single specs: ``sleep`` 1 to 4 s, not ``echo``
        self.rng = random.Random(seed * 1000 + index)
        self.stop = stop
        self.lines: dict[str, ApiLine] = {}
        self.at = index % len(nodes)
        self.count = 0
        self.errors = 0

    def run(self) -> None:
        due = time.monotonic()
        try:
            while not self.stop.is_set():
                node = self.nodes[self.at]
                line = self.lines.setdefault(node.name, ApiLine(node))
                self.count += 1
                tag = f"c{self.index}-{self.count}"
                if self.rng.random() < self.workflow_share:
                    n = self._workflow(line, node, tag)
                else:
                    n = self._single(line, node, tag)
                due += n / self.rate
                self.stop.wait(max(0.0, due - time.monotonic()))
                due = max(due, time.monotonic() - 5.0)  # no burst to catch up after a stall
        finally:
            for line in self.lines.values():
                line.close()

    def _single(self, line: ApiLine, node: Node, tag: str) -> int:
        spec: dict[str, Any] = {"funcname": "echo", "args": [tag], "maxretries": MAX_RETRIES}
        if self.rng.random() < self.sleep_share:
            # a run that lasts: a kill, a pause or a cut then finds it running, so that
            # leases expire under it, it runs again and a late result must be fenced
            spec = {**spec, "funcname": "sleep", "args": [round(self.rng.uniform(1.0, 4.0), 2)]}
        return self._submit(line, node, "single", "submit", spec)

    def _workflow(self, line: ApiLine, node: Node, tag: str) -> int:
        wf = [
            {"nodename": "a", "funcname": "echo", "args": [f"{tag}a"], "maxretries": MAX_RETRIES},
            {
                "nodename": "b",
                "funcname": "echo",
                "args": [f"{tag}b"],
                "maxretries": MAX_RETRIES,
                "conditions": {"dependencies": ["a"]},
            },
            {
                "nodename": "c",
                "funcname": "echo",
                "args": [f"{tag}c"],
                "maxretries": MAX_RETRIES,
                "conditions": {"dependencies": ["a", "b"]},
            },
        ]
        return self._submit(line, node, "workflow", "submit_workflow", {"functionspecs": wf})

    def _submit(self, line: ApiLine, node: Node, kind: str, method: str, body: Any) -> int:
        who: dict[str, Any] = {"client": self.name, "node": node.name}
        sent = time.time()
        try:
            answer = line.call(method, body)
        except Exception as exc:  # down, paused, cut off: the next call goes elsewhere
            self.errors += 1
            self.history.add("submit_error", t=sent, kind=kind, error=str(exc)[:300], **who)
            self.at = (self.at + 1) % len(self.nodes)
            return 1
        if kind == "single":
            pids, parents = [str(answer["pid"])], {}
        else:
            by_name = {str(k): str(v) for k, v in answer["pids"].items()}
            pids = [by_name[n] for n in ("a", "b", "c")]
            parents = {by_name["b"]: [by_name["a"]], by_name["c"]: [by_name["a"], by_name["b"]]}
        # the submission itself is timed when it was sent; its pids are known only now
        self.history.add(
            "submit",
            sent,
            kind=kind,
            pids=pids,
            parents=parents,
            workflow=answer.get("workflow_id", ""),
            **who,
        )
        acknowledged = bool(answer["acknowledged"])
        self.history.add("ack", t=None, pids=pids, acknowledged=acknowledged, **who)
        if not acknowledged:  # its keepers out of reach from there: try another daemon
            self.at = (self.at + 1) % len(self.nodes)
        return len(pids)
