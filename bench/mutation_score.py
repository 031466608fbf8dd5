"""Mutation score of the protocol's pure code: mutmut over the codec, the wire format,
the client, the keeper's authorization and durability paths, the record's provenance,
the proposer, the executor role, the node's promises (what it believes and shows, a
submission, a lost peer), and the membership and signed-record models, each tested by
the fast unit and property tests only (not the daemon tests: this is not part of the
ten-minute test command).

    .venv/bin/python bench/mutation_score.py                  # every target
    .venv/bin/python bench/mutation_score.py --only codec --only wire
    .venv/bin/python bench/mutation_score.py --list           # the targets and their tests

The script installs mutmut (MUTMUT_VERSION, pinned here, not in requirements.lock: nothing
imports it) into the running interpreter's environment with pip when it is missing or at
another version. mutmut reads its configuration from pyproject.toml, so it runs in a copy
of the repository in a temporary directory (without `.venv`, `.git` and `build`) whose
pyproject.toml gets a `[tool.mutmut]` table; the repository itself is never touched.

mutmut 3 copies the mutated package to `mutants/` and puts it first on `sys.path`; every
target lives under `colonyp2p/` (the folders that setuptools maps into the package, such
as `node/`, are not targets). Each mutant runs in a process forked from mutmut's fork
server (`process_isolation = "forkserver"`), which has either collected the tests
(`forkserver_warmup = "collect"`: client, keeper, provenance, proposer, executor, node,
wire) or imported only third-party modules (`"import"`, PRELOAD: codec, membership,
signed, whose results the project caches at import; see the comment at PRELOAD).
Targets of the two kinds run as two mutmut runs at once, each in its own copy
(`repo-collect`, `repo-import`).

Per target the script prints killed, survived, timeouts, mutants no selected test
reaches, and the score: (killed + timeout) / (every mutant checked), mutants no test
reaches counting as not killed. Then every survivor with its diff (`mutmut show`).

After a run, with the copies kept (`--keep`):

    .venv/bin/python bench/mutation_score.py --report COPY/repo-collect --report COPY/repo-import
    .venv/bin/python bench/mutation_score.py --verify COPY/repo-import  # vs test_mutants_*

Results and every survivor's fate: bench/results/MUTATION.md.

Exit status: 0 when no mutant survived, 1 when some did, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
MUTMUT_VERSION = "3.8.1"
SKIP = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "out",
    "mutants",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "*.egg-info",
)
# pytest options for every mutant: one process, fixed order, stop at the first failure
PYTEST_ARGS = ("-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-n", "0")
# the fast selections: unit and property tests of the pure code, no daemon, no network
CODEC_TESTS = (
    "tests/test_codec.py",
    "tests/test_wire.py",
    "tests/test_model.py",
    "tests/test_workflow.py",
)
MODEL_TESTS = (
    *CODEC_TESTS,
    "tests/test_membership.py",
    "tests/test_core_authorization.py",
    "tests/test_store_quota.py",
)
CORE_TESTS = (
    "tests/test_wire.py",
    "tests/test_codec.py",
    "tests/test_store_quota.py",
    "tests/test_matching.py",
    "tests/test_core_authorization.py",
    "tests/test_core_availability.py",
    "tests/test_core_cancel.py",
    "tests/test_core_catchup.py",
    "tests/test_core_fanin.py",
    "tests/test_core_leases.py",
    "tests/test_core_offers.py",
    "tests/test_core_properties.py",
    "tests/test_core_refusals.py",
)
# the client's and keeper's mutants run without the stateful property tests, which take
# a minute a survivor on two shared cores: `--verify COPY --with tests/test_core_properties.py`
# reruns those survivors against them
HANDLER_TESTS = tuple(t for t in CORE_TESTS if t != "tests/test_core_properties.py")
# the rest of the core (proposer, executor, node, provenance) and the keeper since
# 2026-12-08: the handlers' tests, the signed provenance (placements, votes,
# certificates, move chains), the keeper's churn, and the simulator's Byzantine members
# (about 5 s: their lies meet the core's refusals, and a refusal taken away is caught)
ROLE_TESTS = (
    *HANDLER_TESTS,
    "tests/test_core_churn.py",
    "tests/test_core_provenance.py",
    "tests/test_byzantine.py",
)
# plus the tests written to kill this script's survivors (tests/test_mutants_<area>.py)
MUTANT_TESTS_GLOB = "test_mutants_*.py"
# What mutmut's fork server loads before it forks a worker per mutant (`forkserver_warmup`):
# - "collect" collects the tests first, importing the project and the test modules, so a
#   worker starts in no time; safe only for code that no module runs at import (the
#   client's and keeper's methods, the envelope functions);
# - "import" imports only third-party modules (PRELOAD): every worker imports the project
#   with its mutant active. The codec caches what it builds (functools.cache, _PLANS) and
#   the tests build memberships and signed specs at import (through the codec), so a
#   worker forked after collection would keep the unmutated results and report their
#   mutants as survivors.
PRELOAD = (
    "pytest",
    "_pytest.python",
    "hypothesis",
    "hypothesis.strategies",
    "hypothesis.stateful",
    "trio",
    "pytest_trio",
    "xdist",
    "xdist.plugin",
    "pytest_timeout",
    "nacl.signing",
    "nacl.exceptions",
    "cbor2",
)
PRELOAD_FILE = "mutmut_preload.txt"


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # relative to the repository, under colonyp2p/
    tests: tuple[str, ...]
    warmup: str  # "collect" or "import", see above
    # mutmut names of the functions to mutate (fnmatch patterns on the mutant names,
    # `x_<function>` or `xǁ<Class>ǁ<method>`); empty: the whole module
    functions: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")

    def patterns(self) -> tuple[str, ...]:
        if not self.functions:
            return (f"{self.module}.*",)
        return tuple(f"{self.module}.{f}__mutmut_*" for f in self.functions)


# the keeper is large: its authorization checks (who may store, vote, install, and under
# which quota) and the two handlers that persist what those checks let through
KEEPER_FUNCTIONS = (
    "_install_refusal",
    "_ballot_refusal",
    "_value_refusal",
    "_store_quota",
    "on_store",
    "on_install",
)
# node.py is large (its whole module: dispatch, timers, membership adoption): the
# functions that hold its promises, who is believed and what is shown as a result
# (`spec_ok`, `spec_valid`, `proven`, `believes`, `_proven_keepers`, `_on_status`,
# `learned_decision`, `report_result`), a submission's placement, persisted before it is
# sent (`_submit`), and a lost peer's leases (`on_peer_lost`)
NODE_FUNCTIONS = (
    "spec_ok",
    "spec_valid",
    "report_result",
    "proven",
    "believes",
    "_proven_keepers",
    "_on_status",
    "learned_decision",
    "_submit",
    "on_peer_lost",
)
TARGETS = (
    Target("client", "colonyp2p/core/client.py", HANDLER_TESTS, "collect"),
    Target(
        "keeper",
        "colonyp2p/core/keeper.py",
        ROLE_TESTS,
        "collect",
        tuple(f"xǁKeeperRoleǁ{f}" for f in KEEPER_FUNCTIONS),
    ),
    # no module runs these at import ("collect"): the tests build nodes at import
    # (test_core_authorization's _RING) but call none of the node functions mutated
    Target("provenance", "colonyp2p/core/provenance.py", ROLE_TESTS, "collect"),
    Target("proposer", "colonyp2p/core/proposer.py", ROLE_TESTS, "collect"),
    Target("executor", "colonyp2p/core/executor.py", ROLE_TESTS, "collect"),
    Target(
        "node",
        "colonyp2p/core/node.py",
        ROLE_TESTS,
        "collect",
        tuple(f"xǁColonyNodeǁ{f}" for f in NODE_FUNCTIONS),
    ),
    Target("wire", "colonyp2p/wire.py", ("tests/test_wire.py", "tests/test_codec.py"), "collect"),
    Target("signed", "colonyp2p/model/signed.py", MODEL_TESTS, "import"),
    Target("membership", "colonyp2p/model/membership.py", MODEL_TESTS, "import"),
    Target("codec", "colonyp2p/codec.py", CODEC_TESTS, "import"),
)


class RunFailed(Exception):
    """The mutation run cannot be trusted (exit 2)."""


def ensure_mutmut() -> Path:
    """The mutmut executable next to this interpreter, installed at MUTMUT_VERSION."""
    probe = subprocess.run(
        [str(PYTHON), "-m", "pip", "show", "mutmut"], capture_output=True, text=True
    )
    if f"Version: {MUTMUT_VERSION}" not in probe.stdout:
        print(f"installing mutmut=={MUTMUT_VERSION} into {PYTHON.parent.parent}", flush=True)
        subprocess.run(
            [str(PYTHON), "-m", "pip", "install", "-q", f"mutmut=={MUTMUT_VERSION}"], check=True
        )
    exe = PYTHON.parent / "mutmut"
    if not exe.exists():
        raise RunFailed(f"{exe} missing after the install")
    return exe


def toml_list(items: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def mutmut_table(targets: tuple[Target, ...], tests: list[str], preload: Path) -> str:
    return "\n".join(
        (
            "",
            "[tool.mutmut]",
            'source_paths = ["colonyp2p/"]',
            f"only_mutate = {toml_list([t.path for t in targets])}",
            'process_isolation = "forkserver"',
            f"forkserver_warmup = {json.dumps(targets[0].warmup)}",
            f"preload_modules_file = {json.dumps(str(preload))}",
            f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}",
            f"pytest_add_cli_args_test_selection = {toml_list(tests)}",
            "",
        )
    )


def prepare(copy: Path, targets: tuple[Target, ...]) -> list[str]:
    shutil.copytree(ROOT, copy, ignore=SKIP, symlinks=True)
    tests = list(dict.fromkeys(t for target in targets for t in target.tests))
    tests = [t for t in tests if (copy / t).exists()]
    tests += sorted(str(p.relative_to(copy)) for p in (copy / "tests").glob(MUTANT_TESTS_GLOB))
    with (copy / "pyproject.toml").open("a") as f:
        f.write(mutmut_table(targets, tests, copy / PRELOAD_FILE))
    (copy / PRELOAD_FILE).write_text("\n".join(PRELOAD) + "\n")
    return tests


def results(copy: Path, target: Target) -> dict[str, int | None]:
    """mutant name -> mutmut's exit code (None: not run) for the target's mutants."""
    meta = copy / "mutants" / (target.path + ".meta")
    if not meta.exists():
        raise RunFailed(f"no results for {target.name}: {meta} missing")
    codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
    wanted = target.patterns()
    return {k: v for k, v in codes.items() if any(fnmatch.fnmatch(k, p) for p in wanted)}


def status(code: int | None) -> str:
    if code is None:
        return "not checked"
    if code in (1, 3):
        return "killed"
    if code == 0:
        return "survived"
    if code in (5, 33):
        return "no tests"
    if code == 34:
        return "skipped"
    if code in (36, 24, -24, 152, 255):
        return "timeout"
    return f"suspicious ({code})"


def show(mutmut: Path, copy: Path, name: str) -> str:
    out = subprocess.run(
        [str(mutmut), "show", name], cwd=copy, capture_output=True, text=True, check=False
    )
    return "\n".join(ln for ln in out.stdout.splitlines() if ln.startswith(("+", "-", "@@")))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", action="append", choices=[t.name for t in TARGETS])
    ap.add_argument("--list", action="store_true", help="print the targets and exit")
    ap.add_argument("--max-children", type=int, default=1, help="mutants run at once, per group")
    ap.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="seconds per group; then mutmut is stopped and the unchecked mutants counted",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies")
    ap.add_argument("--json", type=Path, help="write the counts and survivors here")
    ap.add_argument(
        "--verify",
        type=Path,
        metavar="COPY",
        help="rerun the survivors of a kept copy (repo-collect or repo-import) against the "
        "repository's current tests/test_mutants_*.py only, and say which they kill",
    )
    ap.add_argument(
        "--report",
        type=Path,
        metavar="COPY",
        action="append",
        help="print the counts of a kept copy (a run stopped early included), no run",
    )
    ap.add_argument(
        "--with",
        dest="with_tests",
        action="append",
        default=[],
        metavar="TEST",
        help="with --verify: run these tests too (e.g. tests/test_core_properties.py)",
    )
    ap.add_argument(
        "--match",
        default="*",
        metavar="PATTERN",
        help="with --verify: only the survivors whose name matches (fnmatch)",
    )
    args = ap.parse_args()
    if args.verify:
        return verify(args.verify.resolve(), args.with_tests, args.match)
    if args.report:
        return report_only(args.report)
    targets = tuple(t for t in TARGETS if not args.only or t.name in args.only)
    if args.list:
        for t in targets:
            print(t.name, t.path, t.warmup, " ".join(t.patterns()))
            print("   tests:", " ".join(t.tests), f"tests/{MUTANT_TESTS_GLOB}")
        return 0
    # one mutmut run per warm-up mode (the setting is mutmut's, not a target's), at once
    groups = [
        tuple(t for t in targets if t.warmup == w)
        for w in ("collect", "import")
        if any(t.warmup == w for t in targets)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="colonyp2p-mutmut-"))
    try:
        mutmut = ensure_mutmut()
        runs = [start(mutmut, tmp / f"repo-{g[0].warmup}", g, args) for g in groups]
        report: dict[str, dict[str, object]] = {}
        for r in runs:
            report.update(finish(mutmut, r, args.budget))
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 1 if any(entry["survivors"] for entry in report.values()) else 0
    except (RunFailed, subprocess.CalledProcessError) as e:
        print(f"mutation run failed: {e}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report_only(copies: list[Path]) -> int:
    """The counts of kept copies, a later copy's target replacing an earlier one's."""
    mutmut = ensure_mutmut()
    report: dict[str, dict[str, object]] = {}
    for copy in copies:
        report.update(collect(mutmut, copy.resolve(), TARGETS, diffs=False))
    print_report(report)
    return 1 if any(entry["survivors"] for entry in report.values()) else 0


def verify(copy: Path, with_tests: list[str], match: str = "*") -> int:
    """Each survivor of ``copy``'s run, activated alone (mutmut's trampolines read
    MUTANT_UNDER_TEST), against this repository's tests/test_mutants_*.py (and
    ``with_tests``), in a fresh pytest process per mutant: killed when they fail. Exit 1
    while some survive."""
    mutants_dir = copy / "mutants"
    new_tests = sorted((ROOT / "tests").glob(MUTANT_TESTS_GLOB))
    if not mutants_dir.is_dir() or not new_tests:
        raise SystemExit(f"{mutants_dir} or {ROOT}/tests/{MUTANT_TESTS_GLOB} missing")
    for t in new_tests:
        shutil.copy2(t, mutants_dir / "tests" / t.name)
    args = [str(PYTHON), "-m", "pytest", *PYTEST_ARGS, "--timeout", "300"]
    args += [f"tests/{t.name}" for t in new_tests] + with_tests
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    baseline = subprocess.run(args, cwd=mutants_dir, env=env, capture_output=True, check=False)
    if baseline.returncode != 0:
        print(baseline.stdout.decode(errors="replace")[-3000:])
        raise SystemExit("the new tests fail without a mutant: nothing to verify")
    alive = 0
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for name, code in sorted(codes.items()):
            if status(code) in DONE or not fnmatch.fnmatch(name, match):
                continue
            env["MUTANT_UNDER_TEST"] = name
            out = subprocess.run(args, cwd=mutants_dir, env=env, capture_output=True, check=False)
            killed = out.returncode != 0
            alive += not killed
            print(f"{'killed' if killed else 'ALIVE '} {name}", flush=True)
    print(f"{alive} still alive")
    return 1 if alive else 0


@dataclass
class Run:
    copy: Path
    targets: tuple[Target, ...]
    proc: subprocess.Popen[bytes]
    log: Path
    started: float


def start(mutmut: Path, copy: Path, targets: tuple[Target, ...], args: argparse.Namespace) -> Run:
    tests = prepare(copy, targets)
    patterns = [p for t in targets for p in t.patterns()]
    cmd = [str(mutmut), "run", "--max-children", str(args.max_children), *patterns]
    print(f"copy: {copy}\ntests: {' '.join(tests)}\n$ {' '.join(cmd)}", flush=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = copy / "mutmut.log"
    with log.open("wb") as out:
        # its own session, so that the budget can stop mutmut and every worker it forked
        proc = subprocess.Popen(
            cmd, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Run(copy, targets, proc, log, time.monotonic())


def finish(mutmut: Path, run: Run, budget: float) -> dict[str, dict[str, object]]:
    try:
        code = run.proc.wait(
            timeout=max(1.0, run.started + budget - time.monotonic()) if budget else None
        )
    except subprocess.TimeoutExpired:
        os.killpg(run.proc.pid, signal.SIGTERM)
        run.proc.wait()
        code = 0
        print(f"{run.copy.name}: budget of {budget:.0f} s spent, mutmut stopped", flush=True)
    elapsed = time.monotonic() - run.started
    if code != 0:
        tail = run.log.read_text(errors="replace").replace("\r", "\n").splitlines()[-30:]
        raise RunFailed(f"mutmut exited {code}:\n" + "\n".join(tail))
    print(f"{run.copy.name}: {elapsed:.0f} s", flush=True)
    return collect(mutmut, run.copy, run.targets)


def collect(
    mutmut: Path, copy: Path, targets: tuple[Target, ...], diffs: bool = True
) -> dict[str, dict[str, object]]:
    report: dict[str, dict[str, object]] = {}
    for t in targets:
        if not (copy / "mutants" / (t.path + ".meta")).exists():
            continue
        codes = results(copy, t)
        counts = Counter(status(c) for c in codes.values())
        survivors = sorted(k for k, c in codes.items() if status(c) not in DONE)
        report[t.name] = {
            "path": t.path,
            "functions": list(t.functions),
            "counts": dict(counts),
            "score": score(counts),
            "survivors": {m: show(mutmut, copy, m) if diffs else "" for m in survivors},
        }
    return report


# statuses that need no look: killed, or not run (the budget ran out)
DONE = ("killed", "timeout", "skipped", "not checked")


def score(counts: Counter[str]) -> float:
    """(killed + timeout) / checked, in percent; a mutant no selected test reaches counts
    as checked and not killed."""
    checked = sum(counts.values()) - counts["skipped"] - counts["not checked"]
    return round(100.0 * (counts["killed"] + counts["timeout"]) / checked, 1) if checked else 0.0


def print_report(report: dict[str, dict[str, object]]) -> None:
    cols = ("killed", "timeout", "survived", "no tests", "not checked")
    print(f"{'target':<12}{'mutants':>8}" + "".join(f"{c:>12}" for c in cols) + f"{'score':>8}")
    for name, entry in report.items():
        counts = entry["counts"]
        assert isinstance(counts, dict)
        other = sum(v for k, v in counts.items() if k not in cols and k != "skipped")
        line = f"{name:<12}{sum(counts.values()):>8}"
        line += "".join(f"{counts.get(c, 0):>12}" for c in cols)
        line += f"{entry['score']:>7}%" + (f"  (+{other} suspicious)" if other else "")
        print(line)
    for name, entry in report.items():
        survivors = entry["survivors"]
        assert isinstance(survivors, dict)
        for m, diff in survivors.items():
            print(f"\n=== {name}: {m}\n{diff}")


if __name__ == "__main__":
    sys.exit(main())
