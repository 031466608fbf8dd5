"""One peer framework (Celery, Dask or Ray) through the comparison's scenarios; run by
bench/compare/run.py with the comparison's own virtualenv (bench/compare/.venv):

    bench/compare/.venv/bin/python bench/compare/peers.py dask --out results.json ...

Every framework gets three workers that are separate processes on this machine:
Celery, three ``celery worker`` nodes (prefork pool of one process each) on a Redis
broker and result backend; Dask, a LocalCluster of three worker processes (one thread
each, each under its nanny); Ray, a local Ray instance with ``num_cpus=3`` (its worker
processes under the raylet). The client is this process. The result of each scenario is
written to ``--out`` as soon as it is known (the caller kills this process at its
overall deadline and keeps what was written).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.compare import tasks  # noqa: E402

SCENARIOS = ("latency", "throughput", "fanout", "kill", "data")


def wait_marker(path: Path, timeout: float) -> dict[str, Any]:
    """Until ``tasks.attempt`` noted its first start in ``path``."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        seen = tasks.attempts(str(path))
        if seen["first"]:
            return seen
        time.sleep(0.005)
    raise TimeoutError("the task never started")


class Peer:
    """A framework with three workers; the client calls of each scenario."""

    name = ""

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        raise NotImplementedError

    def workers(self) -> list[int]:
        """The worker processes' pids (to show they are separate processes)."""
        raise NotImplementedError

    def noop(self, i: int, timeout: float) -> None:
        """Submit one no-op and wait for its result."""
        raise NotImplementedError

    def many(self, n: int, timeout: float) -> None:
        """Submit ``n`` no-ops, as the framework submits a batch, and wait for all."""
        raise NotImplementedError

    def fanout(self, n: int, timeout: float) -> float:
        """``n`` children ``add(i)`` and one gather of their outputs; the gather's value."""
        raise NotImplementedError

    def start_attempt(self, path: str, hold: float) -> Any:
        raise NotImplementedError

    def kill(self, pid: int, ppid: int) -> str:
        """SIGKILL the worker that runs the task; says what was killed."""
        raise NotImplementedError

    def result(self, handle: Any, timeout: float) -> Any:
        raise NotImplementedError

    def checksum(self, data: bytes, timeout: float) -> list[int]:
        """Move ``data`` to a worker the framework's way and return its checksum there."""
        raise NotImplementedError

    def notes(self) -> dict[str, str]:
        return {}


class Celery(Peer):
    name = "celery"

    def __init__(self, logs: Path) -> None:
        self.app = importlib.import_module("bench.compare.celery_app")
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(3):
            log = (logs / f"celery-w{i + 1}.log").open("wb")
            self.procs.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "celery", "-A", "bench.compare.celery_app"),
                        *("worker", "-c", "1", "-P", "prefork", "-n", f"w{i + 1}@%h"),
                        *("-l", "WARNING"),
                    ],
                    cwd=ROOT,
                    # Celery refuses pickle (the 256 MiB input's bytes) as root without it
                    env={**os.environ, "C_FORCE_ROOT": "1"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: the node and its pool
                )
            )
        deadline = time.perf_counter() + 60
        while time.perf_counter() < deadline:
            if len(self.app.app.control.ping(timeout=1.0) or []) >= 3:
                break
        else:
            raise TimeoutError("the three Celery workers did not answer a ping")
        self.app.app.control.purge()

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def versions(self) -> dict[str, str]:
        server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True
        ).stdout.split()
        v = next((w[2:] for w in server if w.startswith("v=")), "?")
        return {
            "celery": metadata.version("celery"),
            "kombu": metadata.version("kombu"),
            "redis-py": metadata.version("redis"),
            "redis-server": v,
        }

    def workers(self) -> list[int]:
        return [p.pid for p in self.procs]

    def noop(self, i: int, timeout: float) -> None:
        self.app.noop.delay(i).get(timeout=timeout)

    def many(self, n: int, timeout: float) -> None:
        group = importlib.import_module("celery").group
        group(self.app.noop.s(i) for i in range(n)).apply_async().get(timeout=timeout)

    def fanout(self, n: int, timeout: float) -> float:
        chord = importlib.import_module("celery").chord
        result = chord(self.app.add.s(i) for i in range(n))(self.app.total.s())
        return float(result.get(timeout=timeout))

    def start_attempt(self, path: str, hold: float) -> Any:
        return self.app.attempt.delay(path, hold)

    def kill(self, pid: int, ppid: int) -> str:
        # the whole worker node: its main process (ppid, a process group leader) and the
        # pool process running the task, as when its machine dies
        os.killpg(ppid, signal.SIGKILL)
        return "the worker node: its main process and its pool process (process group)"

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def checksum(self, data: bytes, timeout: float) -> list[int]:
        # bytes need pickle (the JSON serializer has no bytes); through the broker
        answer = self.app.checksum.apply_async(args=[data], serializer="pickle")
        return list(answer.get(timeout=timeout))

    def notes(self) -> dict[str, str]:
        return {
            "settings": "task_acks_late=True; broker visibility_timeout "
            f"{self.app.VISIBILITY_TIMEOUT:g} s swept every 1 s (Kombu's defaults: 3600 s, "
            "swept about every 100 s); otherwise defaults (prefetch multiplier 4, prefork)",
            "data": "the bytes as a task argument (pickle serializer) through the Redis broker",
        }


class Dask(Peer):
    name = "dask"

    def __init__(self, logs: Path) -> None:
        import logging

        distributed = importlib.import_module("distributed")
        self.distributed = distributed
        self.cluster = distributed.LocalCluster(
            n_workers=3,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        self.client = distributed.Client(self.cluster)
        self.client.wait_for_workers(3, timeout=60)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        with contextlib.suppress(Exception):
            self.cluster.close(timeout=10)

    def versions(self) -> dict[str, str]:
        return {"dask": metadata.version("dask"), "distributed": metadata.version("distributed")}

    def workers(self) -> list[int]:
        pids: dict[str, int] = self.client.run(os.getpid)
        return sorted(pids.values())

    def noop(self, i: int, timeout: float) -> None:
        self.client.submit(tasks.noop, i, pure=False).result(timeout=timeout)

    def many(self, n: int, timeout: float) -> None:
        futures = self.client.map(tasks.noop, range(n), pure=False)
        self.distributed.wait(futures, timeout=timeout)
        if any(f.status != "finished" for f in futures):
            raise RuntimeError("not every task finished")

    def fanout(self, n: int, timeout: float) -> float:
        children = self.client.map(tasks.add, range(n), pure=False)
        gather = self.client.submit(tasks.total, children, pure=False)
        return float(gather.result(timeout=timeout))

    def start_attempt(self, path: str, hold: float) -> Any:
        return self.client.submit(tasks.attempt, path, hold, pure=False)

    def kill(self, pid: int, ppid: int) -> str:
        os.kill(pid, signal.SIGKILL)
        return "the worker process (its nanny then starts a new one)"

    def result(self, handle: Any, timeout: float) -> Any:
        return handle.result(timeout=timeout)

    def checksum(self, data: bytes, timeout: float) -> list[int]:
        moved = self.client.scatter(data)
        return list(self.client.submit(tasks.checksum, moved, pure=False).result(timeout))

    def notes(self) -> dict[str, str]:
        return {
            "settings": "LocalCluster(n_workers=3, threads_per_worker=1, processes=True); "
            "otherwise defaults",
            "data": "client.scatter to a worker, then a task on it",
        }


class Ray(Peer):
    name = "ray"

    def __init__(self, logs: Path) -> None:
        ray = importlib.import_module("ray")
        self.ray = ray
        ray.init(
            num_cpus=3,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=2 * 1024**3,
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
        )
        self.r_noop = ray.remote(tasks.noop)
        self.r_add = ray.remote(tasks.add)
        self.r_attempt = ray.remote(tasks.attempt)
        self.r_checksum = ray.remote(tasks.checksum)
        self.r_pid = ray.remote(tasks.pid)
        ray.get([self.r_noop.remote(i) for i in range(30)], timeout=60)  # workers up

    def stop(self) -> None:
        self.ray.shutdown()

    def versions(self) -> dict[str, str]:
        return {"ray": metadata.version("ray")}

    def workers(self) -> list[int]:
        return sorted(set(self.ray.get([self.r_pid.remote(i) for i in range(30)], timeout=60)))

    def noop(self, i: int, timeout: float) -> None:
        self.ray.get(self.r_noop.remote(i), timeout=timeout)

    def many(self, n: int, timeout: float) -> None:
        self.ray.get([self.r_noop.remote(i) for i in range(n)], timeout=timeout)

    def fanout(self, n: int, timeout: float) -> float:
        children = [self.r_add.remote(i) for i in range(n)]
        return float(self.ray.get(self.r_add.remote(*children), timeout=timeout))

    def start_attempt(self, path: str, hold: float) -> Any:
        return self.r_attempt.remote(path, hold)

    def kill(self, pid: int, ppid: int) -> str:
        os.kill(pid, signal.SIGKILL)
        return "the worker process (the raylet starts others)"

    def result(self, handle: Any, timeout: float) -> Any:
        return self.ray.get(handle, timeout=timeout)

    def checksum(self, data: bytes, timeout: float) -> list[int]:
        ref = self.ray.put(data)
        return list(self.ray.get(self.r_checksum.remote(ref), timeout=timeout))

    def notes(self) -> dict[str, str]:
        return {
            "settings": "ray.init(num_cpus=3) on this machine; task max_retries default (3)",
            "data": "ray.put into the local object store (shared memory), then a task",
        }


PEERS: dict[str, Callable[[Path], Peer]] = {"celery": Celery, "dask": Dask, "ray": Ray}


# --- scenarios ------------------------------------------------------------------------------


def latency(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    for i in range(args.warmup):
        peer.noop(-1 - i, args.timeout)
    samples = []
    for i in range(args.latency_n):
        t0 = time.perf_counter()
        peer.noop(i, args.timeout)
        samples.append(time.perf_counter() - t0)
    # run.py summarises them as bench_daemon does (that module needs colonyp2p)
    return {"samples_s": [round(x, 6) for x in samples], "warmup": args.warmup}


def throughput(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    peer.many(args.n, args.timeout)
    wall = time.perf_counter() - t0
    return {
        "tasks": args.n,
        "completed": args.n,
        "wall_s": round(wall, 3),
        "per_s": round(args.n / wall, 1),
    }


def fanout(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    value = peer.fanout(args.fanout, args.timeout)
    wall = time.perf_counter() - t0
    expected = float(args.fanout * (args.fanout - 1) // 2)
    if value != expected:
        raise AssertionError(f"the gather returned {value}, expected {expected}")
    return {"children": args.fanout, "gather_ok": True, "wall_s": round(wall, 3)}


def kill(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="compare-kill-") as tmp:
        marker = Path(tmp) / "attempts"
        handle = peer.start_attempt(str(marker), args.hold)
        first = wait_marker(marker, 60)["first"]
        time.sleep(0.2)  # mid-task
        t_kill = time.perf_counter()
        what = peer.kill(int(first[0]), int(first[1]))
        answer = peer.result(handle, args.timeout)
        recovered = time.perf_counter() - t_kill
        seen = tasks.attempts(str(marker))
    return {
        "killed": what,
        "recovered_s": round(recovered, 3),
        "started": seen["started"],
        "completed": seen["completed"],
        "ran_elsewhere": int(answer[0]) != int(first[0]),
    }


def data(peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    size = args.mib * 1024 * 1024
    payload = os.urandom(size)
    t0 = time.perf_counter()
    got = peer.checksum(payload, args.timeout)
    wall = time.perf_counter() - t0
    import zlib

    if got != [size, zlib.crc32(payload)]:
        raise AssertionError(f"the worker saw {got}")
    return {"mib": args.mib, "wall_s": round(wall, 3), "mb_per_s": round(size / wall / 1e6, 1)}


RUN: dict[str, Callable[[Peer, argparse.Namespace], dict[str, Any]]] = {
    "latency": latency,
    "throughput": throughput,
    "fanout": fanout,
    "kill": kill,
    "data": data,
}


class ScenarioTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """SIGALRM ends a scenario that outlives its time (a blocking call in C may delay it;
    the caller's overall deadline covers that)."""

    def ring(signum: int, frame: FrameType | None) -> None:
        raise ScenarioTimeout(f"no result within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("framework", choices=sorted(PEERS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logs", type=Path, required=True)
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--fanout", type=int, default=1000)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--hold", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=120.0, help="per client call")
    parser.add_argument("--scenario-timeout", type=float, default=180.0)
    args = parser.parse_args()
    args.logs.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"framework": args.framework, "scenarios": {}}

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")

    t0 = time.perf_counter()
    with PEERS[args.framework](args.logs) as peer:
        out["start_s"] = round(time.perf_counter() - t0, 2)
        out["versions"] = peer.versions() | {"python": platform.python_version()}
        out["worker_pids"] = peer.workers()
        out["client_pid"] = os.getpid()
        out["notes"] = peer.notes()
        save()
        for name in args.scenarios:
            load0 = os.getloadavg()[0]
            print(f"  {args.framework}: {name} ...", flush=True)
            try:
                with deadline(args.scenario_timeout):
                    result = RUN[name](peer, args)
            except Exception as exc:
                result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            result["load_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
            print(f"    {json.dumps(result)}", flush=True)
            out["scenarios"][name] = result
            save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
