"""Local files in and out of the block store, and label updates that follow them.

``add_path`` turns a file or a directory into a snapshot: it streams each file
through a chunker (a file is never read whole into memory), stores the blocks,
then the file manifests, then the directory snapshots bottom-up, and returns the
root snapshot's CID. A single file becomes a snapshot holding that one file, so a
label always points to a directory and ``export`` always fills a directory.

``publish`` adds a tree and moves a label to it. The label is written last, after
every block and manifest has been made durable and indexed, and only after a walk
of the snapshot finds nothing missing; a full disk or a crash before that point
leaves unpinned blocks for gc and the label where it was, never a label pointing
to a half-stored tree.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from colonyp2p.errors import (
    BadManifest,
    IncompleteSnapshot,
    MfsError,
    UnsupportedFile,
    ValidationError,
)
from colonyp2p.identity import Identity
from colonyp2p.mfs.blockstore import BlockStore, BlockWriter
from colonyp2p.mfs.chunking import DEFAULT_CHUNKER, Chunker
from colonyp2p.mfs.labels import Label, LabelLog
from colonyp2p.mfs.manifest import (
    MODE_MASK,
    BlockRef,
    DirectorySnapshot,
    DirEntry,
    FileManifest,
    check_name,
)
from colonyp2p.model.membership import MembershipSet

# (bytes done, bytes in total): called after every block
Progress = Callable[[int, int], None]
MAX_DEPTH = 256  # directories nested deeper are refused rather than overflowing the stack


@dataclass
class _Node:
    """A scanned file or directory (scanned first, so progress knows the total)."""

    path: Path
    name: str
    is_dir: bool
    size: int
    children: list[_Node] = field(default_factory=list)


@dataclass
class _Counter:
    total: int
    progress: Progress | None
    done: int = 0

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def add_path(
    store: BlockStore,
    path: str | os.PathLike[str],
    *,
    chunker: Chunker = DEFAULT_CHUNKER,
    progress: Progress | None = None,
    pin: bool = True,
) -> str:
    """Store a file or a directory tree and return the CID of its snapshot.

    ``pin``: pin the snapshot (else gc may collect it once this returns; ``publish``
    pins through the label instead). Symlinks, devices, sockets and non-UTF-8 names
    are refused with UnsupportedFile rather than skipped: a silently incomplete
    snapshot would be worse than none.
    """
    with store.writer() as w:
        root = add_to_writer(w, path, chunker=chunker, progress=progress)
        w.flush()
        if pin:
            store.pin_snapshot(root)
    return root


def add_to_writer(
    w: BlockWriter,
    path: str | os.PathLike[str],
    *,
    chunker: Chunker = DEFAULT_CHUNKER,
    progress: Progress | None = None,
) -> str:
    """``add_path`` inside an open writer: the blocks stay held (safe from gc) until the
    writer closes, and are durable only after it flushes."""
    top = _scan(Path(path), 0, top=True)
    counter = _Counter(top.size, progress)
    if top.is_dir:
        return _add_dir(w, top, chunker, counter)[0]
    cid, size = _add_file(w, top, chunker, counter)
    return w.put_manifest(DirectorySnapshot((DirEntry(top.name, "file", cid, size),)))


def _scan(path: Path, depth: int, top: bool = False) -> _Node:
    if depth > MAX_DEPTH:
        raise UnsupportedFile(f"{path}: directories nested deeper than {MAX_DEPTH} levels")
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise MfsError(f"cannot read {path}: {exc}") from exc
    # The top directory's own name is not recorded (its entries are the snapshot);
    # a top file's name is (it becomes the snapshot's one entry).
    name = path.name or path.resolve().name
    if not (top and stat.S_ISDIR(st.st_mode)):
        try:
            check_name(name)
        except ValidationError as exc:
            raise UnsupportedFile(f"{path}: {exc}") from exc
    if stat.S_ISREG(st.st_mode):
        return _Node(path, name, False, st.st_size)
    if not stat.S_ISDIR(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file or directory"
        raise UnsupportedFile(f"{path} is {kind}; the meta-filesystem stores files and dirs only")
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise MfsError(f"cannot list {path}: {exc}") from exc
    children = [_scan(path / n, depth + 1) for n in names]
    return _Node(path, name, True, sum(c.size for c in children), children)


def _add_file(w: BlockWriter, node: _Node, chunker: Chunker, counter: _Counter) -> tuple[str, int]:
    try:
        # O_NOFOLLOW: the scan saw a regular file; a symlink swapped in since is refused
        fd = os.open(node.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise MfsError(f"cannot read {node.path}: {exc}") from exc
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise UnsupportedFile(f"{node.path} is no longer a regular file")
        blocks = []
        for block in chunker.chunks(f):
            blocks.append(BlockRef(w.put(block), len(block)))
            counter.add(len(block))
    size = sum(b.size for b in blocks)
    manifest = FileManifest(size, chunker.name, tuple(blocks), mode & MODE_MASK)
    return w.put_manifest(manifest), size


def _add_dir(w: BlockWriter, node: _Node, chunker: Chunker, counter: _Counter) -> tuple[str, int]:
    entries = []
    for child in node.children:
        if child.is_dir:
            cid, size = _add_dir(w, child, chunker, counter)
            entries.append(DirEntry(child.name, "dir", cid, size))
        else:
            cid, size = _add_file(w, child, chunker, counter)
            entries.append(DirEntry(child.name, "file", cid, size))
    snapshot = DirectorySnapshot.of(entries)
    return w.put_manifest(snapshot), snapshot.size


def export(
    store: BlockStore,
    snapshot: str,
    dest_dir: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> None:
    """Write the tree of ``snapshot`` into ``dest_dir`` (created if missing).

    Every block is verified as it is read (BadBlock, BlockNotFound). Each file is
    written to a temporary name and renamed, so a reader never sees a half-written
    file; existing files of the same names are replaced, other files are left alone.
    An existing symlink where the tree has a directory is refused (writing through
    it could reach outside ``dest_dir``).
    """
    root = store.get_dir(snapshot)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    counter = _Counter(root.size, progress)
    _export_dir(store, root, dest, counter, 0)


def _export_dir(
    store: BlockStore, snapshot: DirectorySnapshot, dest: Path, counter: _Counter, depth: int
) -> None:
    if depth > MAX_DEPTH:
        raise BadManifest(f"a snapshot nested deeper than {MAX_DEPTH} levels")
    for entry in snapshot.entries:
        target = dest / entry.name
        if entry.kind == "dir":
            sub = store.get_dir(entry.cid)
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                target.mkdir(mode=0o755)
            else:
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsupportedFile(f"{target} exists and is not a directory")
            _export_dir(store, sub, target, counter, depth + 1)
        else:
            _export_file(store, store.get_file(entry.cid), entry, target, counter)


def _export_file(
    store: BlockStore, manifest: FileManifest, entry: DirEntry, target: Path, counter: _Counter
) -> None:
    if manifest.size != entry.size:
        raise BadManifest(
            f"{entry.name}: the directory says {entry.size} bytes, the manifest {manifest.size}"
        )
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(target).st_mode):
            raise UnsupportedFile(f"{target} exists and is a directory")
    tmp = target.with_name(f".{entry.name[:200]}.colonyp2p-part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for ref in manifest.blocks:
                data = store.get(ref.cid)
                if len(data) != ref.size:
                    raise BadManifest(f"{entry.name}: block {ref.cid} has {len(data)} bytes")
                f.write(data)
                counter.add(len(data))
        os.chmod(tmp, manifest.mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def commit_label(
    store: BlockStore,
    log: LabelLog,
    writer: Identity,
    membership: MembershipSet,
    path: str,
    snapshot: str,
    now: float,
    *,
    merge: bool = False,
) -> Label:
    """Move the label ``path`` to ``snapshot`` (a version after the head; with ``merge``,
    a version after every tip, resolving the conflicts) and return the new label.

    Order: the snapshot must be complete in the store (IncompleteSnapshot otherwise);
    the label is checked as the log would check it; then it is stored with its pin in
    one transaction; only then does the log admit it. A failure at any step leaves
    both the store and the log as they were.
    """
    store.get_dir(snapshot)
    missing = store.missing(snapshot)
    if missing:
        raise IncompleteSnapshot(
            f"snapshot {snapshot} lacks {len(missing)} blocks here (first: {missing[0]}); "
            "no label may point to it until they are stored",
            tuple(missing),
        )
    if merge:
        label = log.merge_label(writer, path, snapshot, now)
    else:
        label = log.next_label(writer, path, snapshot, now)
    log.validate(label, membership)
    store.record_label(label, pin=True)
    log.add(label, membership)
    return label


def publish(
    store: BlockStore,
    log: LabelLog,
    writer: Identity,
    membership: MembershipSet,
    label_path: str,
    source: str | os.PathLike[str],
    now: float,
    *,
    chunker: Chunker = DEFAULT_CHUNKER,
    progress: Progress | None = None,
) -> Label:
    """Add ``source`` and move the label ``label_path`` to it: the upload a sync directive
    does after a run. The blocks are held from gc until the label pins them."""
    with store.writer() as w:
        snapshot = add_to_writer(w, source, chunker=chunker, progress=progress)
        w.flush()
        return commit_label(store, log, writer, membership, label_path, snapshot, now)
