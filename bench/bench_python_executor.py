"""The python executor's overhead per process, from the lease to the result; writes
bench/results/PYTHON_EXECUTOR.md and python_executor.json.

    .venv/bin/python bench/bench_python_executor.py            # about 1.5 minutes
    .venv/bin/python bench/bench_python_executor.py --n 300 --calls 5000

daemon: three real daemons on loopback (tests/cluster.py: owner, a second member and
an executor of type ``pybench``; every member is a keeper of every process), ``noop``
processes submitted one at a time through the owner, so that nothing queues. The
executor's own events (its daemon log, one clock) give, per process:

- claim won -> run starts: the core's ``started`` (a majority of keepers granted the
  lease) to the daemon's ``running`` (the run's task is spawned);
- run starts -> result proposed: ``running`` to this node's ``accepted`` as a keeper of
  the process, i.e. the function called in a worker thread, the outcome back through
  the daemon's inbox into the core, and the Accept it sends itself;
- result proposed -> decided: ``accepted`` to ``chose`` (a majority of keepers accepted
  the outcome; Decide goes out to the keepers and the submitter);

and their sum, claim won -> decided: the overhead, since ``noop`` itself does nothing.

call: ``PythonExecutor.run`` of ``noop`` in-process, without a daemon: the executor's
own share (argument binding, a trio worker thread there and back).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import FAST, Node, cluster, events, wait_for

from colonyp2p.executors.base import RunRequest
from colonyp2p.executors.python import PythonExecutor, builtin
from colonyp2p.model.spec import Conditions, FunctionSpec

RESULTS = Path(__file__).resolve().parent / "results"
# its machine() and summary_ms(), so that both reports say the same things the same way
# (imported by name: this directory is on sys.path when a benchmark runs, not for mypy)
bench_daemon = importlib.import_module("bench_daemon")
STAGES = {
    "claim won -> run starts": ("started", "running"),
    "run starts -> result proposed": ("running", "accepted"),
    "result proposed -> decided": ("accepted", "chose"),
    "claim won -> decided (total)": ("started", "chose"),
}


def loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return f.read().strip()


def daemon_part(root: Path, n: int, warmup: int) -> dict[str, Any]:
    with cluster(root) as c:
        owner = c.found()
        c.join("member", owner)
        executor = c.join("executor", owner, executortype="pybench")
        spec = {"funcname": "noop", "conditions": {"executortype": "pybench"}}
        pids = []
        started = time.monotonic()
        for i in range(warmup + n):
            pid = owner.submit(spec)["pid"]
            done = wait_for(partial(owner.finished, pid), 30, f"noop {i}")
            if done["state"] != "successful":
                raise AssertionError(f"noop {i} {done['state']}: {done['errors']}")
            if i >= warmup:
                pids.append(pid)
        seconds = time.monotonic() - started
        return {"n": n, "warmup": warmup, "seconds": round(seconds, 1), **stages(executor, pids)}


def stages(executor: Node, pids: list[str]) -> dict[str, Any]:
    """Per stage, the times between the executor's events of each process."""
    at: dict[str, dict[str, float]] = {pid: {} for pid in pids}
    for event in events(executor):
        seen = at.get(event.get("pid", ""))
        if seen is not None and event["kind"] not in seen:  # first of each kind
            seen[event["kind"]] = float(event["t"])
    out: dict[str, Any] = {}
    for name, (a, b) in STAGES.items():
        spans = [t[b] - t[a] for t in at.values() if a in t and b in t]
        out[name] = bench_daemon.summary_ms(spans)
    out["complete"] = sum(all(k in t for k in ("started", "chose")) for t in at.values())
    return out


def call_part(calls: int) -> dict[str, Any]:
    executor = PythonExecutor(builtin(), "pybench")
    request = RunRequest("p" * 64, FunctionSpec("noop", conditions=Conditions()), (), Path("."))

    async def measure() -> list[float]:
        spans = []
        for _ in range(calls):
            t0 = time.perf_counter()
            result = await executor.run(request, lambda line: None)
            spans.append(time.perf_counter() - t0)
            assert result.ok
        return spans

    return {"calls": calls, "run": bench_daemon.summary_ms(trio.run(measure))}


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    d, c = results["daemon"], results["call"]
    lines = [
        "# The python executor's overhead per process",
        "",
        "Written by `bench/bench_python_executor.py` (raw numbers in "
        "`bench/results/python_executor.json`). Command:",
        "",
        f"    {results['command']}",
        "",
        f"Machine: {m['cpus']} CPUs ({m.get('cpu_model', '')}), {m['processor']}, "
        f"Python {m['python']}, {m['platform']}, commit {m.get('git_head', '?')}, "
        f"{m['date']} UTC"
        + (
            f", with other work's uncommitted changes in {', '.join(m['git_uncommitted'])}."
            if m.get("git_uncommitted")
            else "."
        ),
        "",
        f"**The machine was loaded by other work**: /proc/loadavg was `{results['load_before']}`"
        f" before and `{results['load_after']}` after the run (2 CPUs: a load of 2 keeps "
        "them busy), so these are figures under contention, not on an idle machine.",
        "",
        f"## Through the daemon: {d['n']} `noop` processes, one at a time "
        f"({d['warmup']} more first as warm-up; {d['seconds']} s in all)",
        "",
        "Three daemons on loopback (`tests/cluster.py`, params `FAST`), the executor's own "
        "events; `noop` does nothing, so all of it is overhead.",
        "",
        "| stage on the executor | n | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|",
    ]
    for name in STAGES:
        s = d[name]
        lines.append(
            f"| {name} | {s['n']} | {s['p50']:.1f} ms | {s['p95']:.1f} ms | "
            f"{s['p99']:.1f} ms | {s['max']:.1f} ms |"
        )
    s = c["run"]
    lines += [
        "",
        f"## The executor alone: `PythonExecutor.run(noop)` in-process, {c['calls']} calls",
        "",
        "| p50 | p95 | p99 | max |",
        "|---|---|---|---|",
        f"| {s['p50']:.3f} ms | {s['p95']:.3f} ms | {s['p99']:.3f} ms | {s['max']:.3f} ms |",
        "",
        "## Reading it",
        "",
        "- *claim won -> run starts* is the daemon dispatching the run (both events are "
        "logged after the step's state is on disk).",
        "- *run starts -> result proposed* holds the executor's own share (the table above: "
        "a worker thread there and back) plus the outcome's trip through the daemon's "
        "inbox, core steps and their SQLite commits (synchronous=FULL: an fsync each).",
        "- *result proposed -> decided* is one round trip to another keeper (a majority of "
        "three is two, the executor being one): network and the peer's core loop.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="processes measured")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--calls", type=int, default=2000, help="in-process executor calls")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    command = ".venv/bin/python bench/bench_python_executor.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {
        "command": command.strip(),
        "machine": bench_daemon.machine(),
        "load_before": loadavg(),
        "params": FAST,
    }
    results["call"] = call_part(args.calls)
    with tempfile.TemporaryDirectory(prefix="bench-pyexec-") as tmp:
        results["daemon"] = daemon_part(Path(tmp), args.n, args.warmup)
    results["load_after"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "python_executor.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "PYTHON_EXECUTOR.md").write_text(report(results))
    total = results["daemon"]["claim won -> decided (total)"]
    print(f"claim won -> decided: p50 {total['p50']} ms, p99 {total['p99']} ms")
    print(f"written to {args.out / 'PYTHON_EXECUTOR.md'}; load {results['load_after']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
