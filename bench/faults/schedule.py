"""The seeded fault schedule: a list of timed events, the same for the same seed, nodes,
length and lease, printed and written as JSON so that a run can be replayed from the file
(``--replay``) or from its seed.

Two tracks, each a sequence of episodes with a pause between them: the main track holds
what happens to daemons and to the colony's shape (a partition, a one-way cut, SIGKILL
and restart, SIGSTOP for longer than a lease, clock skew, a full disk), the network track
what happens to links (random loss, a slow line). An episode is two events, its start and
its end (heal, restart, SIGCONT, ...). Every episode ends by ``minutes``: after that the
colony is whole again and the run waits for every acknowledged process to end.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# relative weights of the main track's episodes
MAIN = {"partition": 3, "kill": 3, "pause": 2, "one_way": 1, "skew": 1, "disk_full": 1}
NETWORK = {"loss": 2, "bandwidth": 1}
ENDS = {
    "partition": "heal",
    "one_way": "heal",
    "kill": "restart",
    "pause": "resume",
    "skew": "skew_off",
    "disk_full": "disk_free",
    "loss": "loss_off",
    "bandwidth": "bandwidth_off",
}


@dataclass(frozen=True)
class Event:
    at: float  # seconds after the workload started
    kind: str
    nodes: tuple[str, ...] = ()
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.args.items())
        return f"{self.at:7.1f}s {self.kind:<13} {','.join(self.nodes)} {extra}".rstrip()


@dataclass
class Schedule:
    seed: int
    nodes: list[str]
    seconds: float
    lease: float
    disk_node: str  # the node whose home is a small file system of its own
    events: list[Event]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "events": [asdict(e) for e in self.events]}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> Schedule:
        data = json.loads(path.read_text(encoding="utf-8"))
        events = [
            Event(float(e["at"]), str(e["kind"]), tuple(e["nodes"]), dict(e["args"]))
            for e in data["events"]
        ]
        return cls(
            int(data["seed"]),
            list(data["nodes"]),
            float(data["seconds"]),
            float(data["lease"]),
            str(data["disk_node"]),
            events,
        )

    def describe(self) -> str:
        head = (
            f"schedule: seed {self.seed}, {len(self.nodes)} nodes, {self.seconds:g} s of "
            f"faults, lease {self.lease:g} s, disk node {self.disk_node}"
        )
        return "\n".join([head, *(e.describe() for e in self.events)])


def generate(
    seed: int,
    nodes: Sequence[str],
    seconds: float,
    lease: float,
    *,
    warmup: float = 5.0,
    main: dict[str, int] | None = None,
    network: dict[str, int] | None = None,
) -> Schedule:
    rng = random.Random(seed)
    names = list(nodes)
    disk_node = rng.choice(names[1:] or names)
    events: list[Event] = []
    for weights, track in ((main or MAIN, "main"), (network or NETWORK, "network")):
        if not weights:
            continue
        t = warmup + (0.0 if track == "main" else rng.uniform(0, 3 * lease))
        kinds, w = list(weights), list(weights.values())
        while True:
            kind = rng.choices(kinds, w)[0]
            start, length = _episode(rng, kind, names, disk_node, lease)
            if t + length > seconds:
                break
            events.append(Event(round(t, 2), kind, start.nodes, start.args))
            events.append(Event(round(t + length, 2), ENDS[kind], start.nodes))
            t += length + rng.uniform(lease, 3 * lease)  # the colony settles in between
    events.sort(key=lambda e: e.at)
    return Schedule(seed, names, seconds, lease, disk_node, events)


def _episode(
    rng: random.Random, kind: str, names: list[str], disk_node: str, lease: float
) -> tuple[Event, float]:
    """An episode's first event (its time set later) and how long it lasts."""
    n = len(names)
    one = (rng.choice(names),)
    if kind == "partition":
        # a minority cut off (never half or more: the majority keeps deciding), for
        # longer than a lease so that the minority's leases run out
        shuffled = rng.sample(names, n)
        k = rng.randint(1, max(1, (n - 1) // 2))
        groups = [sorted(shuffled[:k]), sorted(shuffled[k:])]
        return Event(0, kind, (), {"groups": groups}), rng.uniform(2 * lease, 6 * lease)
    if kind == "one_way":
        deaf, *others = rng.sample(names, n)
        to = sorted(others[: rng.randint(1, max(1, len(others) // 2))])
        return Event(0, kind, (deaf,), {"to": to}), rng.uniform(2 * lease, 5 * lease)
    if kind == "kill":
        return Event(0, kind, one), rng.uniform(0.5, 3 * lease)
    if kind == "pause":
        # SIGSTOP for longer than a lease: the node's leases expire while it sleeps, and
        # it wakes up believing it still holds them
        return Event(0, kind, one), rng.uniform(1.5 * lease, 3 * lease)
    if kind == "skew":
        seconds = rng.choice((-20, -5, -2, 2, 5, 20))
        return Event(0, kind, one, {"seconds": seconds}), rng.uniform(4 * lease, 10 * lease)
    if kind == "disk_full":
        return Event(0, kind, (disk_node,)), rng.uniform(2 * lease, 5 * lease)
    if kind == "loss":
        chosen = tuple(sorted(rng.sample(names, rng.randint(1, n))))
        return Event(0, kind, chosen, {"percent": rng.choice((5, 10, 20, 30))}), rng.uniform(
            3 * lease, 10 * lease
        )
    if kind == "bandwidth":
        return Event(0, kind, one, {"mbit": rng.choice((0.5, 1.0, 2.0))}), rng.uniform(
            3 * lease, 10 * lease
        )
    raise ValueError(f"no such fault: {kind}")
