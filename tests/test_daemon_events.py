"""The daemon's kept events, as the event stream reads them (``Daemon.events_after``)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from colonyp2p.node.daemon import Daemon


@given(
    first=st.integers(1, 50),
    count=st.integers(0, 40),
    kept=st.integers(1, 30),
    since=st.integers(0, 120),
)
def test_events_after_are_the_kept_events_numbered_above(
    first: int, count: int, kept: int, since: int
) -> None:
    events: deque[dict[str, Any]] = deque(maxlen=kept)
    for seq in range(first, first + count):
        events.append({"seq": seq})
    got = Daemon.events_after(SimpleNamespace(events=events), since)  # type: ignore[arg-type]
    assert got == [e for e in events if e["seq"] > since]
