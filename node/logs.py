"""What processes printed, as a daemon keeps it: bounded per process and in all, and the
rules for lines that arrive from other members (``LogLines``).

A process's executor sends the lines to the process's submitter. The submitter's daemon
takes them only for a process it submitted, and only from a member entitled to run it
(the holder of that epoch's lease when the daemon keeps the record, else a member whose
signed executor ad matches the spec); everything else is refused and counted
(``colonynode status``, ``refused.logs``), and nothing of it is kept. What it takes
costs the sender bytes of a per-sender token bucket (``LOG_RATE``, ``LOG_BURST``); a
process keeps at most ``LINES_PER_PROCESS`` lines and ``BYTES_PER_PROCESS`` bytes, and all
processes together at most ``BUDGET`` bytes: the oldest processes' lines go first.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from colonyp2p.errors import ColonyError

MAX_LINE: Final = 4096  # characters of a line kept (the rest is cut)
LINES_PER_PROCESS: Final = 10_000
BYTES_PER_PROCESS: Final = 4 * 1024 * 1024
BUDGET: Final = 64 * 1024 * 1024  # bytes of lines kept for all processes together
PROCESSES: Final = 10_000  # processes whose lines are kept
# What a batch of lines costs its sender: its bytes, and a little per line and per
# message, so that a flood of tiny messages is paid for too.
LINE_COST: Final = 16
MESSAGE_COST: Final = 256
LOG_RATE: Final = 1024 * 1024  # cost units (about bytes) a second, per sender
LOG_BURST: Final = 8 * 1024 * 1024
# an executor sends at most this much a second to one submitter (below LOG_RATE, so
# that a legitimate executor is never refused)
SHIP_RATE: Final = 512 * 1024
SHIP_BURST: Final = 4 * 1024 * 1024
CAP_NOTE: Final = (
    "[logs] this process printed more than a node keeps of one process "
    f"({LINES_PER_PROCESS} lines, {BYTES_PER_PROCESS // (1024 * 1024)} MiB): the rest is not kept"
)


class LogRefused(ColonyError):
    """Log lines a node does not take (counted under ``refused.logs``)."""

    code = "log_refused"


class NotSubmittedHere(LogRefused):
    """Lines of a process this node did not submit."""

    code = "log_unknown_process"


class NotEntitled(LogRefused):
    """Lines from a member that does not run the process."""

    code = "log_not_executor"


class LogRateLimited(LogRefused):
    """More lines from one member than a node takes per second."""

    code = "log_rate"


class LogsBusy(LogRefused):
    """Too many lines waiting for the check of their process."""

    code = "busy"


def size(line: str) -> int:
    """Bytes of ``line`` (UTF-8)."""
    return len(line) if line.isascii() else len(line.encode("utf-8", "replace"))


def cost(lines: Sequence[str]) -> int:
    """What receiving ``lines`` in one message costs its sender."""
    return MESSAGE_COST + sum(size(line) + LINE_COST for line in lines)


_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(line: str) -> str:
    """``line`` safe for a terminal: ANSI escape sequences removed, every other control
    character (but tab) shown as ``\\xNN`` / ``\\uNNNN``, so a peer's line can neither
    move the cursor, recolour, retitle nor rewrite what the terminal shows."""
    line = _ESCAPES.sub("", line)
    return _CONTROL.sub(lambda m: _escaped(m.group()), line)


def _escaped(char: str) -> str:
    n = ord(char)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


@dataclass
class _Process:
    lines: list[str] = field(default_factory=list)
    bytes: int = 0
    full: bool = False  # the cap was reached: a note was kept, nothing more is
    seen: dict[int, int] = field(default_factory=dict)  # epoch -> lines numbered so far


class KeptLogs:
    """The lines kept per process (oldest process first), within the caps."""

    def __init__(
        self,
        *,
        lines_per_process: int = LINES_PER_PROCESS,
        bytes_per_process: int = BYTES_PER_PROCESS,
        budget: int = BUDGET,
        processes: int = PROCESSES,
    ) -> None:
        self.lines_per_process, self.bytes_per_process = lines_per_process, bytes_per_process
        self.budget, self.processes = budget, processes
        self._kept: OrderedDict[str, _Process] = OrderedDict()
        self.bytes = 0
        self.lines = 0
        self.dropped = 0  # lines not kept: over a process's cap
        self.evicted = 0  # processes whose lines were dropped to stay within the budget

    def add(self, pid: str, line: str) -> str | None:
        """Keep ``line`` of ``pid`` (cut to MAX_LINE characters); the line kept (the cap's
        note when this line reached the cap), or None when nothing was."""
        line = line[:MAX_LINE]
        proc = self._kept.get(pid)
        if proc is None:
            proc = self._kept[pid] = _Process()
            while len(self._kept) > self.processes:
                self._evict()
        if proc.full:
            self.dropped += 1
            return None
        n = size(line)
        if len(proc.lines) + 1 >= self.lines_per_process or proc.bytes + n > (
            self.bytes_per_process - size(CAP_NOTE)
        ):
            proc.full = True
            self.dropped += 1
            line, n = CAP_NOTE, size(CAP_NOTE)
        proc.lines.append(line)
        proc.bytes += n
        self.bytes += n
        self.lines += 1
        while self.bytes > self.budget and len(self._kept) > 1:
            self._evict(keep=pid)
        return line

    def _evict(self, keep: str = "") -> None:
        pid = next(iter(self._kept))
        if pid == keep:
            self._kept.move_to_end(pid)
            pid = next(iter(self._kept))
        proc = self._kept.pop(pid)
        self.bytes -= proc.bytes
        self.lines -= len(proc.lines)
        self.evicted += 1

    def lines_of(self, pid: str) -> list[str]:
        proc = self._kept.get(pid)
        return [] if proc is None else list(proc.lines)

    def seen(self, pid: str, epoch: int) -> int:
        """How many lines of ``pid``'s run ``epoch`` arrived (numbered 0 up)."""
        proc = self._kept.get(pid)
        return 0 if proc is None else proc.seen.get(epoch, 0)

    def saw(self, pid: str, epoch: int, upto: int) -> None:
        proc = self._kept.get(pid)
        if proc is not None and len(proc.seen) < 64:  # a process runs a few epochs
            proc.seen[epoch] = max(proc.seen.get(epoch, 0), upto)
        elif proc is not None and epoch in proc.seen:
            proc.seen[epoch] = max(proc.seen[epoch], upto)

    def __contains__(self, pid: str) -> bool:
        return pid in self._kept

    def status(self) -> dict[str, int]:
        return {
            "processes": len(self._kept),
            "lines": self.lines,
            "bytes": self.bytes,
            "budget": self.budget,
            "dropped_lines": self.dropped,
            "evicted_processes": self.evicted,
        }
