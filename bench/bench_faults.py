"""The fault harness (issue 17, item 1): real colonynode daemons, each in a network
namespace of its own, under a seeded schedule of faults while clients submit specs and
workflows; a checker reads the history and exits 1 on any lost process, duplicate result,
stale-epoch accept, workflow order violated or daemon crash that was not injected.

    .venv/bin/python bench/bench_faults.py --nodes 5 --minutes 2 --seed 1
    .venv/bin/python bench/bench_faults.py --replay bench/results/faults-NAME.schedule.json
    .venv/bin/python bench/bench_faults.py --nodes 3 --minutes 1 --loopback

Needs root for namespaces, nftables and the disk node's tmpfs; where namespaces are not
permitted it says so and runs on loopback without network faults. Writes
bench/results/faults.json, faults-NAME.png, faults-NAME.schedule.json and the generated
part of bench/results/FAULTS.md (see that file for how to read them); the history (JSON
lines) and the daemons' logs stay in --workdir.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.faults import history, report
from bench.faults.checker import check
from bench.faults.run import Options, run, summary

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--nodes", type=int, default=5, help="daemons (at most 10 on a shared 2-core machine)"
    )
    p.add_argument(
        "--minutes", type=float, default=2.0, help="of faults and workload, then the drain"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replay", type=Path, help="a schedule written by an earlier run")
    p.add_argument("--loopback", action="store_true", help="no namespaces: no network faults")
    p.add_argument("--rate", type=float, default=3.0, help="processes a second, all clients")
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--workflow-share", type=float, default=0.2, help="of submissions")
    p.add_argument("--sleep-share", type=float, default=0.5, help="of single specs: sleep 1-4 s")
    p.add_argument("--drain", type=float, default=180.0, help="seconds at most for the rest to end")
    p.add_argument("--name", help="the run's name in the results (default NODESxMINUTES-sSEED)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--workdir", type=Path, help="homes, logs and history (default a new temp dir)")
    p.add_argument(
        "--check",
        type=Path,
        metavar="HISTORY",
        help="only check a written history.jsonl again (its run's entry, --name, is updated)",
    )
    a = p.parse_args()
    if a.check is not None:
        return recheck(a.check, a.name, a.out)

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # the run's finally kills the daemons and the namespaces

    signal.signal(signal.SIGTERM, interrupted)
    name = a.name or (
        f"replay-{a.replay.stem.removeprefix('faults-').removesuffix('.schedule')}"
        if a.replay
        else f"{a.nodes}x{a.minutes:g}min-s{a.seed}"
    ) + ("-loopback" if a.loopback else "")
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix="cp2p-faults-"))
    opts = Options(
        nodes=a.nodes,
        seconds=a.minutes * 60,
        seed=a.seed,
        loopback=a.loopback,
        rate=a.rate,
        clients=a.clients,
        workflow_share=a.workflow_share,
        sleep_share=a.sleep_share,
        drain=a.drain,
        replay=a.replay,
    )
    code = code_under_test()  # before the run: the daemons load what is there at start
    print(f"run {name} of {code}: homes, logs and history in {workdir}", flush=True)
    outcome = run(opts, workdir, workdir / "history.jsonl")
    a.out.mkdir(parents=True, exist_ok=True)
    outcome.schedule.write(a.out / f"faults-{name}.schedule.json")
    report.plot(outcome.records, outcome.started, a.out / f"faults-{name}.png", name)
    v = outcome.verdict
    entry = {
        "command": " ".join([".venv/bin/python", "bench/bench_faults.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(outcome.started)),
        "mode": outcome.mode,
        "code": code,
        "why_loopback": outcome.why_loopback,
        "nodes": outcome.schedule.nodes,
        "seed": outcome.schedule.seed,
        "seconds_of_faults": outcome.schedule.seconds,
        "faults_skipped": sum(r["type"] == "fault" and not r["done"] for r in outcome.records),
        # why a fault was skipped, or what it did that is worth knowing (a full disk's)
        "fault_notes": [
            f"{r['event']['at']:g} s {r['event']['kind']} {','.join(r['event']['nodes'])}: "
            f"{r['note'].removeprefix('ok: ')}"
            for r in outcome.records
            if r["type"] == "fault" and r["note"]
        ],
        "seconds": outcome.seconds,
        "ok": v.ok,
        "counts": v.counts(),
        "figures": v.figures,
        # the first few of each, with what identifies them in the logs
        "violations": {k: found[:20] for k, found in v.violations.items() if found},
        "workdir": str(workdir),
    }
    report.save(a.out, name, entry)
    print(json.dumps(summary(outcome), indent=1))
    for kind, found in v.violations.items():
        for item in found[:10]:
            print(f"VIOLATION {kind}: {json.dumps(item)[:400]}")
    print(
        "pass" if v.ok else "FAIL", f"(results in {a.out}, history in {workdir / 'history.jsonl'})"
    )
    return 0 if v.ok else 1


def code_under_test() -> str:
    """The commit the daemons ran, and the product files changed in the work tree then
    (others edit it while runs go on: a run's verdict is about that code)."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        return done.stdout.strip()

    changed = [
        line[3:]
        for line in git(
            "status", "--porcelain", "--", "colonyp2p", "node", "executors", "mfs"
        ).splitlines()
    ]
    head = git("rev-parse", "--short=12", "HEAD")
    return head + (f" + uncommitted: {', '.join(changed)}" if changed else "")


def recheck(path: Path, name: str | None, out: Path) -> int:
    """The checker again on a run's history (after the checker changed, say): prints the
    verdict and, with ``name``, replaces that run's verdict and plot in the results."""
    records = history.read(path)
    if not any(r["type"] in ("start", "decided") for r in records):
        # an interrupted run: its daemons' events were never read into the history
        records += history.read_daemon_logs(path.parent / "logs", records)
    begin = next(r for r in records if r["type"] == "begin")
    end = next((r["t"] for r in records if r["type"] == "end_of_faults"), None)
    v = check(records, end_of_faults=end)
    if name:
        runs = json.loads((out / "faults.json").read_text())
        runs[name]["figures"].update(v.figures)
        runs[name].update(
            ok=v.ok,
            counts=v.counts(),
            violations={k: found[:20] for k, found in v.violations.items() if found},
        )
        report.save(out, name, runs[name])
        report.plot(records, begin["t"], out / f"faults-{name}.png", name)
    print(json.dumps({"ok": v.ok, "counts": v.counts(), **v.figures}, indent=1))
    return 0 if v.ok else 1


if __name__ == "__main__":
    sys.exit(main())
