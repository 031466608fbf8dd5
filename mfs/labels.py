"""Labels: signed, versioned pointers from a colony path to a directory snapshot.

A label version names the snapshot a path held at that version and the label
ids of the versions it replaces (its parents), so a path's history is a DAG of
immutable, signed versions, and every version's snapshot stays addressable.

Writing: a new version has version = 1 + the highest parent version. Two writers
that both build on version N produce two versions N+1: a fork. Resolution is
deterministic and needs no coordination: the head of a path is the admitted
version with the highest version number, ties broken by the lowest label id
(sha256 of the signed label). Every node that holds the same set of labels picks
the same head, whatever order they arrived in. The other tips of the DAG (versions
nobody has built on) are *conflicts*: they are not lost, ``conflicts(path)`` lists
them, and a merge version (``merge_label``, see mfs.merge for the tree merge) that
names every tip as a parent resolves them, with the loser's changes re-applied or
explicitly dropped, but always by a signed decision.

Who may write: every member of the colony, whatever its role (owner, admin,
executor, user). Users upload inputs, executors upload results (sync directories
are written back after a run), and ColonyOS lets every member of a colony use its
filesystem. A non-member's label is refused; a label is judged by the membership
of when it arrives, so a member revoked later keeps the versions it wrote.

``LabelLog`` is a pure state machine (no I/O, no clock): the block store keeps
labels on disk and the daemon will feed the log with labels from peers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from colonyp2p import codec
from colonyp2p.errors import NotAMember, Unauthorized, ValidationError, WrongColony
from colonyp2p.identity import Identity, verify
from colonyp2p.mfs import cid as cids
from colonyp2p.model.checks import as_float, as_tuple, check_int, check_str, set_field
from colonyp2p.model.membership import ROLES, MembershipSet
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.model.spec import check_label

# Who may write labels: every role (see the module docstring).
WRITER_ROLES: frozenset[str] = frozenset(ROLES)
MAX_PARENTS = 64  # a merge of more concurrent versions than this is done in steps
MAX_SEGMENT = 255
_LABEL_ID = re.compile(r"[0-9a-f]{64}")

Admission = Literal["admitted", "pending", "duplicate"]


def check_path(path: object, field: str = "path") -> None:
    """A label's colony path: absolute, normalised, like "/sat/images".

    Stricter than model.spec.check_label (which it includes): one path has one
    spelling, so "/a//b", "/a/b/", "/a/./b" and "/a/../b" are refused rather than
    becoming labels that look alike and never meet.
    """
    check_label(path, field)
    assert isinstance(path, str)
    segments = path[1:].split("/")
    for segment in segments:
        if not segment or segment in (".", ".."):
            raise ValidationError(
                f"{path!r} is not a normalised colony path (no empty, '.' or '..' parts, "
                "no trailing '/')",
                field,
            )
        if "\0" in segment or len(segment) > MAX_SEGMENT:
            raise ValidationError(f"{segment!r} is not a valid part of a colony path", field)


@dataclass(frozen=True)
class Label:
    """One version of a colony path: which snapshot it holds, signed by its writer."""

    colony_id: str
    path: str
    version: int
    snapshot: str  # CID of the DirectorySnapshot
    parents: tuple[str, ...]  # label ids of the versions this one replaces, sorted
    writer: str
    timestamp: float  # the writer's clock: for people, never for resolving anything
    signature: bytes = b""

    def __post_init__(self) -> None:
        check_str(self.colony_id, "colony_id", 128, nonempty=True)
        check_path(self.path)
        check_int(self.version, "version", 1)
        if not cids.is_cid(self.snapshot, cids.DAG_CBOR):
            raise ValidationError(f"must be a dag-cbor CID, got {self.snapshot!r}", "snapshot")
        parents = as_tuple(self.parents, "parents")
        set_field(self, "parents", parents)
        if len(parents) > MAX_PARENTS:
            raise ValidationError(f"at most {MAX_PARENTS} parents, got {len(parents)}", "parents")
        for i, parent in enumerate(parents):
            if type(parent) is not str or not _LABEL_ID.fullmatch(parent):
                raise ValidationError(f"{parent!r} is not a label id", f"parents[{i}]")
        if list(parents) != sorted(set(parents)):
            # one label, one encoding: its id must not depend on how parents were listed
            raise ValidationError("must be sorted, each once", "parents")
        if (self.version == 1) != (not parents):
            raise ValidationError(
                "version 1 has no parents and every later version has some", "version"
            )
        check_str(self.writer, "writer", 128, nonempty=True)
        set_field(self, "timestamp", as_float(self.timestamp, "timestamp"))
        if type(self.signature) is not bytes:
            raise ValidationError("must be bytes", "signature")

    @classmethod
    def create(
        cls,
        writer: Identity,
        colony_id: str,
        path: str,
        version: int,
        snapshot: str,
        parents: Iterable[str],
        now: float,
    ) -> Label:
        """A label signed by ``writer``."""
        unsigned = cls(
            colony_id=colony_id,
            path=path,
            version=version,
            snapshot=snapshot,
            parents=tuple(sorted(set(parents))),
            writer=writer.member_id,
            timestamp=now,
        )
        return dataclasses.replace(unsigned, signature=writer.sign(unsigned_bytes(unsigned)))

    @cached_property
    def label_id(self) -> str:
        """sha256 (hex) of the signed label: its name, and the tie-breaker between forks."""
        return hashlib.sha256(self.encode()).hexdigest()

    def encode(self) -> bytes:
        """The signed label's canonical CBOR (what is stored and sent)."""
        return codec.canonical_bytes(self)

    @classmethod
    def decode(cls, raw: bytes) -> Label:
        return codec.from_data(cls, codec.loads_canonical(raw))

    def verify_signature(self) -> None:
        """Raise BadSignature unless ``writer`` signed exactly this label."""
        _ = self._verified

    @cached_property
    def _verified(self) -> bool:
        verify(self.writer, unsigned_bytes(self), self.signature)
        return True

    def check(self, colony_id: str, membership: MembershipSet) -> None:
        """Raise unless this label may be admitted to ``colony_id`` by ``membership``:
        WrongColony, BadSignature, NotAMember or Unauthorized (a role not allowed to write).
        """
        if self.colony_id != colony_id:
            raise WrongColony(f"label for colony {self.colony_id} offered to colony {colony_id}")
        if membership.colony_id != colony_id:
            raise WrongColony(f"membership of colony {membership.colony_id} used for {colony_id}")
        role = membership.role_of(self.writer)
        if role is None:
            raise NotAMember(f"{self.writer} wrote {self.path} v{self.version} but is not a member")
        if role not in WRITER_ROLES:
            raise Unauthorized(f"{self.writer} has role {role!r}, which may not write labels")
        self.verify_signature()


def _best_first(label: Label) -> tuple[int, str]:
    return (-label.version, label.label_id)


class LabelLog:
    """Every admitted label version of one colony, and the pending ones.

    A label whose parents are not all here yet waits (``pending``) and is admitted
    when the last one arrives, so what a log holds depends only on the set of
    labels it was given, not on their order: that is what makes every node agree
    on heads and conflicts.
    """

    def __init__(self, colony_id: str) -> None:
        self.colony_id = colony_id
        self._labels: dict[str, Label] = {}
        self._by_path: dict[str, dict[str, Label]] = {}
        self._tips: dict[str, set[str]] = {}
        self._children: dict[str, set[str]] = {}
        self._pending: dict[str, Label] = {}
        self._waiting_on: dict[str, set[str]] = {}  # missing parent -> pending label ids
        self._refused: dict[str, str] = {}  # pending labels refused on admission: id -> why

    # --- adding --------------------------------------------------------------------

    def add(self, label: Label, membership: MembershipSet) -> Admission:
        """Check ``label`` against the colony and ``membership``, then admit it (or keep it
        pending until its parents arrive). Raises on a refused label; changes nothing then.
        """
        if label.label_id in self._labels or label.label_id in self._pending:
            return "duplicate"
        label.check(self.colony_id, membership)
        return self._add_checked(label)

    @classmethod
    def restore(cls, colony_id: str, labels: Iterable[Label]) -> LabelLog:
        """A log rebuilt from labels this node admitted before (its own store).

        Signatures are checked again (the file may have been altered); membership is
        not, because it was checked on arrival and revocation does not undo history.
        """
        log = cls(colony_id)
        for label in labels:
            if label.colony_id != colony_id:
                raise WrongColony(f"stored label of colony {label.colony_id} in {colony_id}")
            label.verify_signature()
            if label.label_id not in log._labels and label.label_id not in log._pending:
                try:
                    log._add_checked(label)
                except ValidationError as exc:
                    # a peer's version that its parents refute: refused again, as when
                    # it was first admitted while pending, rather than failing the start
                    log._refused[label.label_id] = str(exc)
        return log

    def validate(self, label: Label, membership: MembershipSet) -> None:
        """Raise if ``add`` would refuse ``label``, without adding it (a writer checks its
        own label before storing it, so a refused label never reaches the disk)."""
        label.check(self.colony_id, membership)
        parents = [self._labels.get(p) for p in label.parents]
        if all(p is not None for p in parents):
            self._check_parents(label, [p for p in parents if p is not None])

    def _add_checked(self, label: Label) -> Admission:
        missing = [p for p in label.parents if p not in self._labels]
        if missing:
            self._pending[label.label_id] = label
            for parent in missing:
                self._waiting_on.setdefault(parent, set()).add(label.label_id)
            return "pending"
        self._check_parents(label, [self._labels[p] for p in label.parents])
        self._admit(label)
        return "admitted"

    def _check_parents(self, label: Label, parents: list[Label]) -> None:
        for parent in parents:
            if parent.path != label.path:
                raise ValidationError(
                    f"parent {parent.label_id} is a version of {parent.path}, not {label.path}",
                    "parents",
                )
        expected = 1 + max((p.version for p in parents), default=0)
        if label.version != expected:
            raise ValidationError(
                f"{label.path}: a version built on versions "
                f"{sorted(p.version for p in parents)} is {expected}, not {label.version}",
                "version",
            )

    def _admit(self, label: Label) -> None:
        queue = [label]
        while queue:
            current = queue.pop()
            lid = current.label_id
            self._labels[lid] = current
            self._by_path.setdefault(current.path, {})[lid] = current
            tips = self._tips.setdefault(current.path, set())
            tips.add(lid)
            for parent in current.parents:
                tips.discard(parent)
                self._children.setdefault(parent, set()).add(lid)
            for waiting in sorted(self._waiting_on.pop(lid, ())):
                child = self._pending[waiting]
                if any(p not in self._labels for p in child.parents):
                    continue
                del self._pending[waiting]
                try:
                    self._check_parents(child, [self._labels[p] for p in child.parents])
                except ValidationError as exc:
                    self._refused[waiting] = str(exc)
                    continue
                queue.append(child)

    # --- reading -------------------------------------------------------------------

    def get(self, label_id: str) -> Label | None:
        """An admitted label by id."""
        return self._labels.get(label_id)

    def paths(self) -> list[str]:
        """Every path with an admitted version, sorted."""
        return sorted(self._by_path)

    def head(self, path: str) -> Label | None:
        """The path's current version: highest version, then lowest label id."""
        tips = self.tips(path)
        return tips[0] if tips else None

    def tips(self, path: str) -> list[Label]:
        """The versions nobody has built on yet, best (the head) first."""
        return sorted(
            (self._labels[t] for t in self._tips.get(path, ())),
            key=_best_first,
        )

    def conflicts(self, path: str) -> list[Label]:
        """Versions that lost to the head and that no later version has merged.

        Each is a complete, signed version: export its snapshot, or merge it (see
        ``merge_label`` and mfs.merge.resolve_conflicts).
        """
        return self.tips(path)[1:]

    def history(self, path: str) -> list[Label]:
        """Every admitted version of the path, oldest first (version, then label id)."""
        return sorted(
            self._by_path.get(path, {}).values(), key=lambda lb: (lb.version, lb.label_id)
        )

    def at_version(self, path: str, version: int) -> Label | None:
        """The version ``version`` on the head's line: from the head, follow the parent
        that would have won (highest version, then lowest id) down to ``version``."""
        current = self.head(path)
        while current is not None and current.version > version:
            parents = sorted((self._labels[p] for p in current.parents), key=_best_first)
            current = parents[0] if parents else None
        if current is None or current.version != version:
            return None
        return current

    def ancestors(self, label_id: str) -> set[str]:
        """The label ids a version descends from, itself included."""
        seen: set[str] = set()
        stack = [label_id]
        while stack:
            lid = stack.pop()
            if lid in seen or lid not in self._labels:
                continue
            seen.add(lid)
            stack.extend(self._labels[lid].parents)
        return seen

    def common_ancestor(self, a: str, b: str) -> Label | None:
        """The best common ancestor of two versions (the merge base), or None."""
        common = self.ancestors(a) & self.ancestors(b)
        if not common:
            return None
        return min((self._labels[c] for c in common), key=_best_first)

    def pending(self) -> list[Label]:
        """Labels waiting for a parent this log has not seen, by id."""
        return [self._pending[k] for k in sorted(self._pending)]

    def refused(self) -> dict[str, str]:
        """Pending labels refused once their parents arrived (id -> reason)."""
        return dict(self._refused)

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label_id: object) -> bool:
        return label_id in self._labels

    # --- writing -------------------------------------------------------------------

    def next_label(self, writer: Identity, path: str, snapshot: str, now: float) -> Label:
        """The version after the head of ``path`` (version 1 if there is none).

        Conflicting tips stay conflicts: only ``merge_label`` resolves them.
        """
        head = self.head(path)
        if head is None:
            return Label.create(writer, self.colony_id, path, 1, snapshot, (), now)
        return Label.create(
            writer, self.colony_id, path, head.version + 1, snapshot, (head.label_id,), now
        )

    def merge_label(self, writer: Identity, path: str, snapshot: str, now: float) -> Label:
        """A version built on every tip of ``path``: it resolves all of its conflicts.

        ``snapshot`` is the writer's decision: the merged tree (mfs.merge), the head's
        snapshot (dropping the others' changes, visibly and signed), or anything else.
        """
        tips = self.tips(path)
        if not tips:
            return Label.create(writer, self.colony_id, path, 1, snapshot, (), now)
        if len(tips) > MAX_PARENTS:
            tips = tips[:MAX_PARENTS]
        return Label.create(
            writer,
            self.colony_id,
            path,
            tips[0].version + 1,
            snapshot,
            (t.label_id for t in tips),
            now,
        )
