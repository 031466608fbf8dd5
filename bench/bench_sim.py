"""Benchmarks of the protocol core in the simulator; writes bench/results/SIMULATOR.md and .json.

    .venv/bin/python bench/bench_sim.py            # everything (about 25 minutes on 2 cores)
    .venv/bin/python bench/bench_sim.py --part figures
    .venv/bin/python bench/bench_sim.py --part scaling --sizes 100 1000
    .venv/bin/python bench/bench_sim.py --part byzantine --seeds 100
    .venv/bin/python bench/bench_sim.py --part churn --churn-seeds 100 --harsh-seeds 10

figures: continuum-1000 (1,000 members, 10,000 specs, faults) with seed 1 twice (same
trace digest?) and with seed 2 (a different one?). scaling: the ``scaling`` scenario's
workload on colonies of 100, 1,000 and 5,000 members. byzantine: the ``byzantine``
scenario (three lying members among 32) over many seeds: no lie may be accepted.
churn: ``churn-small`` and ``churn-harsh`` (heavy loss, crashes, overlapping partitions,
revocations of keepers) over many seeds: nothing lost or stuck, and how long after the
last fault the last process ended.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import simulate

RESULTS = Path(__file__).resolve().parent / "results"


def run(s: scenarios.Scenario, seed: int) -> dict[str, Any]:
    print(f"  {s.name} ({s.nodes} members, {s.workload.specs} specs), seed {seed} ...", flush=True)
    summary = simulate(s, seed).summary()
    summary.pop("counters")
    print(f"    {json.dumps(summary)}", flush=True)
    return summary


def byzantine_runs(seeds: int, name: str = "byzantine") -> dict[str, Any]:
    """Scenario ``name`` (``byzantine``, ``byzantine-keepers``) with seeds 1 to ``seeds``:
    per seed, whether a lie got through (the checker's violation), what was lost, and how
    many lies were refused."""
    s = scenarios.load(name)
    rows = []
    for seed in range(1, seeds + 1):
        result = simulate(s, seed)
        c = result.counters
        v = result.violation
        row = {
            "seed": seed,
            "violation": None if v is None else f"{v.invariant}: {v.detail}",
            "lost": len(result.lost),
            "terminal": result.terminal,
            "successful": result.successful,
            "failed": result.failed,
            "attacks": sum(n for k, n in c.items() if k.startswith("byzantine_")),
            "refused": sum(n for k, n in c.items() if k.startswith("rejected_")),
            "wall_seconds": round(result.wall_seconds, 2),
            "trace_digest": result.trace_digest,
        }
        rows.append(row)
        print(f"    {json.dumps(row)}", flush=True)
    return {
        "command": f"python bench/bench_sim.py --part byzantine --seeds {seeds}",
        "scenario": name,
        "members": s.nodes,
        "liars": s.faults.byzantine,
        "specs": s.workload.specs,
        "runs": rows,
        "clean": sum(1 for r in rows if r["violation"] is None and not r["lost"] and r["terminal"]),
    }


def churn_runs(name: str, seeds: int) -> dict[str, Any]:
    """``name`` with seeds 1 to ``seeds``: per seed what broke, what was lost or stuck, and
    how long after the last fault the last process ended."""
    s = scenarios.load(name)
    rows = []
    for seed in range(1, seeds + 1):
        result = simulate(s, seed)
        v = result.violation
        row = {
            "seed": seed,
            "violation": None if v is None else f"{v.invariant}: {v.detail}",
            "lost": len(result.lost),
            "terminal": result.terminal,
            "duplicates": result.duplicate_results,
            "stale_accepts": result.stale_epoch_accepts,
            "last_fault": round(result.last_fault, 1),
            "settled_after": round(result.simulated_seconds - result.last_fault, 1)
            if result.terminal
            else None,
            "revocations": result.counters.get("revocations", 0),
            "crashes": result.counters.get("crashes", 0),
            "wall_seconds": round(result.wall_seconds, 1),
            "trace_digest": result.trace_digest,
        }
        rows.append(row)
        print(f"    {json.dumps(row)}", flush=True)
    return {
        "command": f"python bench/bench_sim.py --part churn (seeds 1 to {seeds})",
        "scenario": name,
        "members": s.nodes,
        "specs": s.workload.specs,
        "settle_seconds": s.settle_seconds,
        "runs": rows,
        "clean": sum(1 for r in rows if r["violation"] is None and not r["lost"] and r["terminal"]),
    }


def sized(base: scenarios.Scenario, members: int) -> scenarios.Scenario:
    """``base`` with its executor groups scaled so the colony has ``members`` members."""
    executors = members - 1 - base.colony.admins - base.colony.users
    total = base.executors
    groups = [
        dataclasses.replace(g, count=max(1, round(g.count * executors / total)))
        for g in base.colony.executors
    ]
    groups[0] = dataclasses.replace(
        groups[0], count=groups[0].count + executors - sum(g.count for g in groups)
    )
    colony = dataclasses.replace(base.colony, executors=tuple(groups))
    return dataclasses.replace(base, name=f"{base.name}-{members}", colony=colony)


def measured() -> str:
    """The commit and day a part ran at, for its section (parts run separately)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"commit {commit}, {time.strftime('%Y-%m-%d')}"


def stamp_line(part: dict[str, Any]) -> list[str]:
    at = part.get("measured")
    if at is None:
        return [
            "Measured at an earlier commit than this file's other sections (the run",
            "predates these stamps and the core changes since; not re-run).",
            "",
        ]
    return [f"Measured at {at}.", ""]


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["all", "figures", "scaling", "byzantine", "churn"], default="all"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--seeds", type=int, default=100, help="byzantine: seeds 1..N")
    parser.add_argument("--churn-seeds", type=int, default=100, help="churn-small: seeds 1..N")
    parser.add_argument("--harsh-seeds", type=int, default=10, help="churn-harsh: seeds 1..N")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "simulator.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["machine"] = machine()
    ok = True
    if args.part in ("all", "figures"):
        print("figures: continuum-1000", flush=True)
        big = scenarios.load("continuum-1000")
        first = run(big, 1)
        again = run(big, 1)
        other = run(big, 2)
        results["figures"] = {
            "command": "python bench/bench_sim.py --part figures",
            "seed1": first,
            "seed1_again": again,
            "seed2": other,
            "same_seed_same_digest": first["trace_digest"] == again["trace_digest"],
            "other_seed_other_digest": first["trace_digest"] != other["trace_digest"],
            "measured": measured(),
        }
        for r in (first, other):
            ok &= r["lost"] == 0 and r["duplicate_results"] == 0
            ok &= r["stale_epoch_accepts"] == 0 and r["terminal"] and r["violation"] is None
        ok &= results["figures"]["same_seed_same_digest"]
        ok &= results["figures"]["other_seed_other_digest"]
    if args.part in ("all", "scaling"):
        print("scaling", flush=True)
        base = scenarios.load("scaling")
        rows = [run(sized(base, n), 1) for n in args.sizes]
        results["scaling"] = {
            "command": "python bench/bench_sim.py --part scaling --sizes "
            + " ".join(map(str, args.sizes)),
            "runs": rows,
            "measured": measured(),
        }
        for r in rows:
            ok &= r["lost"] == 0 and r["duplicate_results"] == 0 and r["terminal"]
    if args.part in ("all", "byzantine"):
        print(f"byzantine: seeds 1 to {args.seeds}", flush=True)
        for name in ("byzantine", "byzantine-keepers"):
            results[name] = byz = byzantine_runs(args.seeds, name)
            byz["measured"] = measured()
            ok &= byz["clean"] == len(byz["runs"])
    if args.part in ("all", "churn"):
        churn = results["churn"] = {}
        for name, seeds in (("churn-small", args.churn_seeds), ("churn-harsh", args.harsh_seeds)):
            print(f"churn: {name}, seeds 1 to {seeds}", flush=True)
            churn[name] = runs = churn_runs(name, seeds)
            runs["measured"] = measured()
            ok &= runs["clean"] == len(runs["runs"])
    path.write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "SIMULATOR.md").write_text(markdown(results))
    print(f"written: {path} and {RESULTS / 'SIMULATOR.md'}; all checks {'pass' if ok else 'FAIL'}")
    return 0 if ok else 1


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        "# Simulator benchmarks",
        "",
        "Written by `bench/bench_sim.py` (run it with `make bench`, or the commands below).",
        f"Machine: {m['cpus']} CPUs, {m['processor']}, Python {m['python']}, "
        f"{m['platform']}; {m['date']}.",
        "",
    ]
    fig = results.get("figures")
    if fig:
        out += [
            "## The figures of the protocol core: `continuum-1000`",
            "",
            "1,000 members (969 executors), 10,000 specs of which 1,500 in workflows, 10% of",
            "the members crash and restart, 5% message loss (1% duplicated, jitter reorders),",
            "a partition cutting off 30% for 60 s that heals, 10 joins and 10 revocations,",
            "clock skew up to 0.5 s.",
            "",
            f"Command: `{fig['command']}`",
            "",
            *stamp_line(fig),
            "| run | lost | duplicate results | stale-epoch accepts | terminal "
            "| successful | failed | simulated s | wall s | events | events/wall s | digest |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, key in (
            ("seed 1", "seed1"),
            ("seed 1 again", "seed1_again"),
            ("seed 2", "seed2"),
        ):
            r = fig[key]
            out.append(
                f"| {label} | {r['lost']} | {r['duplicate_results']} | "
                f"{r['stale_epoch_accepts']} | {r['terminal']} | {r['processes_successful']} | "
                f"{r['processes_failed']} | {r['simulated_seconds']:.0f} | "
                f"{r['wall_seconds']:.0f} | {r['events']:,} | "
                f"{r['events_per_wall_second']:,} | `{r['trace_digest'][:16]}` |"
            )
        out += [
            "",
            f"- Same seed, same trace digest: **{fig['same_seed_same_digest']}**.",
            f"- Different seed, different digest: **{fig['other_seed_other_digest']}**.",
            "",
        ]
    sc = results.get("scaling")
    if sc:
        out += [
            "## How wall time grows with the colony",
            "",
            "The `scaling` scenario's workload (2,000 specs, 300 in workflows, 10% crashes,",
            "5% loss, a partition) on colonies of different sizes.",
            "",
            f"Command: `{sc['command']}`",
            "",
            *stamp_line(sc),
            "| members | executors | lost | duplicate results | terminal | simulated s "
            "| wall s | events | events/wall s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sc["runs"]:
            out.append(
                f"| {r['nodes']:,} | {r['executors']:,} | {r['lost']} | "
                f"{r['duplicate_results']} | {r['terminal']} | {r['simulated_seconds']:.0f} | "
                f"{r['wall_seconds']:.1f} | {r['events']:,} | {r['events_per_wall_second']:,} |"
            )
        out += [
            "",
            "Wall time grows faster than the event count: an announcement is one event",
            "but is handed to every subscriber of its topic (a spec's executor type), and",
            "every member's keeper ticks once a simulated second, so the work per event",
            "grows with the colony; protocol messages per process stay constant (its k = 5",
            "keepers).",
            "",
        ]
    for name, who in (
        (
            "byzantine",
            "lie (role `user`, valid keys, five attacks a second each: forged Install, Decide,"
            " Status, Accept, claims and fail/move/recover ballots, planted specs with bad"
            " signatures, forged parent outputs, self-signed and forged membership versions,"
            " a user's ad, log lines)",
        ),
        (
            "byzantine-keepers",
            "lie as members that may keep records (role `executor` without an ad: they keep"
            " records and run the protocol for them, and lie about every other process: the"
            " attacks above but claims, and Install, Decide and Status also to members that"
            " never held the record, records handed to keeper sets of their own)",
        ),
    ):
        byz = results.get(name)
        if not byz:
            continue
        runs = byz["runs"]
        caught = [r for r in runs if r["violation"] is not None]
        out += [
            f"## Byzantine members: `{name}`",
            "",
            *textwrap.wrap(
                f"{byz['members']} members of which {byz['liars']} {who}; {byz['specs']} specs,"
                " 10% crashes, 3% loss, 2 joins and 2 revocations. The checker fails a run on"
                " any lie accepted anywhere (see docs/SIMULATOR.md).",
                88,
            ),
            "",
            f"Command: `{byz['command']}`",
            "",
            *stamp_line(byz),
            f"- Seeds run: **{len(runs)}**; clean (no lie accepted, nothing lost, every process "
            f"ended): **{byz['clean']}**.",
            f"- Attacks sent: {sum(r['attacks'] for r in runs):,}; inputs refused: "
            f"{sum(r['refused'] for r in runs):,}.",
            f"- Wall time per run: {min(r['wall_seconds'] for r in runs):.1f} to "
            f"{max(r['wall_seconds'] for r in runs):.1f} s.",
        ]
        for r in caught:
            out.append(f"- seed {r['seed']}: {r['violation']}")
        out.append("")
    for name, ch in (results.get("churn") or {}).items():
        runs = ch["runs"]
        settled = sorted(r["settled_after"] for r in runs if r["settled_after"] is not None)

        def pct(q: float, values: list[float] = settled) -> str:
            return (
                "-" if not values else f"{values[min(len(values) - 1, int(q * len(values)))]:.0f}"
            )

        out += [
            f"## Heavy churn: `{name}`",
            "",
            f"{ch['members']} members, {ch['specs']} specs; 20% message loss, 5% duplicated,",
            "30% of the members crash for up to 120 s, two overlapping partitions (40% and 50%",
            "of the colony), joins and revocations of executors (keepers and holders among",
            "them), clock skew up to 2 s (see the scenario file). A run is clean when no",
            "invariant broke (including **stuck**: a process not ended",
            f"{ch['settle_seconds']:.0f} s after the last fault), nothing was lost and every",
            "process ended.",
            "",
            f"Command: `{ch['command']}`",
            "",
            *stamp_line(ch),
            f"- Seeds run: **{len(runs)}**; clean: **{ch['clean']}**.",
            f"- Lost: {sum(r['lost'] for r in runs)}; duplicate results: "
            f"{sum(r['duplicates'] for r in runs)}; stale-epoch accepts: "
            f"{sum(r['stale_accepts'] for r in runs)}.",
            f"- From the last fault to the last process ending (s): p50 {pct(0.5)}, "
            f"p99 {pct(0.99)}, max {pct(1.0)} (a run may end before its last fault: "
            "negative).",
            f"- Wall time per run: {min(r['wall_seconds'] for r in runs):.1f} to "
            f"{max(r['wall_seconds'] for r in runs):.1f} s.",
        ]
        for r in runs:
            if r["violation"] is not None or r["lost"] or not r["terminal"]:
                what = r["violation"] or "not every process ended by the end of the run"
                out.append(f"- seed {r['seed']}: lost {r['lost']}; {what}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
