"""colonyp2p against Celery, Dask and Ray on this machine, in one run; writes
bench/results/COMPARE.md, compare.json and compare.png.

    make compare                                   # or: .venv/bin/python bench/compare/run.py
    .venv/bin/python bench/compare/run.py --quick  # a few minutes: checks that all works

It installs what it needs: a virtualenv of its own (bench/compare/.venv, from
bench/compare/requirements.txt: Celery and the Redis client, Dask distributed, Ray,
py-spy; the project's .venv stays as it is) and Debian's redis-server (apt-get, if
missing), which it starts on 127.0.0.1 and stops afterwards.

Scenarios, each on colonyp2p with 3 and with 5 daemons on loopback, and on each peer
(three workers everywhere, each worker its own process):
  latency     submit -> result of a no-op, one at a time: p50 and p99
  throughput  N no-ops (10,000; colonyp2p stops submitting after a time budget)
  fanout      1,000 children and one gather of their outputs (colonyp2p: a workflow)
  kill        the worker running a task is SIGKILLed: time until the task completed
              elsewhere, and how often it started and completed
  data        a 256 MiB input moved to a worker (colonyp2p: `colonynode fs`, once it exists)
colonyp2p's daemons are started and measured with bench/bench_daemon.py's code; the
peers run in a child process with the comparison's virtualenv (bench/compare/peers.py).
During the throughput scenario py-spy samples one colonyp2p daemon: the hot paths go
into COMPARE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
for _path in (ROOT, ROOT / "tests"):  # bench.*, and tests/cluster.py as bench_daemon does
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from cluster import Cluster, Node, wait_for  # noqa: E402

from bench import bench_daemon as bd  # noqa: E402
from bench.compare import tasks  # noqa: E402

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"
PEER_PYTHON = VENV / "bin" / "python"
PY_SPY = VENV / "bin" / "py-spy"
REQUIREMENTS = HERE / "requirements.txt"
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "out" / "compare"
PEERS = ("celery", "dask", "ray")
SIZES = (3, 5)
SYSTEMS = [f"colonyp2p-{n}" for n in SIZES] + list(PEERS)
SCENARIOS = ("latency", "throughput", "fanout", "kill", "data")
NOOP: dict[str, Any] = {"funcname": "noop"}
# the executors also serve tasks.attempt (the kill scenario), by the name "attempt"
FUNCTIONS = ["attempt=bench.compare.tasks:attempt"]


# --- what the run needs -----------------------------------------------------------------------


def ensure_venv() -> None:
    """bench/compare/.venv with requirements.txt installed (again when that file changed)."""
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.stat().st_mtime >= REQUIREMENTS.stat().st_mtime:
        return
    print(f"installing the peers into {VENV.relative_to(ROOT)} (a few minutes) ...", flush=True)
    if not PEER_PYTHON.exists():
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    pip = [str(PEER_PYTHON), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.touch()


def ensure_redis() -> str:
    server = shutil.which("redis-server")
    if server:
        return server
    print("installing Debian's redis-server (apt-get) ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-q", "redis-server"], check=True, env=env)
    server = shutil.which("redis-server")
    if not server:
        raise SystemExit("redis-server did not install")
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(server: str, logs: Path) -> Iterator[str]:
    """A throw-away redis-server on 127.0.0.1 (no persistence), stopped on the way out."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *(server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--proto-max-bulk-len", "1gb", "--dir", str(logs)),
        ],
        stdout=(logs / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: redis_ping(port), 20, "redis-server to answer")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the peers ----------------------------------------------------------------------------------


def remaining(args: argparse.Namespace) -> float:
    """Seconds left of the whole run's time limit."""
    return float(args.end - time.perf_counter())


def run_peer(name: str, args: argparse.Namespace, redis_url: str, logs: Path) -> dict[str, Any]:
    """peers.py for one framework in the comparison's virtualenv, within its deadline."""
    out = logs / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [str(PEER_PYTHON), str(HERE / "peers.py"), name, "--out", str(out)]
    cmd += ["--logs", str(logs / name), "--scenarios", *args.scenarios]
    cmd += ["--latency-n", str(args.latency_n), "--warmup", str(args.warmup)]
    cmd += ["--n", str(args.n), "--fanout", str(args.fanout), "--mib", str(args.mib)]
    cmd += ["--timeout", str(args.scenario_timeout), "--scenario-timeout"]
    cmd += [str(args.scenario_timeout)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COMPARE_REDIS_URL": redis_url}
    env["RAY_AUTH_MODE"] = "disabled"  # a loopback-only throw-away instance
    limit = min(60 + args.scenario_timeout * len(args.scenarios), remaining(args))
    print(f"{name} (at most {limit:.0f} s) ...", flush=True)
    with (logs / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(limit)
        except subprocess.TimeoutExpired:
            print(f"  {name}: overall deadline; stopped", flush=True)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"scenarios": {}}
    latency = result["scenarios"].get("latency", {})
    if "samples_s" in latency:
        latency["result_ms"] = short(bd.summary_ms(latency.pop("samples_s")))
    for scenario in args.scenarios:
        entry = result["scenarios"].setdefault(
            scenario, {"error": f"did not finish (exit {proc.returncode}; log {name}.log)"}
        )
        print(f"  {name} {scenario}: {json.dumps(entry)}", flush=True)
    return result


# --- colonyp2p ----------------------------------------------------------------------------------


@contextlib.contextmanager
def executor_functions(entries: list[str], capacity: int, isolation: str) -> Iterator[None]:
    """bench_daemon's ``configure`` (which found/add_member call), also listing ``entries``
    in the executor's ``functions`` and setting its capacity and isolation."""
    plain = bd.configure

    def configure(node: Node, *rest: Any, **named: Any) -> None:
        plain(node, *rest, **named)
        config = node.home.config()
        if config.executor is not None:
            config.executor.functions = list(entries)
            config.executor.capacity = capacity
            config.executor.isolation = isolation
            node.home.save_config(config)

    bd.configure = configure
    try:
        yield
    finally:
        bd.configure = plain


def colony_up(
    c: Cluster, size: int, params: dict[str, float], capacity: int, isolation: str
) -> tuple[Node, list[Node]]:
    """Three executor daemons; with 5, the owner and one more member run no executor. The
    owner submits. Returns (submitter, executors)."""
    with executor_functions(FUNCTIONS, capacity, isolation):
        if size == 3:
            owner = bd.found(c, params)
            for i in (1, 2):
                bd.add_member(c, f"e{i}", owner, params)
            executors = list(c.nodes)
        else:
            owner = bd.found(c, params, executortype=None)
            # bench_daemon's configure takes None: a member without executor
            bd.add_member(c, "m1", owner, params, executortype=cast(str, None))
            for i in (1, 2, 3):
                bd.add_member(c, f"e{i}", owner, params)
            executors = c.nodes[2:]
    bd.settle(c.nodes, executors)
    return owner, executors


def cp_latency(submitter: Node, watcher: bd.Watcher, args: argparse.Namespace) -> dict[str, Any]:
    samples: list[float] = []
    failed: list[str] = []
    deadline = time.perf_counter() + args.limit
    with submitter.api() as api:
        for i in range(args.warmup + args.latency_n):
            if time.perf_counter() > deadline:
                break
            t0 = time.perf_counter()
            pid = str(api.submit(NOOP)["pid"])
            t_result, state, _ = bd.result_of(watcher, api, pid)
            if state != "successful":
                failed.append(pid)
            elif i >= args.warmup:
                samples.append(t_result - t0)
    out: dict[str, Any] = {"result_ms": short(bd.summary_ms(samples)), "warmup": args.warmup}
    out["failed"] = len(failed)
    if len(samples) < args.latency_n:
        out["note"] = f"{len(samples)} of {args.latency_n} samples within the time limit"
    return out


def short(summary: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in summary.items() if k in ("n", "p50", "p99", "max", "mean")}


def cp_throughput(
    c: Cluster,
    submitter: Node,
    watcher: bd.Watcher,
    profiled: Node,
    args: argparse.Namespace,
    logs: Path,
) -> dict[str, Any]:
    """bench_daemon's throughput run, as its best recorded one (bench/results/DAEMON.md):
    ``--clients`` threads each submitting ``--batch`` noops a call (``submit_many``) through
    the owner, back to back; submitting stops after the budget. Meanwhile py-spy samples
    ``profiled``."""
    bd.SUBMIT_CAP = args.budget
    bd.RESULT_WAIT = max(30.0, args.budget / 2)
    bd.STALL = 30.0
    seconds = min(args.profile, args.budget)
    spy = start_spy(profiled, seconds, logs)
    where = f"{args.clients} client thread(s), batches of {args.batch}"
    targets = [(submitter, watcher)]
    run = bd.throughput_run(args.n, args.clients, targets, where, c.nodes, 0, 0, logs, args.batch)
    profile = finish_spy(spy, profiled) | {"seconds": seconds}
    ended = run["successful"] + run["failed"]
    cpu = sum(run["daemon_cpu_s"].values())
    return {
        "tasks": args.n,
        "submitted": run["submitted"],
        "completed": run["successful"],
        "failed": run["failed"],
        "without_result": run["without_result"],
        "wall_s": run["wall_s"],
        "per_s": run["successful_per_s"],
        "acknowledged_per_s": run["acknowledged_per_s"],
        "budget_s": args.budget,
        "capped": run["submitted"] < args.n,
        "clients": args.clients,
        "batch": args.batch,
        "capacity": args.capacity,
        "isolation": args.isolation,
        "daemon_cpu_s": run["daemon_cpu_s"],
        "daemon_cpu_ms_per_task": round(cpu / max(1, ended) * 1000, 1),
        "failure_reasons": run["failure_reasons"],
        "profile": profile,
    }


def cp_fanout(submitter: Node, watcher: bd.Watcher, args: argparse.Namespace) -> dict[str, Any]:
    n = args.fanout
    specs: list[dict[str, Any]] = [
        {"nodename": f"c{i}", "funcname": "add", "args": [i]} for i in range(n)
    ]
    specs.append(
        {
            "nodename": "gather",
            "funcname": "add",
            "args": [],
            "conditions": {"dependencies": [f"c{i}" for i in range(n)]},
        }
    )
    t0 = time.perf_counter()
    with submitter.api() as api:
        wf = api.submit_workflow({"colonyname": "compare", "functionspecs": specs})
        t_submitted = time.perf_counter() - t0
        pids: dict[str, str] = dict(wf["pids"])
        gather = pids["gather"]
        seen = watcher.wait(gather, max(1.0, args.limit - t_submitted))
        wall = time.perf_counter() - t0
        children = [pids[f"c{i}"] for i in range(n)]
        done = sum(1 for p in children if p in watcher.decided)
        ok = sum(1 for p in children if watcher.decided.get(p, (0.0, ""))[1] == "successful")
        out: dict[str, Any] = {
            "children": n,
            "submit_s": round(t_submitted, 3),
            "children_ended": done,
            "children_successful": ok,
        }
        if seen is None:
            out["error"] = (
                f"no gather result within {args.limit:g} s "
                f"({done} of {n} children ended, {ok} successful)"
            )
            return out
        process = api.process(gather)
    expected = float(n * (n - 1) // 2)
    out["gather_ok"] = seen[1] == "successful" and process["output"] == [expected]
    out["wall_s"] = round(seen[0] - t0, 3)
    if not out["gather_ok"]:
        out["error"] = f"gather {seen[1]}: {process.get('output')} {process.get('errors')}"
    out["wall_to_check_s"] = round(wall, 3)
    return out


def cp_kill(
    c: Cluster,
    submitter: Node,
    executors: list[Node],
    watcher: bd.Watcher,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """With worker processes (isolation "process"): first the worker running the attempt
    is killed, as Dask's and Ray's are (the node stays); then, for a second attempt, the
    executor's whole daemon. With threads, only the daemon (the function runs in it)."""
    out: dict[str, Any] = {}
    if args.isolation == "process":
        worker = _kill_once(c, submitter, executors, watcher, args, whole_daemon=False)
        out.update(worker)
        out["killed"] = "the worker process running the function (its daemon stays)"
    daemon = _kill_once(c, submitter, executors, watcher, args, whole_daemon=True)
    if args.isolation == "process":
        out["daemon"] = daemon
    else:
        out.update(daemon)
    return out


def _kill_once(
    c: Cluster,
    submitter: Node,
    executors: list[Node],
    watcher: bd.Watcher,
    args: argparse.Namespace,
    whole_daemon: bool,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="compare-kill-") as tmp:
        marker = Path(tmp) / "attempts"
        spec = {"funcname": "attempt", "args": [str(marker), args.hold], "maxretries": 3}
        pid = str(submitter.submit(spec)["pid"])
        first = wait_for(lambda: tasks.attempts(str(marker))["first"], 60, "the first start")
        worker_pid, parent_pid = cast(list[int], first)
        # in a worker process, the function's parent is the daemon
        node_pid = parent_pid if args.isolation == "process" else worker_pid
        victim = next(n for n in executors if n.pid == node_pid)
        observer = (
            submitter
            if submitter is not victim or not whole_daemon
            else next(n for n in c.nodes if n is not victim)
        )
        # the result as a client learns it from the event stream of the submitter's node,
        # or of another node (one of the process's keepers) where the submitter's is the
        # one killed: a client that lost its node follows another
        follow = watcher if observer is submitter else bd.Watcher(observer)
        time.sleep(0.2)  # mid-task
        t_kill, killed_at = time.perf_counter(), time.time()
        os.kill(victim.pid if whole_daemon else worker_pid, signal.SIGKILL)
        heard = follow.wait(pid, args.limit)
        if follow is not watcher:
            follow.close()
        with observer.api() as api:
            t_result, state = heard if heard is not None else bd.poll_result(api, pid, args.limit)
            process = api.process(pid)
        seen = tasks.attempts(str(marker))
    out: dict[str, Any] = {
        "killed": f"the executor's daemon ({victim.name})"
        + (", whose worker process ran the function" if args.isolation == "process" else "")
        + (", which runs the function in a worker thread" if args.isolation == "thread" else ""),
        "recovered_s": round(t_result - t_kill, 3),
        "killed_at_unix": round(killed_at, 4),  # to read the daemons' logs against
        "state": state,
        "started": seen["started"],
        "completed": seen["completed"],
        # the daemon: another node's; the worker: another worker process (its output
        # is the (pid, parent pid) of the process that ran it)
        "ran_elsewhere": process.get("executor") not in (None, victim.member_id)
        if whole_daemon
        else _ran_by(process) not in (None, worker_pid),
    }
    if state != "successful":
        out["error"] = f"ended {state}: {process.get('errors')}"
    return out


def _ran_by(process: dict[str, Any]) -> int | None:
    output = process.get("output")
    try:
        return int(cast(list[list[int]], output)[0][0])
    except (TypeError, ValueError, IndexError):
        return None


def cp_data(
    submitter: Node, executor: Node, watcher: bd.Watcher, args: argparse.Namespace
) -> dict[str, Any]:
    """`colonynode fs put` of the input on the submitter's node, then a process (builtin
    noop) on ``executor`` (another node) whose spec syncs the label into its working
    directory before it runs: the executor's daemon fetches it from the submitter's.
    Until the meta-filesystem's CLI exists: 'not yet'."""
    probe = submitter.cli("fs", "--help", check=False)
    if probe.returncode != 0:
        return {"status": "not yet", "note": "no `colonynode fs` in this tree yet"}
    name = next(
        str(m["executor"]["name"])
        for m in submitter.members()["members"]
        if m["member_id"] == executor.member_id and m["executor"]
    )
    size = args.mib * 1024 * 1024
    label = f"/compare/input-{os.getpid()}"
    sync = {"label": label, "dir": "/in", "keepfiles": False}
    sync["onconflicts"] = {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": False}}
    spec = {
        "funcname": "noop",
        "conditions": {"executornames": [name]},
        "fs": {"mount": "/cfs", "snapshots": [], "dirs": [sync]},
    }
    with tempfile.TemporaryDirectory(prefix="compare-data-") as tmp:
        src = Path(tmp) / "input.bin"
        src.write_bytes(os.urandom(size))
        t0 = time.perf_counter()
        submitter.cli("fs", "put", "--quiet", str(src), label)
        t_put = time.perf_counter() - t0
    with submitter.api() as api:
        pid = str(api.submit(spec)["pid"])
        seen = watcher.wait(pid, max(1.0, args.limit - t_put))
        at, state = seen if seen is not None else bd.poll_result(api, pid, 10)
        process = api.process(pid)
    wall = at - t0
    logs = [str(line) for line in process.get("logs", [])]
    fetched = any(line.startswith(f"[fs] synced {label} (v") for line in logs)
    out: dict[str, Any] = {
        "mib": args.mib,
        "put_s": round(t_put, 3),
        "wall_s": round(wall, 3),
        "mb_per_s": round(size / wall / 1e6, 1),
        "ran_on": executor.name,
        "synced_into_the_run": fetched,
        "how": "`colonynode fs put` (CLI, ~1 s of it Python start-up) on the submitter's "
        "node, then a noop whose spec syncs the label into its working directory on "
        "another node; blocks are checked against their CIDs",
    }
    if state != "successful" or not fetched:
        out["error"] = f"{state}, synced: {fetched}: {process.get('errors')} {logs[-3:]}"
    return out


def run_colonyp2p(size: int, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    name = f"colonyp2p-{size}"
    print(f"{name}: starting {size} daemons ...", flush=True)
    result: dict[str, Any] = {"framework": name, "scenarios": {}, "params": args.params}
    params = bd.PARAM_SETS[args.params]
    root = logs / name
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    with bd.colony(root) as c:
        submitter, executors = colony_up(c, size, params, args.capacity, args.isolation)
        result["start_s"] = round(time.perf_counter() - t0, 2)
        result["worker_pids"] = [n.pid for n in executors]
        result["daemons"] = {n.name: n.pid for n in c.nodes}
        result["submitter"] = submitter.name
        watcher = bd.Watcher(submitter)
        with submitter.api() as api:  # warm-up: connections, gossip meshes
            for _ in range(5):
                bd.result_of(watcher, api, str(api.submit(NOOP)["pid"]))
        # the profile: the submitting daemon with 3 (it is an executor too), an executor
        # without the API's work with 5
        profiled = submitter if size == 3 else executors[0]
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "latency": lambda: cp_latency(submitter, watcher, args),
            "throughput": lambda: cp_throughput(c, submitter, watcher, profiled, args, logs),
            "fanout": lambda: cp_fanout(submitter, watcher, args),
            "data": lambda: cp_data(submitter, executors[-1], watcher, args),
            "kill": lambda: cp_kill(c, submitter, executors, watcher, args),
        }
        # the kill last: it leaves one executor less
        for scenario in sorted(args.scenarios, key=lambda s: s == "kill"):
            load0 = os.getloadavg()[0]
            args.limit = min(args.scenario_timeout, remaining(args) - 30)
            print(f"  {name}: {scenario} (at most {args.limit:.0f} s) ...", flush=True)
            try:
                if args.limit < 20:
                    raise TimeoutError("skipped: the run's time limit was reached")
                entry = steps[scenario]()
            except Exception as exc:
                entry = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            entry["load_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
            shown = {k: v for k, v in entry.items() if k != "profile"}
            print(f"    {json.dumps(shown)}", flush=True)
            result["scenarios"][scenario] = entry
        watcher.close()
    return result


# --- the profile ----------------------------------------------------------------------------------


def start_spy(node: Node, seconds: float, logs: Path) -> tuple[subprocess.Popen[bytes], Path]:
    path = logs / f"profile-{node.name}-{node.pid}.txt"
    cmd = [str(PY_SPY), "record", "-r", "100", "-f", "raw", "-d", str(int(seconds))]
    cmd += ["--nonblocking", "-o", str(path), "-p", str(node.pid)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, path


def finish_spy(spy: tuple[subprocess.Popen[bytes], Path], node: Node) -> dict[str, Any]:
    proc, path = spy
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if not path.exists():
        return {"error": f"py-spy wrote nothing (exit {proc.returncode})"}
    out = {"daemon": node.name, "raw": str(path.relative_to(ROOT))}
    return out | bd.profile_summary(path) | hot_paths(path)


def _site(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (pkg/file.py)``: the function, not the line."""
    func, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]
    for mark in ("site-packages/", "/work/main/", str(ROOT) + "/"):
        if mark in file:
            file = file.split(mark, 1)[1]
    return f"{func} ({file})"


# the project's code and py-libp2p's, where the daemon's time is spent or decided
OURS = ("colonyp2p/", "node/", "executors/", "mfs/", "libp2p/")


def hot_paths(path: Path, top: int = 15) -> dict[str, Any]:
    """From py-spy's collapsed stacks of the daemon's trio thread: the functions with the
    most samples on top of the stack (self), anywhere in it (inclusive), and as the
    innermost frame of the project's or py-libp2p's code (nearest: the self time of what
    they call, trio's sockets, nacl, cbor, sqlite included, charged to them)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    nearest: dict[str, int] = {}
    beneath: dict[str, dict[str, int]] = {}  # nearest -> the self functions under it
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        at = next((i for i, f in enumerate(frames) if f.startswith("unrolled_run ")), None)
        if at is None:
            continue
        n = int(count)
        total += n
        inner = [_site(f) for f in frames[at + 1 :]] or [_site(frames[at])]
        own[inner[-1]] = own.get(inner[-1], 0) + n
        ours = [site for site in inner if any(m in site for m in OURS)]
        for site in set(ours):
            incl[site] = incl.get(site, 0) + n
        if ours:
            nearest[ours[-1]] = nearest.get(ours[-1], 0) + n
            under = beneath.setdefault(ours[-1], {})
            under[inner[-1]] = under.get(inner[-1], 0) + n

    def ranked(d: dict[str, int], most: int = top) -> list[list[Any]]:
        order = sorted(d.items(), key=lambda kv: -kv[1])
        return [[k, round(v / max(1, total), 3)] for k, v in order][:most]

    return {
        "trio_samples": total,
        "self": ranked(own),
        "inclusive": ranked(incl),
        "nearest": [[k, v, ranked(beneath[k], 1)[0]] for k, v in ranked(nearest)],
    }


# --- the report -----------------------------------------------------------------------------------


def label(system: str) -> str:
    if system.startswith("colonyp2p-"):
        return f"colonyp2p, {system.split('-')[1]} daemons"
    return {"celery": "Celery", "dask": "Dask", "ray": "Ray"}[system]


def value(results: dict[str, Any], system: str, scenario: str, key: str) -> float | None:
    entry = results["systems"].get(system, {}).get("scenarios", {}).get(scenario, {})
    if "error" in entry or "status" in entry:
        return None
    v: Any = entry
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return float(v) if isinstance(v, int | float) else None


# (row label, scenario, key, unit, higher is better)
ROWS = [
    ("(a) latency p50", "latency", "result_ms.p50", "ms", False),
    ("(a) latency p99", "latency", "result_ms.p99", "ms", False),
    ("(b) throughput", "throughput", "per_s", "/s", True),
    ("(c) fan-out + gather", "fanout", "wall_s", "s", False),
    ("(d) kill: until done elsewhere", "kill", "recovered_s", "s", False),
    ("(e) input to a worker", "data", "wall_s", "s", False),
]


def times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:,.0f}x"


def cell(results: dict[str, Any], system: str, row: tuple[str, str, str, str, bool]) -> str:
    _, scenario, key, unit, higher = row
    entry = results["systems"].get(system, {}).get("scenarios", {}).get(scenario)
    if entry is None:
        return "not run"
    if entry.get("status"):
        return str(entry["status"])
    v = value(results, system, scenario, key)
    if v is None:
        return "failed: " + str(entry.get("error", "?"))[:80].replace("|", "/")
    text = f"{v:,.1f} {unit}" if v >= 10 or unit == "/s" else f"{v:.3g} {unit}"
    dask = value(results, "dask", scenario, key)
    if system != "dask" and dask:
        ratio = (dask / v if higher else v / dask) if v else float("inf")
        text += f" ({times(ratio)} slower)" if ratio >= 1 else f" ({times(1 / ratio)} faster)"
    if scenario == "throughput" and system.startswith("colonyp2p") and entry.get("capped"):
        text += (
            f"; {entry['completed']:,} of {entry['tasks']:,} run ({entry['budget_s']:g} s budget)"
        )
    elif scenario == "throughput":
        text += f"; {int(entry.get('completed', 0)):,} tasks"
    if scenario == "kill":
        text += f"; started {entry['started']}x, completed {entry['completed']}x"
        daemon = entry.get("daemon")
        if isinstance(daemon, dict) and daemon.get("recovered_s") is not None:
            text += (
                f"; whole daemon killed: {daemon['recovered_s']:.3g} s, started "
                f"{daemon['started']}x, completed {daemon['completed']}x"
            )
    if scenario == "fanout":
        text += f"; {entry['children']:,} children"
    if scenario == "data":
        text += f" ({entry['mb_per_s']:g} MB/s)"
    return text


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    a = results["args"]
    systems = [s for s in SYSTEMS if s in results["systems"]]
    out = [
        "# colonyp2p against Celery, Dask and Ray",
        "",
        "Written by `bench/compare/run.py` (`make compare`) from `bench/results/compare.json`.",
        f"Command: `{results['command']}`"
        + (" (quick mode: a check that everything runs, not the figures)" if a["quick"] else "")
        + f"; the whole run took {results['wall_s']:.0f} s.",
        "",
        f"Machine: {m['cpus']} CPUs ({m.get('cpu_model', '')}), {m['platform']}, Python "
        f"{m['python']}; shared with other work: load average (1, 5, 15 min) "
        f"{m['load_average_at_start']} at the start ({m['date']} UTC), "
        f"{results['load_average_at_end']} at the end. Code: git {m.get('git_head', '')}"
        + (f" (uncommitted: {', '.join(m['git_uncommitted'])})" if m.get("git_uncommitted") else "")
        + ".",
        "",
        "Versions: "
        + "".join(
            f"{k} {v}; "
            for s in systems
            for k, v in results["systems"][s].get("versions", {}).items()
            if k != "python"
        )
        + f"colonyp2p git {m.get('git_head', '')} with the project's .venv, params "
        f"`{a['params']}` "
        f"({bd.PARAM_SETS[a['params']] or 'defaults'}).",
        "",
        "## Results",
        "",
        "Ratios are against Dask distributed: how many times slower (or faster) than Dask "
        "(times divided by Dask's; for throughput, Dask's rate divided by the rate).",
        "",
        "| scenario | " + " | ".join(label(s) for s in systems) + " |",
        "|---|" + "---|" * len(systems),
    ]
    for row in ROWS:
        out.append(f"| {row[0]} | " + " | ".join(cell(results, s, row) for s in systems) + " |")
    out += ["", "![compare](compare.png)", ""]
    out += _targets(results) + _setup(results) + _profile(results)
    return "\n".join(out) + "\n"


def _targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets: within 2x of Dask in (a) and (b); ahead of every peer in (d)."""
    out = ["## Against the targets", ""]
    for size in SIZES:
        s = f"colonyp2p-{size}"
        if s not in results["systems"]:
            continue
        parts = []
        for scenario, key, higher, what in (
            ("latency", "result_ms.p50", False, "latency p50"),
            ("throughput", "per_s", True, "throughput"),
        ):
            v, d = value(results, s, scenario, key), value(results, "dask", scenario, key)
            if v and d:
                ratio = d / v if higher else v / d
                parts.append(
                    f"{what}: {times(ratio)} slower than Dask "
                    f"({'met' if ratio <= 2 else 'missed'}, target <= 2x)"
                )
        mine = value(results, s, "kill", "recovered_s")
        peers = {p: value(results, p, "kill", "recovered_s") for p in PEERS}
        if mine is not None:
            beaten = [p for p, v in peers.items() if v is not None and v < mine]
            parts.append(
                f"kill: {mine:.3g} s, "
                + (
                    f"behind {', '.join(beaten)} (missed)"
                    if beaten
                    else "ahead of every peer (met)"
                )
            )
        out.append(f"- {label(s)}: " + ("; ".join(parts) or "no figure to compare") + ".")
    lease = bd.daemon_params(bd.PARAM_SETS[results["args"]["params"]]).lease_seconds
    out += [
        "",
        "A colonyp2p executor whose worker process is killed sees the worker's pipe close, "
        "and runs the call again at once on its spare worker, within the lease it holds (up "
        "to the spec's `maxretries`): no other node is involved until the result is "
        "accepted. A killed colonyp2p daemon's keepers see its connections close (the "
        "kernel closes a killed process's sockets), end its leases at once and offer its "
        f"processes to the next executor; its lease ({lease:g} s, `lease_seconds`) is only "
        "the fallback for a holder cut off without a closed connection. Celery's message "
        "comes back after the "
        "visibility timeout (set to 10 s here). Dask's scheduler and Ray's raylet see the "
        "worker's connection close and reschedule at once. One kill per system and run: "
        "these figures vary by several milliseconds from run to run.",
    ]
    return [*out, ""]


def _setup(results: dict[str, Any]) -> list[str]:
    a = results["args"]
    isolation = a.get("isolation", "thread")
    where_calls = "worker processes" if isolation == "process" else "threads of the daemon"
    out = [
        "## What ran",
        "",
        "Every system had three workers, each its own process, on this machine; the client "
        "was a separate process. The work is the plain functions of "
        "`bench/compare/tasks.py` everywhere.",
        "",
        "- **colonyp2p**: real `colonynode` daemons on 127.0.0.1 started as "
        "`bench/bench_daemon.py` starts them (its `found`, `add_member`, `settle`, `Watcher`, "
        "`throughput_run` are imported). With 3 daemons all three are executors (python "
        f"executor, capacity {a.get('capacity', 2)}: processes in flight at once, calling "
        f"functions in {where_calls} (`isolation` {isolation!r})) and the "
        "owner, one of them, takes the submits; with 5, the owner "
        "and one more member run no executor and the owner takes the submits. The client uses "
        "the owner's local API (`ApiClient`); a result is seen on the owner's event stream.",
    ]
    for p in PEERS:
        notes = results["systems"].get(p, {}).get("notes", {})
        if notes:
            out.append(f"- **{label(p)}**: {notes.get('settings', '')}.")
    out += [
        "",
        f"(a) builtin `noop`, submitted one at a time after the previous result, {a['warmup']} "
        f"warm-up then {a['latency_n']} samples, from just before the submit call to the "
        "client holding the result.",
        f"(b) {a['n']:,} no-ops submitted as one batch by each peer's client (Celery `group`, "
        "Dask `client.map`, Ray a list of `.remote()`), from the first submit to the last "
        f"result. colonyp2p: {a.get('clients', 1)} client thread(s) submitting back to back, "
        f"{a.get('batch', 1)} no-ops a call (`submit_many`, which takes up to 1,000; of 20, "
        "50, 100, 150 and 200 a call with two clients, 100 did best on this machine, "
        "2026-11-25: 20 gave about 350/s, 50 440-465/s, 100 480-530/s, 150 and 200 about "
        "350-370/s, where executors with longer backlogs contend for each other's "
        f"processes), stopping after a {a['budget']:g} s budget; the rate is "
        "successful processes per second from the first submit to the last result, and the "
        "cell says how many of the N ran.",
        f"(c) {a['fanout']:,} children `add(i)` and a gather that sums their outputs (checked): "
        "Celery `chord`, Dask futures, Ray object refs, colonyp2p one `submit_workflow` with the "
        "gather depending on every child (builtin `add` gets the parents' outputs as "
        "`inputs`).",
        f"(d) `tasks.attempt`: the first attempt holds for {a['hold']:g} s; the process that "
        "runs it is SIGKILLed 0.2 s after it started; time from the kill to the client "
        "holding the result, and how often the function started and completed (from a file "
        "it appends to). colonyp2p: with worker processes, first the worker process running "
        "the function (its daemon stays, as Dask's nanny and Ray's raylet do: the table's "
        "figure), then for a second attempt the executor's whole daemon (the cell's 'whole "
        "daemon killed'); with threads, only the whole daemon; spec `maxretries` 3, the "
        "result read from the submitter's event stream (from another node's, one of the "
        "process's keepers, if the submitter's was the one killed); "
        "Celery: the whole worker node (main and pool process); Dask and Ray: the worker "
        "process (their nanny / raylet stays).",
        f"(e) {a['mib']} MiB of random bytes from the client to a worker, checked there "
        "(length and CRC-32), until the client holds the task's result. colonyp2p: "
        "`colonynode fs put` on the submitter's node (about 1 s of it is the CLI's Python "
        "start-up), then a noop pinned to an executor on another node (`executornames`) "
        "whose spec syncs the label into its working directory before the run; the blocks "
        "are verified against their CIDs. "
        + " ".join(
            f"{label(p)}: {results['systems'][p]['notes']['data']}."
            for p in PEERS
            if results["systems"].get(p, {}).get("notes", {}).get("data")
        ),
        "",
    ]
    for s in SYSTEMS:
        r = results["systems"].get(s)
        if not r:
            continue
        errors = {k: v["error"] for k, v in r.get("scenarios", {}).items() if "error" in v}
        extra = {
            k: v.get("note")
            for k, v in r.get("scenarios", {}).items()
            if isinstance(v, dict) and v.get("note")
        }
        line = (
            f"- {label(s)}: up in {r.get('start_s', '?')} s; worker pids {r.get('worker_pids', [])}"
        )
        if errors:
            line += "; errors: " + "; ".join(f"{k}: {v}" for k, v in errors.items())
        if extra:
            line += "; " + "; ".join(f"{k}: {v}" for k, v in extra.items())
        tp = r.get("scenarios", {}).get("throughput", {})
        if s.startswith("colonyp2p") and "submitted" in tp:
            line += (
                f"; throughput: {tp['submitted']} submitted, {tp['completed']} successful, "
                f"{tp['failed']} failed, {tp['without_result']} without result, "
                f"daemon CPU {tp['daemon_cpu_ms_per_task']} ms per process"
            )
        out.append(line)
    return [*out, ""]


def _profile(results: dict[str, Any]) -> list[str]:
    out = ["## Where a colonyp2p daemon spends its time in (b)", ""]
    any_profile = False
    for size in SIZES:
        tp = results["systems"].get(f"colonyp2p-{size}", {}).get("scenarios", {})
        prof = tp.get("throughput", {}).get("profile")
        if not prof or "trio_samples" not in prof:
            continue
        any_profile = True
        secs = prof.get("seconds", results["args"]["profile"])
        busy = prof["trio_thread_samples"] / max(1.0, 100 * float(secs))
        out += [
            f"py-spy (`record --nonblocking -r 100`, {secs:g} s from the first submit) on "
            f"**{prof['daemon']}** of the {size}-daemon colony: its trio thread was busy "
            f"{busy * 100:.0f}% of the time; worker threads' SQLite transactions "
            f"(`Store.apply`): {prof['store_apply_samples']} samples. Parts of the trio "
            "thread's samples (bench_daemon's classification):",
            "",
            "| part | share |",
            "|---|---|",
        ]
        for part, share in sorted(prof["trio_thread_parts"].items(), key=lambda kv: -kv[1]):
            out.append(f"| {part} | {share * 100:.0f}% |")
        out += _ranked("Top functions on top of the stack (self time):", prof["self"][:12])
        out += [
            "",
            "The same samples charged to the innermost function of the project's or "
            "py-libp2p's code (what it calls, in trio, nacl, cbor2, the standard library, "
            "included):",
            "",
        ]
        out += ["| function (file) | share | its largest part on top of the stack |"]
        out += ["|---|---|---|"]
        out += [
            f"| `{k}` | {v * 100:.1f}% | `{leaf}` {part * 100:.1f}% |"
            for k, v, (leaf, part) in prof["nearest"][:15]
        ]
        out += _ranked(
            "Top functions anywhere in the stack (inclusive; project and py-libp2p):",
            prof["inclusive"][:15],
        )
        out += [
            "",
            "`_SocketType._nonblocking_helper` is trio's wrapper around a socket call: its "
            "samples are the thread inside `send`/`recv` (on loopback the kernel does the "
            "TCP work of both ends in that call). `ThreadCache.start_thread_soon` is trio "
            "handing a job to a worker thread (`trio.to_thread.run_sync`: the SQLite "
            "transaction of each batch, submits, the python executor's runs).",
            "",
            f"Raw stacks (collapsed, loadable in speedscope): `{prof['raw']}`.",
            "",
        ]
    if not any_profile:
        out += ["No profile in this run.", ""]
    return out


def _ranked(title: str, rows: list[list[Any]]) -> list[str]:
    head = ["", title, "", "| function (file) | share |", "|---|---|"]
    return head + [f"| `{k}` | {v * 100:.1f}% |" for k, v in rows]


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s for s in SYSTEMS if s in results["systems"]]
    colors = {"colonyp2p-3": "#2b7bba", "colonyp2p-5": "#1b4f7a"}
    colors |= {"celery": "#6aa84f", "dask": "#e69138", "ray": "#8e7cc3"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, row in zip(axes.flat, ROWS, strict=True):
        title, scenario, key, unit, higher = row
        vals = [value(results, s, scenario, key) for s in systems]
        xs = range(len(systems))
        ax.bar(
            list(xs),
            [v or 0 for v in vals],
            color=[colors[s] for s in systems],
        )
        for x, v, s in zip(xs, vals, systems, strict=True):
            entry = results["systems"][s].get("scenarios", {}).get(scenario)
            text = (
                f"{v:.3g}"
                if v is not None
                else "not run"
                if entry is None
                else str(entry.get("status", "failed"))
            )
            ax.text(x, v or 0, text, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(list(xs), [label(s).replace(", ", "\n") for s in systems], fontsize=8)
        if any(vals):
            ax.set_yscale("log")
        better = "higher is better" if higher else "lower is better"
        ax.set_title(f"{title} ({unit}, {better})", fontsize=10)
    m = results["machine"]
    fig.suptitle(
        f"colonyp2p vs Celery, Dask, Ray: 3 workers each, {m['cpus']} CPUs, load "
        f"{m['load_average_at_start'][0]} -> {results['load_average_at_end'][0]}"
        + (" (quick mode)" if results["args"]["quick"] else ""),
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: check that it works")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=SYSTEMS)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--n", type=int, help="throughput tasks (default 10,000)")
    parser.add_argument("--latency-n", type=int, help="latency samples (default 200)")
    parser.add_argument("--fanout", type=int, help="fan-out children (default 1,000)")
    parser.add_argument("--mib", type=int, help="input size in MiB (default 256)")
    parser.add_argument("--budget", type=float, help="colonyp2p's throughput submit budget, s")
    parser.add_argument(
        "--scenario-timeout", type=float, help="the most one scenario may take, s (default 300)"
    )
    parser.add_argument(
        "--time-limit", type=float, help="the whole run's limit, s (default 29 min)"
    )
    parser.add_argument("--hold", type=float, default=120.0, help="the killed attempt's hold")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--profile", type=float, default=30.0, help="py-spy seconds in (b)")
    parser.add_argument("--params", choices=sorted(bd.PARAM_SETS), default="bench")
    parser.add_argument("--capacity", type=int, default=32, help="colonyp2p executor capacity")
    parser.add_argument(
        "--isolation",
        choices=("process", "thread"),
        default="process",
        help="where colonyp2p's python executors call functions (worker processes, as "
        "Dask's and Ray's workers are, or threads of the daemon)",
    )
    parser.add_argument("--clients", type=int, default=2, help="colonyp2p throughput clients")
    parser.add_argument(
        "--batch", type=int, default=100, help="colonyp2p specs per submit call (submit_many)"
    )
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument(
        "--report-only", action="store_true", help="only rewrite COMPARE.md and the plot"
    )
    args = parser.parse_args()
    if args.report_only:
        data = json.loads((RESULTS / "compare.json").read_text())
        plot(data, RESULTS / "compare.png")
        (RESULTS / "COMPARE.md").write_text(markdown(data))
        return 0
    quick = {"n": 200, "latency_n": 50, "fanout": 100, "mib": 16, "budget": 15.0}
    full = {"n": 10_000, "latency_n": 200, "fanout": 1000, "mib": 256, "budget": 100.0}
    for k, v in (quick if args.quick else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.scenario_timeout is None:
        args.scenario_timeout = 90.0 if args.quick else 300.0
    if args.time_limit is None:
        args.time_limit = 1200.0 if args.quick else 1740.0
    # a SIGTERM ends the run through the finally clauses that stop daemons and workers
    signal.signal(signal.SIGTERM, bd._terminate)

    started = time.perf_counter()
    results: dict[str, Any] = {"machine": bd.machine(), "args": dict(vars(args)), "systems": {}}
    results["command"] = " ".join(["bench/compare/run.py", *sys.argv[1:]])
    logs = OUT
    logs.mkdir(parents=True, exist_ok=True)
    peers = [s for s in args.systems if s in PEERS]
    if peers and not args.skip_install:
        ensure_venv()
    server = ensure_redis() if "celery" in peers else ""
    args.end = time.perf_counter() + args.time_limit  # the installs aside
    args.limit = args.scenario_timeout

    # the daemons' python executors import bench.compare.tasks
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    # the peers first: they take a few minutes; colonyp2p gets the rest of the time limit
    for system in sorted(args.systems, key=lambda s: s not in PEERS):
        if system in PEERS:
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(redis_server(server, logs)) if system == "celery" else ""
                results["systems"][system] = run_peer(system, args, url, logs)
        else:
            size = int(system.split("-")[1])
            results["systems"][system] = run_colonyp2p(size, args, logs)
            results["systems"][system]["versions"] = {}
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["wall_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compare.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "compare.png")
    (RESULTS / "COMPARE.md").write_text(markdown(results))
    print(f"written: {RESULTS / 'COMPARE.md'}, compare.json, compare.png", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
