"""Manifests: canonical CBOR round trips, one tree gives one CID whatever order it was
listed in, and anything malformed or ambiguous is refused on decode."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p import codec
from colonyp2p.errors import BadManifest, ValidationError
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.manifest import (
    BlockRef,
    DirectorySnapshot,
    DirEntry,
    FileManifest,
    check_name,
    decode,
    encode,
    manifest_cid,
)

names = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"), min_size=1, max_size=20
).filter(lambda n: n not in (".", ".."))
block_refs = st.builds(BlockRef, st.binary(max_size=8).map(cids.block_cid), st.integers(1, 1 << 20))


@st.composite
def file_manifests(draw: st.DrawFn) -> FileManifest:
    blocks = tuple(draw(st.lists(block_refs, max_size=5)))
    return FileManifest(
        size=sum(b.size for b in blocks),
        chunker=draw(st.sampled_from(["fixed:1048576", "fastcdc:262144:1048576:4194304"])),
        blocks=blocks,
        mode=draw(st.integers(0, 0o777)),
    )


entries = st.builds(
    DirEntry,
    names,
    st.sampled_from(["file", "dir"]),
    st.binary(max_size=8).map(cids.manifest_cid),
    st.integers(0, 1 << 40),
)
entry_lists = st.lists(entries, max_size=12, unique_by=lambda e: e.name)


@settings(max_examples=100, deadline=None)
@given(file_manifests())
def test_file_manifests_round_trip(manifest: FileManifest) -> None:
    raw = encode(manifest)
    assert decode(raw) == manifest
    cids.verify(manifest_cid(manifest), raw)
    assert codec.canonical_bytes(decode(raw)) == raw


@settings(max_examples=100, deadline=None)
@given(entry_lists, st.randoms(use_true_random=False))
def test_directory_snapshots_round_trip_with_one_cid_per_tree(
    listed: list[DirEntry], rng: object
) -> None:
    snapshot = DirectorySnapshot.of(listed)
    shuffled = list(listed)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    again = DirectorySnapshot.of(shuffled)
    assert again == snapshot
    assert manifest_cid(again) == manifest_cid(snapshot)
    assert decode(encode(snapshot)) == snapshot
    assert snapshot.size == sum(e.size for e in listed)
    assert [e.name for e in snapshot.entries] == sorted(e.name for e in listed)


@settings(max_examples=50, deadline=None)
@given(entry_lists.filter(lambda es: len(es) >= 2))
def test_an_unsorted_snapshot_from_a_peer_is_refused(listed: list[DirEntry]) -> None:
    ordered = sorted(listed, key=lambda e: e.name)
    data = codec.to_data(DirectorySnapshot(tuple(ordered)))
    data["entries"] = list(reversed(data["entries"]))
    with pytest.raises(BadManifest, match="sorted"):
        decode(cbor2.dumps(data, canonical=True))


def test_malformed_manifests_are_refused() -> None:
    block = BlockRef(cids.block_cid(b"x"), 1)
    good = codec.to_data(FileManifest(1, "fixed:1", (block,)))
    cases: list[object] = [
        {**good, "size": 2},  # blocks do not add up
        {**good, "mode": 0o4755},  # setuid
        {**good, "kind": "link"},
        {**good, "extra": 1},
        {**good, "blocks": [{"cid": cids.manifest_cid(b"x"), "size": 1}]},  # not raw
        {"entries": [{"name": "..", "kind": "file", "cid": cids.manifest_cid(b""), "size": 0}]},
        {"entries": [], "kind": "dir", "x": 1},
        [1, 2],
    ]
    for case in cases:
        with pytest.raises(BadManifest):
            decode(cbor2.dumps(case, canonical=True))
    with pytest.raises(BadManifest, match="canonical"):
        decode(cbor2.dumps(good, canonical=False))
    with pytest.raises(BadManifest):
        decode(b"\xff garbage")


def test_names_that_cannot_be_files_are_refused() -> None:
    for bad in ["", ".", "..", "a/b", "nul\0", "x" * 256, "é" * 128, "\udcff"]:
        with pytest.raises(ValidationError):
            check_name(bad)
    for fine in ["a", "...", "é" * 127, " x ", "a\\b", "x" * 255]:
        check_name(fine)
    entry = DirEntry("a", "file", cids.manifest_cid(b""), 0)
    with pytest.raises(ValidationError, match="each once"):
        DirectorySnapshot.of([entry, entry])
