"""``colonynode fs``: the meta-filesystem through the daemon's signed local API.

Long operations (put, get, sync, pin, snapshot, label) run as jobs in the daemon; the
CLI follows them with a rich progress bar (bytes added, fetched or written) and prints
the result, or the error in one line with a non-zero exit. The bar goes to stderr, and
only on a terminal: what stdout gets (a line, or JSON with --json) is the result alone.

Tables show CIDs shortened to their first 20 characters; every command that takes a
snapshot CID takes any unique prefix of one of the colony's label versions.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from colonyp2p.node.cli_node import (
    HomeOption,
    JsonOption,
    client,
    console,
    err,
    fail,
    friendly,
    resolve,
)
from colonyp2p.node.cli_typer import typer_app
from colonyp2p.node.home import DEFAULT_HOME, Home

if TYPE_CHECKING:
    from rich.table import Table

    from colonyp2p.node.api_client import ApiClient

POLL = 0.2
CID_SHORT = 20  # "bafyrei" is the same in every snapshot CID: 13 telling characters more
_CID = re.compile(r"b[a-z2-7]{58}")  # mfs/cid.py's form (base32 CIDv1)
_CID_PREFIX = re.compile(r"b[a-z2-7]{0,57}")
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def register(app: typer.Typer) -> None:
    fs = typer_app("The meta-filesystem: labels, snapshots, blocks.", no_args_is_help=True)
    app.add_typer(fs, name="fs")

    @fs.command("put")
    def put(
        src: Annotated[Path, typer.Argument(help="a file or directory")],
        label: Annotated[str, typer.Argument(help="the colony path, e.g. /sat/images")],
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Add a file or directory and move LABEL to it (a new version)."""
        result = _job(home, "put", quiet, src=str(src.resolve()), label=label)
        _show(result, as_json, lambda r: f"{r['path']} v{r['version']} -> {r['snapshot']}")

    @fs.command("get")
    def get(
        ref: Annotated[str, typer.Argument(help="a label (or label/inner/path) or snapshot CID")],
        dest: Annotated[Path, typer.Argument(help="the directory to write into")],
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Fetch what REF names from the members that have it and write it into DEST."""
        result = _job(home, "get", quiet, ref=ref, dest=str(dest.resolve()))
        _show(result, as_json, _fetched)

    @fs.command("ls")
    def ls(
        ref: Annotated[str, typer.Argument(help="a label, label/inner/path or CID")] = "",
        as_json: JsonOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """The colony's labels, or the entries under REF."""
        with client(Home(home)) as api, friendly():
            result = api.fs("ls", ref=_cid(api, ref) if ref else ref)
        if as_json:
            _print_json(result)
            return
        if "labels" in result:
            t = _table("label", "version", "snapshot", "writer", "conflicts")
            for lb in result["labels"]:
                t.add_row(
                    escape(lb["path"]),
                    str(lb["version"]),
                    lb["snapshot"][:CID_SHORT],
                    lb["writer"][-8:],
                    str(lb["conflicts"] or ""),
                )
        else:
            t = _table("name", "kind", "size", "cid")
            for e in result["entries"]:
                t.add_row(escape(e["name"]), e["kind"], str(e["size"]), e["cid"][:CID_SHORT])
        console.print(t)

    @fs.command("rm")
    def rm(
        ref: Annotated[str, typer.Argument(help="label/inner/path (or a label: empty it)")],
        as_json: JsonOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Write a new version of the label without REF's entry (history keeps the old)."""
        with client(Home(home)) as api, friendly():
            result = api.fs("rm", ref=ref)
        _show(result, as_json, lambda r: f"{r['path']} v{r['version']} -> {r['snapshot']}")

    @fs.command("label")
    def label_cmd(
        path: Annotated[str, typer.Argument(help="a label")],
        snapshot: Annotated[str, typer.Argument(help="move it to this snapshot CID")] = "",
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """A label's versions and conflicts; with SNAPSHOT, move the label there."""
        if snapshot:
            result = _job(home, "label", quiet, path=path, snapshot=snapshot)
            _show(result, as_json, lambda r: f"{r['path']} v{r['version']} -> {r['snapshot']}")
            return
        with client(Home(home)) as api, friendly():
            result = api.fs("history", label=path)
        if as_json:
            _print_json(result)
            return
        t = _table("version", "snapshot", "writer", "id", "")
        for v in result["versions"]:
            mark = (
                "head"
                if v["id"] == result["head"]
                else "conflict"
                if v["id"] in result["conflicts"]
                else ""
            )
            t.add_row(
                str(v["version"]), v["snapshot"][:CID_SHORT], v["writer"][-8:], v["id"][:12], mark
            )
        console.print(t)

    @fs.command("snapshot")
    def snapshot_cmd(
        ref: Annotated[str, typer.Argument(help="a label (or label/inner/path)")],
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Keep REF's current content as an immutable, pinned snapshot; prints its CID."""
        result = _job(home, "snapshot", quiet, ref=ref)
        _show(result, as_json, lambda r: r["snapshot"])

    @fs.command("sync")
    def sync(
        label: Annotated[str, typer.Argument(help="a label")],
        directory: Annotated[Path, typer.Argument(help="a local directory")],
        keeplocal: Annotated[
            bool, typer.Option(help="on a conflict keep the local file (else the label's)")
        ] = False,
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Download LABEL into DIRECTORY, then upload local changes as a new version."""
        directory.mkdir(parents=True, exist_ok=True)
        result = _job(
            home, "sync", quiet, label=label, dir=str(directory.resolve()), keeplocal=keeplocal
        )

        def line(r: dict[str, Any]) -> str:
            lb = r["label"]
            if lb is None:
                return "nothing to sync"
            return f"{lb['path']} v{lb['version']}" + (" (uploaded)" if r["uploaded"] else "")

        _show(result, as_json, line)

    @fs.command("pin")
    def pin(
        ref: Annotated[str, typer.Argument(help="a label or snapshot CID")],
        unpin: Annotated[bool, typer.Option(help="drop the pin instead")] = False,
        as_json: JsonOption = False,
        quiet: QuietOption = False,
        home: HomeOption = DEFAULT_HOME,
    ) -> None:
        """Keep REF's blocks on this node (fetched now) through gc, and provide them."""
        result = _job(home, "pin", quiet, ref=ref, unpin=unpin)

        def line(r: dict[str, Any]) -> str:
            if "pinned" in r:
                return f"pinned {r['pinned']}"
            n = r["unpinned"]  # pins dropped: a snapshot has one, a label one per version
            if not n:
                return f"{ref} was not pinned on this node"
            pins = "1 pin" if n == 1 else f"{n} pins (one per pinned version)"
            return f"unpinned {ref}: dropped {pins}; `colonynode fs gc` frees its blocks"

        _show(result, as_json, line)

    @fs.command("gc")
    def gc(as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME) -> None:
        """Delete the blocks no pin or label of this node keeps."""
        with client(Home(home)) as api, friendly():
            result = api.fs("gc")
        _show(
            result,
            as_json,
            lambda r: (
                f"freed {r['freed_blocks']} blocks ({_size(r['freed_bytes'])}), "
                f"kept {r['kept_blocks']} ({_size(r['kept_bytes'])})"
            ),
        )

    @fs.command("du")
    def du(as_json: JsonOption = False, home: HomeOption = DEFAULT_HOME) -> None:
        """What the block store holds, its quota, and what it served."""
        with client(Home(home)) as api, friendly():
            result = api.fs("du")
        quota = "no quota" if result["quota"] is None else f"quota {_size(result['quota'])}"
        _show(
            result,
            as_json,
            lambda r: (
                f"{r['blocks']} blocks, {_size(r['bytes'])} ({quota}); "
                f"{r['pins']} pins, {r['labels']} label versions; "
                f"served {_size(r['served_bytes'])}"
            ),
        )


def _job(home: Path, op: str, quiet: bool, **args: Any) -> dict[str, Any]:
    """Start ``op`` and follow its job to the end with a progress bar; its result."""
    with client(Home(home)) as api, friendly():
        for key in ("ref", "snapshot"):  # a snapshot CID's prefix, made whole
            if key in args:
                args[key] = _cid(api, args[key])
        started = api.fs(op, **args)
        if "job" not in started:
            return started
        job = _follow(api, str(started["job"]), op, quiet)
    if job["state"] != "done":
        error = job.get("error") or {}
        raise fail(str(error.get("message", f"fs {op} failed")))
    result: dict[str, Any] = job["result"]
    return result


def _follow(api: ApiClient, job_id: str, op: str, quiet: bool) -> dict[str, Any]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    # stderr, and a terminal only: off a terminal rich would leave a blank line on stdout
    show = not quiet and err.is_terminal
    with Progress(*columns, console=err, transient=True, disable=not show) as bar:
        task = bar.add_task(op, total=None)
        while True:
            job = api.fs_job(job_id)
            total = job["total"] or None
            bar.update(
                task,
                description=f"{op} {job['phase']}".strip(),
                completed=job["done"],
                total=total,
            )
            if job["state"] != "running":
                return job
            time.sleep(POLL)


def _show(result: dict[str, Any], as_json: bool, line: Any) -> None:
    if as_json:
        _print_json(result)
    else:
        console.print(escape(str(line(result))), soft_wrap=True)


def _print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))  # plain: for programs (rich would colour and wrap)


def _table(*columns: str) -> Table:
    from rich.table import Table

    t = Table(box=None)
    for name in columns:
        t.add_column(name, overflow="fold")
    return t


def _cid(api: ApiClient, ref: str) -> str:
    """``ref``, or the snapshot CID it is a unique prefix of (among the versions of the
    colony's labels, as `fs ls` and `fs label` show them). Labels start with '/'."""
    if ref.startswith("/") or _CID.fullmatch(ref) or not _CID_PREFIX.fullmatch(ref):
        return ref
    snapshots = set()
    for lb in api.fs("ls")["labels"]:
        snapshots.add(lb["snapshot"])
        history = api.fs("history", label=lb["path"])
        snapshots.update(v["snapshot"] for v in history["versions"])
    return resolve(ref, snapshots, "snapshot", "colonynode fs label PATH")


def _fetched(r: dict[str, Any]) -> str:
    f = r["fetch"]
    return (
        f"{r['snapshot']} -> {r['dest']}: fetched {f['fetched_blocks']} blocks "
        f"({_size(f['fetched_bytes'])}) from {len(f['by_provider'])} members, "
        f"{f['had_blocks']} already here, {f['bad_blocks']} bad blocks refused"
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
