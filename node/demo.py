"""``colonynode demo``: a local colony of real daemons doing real work.

Three member daemons (separate processes, libp2p over loopback) form a colony the way
users do it (colony create, invite, join with the ticket, start); then a workflow fans
out prime counts and word counts over the members, gathers them in a child that
receives its parents' outputs, and a few single processes run beside it. Everything
is left in ``out/demo/`` (homes, daemon logs) and the daemons are stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.home import Config, Home

TEXT = (
    "a colony of equal peers runs function specifications on executors across the "
    "compute continuum with no central server to run or trust"
)
LIMITS = [200_000, 400_000, 600_000, 800_000, 1_000_000, 1_200_000]
DEADLINE = 120.0


def run(root: Path, console: Console) -> bool:
    if root.exists():
        shutil.rmtree(root)
    names = ("owner", "edge-1", "edge-2")
    homes = {n: Home(root / n) for n in names}
    try:
        with console.status("forming a colony of 3 daemons"):
            colonynode(homes["owner"], "init")
            colony_id = colonynode(homes["owner"], "colony", "create", "demo").strip()
            colonynode(homes["owner"], "start")
            for name in names[1:]:
                ticket = colonynode(homes["owner"], "invite").replace("\n", "").strip()
                join_and_start(homes[name], colony_id, ticket, name)
        console.print(f"colony [bold]{colony_id[:16]}[/] formed: 3 members on 127.0.0.1")
        with _api(homes["owner"]) as api:
            return _work(api, console)
    finally:
        stop(homes.values())
        console.print(f"daemons stopped; homes and logs in {root}")


def join_and_start(
    home: Home,
    colony_id: str,
    ticket: str,
    name: str,
    configure: Callable[[Config], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """A new member daemon in ``home``: init, join with ``ticket``, ``configure`` its
    config (its executor, say), start in the background."""
    colonynode(home, "init", env=env)
    colonynode(home, "join", colony_id, "--ticket", ticket, "--name", name, env=env)
    if configure is not None:
        config = home.config()
        configure(config)
        home.save_config(config)
    colonynode(home, "start", env=env)


def stop(homes: Iterable[Home]) -> None:
    """Stop (SIGTERM) the daemons running from ``homes``."""
    for home in homes:
        runtime = home.runtime()
        if runtime is not None:
            os.kill(int(runtime["pid"]), signal.SIGTERM)


def _work(api: ApiClient, console: Console) -> bool:
    specs: list[dict[str, Any]] = [
        {"nodename": f"primes-{n}", "funcname": "primes", "args": [n]} for n in LIMITS
    ]
    specs.append({"nodename": "words", "funcname": "wordcount", "args": [TEXT]})
    specs.append(
        {
            "nodename": "total",
            "funcname": "add",
            "args": [],
            "conditions": {"dependencies": [f"primes-{n}" for n in LIMITS]},
        }
    )
    started = time.monotonic()
    wf = api.submit_workflow({"colonyname": "demo", "functionspecs": specs})
    pids: dict[str, str] = dict(wf["pids"])
    for text in ("colony", "peer", "continuum"):
        pids[f"sha256 {text}"] = api.submit({"funcname": "sha256", "args": [text]})["pid"]
    results: dict[str, dict[str, Any]] = {}
    with Progress(
        TextColumn("[bold]running"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("processes", total=len(pids))
        while len(results) < len(pids) and time.monotonic() - started < DEADLINE:
            for name, pid in pids.items():
                if name not in results:
                    process = api.process(pid)
                    if process["state"] in ("successful", "failed"):
                        results[name] = process
            bar.update(task, completed=len(results))
            time.sleep(0.2)
    table = Table("process", "state", "ran on", "output")
    executors: set[str] = set()
    for name in pids:
        p = results.get(name)
        if p is None:
            table.add_row(name, "[red]not finished[/]", "", "")
            continue
        executors.add(p["executor"])
        out = p["output"][0] if p["output"] else p["errors"][:1]
        text = str(out if not isinstance(out, dict) else dict(list(out.items())[:4]))
        state = "[green]successful[/]" if p["state"] == "successful" else f"[red]{p['state']}[/]"
        table.add_row(name, state, p["executor"][-8:], text[:60])
    console.print(table)
    ok = len(results) == len(pids) and all(p["state"] == "successful" for p in results.values())
    expected = sum(_prime_count(n) for n in LIMITS)
    total = results.get("total", {}).get("output", [None])[0]
    console.print(
        f"{len(results)}/{len(pids)} processes done in {time.monotonic() - started:.1f} s "
        f"on {len(executors)} members; workflow total {total} (expected {float(expected)})"
    )
    return ok and total == float(expected)


def _prime_count(limit: int) -> int:
    from colonyp2p.executors.builtin import primes

    return primes(limit)


def colonynode(home: Home, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``colonynode ARGS`` for ``home`` (with ``env`` added to the environment, which
    a daemon it starts inherits); its stdout, or RuntimeError with its stderr."""
    env = {**os.environ, **(env or {}), "COLONYP2P_HOME": str(home.root), "COLUMNS": "400"}
    done = subprocess.run(
        [sys.executable, "-m", "colonyp2p.node.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RuntimeError(f"colonynode {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def _api(home: Home) -> ApiClient:
    runtime = home.runtime()
    assert runtime is not None
    return ApiClient(str(runtime["api"]), home.identity())
