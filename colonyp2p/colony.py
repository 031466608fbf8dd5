"""The Python API: submit specs and workflows to a colony, follow their processes, and
serve Python functions from a node embedded in your program.

Talk to the node running on this device (``colonynode start``)::

    from colonyp2p import Colony

    async with Colony.connect() as colony:           # the node running in ~/.colonyp2p
        process = await colony.submit("add", 40, 2)  # any executor; executortype="..."
        print(await process.wait(timeout=30))        # [42.0]  picks executors of a type

    with SyncColony.connect() as colony:             # the same without trio
        print(colony.submit("add", 1, 2).wait())

Or run the node inside your program and serve your own functions from it::

    colony = Colony.embedded("./node", colony="lab")    # founds a colony on first use

    @colony.function(executortype="edge")
    def resize(path: str, width: int = 640) -> str:
        ...

    async with colony:                                  # the node runs while inside
        print(await (await colony.submit("resize", "a.png")).wait())

``SyncColony.embedded(...)`` does the same from code that does not use trio (the node then
runs in a background thread). A ``Colony`` talks to its node through the node's local
API, with requests signed by the node's key (or another member's ``identity``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from colonyp2p.errors import ColonyError, ValidationError, root_cause
from colonyp2p.identity import Identity
from colonyp2p.model.colonyos_json import function_spec_to_colonyos, workflow_to_colonyos
from colonyp2p.model.spec import Conditions, FunctionSpec
from colonyp2p.model.workflow import WorkflowSpec

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from colonyp2p.node.api_client import ApiClient
    from colonyp2p.node.daemon import Daemon
    from colonyp2p.node.home import Home

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
FINAL = ("successful", "failed")
POLL = 0.1


class ProcessFailed(ColonyError):
    """A process ended failed; ``errors`` holds what its executor or keepers said."""

    code = "process_failed"

    def __init__(self, pid: str, errors: list[str]) -> None:
        self.pid = pid
        self.errors = errors
        super().__init__(f"process {pid[:16]} failed: {errors[0] if errors else 'no reason'}")


class WaitTimeout(ColonyError):
    code = "timeout"


def spec_json(
    spec: FunctionSpec | dict[str, Any] | str,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    **conditions: Any,
) -> dict[str, Any]:
    """ColonyOS function-spec JSON for a FunctionSpec, a JSON dict, or a funcname with
    arguments and conditions (``executortype="edge"``, ``cpu=2000``, ``mem=...``)."""
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, FunctionSpec):
        return function_spec_to_colonyos(spec)
    fs = FunctionSpec(
        funcname=spec, args=args, kwargs=dict(kwargs or {}), conditions=Conditions(**conditions)
    )
    return function_spec_to_colonyos(fs)


@dataclass
class Process:
    """A submitted process. ``state``, ``result`` and ``waiting_reason`` are as last seen
    (``refresh`` looks again); ``wait`` follows it to its end."""

    colony: Colony
    pid: str
    state: str = "waiting"
    output: list[Any] | None = None
    errors: list[str] | None = None
    waiting_reason: str = ""  # why nothing runs it yet (no executor matches ...), if known
    executor: str = ""  # the member id of the executor whose result counted

    async def refresh(self) -> str:
        """Ask the node where the process stands; its state (waiting, running, successful,
        failed)."""
        view = await self.colony._call(lambda api: api.process(self.pid))
        self.state = view["state"]
        self.waiting_reason = str(view.get("waiting_reason", ""))
        if self.state in FINAL:
            self.output, self.errors = view["output"], view["errors"]
            self.executor = str(view.get("executor", ""))
        return self.state

    @property
    def result(self) -> list[Any] | None:
        """The output once successful (None before)."""
        return self.output if self.state == "successful" else None

    async def wait(self, timeout: float | None = None) -> list[Any]:
        """The output once the process ended; raises ProcessFailed (with the executor's or
        the keepers' reasons) or WaitTimeout (saying why it still waits, when known)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while await self.refresh() not in FINAL:
            if deadline is not None and time.monotonic() > deadline:
                why = f": {self.waiting_reason}" if self.waiting_reason else ""
                raise WaitTimeout(
                    f"process {self.pid[:16]} is {self.state} after {timeout:g} s{why}"
                )
            await trio.sleep(POLL)
        if self.state == "failed":
            raise ProcessFailed(self.pid, self.errors or [])
        return self.output or []

    async def cancel(self) -> str:
        """Fail the process, waiting or running (a running one's executor stops it); its
        state then: "failed", or the state it had already ended in (a result that was in
        before the cancel wins)."""
        if await self.refresh() in FINAL:
            return self.state
        view = await self.colony._call(lambda api: api.cancel(self.pid))
        self.state = view["state"]
        return self.state

    async def logs(self) -> AsyncIterator[str]:
        """The lines the process prints, as they reach this node, until it ends."""
        seen = 0
        while True:
            view = await self.colony._call(lambda api: api.process(self.pid))
            lines = view.get("logs", [])
            for line in lines[seen:]:
                yield str(line)
            seen = max(seen, len(lines))
            if view["state"] in FINAL:
                self.state = view["state"]
                return
            await trio.sleep(POLL)


class Colony:
    """A connection to a node: ``async with Colony.connect() as colony`` for the node
    running on this device, ``async with Colony.embedded(home) as colony`` for one run
    inside this program (see EmbeddedColony)."""

    def __init__(
        self, api_url: str | None, identity: Identity | None, node: str | None = None
    ) -> None:
        self._client: ApiClient | None = None
        if api_url is not None and identity is not None:
            from colonyp2p.node.api_client import ApiClient

            # node: the member id of the node at api_url, which every signature names
            self._client = ApiClient(api_url, identity, node=node)
        self._lock = trio.Lock()

    @classmethod
    def connect(cls, home: str | Path | None = None, identity: Identity | None = None) -> Colony:
        """The node running from ``home`` (default ``~/.colonyp2p`` or COLONYP2P_HOME),
        with requests signed by ``identity`` (default: the node's own key; another
        member's key only where the node's config.json lists it in ``api.allow``)."""
        from colonyp2p.errors import DaemonNotRunning
        from colonyp2p.node.home import Home

        h = Home(home)
        runtime = h.runtime()
        if runtime is None:
            raise DaemonNotRunning(f"no node is running from {h.root}: run `colonynode start`")
        node = runtime.get("member_id")
        return cls(str(runtime["api"]), identity or h.identity(), str(node) if node else None)

    @staticmethod
    def embedded(home: str | Path | None = None, **options: Any) -> EmbeddedColony:
        """A node that runs inside this program, serving the functions registered with
        ``@colony.function``; see EmbeddedColony for the options."""
        return EmbeddedColony(home, **options)

    async def __aenter__(self) -> Colony:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    async def _call(self, fn: Callable[[ApiClient], T]) -> T:
        client = self._client
        if client is None:
            raise ColonyError(
                "the embedded node is not running: enter `async with colony:` (or `with colony:`"
                " for a SyncColony) first"
            )
        async with self._lock:  # one httpx client, used from one thread at a time
            return await trio.to_thread.run_sync(fn, client)

    async def submit(
        self,
        spec: FunctionSpec | dict[str, Any] | str,
        *args: Any,
        kwargs: dict[str, Any] | None = None,
        **conditions: Any,
    ) -> Process:
        """Submit a spec: a FunctionSpec, ColonyOS function-spec JSON, or a funcname with
        its arguments and conditions (``executortype="edge"``, ``cpu=2000``, ...).
        Returns once the process's keepers stored it."""
        body = spec_json(spec, args, kwargs, **conditions)
        answer = await self._call(lambda api: api.submit(body))
        return Process(self, answer["pid"])

    async def submit_many(self, specs: Sequence[FunctionSpec | dict[str, Any]]) -> list[Process]:
        """Submit independent specs at once (up to 1,000), all or none: one request and
        one wait for the keepers for all of them. Their processes, in order."""
        bodies = [spec_json(s) for s in specs]
        answer = await self._call(lambda api: api.submit_many(bodies))
        return [Process(self, pid) for pid in answer["pids"]]

    async def submit_workflow(self, workflow: WorkflowSpec | dict[str, Any]) -> dict[str, Process]:
        """Submit a workflow (a WorkflowSpec or ColonyOS workflow JSON); its processes by
        nodename. A child runs once all its parents succeeded, with their outputs as
        ``inputs``; a failed parent fails its descendants."""
        body = workflow if isinstance(workflow, dict) else workflow_to_colonyos(workflow)
        answer = await self._call(lambda api: api.submit_workflow(body))
        return {name: Process(self, pid) for name, pid in answer["pids"].items()}

    async def processes(
        self, state: str | None = None, executortype: str | None = None
    ) -> list[dict[str, Any]]:
        """The processes this node knows (submitted here, or kept here), optionally only
        those in ``state`` or for ``executortype``."""
        views: list[dict[str, Any]] = await self._call(lambda api: api.processes(state))
        if executortype is None:
            return views
        return [v for v in views if v.get("executortype", "") == executortype]

    async def status(self) -> dict[str, Any]:
        """The node's status: member and colony ids, membership version, peers, ..."""
        return await self._call(lambda api: api.status())

    async def invite(self, role: str = "executor", valid_for: float = 86400.0) -> str:
        """A single-use ticket for one device to join as ``role`` (this node's member must
        be an owner or admin)."""
        answer = await self._call(lambda api: api.invite(role, valid_for))
        return str(answer["ticket"])


class EmbeddedColony(Colony):
    """A colonyp2p node run inside this program: the same daemon as ``colonynode start``
    (libp2p, SQLite state, the local API), in the caller's trio nursery, with a python
    executor that serves the functions registered with ``@colony.function``.

    ``home`` is the node's directory (key, config, state; created when missing). A home
    in no colony yet founds one (``colony="NAME"``) or joins one with a ticket from
    ``colonynode invite`` (``ticket=...``; ``colony_id`` guards against a ticket for
    another colony). Options:

    - ``executortype``: the type specs ask for (``conditions.executortype``); default
      the one given to ``@colony.function``, else the home's config (``local``);
    - ``name``, ``location``, ``capacity`` (processes at once): the executor's ad;
    - ``builtin_functions``: also serve colonyp2p.executors.builtin (add, echo, ...), default True;
    - ``executor``: False for a node that runs nothing (a pure client or gateway);
    - ``listen``: multiaddrs (default the config's, ``/ip4/127.0.0.1/tcp/0``);
    - ``params``: protocol timing overrides (colonyp2p/core/params.py).

    ``home`` (the ``Home`` attribute) may be replaced until the node starts. The settings
    are written to the home's config.json, so ``colonynode start`` later runs
    the same node (serving the functions listed in ``executor.functions`` only).

    Run it with ``async with colony:`` or ``await nursery.start(colony.serve)``.
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        colony: str | None = None,
        ticket: str | None = None,
        colony_id: str | None = None,
        executortype: str | None = None,
        name: str = "",
        location: str = "",
        capacity: int | None = None,
        builtin_functions: bool = True,
        executor: bool = True,
        listen: list[str] | None = None,
        params: dict[str, float] | None = None,
    ) -> None:
        from colonyp2p.executors.python import Registry, builtin
        from colonyp2p.node.home import Home, check_multiaddrs

        if listen is not None:  # one line naming the address now, not a traceback later
            listen = check_multiaddrs(listen, "listen")
        super().__init__(None, None)
        self.home: Home = Home(home)
        self.registry = builtin() if builtin_functions else Registry()
        self.executortype = executortype
        self.daemon: Daemon | None = None
        self._found, self._ticket, self._colony_id = colony, ticket, colony_id
        self._name, self._location, self._capacity = name, location, capacity
        self._builtin, self._executor = builtin_functions, executor
        self._listen, self._params = listen, params
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None

    @property
    def member_id(self) -> str:
        """This node's member id (its key's; the key is created when the home has none)."""
        if not self.home.exists():
            self.home.init()
        return self.home.identity().member_id

    def function(
        self, *, name: str | None = None, executortype: str | None = None
    ) -> Callable[[F], F]:
        """A decorator: serve the function from this node under its own name (or ``name``)::

            @colony.function(executortype="edge")
            def mean(*values: float) -> float:
                return sum(values) / len(values)

        A process with ``funcname="mean"`` (and ``executortype="edge"``) may then run here:
        the function with the spec's args and kwargs, in a worker thread, with
        ``inputs=[...]`` added for a workflow child (its parents' outputs, in dependency
        order). What it returns is the output (it must be JSON- or CBOR-encodable); an
        exception fails the process with the exception and its traceback; wrong arguments
        fail it before the call. ``executortype`` is this node's type (a node has one).
        Register functions before the node starts: its ad lists them. The function is
        returned unchanged, so it can still be called directly."""

        def register(f: F) -> F:
            if self.daemon is not None:
                raise ValidationError(
                    f"cannot add {f.__name__!r}: the node already runs and announced its "
                    "functions; register them before it starts"
                )
            if executortype is not None:
                if self.executortype not in (None, executortype):
                    raise ValidationError(
                        f"{f.__name__!r} is for executortype {executortype!r} but this node "
                        f"is {self.executortype!r}: a node serves one type (embed another)"
                    )
                self.executortype = executortype
            self.registry.register(name or f.__name__, f)
            return f

        return register

    async def serve(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the node until cancelled: ``await nursery.start(colony.serve)`` returns once it
        listens and its API answers (it founds or joins its colony first if asked to)."""
        from colonyp2p.node.api_client import ApiClient
        from colonyp2p.node.daemon import Daemon

        if self.daemon is not None:
            raise ColonyError(f"the node in {self.home.root} already runs here")
        if not os.environ.get("LIBP2P_DEBUG"):
            # py-libp2p warns about every peer that goes away (as `colonynode start` mutes)
            logging.getLogger("libp2p").setLevel(logging.CRITICAL)
        await self._prepare()
        daemon = Daemon(self.home, registry=self.registry, listen=self._listen)
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            self.daemon = daemon
            self._client = ApiClient(f"http://127.0.0.1:{daemon.api_port}", daemon.identity)
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._client.close()
                self._client = None
                self.daemon = None

    async def _prepare(self) -> None:
        """Make the home ready: a key, a colony (founded or joined), the executor config."""
        from colonyp2p.node import colony
        from colonyp2p.node.home import ExecutorConfig, HomeError

        h = self.home
        if h.runtime() is not None:
            raise HomeError(f"a node already runs from {h.root} (`colonynode stop` it first)")
        if not h.exists():
            h.init()
        if await trio.to_thread.run_sync(colony.current_membership, h) is None:
            if self._ticket:
                from colonyp2p.node.admission import join_home
                from colonyp2p.node.join import Ticket

                colony_id = self._colony_id or Ticket.decode(self._ticket).colony_id
                await join_home(h, colony_id, self._ticket, self._name, [], 0.0)
            elif self._found:
                colony.create(h, self._found, now=time.time())
            else:
                raise HomeError(
                    f"{h.root} is in no colony: pass colony='NAME' to found one or "
                    "ticket='...' (from `colonynode invite`) to join one"
                )
        config = h.config()
        if not self._executor:
            config.executor = None
        else:
            ex = config.executor or ExecutorConfig()
            ex.kind = "python"
            ex.type = self.executortype or ex.type
            ex.name = self._name or ex.name
            ex.location = self._location or ex.location
            ex.capacity = self._capacity or ex.capacity
            ex.builtin = self._builtin
            config.executor = ex
        if self._params is not None:
            config.params = dict(self._params)
        h.save_config(config)

    async def __aenter__(self) -> EmbeddedColony:
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        try:
            await nursery.start(self.serve)
        except BaseException:
            nursery.cancel_scope.cancel()
            await stack.aclose()
            raise
        self._stack, self._nursery = stack, nursery
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, nursery = self._stack, self._nursery
        self._stack = self._nursery = None
        if stack is None or nursery is None:
            return
        nursery.cancel_scope.cancel()
        # The body's own exception goes on as it is (not wrapped in the nursery's group);
        # a node that crashed raises here instead.
        await stack.aclose()


class SyncColony:
    """``Colony`` for code that does not run trio: every call blocks until done.

    ``SyncColony.connect()`` talks to the node running on this device;
    ``SyncColony.embedded(home, ...)`` runs one in a background thread while inside
    ``with colony:`` (same options and ``@colony.function`` as EmbeddedColony)."""

    def __init__(self, colony: Colony) -> None:
        self._colony = colony
        self._thread: _NodeThread | None = None

    @classmethod
    def connect(
        cls, home: str | Path | None = None, identity: Identity | None = None
    ) -> SyncColony:
        return cls(Colony.connect(home, identity))

    @classmethod
    def embedded(cls, home: str | Path | None = None, **options: Any) -> SyncColony:
        return cls(EmbeddedColony(home, **options))

    @property
    def node(self) -> EmbeddedColony:
        """The embedded node (its ``home``, ``registry``, ``daemon`` once running)."""
        if not isinstance(self._colony, EmbeddedColony):
            raise ColonyError("this SyncColony is connected to a node, not embedding one")
        return self._colony

    def function(
        self, *, name: str | None = None, executortype: str | None = None
    ) -> Callable[[F], F]:
        """A decorator: serve the function from the embedded node (see
        EmbeddedColony.function)."""
        return self.node.function(name=name, executortype=executortype)

    def __enter__(self) -> SyncColony:
        if isinstance(self._colony, EmbeddedColony):
            self._thread = _NodeThread(self._colony)
            self._thread.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._thread is not None:
            thread, self._thread = self._thread, None
            thread.stop()
        else:
            self._colony.close()

    def submit(
        self, spec: FunctionSpec | dict[str, Any] | str, *args: Any, **kw: Any
    ) -> SyncProcess:
        process = trio.run(lambda: self._colony.submit(spec, *args, **kw))
        return SyncProcess(process)

    def submit_many(self, specs: Sequence[FunctionSpec | dict[str, Any]]) -> list[SyncProcess]:
        return [SyncProcess(p) for p in trio.run(self._colony.submit_many, specs)]

    def submit_workflow(self, workflow: WorkflowSpec | dict[str, Any]) -> dict[str, SyncProcess]:
        procs = trio.run(self._colony.submit_workflow, workflow)
        return {name: SyncProcess(p) for name, p in procs.items()}

    def processes(
        self, state: str | None = None, executortype: str | None = None
    ) -> list[dict[str, Any]]:
        return trio.run(self._colony.processes, state, executortype)

    def status(self) -> dict[str, Any]:
        return trio.run(self._colony.status)

    def invite(self, role: str = "executor", valid_for: float = 86400.0) -> str:
        return trio.run(self._colony.invite, role, valid_for)


class SyncProcess:
    """Process for code that does not run trio."""

    def __init__(self, process: Process) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def state(self) -> str:
        return trio.run(self._process.refresh)

    @property
    def waiting_reason(self) -> str:
        trio.run(self._process.refresh)
        return self._process.waiting_reason

    @property
    def result(self) -> list[Any] | None:
        return self._process.result

    @property
    def output(self) -> list[Any] | None:
        return self._process.output

    @property
    def errors(self) -> list[str] | None:
        return self._process.errors

    @property
    def executor(self) -> str:
        return self._process.executor

    def wait(self, timeout: float | None = None) -> list[Any]:
        return trio.run(self._process.wait, timeout)

    def cancel(self) -> str:
        return trio.run(self._process.cancel)

    def logs(self) -> Iterator[str]:
        """The process's log lines, once it ended."""
        lines: list[str] = []

        async def collect() -> None:
            async for line in self._process.logs():
                lines.append(line)

        trio.run(collect)
        return iter(lines)


class _NodeThread:
    """An embedded node's own trio run, in a daemon thread."""

    STOP_TIMEOUT = 30.0

    def __init__(self, colony: EmbeddedColony) -> None:
        self.colony = colony
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._main, name="colonyp2p-node", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        if self._token is not None and self._scope is not None:
            with suppress(trio.RunFinishedError):  # it stopped on its own
                trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(self.STOP_TIMEOUT)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        async def run() -> None:
            async with trio.open_nursery() as nursery:
                self._token = trio.lowlevel.current_trio_token()
                self._scope = nursery.cancel_scope
                await nursery.start(self.colony.serve)
                self._started.set()

        try:
            trio.run(run)
        except BaseException as exc:
            self._error = root_cause(exc)
        finally:
            self._started.set()
