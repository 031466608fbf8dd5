"""Figures for "no single peer can stop a node": each measured by the real-daemon test
that proves the behaviour, run here several times on an idle machine and with the
machine loaded by two CPU hogs, the figures the tests print collected into
bench/results/ROBUSTNESS.md.

    .venv/bin/python bench/bench_robustness.py [--runs 3]

- restart: a founder SIGKILLed under a stream of submits and started again: seconds
  from `colonynode start` until both members are connected to it (tests/test_restart.py);
- keepers: median submit-to-acknowledged latency with a never-started and a SIGSTOPped
  member, as a ratio to the same colony with everyone up (tests/test_unavailable_keepers.py);
- fuzz: what the daemon refused, by protocol and reason, after every protocol was fuzzed
  from a member's key and a stranger's (tests/test_fuzz_protocols.py), and that it
  served and ran work throughout.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ROBUSTNESS.md"
TESTS = {
    "restart": "tests/test_restart.py::"
    "test_a_founder_killed_under_load_comes_back_and_finishes_what_was_acknowledged",
    "keepers": "tests/test_unavailable_keepers.py",
    "fuzz": "tests/test_fuzz_protocols.py",
}
PATTERNS = {
    "restart": re.compile(r"restart: up in ([\d.]+) s, connected to both members ([\d.]+) s"),
    "keepers": re.compile(r"all up ([\d.]+) ms; a never-started and a stopped member ([\d.]+) ms"),
    "fuzz": re.compile(r"^(member|stranger): status refused (.*)$", re.M),
}


@contextmanager
def hogs(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def run(test: str) -> tuple[bool, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q", "-s", test],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return done.returncode == 0, done.stdout, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows: list[str] = []
    for load in ("idle", "loaded"):
        with hogs(2 if load == "loaded" else 0):
            time.sleep(1)
            for name, test in TESTS.items():
                for i in range(args.runs if name != "fuzz" else 1):
                    ok, out, took = run(test)
                    figures = PATTERNS[name].findall(out)
                    load_avg = os.getloadavg()[0]
                    verdict = "passed" if ok else "FAILED"
                    rows.append(
                        f"| {name} | {load} ({load_avg:.1f}) | {i + 1} | {verdict} | "
                        f"{_figure(name, figures)} | {took:.0f} s |"
                    )
                    print(rows[-1], flush=True)
    text = [
        "# No single peer can stop a node: figures",
        "",
        f"Measured with `.venv/bin/python bench/bench_robustness.py --runs {args.runs}` "
        f"on {time.strftime('%Y-%m-%d')}, this 2-core machine; `loaded` runs with two "
        "CPU hogs (`while True: pass`) beside the daemons; the load average is in brackets.",
        "",
        "| what | machine | run | test | figure | took |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    RESULTS.write_text("\n".join(text))
    print(f"wrote {RESULTS}")


def _figure(name: str, found: list[tuple[str, str]]) -> str:
    if not found:
        return "(not printed)"
    if name == "restart":
        up, connected = found[0]
        return f"up {up} s; both members connected {connected} s after start"
    if name == "keepers":
        all_up, degraded = float(found[0][0]), float(found[0][1])
        return (
            f"ack median {all_up:.1f} ms all up, {degraded:.1f} ms degraded: "
            f"ratio {degraded / all_up:.2f}"
        )
    return "; ".join(f"{who}: {refused}" for who, refused in found)


if __name__ == "__main__":
    main()
