"""Length-prefixed frames on a libp2p stream (a 4-byte big-endian length, then that many
bytes), and ending a stream without raising.

A colony stream carries many envelopes, one after another, and py-libp2p gives no
message boundaries: ``read(n)`` returns whatever the muxer has buffered, and a peer's
``close()`` does not reliably end the reader's loop. The length prefix gives the
boundaries, and it lets a reader refuse an oversize frame before buffering it.
"""

from __future__ import annotations

import logging
import struct
from typing import Any

import trio
from libp2p.network.stream.exceptions import StreamEOF
from libp2p.stream_muxer.exceptions import MuxedStreamEOF

from colonyp2p.errors import OversizeMessage

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size


class IncompleteFrame(Exception):
    """The stream ended inside a frame: the peer went away mid-message."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its length prefix, ready for one ``stream.write``."""
    if len(payload) >= 1 << 32:
        raise OversizeMessage(f"a frame holds under 4 GiB, got {len(payload)} bytes")
    return _HEADER.pack(len(payload)) + payload


async def read_frame(stream: Any, max_size: int) -> bytes | None:
    """The next frame's payload, or None at a clean end of stream (between frames).

    Raises OversizeMessage for a length above ``max_size`` (nothing after the header
    is read, so the stream is left mid-frame and must be dropped), IncompleteFrame
    if the stream ends inside a frame, and whatever the stream raises on a reset.
    """
    header = await _read_exactly(stream, HEADER_SIZE, eof_ok=True)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > max_size:
        raise OversizeMessage(f"frame of {size} bytes exceeds {max_size}")
    payload = await _read_exactly(stream, size, eof_ok=False)
    assert payload is not None
    return payload


async def _read_exactly(stream: Any, n: int, *, eof_ok: bool) -> bytes | None:
    # libp2p's own read_exactly gives up after 100 partial reads, which a 4 MiB frame
    # arriving in 64 KiB yamux chunks can exceed.
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk: bytes = await stream.read(n - len(buf))
        except (StreamEOF, MuxedStreamEOF):
            # a peer's half-close: no more bytes, not an error
            chunk = b""
        if not chunk:
            if eof_ok and not buf:
                return None
            raise IncompleteFrame(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def reset_stream(stream: Any) -> None:
    """Abort ``stream`` in both directions; never raises, even when cancelled."""
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.reset()
        except Exception as exc:
            log.debug("stream reset failed: %r", exc)


async def close_stream(stream: Any) -> None:
    """End ``stream`` politely; never raises, even when cancelled."""
    with trio.CancelScope(shield=True), trio.move_on_after(1.0):
        try:
            await stream.close()
        except Exception as exc:
            log.debug("stream close failed: %r", exc)
