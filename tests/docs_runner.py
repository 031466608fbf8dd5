"""Runs the shell and Python blocks of README.md and docs/*.md, as a newcomer would.

Every fenced block whose language is ``sh``, ``bash``, ``shell``, ``console`` or
``python`` runs, in document order, against one real local colony shared by all the
blocks of all the files (``tests/test_docs.py``), so that a doc that drifts fails the
suite. What a block needs that a reader would bring is said in HTML comments just above
it, which a rendered page does not show:

- ``<!-- doc-test: skip (why) -->``: the block does not run here (Slurm, root, minutes);
  the reason is required. A block without a language is refused (``text`` is one).
- ``<!-- doc-test: home NAME -->``: run as another device (its own colonyp2p home,
  ``COLONYP2P_HOME``); the default is this device's ``~/.colonyp2p``.
- ``<!-- doc-test: fresh -->``: that home starts empty (its daemon stopped).
- ``<!-- doc-test: setup COMMAND -->``: a shell command run first (files a reader has).

How blocks run:

- The working directory is a scratch directory that is also ``$HOME`` (a new user
  account, so ``~/.colonyp2p`` is the scratch's), with the repository's ``.venv``,
  ``examples`` and ``simulations`` linked into it, and ``.venv/bin`` first on ``PATH``
  (as after ``. .venv/bin/activate``).
- ``sh`` blocks run as one bash script with ``set -euo pipefail``: every command must
  succeed.
- ``console`` blocks are commands after ``$ `` with their expected output (stdout and
  stderr) below each; ``...`` in it matches anything. A command whose shown output has
  an ``error:`` line must exit non-zero, any other must exit 0.
- ``python`` blocks run as a script; a ``print(...)  # TEXT`` line's TEXT must be among
  the lines printed, in order.
- Placeholders are filled in from the colony: ``<colony-id>``, ``<ticket>`` (a new one
  each time), ``<multiaddr>`` (this device's address), ``<pid>`` (a process that
  succeeded), ``<running-pid>`` (one that is running), ``<member-id>`` (a member that
  joined for the purpose), ``<snapshot>`` (a prefix of the first snapshot of the first
  label). Any other ``<word>`` is a mistake in the doc and fails.
- Before every block, this device's colony exists (made with the README's commands if
  a block has not made it) and every home's daemon that a block stopped runs again.

    .venv/bin/python tests/docs_runner.py README.md docs/MFS.md    # by hand
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from colonyp2p.node.api_client import ApiClient

ROOT = Path(__file__).resolve().parents[1]
SHELLS = ("sh", "bash", "shell", "console")
LANGUAGES = (*SHELLS, "python")
BLOCK_TIMEOUT = 120.0
DEFAULT_HOME = "~"  # this device: ~/.colonyp2p
_FENCE = re.compile(r"^\s*(`{3,})\s*([\w+-]*)")  # indented too (in a list item)
_DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(.*?)\s*-->\s*$")
_PLACEHOLDER = re.compile(r"<([a-z]+(?:-[a-z]+)*)>")
_EXPECT = re.compile(r"^\s*print\(.*\)\s*#\s*(.+?)\s*$")


class DocError(AssertionError):
    """A block that failed, or a doc the runner cannot read."""


@dataclass
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str | None = None  # why it does not run
    home: str = DEFAULT_HOME
    fresh: bool = False
    setup: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """The runnable blocks of a markdown file, with the directives above each."""
    found: list[Block] = []
    pending: list[str] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        text = lines[i]
        directive = _DIRECTIVE.match(text.strip())
        fence = _FENCE.match(text)
        if directive:
            pending.append(directive.group(1))
        elif fence:
            ticks, language = fence.groups()
            closing = (j for j in range(i + 1, len(lines)) if lines[j].lstrip().startswith(ticks))
            end = next(closing, None)
            if end is None:
                raise DocError(f"{path}:{i + 1}: a code block that is never closed")
            if not language:  # else a shell block could hide from the tests unnoticed
                raise DocError(f"{path}:{i + 1}: a code block without a language (sh, text...)")
            if language in LANGUAGES:
                code = textwrap.dedent("\n".join(lines[i + 1 : end]))
                found.append(_block(path, i + 1, language, code, pending))
            elif pending:
                raise DocError(f"{path}:{i + 1}: doc-test directives above a {language!r} block")
            pending = []
            i = end
        elif text.strip() and pending:
            raise DocError(f"{path}:{i + 1}: doc-test directives must stand right above a block")
        i += 1
    return found


def _block(path: Path, line: int, language: str, code: str, directives: list[str]) -> Block:
    block = Block(path, line, language, code)
    for d in directives:
        word, _, rest = d.partition(" ")
        if word == "skip" and re.fullmatch(r"\(.+\)", rest.strip()):
            block.skip = rest.strip()[1:-1]
        elif word == "home" and re.fullmatch(r"[a-z][a-z0-9-]*", rest.strip()):
            block.home = rest.strip()
        elif word == "fresh" and not rest:
            block.fresh = True
        elif word == "setup" and rest:
            block.setup.append(rest)
        else:
            raise DocError(f"{block.where}: unknown doc-test directive {d!r}")
    return block


class Colony:
    """The scratch account and the colony the blocks share."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self._pid: str | None = None
        self._spares = 0
        for name in (".venv", "examples", "simulations"):
            link = scratch / name
            if not link.exists():
                link.symlink_to(ROOT / name)

    def home(self, name: str) -> Path:
        return self.scratch / (".colonyp2p" if name == DEFAULT_HOME else name)

    def env(self, home: str = DEFAULT_HOME) -> dict[str, str]:
        env = {
            **os.environ,
            "HOME": str(self.scratch),
            "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "COLUMNS": "100",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("COLONYP2P_HOME", None)
        if home != DEFAULT_HOME:
            env["COLONYP2P_HOME"] = str(self.home(home))
        return env

    def cli(self, *args: str, home: str = DEFAULT_HOME) -> str:
        """``colonynode ARGS`` as ``home``; its stdout (raises with its output if it fails)."""
        done = subprocess.run(
            ["colonynode", *args],
            env=self.env(home),
            cwd=self.scratch,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise DocError(f"colonynode {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def runtime(self, home: str = DEFAULT_HOME) -> dict[str, object] | None:
        from colonyp2p.node.home import Home

        return Home(self.home(home)).runtime()

    def ready(self, fresh: str | None = None) -> None:
        """This device's colony exists, and every daemon that ran and was stopped runs
        again; except in home ``fresh``, which a block is about to make."""
        if fresh != DEFAULT_HOME and not (self.home(DEFAULT_HOME) / "identity.key").exists():
            self.cli("init")
            self.cli("colony", "create", "lab")
            self.cli("start")
        for home in self.homes():
            if home != fresh and self.runtime(home) is None:
                self.cli("start", home=home)

    def homes(self) -> list[str]:
        """The homes whose daemon ran once, this device's first."""
        ran = sorted(p.parent.name for p in self.scratch.glob("*/daemon.log"))
        return [DEFAULT_HOME if n == ".colonyp2p" else n for n in ran]

    def wipe(self, home: str) -> None:
        self.kill(home)
        shutil.rmtree(self.home(home), ignore_errors=True)
        if home == DEFAULT_HOME:
            self._pid = None

    def kill(self, home: str) -> None:
        runtime = self.runtime(home)
        if runtime is not None:
            pid = int(str(runtime["pid"]))
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.runtime(home) is not None and time.monotonic() < deadline:
                time.sleep(0.05)

    def shutdown(self) -> None:
        for home in self.homes():
            self.kill(home)

    # --- placeholders ----------------------------------------------------------------

    def fill(self, text: str, where: str) -> str:
        values: dict[str, Callable[[ApiClient], str]] = {
            "colony-id": lambda api: str(api.status()["colony_id"]),
            "ticket": lambda api: str(api.invite("executor", 3600)["ticket"]),
            "multiaddr": lambda api: str(api.status()["addrs"][0]),
            "pid": self._done_pid,
            "running-pid": self._running_pid,
            "member-id": self._member,
            "snapshot": self._snapshot,
        }

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                raise DocError(f"{where}: unknown placeholder <{name}>")
            with self.api() as api:
                return values[name](api)

        return _PLACEHOLDER.sub(value, text)

    def api(self) -> ApiClient:
        """This device's node's API (made in this process: faster than the CLI)."""
        from colonyp2p.node.api_client import ApiClient
        from colonyp2p.node.home import Home

        home = Home(self.home(DEFAULT_HOME))
        runtime = home.runtime()
        if runtime is None:
            raise DocError(f"the node in {home.root} is not running")
        return ApiClient(str(runtime["api"]), home.identity())

    def _done_pid(self, api: ApiClient) -> str:
        if self._pid is None:
            pid = str(api.submit({"funcname": "add", "args": [1, 2]})["pid"])
            self._until(api, pid, ("successful",))
            self._pid = pid
        return self._pid

    def _running_pid(self, api: ApiClient) -> str:
        pid = str(api.submit({"funcname": "sleep", "args": [20]})["pid"])
        self._until(api, pid, ("running",))
        return pid

    @staticmethod
    def _until(api: ApiClient, pid: str, states: tuple[str, ...]) -> None:
        deadline = time.monotonic() + 30
        while (state := api.process(pid)["state"]) not in states:
            if time.monotonic() > deadline:
                raise DocError(f"process {pid} is still {state} after 30 s, not {states}")
            time.sleep(0.05)

    def _member(self, api: ApiClient) -> str:
        """The member that joined last (another device of the docs), or one that joins
        now for the purpose."""
        members = api.members()["members"]
        own = api.status()["member_id"]
        others = [m["member_id"] for m in members if m["member_id"] != own]
        if others:
            return str(others[-1])
        self._spares += 1
        name = f"spare-{self._spares}"
        self.cli("init", home=name)
        ticket = str(api.invite("executor", 3600)["ticket"])
        self.cli("join", str(api.status()["colony_id"]), "--ticket", ticket, home=name)
        from colonyp2p.node.home import Home

        return Home(self.home(name)).identity().member_id

    def _snapshot(self, api: ApiClient) -> str:
        labels = api.fs("ls")["labels"]
        if not labels:
            # the block that names a snapshot may be the one that makes the first label
            # (the placeholders are filled before it runs): a reader's colony has one
            example = self.scratch / "doc-example"
            example.mkdir(exist_ok=True)
            (example / "readme.txt").write_text("an example\n", encoding="utf-8")
            self.cli("fs", "put", str(example), "/doc-example")
            labels = api.fs("ls")["labels"]
        history = api.fs("history", label=labels[0]["path"])
        return str(history["versions"][0]["snapshot"])[:20]

    # --- running ---------------------------------------------------------------------

    def run(self, block: Block) -> None:
        if block.skip is not None:
            return
        if block.fresh:
            self.wipe(block.home)
        self.ready(block.home if block.fresh else None)
        for command in block.setup:
            self._shell(f"set -euo pipefail\n{command}", block, f"setup {command!r}")
        code = self.fill(block.code, block.where)
        if block.language == "python":
            self._python(code, block)
        elif block.language == "console":
            self._console(code, block)
        else:
            self._shell(f"set -euo pipefail\n{code}", block, "the block")

    def _run(self, argv: list[str], block: Block) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                argv,
                env=self.env(block.home),
                cwd=self.scratch,
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise DocError(f"{block.where}: still running after {BLOCK_TIMEOUT:g} s") from exc

    def _shell(self, script: str, block: Block, what: str) -> None:
        done = self._run(["bash", "-c", script], block)
        if done.returncode != 0:
            raise DocError(
                f"{block.where}: {what} exited {done.returncode}:\n{script}\n"
                f"--- stdout ---\n{done.stdout}--- stderr ---\n{done.stderr}"
            )

    def _python(self, code: str, block: Block) -> None:
        done = self._run([str(ROOT / ".venv" / "bin" / "python"), "-c", code], block)
        if done.returncode != 0:
            raise DocError(
                f"{block.where}: the Python block exited {done.returncode}:\n"
                f"{done.stdout}{done.stderr}"
            )
        printed = iter(done.stdout.splitlines())
        for expected in (m.group(1) for m in map(_EXPECT.match, code.splitlines()) if m):
            if not any(line.strip() == expected for line in printed):
                raise DocError(
                    f"{block.where}: expected a printed line {expected!r}, got:\n{done.stdout}"
                )

    def _console(self, code: str, block: Block) -> None:
        for command, expected in _commands(code, block):
            done = self._run(["bash", "-c", command], block)
            said = done.stdout + done.stderr
            should_fail = any(line.startswith("error:") for line in expected.splitlines())
            if (done.returncode != 0) != should_fail or not matches(expected, said):
                raise DocError(
                    f"{block.where}: $ {command}\nexited {done.returncode}, said:\n{said}"
                    f"--- the doc shows ---\n{expected}"
                )


def _commands(code: str, block: Block) -> list[tuple[str, str]]:
    out: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            out.append((line[2:], []))
        elif out:
            out[-1][1].append(line)
        elif line.strip():
            raise DocError(f"{block.where}: a console block starts with a `$ ` command")
    return [(command, "\n".join(lines)) for command, lines in out]


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected`` with each ``...`` standing for any text (lines
    compared without their trailing spaces)."""

    def norm(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip().splitlines())

    parts = [re.escape(p) for p in norm(expected).split("...")]
    return re.fullmatch(".*?".join(parts), norm(actual), re.DOTALL) is not None


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def main(argv: list[str]) -> int:
    import tempfile

    paths = [Path(a).resolve() for a in argv] or doc_files()
    with tempfile.TemporaryDirectory(prefix="doc-test-") as tmp:
        colony = Colony(Path(tmp))
        try:
            for path in paths:
                for block in blocks(path):
                    started = time.monotonic()
                    colony.run(block)
                    took = time.monotonic() - started
                    state = f"skipped ({block.skip})" if block.skip else f"ok, {took:.1f} s"
                    print(f"{block.where}: {state}", flush=True)
        except DocError as exc:
            print(exc, file=sys.stderr)
            return 1
        finally:
            colony.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
