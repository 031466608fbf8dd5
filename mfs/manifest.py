"""File manifests and directory snapshots: the CBOR documents that name a tree.

A file manifest lists a file's blocks in order; a directory snapshot lists its
entries sorted by name, each the CID of a file manifest or of a sub-directory's
snapshot. Both are canonical CBOR (colonyp2p.codec), stored as dag-cbor blocks,
so the same tree always gives the same root CID: a snapshot id is a checksum of
everything beneath it, and unchanged sub-trees of two snapshots share blocks.

What is not recorded, on purpose: modification times, owners and inode data.
They would give the same content a new CID each time it is copied or checked
out, defeating deduplication; a process's inputs are its bytes and permission
bits. CIDs are strings (the base32 form) rather than IPLD tag-42 links because
the colony's codec refuses CBOR tags; the documents are still valid DAG-CBOR
(no floats, canonical map order), but IPFS tools will not follow the links.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from colonyp2p import codec
from colonyp2p.errors import BadManifest, ColonyError, ValidationError
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.chunking import MAX_BLOCK_SIZE
from colonyp2p.model.checks import as_tuple, check_int, check_str, set_field

# Bounds a peer can check before it decodes a manifest it fetched. A directory of
# ~500,000 entries fits; a larger one would need sharding (not done yet).
MAX_MANIFEST_SIZE = 64 * 1024 * 1024
MAX_NAME_BYTES = 255  # what Linux, macOS and Windows filesystems accept
MODE_MASK = 0o777  # permission bits only: setuid/setgid from a peer would be a hole
EntryKind = Literal["file", "dir"]


def check_name(name: object, field: str = "name") -> None:
    """A directory entry's name: one path component that is safe to create anywhere."""
    check_str(name, field, MAX_NAME_BYTES, nonempty=True)
    assert isinstance(name, str)
    if name in (".", "..") or "/" in name or "\0" in name:
        raise ValidationError(f"{name!r} is not a file name (no '/', NUL, '.' or '..')", field)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates: os.fsdecode of a non-UTF-8 name
        raise ValidationError(f"{name!r} is not valid UTF-8", field) from None
    if size > MAX_NAME_BYTES:
        raise ValidationError(f"at most {MAX_NAME_BYTES} bytes in UTF-8, got {size}", field)


@dataclass(frozen=True)
class BlockRef:
    """One block of a file: its CID (raw codec) and its length."""

    cid: str
    size: int

    def __post_init__(self) -> None:
        _check_cid(self.cid, cids.RAW, "cid")
        check_int(self.size, "size", 1, MAX_BLOCK_SIZE)


@dataclass(frozen=True)
class FileManifest:
    """A file's content as its blocks in order, its length and its permission bits.

    ``chunker`` records how the file was cut (see chunking.chunker_from_name), so a
    re-upload can cut the same way; a reader only concatenates the blocks.
    """

    size: int
    chunker: str
    blocks: tuple[BlockRef, ...]
    mode: int = 0o644
    kind: Literal["file"] = "file"

    def __post_init__(self) -> None:
        check_int(self.size, "size", 0)
        check_str(self.chunker, "chunker", 128)
        blocks = as_tuple(self.blocks, "blocks")
        set_field(self, "blocks", blocks)
        total = 0
        for i, block in enumerate(blocks):
            if not isinstance(block, BlockRef):
                raise ValidationError(
                    f"must be a BlockRef, got {type(block).__name__}", f"blocks[{i}]"
                )
            total += block.size
        if total != self.size:
            raise ValidationError(f"the blocks hold {total} bytes, not {self.size}", "size")
        check_int(self.mode, "mode", 0, MODE_MASK)
        if self.kind != "file":
            raise ValidationError(f"must be 'file', got {self.kind!r}", "kind")


@dataclass(frozen=True)
class DirEntry:
    """One entry of a directory: a file manifest's or sub-directory snapshot's CID.

    ``size`` is the bytes of file content beneath the entry, so that an export can
    report progress and check free space before it fetches anything.
    """

    name: str
    kind: EntryKind
    cid: str
    size: int

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.kind not in ("file", "dir"):
            raise ValidationError(f"must be 'file' or 'dir', got {self.kind!r}", "kind")
        _check_cid(self.cid, cids.DAG_CBOR, "cid")
        check_int(self.size, "size", 0)


@dataclass(frozen=True)
class DirectorySnapshot:
    """A directory: its entries sorted by name, each name once.

    Sorted order is checked, not applied, so that a snapshot decoded from a peer
    has exactly one encoding; build one with ``DirectorySnapshot.of``.
    """

    entries: tuple[DirEntry, ...]
    kind: Literal["dir"] = "dir"

    def __post_init__(self) -> None:
        entries = as_tuple(self.entries, "entries")
        set_field(self, "entries", entries)
        previous = None
        for i, entry in enumerate(entries):
            if not isinstance(entry, DirEntry):
                raise ValidationError(
                    f"must be a DirEntry, got {type(entry).__name__}", f"entries[{i}]"
                )
            # code point order is UTF-8 byte order: the same in every language
            if previous is not None and entry.name <= previous:
                raise ValidationError(
                    f"entries must be sorted by name, each once: {entry.name!r} after {previous!r}",
                    f"entries[{i}]",
                )
            previous = entry.name
        if self.kind != "dir":
            raise ValidationError(f"must be 'dir', got {self.kind!r}", "kind")

    @classmethod
    def of(cls, entries: tuple[DirEntry, ...] | list[DirEntry]) -> DirectorySnapshot:
        """A snapshot of these entries in any order (ValidationError on a repeated name)."""
        return cls(tuple(sorted(entries, key=lambda e: e.name)))

    @property
    def size(self) -> int:
        """Bytes of file content in the whole tree."""
        return sum(e.size for e in self.entries)

    def entry(self, name: str) -> DirEntry | None:
        for e in self.entries:
            if e.name == name:
                return e
        return None


Manifest = FileManifest | DirectorySnapshot


def encode(manifest: Manifest) -> bytes:
    """The canonical CBOR of a manifest (its CID is ``manifest_cid`` of these bytes)."""
    raw = codec.canonical_bytes(manifest)
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ValidationError(
            f"a manifest may take {MAX_MANIFEST_SIZE} bytes, this one {len(raw)} "
            "(a directory this large must be split into sub-directories)",
            "entries",
        )
    return raw


def manifest_cid(manifest: Manifest) -> str:
    """The CID of a manifest."""
    return cids.manifest_cid(encode(manifest))


def decode(raw: bytes) -> Manifest:
    """A manifest from its block, refusing anything not canonical or not well formed."""
    if len(raw) > MAX_MANIFEST_SIZE:
        raise BadManifest(f"a manifest of {len(raw)} bytes is larger than {MAX_MANIFEST_SIZE}")
    try:
        data = codec.loads_canonical(raw)
        kind = data.get("kind") if isinstance(data, dict) else None
        if kind == "file":
            return codec.from_data(FileManifest, data)
        if kind == "dir":
            return codec.from_data(DirectorySnapshot, data)
    except ColonyError as exc:
        raise BadManifest(f"not a manifest: {exc}") from exc
    raise BadManifest(f"not a manifest: kind {kind!r} is neither 'file' nor 'dir'")


def _check_cid(value: object, codec_: cids.Codec, field: str) -> None:
    if not cids.is_cid(value, codec_):
        raise ValidationError(f"must be a {codec_} CID, got {value!r}", field)
