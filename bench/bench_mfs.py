"""Benchmarks of the meta-filesystem between real daemons; writes bench/results/MFS.md and .json.

    .venv/bin/python bench/bench_mfs.py                  # everything (a few minutes)
    .venv/bin/python bench/bench_mfs.py --size-mib 64    # a smaller file
    .venv/bin/python bench/bench_mfs.py --part small     # or transfer

transfer: four daemons on 127.0.0.1 (one process each, started with the real CLI as
tests/cluster.py does). A puts a file of random bytes (``fs put``); B and C pin it (so
they hold it too); F then fetches it ``--repeat`` times from A alone and as many times
from A, B and C at once (``fs get`` with ``providers``), alternately, after an ``fs gc``
that drops F's copy. The figure is the fetch job's own transfer time (from the provider
lookup to the last block verified and durable in F's store), and the whole ``fs get``
(with writing the file out) beside it.
small: 10,000 small files (1-2 KiB of random bytes each, in 100 directories) added by
``fs put`` through the API: files per second, and the size of the manifests written.

The machine is shared: /proc/loadavg is recorded before and after each part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cluster import Node, cluster, wait_for

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "n/a"


def job(node: Node, op: str, timeout: float = 600.0, **args: Any) -> dict[str, Any]:
    with node.api() as api:
        started = api.fs(op, **args)
        deadline = time.monotonic() + timeout
        while True:
            state = api.fs_job(started["job"])
            if state["state"] != "running":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"fs {op} on {node.name} still running after {timeout} s")
            time.sleep(0.05)
    if state["state"] != "done":
        raise AssertionError(f"fs {op} on {node.name} failed: {state['error']}")
    return dict(state)


def labels_of(node: Node) -> list[dict[str, Any]]:
    with node.api() as api:
        labels: list[dict[str, Any]] = api.fs("ls")["labels"]
        return labels


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
        src = root / "src"
        src.mkdir()
        with open(src / "big.bin", "wb") as file:
            for _ in range(size_mib):
                file.write(os.urandom(MiB))
        t = time.perf_counter()
        put = job(a, "put", src=str(src), label="/bench/big")
        out["put_seconds"] = round(time.perf_counter() - t, 3)
        out["put"] = put["result"]
        for n in (b, cc, f):
            wait_for(partial(labels_of, n), 30, f"the label on {n.name}")
        job(b, "pin", ref="/bench/big")
        job(cc, "pin", ref="/bench/big")

        def fetch(providers: list[str]) -> dict[str, Any]:
            # f holds nothing of the file before (gc), and fetches it from ``providers``
            with f.api() as api:
                api.fs("gc")
            dest = root / "out"
            t = time.perf_counter()
            state = job(f, "get", ref="/bench/big", dest=str(dest), providers=providers)
            wall = time.perf_counter() - t
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
                "blocks": s["fetched_blocks"],
                "rounds": s["rounds"],
                "bad_blocks": s["bad_blocks"],
                "loadavg": loadavg(),
            }

        one = [a.member_id]
        three = [a.member_id, b.member_id, cc.member_id]
        out["one_provider"], out["three_providers"] = [], []
        for _ in range(repeat):  # alternated, so that a change of load hits both alike
            out["one_provider"].append(fetch(one))
            out["three_providers"].append(fetch(three))
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


def report(results: dict[str, Any], command: str) -> str:
    lines = [
        "# Meta-filesystem figures",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; shared with other agents (load averages below). "
        f"Run at {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
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
            f"loadavg before: `{t['loadavg_before']}`, after: `{t['loadavg_after']}`; "
            f"`fs put` on A took {t['put_seconds']} s.",
            "",
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
        for key in ("one_provider", "three_providers"):
            rates = sorted(r["fetch_MBps"] for r in t[key])
            lines.append(
                f"\n{key.replace('_', ' ')}: transfer median {statistics.median(rates)} MB/s, "
                f"best {rates[-1]} MB/s."
            )
        share = t["three_providers"][-1]["bytes_by_provider"]
        lines += ["", f"Bytes per provider in the last three-provider fetch: {share}.", ""]
    s = results.get("small")
    if s:
        lines += [
            f"## Adding {s['files']:,} small files",
            "",
            f"loadavg before: `{s['loadavg_before']}`, after: `{s['loadavg_after']}`.",
            "",
            "| files | seconds | files/s | manifest bytes | per file |",
            "|---|---|---|---|---|",
            f"| {s['files']} | {s['seconds']} | {s['files_per_second']} | "
            f"{s['manifest_bytes']:,} | {s['manifest_bytes_per_file']} |",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["transfer", "capped", "small", "all"], default="all")
    parser.add_argument("--capped-mib", type=int, default=128, help="file size for capped")
    parser.add_argument("--rate-mib", type=float, default=24.0, help="capped providers' MiB/s")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="transfers of each kind")
    parser.add_argument("--out", default="MFS")
    args = parser.parse_args()
    command = "python bench/bench_mfs.py " + " ".join(sys.argv[1:])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-mfs-") as tmp:
        if args.part in ("transfer", "all"):
            results["transfer"] = bench_transfer(Path(tmp) / "t", args.size_mib, args.repeat)
            print(json.dumps(results["transfer"], indent=1), flush=True)
        if args.part in ("capped", "all"):
            results["capped"] = bench_transfer(
                Path(tmp) / "k", args.capped_mib, args.repeat, args.rate_mib
            )
            print(json.dumps(results["capped"], indent=1), flush=True)
        if args.part in ("small", "all"):
            results["small"] = bench_small(Path(tmp) / "s", args.files)
            print(json.dumps(results["small"], indent=1), flush=True)
    results["command"] = command.strip()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{args.out}.md").write_text(report(results, command.strip()) + "\n")
    print(report(results, command.strip()))


if __name__ == "__main__":
    main()
