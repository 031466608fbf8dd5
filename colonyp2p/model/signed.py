"""A submitted FunctionSpec, signed by its submitter. Its hash is the process id."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from colonyp2p import codec
from colonyp2p.errors import ColonyError, ValidationError
from colonyp2p.identity import Identity, verify
from colonyp2p.model.checks import as_float, as_str_tuple, check_str, set_field
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.model.spec import FunctionSpec

MAX_NONCE = 64


@dataclass(frozen=True)
class SignedSpec:
    """A FunctionSpec as submitted: to which colony, by whom, and signed by them."""

    spec: FunctionSpec
    colony_id: str
    submitter: str  # member id of the signer
    submitted_at: float  # the submitter's clock, informational
    nonce: bytes  # makes two submissions of the same spec two processes
    parents: tuple[str, ...] = ()  # workflow: process ids of the parents, in dependency order
    workflow_id: str = ""
    signature: bytes = b""

    def __post_init__(self) -> None:
        if not isinstance(self.spec, FunctionSpec):
            raise ValidationError(f"must be a FunctionSpec, got {type(self.spec).__name__}", "spec")
        check_str(self.colony_id, "colony_id", 128)
        check_str(self.submitter, "submitter", 128)
        set_field(self, "submitted_at", as_float(self.submitted_at, "submitted_at"))
        if type(self.nonce) is not bytes or len(self.nonce) > MAX_NONCE:
            raise ValidationError(f"must be at most {MAX_NONCE} bytes", "nonce")
        set_field(self, "parents", as_str_tuple(self.parents, "parents", 128))
        check_str(self.workflow_id, "workflow_id", 128)
        if type(self.signature) is not bytes:
            raise ValidationError("must be bytes", "signature")

    @classmethod
    def create(
        cls,
        spec: FunctionSpec,
        identity: Identity,
        colony_id: str,
        now: float,
        nonce: bytes,
        parents: Iterable[str] = (),
        workflow_id: str = "",
    ) -> SignedSpec:
        """Sign ``spec`` for submission to ``colony_id`` as ``identity``."""
        unsigned = cls(
            spec=spec,
            colony_id=colony_id,
            submitter=identity.member_id,
            submitted_at=now,
            nonce=nonce,
            parents=tuple(parents),
            workflow_id=workflow_id,
        )
        return dataclasses.replace(unsigned, signature=identity.sign(unsigned_bytes(unsigned)))

    def verify(self) -> None:
        """Raise BadSignature unless the submitter signed exactly this spec, colony and nonce."""
        _ = self._verified

    def valid(self) -> bool:
        """Whether the submitter signed exactly this spec (``verify`` without raising)."""
        try:
            return self._verified
        except ColonyError:
            return False

    @cached_property
    def _verified(self) -> bool:
        # Immutable, so one successful check holds for the object's life: every member a
        # spec reaches checks it wherever it enters (submit, StoreSpec, Install,
        # announcements), and the simulator hands one object to many members.
        verify(self.submitter, unsigned_bytes(self), self.signature)
        return True

    @cached_property
    def pid(self) -> str:
        """The process id: sha256 of the canonical signed spec, 64 hex characters."""
        return hashlib.sha256(codec.canonical_bytes(self)).hexdigest()
