"""The block store: content-addressed files verified on every read, a quota and a full
disk that fail a put before anything is half-written, pins, and gc."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import (
    BadBlock,
    BadCid,
    BlockNotFound,
    QuotaExceeded,
    StoreError,
    StoreFull,
)
from colonyp2p.identity import Identity
from colonyp2p.mfs import blockstore as bs
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.labels import Label
from colonyp2p.mfs.manifest import BlockRef, DirectorySnapshot, DirEntry, FileManifest


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlockStore]:
    with BlockStore(tmp_path / "store") as s:
        yield s


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def a_tree(store: BlockStore, tag: bytes) -> tuple[str, list[str]]:
    """A directory holding one two-block file; returns its CID and every CID in it."""
    with store.writer() as w:
        b1, b2 = w.put(tag + b"-one"), w.put(tag + b"-two")
        f = FileManifest(
            len(tag) * 2 + 8, "fixed:4", (BlockRef(b1, len(tag) + 4), BlockRef(b2, len(tag) + 4))
        )
        fc = w.put_manifest(f)
        d = DirectorySnapshot((DirEntry("f", "file", fc, f.size),))
        dc = w.put_manifest(d)
    return dc, [dc, fc, b1, b2]


def test_put_get_has_and_layout(store: BlockStore) -> None:
    data = b"some block"
    cid = store.put(data)
    assert cid == cids.block_cid(data)
    assert store.put(data) == cid  # idempotent
    assert store.has(cid) and store.get(cid) == data
    assert store.du().blocks == 1 and store.du().bytes == len(data)
    path = store.block_path(cid)
    assert path == store.root / "blocks" / cid[-3:-1] / cid
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.root.stat().st_mode) == 0o700
    missing = cids.block_cid(b"never stored")
    assert not store.has(missing)
    with pytest.raises(BlockNotFound):
        store.get(missing)
    with pytest.raises(BadCid):
        store.get("../../etc/passwd")
    with pytest.raises(BadBlock, match="hashes to"):
        store.put(data, expect=cids.block_cid(b"other"))
    assert list(store.tmp_dir.iterdir()) == []


def test_a_store_reopens_with_its_blocks_and_has_one_owner(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as s:
        cid = s.put(b"kept")
        with pytest.raises(StoreError, match="in use"):
            BlockStore(tmp_path / "s")
    (tmp_path / "s" / "tmp" / "leftover").write_bytes(b"half")
    with BlockStore(tmp_path / "s") as s:
        assert s.get(cid) == b"kept"
        assert s.du().bytes == 4
        assert list(s.tmp_dir.iterdir()) == []


def test_a_flipped_byte_is_detected_on_every_read() -> None:
    with tempfile.TemporaryDirectory() as tmp, BlockStore(tmp) as store:
        data = bytes(range(256)) * 3

        @settings(max_examples=100, deadline=None)
        @given(st.integers(0, len(data) - 1), st.integers(0, 7))
        def flip(position: int, bit: int) -> None:
            cid = store.put(data)
            assert store.get(cid) == data
            path = store.block_path(cid)
            raw = bytearray(path.read_bytes())
            raw[position] ^= 1 << bit
            path.write_bytes(bytes(raw))
            with pytest.raises(BadBlock, match="corrupt"):
                store.get(cid)
            # quarantined and out of the index: a new put restores it
            assert not store.has(cid) and not path.exists()
            assert store.du().bytes == 0
            with pytest.raises(BlockNotFound):
                store.get(cid)

        flip()
        assert len(list(store.quarantine_dir.iterdir())) >= 1
        store.gc()
        assert list(store.quarantine_dir.iterdir()) == []


def test_truncated_and_deleted_blocks_are_detected(store: BlockStore) -> None:
    cid = store.put(b"0123456789")
    store.block_path(cid).write_bytes(b"01234")
    with pytest.raises(BadBlock):
        store.get(cid)
    cid = store.put(b"0123456789")
    store.block_path(cid).unlink()
    with pytest.raises(BlockNotFound, match="gone"):
        store.get(cid)
    assert not store.has(cid)
    assert store.put(b"0123456789") == cid and store.get(cid) == b"0123456789"


def test_the_quota_refuses_a_put_before_writing(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", quota=100) as store:
        store.put(b"a" * 60)
        with pytest.raises(QuotaExceeded, match="quota of 100 bytes") as info:
            store.put(b"b" * 41)
        assert isinstance(info.value, StoreFull)
        assert store.du().bytes == 60 and store.du().free == 40
        assert list(store.tmp_dir.iterdir()) == []
        assert len(files_under(store.blocks_dir)) == 1
        store.put(b"b" * 40)
        assert store.du().free == 0
        # a batch counts what it has written but not committed yet
        store.gc()
        assert store.du().bytes == 0
        with pytest.raises(QuotaExceeded), store.writer() as w:
            w.put(b"c" * 70)
            w.put(b"d" * 31)
        assert store.du().bytes == 0
        assert files_under(store.blocks_dir) == [] and list(store.tmp_dir.iterdir()) == []


def test_a_full_disk_leaves_no_partial_file(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    written: list[int] = []

    def full(fd: int, data: bytes | memoryview) -> int:
        if written:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(1)
        return real_write(fd, bytes(data)[:3])  # a partial write first

    kept = store.put(b"stored before")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreFull, match="disk is full"):
        store.put(b"x" * 1000)
    monkeypatch.setattr(os, "write", real_write)
    assert list(store.tmp_dir.iterdir()) == []
    assert files_under(store.blocks_dir) == [store.block_path(kept)]
    assert store.du().blocks == 1
    assert store.put(b"x" * 1000)  # works again once there is space


def test_a_failed_index_commit_removes_the_batch(
    store: BlockStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(rows: list[tuple[str, int]]) -> int:
        raise StoreFull("cannot update the block index: the disk is full")

    monkeypatch.setattr(store, "_commit_rows", full)
    with pytest.raises(StoreFull), store.writer() as w:
        w.put(b"one")
        w.put(b"two")
    assert files_under(store.blocks_dir) == [] and list(store.tmp_dir.iterdir()) == []
    assert store.du().bytes == 0
    failing_fsync = os.fsync

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.undo()
    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StoreFull):
        store.put(b"three")
    monkeypatch.setattr(os, "fsync", failing_fsync)
    assert files_under(store.blocks_dir) == [] and list(store.tmp_dir.iterdir()) == []


def test_batches_commit_in_groups(store: BlockStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bs, "FLUSH_BLOCKS", 3)
    with pytest.raises(RuntimeError), store.writer() as w:
        for n in range(5):
            w.put(b"block %d" % n)
        raise RuntimeError("the import failed")
    # the first three were committed (durable, unpinned); the last two discarded
    assert store.du().blocks == 3
    assert len(files_under(store.blocks_dir)) == 3
    assert store.gc().freed_blocks == 3


def test_gc_keeps_what_pins_reach_and_frees_the_rest(store: BlockStore) -> None:
    pinned, pinned_cids = a_tree(store, b"pinned")
    labelled, labelled_cids = a_tree(store, b"labelled")
    _, loose_cids = a_tree(store, b"loose")
    store.pin_snapshot(pinned)
    writer = Identity.from_seed(b"\1" * 32)
    label = Label.create(writer, "c" * 64, "/data", 1, labelled, (), 1.0)
    store.record_label(label)
    assert store.labels() == [label] and store.labels("/data") == [label]
    before = store.du()
    report = store.gc()
    assert report.freed_blocks == 4 and report.incomplete == ()
    assert report.freed_bytes == before.bytes - store.du().bytes
    for cid in pinned_cids + labelled_cids:
        assert store.get(cid)
    for cid in loose_cids:
        assert not store.has(cid) and not store.block_path(cid).exists()
    # unpinning makes them collectable
    assert store.unpin_label("/data", 1) == 1
    assert store.unpin_snapshot(pinned) and not store.unpin_snapshot(pinned)
    assert store.gc().freed_blocks == 8
    assert store.du().blocks == 0 and files_under(store.blocks_dir) == []
    assert store.labels() == [label]  # the history stays; only its blocks went


def test_gc_spares_blocks_an_open_writer_holds(store: BlockStore) -> None:
    done = store.put(b"already stored")
    with store.writer() as w:
        fresh = w.put(b"fresh")
        w.flush()
        assert w.put(b"already stored") == done
        assert store.gc().freed_blocks == 0
        assert store.has(fresh) and store.has(done)
    assert store.gc().freed_blocks == 2


def test_missing_and_incomplete_pins(store: BlockStore) -> None:
    root, every = a_tree(store, b"t")
    store.pin_snapshot(root)
    assert store.missing(root) == []
    file_manifest = every[1]
    store.block_path(every[2]).unlink()
    assert store.missing(root) == [every[2]]
    store.block_path(file_manifest).unlink()
    assert store.missing(root) == [file_manifest]
    report = store.gc()
    assert report.incomplete == (root,)


def test_scrub_adopts_orphans_and_drops_bad_blocks(store: BlockStore) -> None:
    good = store.put(b"good")
    bad = store.put(b"bad")
    store.block_path(bad).write_bytes(b"rotten")
    orphan = cids.block_cid(b"orphan")
    store.block_path(orphan).parent.mkdir(exist_ok=True)
    store.block_path(orphan).write_bytes(b"orphan")
    junk = store.blocks_dir / "zz" / cids.block_cid(b"junk")
    junk.parent.mkdir(exist_ok=True)
    junk.write_bytes(b"not junk")
    report = store.scrub()
    assert report.corrupt == (bad,) and report.adopted == (orphan,)
    assert report.removed == (junk.name,)
    assert store.get(orphan) == b"orphan" and store.get(good) == b"good"
    assert store.du().bytes == len(b"good") + len(b"orphan")
