"""Executor capability ads: self-signed, announced by gossip, matched against spec conditions."""

from __future__ import annotations

from dataclasses import dataclass, field

from colonyp2p.model.spec import Gpu


@dataclass(frozen=True)
class Hardware:
    cpu: str = ""  # model name
    cores: int = 0
    memory: int = 0  # bytes
    storage: int = 0  # bytes
    gpu: Gpu = field(default_factory=Gpu)
    nodes: int = 1


@dataclass(frozen=True)
class Software:
    name: str
    type: str = ""
    version: str = ""


@dataclass(frozen=True)
class ExecutorAd:
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
