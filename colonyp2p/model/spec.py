"""FunctionSpec and its parts, with the ColonyOS field names.

Units are normalised on the way in (ColonyOS writes cpu as "500m" and mem as
"10Gi"): cpu in millicores, memory and storage in bytes, times in seconds.

Every class validates itself in ``__post_init__`` and raises ValidationError
naming the bad field, so a spec that exists is a spec the colony accepts.
Lists given where tuples are expected are turned into tuples, and ints given
for float fields into floats, so that an object and its decoded copy are equal
and encode to the same bytes.

Every number has a stated range (docs/DAEMON.md lists them for users); a value
outside it (negative, NaN, infinite, too large) is refused saying what is allowed:

- maxwaittime, maxexectime: -1 (NO_LIMIT, ColonyOS's "no limit") or 0 (no limit
  too, as in ColonyOS), else seconds up to MAX_SECONDS, fractions allowed.
- conditions.walltime: 0 (none) or whole seconds up to MAX_SECONDS.
- maxretries: 0 to MAX_RETRIES. ColonyOS JSON's -1 ("unlimited") is read as
  MAX_RETRIES by colonyos_json; a FunctionSpec holds no -1.
- priority: MIN_PRIORITY to MAX_PRIORITY.
- the counts and amounts of conditions and gpu: 0 (no constraint) to INT64_MAX,
  ColonyOS's Go int64.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from colonyp2p import codec
from colonyp2p.errors import ValidationError
from colonyp2p.model.checks import (
    as_float,
    as_str_tuple,
    as_tuple,
    check_bool,
    check_int,
    check_str,
    plain_size,
    set_field,
    str_size,
)

FUNCNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
MAX_FUNCNAME = 128
MAX_NAME = 256  # nodenames, executor names and types, locations, labels
MAX_PATH = 4096
# ColonyOS turns priority into a priority time of submission - priority days in
# int64 nanoseconds, which overflows near 106,000 days: stay well inside it.
MIN_PRIORITY = -100_000
MAX_PRIORITY = 100_000
# Time limits (maxwaittime, maxexectime, walltime) are at most a year, as an invitation
# is: a longer one is a mistake rather than a plan (-1 says "no limit"), and a year
# stays far inside what every consumer of a limit holds (ColonyOS's Go time.Duration,
# int64 nanoseconds, overflows after 292 years; Slurm's --time, Kubernetes's
# activeDeadlineSeconds), where 1e308 would overflow or be refused by them.
MAX_SECONDS = 365 * 24 * 3600
NO_LIMIT = -1  # a time limit that means none, as in ColonyOS; 0 means none too
# A retry re-runs the function somewhere else; ColonyOS's "unlimited" (-1) is
# read as this many (see colonyos_json).
MAX_RETRIES = 1000
MAX_SPEC_BYTES = 1 << 20  # canonical CBOR of one FunctionSpec
# Generous upper bound of what a spec's fixed fields and map keys take in CBOR,
# and what each mount adds besides its strings.
_SPEC_OVERHEAD = 1024
_MOUNT_OVERHEAD = 256
_PATH_SEPARATORS = re.compile(r"[/\\]")


@dataclass(frozen=True)
class Gpu:
    name: str = ""
    count: int = 0
    mem: int = 0  # bytes per GPU
    nodecount: int = 0

    def __post_init__(self) -> None:
        check_str(self.name, "name", MAX_NAME)
        check_int(self.count, "count", 0)
        check_int(self.mem, "mem", 0)
        check_int(self.nodecount, "nodecount", 0)


@dataclass(frozen=True)
class Conditions:
    """Where a spec may run (0 or empty: no constraint) and, in a workflow, its parents."""

    executortype: str = ""
    executornames: tuple[str, ...] = ()
    location: str = ""
    nodes: int = 0
    processes: int = 0
    processespernode: int = 0
    cpu: int = 0  # millicores
    mem: int = 0  # bytes
    storage: int = 0  # bytes
    gpu: Gpu = field(default_factory=Gpu)
    walltime: int = 0  # seconds
    dependencies: tuple[str, ...] = ()  # workflow: nodenames of the parents

    def __post_init__(self) -> None:
        check_str(self.executortype, "executortype", MAX_NAME)
        set_field(
            self, "executornames", as_str_tuple(self.executornames, "executornames", MAX_NAME)
        )
        check_str(self.location, "location", MAX_NAME)
        check_int(self.nodes, "nodes", 0)
        check_int(self.processes, "processes", 0)
        check_int(self.processespernode, "processespernode", 0)
        check_int(self.cpu, "cpu", 0)
        check_int(self.mem, "mem", 0)
        check_int(self.storage, "storage", 0)
        if not isinstance(self.gpu, Gpu):
            raise ValidationError(f"must be a Gpu, got {type(self.gpu).__name__}", "gpu")
        check_int(self.walltime, "walltime", 0, MAX_SECONDS, unit=" seconds")
        deps = as_str_tuple(self.dependencies, "dependencies", MAX_NAME)
        set_field(self, "dependencies", deps)
        if deps:
            _check_dependencies(deps)

    def encoded_size_bound(self) -> int:
        """An upper bound of this object's CBOR size (its strings plus fixed fields)."""
        total = _SPEC_OVERHEAD + str_size(self.executortype) + str_size(self.location)
        total += str_size(self.gpu.name)
        for name in self.executornames:
            total += str_size(name)
        for dep in self.dependencies:
            total += str_size(dep)
        return total


def _check_dependencies(deps: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for i, dep in enumerate(deps):
        if not dep:
            raise ValidationError(
                "a dependency must name a node, got an empty string", f"dependencies[{i}]"
            )
        if dep in seen:
            raise ValidationError(f"{dep!r} is listed twice", f"dependencies[{i}]")
        seen.add(dep)


@dataclass(frozen=True)
class ConflictRule:
    keeplocal: bool = False

    def __post_init__(self) -> None:
        check_bool(self.keeplocal, "keeplocal")


@dataclass(frozen=True)
class OnConflicts:
    onstart: ConflictRule = field(default_factory=ConflictRule)
    onclose: ConflictRule = field(default_factory=ConflictRule)

    def __post_init__(self) -> None:
        if not isinstance(self.onstart, ConflictRule):
            raise ValidationError("must be a ConflictRule", "onstart")
        if not isinstance(self.onclose, ConflictRule):
            raise ValidationError("must be a ConflictRule", "onclose")


def check_label(label: object, field: str) -> None:
    """A colony path of the meta-filesystem: non-empty and absolute."""
    check_str(label, field, MAX_PATH, nonempty=True)
    assert isinstance(label, str)
    if not label.startswith("/"):
        raise ValidationError(f"a label is a colony path starting with '/', got {label!r}", field)


def check_dir(path: object, field: str) -> None:
    """A directory inside the process's working directory: relative, never escaping it."""
    check_str(path, field, MAX_PATH, nonempty=True)
    assert isinstance(path, str)
    if path.startswith(("/", "\\")):
        raise ValidationError(f"must be relative to the working directory, got {path!r}", field)
    if ".." in _PATH_SEPARATORS.split(path):
        raise ValidationError(f"must not contain '..', got {path!r}", field)


@dataclass(frozen=True)
class SnapshotMount:
    """A read-only snapshot of a label, downloaded into ``dir`` before the run."""

    label: str
    dir: str
    snapshotid: str = ""
    keepfiles: bool = False
    keepsnapshot: bool = False

    def __post_init__(self) -> None:
        check_label(self.label, "label")
        check_dir(self.dir, "dir")
        check_str(self.snapshotid, "snapshotid", MAX_NAME)
        check_bool(self.keepfiles, "keepfiles")
        check_bool(self.keepsnapshot, "keepsnapshot")


@dataclass(frozen=True)
class SyncDirMount:
    """A label synchronised with ``dir`` before and after the run, with conflict rules."""

    label: str
    dir: str
    keepfiles: bool = False
    onconflicts: OnConflicts = field(default_factory=OnConflicts)

    def __post_init__(self) -> None:
        check_label(self.label, "label")
        check_dir(self.dir, "dir")
        check_bool(self.keepfiles, "keepfiles")
        if not isinstance(self.onconflicts, OnConflicts):
            raise ValidationError("must be an OnConflicts", "onconflicts")


@dataclass(frozen=True)
class FsSpec:
    mount: str = ""
    snapshots: tuple[SnapshotMount, ...] = ()
    dirs: tuple[SyncDirMount, ...] = ()

    def __post_init__(self) -> None:
        check_str(self.mount, "mount", MAX_PATH)
        snapshots = _as_tuple_of(self.snapshots, SnapshotMount, "snapshots")
        set_field(self, "snapshots", snapshots)
        set_field(self, "dirs", _as_tuple_of(self.dirs, SyncDirMount, "dirs"))

    def encoded_size_bound(self) -> int:
        """An upper bound of this object's CBOR size."""
        total = str_size(self.mount)
        for snap in self.snapshots:
            total += _MOUNT_OVERHEAD + str_size(snap.label) + str_size(snap.dir)
            total += str_size(snap.snapshotid)
        for sync in self.dirs:
            total += _MOUNT_OVERHEAD + str_size(sync.label) + str_size(sync.dir)
        return total


def _as_tuple_of(value: object, cls: type, field: str) -> tuple[Any, ...]:
    value = as_tuple(value, field)
    for i, item in enumerate(value):
        if not isinstance(item, cls):
            raise ValidationError(
                f"must be a {cls.__name__}, got {type(item).__name__}", f"{field}[{i}]"
            )
    return value


def check_funcname(funcname: object) -> None:
    """The name an executor serves: an identifier-like string of at most 128 characters."""
    check_str(funcname, "funcname", MAX_FUNCNAME, nonempty=True)
    assert isinstance(funcname, str)
    if FUNCNAME_RE.fullmatch(funcname) is None:
        raise ValidationError(
            f"{funcname!r} is not a function name (letters, digits, '_', '.', ':', '-', "
            "not starting with a digit or punctuation)",
            "funcname",
        )


def _env_size(env: object) -> int:
    if type(env) is not dict:
        raise ValidationError(f"must be a map of strings, got {type(env).__name__}", "env")
    total = 0
    for key, value in env.items():
        if type(key) is not str or not key or "=" in key or "\0" in key:
            raise ValidationError(
                f"{key!r} is not an environment variable name (non-empty, no '=')", "env"
            )
        if type(value) is not str or "\0" in value:
            raise ValidationError("must be a string without NUL characters", f"env.{key}")
        total += str_size(key) + str_size(value)
    return total


@dataclass(frozen=True)
class FunctionSpec:
    """What to run and where it may run: ColonyOS's function specification."""

    funcname: str
    nodename: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    maxwaittime: float = -1
    maxexectime: float = -1
    maxretries: int = 0
    conditions: Conditions = field(default_factory=Conditions)
    label: str = ""
    env: dict[str, str] = field(default_factory=dict)
    fs: FsSpec = field(default_factory=FsSpec)

    def __post_init__(self) -> None:
        check_funcname(self.funcname)
        check_str(self.nodename, "nodename", MAX_NAME)
        args = as_tuple(self.args, "args")
        set_field(self, "args", args)
        size = _SPEC_OVERHEAD + str_size(self.funcname) + str_size(self.nodename)
        size += plain_size(args, "args")
        if type(self.kwargs) is not dict:
            raise ValidationError(f"must be a map, got {type(self.kwargs).__name__}", "kwargs")
        size += plain_size(self.kwargs, "kwargs")
        check_int(self.priority, "priority", MIN_PRIORITY, MAX_PRIORITY)
        for name in ("maxwaittime", "maxexectime"):
            limit = as_float(
                getattr(self, name), name, 0, MAX_SECONDS, unit=" seconds", no_limit=NO_LIMIT
            )
            set_field(self, name, limit)
        check_int(self.maxretries, "maxretries", 0, MAX_RETRIES)
        if not isinstance(self.conditions, Conditions):
            raise ValidationError(
                f"must be a Conditions, got {type(self.conditions).__name__}", "conditions"
            )
        check_str(self.label, "label", MAX_PATH)
        size += str_size(self.label) + _env_size(self.env)
        if not isinstance(self.fs, FsSpec):
            raise ValidationError(f"must be an FsSpec, got {type(self.fs).__name__}", "fs")
        size += self.conditions.encoded_size_bound() + self.fs.encoded_size_bound()
        # The bound is cheap and almost always enough; encode only when it is not.
        if size > MAX_SPEC_BYTES:
            exact = len(codec.canonical_bytes(self))
            if exact > MAX_SPEC_BYTES:
                raise ValidationError(
                    f"the spec encodes to {exact} bytes, more than the {MAX_SPEC_BYTES} allowed "
                    "(move large inputs to the meta-filesystem and pass their labels)"
                )

    @property
    def dependencies(self) -> tuple[str, ...]:
        """The nodenames of this spec's parents in its workflow."""
        return self.conditions.dependencies
