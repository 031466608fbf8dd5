"""``colonynode fs``: the meta-filesystem through the daemon's signed local API.

Long operations (put, get, sync, pin, snapshot, label) run as jobs in the daemon; the
CLI follows them with a rich progress bar (bytes added, fetched or written) and prints
the result, or the error in one line with a non-zero exit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.cli_node import HomeOption, client, console, fail, friendly
from colonyp2p.node.home import DEFAULT_HOME, Home

POLL = 0.2
JsonOption = Annotated[bool, typer.Option("--json", help="print JSON")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]


def register(app: typer.Typer) -> None:
    fs = typer.Typer(help="The meta-filesystem: labels, snapshots, blocks.", no_args_is_help=True)
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
            result = api.fs("ls", ref=ref)
        if as_json:
            console.print_json(json.dumps(result))
            return
        table = Table(box=None)
        if "labels" in result:
            for col in ("label", "version", "snapshot", "writer", "conflicts"):
                table.add_column(col)
            for lb in result["labels"]:
                table.add_row(
                    lb["path"],
                    str(lb["version"]),
                    lb["snapshot"],
                    lb["writer"][-8:],
                    str(lb["conflicts"] or ""),
                )
        else:
            for col in ("name", "kind", "size", "cid"):
                table.add_column(col)
            for e in result["entries"]:
                table.add_row(escape(e["name"]), e["kind"], str(e["size"]), e["cid"])
        console.print(table)

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
            console.print_json(json.dumps(result))
            return
        table = Table(box=None)
        for col in ("version", "snapshot", "writer", "id", ""):
            table.add_column(col)
        for v in result["versions"]:
            mark = (
                "head"
                if v["id"] == result["head"]
                else "conflict"
                if v["id"] in result["conflicts"]
                else ""
            )
            table.add_row(str(v["version"]), v["snapshot"], v["writer"][-8:], v["id"][:12], mark)
        console.print(table)

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
        _show(
            result,
            as_json,
            lambda r: f"unpinned {r['unpinned']}" if "unpinned" in r else f"pinned {r['pinned']}",
        )

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
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
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
        console.print_json(json.dumps(result))
    else:
        console.print(escape(str(line(result))), soft_wrap=True)


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
