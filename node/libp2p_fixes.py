"""Fixes to py-libp2p 0.8.1 that cannot be made from outside its classes.

The library is pinned (``requirements.lock``); each fix here is applied once, at import
of :mod:`colonyp2p.node.transport`, and ``tests/node/test_libp2p_fixes.py`` fails as soon
as the installed version is not the one the fix was written for, so that a version bump
re-examines every fix instead of silently keeping or losing it. The upstream fix of each
is written down in docs/LIBP2P.md.

Yamux writes are atomic per message
    ``YamuxStream.write`` takes the stream's write lock per frame (at most 65,524 bytes
    of payload), not per call, and awaits the socket between frames. Two tasks writing
    one stream therefore interleave their frames: always for messages over one frame,
    and for smaller ones as soon as a slow reader empties the send window. GossipSub
    writes one peer's stream from several tasks (its per-peer queue task, and
    ``flush_pending_messages`` and ``send_recent_messages``, which bypass the queue),
    so members sent each other RPCs that did not parse, and the reader's
    ``DecodeError`` ended the daemon. One lock per stream around each whole ``write``
    makes every message arrive whole (measured: 0 damaged of 800, against 764 of 800
    without it; ../shared/reference/libp2p/yamux/).
"""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio
from libp2p.stream_muxer.yamux.yamux import YamuxStream

PINNED: Final = "0.8.1"
_APPLIED = "_colonyp2p_whole_writes"


def installed_version() -> str:
    return importlib.metadata.version("libp2p")


def _whole_writes(write: Callable[[Any, bytes], Awaitable[None]]) -> Any:
    @functools.wraps(write)
    async def whole_write(self: Any, data: bytes) -> None:
        lock = self.__dict__.get(_APPLIED)
        if lock is None:
            # created on first use: YamuxStream's __init__ stays the library's own
            lock = self.__dict__[_APPLIED] = trio.Lock()
        async with lock:
            await write(self, data)

    setattr(whole_write, _APPLIED, True)
    return whole_write


def apply() -> None:
    """Apply every fix (idempotent)."""
    if not getattr(YamuxStream.write, _APPLIED, False):
        YamuxStream.write = _whole_writes(YamuxStream.write)  # type: ignore[method-assign]


def applied() -> bool:
    return bool(getattr(YamuxStream.write, _APPLIED, False))
