"""FunctionSpec and its parts, with the ColonyOS field names.

Units are normalised on the way in (ColonyOS writes cpu as "500m" and mem as
"10Gi"): cpu in millicores, memory and storage in bytes, times in seconds.
A time limit of 0 or less means "no limit", as in ColonyOS (-1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Gpu:
    name: str = ""
    count: int = 0
    mem: int = 0  # bytes per GPU
    nodecount: int = 0


@dataclass(frozen=True)
class Conditions:
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


@dataclass(frozen=True)
class ConflictRule:
    keeplocal: bool = False


@dataclass(frozen=True)
class OnConflicts:
    onstart: ConflictRule = field(default_factory=ConflictRule)
    onclose: ConflictRule = field(default_factory=ConflictRule)


@dataclass(frozen=True)
class SnapshotMount:
    label: str
    dir: str
    snapshotid: str = ""
    keepfiles: bool = False
    keepsnapshot: bool = False


@dataclass(frozen=True)
class SyncDirMount:
    label: str
    dir: str
    keepfiles: bool = False
    onconflicts: OnConflicts = field(default_factory=OnConflicts)


@dataclass(frozen=True)
class FsSpec:
    mount: str = ""
    snapshots: tuple[SnapshotMount, ...] = ()
    dirs: tuple[SyncDirMount, ...] = ()


@dataclass(frozen=True)
class FunctionSpec:
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
