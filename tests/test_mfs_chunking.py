"""Chunkers: blocks reassemble to the input, sizes stay in bounds, reads are streamed,
and content-defined boundaries survive an insertion where fixed ones do not."""

from __future__ import annotations

import bisect
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import ValidationError
from colonyp2p.mfs.chunking import (
    GEAR,
    MAX_BLOCK_SIZE,
    CdcChunker,
    Chunker,
    FixedChunker,
    chunker_from_name,
    gear_hashes,
)


class TrickleStream(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, and records the largest
    read it was asked for (a chunker must never ask for the whole file)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = data
        self.pos = 0
        self.step = step
        self.largest_request = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        self.largest_request = max(self.largest_request, len(buffer))
        n = min(len(buffer), self.step, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def small_cdc() -> st.SearchStrategy[CdcChunker]:
    return st.builds(
        lambda lo, avg_bits, hi: CdcChunker(min(lo, (1 << avg_bits) - 1), 1 << avg_bits, hi),
        st.integers(1, 200),
        st.integers(6, 9),
        st.integers(1025, 2048),
    )


def data_with_repeats() -> st.SearchStrategy[bytes]:
    # random bytes plus long runs: a run has a constant Gear hash, the worst case
    return st.lists(
        st.one_of(st.binary(max_size=3000), st.builds(lambda n: b"\0" * n, st.integers(0, 3000))),
        max_size=4,
    ).map(b"".join)


def check_blocks(chunker: Chunker, data: bytes, lo: int, hi: int) -> list[bytes]:
    blocks = list(chunker.chunks(io.BytesIO(data)))
    assert b"".join(blocks) == data
    assert all(blocks), "no empty blocks"
    for block in blocks[:-1]:
        assert lo <= len(block) <= hi
    if blocks:
        assert 1 <= len(blocks[-1]) <= hi
    # the same stream read in tiny pieces is cut the same way
    assert list(chunker.chunks(TrickleStream(data, 7))) == blocks  # type: ignore[arg-type]
    return blocks


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 600), data_with_repeats())
def test_fixed_chunks_reassemble_and_have_the_size(size: int, data: bytes) -> None:
    blocks = check_blocks(FixedChunker(size), data, size, size)
    assert len(blocks) == -(-len(data) // size)


@settings(max_examples=150, deadline=None)
@given(small_cdc(), data_with_repeats())
def test_cdc_chunks_reassemble_within_bounds(chunker: CdcChunker, data: bytes) -> None:
    check_blocks(chunker, data, chunker.min_size, chunker.max_size)


def test_cdc_never_reads_the_whole_file() -> None:
    data = random.Random(3).randbytes(12 << 20)
    stream = TrickleStream(data, 1 << 30)
    blocks = list(CdcChunker().chunks(stream))  # type: ignore[arg-type]
    assert b"".join(blocks) == data
    assert stream.largest_request <= 4 << 20
    stream = TrickleStream(data, 1 << 30)
    assert len(list(FixedChunker().chunks(stream))) == 12  # type: ignore[arg-type]
    assert stream.largest_request <= 1 << 20


def test_gear_hash_matches_its_definition() -> None:
    data = random.Random(5).randbytes(2000)
    h, expected = 0, []
    for byte in data:
        h = ((h << 1) + GEAR[byte]) & 0xFFFFFFFF
        expected.append(h)
    assert [int(x) for x in gear_hashes(data)] == expected


@pytest.mark.parametrize("offset", [0, 1, 5000, 150_000])
def test_an_insertion_changes_one_or_two_cdc_blocks_and_every_fixed_block(offset: int) -> None:
    rng = random.Random(offset)
    data = rng.randbytes(300_000)
    edited = data[:offset] + b"inserted!" + data[offset:]
    cdc = CdcChunker(2048, 8192, 32768)
    before = set(cdc.chunks(io.BytesIO(data)))
    after = list(cdc.chunks(io.BytesIO(edited)))
    assert len(before) > 20
    assert sum(1 for b in after if b not in before) <= 2
    fixed = FixedChunker(8192)
    before = set(fixed.chunks(io.BytesIO(data)))
    after = list(fixed.chunks(io.BytesIO(edited)))
    changed = sum(1 for b in after if b not in before)
    assert changed >= len(after) - offset // 8192 - 1


def test_cdc_sizes_centre_on_the_average() -> None:
    data = random.Random(9).randbytes(4 << 20)
    cdc = CdcChunker(4096, 16384, 65536)
    sizes = [len(b) for b in cdc.chunks(io.BytesIO(data))]
    mean = sum(sizes) / len(sizes)
    assert 0.75 * 16384 < mean < 1.5 * 16384


def test_small_files_are_one_block_without_hashing() -> None:
    assert list(CdcChunker().chunks(io.BytesIO(b"tiny"))) == [b"tiny"]
    assert list(CdcChunker().chunks(io.BytesIO(b""))) == []
    assert list(FixedChunker().chunks(io.BytesIO(b""))) == []


def test_names_round_trip_and_bad_parameters_are_refused() -> None:
    for chunker in (FixedChunker(), FixedChunker(4096), CdcChunker(), CdcChunker(10, 64, 100)):
        assert chunker_from_name(chunker.name) == chunker
    for name in ("fixed", "fixed:x", "fastcdc:1:2", "rabin:1", "fixed:0"):
        with pytest.raises(ValidationError):
            chunker_from_name(name)
    with pytest.raises(ValidationError, match="power of two"):
        CdcChunker(10, 100, 1000)
    with pytest.raises(ValidationError, match="min_size < avg_size < max_size"):
        CdcChunker(100, 64, 1000)
    with pytest.raises(ValidationError):
        FixedChunker(MAX_BLOCK_SIZE + 1)


def reference_cuts(chunker: CdcChunker, data: bytes) -> list[bytes]:
    """The cut rule applied to the hash of the whole input at once (no read segments)."""
    hashes = gear_hashes(data)
    strict_mask, loose_mask = chunker.masks
    strict = [int(p) for p in (hashes & strict_mask == 0).nonzero()[0]]
    loose = [int(p) for p in (hashes & loose_mask == 0).nonzero()[0]]
    blocks, start = [], 0
    while start < len(data):
        lo, mid, hi = (
            start + s - 1 for s in (chunker.min_size, chunker.avg_size, chunker.max_size)
        )
        cut = start + chunker.max_size
        i = bisect.bisect_left(strict, lo)
        j = bisect.bisect_left(loose, mid)
        if i < len(strict) and strict[i] < mid:
            cut = strict[i] + 1
        elif j < len(loose) and loose[j] < hi:
            cut = loose[j] + 1
        cut = min(cut, len(data))
        blocks.append(data[start:cut])
        start = cut
    return blocks


def test_cdc_cuts_do_not_depend_on_how_the_stream_was_read() -> None:
    # 9 MiB: the chunker reads 4 MiB at a time, so hashing crosses two read boundaries
    data = random.Random(11).randbytes(9 << 20)
    chunker = CdcChunker(2048, 8192, 32768)
    blocks = list(chunker.chunks(io.BytesIO(data)))
    assert blocks == reference_cuts(chunker, data)
    assert len(blocks) > 500
