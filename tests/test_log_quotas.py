"""What a daemon keeps of processes' lines, and the per-sender buckets behind its quotas
(node/logs.py, node/quotas.py): every bound holds whatever arrives."""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from colonyp2p.node import logs
from colonyp2p.node.logs import CAP_NOTE, KeptLogs, printable
from colonyp2p.node.quotas import Buckets


def test_a_process_keeps_its_first_lines_up_to_its_cap_then_a_note() -> None:
    kept = KeptLogs(lines_per_process=5, bytes_per_process=10_000, budget=1_000_000)
    for i in range(20):
        kept.add("p", f"line {i}")
    lines = kept.lines_of("p")
    assert lines == [f"line {i}" for i in range(4)] + [CAP_NOTE]
    assert kept.dropped == 16
    assert kept.status()["lines"] == 5


def test_a_process_keeps_at_most_its_bytes() -> None:
    cap = 4096 + len(CAP_NOTE)
    kept = KeptLogs(lines_per_process=10_000, bytes_per_process=cap, budget=1_000_000)
    for _ in range(100):
        kept.add("p", "x" * 1000)
    assert sum(logs.size(line) for line in kept.lines_of("p")) <= cap
    assert kept.lines_of("p")[-1] == CAP_NOTE
    assert kept.bytes <= cap


def test_the_budget_drops_the_oldest_processes_lines_first() -> None:
    kept = KeptLogs(lines_per_process=1000, bytes_per_process=10_000, budget=25_000)
    for p in range(10):
        for _ in range(5):
            kept.add(f"p{p}", "y" * 1000)  # 5,000 bytes a process
    assert kept.bytes <= 25_000
    assert [p for p in range(10) if f"p{p}" in kept] == [5, 6, 7, 8, 9]
    assert kept.lines_of("p0") == []
    assert kept.evicted == 5


def test_lines_are_cut_and_processes_counted() -> None:
    kept = KeptLogs(processes=3)
    for p in range(5):
        kept.add(f"p{p}", "z" * 10_000)
    assert kept.status()["processes"] == 3
    assert all(len(line) == logs.MAX_LINE for p in (2, 3, 4) for line in kept.lines_of(f"p{p}"))


@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.text(max_size=300)),
        max_size=400,
    )
)
def test_every_bound_holds_whatever_arrives(adds: list[tuple[int, str]]) -> None:
    kept = KeptLogs(lines_per_process=7, bytes_per_process=2_000, budget=5_000, processes=6)
    for pid, line in adds:
        kept.add(str(pid), line)
        status = kept.status()
        assert status["bytes"] <= 5_000 or status["processes"] == 1
        assert status["processes"] <= 6
    total = 0
    for pid in range(13):
        lines = kept.lines_of(str(pid))
        assert len(lines) <= 7
        assert sum(map(logs.size, lines)) <= 2_000
        total += sum(map(logs.size, lines))
    assert total == kept.bytes


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    buckets = Buckets(rate=10.0, burst=100.0)
    assert buckets.take("a", 100, now=0.0)
    assert not buckets.take("a", 1, now=0.0)
    assert buckets.take("b", 50, now=0.0)  # one bucket per sender
    assert not buckets.take("a", 11, now=1.0)
    assert buckets.take("a", 10, now=1.0)
    assert buckets.available("a", now=1000.0) == 100.0  # never more than the burst


def test_buckets_remember_a_bounded_number_of_senders() -> None:
    buckets = Buckets(rate=1.0, burst=1.0, kept=10)
    for i in range(100):
        assert buckets.take(f"m{i}", 1, now=0.0)
    assert len(buckets) == 10


def test_printable_lines_carry_no_terminal_control() -> None:
    assert printable("plain\ttabbed ümlaut") == "plain\ttabbed ümlaut"
    assert printable("\x1b[31mred\x1b[0m") == "red"
    assert printable("\x1b]0;evil title\x07after") == "after"
    assert printable("over\rwrite\nline") == "over\\x0dwrite\\x0aline"
    assert printable("\x9b2J") == "\\x9b2J"  # the one-byte CSI
    assert printable("\u202eevil") == "\\u202eevil"  # bidi override
    every = printable("".join(map(chr, range(0x3000))))
    assert all(c == "\t" or unicodedata.category(c) != "Cc" for c in every)
    assert not set(every) & {"\u2028", "\u2029", *map(chr, range(0x202A, 0x202F))}
