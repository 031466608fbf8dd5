"""The daemon's meta-filesystem: its block store, labels shared with the members, block
exchange, the ``fs`` operations of the local API, and the sync directives every
executor's run goes through.

- Blocks: ``<home>/mfs`` (mfs.blockstore), served to members and fetched from them with
  mfs.exchange. A member that holds a complete snapshot (it wrote it, or fetched and
  pinned it) announces itself in the DHT as a provider of the snapshot's
  ``content_key``; a fetch asks the DHT, the label's writer, and (when those give
  nobody) every connected member.
- Labels: signed versions (mfs.labels) spread by push and pull over the same
  member-gated protocol: a new local version is pushed to every connected member at
  once, and every ``LABEL_SYNC_EVERY`` s each member asks its peers for the label ids it
  lacks. Every label is checked (signature, colony, writer's membership) before it is
  stored and admitted, and the LabelLog's deterministic merge makes every member agree
  on heads whatever the order of arrival.
- Sync directives (FunctionSpec.fs): before a run, snapshot mounts and sync dirs are
  downloaded into the process's working directory; after a successful run, sync dirs
  are uploaded as a new label version; ``keepfiles`` keeps the directories afterwards.
  Conflicts follow ColonyOS: ``onstart.keeplocal`` keeps a local file that differs from
  the label's (else the label's replaces it); ``onclose.keeplocal`` makes the local
  files win over versions written meanwhile by others (else theirs keep their names and
  ours are kept beside them as ``<name>.conflict-<id>``; nothing is lost either way).
- Local paths: the API's operations read and write files as the daemon's user, so
  they are confined to the directories config.json's ``mfs.paths`` names (default:
  that user's home directory), never the node's home (its key, its config) nor a
  directory holding it, and never through a symbolic link or ``..``
  (``LocalPaths``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import trio

from colonyp2p.errors import (
    BadBlock,
    BlockNotFound,
    ColonyError,
    MfsError,
    Unauthorized,
    ValidationError,
)
from colonyp2p.executors.base import RunResult
from colonyp2p.identity import Identity
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.chunking import DEFAULT_CHUNKER, Chunker, chunker_from_name
from colonyp2p.mfs.exchange import (
    BLOCKS_PROTOCOL,
    BlockServer,
    Fetcher,
    FetchState,
    GetLabels,
    ListLabels,
    PushLabels,
    decode_ids,
    decode_raws,
    encode_request,
    rate_or_none,
)
from colonyp2p.mfs.importer import add_to_writer, commit_label, export
from colonyp2p.mfs.labels import Label, LabelLog, check_path
from colonyp2p.mfs.manifest import DirectorySnapshot, DirEntry
from colonyp2p.mfs.merge import merge_in_writer
from colonyp2p.model.membership import MembershipSet
from colonyp2p.model.spec import FunctionSpec, SyncDirMount
from colonyp2p.node.discovery import content_key
from colonyp2p.node.framing import close_stream, frame, read_frame, reset_stream
from colonyp2p.node.quotas import Buckets
from colonyp2p.node.supervise import supervise

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from colonyp2p.node.daemon import Daemon

log = logging.getLogger("colonyp2p.fs")

LABEL_SYNC_EVERY: Final = 5.0
REANNOUNCE_EVERY: Final = 600.0
LABEL_TIMEOUT: Final = 10.0
JOBS_KEPT: Final = 256
MAX_LABEL_REPLY: Final = 16 * 1024 * 1024
# What one member may have this node check and store (each label is a row for good):
# a label is at most MAX_LABEL_BYTES (a 4 KiB path and 64 parents fit), a set of them
# pushed or pulled at once at most MAX_LABEL_SET_BYTES, and a member's labels new here
# at most LABEL_BURST at once (a pull asks for 4096 ids at a time), then LABEL_RATE a
# second. What is refused is counted (refused.blocks) and not stored; a pull asks for
# it again in a later round.
MAX_LABEL_BYTES: Final = 16 * 1024
MAX_LABEL_SET_BYTES: Final = 4 * 1024 * 1024
LABEL_RATE: Final = 50.0
LABEL_BURST: Final = 4096.0


class LabelRefused(ColonyError):
    """Labels from a member beyond what a node takes (counted under refused.blocks)."""

    code = "label_refused"


class LabelTooLarge(LabelRefused):
    code = "label_oversize"


class LabelRateLimited(LabelRefused):
    code = "label_rate"


class FsRefused(ValidationError):
    """A meta-filesystem operation refused (answered 400 with the cause's code)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class PathRefused(Unauthorized):
    """A local path the API may not read or write (answered 403)."""

    code = "path_refused"


class LocalPaths:
    """Where the local API's fs operations may read and write: inside one of ``roots``,
    outside ``home`` (the node's), by a path without symbolic links or ``..``.

    The rule is on the path as given, resolved once here: the caller (the CLI resolves
    relative paths and symlinks before it sends) names the real place. A link swapped
    in later, inside a root, can only be made by someone who may write there: the
    daemon's user, whose files these are anyway; and the importer and export refuse
    links inside the trees they walk.
    """

    def __init__(self, roots: Sequence[Path], home: Path) -> None:
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)
        self.home = Path(os.path.realpath(home))

    @classmethod
    def from_config(cls, value: object, home: Path) -> LocalPaths:
        if value is None:
            try:
                return cls([Path.home()], home)
            except RuntimeError:  # no HOME and no passwd entry: nothing is allowed
                return cls([], home)
        if not isinstance(value, list) or not all(
            isinstance(v, str) and Path(v).is_absolute() for v in value
        ):
            raise ValidationError("config.json: must be a list of absolute paths", "mfs.paths")
        return cls([Path(v) for v in value], home)

    def check(self, text: str, name: str) -> Path:
        """``text`` as a path the API may use for field ``name``; PathRefused if not."""
        path = Path(text)
        if not path.is_absolute():
            raise ValidationError("must be an absolute path on the node's machine", name)
        if ".." in path.parts:
            raise PathRefused(f"{name}: {text} goes through '..': give the path itself")
        real = Path(os.path.realpath(path))
        if real != Path(os.path.normpath(path)):
            raise PathRefused(
                f"{name}: {text} goes through a symbolic link (to {real}): give the real path"
            )
        if real.is_relative_to(self.home) or self.home.is_relative_to(real):
            raise PathRefused(
                f"{name}: {text} is or holds the node's home {self.home} (its key and "
                "config): the meta-filesystem never reads or writes there"
            )
        if not any(real.is_relative_to(root) for root in self.roots):
            allowed = ", ".join(str(r) for r in self.roots) or "none"
            raise PathRefused(
                f"{name}: {text} is outside the directories this node's meta-filesystem may "
                f"use ({allowed}); add a directory to mfs.paths in the node's config.json "
                "to allow it"
            )
        return real


@dataclass
class Job:
    """A long fs operation (put, get, sync, pin...) that the CLI follows by polling."""

    id: str
    op: str
    state: str = "running"  # running, done, failed
    done: int = 0
    total: int = 0
    phase: str = ""
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    fetch: FetchState | None = None
    started: float = field(default_factory=time.time)

    def progress(self, done: int, total: int) -> None:
        self.done, self.total = done, total

    def as_dict(self) -> dict[str, Any]:
        done, total = self.done, self.total
        if self.fetch is not None and self.phase == "fetch":
            done, total = self.fetch.fetched_bytes, self.fetch.total_bytes
        return {
            "job": self.id,
            "op": self.op,
            "state": self.state,
            "phase": self.phase,
            "done": done,
            "total": total,
            "fetch": None if self.fetch is None else self.fetch.as_dict(),
            "result": self.result,
            "error": self.error,
            "seconds": round(time.time() - self.started, 3),
        }


class FsService:
    """One daemon's meta-filesystem; ``await nursery.start(fs.run)`` once the transport runs."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        cfg = dict(daemon.config.mfs)
        unknown = sorted(set(cfg) - {"quota", "serve_rate", "chunker", "paths"})
        if unknown:
            raise ValidationError(f"config.json: mfs has no {unknown[0]!r}", "mfs")
        quota = int(cfg.get("quota", 0) or 0)
        self.quota = quota if quota > 0 else None
        self.rate = rate_or_none(cfg.get("serve_rate"))
        self.chunker: Chunker = (
            chunker_from_name(str(cfg["chunker"])) if cfg.get("chunker") else DEFAULT_CHUNKER
        )
        self.root = daemon.home.root / "mfs"
        self.paths = LocalPaths.from_config(cfg.get("paths"), daemon.home.root)
        self.store: BlockStore | None = None
        self.log: LabelLog | None = None
        self.server: BlockServer | None = None
        self.fetcher: Fetcher | None = None
        self.jobs: dict[str, Job] = {}
        self._raw: dict[str, bytes] = {}  # label id -> signed label, every one we hold
        self._write_lock = trio.Lock()  # one label write at a time on this node
        self._provided: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._label_rates = Buckets(LABEL_RATE, LABEL_BURST)

    # --- lifecycle -------------------------------------------------------------------

    @property
    def identity(self) -> Identity:
        return self.daemon.identity

    def membership(self) -> MembershipSet:
        node = self.daemon.node
        assert node is not None
        return node.membership

    def is_member(self, member_id: str) -> bool:
        node = self.daemon.node
        return node is not None and node.membership.is_member(member_id)

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = self.store = await trio.to_thread.run_sync(
            lambda: BlockStore(self.root, quota=self.quota)
        )
        try:
            colony_id = self.membership().colony_id
            labels = await trio.to_thread.run_sync(store.labels)
            self._raw = {label.label_id: label.encode() for label in labels}
            self.log = LabelLog.restore(colony_id, labels)
            transport = self.daemon.transport
            assert transport is not None
            self.server = BlockServer(
                store,
                self,
                self.is_member,
                rate=self.rate,
                refuse=lambda peer, exc: transport.refused(BLOCKS_PROTOCOL, peer, exc),
            )
            self.server.install(transport.host)
            self.fetcher = Fetcher(store, self._open_stream)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                health = self.daemon.health
                nursery.start_soon(supervise, "labels", self._pull_labels_forever, health)
                nursery.start_soon(supervise, "fs-announce", self._announce_forever, health)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)

    def _store(self) -> BlockStore:
        if self.store is None:
            raise MfsError("the meta-filesystem is not running yet")
        return self.store

    def _log(self) -> LabelLog:
        if self.log is None:
            raise MfsError("the meta-filesystem is not running yet")
        return self.log

    async def _open_stream(self, member: str) -> Any:
        transport = self.daemon.transport
        if transport is None:
            return None
        return await transport.open_stream(member, BLOCKS_PROTOCOL)

    # --- labels between members ------------------------------------------------------

    def label_ids(self) -> list[str]:
        return sorted(self._raw)

    def labels_raw(self, ids: Sequence[str]) -> list[bytes]:
        return [self._raw[i] for i in ids if i in self._raw]

    def _refused(self, sender: str, exc: ColonyError) -> None:
        """Count a refused label (logged once per reason, then at debug level)."""
        transport = self.daemon.transport
        if transport is not None:
            transport.refused(BLOCKS_PROTOCOL, sender, exc)
        else:
            log.debug("refused a label from %s: %s", sender, exc)

    async def receive_labels(self, sender: str, raws: Sequence[bytes]) -> int:
        """Check, store and admit labels from a member, within its quota (see
        MAX_LABEL_BYTES); how many were new."""
        log_, store = self._log(), self._store()
        membership = self.membership()
        new = 0
        total = 0
        for i, raw in enumerate(raws):
            total += len(raw)
            if total > MAX_LABEL_SET_BYTES:
                self._refused(
                    sender,
                    LabelTooLarge(
                        f"{len(raws) - i} labels from {sender} refused: a set of labels is "
                        f"at most {MAX_LABEL_SET_BYTES // 2**20} MiB"
                    ),
                )
                break
            try:
                if len(raw) > MAX_LABEL_BYTES:
                    raise LabelTooLarge(f"a label of {len(raw)} bytes (at most {MAX_LABEL_BYTES})")
                label = Label.decode(raw)
                if label.label_id in self._raw:
                    continue
                if not self._label_rates.take(sender, 1, trio.current_time()):
                    self._refused(
                        sender,
                        LabelRateLimited(
                            f"{len(raws) - i} labels from {sender} refused: a member's new "
                            f"labels are taken {LABEL_BURST:g} at once, then {LABEL_RATE:g} "
                            "a second"
                        ),
                    )
                    break
                log_.validate(label, membership)  # refused ones never reach the disk
            except ColonyError as exc:
                self._refused(sender, exc)
                continue
            # kept unpinned: a label names data, holding it is each member's choice
            await trio.to_thread.run_sync(lambda lb=label: store.record_label(lb, pin=False))
            self._raw[label.label_id] = raw
            log_.add(label, membership)
            new += 1
        if new:
            self.daemon._event("fs_labels", "", {"from": sender, "new": new})
        return new

    async def _request(self, member: str, request: Any) -> bytes | None:
        stream = await self._open_stream(member)
        if stream is None:
            return None
        try:
            with trio.fail_after(LABEL_TIMEOUT):
                await stream.write(frame(encode_request(request)))
                return await read_frame(stream, MAX_LABEL_REPLY)
        except Exception as exc:
            log.debug("label request to %s failed: %r", member, exc)
            await reset_stream(stream)
            return None
        finally:
            await close_stream(stream)

    async def pull_labels(self, member: str) -> int:
        """Fetch the labels ``member`` holds and we lack; how many were new."""
        raw = await self._request(member, ListLabels())
        if raw is None:
            return 0
        lacking = [i for i in decode_ids(raw) if i not in self._raw]
        if not lacking:
            return 0
        got = 0
        for start in range(0, len(lacking), 4096):
            reply = await self._request(member, GetLabels(tuple(lacking[start : start + 4096])))
            if reply is not None:
                got += await self.receive_labels(member, decode_raws(reply))
        return got

    async def _pull_labels_forever(self) -> None:
        while True:
            transport = self.daemon.transport
            if transport is not None:
                async with trio.open_nursery() as nursery:
                    for member in sorted(transport.connected()):
                        if self.is_member(member):
                            nursery.start_soon(self._pull_quietly, member)
            await trio.sleep(LABEL_SYNC_EVERY)

    async def _pull_quietly(self, member: str) -> None:
        try:
            await self.pull_labels(member)
        except ColonyError as exc:
            log.info("label pull from %s failed: %s", member, exc)

    async def _push(self, label: Label) -> None:
        transport = self.daemon.transport
        if transport is None:
            return
        members = [m for m in transport.connected() if self.is_member(m)]
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(self._request, member, PushLabels((label.encode(),)))

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _committed(self, label: Label) -> None:
        """A label this node wrote: remember it, tell the members, provide its data."""
        self._raw[label.label_id] = label.encode()
        self.daemon._event(
            "fs_label",
            "",
            {"path": label.path, "version": label.version, "snapshot": label.snapshot},
        )
        self._spawn(self._push, label)
        self._spawn(self.provide, label.snapshot)

    # --- providers -------------------------------------------------------------------

    async def provide(self, snapshot: str) -> None:
        """Announce in the DHT that this node holds ``snapshot``'s whole tree."""
        self._provided.add(snapshot)
        discovery = self.daemon.discovery
        if discovery is not None:
            await discovery.provide(content_key(self.membership().colony_id, snapshot))

    async def _announce_forever(self) -> None:
        store = self._store()
        pins = await trio.to_thread.run_sync(store.pins)
        self._provided.update(pins.values())
        while True:
            discovery = self.daemon.discovery
            if discovery is not None:
                await discovery.announced.wait()
                for snapshot in sorted(self._provided):
                    await discovery.provide(content_key(self.membership().colony_id, snapshot))
            await trio.sleep(REANNOUNCE_EVERY)

    async def providers(
        self, snapshot: str, hint: Sequence[str] = (), everyone: bool = False
    ) -> list[str]:
        """Members that may hold ``snapshot``: the DHT's providers and ``hint``, or (when
        those name nobody, or with ``everyone``) every connected member."""
        me = self.identity.member_id
        found: list[str] = []
        discovery = self.daemon.discovery
        if discovery is not None:
            found = await discovery.find_providers(
                content_key(self.membership().colony_id, snapshot)
            )
        out = list(dict.fromkeys([*found, *hint]))
        transport = self.daemon.transport
        if (everyone or not [m for m in out if m != me]) and transport is not None:
            out.extend(sorted(transport.connected()))
        return [m for m in dict.fromkeys(out) if m != me and self.is_member(m)]

    async def ensure(
        self,
        snapshot: str,
        hint: Sequence[str] = (),
        job: Job | None = None,
        only: Sequence[str] = (),
        manifests_only: bool = False,
    ) -> FetchState:
        """Make ``snapshot``'s tree complete here, fetching what is missing from members
        (from the members ``only`` names, if it names any)."""
        assert self.fetcher is not None
        state = FetchState(snapshot)
        if job is not None:
            job.fetch, job.phase = state, "fetch"
        tried_all = False

        async def find() -> list[str]:
            nonlocal tried_all
            everyone, tried_all = tried_all, True
            if only:
                return [m for m in only if self.is_member(m) and m != self.identity.member_id]
            return await self.providers(snapshot, hint, everyone=everyone)

        return await self.fetcher.fetch(snapshot, find, state=state, manifests_only=manifests_only)

    # --- operations ------------------------------------------------------------------

    def start_job(self, op: str, work: Callable[[Job], Awaitable[dict[str, Any]]]) -> Job:
        job = Job(secrets.token_hex(8), op)
        self.jobs[job.id] = job
        while len(self.jobs) > JOBS_KEPT:
            del self.jobs[next(iter(self.jobs))]

        async def run() -> None:
            try:
                job.result = await work(job)
                job.state = "done"
            except ColonyError as exc:
                job.state, job.error = "failed", {"code": exc.code, "message": str(exc)}
            except OSError as exc:
                job.state, job.error = "failed", {"code": "os_error", "message": str(exc)}
            except Exception as exc:
                log.exception("fs %s failed", op)
                job.state, job.error = "failed", {"code": "internal", "message": repr(exc)}

        if self._nursery is None:
            raise MfsError("the meta-filesystem is not running yet")
        self._nursery.start_soon(run)
        return job

    async def put(self, src: Path, path: str, job: Job | None = None) -> dict[str, Any]:
        """Add ``src`` and move label ``path`` to it (a new version)."""
        check_path(path)
        store = self._store()
        if job is not None:
            job.phase = "add"

        def add() -> tuple[str, Label]:
            with store.writer() as w:
                snapshot = add_to_writer(
                    w, src, chunker=self.chunker, progress=job.progress if job else None
                )
                w.flush()  # a full disk fails here, before any label is written
                label = self._commit(path, snapshot)
            return snapshot, label

        async with self._write_lock:
            _, label = await trio.to_thread.run_sync(add)
        await self._committed(label)
        return _label_view(label)

    def _commit(self, path: str, snapshot: str, merge: bool = False) -> Label:
        """Move label ``path`` to ``snapshot``, complete in the store (in a thread, under
        the write lock): see importer.commit_label."""
        return commit_label(
            self._store(),
            self._log(),
            self.identity,
            self.membership(),
            path,
            snapshot,
            time.time(),
            merge=merge,
        )

    def resolve(self, ref: str) -> tuple[str, list[str], Label | None, str]:
        """A snapshot CID, label path or ``label/inner/path``: (snapshot, hint providers,
        label, path inside the snapshot)."""
        if cids.is_cid(ref, cids.DAG_CBOR):
            return ref, [], None, ""
        check_path(ref)
        log_ = self._log()
        path, inner = ref, ""
        while True:
            head = log_.head(path)
            if head is not None:
                return head.snapshot, [head.writer], head, inner
            if path.count("/") <= 1:
                raise BlockNotFound(f"no label {ref} in this colony (yet): see `colonynode fs ls`")
            path, _, last = path.rpartition("/")
            inner = f"{last}/{inner}" if inner else last

    async def get(
        self, ref: str, dest: Path, job: Job | None = None, only: Sequence[str] = ()
    ) -> dict[str, Any]:
        snapshot, hint, label, inner = self.resolve(ref)
        state = await self.ensure(snapshot, hint, job, only)
        store = self._store()
        if job is not None:
            job.phase = "export"
        root = await trio.to_thread.run_sync(lambda: _subtree(store, snapshot, inner))
        for attempt in range(3):
            try:
                await trio.to_thread.run_sync(
                    lambda: export(store, root, dest, progress=job.progress if job else None)
                )
                break
            except (BadBlock, BlockNotFound):
                # corrupt on our disk (now quarantined): check the whole tree, so that
                # every bad block is dropped, and fetch again what is missing then
                if attempt == 2:
                    raise
                await trio.to_thread.run_sync(_check_tree, store, snapshot)
                await self.ensure(snapshot, hint, job, only)
        return {
            "snapshot": root,
            "label": None if label is None else _label_view(label),
            "dest": str(dest),
            "fetch": state.as_dict(),
        }

    async def ls(self, ref: str) -> dict[str, Any]:
        log_ = self._log()
        if not ref or ref == "/":
            return {
                "labels": [
                    {**_label_view(head), "conflicts": len(log_.conflicts(p))}
                    for p in log_.paths()
                    if (head := log_.head(p)) is not None
                ]
            }
        snapshot, hint, label, inner = self.resolve(ref)
        await self.ensure_manifests(snapshot, hint)
        store = self._store()
        root = await trio.to_thread.run_sync(lambda: _subtree(store, snapshot, inner))
        snap = await trio.to_thread.run_sync(store.get_dir, root)
        return {
            "snapshot": root,
            "label": None if label is None else _label_view(label),
            "entries": [
                {"name": e.name, "kind": e.kind, "size": e.size, "cid": e.cid} for e in snap.entries
            ],
        }

    async def ensure_manifests(self, snapshot: str, hint: Sequence[str]) -> None:
        """Fetch what listing ``snapshot`` needs: its manifests, not the file blocks."""
        await self.ensure(snapshot, hint, manifests_only=True)

    async def rm(self, ref: str) -> dict[str, Any]:
        """A new version of the label without the entry ``ref`` names (an empty
        snapshot when ``ref`` is the label itself)."""
        snapshot, hint, label, inner = self.resolve(ref)
        if label is None:
            raise ValidationError("rm takes a label path (and a path inside it)", "path")
        await self.ensure(snapshot, hint)
        store = self._store()

        def write() -> Label:
            with store.writer() as w:
                if inner:
                    new = _without(store, w, snapshot, inner)[0]
                else:
                    new = w.put_manifest(DirectorySnapshot(()))
                w.flush()
                return self._commit(label.path, new)

        async with self._write_lock:
            new_label = await trio.to_thread.run_sync(write)
        await self._committed(new_label)
        return _label_view(new_label)

    async def set_label(self, path: str, snapshot: str, job: Job | None = None) -> dict[str, Any]:
        check_path(path)
        cids.check(snapshot, cids.DAG_CBOR)
        await self.ensure(snapshot, (), job)
        async with self._write_lock:
            label = await trio.to_thread.run_sync(self._commit, path, snapshot)
        await self._committed(label)
        return _label_view(label)

    def history(self, path: str) -> dict[str, Any]:
        check_path(path)
        log_ = self._log()
        head = log_.head(path)
        return {
            "path": path,
            "head": None if head is None else head.label_id,
            "versions": [_label_view(lb) for lb in log_.history(path)],
            "conflicts": [lb.label_id for lb in log_.conflicts(path)],
        }

    async def snapshot(self, ref: str, job: Job | None = None) -> dict[str, Any]:
        """Pin the snapshot ``ref`` resolves to (fetched if needed): an immutable copy."""
        snapshot, hint, label, inner = self.resolve(ref)
        await self.ensure(snapshot, hint, job)
        store = self._store()
        root = await trio.to_thread.run_sync(lambda: _subtree(store, snapshot, inner))
        await trio.to_thread.run_sync(store.pin_snapshot, root)
        self._spawn(self.provide, snapshot)
        return {"snapshot": root, "label": None if label is None else _label_view(label)}

    async def pin(self, ref: str, unpin: bool, job: Job | None = None) -> dict[str, Any]:
        store = self._store()
        if unpin:
            if cids.is_cid(ref, cids.DAG_CBOR):
                n = int(await trio.to_thread.run_sync(store.unpin_snapshot, ref))
            else:
                check_path(ref)
                n = await trio.to_thread.run_sync(store.unpin_label, ref, None)
            return {"unpinned": n}
        snapshot, hint, label, _ = self.resolve(ref)
        await self.ensure(snapshot, hint, job)
        if label is None:
            await trio.to_thread.run_sync(store.pin_snapshot, snapshot)
        else:
            await trio.to_thread.run_sync(store.pin_label, label)
        self._spawn(self.provide, snapshot)
        return {"pinned": snapshot, "label": None if label is None else _label_view(label)}

    async def gc(self) -> dict[str, Any]:
        report = await trio.to_thread.run_sync(self._store().gc)
        pins = await trio.to_thread.run_sync(self._store().pins)
        self._provided &= set(pins.values())
        return {
            "freed_blocks": report.freed_blocks,
            "freed_bytes": report.freed_bytes,
            "kept_blocks": report.kept_blocks,
            "kept_bytes": report.kept_bytes,
            "incomplete": list(report.incomplete),
        }

    async def du(self) -> dict[str, Any]:
        store = self._store()
        usage = await trio.to_thread.run_sync(store.du)
        pins = await trio.to_thread.run_sync(store.pins)
        server = self.server.stats if self.server is not None else {}
        return {
            "blocks": usage.blocks,
            "bytes": usage.bytes,
            "quota": usage.quota,
            "free": usage.free,
            "pins": len(pins),
            "labels": len(self._raw),
            "served_blocks": server.get("served_blocks", 0),
            "served_bytes": server.get("served_bytes", 0),
            "corrupt_found": server.get("corrupt_here", 0),
            "refused_non_member": server.get("refused_non_member", 0),
        }

    # --- the local API -----------------------------------------------------------------

    async def api(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/fs/{op}``: long operations start a job and answer {"job": id}
        (``GET /v1/fs/jobs/{id}`` follows it); the others answer their result. Local
        paths are absolute paths on this machine, within ``self.paths``."""
        try:
            return await self._api(op, body)
        except (ValidationError, PathRefused):
            raise
        except ColonyError as exc:
            raise FsRefused(str(exc), exc.code) from None

    async def _api(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        def text(name: str, default: str | None = None) -> str:
            value = body.get(name, default)
            if not isinstance(value, str) or not value:
                raise ValidationError("required (a non-empty string)", name)
            return value

        def local(name: str) -> Path:
            return self.paths.check(text(name), name)

        def flag(name: str) -> bool:
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise ValidationError("must be true or false", name)
            return value

        work: Callable[[Job], Awaitable[dict[str, Any]]]
        if op == "put":
            src, label = local("src"), text("label")
            if not src.exists():
                raise ValidationError(f"{src} does not exist", "src")
            check_path(label)
            work = lambda job: self.put(src, label, job)  # noqa: E731
        elif op == "get":
            ref, dest = text("ref"), local("dest")
            only = body.get("providers", [])
            if not isinstance(only, list) or not all(isinstance(m, str) for m in only):
                raise ValidationError("must be a list of member ids", "providers")
            work = lambda job: self.get(ref, dest, job, only)  # noqa: E731
        elif op == "sync":
            label, where, keeplocal = text("label"), local("dir"), flag("keeplocal")
            check_path(label)
            work = lambda job: self.sync(label, where, keeplocal, job)  # noqa: E731
        elif op == "pin":
            ref, unpin = text("ref"), flag("unpin")
            work = lambda job: self.pin(ref, unpin, job)  # noqa: E731
        elif op == "snapshot":
            ref = text("ref")
            work = lambda job: self.snapshot(ref, job)  # noqa: E731
        elif op == "label":
            path, snapshot = text("path"), text("snapshot")
            check_path(path)
            work = lambda job: self.set_label(path, snapshot, job)  # noqa: E731
        elif op == "ls":
            return await self.ls(str(body.get("ref", "") or ""))
        elif op == "history":
            return self.history(text("label"))
        elif op == "rm":
            return await self.rm(text("ref"))
        elif op == "gc":
            return await self.gc()
        elif op == "du":
            return await self.du()
        else:
            raise ValidationError(f"no fs operation {op!r}", "op")
        return {"job": self.start_job(op, work).id}

    # --- sync directories ------------------------------------------------------------

    async def sync_down(
        self, path: str, dest: Path, keeplocal: bool, job: Job | None = None
    ) -> Label | None:
        """Download label ``path`` into ``dest``: files the label has replace the local
        ones unless ``keeplocal`` (then a differing local file stays); local files the
        label lacks stay. Returns the version downloaded (None: no label yet)."""
        check_path(path)
        dest.mkdir(parents=True, exist_ok=True)
        head = self._log().head(path)
        if head is None:
            return None
        await self.ensure(head.snapshot, [head.writer], job)
        store = self._store()
        if job is not None:
            job.phase = "export"
        staging = dest.parent / f".{dest.name}.colonyp2p-sync-{secrets.token_hex(4)}"
        try:
            await trio.to_thread.run_sync(
                lambda: export(
                    store, head.snapshot, staging, progress=job.progress if job else None
                )
            )
            await trio.to_thread.run_sync(_move_into, staging, dest, keeplocal)
        finally:
            await trio.to_thread.run_sync(lambda: shutil.rmtree(staging, ignore_errors=True))
        return head

    async def sync_up(
        self, path: str, src: Path, base: Label | None, keeplocal: bool, job: Job | None = None
    ) -> Label | None:
        """Upload ``src`` as the next version of ``path``. When others moved the label
        since ``base`` (what ``sync_down`` gave), the versions are merged: with
        ``keeplocal`` our files keep their names, else theirs do, and the other side's
        differing files are kept beside them (``<name>.conflict-<id>``). None if nothing
        changed."""
        check_path(path)
        store, log_ = self._store(), self._log()
        if job is not None:
            job.phase = "add"
        head = log_.head(path)
        if head is not None and (base is None or head.label_id != base.label_id):
            await self.ensure(head.snapshot, [head.writer])
            if base is not None:
                await self.ensure(base.snapshot, [base.writer])

        def write() -> Label | None:
            head = log_.head(path)
            with store.writer() as w:
                ours = add_to_writer(
                    w, src, chunker=self.chunker, progress=job.progress if job else None
                )
                snapshot, merge = ours, False
                if head is not None and (base is None or head.label_id != base.label_id):
                    w.flush()  # the merge reads our new snapshot back from the store
                    base_snapshot = base.snapshot if base is not None else None
                    first, second = (ours, head.snapshot) if keeplocal else (head.snapshot, ours)
                    tag = "local" if not keeplocal else head.label_id[:8]
                    snapshot = merge_in_writer(
                        store, w, base_snapshot, first, second, tag=tag
                    ).snapshot
                    merge = bool(log_.conflicts(path))
                w.flush()
                if head is not None and snapshot == head.snapshot and not log_.conflicts(path):
                    return None
                return self._commit(path, snapshot, merge)

        async with self._write_lock:
            label = await trio.to_thread.run_sync(write)
        if label is not None:
            await self._committed(label)
        return label

    async def sync(
        self, path: str, local: Path, keeplocal: bool, job: Job | None = None
    ) -> dict[str, Any]:
        """Both ways, as ``colonynode fs sync``: download, then upload local changes."""
        base = await self.sync_down(path, local, keeplocal, job)
        label = await self.sync_up(path, local, base, keeplocal, job)
        new = label or base
        return {"label": None if new is None else _label_view(new), "uploaded": label is not None}

    # --- the run path of every executor ----------------------------------------------

    async def around_run(
        self,
        spec: FunctionSpec,
        workdir: Path,
        log_line: Callable[[str], None],
        run: Callable[[], Awaitable[RunResult]],
    ) -> RunResult:
        """Carry out ``spec.fs`` around ``run``: mounts in before, sync dirs out after."""
        fs = spec.fs
        if not fs.snapshots and not fs.dirs:
            return await run()
        bases: list[tuple[SyncDirMount, Label | None]] = []
        store = self._store()
        try:
            for mount in fs.snapshots:
                target = _inside(workdir, mount.dir)
                ref = mount.snapshotid or mount.label
                snapshot, hint, _, inner = self.resolve(ref)
                await self.ensure(snapshot, hint)
                root = await trio.to_thread.run_sync(_subtree, store, snapshot, inner)
                await trio.to_thread.run_sync(export, store, root, target)
                log_line(f"[fs] snapshot {ref} ({root}) into {mount.dir}")
            for sync in fs.dirs:
                target = _inside(workdir, sync.dir)
                base = await self.sync_down(sync.label, target, sync.onconflicts.onstart.keeplocal)
                bases.append((sync, base))
                got = f"v{base.version}" if base is not None else "nothing yet"
                log_line(f"[fs] synced {sync.label} ({got}) into {sync.dir}")
        except (ColonyError, OSError) as exc:
            return RunResult(False, (), (f"meta-filesystem before the run: {exc}",))
        result = await run()
        errors = list(result.errors)
        if result.ok:
            for sync, base in bases:
                try:
                    label = await self.sync_up(
                        sync.label,
                        _inside(workdir, sync.dir),
                        base,
                        sync.onconflicts.onclose.keeplocal,
                    )
                except (ColonyError, OSError) as exc:
                    errors.append(f"meta-filesystem after the run: {sync.label}: {exc}")
                    continue
                if label is not None:
                    log_line(f"[fs] uploaded {sync.dir} as {sync.label} v{label.version}")
        for mount_dir, keep in [(m.dir, m.keepfiles) for m in fs.snapshots] + [
            (s.dir, s.keepfiles) for s in fs.dirs
        ]:
            if not keep:
                target = _inside(workdir, mount_dir)
                await trio.to_thread.run_sync(lambda t=target: shutil.rmtree(t, ignore_errors=True))
        if len(errors) != len(result.errors):
            return RunResult(False, result.output, tuple(errors))
        return result


# --- helpers ---------------------------------------------------------------------------


def _label_view(label: Label) -> dict[str, Any]:
    return {
        "path": label.path,
        "version": label.version,
        "snapshot": label.snapshot,
        "writer": label.writer,
        "timestamp": label.timestamp,
        "id": label.label_id,
    }


def _inside(workdir: Path, rel: str) -> Path:
    target = (workdir / rel).resolve()
    if not target.is_relative_to(workdir.resolve()):
        raise ValidationError(f"{rel!r} leaves the working directory", "dir")
    return target


def _subtree(store: BlockStore, snapshot: str, inner: str) -> str:
    """The snapshot of directory ``inner`` inside ``snapshot`` (a file: a snapshot of it)."""
    if not inner:
        return snapshot
    current = snapshot
    parts = inner.split("/")
    for i, part in enumerate(parts):
        entry = store.get_dir(current).entry(part)
        if entry is None:
            raise BlockNotFound(f"no {'/'.join(parts[: i + 1])} in snapshot {snapshot}")
        if entry.kind == "file":
            if i != len(parts) - 1:
                raise BlockNotFound(f"{'/'.join(parts[: i + 1])} is a file in {snapshot}")
            return store.put_manifest(DirectorySnapshot((entry,)))
        current = entry.cid
    return current


def _check_tree(store: BlockStore, snapshot: str) -> None:
    """Read (and so verify) every block of ``snapshot``'s tree: the corrupt ones are
    quarantined by the store and then missing, for a fetch to restore."""
    for cid, _ in list(store.walk(snapshot)):
        with contextlib.suppress(BadBlock, BlockNotFound):
            store.get(cid)


def _without(store: BlockStore, w: Any, snapshot: str, inner: str) -> tuple[str, int]:
    """``snapshot`` without the entry at ``inner``: the new snapshot's CID and size."""
    parts = inner.split("/")
    snap = store.get_dir(snapshot)
    entry = snap.entry(parts[0])
    if entry is None:
        raise BlockNotFound(f"no {inner} in snapshot {snapshot}")
    if len(parts) == 1:
        entries = [e for e in snap.entries if e.name != parts[0]]
    else:
        if entry.kind != "dir":
            raise BlockNotFound(f"{parts[0]} is a file in {snapshot}")
        sub, size = _without(store, w, entry.cid, "/".join(parts[1:]))
        entries = [
            e if e.name != parts[0] else DirEntry(e.name, "dir", sub, size) for e in snap.entries
        ]
    new = DirectorySnapshot.of(entries)
    return str(w.put_manifest(new)), new.size


def _move_into(staging: Path, dest: Path, keeplocal: bool) -> None:
    """Move the files of ``staging`` into ``dest``; with ``keeplocal`` an existing file
    that differs stays as it is."""
    for dirpath, _, files in os.walk(staging):
        rel = Path(dirpath).relative_to(staging)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            target = dest / rel / name
            if keeplocal and target.exists() and not _same(target, Path(dirpath) / name):
                continue
            with contextlib.suppress(IsADirectoryError):
                os.replace(Path(dirpath) / name, target)


def _same(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True
