"""``colonynode`` commands for a device's life in a colony: init, colony create, invite,
join, members, start, stop, status; and the first process commands (submit, get, wait,
ps). Every mistake a user can make ends in one readable line and a non-zero exit."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import trio
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from colonyp2p.errors import ColonyError, root_cause
from colonyp2p.model.units import format_bytes
from colonyp2p.node import colony
from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import DEFAULT_HOME, Home

console = Console()
err = Console(stderr=True)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
SWITCH_INTERVAL = 0.0005  # seconds (CPython default 0.005): see _run_foreground

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="COLONYP2P_HOME",
        help="the node's directory (key, config, state)",
        show_default=True,
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def friendly() -> Iterator[None]:
    """Turn the colony's own errors into one line for people."""
    try:
        yield
    except ColonyError as exc:
        raise fail(str(exc)) from None
    except BaseExceptionGroup as group:
        cause = root_cause(group)
        if isinstance(cause, ColonyError):
            raise fail(str(cause)) from None
        raise


@contextmanager
def client(home: Home) -> Iterator[ApiClient]:
    with friendly():
        runtime = home.runtime()
        if runtime is None:
            raise fail(f"the node in {home.root} is not running: start it with `colonynode start`")
        with ApiClient(str(runtime["api"]), home.identity()) as api:
            yield api


def register(app: typer.Typer) -> None:
    colony_app = typer.Typer(help="Create a colony.", no_args_is_help=True)
    members_app = typer.Typer(help="List, approve and revoke members.")
    app.add_typer(colony_app, name="colony")
    app.add_typer(members_app, name="members")

    @app.command()
    def init(home: HomeOption = DEFAULT_HOME) -> None:
        """Create this device's key (0600) and configuration."""
        with friendly():
            identity = Home(home).init()
        console.print(f"member id: [bold]{identity.member_id}[/]\nhome: {home}")

    @colony_app.command("create")
    def colony_create(name: str, home: HomeOption = DEFAULT_HOME) -> None:
        """Found a colony owned by this device's key; prints the colony id."""
        with friendly():
            colony_id = colony.create(Home(home), name, now=time.time())
        console.print(colony_id)

    @app.command()
    def invite(
        role: Annotated[str, typer.Option(help="admin, executor or user")] = "executor",
        expires: Annotated[str, typer.Option(help="validity: 30m, 12h, 7d ...")] = "1d",
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """A single-use ticket for one device to join (the node must be running)."""
        seconds = _duration(expires)
        with client(Home(home)) as api, friendly():
            answer = api.invite(role, seconds)
        console.print(answer["ticket"], soft_wrap=True)

    @app.command("join")
    def join_cmd(
        colony_id: str,
        ticket: Annotated[str, typer.Option(help="a ticket from `colonynode invite`")] = "",
        bootstrap: Annotated[
            list[str] | None, typer.Option(help="a member's multiaddr (repeatable)")
        ] = None,
        name: Annotated[str, typer.Option(help="a name for people")] = "",
        wait: Annotated[float, typer.Option(help="seconds to wait for an approval")] = 0.0,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Join a colony: with a ticket at once, without one once an admin approves."""
        from colonyp2p.node.admission import join_home  # libp2p: only when joining

        with friendly():
            chain = trio.run(join_home, Home(home), colony_id, ticket, name, bootstrap or [], wait)
        console.print(f"joined colony {colony_id} (membership v{chain[-1].version})")

    @members_app.callback(invoke_without_command=True)
    def members(ctx: typer.Context, home: HomeOption = DEFAULT_HOME) -> None:
        """The colony's members (and devices waiting for approval)."""
        if ctx.invoked_subcommand is not None:
            return
        with client(Home(home)) as api, friendly():
            data = api.members()
        table = Table(title=f"{data['name']} v{data['version']}")
        for col in ("member id", "role", "name", "executor"):
            table.add_column(col)
        for m in data["members"]:
            ex = m["executor"]
            table.add_row(
                m["member_id"],
                m["role"],
                m["name"],
                "" if ex is None else f"{ex['type']} ({', '.join(ex['functions'][:4])})",
            )
        for member_id, info in data["pending"].items():
            table.add_row(member_id, "[yellow]pending[/]", str(info.get("name", "")), "")
        console.print(table)

    @members_app.command("approve")
    def approve(
        member_id: str,
        role: Annotated[str, typer.Option(help="admin, executor or user")] = "executor",
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Admit a device that asked to join without a ticket."""
        with client(Home(home)) as api, friendly():
            answer = api.approve(member_id, role)
        console.print(f"admitted {member_id} (membership v{answer['version']})")

    @members_app.command("revoke")
    def revoke(member_id: str, home: HomeOption = DEFAULT_HOME) -> None:
        """Remove a member: it is cut off from the colony at once."""
        with client(Home(home)) as api, friendly():
            answer = api.revoke(member_id)
        console.print(f"revoked {member_id} (membership v{answer['version']})")

    @app.command()
    def start(
        foreground: Annotated[bool, typer.Option(help="run in this terminal")] = False,
        listen: Annotated[
            list[str] | None, typer.Option(help="multiaddr to listen on (repeatable)")
        ] = None,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Start the node's daemon (in the background unless --foreground)."""
        h = Home(home)
        with friendly():
            if h.runtime() is not None:
                raise fail(f"the node in {h.root} is already running")
            config = h.config()
            if colony.current_membership(h) is None:
                raise fail("this node is in no colony: `colonynode colony create` or `join`")
            if listen:
                config.listen = list(listen)
                h.save_config(config)
        if foreground:
            _run_foreground(h)
            return
        _start_background(h)

    @app.command()
    def stop(home: HomeOption = DEFAULT_HOME) -> None:
        """Stop the node's daemon."""
        h = Home(home)
        runtime = h.runtime()
        if runtime is None:
            raise fail(f"the node in {h.root} is not running")
        pid = int(runtime["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while h.runtime() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if h.runtime() is not None:
            raise fail(f"the daemon (pid {pid}) did not stop within {STOP_TIMEOUT:g} s")
        console.print("stopped")

    @app.command()
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """The running node: colony, role, peers, executor, what it refused."""
        with client(Home(home)) as api, friendly():
            data = api.status()
        if as_json:
            console.print_json(json.dumps(data))
            return
        table = Table(show_header=False, title="colonynode")
        for key, value in data.items():
            table.add_row(key, escape(json.dumps(value) if not isinstance(value, str) else value))
        console.print(table)

    @app.command()
    def submit(
        spec_file: Annotated[
            Path | None, typer.Argument(help="a ColonyOS function spec (JSON)")
        ] = None,
        func: Annotated[str, typer.Option(help="the function to run")] = "",
        arg: Annotated[list[str] | None, typer.Option(help="an argument (JSON or text)")] = None,
        executortype: Annotated[str, typer.Option(help="where it may run")] = "",
        wait: Annotated[bool, typer.Option(help="wait for the result")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Submit a function spec; prints the process id."""
        if spec_file is not None:
            try:
                spec: dict[str, Any] = json.loads(spec_file.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise fail(f"{spec_file}: {exc}") from None
        elif func:
            spec = {"funcname": func, "args": [_arg(a) for a in arg or []]}
            if executortype:
                spec["conditions"] = {"executortype": executortype}
        else:
            raise fail("give a spec file or --func NAME")
        with client(Home(home)) as api, friendly():
            pid = api.submit(spec)["pid"]
            console.print(pid)
            if wait:
                _print_process(_wait(api, pid, None))

    @app.command()
    def get(pid: str, home: HomeOption = DEFAULT_HOME) -> None:
        """A process: its state, output and errors."""
        with client(Home(home)) as api, friendly():
            _print_process(api.process(pid))

    @app.command("wait")
    def wait_cmd(
        pid: str,
        timeout: Annotated[float | None, typer.Option(help="seconds")] = None,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Wait until a process ends; exits 1 if it failed."""
        with client(Home(home)) as api, friendly():
            process = _wait(api, pid, timeout)
        _print_process(process)
        if process["state"] != "successful":
            raise typer.Exit(1)

    @app.command()
    def ps(
        state: Annotated[str | None, typer.Option(help="waiting, running, ...")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Processes this node submitted or keeps."""
        with client(Home(home)) as api, friendly():
            rows = api.processes(state)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table("pid", "func", "state", "output / why")
        for p in rows:
            detail = p.get("waiting_reason") or json.dumps(p["output"] or p["errors"])
            table.add_row(p["pid"][:16], p["funcname"], p["state"], escape(detail[:80]))
        console.print(table)

    @app.command()
    def logs(
        pid: str,
        follow: Annotated[bool, typer.Option("-f", "--follow", help="until it ends")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """What a process printed (its executor sends it to the submitting node)."""
        shown = 0
        with client(Home(home)) as api, friendly():
            while True:
                process = api.process(pid)
                for line in process.get("logs", [])[shown:]:
                    print(line, flush=True)
                    shown += 1
                if not follow or process["state"] in ("successful", "failed"):
                    return
                time.sleep(0.3)

    @app.command()
    def cancel(pid: str, home: HomeOption = DEFAULT_HOME) -> None:
        """Fail a process that has not started yet."""
        with client(Home(home)) as api, friendly():
            process = api.cancel(pid)
        console.print(f"{pid[:16]} is {process['state']}")

    @app.command()
    def executors(
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """The colony's executors, from their ads."""
        with client(Home(home)) as api, friendly():
            members = api.members()["members"]
        rows = [dict(m["executor"], member_id=m["member_id"]) for m in members if m["executor"]]
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        table = Table("name", "type", "functions", "cores", "memory", "gpus", "capacity")
        for ex in rows:
            table.add_row(
                ex["name"],
                ex["type"],
                ", ".join(ex["functions"]) or "any",
                str(ex["cores"]),
                format_bytes(ex["memory"]),
                str(ex["gpus"]),
                str(ex["capacity"]),
            )
        console.print(table)

    workflow_app = typer.Typer(help="Workflows (ColonyOS workflow JSON).", no_args_is_help=True)
    app.add_typer(workflow_app, name="workflow")

    @workflow_app.command("submit")
    def workflow_submit(
        dag: Annotated[Path, typer.Argument(help="a ColonyOS workflow (JSON)")],
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Submit a workflow; prints each node's process id."""
        try:
            data = json.loads(dag.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise fail(f"{dag}: {exc}") from None
        with client(Home(home)) as api, friendly():
            answer = api.submit_workflow(data)
        table = Table("node", "pid")
        for name, pid in answer["pids"].items():
            table.add_row(name, pid)
        console.print(table)


def _wait(api: ApiClient, pid: str, timeout: float | None) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    with console.status(f"waiting for {pid[:16]}"):
        while True:
            process = api.process(pid)
            if process["state"] in ("successful", "failed"):
                return process
            if deadline is not None and time.monotonic() > deadline:
                raise fail(f"{pid} is still {process['state']} after {timeout:g} s")
            time.sleep(0.2)


def _print_process(p: dict[str, Any]) -> None:
    table = Table(show_header=False, title=f"process {p['pid'][:16]}")
    for key in ("pid", "funcname", "state", "executor", "output", "errors"):
        value = p.get(key)
        table.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
    console.print(table)


def _arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise fail(f"{text!r} is not a duration (write 30m, 12h or 7d)") from None


def _run_foreground(home: Home) -> None:
    from colonyp2p.node.daemon import Daemon

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    logging.getLogger("libp2p.kad_dht").setLevel(logging.CRITICAL)

    async def main() -> None:
        daemon = Daemon(home)
        async with trio.open_nursery() as nursery:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                await nursery.start(daemon.run)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    # The daemon's trio thread hands SQLite commits and Python functions to worker
    # threads; with CPython's default 5 ms switch interval each such hand-back can wait
    # 5 ms for the GIL while the trio thread is busy, on every protocol hop.
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        trio.run(main)
    except (ColonyError, OSError, BaseExceptionGroup) as exc:
        cause = root_cause(exc)
        if isinstance(cause, ColonyError):
            raise fail(str(cause)) from None
        if isinstance(cause, OSError):
            raise fail(f"cannot start: {cause.strerror or cause}") from None
        raise


def _start_background(home: Home) -> None:
    home.root.mkdir(parents=True, exist_ok=True)
    log = open(home.log_path, "ab")  # noqa: SIM115 - handed to the child
    offset = log.tell()
    cmd = [sys.executable, "-m", "colonyp2p.node.cli", "start", "--foreground"]
    child = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLONYP2P_HOME": str(home.root)},
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    with console.status("starting"):
        while time.monotonic() < deadline:
            runtime = home.runtime()
            if runtime is not None and runtime.get("pid") == child.pid:
                console.print(f"started (pid {child.pid}), API {runtime['api']}")
                for addr in runtime["addrs"]:
                    console.print(f"  listening on {addr}", soft_wrap=True)
                return
            if child.poll() is not None:
                with open(home.log_path, "rb") as f:
                    f.seek(offset)
                    said = f.read().decode(errors="replace").strip().splitlines()
                errors = [
                    line.removeprefix("error: ") for line in said if line.startswith("error:")
                ]
                raise fail(
                    errors[-1] if errors else "the daemon stopped at once:\n" + "\n".join(said[-3:])
                )
            time.sleep(0.1)
    raise fail(f"the daemon did not come up within {START_TIMEOUT:g} s (see {home.log_path})")
