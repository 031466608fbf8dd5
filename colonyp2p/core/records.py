"""The keeper's durable record of one process: its spec, its ballot state and its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from colonyp2p.core.messages import Certificate, Outcome, ParentRef, Placement, Transfer
from colonyp2p.model.signed import SignedSpec


@dataclass(frozen=True, slots=True)
class KeeperRecord:
    """Immutable: every change is a new record, persisted before anything is sent about it.
    Times are the keeper's own clock."""

    spec: SignedSpec
    pid: str
    keepers: tuple[str, ...]
    config_version: int
    parents: tuple[ParentRef, ...] = ()
    promised: int = 0  # highest epoch promised (the fencing token)
    holder: str = ""  # who holds the promise for ``promised``
    purpose: str = ""
    lease_until: float = 0.0
    lease_started: float = 0.0
    released: bool = True  # no live lease (never granted, released, or expired and counted)
    ran: bool = False  # the holder renewed its lease: it won the ballot and started the run
    silent_expiries: int = 0  # claims whose leases ran out with no renewal (see keeper.py)
    accepted_epoch: int = 0
    accepted: Outcome | None = None
    decided: Outcome | None = None
    decided_epoch: int = 0
    expired_attempts: int = 0
    parent_outcomes: tuple[tuple[str, Outcome], ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    stored_at: float = 0.0
    started_at: float = 0.0
    ended_at: float = 0.0
    # provenance (core/provenance.py): the submitter's signed placement, the certified
    # moves from it to this configuration, and the certificate of ``decided``
    placement: Placement | None = None
    moves: tuple[Certificate, ...] = ()
    certificate: Certificate | None = None

    def leased(self, now: float) -> bool:
        return not self.released and self.lease_until > now

    def state(self, now: float) -> str:
        if self.decided is not None:
            return self.decided.kind
        return "running" if self.leased(now) else "waiting"

    def parent_outcome(self, pid: str) -> Outcome | None:
        for parent, outcome in self.parent_outcomes:
            if parent == pid:
                return outcome
        return None

    def parents_known(self) -> bool:
        return len(self.parent_outcomes) == len(self.parents)

    def ready(self) -> bool:
        """A process may run once every parent succeeded."""
        return self.parents_known() and all(o.kind == "successful" for _, o in self.parent_outcomes)

    def inputs(self) -> tuple[Any, ...]:
        """The parents' outputs, concatenated in dependency order (as ColonyOS does)."""
        out: list[Any] = []
        for ref in self.parents:
            outcome = self.parent_outcome(ref.pid)
            if outcome is not None:
                out.extend(outcome.output)
        return tuple(out)

    def transfer(self, keepers: tuple[str, ...], config_version: int, promised: int) -> Transfer:
        moved = self.decided is not None and self.decided.kind == "moved"
        return Transfer(
            spec=self.spec,
            keepers=keepers,
            config_version=config_version,
            parents=self.parents,
            promised=promised,
            expired_attempts=self.expired_attempts,
            decided=self.decided if self.decided and self.decided.kind != "moved" else None,
            decided_epoch=self.decided_epoch,
            parent_outcomes=self.parent_outcomes,
            attributes=self.attributes,
            placement=self.placement,
            # a record that moved hands on its certified move: the new keepers' proof
            moves=(*self.moves, self.certificate)
            if moved and self.certificate is not None
            else self.moves,
            certificate=None if moved else self.certificate,
        )

    @classmethod
    def from_transfer(cls, t: Transfer, now: float) -> KeeperRecord:
        return cls(
            spec=t.spec,
            pid=_pid(t.spec),
            keepers=t.keepers,
            config_version=t.config_version,
            parents=t.parents,
            promised=t.promised,
            expired_attempts=t.expired_attempts,
            decided=t.decided,
            decided_epoch=t.decided_epoch,
            parent_outcomes=t.parent_outcomes,
            attributes=t.attributes,
            placement=t.placement,
            moves=t.moves,
            certificate=t.certificate,
            stored_at=now,
            ended_at=now if t.decided else 0.0,
        )


def _pid(spec: SignedSpec) -> str:
    return spec.pid
