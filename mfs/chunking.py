"""Splitting a file into blocks, streaming: a file is never held in memory whole.

Two chunkers:

- ``FixedChunker``: blocks of one size (the last one shorter). Free to compute,
  and it deduplicates appends, but inserting one byte shifts every later block
  boundary, so an edit near the start of a file re-uploads all of it.
- ``CdcChunker``: content-defined chunking in the FastCDC style. A Gear rolling
  hash over the last 32 bytes decides where blocks end, so boundaries move with
  the content: an insertion changes the block it lands in and leaves the others
  (and their CIDs) as they were. Sizes stay within [min_size, max_size]; the
  normalised two-mask cut point selection of FastCDC keeps most blocks near
  avg_size. This is the default (see DEFAULT_CHUNKER).

A chunker's ``name`` records its parameters in each file manifest, so a later
upload of the same file can cut it the same way and share its blocks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np
import numpy.typing as npt

from colonyp2p.errors import ValidationError

KiB = 1024
MiB = 1024 * KiB
# A bound every peer can rely on when it fetches a block (memory per request).
MAX_BLOCK_SIZE = 16 * MiB
_READ_SIZE = 4 * MiB
_WINDOW = 32  # bytes a Gear hash of 32 bits depends on


class Chunker(Protocol):
    """Something that cuts a byte stream into blocks."""

    @property
    def name(self) -> str:
        """The chunker and its parameters, as recorded in file manifests."""
        ...

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        """The stream's bytes as consecutive non-empty blocks; reading stops at EOF."""
        ...


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at end of file.

    A raw file object (or a pipe) may return fewer bytes than asked for before
    the end; a short read must not end a block early, or the same file would be
    cut differently from one read to the next.
    """
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size:
        more = stream.read(size - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


@dataclass(frozen=True)
class FixedChunker:
    """Blocks of ``size`` bytes (the last one may be shorter)."""

    size: int = MiB

    def __post_init__(self) -> None:
        _check_size(self.size, "size")

    @property
    def name(self) -> str:
        return f"fixed:{self.size}"

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        while True:
            block = read_full(stream, self.size)
            if not block:
                return
            yield block
            if len(block) < self.size:
                return


def _gear_table() -> list[int]:
    # Fixed pseudo-random values, derived rather than listed, so every peer (and any
    # reimplementation) gets the same table and therefore the same block boundaries.
    return [
        int.from_bytes(hashlib.sha256(b"colonyp2p-gear-%d" % i).digest()[:4], "big")
        for i in range(256)
    ]


GEAR = tuple(_gear_table())
_GEAR = np.array(GEAR, dtype=np.uint32)


def _top_mask(bits: int) -> int:
    # A 32-bit Gear hash's bit j depends on the last j + 1 bytes only: cut on the top
    # bits, whose condition involves the whole 32-byte window.
    return ((1 << bits) - 1) << (32 - bits)


@dataclass(frozen=True)
class CdcChunker:
    """Content-defined chunking: FastCDC-style cut points over a 32-bit Gear hash.

    A block ends after byte p when the hash of the 32 bytes ending at p has its top
    bits zero: log2(avg)+2 bits while the block is shorter than ``avg_size``
    (cuts are rare there), log2(avg)-2 bits beyond (cuts come soon), and always at
    ``max_size``. The hash is a function of the window only (not of where the block
    started), so after an edit the boundaries re-synchronise within one block.
    """

    min_size: int = 256 * KiB
    avg_size: int = MiB
    max_size: int = 4 * MiB

    def __post_init__(self) -> None:
        _check_size(self.min_size, "min_size")
        _check_size(self.avg_size, "avg_size")
        _check_size(self.max_size, "max_size")
        if self.avg_size & (self.avg_size - 1) or self.avg_size < 64:
            raise ValidationError(
                f"must be a power of two of at least 64, got {self.avg_size}", "avg_size"
            )
        if not self.min_size < self.avg_size < self.max_size:
            raise ValidationError(
                f"need min_size < avg_size < max_size, got {self.min_size}, {self.avg_size}, "
                f"{self.max_size}",
                "avg_size",
            )

    @property
    def name(self) -> str:
        return f"fastcdc:{self.min_size}:{self.avg_size}:{self.max_size}"

    @property
    def masks(self) -> tuple[int, int]:
        """The (strict, loose) cut masks, used before and after avg_size."""
        bits = self.avg_size.bit_length() - 1
        return _top_mask(min(bits + 2, 31)), _top_mask(bits - 2)

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        head = read_full(stream, self.min_size)
        if len(head) < self.min_size:
            # A file shorter than one minimum block is one block: no hashing, which
            # keeps many small files as cheap as with the fixed chunker.
            if head:
                yield head
            return
        yield from _CdcStream(self, stream, head)


class _CdcStream:
    """The state of cutting one stream. Offsets are absolute positions in the stream."""

    def __init__(self, chunker: CdcChunker, stream: BinaryIO, head: bytes) -> None:
        self.c = chunker
        self.stream = stream
        strict, loose = chunker.masks
        self.strict = np.uint32(strict)
        self.loose = np.uint32(loose)
        self.buf = b""
        self.base = 0  # stream offset of buf[0]
        self.tail = b""  # the last _WINDOW - 1 bytes hashed: context of the next read
        self.cand_strict: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self.cand_loose: npt.NDArray[np.int64] = np.empty(0, np.int64)
        self.eof = False
        # reused for every read: fresh 16 MiB arrays per read cost page faults
        size = max(_READ_SIZE, chunker.max_size) + _WINDOW
        self.work = (np.empty(size, np.uint32), np.empty(size, np.uint32))
        self._append(head)

    def __iter__(self) -> Iterator[bytes]:
        start = 0
        while True:
            end = self.base + len(self.buf)
            if start == end and self.eof:
                return
            cut = self._cut(start, end)
            if cut is None:
                data = read_full(self.stream, max(_READ_SIZE, self.c.max_size))
                if data:
                    self._drop_before(start)
                    self._append(data)
                if len(data) < max(_READ_SIZE, self.c.max_size):
                    self.eof = True
                continue
            yield self.buf[start - self.base : cut - self.base]
            start = cut

    def _cut(self, start: int, end: int) -> int | None:
        """Where the block starting at ``start`` ends, or None if more data is needed."""
        c = self.c
        first = start + c.min_size - 1  # the first byte a block may end after
        middle = start + c.avg_size - 1
        last = start + c.max_size - 1
        i = int(np.searchsorted(self.cand_strict, first))
        if i < len(self.cand_strict) and self.cand_strict[i] < min(middle, end):
            return int(self.cand_strict[i]) + 1
        if end < middle and not self.eof:
            return None
        i = int(np.searchsorted(self.cand_loose, middle))
        if i < len(self.cand_loose) and self.cand_loose[i] < min(last, end):
            return int(self.cand_loose[i]) + 1
        if end - start >= c.max_size:
            return start + c.max_size
        if self.eof:
            return end
        return None

    def _drop_before(self, start: int) -> None:
        self.buf = self.buf[start - self.base :]
        self.base = start
        self.cand_strict = self.cand_strict[self.cand_strict >= start]
        self.cand_loose = self.cand_loose[self.cand_loose >= start]

    def _append(self, data: bytes) -> None:
        offset = self.base + len(self.buf)
        hashes = gear_hashes(data, self.tail, self.work)
        # The strict mask holds the loose one's bits: scan the array once for loose cut
        # points (rare) and pick the strict ones among them.
        at = np.flatnonzero((hashes & self.loose) == 0)
        strict = at[(hashes[at] & self.strict) == 0].astype(np.int64) + offset
        loose = at.astype(np.int64) + offset
        self.cand_strict = np.concatenate((self.cand_strict, strict))
        self.cand_loose = np.concatenate((self.cand_loose, loose))
        self.buf += data
        self.tail = (self.tail + data[-(_WINDOW - 1) :])[-(_WINDOW - 1) :]


def gear_hashes(
    data: bytes,
    context: bytes = b"",
    work: tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]] | None = None,
) -> npt.NDArray[np.uint32]:
    """The 32-bit Gear hash after each byte of ``data``: h = (h << 1) + GEAR[byte],
    starting from h = 0 before ``context`` (the bytes that precede ``data``).

    After 32 steps a byte's contribution is shifted out, so the hash after byte i is
    the sum over k < 32 of GEAR[data[i - k]] << k. Vectorised by doubling: five
    shift-and-add passes over the array instead of a Python loop per byte (which
    would cut 30 times slower). ``work``: two arrays to compute in, at least
    len(context) + len(data) long (the result is a view of the first).
    """
    n = len(context) + len(data)
    if work is None:
        work = (np.empty(n, np.uint32), np.empty(n, np.uint32))
    h, tmp = work[0][:n], work[1]
    # mode="clip": a byte cannot be out of range, and skipping the check is faster
    np.take(_GEAR, np.frombuffer(context, np.uint8), out=h[: len(context)], mode="clip")
    np.take(_GEAR, np.frombuffer(data, np.uint8), out=h[len(context) :], mode="clip")
    step = 1
    while step < min(_WINDOW, n):
        np.left_shift(h[: n - step], np.uint32(step), out=tmp[: n - step])
        np.add(h[step:], tmp[: n - step], out=h[step:])
        step *= 2
    return h[len(context) :]


def _check_size(size: object, field: str) -> None:
    if type(size) is not int or not 1 <= size <= MAX_BLOCK_SIZE:
        raise ValidationError(f"must be an integer in [1, {MAX_BLOCK_SIZE}], got {size!r}", field)


DEFAULT_CHUNKER: Chunker = CdcChunker()


def chunker_from_name(name: str) -> Chunker:
    """The chunker a manifest's ``chunker`` field names (to re-cut a file the same way)."""
    kind, _, params = name.partition(":")
    try:
        values = [int(v) for v in params.split(":")]
        if kind == "fixed" and len(values) == 1:
            return FixedChunker(values[0])
        if kind == "fastcdc" and len(values) == 3:
            return CdcChunker(*values)
    except ValueError:
        pass
    raise ValidationError(f"unknown chunker {name!r}", "chunker")
