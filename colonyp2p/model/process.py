"""The user-facing view of a process: its signed spec and where it stands."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from colonyp2p.errors import ValidationError
from colonyp2p.model.checks import as_float, as_str_tuple, check_int, check_str, set_field
from colonyp2p.model.colonyos_json import function_spec_to_colonyos
from colonyp2p.model.signed import SignedSpec

ProcessState = Literal["waiting", "running", "successful", "failed"]
PROCESS_STATES: tuple[ProcessState, ...] = get_args(ProcessState)
FINAL_STATES: frozenset[str] = frozenset({"successful", "failed"})

# ColonyOS's process states (pkg/core/process.go).
COLONYOS_STATES: dict[str, int] = {"waiting": 0, "running": 1, "successful": 2, "failed": 3}
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_NANOS_PER_DAY = 24 * 60 * 60 * 10**9


@dataclass(frozen=True)
class Process:
    """A process as users see it: its signed spec, its state and its result."""

    pid: str
    spec: SignedSpec
    state: ProcessState
    attempts: int = 0
    holder: str = ""  # member id of the executor holding the lease
    epoch: int = 0
    inputs: tuple[Any, ...] = ()  # the parents' outputs, in dependency order
    output: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    submitted_at: float = 0
    started_at: float = 0
    ended_at: float = 0
    keepers: tuple[str, ...] = ()
    waiting_reason: str = ""  # why a waiting process is not running yet, for people

    def __post_init__(self) -> None:
        check_str(self.pid, "pid", 128)
        if not isinstance(self.spec, SignedSpec):
            raise ValidationError(f"must be a SignedSpec, got {type(self.spec).__name__}", "spec")
        if self.state not in PROCESS_STATES:
            raise ValidationError(
                f"{self.state!r} is not one of {', '.join(PROCESS_STATES)}", "state"
            )
        check_int(self.attempts, "attempts", 0)
        check_int(self.epoch, "epoch", 0)
        for name in ("inputs", "output"):
            value = getattr(self, name)
            if type(value) is list:
                set_field(self, name, tuple(value))
            elif type(value) is not tuple:
                raise ValidationError(f"must be a list, got {type(value).__name__}", name)
        set_field(self, "errors", as_str_tuple(self.errors, "errors", 1 << 20))
        set_field(self, "keepers", as_str_tuple(self.keepers, "keepers", 128))
        for name in ("submitted_at", "started_at", "ended_at"):
            set_field(self, name, as_float(getattr(self, name), name))

    @property
    def is_final(self) -> bool:
        """Whether the process has ended (successful or failed): nothing changes it any more."""
        return self.state in FINAL_STATES

    def to_colonyos_json(self) -> dict[str, Any]:
        """The process in ColonyOS's JSON shape (pkg/core/process.go), as far as it maps.

        Times are RFC 3339 (Go's zero time when unset), bytes are base64 as Go
        writes them, ``retries`` is ``attempts``, ``assignedexecutorid`` is the
        lease holder and ``processgraphid`` the workflow id. Children are not
        known to a process record, so ``children`` is empty.
        """
        spec = self.spec.spec
        submitted = self.submitted_at or self.spec.submitted_at
        wait_deadline = submitted + spec.maxwaittime if submitted and spec.maxwaittime > 0 else 0
        exec_deadline = (
            self.started_at + spec.maxexectime
            if self.started_at and spec.maxexectime > 0 and not self.is_final
            else 0
        )
        return {
            "processid": self.pid,
            "initiatorid": self.spec.submitter,
            "initiatorname": "",
            "assignedexecutorid": self.holder,
            "isassigned": self.state == "running",
            "state": COLONYOS_STATES[self.state],
            "prioritytime": _priority_time(submitted, spec.priority),
            "submissiontime": _go_time(submitted),
            "starttime": _go_time(self.started_at),
            "endtime": _go_time(self.ended_at),
            "waitdeadline": _go_time(wait_deadline),
            "execdeadline": _go_time(exec_deadline),
            "retries": self.attempts,
            "attributes": [
                {"key": key, "value": _jsonable(value)} for key, value in self.attributes.items()
            ],
            "spec": function_spec_to_colonyos(spec),
            "waitforparents": bool(self.spec.parents) and self.state == "waiting",
            "parents": list(self.spec.parents),
            "children": [],
            "processgraphid": self.spec.workflow_id,
            "in": [_jsonable(v) for v in self.inputs],
            "out": [_jsonable(v) for v in self.output],
            "errors": list(self.errors),
        }


def _go_time(seconds: float) -> str:
    if seconds <= 0 or not math.isfinite(seconds):
        return _GO_ZERO_TIME
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def _priority_time(submitted: float, priority: int) -> int:
    # ColonyOS orders waiting processes by submission time minus priority days.
    return int(submitted * 10**9) - priority * _NANOS_PER_DAY


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
