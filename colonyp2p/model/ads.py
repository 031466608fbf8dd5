"""Executor capability ads: self-signed, announced by gossip, matched against spec conditions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from colonyp2p.errors import ValidationError
from colonyp2p.identity import Identity, verify
from colonyp2p.model.checks import (
    as_float,
    as_str_tuple,
    as_tuple,
    check_int,
    check_str,
    set_field,
)
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.model.spec import MAX_NAME, Gpu


@dataclass(frozen=True)
class Hardware:
    """An executor's resources; 0 for a size means undeclared (not matched)."""

    cpu: str = ""  # model name
    cores: int = 0
    memory: int = 0  # bytes
    storage: int = 0  # bytes
    gpu: Gpu = field(default_factory=Gpu)
    nodes: int = 1

    def __post_init__(self) -> None:
        check_str(self.cpu, "cpu", MAX_NAME)
        check_int(self.cores, "cores", 0)
        check_int(self.memory, "memory", 0)
        check_int(self.storage, "storage", 0)
        if not isinstance(self.gpu, Gpu):
            raise ValidationError(f"must be a Gpu, got {type(self.gpu).__name__}", "gpu")
        check_int(self.nodes, "nodes", 0)


@dataclass(frozen=True)
class Software:
    name: str
    type: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        check_str(self.name, "name", MAX_NAME)
        check_str(self.type, "type", MAX_NAME)
        check_str(self.version, "version", MAX_NAME)


@dataclass(frozen=True)
class ExecutorAd:
    """What an executor can run, announced and signed by the node that runs it."""

    executor_id: str  # member id of the node running the executor (the signer)
    executortype: str
    name: str
    functions: tuple[str, ...] = ()  # empty: serves any funcname (shell, slurm, k8s)
    location: str = ""
    platform: str = ""
    architecture: str = ""
    hardware: Hardware = field(default_factory=Hardware)
    software: tuple[Software, ...] = ()
    capacity: int = 1  # processes it runs at once
    issued_at: float = 0.0
    signature: bytes = b""

    def __post_init__(self) -> None:
        check_str(self.executor_id, "executor_id", 128)
        check_str(self.executortype, "executortype", MAX_NAME, nonempty=True)
        check_str(self.name, "name", MAX_NAME)
        set_field(self, "functions", as_str_tuple(self.functions, "functions", MAX_NAME))
        check_str(self.location, "location", MAX_NAME)
        check_str(self.platform, "platform", MAX_NAME)
        check_str(self.architecture, "architecture", MAX_NAME)
        if not isinstance(self.hardware, Hardware):
            raise ValidationError(
                f"must be a Hardware, got {type(self.hardware).__name__}", "hardware"
            )
        software = as_tuple(self.software, "software")
        set_field(self, "software", software)
        if not all(isinstance(s, Software) for s in software):
            raise ValidationError("must be a list of Software", "software")
        check_int(self.capacity, "capacity", 1)
        set_field(self, "issued_at", as_float(self.issued_at, "issued_at"))
        if type(self.signature) is not bytes:
            raise ValidationError("must be bytes", "signature")

    @classmethod
    def create(cls, identity: Identity, now: float, **fields: Any) -> ExecutorAd:
        """An ad for an executor run by ``identity``, signed by it (``executor_id`` is its id)."""
        unsigned = cls(executor_id=identity.member_id, issued_at=now, **fields)
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned_bytes(unsigned)))

    def verify(self) -> None:
        """Raise BadSignature unless ``executor_id`` signed exactly this ad."""
        _ = self._verified

    @cached_property
    def _verified(self) -> bool:
        # Immutable, so one successful check holds for the object's life (as for
        # MembershipSet): ads are relayed (core/catchup.py), and the simulator hands the
        # same ad objects to every member that catches up.
        verify(self.executor_id, unsigned_bytes(self), self.signature)
        return True

    @cached_property
    def function_set(self) -> frozenset[str]:
        """``functions`` as a set, for O(1) matching (empty: serves any funcname)."""
        return frozenset(self.functions)
