"""A submitted FunctionSpec, signed by its submitter. Its hash is the process id."""

from __future__ import annotations

from dataclasses import dataclass

from colonyp2p.model.spec import FunctionSpec


@dataclass(frozen=True)
class SignedSpec:
    spec: FunctionSpec
    colony_id: str
    submitter: str  # member id of the signer
    submitted_at: float  # the submitter's clock, informational
    nonce: bytes  # makes two submissions of the same spec two processes
    parents: tuple[str, ...] = ()  # workflow: process ids of the parents, in dependency order
    workflow_id: str = ""
    signature: bytes = b""
