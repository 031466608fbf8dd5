"""Mutation check of the daemon's promises: each mutation is a textual patch to a copy of
the repository, and the tests that guard the promise run against that copy. A mutant
the tests do not kill (they all pass) means the promise is untested.

    .venv/bin/python bench/mutations.py                # baseline, then every mutation
    .venv/bin/python bench/mutations.py --only acks-before-commit
    .venv/bin/python bench/mutations.py --no-baseline

Exit status: 0 when every mutant is killed (and the unmutated copy passes), 1 when a
mutant survives, 2 when the check itself cannot be trusted (a patch target is gone, the
unmutated tests fail, pytest errs, or the copy's modules are not the ones imported).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
# setuptools' package-dir mapping (pyproject.toml): the import name of each folder
PACKAGES = {"node": "node", "executors": "executors", "mfs": "mfs", "simulations": "simulations"}
SKIP = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"
)
TEST_TIMEOUT = 900.0  # s: one pytest run of a mutation's tests, at most


class CheckFailed(Exception):
    """The check cannot be trusted (exit 2)."""


@dataclass(frozen=True)
class Mutation:
    name: str
    promise: str
    path: str  # relative to the repository
    patches: tuple[tuple[str, str], ...]  # (text that must be there once, its mutant)
    tests: tuple[str, ...]


DAEMON_MUTATIONS = (
    Mutation(
        name="acks-before-commit",
        promise="acknowledgements leave only after the data they acknowledge is durable",
        path="node/daemon.py",
        patches=(
            # every Send leaves before store.apply, not only the requests
            (
                "                if isinstance(e, Send) and isinstance(e.msg, REQUESTS):\n",
                "                if isinstance(e, Send):\n",
            ),
            (
                "                if not (persists and isinstance(e.msg, REQUESTS)):\n",
                "                if not persists:\n",
            ),
        ),
        tests=(
            "tests/test_ack_durability.py",
            "tests/test_daemon.py::test_a_daemon_restarted_after_sigkill_keeps_what_it_acknowledged",
        ),
    ),
    Mutation(
        name="revoked-keeps-connections",
        promise="a revoked member loses its connections as soon as the revocation applies",
        path="node/daemon.py",
        patches=(("            await self.transport.drop_non_members()\n", ""),),
        tests=(
            "tests/test_daemon.py::test_a_revoked_member_is_refused",
            "tests/test_transport.py::test_a_member_revoked_at_run_time_is_refused_afterwards",
        ),
    ),
    Mutation(
        name="store-failure-ignored",
        promise="a store that cannot write stops the daemon before it acknowledges anything",
        path="node/daemon.py",
        patches=(
            (
                "            await trio.to_thread.run_sync(self.store.apply, persists)\n",
                "            try:\n"
                "                await trio.to_thread.run_sync(self.store.apply, persists)\n"
                "            except Exception:\n"
                '                log.exception("the store failed; carrying on")\n',
            ),
        ),
        tests=(
            "tests/test_containment.py::test_a_full_disk_refuses_submits_and_ends_the_daemon_with_one_line",
        ),
    ),
    Mutation(
        name="record-spec-not-written",
        promise="a record's spec, kept in a row of its own, is written with the record",
        path="node/store.py",
        patches=(
            (
                "                if spec is not stored and (spec is None or spec != stored):\n",
                "                if False:\n",
            ),
        ),
        tests=("tests/test_store.py", "tests/test_restart.py"),
    ),
    Mutation(
        name="first-write-wins",
        promise="of two writes of one key in a step, the later is what a restart reads",
        path="node/store.py",
        patches=(
            (
                "                last[(e.table, e.key if type(e.key) is str else id(e))] = e\n",
                "                last.setdefault("
                "(e.table, e.key if type(e.key) is str else id(e)), e)\n",
            ),
        ),
        tests=("tests/test_store.py", "tests/test_restart.py"),
    ),
)


@dataclass(frozen=True)
class Outcome:
    name: str
    killed: bool
    seconds: float
    summary: str


def copy_repository(dest: Path) -> Path:
    """The repository without its virtualenv, git directory and caches, in ``dest``, with
    its folders linked into ``colonyp2p/`` as setuptools maps them: the virtualenv's
    editable install maps ``colonyp2p.node`` to the original checkout, so only such a
    tree first on the path makes the copy's modules the ones imported."""
    repo = dest / "repo"
    shutil.copytree(ROOT, repo, ignore=SKIP, symlinks=True)
    for folder, name in PACKAGES.items():
        (repo / "colonyp2p" / name).symlink_to(repo / folder)
    return repo


def apply(mutation: Mutation, repo: Path) -> None:
    target = repo / mutation.path
    text = target.read_text()
    for old, new in mutation.patches:
        found = text.count(old)
        if found != 1:
            raise CheckFailed(
                f"{mutation.name}: the patch target is in {mutation.path} {found} times "
                f"(expected once), the code changed; update the mutation:\n{old!r}"
            )
        text = text.replace(old, new)
    target.write_text(text)


def environment(repo: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(repo)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "250"  # pytest's summary lines keep the assertion's message
    return env


def check_imports(repo: Path) -> None:
    """Fail loudly unless the daemon module imported is the copy's."""
    done = subprocess.run(
        [str(PYTHON), "-c", "import colonyp2p.node.daemon as d; print(d.__file__)"],
        env=environment(repo),
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    imported = Path(done.stdout.strip()).resolve() if done.returncode == 0 else None
    if imported != (repo / "node" / "daemon.py").resolve():
        raise CheckFailed(f"the copy's daemon is not the one imported: {done.stdout}{done.stderr}")


def run_tests(repo: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """pytest's exit status and its summary line, for ``tests`` run against the copy."""
    # the project's addopts (two workers, -q) replaced: one worker, one summary line
    options = ["-o", "addopts=", "-n", "0", "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(
        [str(PYTHON), "-m", "pytest", *options, *tests],
        env=environment(repo),
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=TEST_TIMEOUT,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    failed = dict.fromkeys(line for line in lines if line.startswith(("FAILED", "ERROR")))
    summary = "\n  ".join([lines[-1] if lines else "(no output)", *failed])
    if done.returncode not in (0, 1):  # 2 interrupted, 3 internal error, 4 usage, 5 none
        raise CheckFailed(f"pytest exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.returncode, summary


def check(mutation: Mutation | None, tests: tuple[str, ...]) -> Outcome:
    """Run ``tests`` against a fresh copy, mutated by ``mutation`` (None: the baseline)."""
    name = mutation.name if mutation is not None else "baseline (no mutation)"
    with tempfile.TemporaryDirectory(prefix="colonyp2p-mutant-") as tmp:
        repo = copy_repository(Path(tmp))
        if mutation is not None:
            apply(mutation, repo)
        check_imports(repo)
        started = time.monotonic()
        status, summary = run_tests(repo, tests)
        return Outcome(name, status == 1, time.monotonic() - started, summary)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="a mutation's name (repeatable)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args()
    chosen = [m for m in DAEMON_MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in DAEMON_MUTATIONS}
    if unknown:
        parser.error(f"no mutation named {', '.join(sorted(unknown))}")
    print(f"$ .venv/bin/python {' '.join(sys.argv)}")
    try:
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            base = check(None, tests)
            print(f"baseline: {'FAILED' if base.killed else 'passed'} ({base.seconds:.0f} s)")
            print(f"  {base.summary}")
            if base.killed:
                raise CheckFailed("the unmutated tests fail: no mutant result means anything")
        survivors = []
        for mutation in chosen:
            out = check(mutation, mutation.tests)
            verdict = "killed" if out.killed else "SURVIVED"
            print(f"{mutation.name}: {verdict} ({out.seconds:.0f} s) [{mutation.promise}]")
            print(f"  {out.summary}")
            if not out.killed:
                survivors.append(mutation.name)
    except CheckFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if survivors:
        print(f"surviving mutants: {', '.join(survivors)}")
        return 1
    print(f"all {len(chosen)} mutants killed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
