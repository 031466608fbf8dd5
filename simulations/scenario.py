"""Simulation scenarios: TOML files describing a colony, its workload, its network and its faults.

Every key is checked: an unknown key, a wrong type or an impossible value is a
ScenarioError naming the key, so a typo never silently falls back to a default.
The shipped scenarios live in ``simulations/scenarios/`` and can be named
without their path or suffix (``continuum-1000``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from colonyp2p.core.params import Params
from colonyp2p.errors import ColonyError, ScenarioError
from colonyp2p.model.units import parse_bytes


@dataclass(frozen=True)
class ExecutorGroup:
    """``count`` executor members of one kind."""

    type: str
    count: int
    capacity: int = 1
    cores: int = 4
    memory: int = 4 << 30
    gpus: int = 0
    gpu_name: str = ""
    location: str = ""
    functions: tuple[str, ...] = ()  # empty: serves any function


@dataclass(frozen=True)
class FunctionMix:
    """One kind of spec in the workload: what it calls, where, and how often."""

    funcname: str
    executortype: str = ""
    weight: float = 1.0
    gpus: int = 0


@dataclass(frozen=True)
class Colony:
    executors: tuple[ExecutorGroup, ...]
    users: int = 1  # members with the user role: clients only, they keep nothing
    admins: int = 0  # keepers that run no executor


@dataclass(frozen=True)
class Workload:
    specs: int
    functions: tuple[FunctionMix, ...]
    workflow_specs: int = 0  # how many of ``specs`` belong to workflows
    workflow_size: tuple[int, int] = (3, 8)
    submit_window: tuple[float, float] = (0.0, 60.0)
    run_seconds: tuple[float, float] = (0.5, 5.0)
    error_rate: float = 0.0  # runs whose executor reports an error
    hang_rate: float = 0.0  # runs that outlast maxexectime every time
    maxexectime: float = 60.0
    maxretries: int = 3
    maxwaittime: float = -1.0
    priorities: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Network:
    latency: float = 0.02  # one-way delay of a direct message, seconds
    jitter: float = 0.01  # extra uniform delay: reorders messages
    loss: float = 0.0
    duplicate: float = 0.0
    gossip_latency: float = 0.1
    gossip_loss: float = 0.0


@dataclass(frozen=True)
class Partition:
    """At ``at`` a random ``fraction`` of the members is cut off from the rest until ``heal``."""

    at: float
    heal: float
    fraction: float = 0.5


@dataclass(frozen=True)
class Churn:
    joins: int = 0  # new executor members admitted during ``window``
    revokes: int = 0  # executor members revoked during ``window``
    window: tuple[float, float] = (0.0, 60.0)


BYZANTINE_ROLES = ("user", "keeper")


@dataclass(frozen=True)
class Faults:
    crash_fraction: float = 0.0  # members that crash once and restart from disk
    crash_window: tuple[float, float] = (0.0, 60.0)
    downtime: tuple[float, float] = (5.0, 30.0)
    clock_skew: float = 0.0  # each member's clock is off by up to this many seconds
    partitions: tuple[Partition, ...] = ()
    churn: Churn = field(default_factory=Churn)
    # members of role ``user`` that lie: they speak the protocol with their own valid
    # keys and send forged outcomes, planted specs, claims, parent outputs and
    # membership versions, one attack every ``byzantine_every`` seconds each
    byzantine: int = 0
    byzantine_every: float = 0.25
    # "user": the liars keep and run nothing. "keeper": they are executors without an
    # executor ad, so they keep records (honestly: they run the protocol core) and lie
    # about every process they do not keep; they claim nothing (an executor holding a
    # lease reports whatever output it likes, and no protocol can tell)
    byzantine_role: str = "user"


@dataclass(frozen=True)
class Scenario:
    name: str
    colony: Colony
    workload: Workload
    network: Network = field(default_factory=Network)
    faults: Faults = field(default_factory=Faults)
    params: Params = field(default_factory=Params)
    description: str = ""
    max_simulated_seconds: float = 3600.0
    sample_every: float = 5.0  # seconds between the plot's samples
    # liveness: every acknowledged process has ended this long after the last fault
    # (crash, restart, partition, heal, join, revocation; a liar's attacks never stop
    # and do not count); checked when the run lasts that long (see docs/SIMULATOR.md)
    settle_seconds: float = 900.0

    @property
    def nodes(self) -> int:
        """Members at the start: the owner, admins, users, executors and Byzantine members."""
        return 1 + self.colony.admins + self.colony.users + self.executors + self.faults.byzantine

    @property
    def executors(self) -> int:
        return sum(g.count for g in self.colony.executors)


# --- loading ----------------------------------------------------------------------------


def shipped() -> list[str]:
    """Names of the scenarios that ship with colonyp2p."""
    folder = resources.files("colonyp2p.simulations") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str | Path) -> Scenario:
    """A scenario from a TOML file, or a shipped one by name."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.exists():
        folder = resources.files("colonyp2p.simulations") / "scenarios"
        candidate = folder / f"{name_or_path}.toml"
        if not candidate.is_file():
            raise ScenarioError(
                f"no scenario file {str(name_or_path)!r}; shipped scenarios: {', '.join(shipped())}"
            )
        return parse(candidate.read_text(encoding="utf-8"), str(name_or_path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such file") from None
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    return parse(text, path.stem)


def parse(text: str, default_name: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}") from None
    return _scenario(data, default_name)


def _scenario(data: dict[str, Any], default_name: str) -> Scenario:
    t = _Table(data, "")
    colony_t = t.table("colony", required=True)
    groups = tuple(_group(g) for g in colony_t.tables("executors", required=True))
    colony = Colony(
        executors=groups,
        users=colony_t.integer("users", 1, low=0),
        admins=colony_t.integer("admins", 0, low=0),
    )
    colony_t.done()
    workload = _workload(t.table("workload", required=True))
    network = _network(t.table("network"))
    faults = _faults(t.table("faults"))
    params = _params(t.table("params"))
    scenario = Scenario(
        name=t.text("name", default_name),
        description=t.text("description", ""),
        colony=colony,
        workload=workload,
        network=network,
        faults=faults,
        params=params,
        max_simulated_seconds=t.number("max_simulated_seconds", 3600.0, low=1.0),
        sample_every=t.number("sample_every", 5.0, low=0.1),
        settle_seconds=t.number("settle_seconds", 900.0, low=1.0),
    )
    t.done()
    _check_feasible(scenario)
    return scenario


def _group(t: _Table) -> ExecutorGroup:
    g = ExecutorGroup(
        type=t.text("type", required=True),
        count=t.integer("count", required=True, low=1),
        capacity=t.integer("capacity", 1, low=1),
        cores=t.integer("cores", 4, low=0),
        memory=t.size("memory", 4 << 30),
        gpus=t.integer("gpus", 0, low=0),
        gpu_name=t.text("gpu_name", ""),
        location=t.text("location", ""),
        functions=t.texts("functions", ()),
    )
    t.done()
    return g


def _workload(t: _Table) -> Workload:
    functions = []
    for ft in t.tables("functions", required=True):
        functions.append(
            FunctionMix(
                funcname=ft.text("funcname", required=True),
                executortype=ft.text("executortype", ""),
                weight=ft.number("weight", 1.0, low=0.0),
                gpus=ft.integer("gpus", 0, low=0),
            )
        )
        ft.done()
    specs = t.integer("specs", required=True, low=1)
    w = Workload(
        specs=specs,
        functions=tuple(functions),
        workflow_specs=t.integer("workflow_specs", 0, low=0, high=specs),
        workflow_size=t.int_span("workflow_size", (3, 8), low=2),
        submit_window=t.span("submit_window", (0.0, 60.0)),
        run_seconds=t.span("run_seconds", (0.5, 5.0)),
        error_rate=t.fraction("error_rate", 0.0),
        hang_rate=t.fraction("hang_rate", 0.0),
        maxexectime=t.number("maxexectime", 60.0, low=1.0),
        maxretries=t.integer("maxretries", 3, low=0, high=100),
        maxwaittime=t.number("maxwaittime", -1.0),
        priorities=tuple(t.integers("priorities", (0,))),
    )
    t.done()
    if sum(f.weight for f in w.functions) <= 0:
        raise ScenarioError("workload.functions: at least one weight must be positive")
    if w.workflow_specs and w.workflow_specs < w.workflow_size[0]:
        raise ScenarioError(
            f"workload.workflow_specs: {w.workflow_specs} is fewer than one workflow "
            f"({w.workflow_size[0]} specs)"
        )
    if w.run_seconds[1] >= w.maxexectime:
        raise ScenarioError(
            "workload.run_seconds: the longest normal run must be shorter than maxexectime "
            "(use hang_rate for runs that outlast it)"
        )
    return w


def _network(t: _Table) -> Network:
    n = Network(
        latency=t.number("latency", 0.02, low=0.0),
        jitter=t.number("jitter", 0.01, low=0.0),
        loss=t.fraction("loss", 0.0, high=0.5),
        duplicate=t.fraction("duplicate", 0.0, high=0.5),
        gossip_latency=t.number("gossip_latency", 0.1, low=0.0),
        gossip_loss=t.fraction("gossip_loss", 0.0, high=0.9),
    )
    t.done()
    return n


def _faults(t: _Table) -> Faults:
    partitions = []
    for pt in t.tables("partitions"):
        p = Partition(
            at=pt.number("at", required=True, low=0.0),
            heal=pt.number("heal", required=True, low=0.0),
            fraction=pt.fraction("fraction", 0.5, high=0.9),
        )
        pt.done()
        if p.heal <= p.at:
            raise ScenarioError(f"faults.partitions: heal ({p.heal}) must come after at ({p.at})")
        partitions.append(p)
    ct = t.table("churn")
    churn = Churn(
        joins=ct.integer("joins", 0, low=0),
        revokes=ct.integer("revokes", 0, low=0),
        window=ct.span("window", (0.0, 60.0)),
    )
    ct.done()
    f = Faults(
        crash_fraction=t.fraction("crash_fraction", 0.0),
        crash_window=t.span("crash_window", (0.0, 60.0)),
        downtime=t.span("downtime", (5.0, 30.0)),
        clock_skew=t.number("clock_skew", 0.0, low=0.0),
        partitions=tuple(partitions),
        churn=churn,
        byzantine=t.integer("byzantine", 0, low=0),
        byzantine_every=t.number("byzantine_every", 0.25, low=0.01),
        byzantine_role=t.text("byzantine_role", "user"),
    )
    if f.byzantine_role not in BYZANTINE_ROLES:
        raise ScenarioError(
            f"faults.byzantine_role: one of {', '.join(BYZANTINE_ROLES)}, not {f.byzantine_role!r}"
        )
    t.done()
    return f


def _params(t: _Table) -> Params:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Params):
        default = f.default
        if isinstance(default, bool) or not isinstance(default, int | float):
            continue
        if isinstance(default, int):
            values[f.name] = t.integer(f.name, default, low=1)
        else:
            values[f.name] = t.number(f.name, default, low=0.001)
    t.done()
    params = Params(**values)
    if params.renew_every >= params.lease_seconds:
        raise ScenarioError("params.renew_every must be shorter than params.lease_seconds")
    return params


def _check_feasible(s: Scenario) -> None:
    if s.faults.churn.revokes >= s.executors:
        raise ScenarioError("faults.churn.revokes: cannot revoke every executor")
    types = {g.type for g in s.colony.executors}
    for f in s.workload.functions:
        if f.executortype and f.executortype not in types:
            raise ScenarioError(
                f"workload.functions: {f.funcname!r} wants executortype {f.executortype!r}, "
                f"but the colony has only {', '.join(sorted(types))}"
            )
        if not any(
            (not g.functions or f.funcname in g.functions)
            and (not f.executortype or g.type == f.executortype)
            and g.gpus >= f.gpus
            for g in s.colony.executors
        ):
            raise ScenarioError(f"workload.functions: no executor group can run {f.funcname!r}")


class _Table:
    """A TOML table read key by key; ``done`` refuses the keys nobody asked for."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ScenarioError(f"{where or 'the file'}: must be a table")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def _key(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ScenarioError(f"{self._key(key)}: required")
            return None
        return self.data[key]

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ScenarioError(f"{self._key(unknown[0])}: unknown key")

    def table(self, key: str, required: bool = False) -> _Table:
        value = self._get(key, required)
        return _Table({} if value is None else value, self._key(key))

    def tables(self, key: str, required: bool = False) -> list[_Table]:
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list) or (required and not value):
            raise ScenarioError(f"{self._key(key)}: must be a non-empty array of tables")
        return [_Table(v, f"{self._key(key)}[{i}]") for i, v in enumerate(value)]

    def text(self, key: str, default: str = "", required: bool = False) -> str:
        value = self._get(key, required)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ScenarioError(f"{self._key(key)}: must be a string")
        return value

    def texts(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ScenarioError(f"{self._key(key)}: must be a list of strings")
        return tuple(value)

    def integer(
        self,
        key: str,
        default: int = 0,
        required: bool = False,
        low: int | None = None,
        high: int | None = None,
    ) -> int:
        value = self._get(key, required)
        if value is None:
            return default
        if type(value) is not int:
            raise ScenarioError(f"{self._key(key)}: must be an integer")
        self._bounds(key, value, low, high)
        return value

    def integers(self, key: str, default: tuple[int, ...]) -> list[int]:
        value = self._get(key, False)
        if value is None:
            return list(default)
        if not isinstance(value, list) or not value or any(type(v) is not int for v in value):
            raise ScenarioError(f"{self._key(key)}: must be a non-empty list of integers")
        return value

    def number(
        self,
        key: str,
        default: float = 0.0,
        required: bool = False,
        low: float | None = None,
        high: float | None = None,
    ) -> float:
        value = self._get(key, required)
        if value is None:
            return default
        if type(value) not in (int, float):
            raise ScenarioError(f"{self._key(key)}: must be a number")
        self._bounds(key, value, low, high)
        return float(value)

    def fraction(self, key: str, default: float, high: float = 1.0) -> float:
        return self.number(key, default, low=0.0, high=high)

    def size(self, key: str, default: int) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        try:
            return parse_bytes(value, self._key(key))
        except ColonyError as exc:
            raise ScenarioError(str(exc)) from None

    def span(self, key: str, default: tuple[float, float]) -> tuple[float, float]:
        value = self._get(key, False)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(type(v) not in (int, float) or not math.isfinite(v) for v in value)
            or not 0 <= value[0] <= value[1]
        ):
            raise ScenarioError(f"{self._key(key)}: must be [low, high] with 0 <= low <= high")
        return float(value[0]), float(value[1])

    def int_span(self, key: str, default: tuple[int, int], low: int) -> tuple[int, int]:
        value = self._get(key, False)
        if value is None:
            return default
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(type(v) is not int for v in value)
            or not low <= value[0] <= value[1]
        ):
            raise ScenarioError(
                f"{self._key(key)}: must be [low, high] integers with {low} <= low <= high"
            )
        return value[0], value[1]

    def _bounds(self, key: str, value: float, low: float | None, high: float | None) -> None:
        if not math.isfinite(value):
            raise ScenarioError(f"{self._key(key)}: must be a finite number, got {value}")
        if low is not None and value < low:
            raise ScenarioError(f"{self._key(key)}: must be at least {low}, got {value}")
        if high is not None and value > high:
            raise ScenarioError(f"{self._key(key)}: must be at most {high}, got {value}")


# --- writing ----------------------------------------------------------------------------


def to_toml(s: Scenario) -> str:
    """``s`` as a scenario file that ``parse`` reads back equal (every key written, so a
    shrunk scenario says all it is; the shrinker writes what it found this way)."""
    lines = [
        f"name = {_value(s.name)}",
        f"description = {_value(s.description)}",
        f"max_simulated_seconds = {_value(s.max_simulated_seconds)}",
        f"sample_every = {_value(s.sample_every)}",
        f"settle_seconds = {_value(s.settle_seconds)}",
        "",
        "[colony]",
        f"users = {s.colony.users}",
        f"admins = {s.colony.admins}",
    ]
    for g in s.colony.executors:
        lines += ["", "[[colony.executors]]", *_pairs(g)]
    lines += ["", "[workload]", *_pairs(s.workload, skip=("functions",))]
    for f in s.workload.functions:
        lines += ["", "[[workload.functions]]", *_pairs(f)]
    lines += ["", "[network]", *_pairs(s.network)]
    lines += ["", "[faults]", *_pairs(s.faults, skip=("partitions", "churn"))]
    for p in s.faults.partitions:
        lines += ["", "[[faults.partitions]]", *_pairs(p)]
    lines += ["", "[faults.churn]", *_pairs(s.faults.churn)]
    numeric = [
        f.name
        for f in dataclasses.fields(Params)
        if isinstance(f.default, int | float) and not isinstance(f.default, bool)
    ]
    lines += ["", "[params]", *(f"{n} = {_value(getattr(s.params, n))}" for n in numeric)]
    return "\n".join(lines) + "\n"


def _pairs(obj: Any, skip: tuple[str, ...] = ()) -> list[str]:
    return [
        f"{f.name} = {_value(getattr(obj, f.name))}"
        for f in dataclasses.fields(obj)
        if f.name not in skip
    ]


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        # JSON's escapes are TOML's, but for characters past U+FFFF (JSON's surrogate
        # pairs are not TOML) and DEL (TOML escapes it, JSON does not)
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")
