"""``colonynode`` commands for a device's life in a colony: init, colony create, invite,
join, members, start, stop, status; and the process commands (submit, get, wait, ps,
logs, cancel, executors, workflow submit). Every mistake a user can make ends in one
readable line and a non-zero exit.

Tables show ids shortened (a pid's first 16 characters, a member id's first 20), and
every command that takes an id accepts any unique prefix of one, as git and docker do.

Imports of anything heavier than typer and rich happen inside the commands: ``--help``
and the commands that need no daemon stay fast (bench/bench_cli.py measures them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from colonyp2p.errors import ColonyError, root_cause
from colonyp2p.node.cli_typer import typer_app
from colonyp2p.node.home import DEFAULT_HOME, Home

if TYPE_CHECKING:
    from rich.table import Table

    from colonyp2p.node.api_client import ApiClient

console = Console()
err = Console(stderr=True)
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
SWITCH_INTERVAL = 0.0005  # seconds (CPython default 0.005): see _run_foreground
FINAL = ("successful", "failed")
_PID = re.compile(r"[0-9a-f]{64}")
PID_SHORT = 16  # a pid is 64 hex digits; tables show its first 16
MEMBER_SHORT = 20  # every member id starts "12D3KooW": 12 telling characters more

HomeOption = Annotated[
    Path,
    typer.Option(
        "--home",
        envvar="COLONYP2P_HOME",
        help="the node's directory (key, config, state)",
        show_default=True,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]


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
        from colonyp2p.node.api_client import ApiClient  # httpx: only with a node to ask

        node = runtime.get("member_id")
        with ApiClient(
            str(runtime["api"]), home.identity(), node=str(node) if node else None
        ) as api:
            yield api


def table(*columns: str, title: str | None = None, **options: Any) -> Table:
    """A rich table whose cells wrap rather than end in "…": a cut id would look like
    one that commands then refuse."""
    from rich.table import Table

    t = Table(title=title, **options)
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


def resolve(
    given: str, candidates: Iterable[str], what: str, where: str, *, whole: bool = False
) -> str:
    """The id that ``given`` names among ``candidates``: itself, or the one candidate it
    is a prefix of; else one line saying so (``where``: the command that lists them). A
    ``whole`` id is taken as it is, for the node to answer about (it may know more than
    it lists)."""
    pool = set(candidates)
    if whole or given in pool:
        return given
    matches = sorted(c for c in pool if c.startswith(given))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise fail(f"no {what} id starts with {given!r} (`{where}` lists them)")
    shown = ", ".join(m[: len(given) + 6] + "..." for m in matches[:4])
    more = f" and {len(matches) - 4} more" if len(matches) > 4 else ""
    raise fail(
        f"{given!r} is ambiguous, the start of {len(matches)} {what} ids "
        f"({shown}{more}): give more characters"
    )


def process_id(api: ApiClient, given: str) -> str:
    """A pid, or a unique prefix of one among the processes this node lists (`ps`)."""
    if _PID.fullmatch(given):
        return given
    return resolve(given, (p["pid"] for p in api.processes()), "process", "colonynode ps")


def register(app: typer.Typer) -> None:
    colony_app = typer_app("Create a colony.", no_args_is_help=True)
    members_app = typer_app("List, approve and revoke members.")
    app.add_typer(colony_app, name="colony")
    app.add_typer(members_app, name="members")

    @app.command()
    def init(home: HomeOption = DEFAULT_HOME) -> None:
        """Create this device's key (0600) and configuration."""
        with friendly():
            identity = Home(home).init()
        console.print(f"member id: [bold]{identity.member_id}[/]\nhome: {home}", soft_wrap=True)

    @colony_app.command("create")
    def colony_create(name: str, home: HomeOption = DEFAULT_HOME) -> None:
        """Found a colony owned by this device's key; prints the colony id."""
        from colonyp2p.node import colony

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
            list[str] | None,
            typer.Option(help="a member's multiaddr (repeatable; needed without a ticket)"),
        ] = None,
        name: Annotated[str, typer.Option(help="a name for people")] = "",
        wait: Annotated[float, typer.Option(help="seconds to wait for an approval")] = 0.0,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Join a colony: with a ticket at once; without one (give --bootstrap), once an
        admin runs `colonynode members approve`."""
        import trio

        from colonyp2p.node.admission import join_home  # libp2p: only when joining
        from colonyp2p.node.home import check_multiaddrs

        with friendly():
            addrs = check_multiaddrs(list(bootstrap or []), "--bootstrap")
            chain = trio.run(join_home, Home(home), colony_id, ticket, name, addrs, wait)
        console.print(
            f"joined colony {colony_id} (membership v{chain[-1].version})", soft_wrap=True
        )

    def show_members(home: Path, as_json: bool) -> None:
        with client(Home(home)) as api, friendly():
            data = api.members()
        if as_json:
            print(json.dumps(data, indent=2))
            return
        t = table(
            "member id",
            "role",
            "name",
            "executor",
            title=f"{escape(data['name'])} v{data['version']}",
        )
        for m in data["members"]:
            ex = m["executor"]
            t.add_row(
                m["member_id"][:MEMBER_SHORT],
                m["role"],
                escape(m["name"]),
                "" if ex is None else escape(f"{ex['type']} ({', '.join(ex['functions'][:4])})"),
            )
        for member_id, info in data["pending"].items():
            t.add_row(
                member_id[:MEMBER_SHORT],
                "[yellow]pending[/]",
                escape(str(info.get("name", ""))),
                "",
            )
        console.print(t)

    @members_app.callback(invoke_without_command=True)
    def members(
        ctx: typer.Context, as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME
    ) -> None:
        """The colony's members (and devices waiting for approval); ids shortened, --json
        for the whole ids."""
        if ctx.invoked_subcommand is None:
            show_members(home, as_json)

    @members_app.command("list")
    def members_list(as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME) -> None:
        """The colony's members (and devices waiting for approval)."""
        show_members(home, as_json)

    @members_app.command("approve")
    def approve(
        member_id: Annotated[str, typer.Argument(help="a pending device's id, or a prefix")],
        role: Annotated[str, typer.Option(help="admin, executor or user")] = "executor",
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Admit a device that asked to join without a ticket."""
        with client(Home(home)) as api, friendly():
            member_id = _member(api.members()["pending"], member_id, "pending member")
            answer = api.approve(member_id, role)
        console.print(f"admitted {member_id} (membership v{answer['version']})", soft_wrap=True)

    @members_app.command("revoke")
    def revoke(
        member_id: Annotated[str, typer.Argument(help="a member id, or a prefix")],
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Remove a member: it is cut off from the colony at once."""
        with client(Home(home)) as api, friendly():
            ids = [m["member_id"] for m in api.members()["members"]]
            member_id = _member(ids, member_id, "member")
            answer = api.revoke(member_id)
        console.print(f"revoked {member_id} (membership v{answer['version']})", soft_wrap=True)

    @app.command()
    def start(
        foreground: Annotated[bool, typer.Option(help="run in this terminal")] = False,
        listen: Annotated[
            list[str] | None,
            typer.Option(help="multiaddr to listen on (repeatable; kept in config.json)"),
        ] = None,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Start the node's daemon (in the background unless --foreground)."""
        from colonyp2p.node import colony
        from colonyp2p.node.home import check_multiaddrs
        from colonyp2p.node.ports import check_ports

        h = Home(home)
        # everything is checked before anything is written or started: a mistake changes
        # nothing
        with friendly():
            given = check_multiaddrs(list(listen), "--listen") if listen else None
            if h.runtime() is not None:
                raise fail(f"the node in {h.root} is already running")
            config = h.config()
            if colony.current_membership(h) is None:
                raise fail("this node is in no colony: `colonynode colony create` or `join`")
            addrs = given or config.listen
            check_ports(addrs)
            if listen:
                config.listen = addrs
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
    def status(as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME) -> None:
        """The running node: colony, role, peers, executor, what it refused."""
        with client(Home(home)) as api, friendly():
            data = api.status()
        if as_json:
            print(json.dumps(data, indent=2))
            return
        t = table("key", "value", show_header=False, title="colonynode")
        for key, value in data.items():
            t.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
        console.print(t)

    @app.command()
    def submit(
        spec_file: Annotated[
            Path | None, typer.Argument(help="a ColonyOS function spec (JSON)")
        ] = None,
        func: Annotated[str, typer.Option(help="the function to run")] = "",
        arg: Annotated[list[str] | None, typer.Option(help="an argument (JSON or text)")] = None,
        executortype: Annotated[
            str, typer.Option(help="where it may run (default: any executor)")
        ] = "",
        wait: Annotated[
            bool, typer.Option(help="wait for the result; exits 1 if the process failed")
        ] = False,
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
            if not wait:
                return
            process = _wait(api, pid, None)
        _print_process(process)
        if process["state"] != "successful":
            raise typer.Exit(1)  # as `wait` does

    @app.command()
    def get(
        pid: Annotated[str, typer.Argument(help="a process id, or a unique prefix")],
        as_json: JsonOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """A process: its state, output and errors, or why it still waits."""
        with client(Home(home)) as api, friendly():
            process = api.process(process_id(api, pid))
        if as_json:
            print(json.dumps(process, indent=2))
        else:
            _print_process(process)

    @app.command("wait")
    def wait_cmd(
        pid: Annotated[str, typer.Argument(help="a process id, or a unique prefix")],
        timeout: Annotated[float | None, typer.Option(help="seconds")] = None,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Wait until a process ends; exits 1 if it failed."""
        with client(Home(home)) as api, friendly():
            process = _wait(api, process_id(api, pid), timeout)
        _print_process(process)
        if process["state"] != "successful":
            raise typer.Exit(1)

    @app.command()
    def ps(
        state: Annotated[str | None, typer.Option(help="waiting, running, ...")] = None,
        as_json: JsonOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Processes this node submitted or keeps (pids shortened; any unique prefix of
        a pid is taken by get, wait, logs and cancel)."""
        with client(Home(home)) as api, friendly():
            rows = api.processes(state)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        t = table("pid", "func", "state", "output / why")
        for p in rows:
            detail = p.get("waiting_reason") or json.dumps(p["output"] or p["errors"])
            t.add_row(p["pid"][:PID_SHORT], escape(p["funcname"]), p["state"], escape(detail[:80]))
        console.print(t)

    @app.command()
    def logs(
        pid: Annotated[str, typer.Argument(help="a process id, or a unique prefix")],
        follow: Annotated[bool, typer.Option("-f", "--follow", help="until it ends")] = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """What a process printed (its executor sends it to the submitting node)."""
        from colonyp2p.node.logs import printable

        shown = 0
        with client(Home(home)) as api, friendly():
            pid = process_id(api, pid)
            while True:
                process = api.process(pid)
                for line in process.get("logs", [])[shown:]:
                    # another member's bytes: no escape sequence reaches the terminal
                    print(printable(str(line)), flush=True)
                    shown += 1
                if not follow or process["state"] in FINAL:
                    return
                time.sleep(0.3)

    @app.command()
    def cancel(
        pid: Annotated[str, typer.Argument(help="a process id, or a unique prefix")],
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Fail a process, waiting or running (a running one's executor stops it). A
        result that was already in wins: then this says how the process ended, exit 1."""
        with client(Home(home)) as api, friendly():
            pid = process_id(api, pid)
            before = api.process(pid)["state"]
            asked = before not in FINAL
            state = api.cancel(pid)["state"] if asked else before
        if asked and state == "failed":
            what = "stopped" if before == "running" else "cancelled"
            console.print(f"{what} {pid[:PID_SHORT]} (failed)")
            return
        if state in FINAL:
            raise fail(f"process {pid[:PID_SHORT]} already ended ({state})")
        raise fail(
            f"the cancel of {pid[:PID_SHORT]} was not decided in time: "
            "`colonynode get` shows whether it took"
        )

    @app.command()
    def executors(as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME) -> None:
        """The colony's executors, from their ads."""
        from colonyp2p.model.units import format_bytes

        with client(Home(home)) as api, friendly():
            members = api.members()["members"]
        rows = [dict(m["executor"], member_id=m["member_id"]) for m in members if m["executor"]]
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        t = table("name", "type", "functions", "cores", "memory", "gpus", "capacity")
        for ex in rows:
            t.add_row(
                escape(ex["name"]),
                escape(ex["type"]),
                escape(", ".join(ex["functions"]) or "any"),
                str(ex["cores"]),
                format_bytes(ex["memory"]),
                str(ex["gpus"]),
                str(ex["capacity"]),
            )
        console.print(t)

    workflow_app = typer_app("Workflows (ColonyOS workflow JSON).", no_args_is_help=True)
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
        t = table("node", "pid")
        for name, pid in answer["pids"].items():
            t.add_row(escape(name), pid)
        console.print(t)


def _member(ids: Iterable[str], given: str, what: str) -> str:
    """A member id, or a unique prefix of one of ``ids``."""
    from colonyp2p.identity import is_member_id

    return resolve(given, ids, what, "colonynode members", whole=is_member_id(given))


def _wait(api: ApiClient, pid: str, timeout: float | None) -> dict[str, Any]:
    deadline = None if timeout is None else time.monotonic() + timeout
    with err.status(f"waiting for {pid[:PID_SHORT]}"):
        while True:
            process = api.process(pid)
            if process["state"] in FINAL:
                return process
            if deadline is not None and time.monotonic() > deadline:
                why = process.get("waiting_reason") or ""
                raise fail(
                    f"{pid[:PID_SHORT]} is still {process['state']} after {timeout:g} s"
                    + (f": {why}" if why else "")
                )
            time.sleep(0.2)


def _print_process(p: dict[str, Any]) -> None:
    t = table("key", "value", show_header=False, title=f"process {p['pid'][:PID_SHORT]}")
    for key in ("pid", "funcname", "state", "waiting_reason", "executor", "output", "errors"):
        value = p.get(key)
        if key == "waiting_reason" and not value:
            continue  # only while it waits, and only when the node knows why
        t.add_row(key, escape(value if isinstance(value, str) else json.dumps(value)))
    console.print(t)


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
    import logging

    import trio

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
    with err.status("starting"):
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
