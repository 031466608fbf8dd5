"""Benchmarks of the meta-filesystem between real daemons; writes bench/results/MFS.md and .json.

    .venv/bin/python bench/bench_mfs.py                  # everything (several minutes)
    .venv/bin/python bench/bench_mfs.py --size-mib 64    # a smaller file (or --mib 64)
    .venv/bin/python bench/bench_mfs.py --part small     # or transfer, capped, netns

transfer: four daemons on 127.0.0.1 (one process each, started with the real CLI as
tests/cluster.py does). A puts a file of random bytes (``fs put``); B and C pin it (so
they hold it too); F then fetches it ``--repeat`` times from A alone and as many times
from A, B and C at once (``fs get`` with ``providers``), alternately, after an ``fs gc``
that drops F's copy. The figure is the fetch job's own transfer time (from the provider
lookup to the last block verified and durable in F's store), and the whole ``fs get``
(with writing the file out) beside it.
capped: the same, with each provider's upload capped in the application (config
``mfs.serve_rate``, ``--rate-mib``), for a ``--capped-mib`` file.
netns: the same four daemons on a real, shaped network, as devices in a colony are
connected: each runs in its own Linux network namespace, cabled by a veth pair to a
bridge in a "switch" namespace (tests/netns.py, as tests/test_partition.py does), and
each provider's link is shaped with ``tc`` (a token bucket, ``--link-mbit`` each way),
the fetcher's at ``--fetcher-mbit`` (default three times that, so it is not the limit).
No cap in the application. Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN), ``ip`` and
``tc``; skipped with the reason where namespaces are not permitted. Namespaces and
daemons are removed on the way out, also after Ctrl-C or SIGTERM.
small: 10,000 small files (1-2 KiB of random bytes each, in 100 directories) added by
``fs put`` through the API: files per second, and the size of the manifests written.

Parts run are merged into the results: ``--part netns`` replaces only that section. The
machine is shared: /proc/loadavg is recorded before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import Node, cluster, wait_for
from netns import Network, NotPermitted, missing_tools

from colonyp2p.node.api_client import ApiClient

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024
PARTS = ("transfer", "capped", "netns", "small")


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def machine() -> str:
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_fs(api: ApiClient, op: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    """An ``fs`` operation; a long one (answered with a job) is followed until it ends.
    The answer, or the job's final state, with ``wall_seconds`` added."""
    t = time.perf_counter()
    state = api.fs(op, **args)
    if "job" in state:
        job_id = state["job"]
        deadline = time.monotonic() + timeout
        while True:
            state = api.fs_job(job_id)
            if state["state"] != "running":
                break
            if time.monotonic() > deadline:
                state = {"state": "timeout", "error": f"still running after {timeout} s"}
                break
            time.sleep(0.05)
    return {**state, "wall_seconds": time.perf_counter() - t}


# Run inside a node's network namespace (Node.prefix), where its API listens on that
# namespace's own 127.0.0.1: one fs operation, its outcome as JSON on stdout.
_REMOTE_FS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from bench_mfs import ApiClient, run_fs
from colonyp2p.node.home import Home
home = Home(sys.argv[2])
runtime = home.runtime()
if runtime is None:
    sys.exit(f"the node in {home.root} is not running")
with ApiClient(str(runtime["api"]), home.identity(), timeout=20.0) as api:
    print(json.dumps(run_fs(api, sys.argv[3], json.loads(sys.argv[4]), float(sys.argv[5]))))
"""


def fs(node: Node, op: str, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
    """``run_fs`` on ``node``: in this process, or in its namespace when it has one."""
    if not node.prefix:
        with node.api() as api:
            return run_fs(api, op, args, timeout)
    here = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [
            *node.prefix,
            sys.executable,
            "-c",
            _REMOTE_FS,
            here,
            str(node.home.root),
            op,
            json.dumps(args),
            str(timeout),
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 60,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise AssertionError(f"fs {op} on {node.name} failed:\n{done.stdout}{done.stderr}")
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def job(node: Node, op: str, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
    state = fs(node, op, timeout, **args)
    if state["state"] != "done":
        raise AssertionError(f"fs {op} on {node.name} failed: {state['error']}")
    return state


def labels_of(node: Node) -> list[dict[str, Any]]:
    labels: list[dict[str, Any]] = fs(node, "ls", 20.0)["labels"]
    return labels


def display(node: Node) -> str:
    """A node's name in the figures: A is the colony's owner (cluster.found names it so)."""
    return "A" if node.name == "owner" else node.name.upper()


def random_file(path: Path, size_mib: int) -> None:
    path.parent.mkdir(parents=True)
    with open(path, "wb") as file:
        for _ in range(size_mib):
            file.write(os.urandom(MiB))


def fetches(
    root: Path,
    size_mib: int,
    repeat: int,
    f: Node,
    providers: Sequence[Node],
    out: dict[str, Any],
    links: Callable[[], dict[str, dict[str, dict[str, int]]]] | None = None,
) -> None:
    """F fetches /bench/big ``repeat`` times from the first provider alone and as many
    times from all of them at once, alternately, so that a change of load hits both
    alike; each fetch into ``out["one_provider"]`` or ``out["three_providers"]``, with
    what each daemon used of the CPU and (``links``: counters of each node's link, by
    name and direction) what crossed each link meanwhile."""
    names = {p.member_id: display(p) for p in providers}
    daemons = {display(n): n.pid for n in (f, *providers)}

    def fetch(chosen: Sequence[Node]) -> dict[str, Any]:
        fs(f, "gc")  # f holds nothing of the file before, and fetches it from ``chosen``
        dest = root / "out"
        cpu = {name: cpu_seconds(pid) for name, pid in daemons.items()}
        before = links() if links else {}
        state = job(
            f, "get", ref="/bench/big", dest=str(dest), providers=[p.member_id for p in chosen]
        )
        cpu = {name: round(cpu_seconds(pid) - cpu[name], 2) for name, pid in daemons.items()}
        crossed = {
            f"{name} {way}": {k: v - before[name][way][k] for k, v in counters.items()}
            for name, ways in (links() if links else {}).items()
            for way, counters in ways.items()
        }
        wall = state["wall_seconds"]
        assert (dest / "big.bin").stat().st_size == size_mib * MiB
        (dest / "big.bin").unlink()
        s = state["fetch"]
        return {
            "fetch_seconds": s["seconds"],
            "fetch_MBps": round(size_mib * MiB / s["seconds"] / 1e6, 1),
            "duplicate_bytes": s["fetched_bytes"] - size_mib * MiB,
            "wall_seconds": round(wall, 3),
            "wall_MBps": round(size_mib * MiB / wall / 1e6, 1),
            "providers": len(s["by_provider"]),
            "bytes_by_provider": sorted(s["by_provider"].values()),
            "bytes_by_name": dict(
                sorted((names.get(k, k), v) for k, v in s["by_provider"].items())
            ),
            "cpu_seconds": cpu,
            "blocks": s["fetched_blocks"],
            "rounds": s["rounds"],
            "bad_blocks": s["bad_blocks"],
            "loadavg": loadavg(),
            **({"links": crossed} if links else {}),
        }

    out["one_provider"], out["three_providers"] = [], []
    for _ in range(repeat):
        out["one_provider"].append(fetch(providers[:1]))
        out["three_providers"].append(fetch(providers))


def put_and_pin(
    root: Path, size_mib: int, a: Node, pinners: Sequence[Node], f: Node
) -> dict[str, Any]:
    """A puts a file of random bytes as /bench/big; the ``pinners`` pin it."""
    src = root / "src"
    random_file(src / "big.bin", size_mib)
    put = job(a, "put", src=str(src), label="/bench/big")
    for n in (*pinners, f):
        wait_for(partial(labels_of, n), 30, f"the label on {n.name}")
    pins = [round(job(n, "pin", ref="/bench/big")["wall_seconds"], 3) for n in pinners]
    return {"put_seconds": round(put["wall_seconds"], 3), "put": put["result"], "pin_seconds": pins}


def bench_transfer(
    root: Path, size_mib: int, repeat: int, rate_mib: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "size_mib": size_mib,
        "repeat": repeat,
        "provider_rate_mib_s": rate_mib,
        "loadavg_before": loadavg(),
    }
    # the providers' upload capped (config mfs.serve_rate), as on a thin uplink
    mfs = None if rate_mib is None else {"serve_rate": int(rate_mib * MiB)}
    with cluster(root) as c:
        a = c.found(mfs=mfs)
        b, cc = (c.join(n, a, mfs=mfs) for n in ("b", "c"))
        f = c.join("f", a)
        out.update(put_and_pin(root, size_mib, a, (b, cc), f))
        fetches(root, size_mib, repeat, f, (a, b, cc), out)
    out["loadavg_after"] = loadavg()
    return out


def bench_netns(
    root: Path, size_mib: int, repeat: int, link_mbit: float, fetcher_mbit: float
) -> dict[str, Any]:
    """As bench_transfer, each daemon in its network namespace, the links shaped."""
    out: dict[str, Any] = {
        "size_mib": size_mib,
        "repeat": repeat,
        "link_mbit": link_mbit,
        "fetcher_mbit": fetcher_mbit,
    }
    missing = missing_tools("ip", "tc")
    if missing:
        return {**out, "skipped": missing}
    out["loadavg_before"] = loadavg()
    net = Network(f"mfs{os.getpid()}")
    try:
        try:
            net.start()
        except NotPermitted as exc:
            return {**out, "skipped": f"network namespaces are not permitted here ({exc})"}
        # the daemons die (end of the cluster block) before their namespaces go
        with cluster(root) as c:
            where = {name: net.attach(name, i + 1) for i, name in enumerate(("a", "b", "c", "f"))}
            rates = {"a": link_mbit, "b": link_mbit, "c": link_mbit, "f": fetcher_mbit}
            out["qdiscs"] = {n.upper(): net.shape(n, mbit) for n, mbit in rates.items()}

            def placed(name: str) -> dict[str, Any]:
                prefix, addr = where[name]
                return {"prefix": prefix, "listen": [f"/ip4/{addr}/tcp/0"]}

            a = c.found(**placed("a"))
            b, cc, f = (c.join(n, a, **placed(n)) for n in ("b", "c", "f"))
            for n in (a, b, cc, f):
                wait_for(partial(n.has_version, 4), 30, f"{n.name} to learn every member")
            out["addrs"] = {display(n): n.addrs for n in (a, b, cc, f)}
            out.update(put_and_pin(root, size_mib, a, (b, cc), f))

            def links() -> dict[str, dict[str, dict[str, int]]]:
                return {n.upper(): net.link_stats(n) for n in rates}

            fetches(root, size_mib, repeat, f, (a, b, cc), out, links)
    finally:
        net.close()
    out["loadavg_after"] = loadavg()
    return out


def bench_small(root: Path, files: int) -> dict[str, Any]:
    out: dict[str, Any] = {"files": files, "loadavg_before": loadavg()}
    src = root / "small"
    per_dir = 100
    for i in range(files):
        d = src / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        (d / f"f{i:05d}.bin").write_bytes(os.urandom(1024 + (i * 7919) % 1024))
    with cluster(root / "c") as c:
        a = c.found()
        t = time.perf_counter()
        put = job(a, "put", src=str(src), label="/bench/small")
        seconds = time.perf_counter() - t
        a.cli("stop")
    manifests = 0
    blocks_dir = a.home.root / "mfs" / "blocks"
    for shard in blocks_dir.iterdir():
        for p in shard.iterdir():
            if p.name.startswith("bafyrei"):  # dag-cbor: manifests
                manifests += p.stat().st_size
    out.update(
        {
            "seconds": round(seconds, 3),
            "files_per_second": round(files / seconds, 1),
            "manifest_bytes": manifests,
            "manifest_bytes_per_file": round(manifests / files, 1),
            "snapshot": put["result"]["snapshot"],
            "loadavg_after": loadavg(),
        }
    )
    return out


def _ran(part: dict[str, Any]) -> list[str]:
    return [
        f"Command: `{part['command']}`; run at {part['at']}; machine: {part['machine']}.",
        "",
    ]


def _transfers(t: dict[str, Any]) -> list[str]:
    """The table of fetches of a transfer, capped or netns part, with medians and shares."""
    lines = [
        "| fetch | providers | transfer s | transfer MB/s | fs get wall s | wall MB/s "
        "| loadavg after |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in ("one_provider", "three_providers"):
        for i, r in enumerate(t[key], 1):
            lines.append(
                f"| {key.replace('_', ' ')} #{i} | {r['providers']} | "
                f"{r['fetch_seconds']} | {r['fetch_MBps']} | {r['wall_seconds']} | "
                f"{r['wall_MBps']} | `{r['loadavg']}` |"
            )
    medians = {}
    for key in ("one_provider", "three_providers"):
        rates = sorted(r["fetch_MBps"] for r in t[key])
        medians[key] = statistics.median(rates)
        lines.append(
            f"\n{key.replace('_', ' ')}: transfer median {medians[key]} MB/s, "
            f"best {rates[-1]} MB/s."
        )
    last = t["three_providers"][-1]
    share = last.get("bytes_by_name") or last["bytes_by_provider"]
    lines += [
        "",
        "Three providers / one (medians): "
        f"{medians['three_providers'] / medians['one_provider']:.2f}x.",
        "",
        f"Bytes per provider in the last three-provider fetch: {share}.",
    ]
    if "cpu_seconds" in last:
        one = t["one_provider"][-1]["cpu_seconds"]
        lines += [
            "",
            f"CPU seconds of each daemon during the last fetch from one provider: {one}; "
            f"from three: {last['cpu_seconds']}.",
        ]
    return [*lines, ""]


def _links(n: dict[str, Any]) -> list[str]:
    """What crossed the shaped links in the last fetch of each kind, and the qdiscs."""
    lines = [
        "What crossed each link (bytes of frames sent by its qdisc, drops) in the last "
        "fetch of each kind:",
        "",
        "| fetch | " + " | ".join(n["one_provider"][-1]["links"]) + " |",
        "|---|" + "---|" * len(n["one_provider"][-1]["links"]),
    ]
    for key in ("one_provider", "three_providers"):
        cells = [
            f"{c['bytes'] / 1e6:.1f} MB" + (f", {c['dropped']} dropped" if c["dropped"] else "")
            for c in n[key][-1]["links"].values()
        ]
        lines.append(f"| {key.replace('_', ' ')} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The qdiscs (`tc qdisc show`; up: on the node's end of its veth, down: on the switch's):",
        "",
    ]
    for node, ways in n["qdiscs"].items():
        for way, shown in ways.items():
            lines.append(f"    {node} {way}: {shown}")
    return [*lines, ""]


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Meta-filesystem figures",
        "",
        "Written by `bench/bench_mfs.py` (each part's command below; a part run alone "
        "replaces only its own section). The machine is shared with other agents' work: "
        "load averages are recorded with every figure.",
        "",
    ]
    for part in ("transfer", "capped"):
        t = results.get(part)
        if not t:
            continue
        capped = t["provider_rate_mib_s"]
        lines += [
            f"## A {t['size_mib']} MiB file between daemons on loopback"
            + (f", each provider's upload capped at {capped} MiB/s" if capped else ""),
            "",
            *_ran(t),
            f"loadavg before: `{t['loadavg_before']}`, after: `{t['loadavg_after']}`; "
            f"`fs put` on A took {t['put_seconds']} s.",
            "",
            *_transfers(t),
        ]
    n = results.get("netns")
    if n:
        fetcher = f"{n['fetcher_mbit']:g} Mbit/s" if n["fetcher_mbit"] else "not shaped"
        lines += [
            f"## A {n['size_mib']} MiB file between daemons in network namespaces, "
            f"each provider's link at {n['link_mbit']:g} Mbit/s",
            "",
            *_ran(n),
        ]
        if "skipped" in n:
            lines += [f"Skipped: {n['skipped']}.", ""]
        else:
            line_rate = n["link_mbit"] * 1e6 / 8 / 1e6
            lines += [
                "Each daemon in its own network namespace, cabled by a veth pair to a "
                "bridge in a switch namespace (tests/netns.py); every link shaped with a "
                "`tc` token bucket both ways: the providers A, B and C at "
                f"{n['link_mbit']:g} Mbit/s ({line_rate:.1f} MB/s of Ethernet frames, "
                f"headers included), the fetcher F {fetcher}. No cap in the application.",
                "",
                f"loadavg before: `{n['loadavg_before']}`, after: `{n['loadavg_after']}`; "
                f"`fs put` on A took {n['put_seconds']} s, B's and C's pins (over their "
                f"links) {n['pin_seconds']} s.",
                "",
                *_transfers(n),
                *_links(n),
            ]
    s = results.get("small")
    if s:
        lines += [
            f"## Adding {s['files']:,} small files",
            "",
            *_ran(s),
            f"loadavg before: `{s['loadavg_before']}`, after: `{s['loadavg_after']}`.",
            "",
            "| files | seconds | files/s | manifest bytes | per file |",
            "|---|---|---|---|---|",
            f"| {s['files']} | {s['seconds']} | {s['files_per_second']} | "
            f"{s['manifest_bytes']:,} | {s['manifest_bytes_per_file']} |",
            "",
        ]
    return "\n".join(lines)


def load(path: Path) -> dict[str, Any]:
    """The results written before, each part with its own command, time and machine
    (those of a file written by an earlier version of this script apply to all)."""
    try:
        old: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    for part in PARTS:
        if part in old:
            for key in ("command", "at", "machine"):
                old[part].setdefault(key, old.get(key, "n/a"))
    return {part: old[part] for part in PARTS if part in old}


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that every finally block runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--capped-mib", type=int, default=128, help="file size for capped")
    parser.add_argument("--rate-mib", type=float, default=24.0, help="capped providers' MiB/s")
    parser.add_argument(
        "--size-mib", "--mib", type=int, default=256, help="file size for transfer and netns"
    )
    parser.add_argument(
        "--link-mbit", type=float, default=400.0, help="netns: each provider's link, Mbit/s"
    )
    parser.add_argument(
        "--fetcher-mbit",
        type=float,
        default=None,
        help="netns: the fetcher's link, Mbit/s (default 3x --link-mbit; 0: not shaped)",
    )
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="transfers of each kind")
    parser.add_argument("--out", default="MFS")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)
    fetcher_mbit = 3 * args.link_mbit if args.fetcher_mbit is None else args.fetcher_mbit
    ran = {
        "command": " ".join(["python bench/bench_mfs.py", *sys.argv[1:]]),
        "at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
    }
    results = load(RESULTS / f"{args.out}.json")
    wanted = PARTS if args.part == "all" else (args.part,)
    with tempfile.TemporaryDirectory(prefix="bench-mfs-") as tmp:
        for part in wanted:
            root = Path(tmp) / part
            if part == "transfer":
                out = bench_transfer(root, args.size_mib, args.repeat)
            elif part == "capped":
                out = bench_transfer(root, args.capped_mib, args.repeat, args.rate_mib)
            elif part == "netns":
                out = bench_netns(root, args.size_mib, args.repeat, args.link_mbit, fetcher_mbit)
                if "skipped" in out:
                    print(f"netns skipped: {out['skipped']}", file=sys.stderr, flush=True)
            else:
                out = bench_small(root, args.files)
            results[part] = {**ran, **out}
            print(json.dumps(results[part], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{args.out}.md").write_text(report(results) + "\n")
    print(report(results))


if __name__ == "__main__":
    main()
