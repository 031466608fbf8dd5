"""Import and export: a directory tree comes back byte for byte with its permission
bits; label updates happen only after the whole tree is stored, so a full disk or a
quota leaves the label where it was; losing label versions are merged, not lost."""

from __future__ import annotations

import errno
import os
import random
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import (
    BadBlock,
    IncompleteSnapshot,
    NotAMember,
    QuotaExceeded,
    StoreFull,
    UnsupportedFile,
)
from colonyp2p.identity import Identity
from colonyp2p.mfs import blockstore as bs
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.chunking import CdcChunker, Chunker, FixedChunker
from colonyp2p.mfs.importer import add_path, commit_label, export, publish
from colonyp2p.mfs.labels import Label, LabelLog
from colonyp2p.mfs.merge import merge_snapshots, resolve_conflicts
from colonyp2p.model.membership import Member, MembershipSet

OWNER, EXEC, OUTSIDER = (Identity.from_seed(bytes([n]) * 32) for n in range(11, 14))
MEMBERS = MembershipSet.genesis(OWNER, "fs", 1.0, members=[Member(EXEC.member_id, "executor")])

Tree = dict[str, Any]  # name -> bytes (a file) or Tree (a directory)


def write_tree(root: Path, tree: Tree, modes: random.Random | None = None) -> None:
    """Write ``tree`` under ``root``, with random permission bits if ``modes`` is given."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in tree.items():
        if isinstance(value, dict):
            write_tree(root / name, value, modes)
        else:
            (root / name).write_bytes(value)
            if modes is not None:
                os.chmod(root / name, modes.choice([0o600, 0o644, 0o755, 0o640]))


def read_tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in sorted(os.listdir(root)):
        path = root / entry
        if path.is_dir():
            out[entry] = read_tree(path)
        else:
            out[entry] = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode))
    return out


names = st.text("abcdefgh._-é", min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
trees = st.recursive(
    st.dictionaries(names, st.binary(max_size=3000), max_size=4),
    lambda children: st.dictionaries(
        names, st.one_of(st.binary(max_size=300), children), max_size=4
    ),
    max_leaves=12,
)
chunkers = st.sampled_from([FixedChunker(100), CdcChunker(64, 256, 1024), CdcChunker()])


@settings(max_examples=12, deadline=None)
@given(trees, chunkers, st.integers(0, 100))
def test_a_tree_round_trips_through_the_store(tree: Tree, chunker: Chunker, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        write_tree(src, tree, random.Random(seed))
        with BlockStore(Path(tmp) / "store") as store:
            seen: list[tuple[int, int]] = []
            root = add_path(store, src, chunker=chunker, progress=lambda d, t: seen.append((d, t)))
            # the same tree gives the same snapshot, whoever stores it
            with BlockStore(Path(tmp) / "other") as other:
                assert add_path(other, src, chunker=chunker) == root
            export(store, root, out)
            assert read_tree(out) == read_tree(src)
            total = sum(len(v) for v in _files(tree))
            assert [d for d, _ in seen] == sorted(d for d, _ in seen)
            assert all(t == total for _, t in seen)
            if total:
                assert seen[-1] == (total, total)
            assert store.missing(root) == []
            assert store.pins() == {f"snapshot:{root}": root}


def _files(tree: Tree) -> list[bytes]:
    out: list[bytes] = []
    for value in tree.values():
        out.extend(_files(value) if isinstance(value, dict) else [value])
    return out


def test_a_single_file_becomes_a_one_entry_snapshot(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(3 << 20)
    (tmp_path / "big.bin").write_bytes(data)
    with BlockStore(tmp_path / "store") as store:
        root = add_path(store, tmp_path / "big.bin")
        snapshot = store.get_dir(root)
        assert [e.name for e in snapshot.entries] == ["big.bin"]
        manifest = store.get_file(snapshot.entries[0].cid)
        assert manifest.size == len(data) and manifest.chunker.startswith("fastcdc:")
        assert len(manifest.blocks) >= 2
        export(store, root, tmp_path / "out")
        assert (tmp_path / "out" / "big.bin").read_bytes() == data


def test_symlinks_and_special_files_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok").write_bytes(b"ok")
    os.symlink("/etc/passwd", src / "link")
    with BlockStore(tmp_path / "store") as store:
        with pytest.raises(UnsupportedFile, match="symlink"):
            add_path(store, src)
        (src / "link").unlink()
        os.mkfifo(src / "fifo")
        with pytest.raises(UnsupportedFile, match="not a regular file"):
            add_path(store, src)


def test_export_verifies_every_block_and_leaves_no_partial_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a": b"x" * 500, "b": b"y" * 500}, random.Random(0))
    with BlockStore(tmp_path / "store") as store:
        root = add_path(store, src, chunker=FixedChunker(100))
        manifest = store.get_file(store.get_dir(root).entries[1].cid)
        path = store.block_path(manifest.blocks[2].cid)
        path.write_bytes(b"z" * 100)
        with pytest.raises(BadBlock):
            export(store, root, tmp_path / "out")
        assert sorted(os.listdir(tmp_path / "out")) == ["a"]
        # an existing symlink where the tree has a directory is not followed
        write_tree(tmp_path / "src2", {"d": {"f": b"1"}}, random.Random(0))
        root2 = add_path(store, tmp_path / "src2")
        (tmp_path / "out2").mkdir()
        os.symlink(tmp_path, tmp_path / "out2" / "d")
        with pytest.raises(UnsupportedFile, match="not a directory"):
            export(store, root2, tmp_path / "out2")


def test_publish_moves_the_label_after_the_tree_is_stored(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"in.txt": b"v1"}, random.Random(0))
    with BlockStore(tmp_path / "store") as store:
        log = LabelLog(MEMBERS.colony_id)
        v1 = publish(store, log, OWNER, MEMBERS, "/jobs/in", src, 10.0)
        (src / "in.txt").write_bytes(b"v2")
        v2 = publish(store, log, EXEC, MEMBERS, "/jobs/in", src, 11.0)
        assert log.head("/jobs/in") == v2 and v2.parents == (v1.label_id,)
        assert store.labels("/jobs/in") == [v1, v2]
        assert LabelLog.restore(MEMBERS.colony_id, store.labels()).head("/jobs/in") == v2
        # every version stays a snapshot, pinned by its label
        store.gc()
        export(store, log.at_version("/jobs/in", 1).snapshot, tmp_path / "old")  # type: ignore[union-attr]
        assert (tmp_path / "old" / "in.txt").read_bytes() == b"v1"
        with pytest.raises(NotAMember):
            publish(store, log, OUTSIDER, MEMBERS, "/jobs/in", src, 12.0)
        assert store.labels("/jobs/in") == [v1, v2]


@pytest.mark.parametrize("flush_every", [1024, 2])
def test_a_full_disk_never_leaves_a_half_written_label(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flush_every: int
) -> None:
    src = tmp_path / "src"
    write_tree(src, {f"f{n}": random.randbytes(300) for n in range(8)}, random.Random(0))
    with BlockStore(tmp_path / "store") as store:
        log = LabelLog(MEMBERS.colony_id)
        (src / "first").write_bytes(b"first")
        v1 = publish(store, log, OWNER, MEMBERS, "/out", src / "first", 1.0)
        monkeypatch.setattr(bs, "FLUSH_BLOCKS", flush_every)
        real_write = os.write
        calls = [0]

        def fills_up(fd: int, data: bytes | memoryview) -> int:
            calls[0] += 1
            if calls[0] > 5:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_write(fd, data)

        monkeypatch.setattr(os, "write", fills_up)
        with pytest.raises(StoreFull):
            publish(store, log, OWNER, MEMBERS, "/out", src, 2.0, chunker=FixedChunker(100))
        monkeypatch.setattr(os, "write", real_write)
        assert log.head("/out") == v1 and store.labels() == [v1]
        assert list(store.tmp_dir.iterdir()) == []
        # what was committed before the disk filled up is unpinned garbage
        store.gc()
        assert store.du().blocks == len(list(store.walk(v1.snapshot)))
        v2 = publish(store, log, OWNER, MEMBERS, "/out", src, 3.0, chunker=FixedChunker(100))
        assert log.head("/out") == v2


def test_the_quota_stops_a_publish_before_the_label(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"big": b"b" * 5000}, random.Random(0))
    with BlockStore(tmp_path / "store", quota=4000) as store:
        log = LabelLog(MEMBERS.colony_id)
        with pytest.raises(QuotaExceeded, match="nothing was written"):
            publish(store, log, OWNER, MEMBERS, "/out", src, 1.0)
        assert log.head("/out") is None and store.labels() == []
        assert store.du().bytes == 0


def test_a_label_never_points_to_an_incomplete_snapshot(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_tree(src, {"a": b"a" * 300}, random.Random(0))
    with BlockStore(tmp_path / "store") as store:
        log = LabelLog(MEMBERS.colony_id)
        root = add_path(store, src, chunker=FixedChunker(100))
        lost = store.get_file(store.get_dir(root).entries[0].cid).blocks[1].cid
        store.block_path(lost).unlink()
        with pytest.raises(IncompleteSnapshot) as info:
            commit_label(store, log, OWNER, MEMBERS, "/out", root, 1.0)
        assert info.value.missing == (lost,)
        assert store.labels() == [] and len(log) == 0


def test_concurrent_versions_are_merged_three_ways(tmp_path: Path) -> None:
    base = {"same": b"s", "edited": b"e0", "both": b"b0", "gone": b"g", "d": {"x": b"x0"}}
    ours = {"same": b"s", "edited": b"e0", "both": b"b-ours", "d": {"x": b"x0", "o": b"o"}}
    theirs = {
        "same": b"s",
        "edited": b"e1",
        "both": b"b-theirs",
        "gone": b"g",
        "d": {"x": b"x1"},
        "new": b"n",
    }
    with BlockStore(tmp_path / "store") as store:
        log = LabelLog(MEMBERS.colony_id)
        snaps = {}
        for name, tree in (("base", base), ("ours", ours), ("theirs", theirs)):
            write_tree(tmp_path / name, tree)
            snaps[name] = add_path(store, tmp_path / name, pin=False)
        v1 = commit_label(store, log, OWNER, MEMBERS, "/w", snaps["base"], 1.0)
        a = Label.create(OWNER, MEMBERS.colony_id, "/w", 2, snaps["ours"], [v1.label_id], 2.0)
        b = Label.create(EXEC, MEMBERS.colony_id, "/w", 2, snaps["theirs"], [v1.label_id], 2.0)
        for label in (a, b):
            log.add(label, MEMBERS)
            store.record_label(label)
        head, loser = log.head("/w"), log.conflicts("/w")[0]
        assert head is not None
        resolved = resolve_conflicts(store, log, OWNER, MEMBERS, "/w", 3.0)
        assert resolved is not None
        merge, conflicts = resolved
        assert conflicts == ("/both",)
        assert log.head("/w") == merge and log.conflicts("/w") == []
        assert set(merge.parents) == {a.label_id, b.label_id}
        store.gc()
        export(store, merge.snapshot, tmp_path / "merged")
        got = {
            k: v[0] if isinstance(v, tuple) else v
            for k, v in read_tree(tmp_path / "merged").items()
        }
        head_tree, loser_tree = (ours, theirs) if head == a else (theirs, ours)
        assert got["same"] == b"s" and got["edited"] == b"e1" and got["new"] == b"n"
        assert "gone" not in got  # deleted on one side, untouched on the other
        assert got["both"] == head_tree["both"]
        assert got[f"both.conflict-{loser.label_id[:8]}"] == loser_tree["both"]
        assert {k: v[0] for k, v in got["d"].items()} == {"x": b"x1", "o": b"o"}
        assert resolve_conflicts(store, log, OWNER, MEMBERS, "/w", 4.0) is None
        # merging with no common ancestor keeps both sides of every difference
        result = merge_snapshots(store, None, snaps["ours"], snaps["theirs"], tag="t")
        assert set(result.conflicts) == {"/both", "/edited", "/d/x"}
        assert cids.is_cid(result.snapshot, "dag-cbor")


def test_several_losers_are_merged_in_one_version(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "store") as store:
        log = LabelLog(MEMBERS.colony_id)
        write_tree(tmp_path / "base", {"shared": b"0"})
        v1 = publish(store, log, OWNER, MEMBERS, "/w", tmp_path / "base", 1.0)
        forks = []
        for n, writer in enumerate([OWNER, EXEC, OWNER]):
            write_tree(tmp_path / f"fork{n}", {"shared": b"0", f"only{n}": b"%d" % n})
            snap = add_path(store, tmp_path / f"fork{n}", pin=False)
            label = Label.create(writer, MEMBERS.colony_id, "/w", 2, snap, [v1.label_id], 2.0 + n)
            log.add(label, MEMBERS)
            store.record_label(label)
            forks.append(label)
        assert len(log.conflicts("/w")) == 2
        resolved = resolve_conflicts(store, log, EXEC, MEMBERS, "/w", 9.0)
        assert resolved is not None and resolved[1] == ()
        merge = resolved[0]
        assert set(merge.parents) == {f.label_id for f in forks}
        export(store, merge.snapshot, tmp_path / "out")
        assert sorted(os.listdir(tmp_path / "out")) == ["only0", "only1", "only2", "shared"]
