"""What the core asks its driver to do. Drivers carry effects out in list order,
except that every Persist of a step is made durable before any Send of that step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from colonyp2p.core.messages import Announcement, Message, Outcome
from colonyp2p.model.signed import SignedSpec


@dataclass(frozen=True, slots=True)
class Send:
    """A direct request/response message to one member."""

    to: str
    msg: Message


@dataclass(frozen=True, slots=True)
class Publish:
    """A gossip announcement; drivers batch and rate-limit these."""

    item: Announcement


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``on_timer(key, now)`` once the node's clock reaches ``at``.
    Timers are never cancelled: the core ignores one that no longer applies."""

    at: float
    key: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Persist:
    """Durable write: ``value`` None deletes. Values are immutable colony objects."""

    table: str
    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class StartExecution:
    """Run a process under lease ``epoch``; the driver answers with ``on_execution_done``."""

    pid: str
    epoch: int
    spec: SignedSpec
    inputs: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class CancelExecution:
    pid: str
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class Observe:
    """A fact about what this node just did, for logs, the UI and the simulator's checker."""

    kind: str
    pid: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reject:
    """Input refused by the core (stale, unauthorised, invalid): counted, nothing changed."""

    code: str
    detail: str


Effect = Send | Publish | SetTimer | Persist | StartExecution | CancelExecution | Observe | Reject

__all__ = [
    "CancelExecution",
    "Effect",
    "Observe",
    "Outcome",
    "Persist",
    "Publish",
    "Reject",
    "Send",
    "SetTimer",
    "StartExecution",
]
