"""Re-applying a losing label version: a three-way merge of directory snapshots.

When two writers move a label from the same version, one of them loses the head
(see mfs.labels). ``resolve_conflicts`` re-applies each loser's changes on top of
the head, relative to their common ancestor, and writes one merge version whose
parents are all the tips. The rules, per entry name:

- changed on one side only (added, modified or deleted): that side's change;
- changed on both sides the same way: once;
- directories changed on both sides: merged entry by entry, recursively;
- anything else changed on both sides differently: the head's entry keeps the
  name and the loser's entry is kept beside it as ``<name>.conflict-<id>``
  (id: the loser's label id prefix); a deletion against a modification keeps
  the modification. Each such name is reported, so the merge loses nothing
  silently either.

Only new directory snapshots are written; file manifests and blocks are shared
with the merged versions.
"""

from __future__ import annotations

from dataclasses import dataclass

from colonyp2p.identity import Identity
from colonyp2p.mfs.blockstore import BlockStore, BlockWriter
from colonyp2p.mfs.importer import commit_label
from colonyp2p.mfs.labels import Label, LabelLog
from colonyp2p.mfs.manifest import MAX_NAME_BYTES, DirectorySnapshot, DirEntry
from colonyp2p.model.membership import MembershipSet


@dataclass(frozen=True)
class MergeResult:
    """The merged snapshot and the paths (inside it) where both sides changed an entry."""

    snapshot: str
    conflicts: tuple[str, ...]


def merge_snapshots(
    store: BlockStore, base: str | None, ours: str, theirs: str, *, tag: str, pin: bool = True
) -> MergeResult:
    """Merge ``theirs`` into ``ours`` relative to ``base`` (None: no common ancestor).

    ``tag`` names the conflict copies (``<name>.conflict-<tag>``). ``pin``: pin the
    merged snapshot, which gc would otherwise collect once this returns.
    """
    with store.writer() as w:
        result = merge_in_writer(store, w, base, ours, theirs, tag=tag)
        w.flush()
        if pin:
            store.pin_snapshot(result.snapshot)
    return result


def merge_in_writer(
    store: BlockStore, w: BlockWriter, base: str | None, ours: str, theirs: str, *, tag: str
) -> MergeResult:
    """``merge_snapshots`` inside an open writer (which holds the result from gc)."""
    conflicts: list[str] = []
    merged = _merge_dir(
        store,
        w,
        store.get_dir(base) if base is not None else None,
        store.get_dir(ours),
        store.get_dir(theirs),
        "/",
        tag,
        conflicts,
    )
    return MergeResult(w.put_manifest(merged), tuple(conflicts))


def _merge_dir(
    store: BlockStore,
    w: BlockWriter,
    base: DirectorySnapshot | None,
    ours: DirectorySnapshot,
    theirs: DirectorySnapshot,
    where: str,
    tag: str,
    conflicts: list[str],
) -> DirectorySnapshot:
    b = {e.name: e for e in base.entries} if base is not None else {}
    o = {e.name: e for e in ours.entries}
    t = {e.name: e for e in theirs.entries}
    out: dict[str, DirEntry] = {}
    copies: list[DirEntry] = []
    for name in sorted(b.keys() | o.keys() | t.keys()):
        be, oe, te = b.get(name), o.get(name), t.get(name)
        if oe == te or te == be:
            chosen = oe
        elif oe == be:
            chosen = te
        elif oe is not None and te is not None and oe.kind == te.kind == "dir":
            sub_base = store.get_dir(be.cid) if be is not None and be.kind == "dir" else None
            sub = _merge_dir(
                store,
                w,
                sub_base,
                store.get_dir(oe.cid),
                store.get_dir(te.cid),
                f"{where}{name}/",
                tag,
                conflicts,
            )
            chosen = DirEntry(name, "dir", w.put_manifest(sub), sub.size)
        else:
            conflicts.append(where + name)
            chosen = oe if oe is not None else te
            if oe is not None and te is not None:
                copies.append(te)
        if chosen is not None:
            out[name] = chosen
    for copy in copies:
        new_name = _free_name(f"{copy.name}.conflict-{tag}", out)
        out[new_name] = DirEntry(new_name, copy.kind, copy.cid, copy.size)
    return DirectorySnapshot.of(list(out.values()))


def _free_name(wanted: str, taken: dict[str, DirEntry]) -> str:
    candidate, n = _fit(wanted), 1
    while candidate in taken:
        n += 1
        candidate = _fit(f"{wanted}-{n}")
    return candidate


def _fit(name: str) -> str:
    # keep the conflict suffix (the end of the name) when trimming to the length limit
    while len(name.encode("utf-8")) > MAX_NAME_BYTES:
        name = name[1:]
    return name


def resolve_conflicts(
    store: BlockStore,
    log: LabelLog,
    writer: Identity,
    membership: MembershipSet,
    path: str,
    now: float,
) -> tuple[Label, tuple[str, ...]] | None:
    """Merge every conflicting version of ``path`` into its head and write the merge
    version (parents: all tips). Returns it with the conflicting entry paths, or None
    when there is nothing to resolve. Every loser's snapshot must be stored here.
    """
    head = log.head(path)
    losers = log.conflicts(path)
    if head is None or not losers:
        return None
    snapshot = head.snapshot
    conflicts: list[str] = []
    with store.writer() as w:
        for loser in losers:
            base = log.common_ancestor(head.label_id, loser.label_id)
            result = merge_in_writer(
                store,
                w,
                base.snapshot if base is not None else None,
                snapshot,
                loser.snapshot,
                tag=loser.label_id[:8],
            )
            snapshot = result.snapshot
            conflicts.extend(result.conflicts)
            w.flush()  # the next merge reads this one's snapshot back from the store
        label = commit_label(store, log, writer, membership, path, snapshot, now, merge=True)
    return label, tuple(conflicts)
