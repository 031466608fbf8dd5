"""Every number in a function spec has a stated range: values inside it are accepted and
survive the codec and ColonyOS JSON unchanged; values outside it (negative, NaN,
infinite, too large) are refused with a ValidationError naming the field, by the model,
the ColonyOS JSON reader, the local API (400), the Python API and the CLI alike."""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cluster import FAST, Node
from hypothesis import assume, given
from hypothesis import strategies as st

from colonyp2p import SyncColony, codec
from colonyp2p.errors import ApiError, ValidationError
from colonyp2p.model.checks import INT64_MAX
from colonyp2p.model.colonyos_json import function_spec_from_colonyos, function_spec_to_colonyos
from colonyp2p.model.spec import (
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MIN_PRIORITY,
    NO_LIMIT,
    Conditions,
    ConflictRule,
    FsSpec,
    FunctionSpec,
    Gpu,
    OnConflicts,
    SnapshotMount,
    SyncDirMount,
)

SPEC_CLASSES = (
    FunctionSpec,
    Conditions,
    Gpu,
    FsSpec,
    SnapshotMount,
    SyncDirMount,
    OnConflicts,
    ConflictRule,
)


@dataclass(frozen=True)
class Range:
    """One numeric field of a spec's classes and what it accepts: [lo, hi] or no_limit."""

    owner: type
    name: str
    lo: int
    hi: int
    is_float: bool = False
    no_limit: int | None = None

    def __str__(self) -> str:
        return f"{self.owner.__name__}.{self.name}"

    @property
    def json_path(self) -> str:
        """Where ColonyOS JSON holds the field (and so what its errors are named)."""
        prefix = {FunctionSpec: "", Conditions: "conditions.", Gpu: "conditions.gpu."}
        return prefix[self.owner] + self.name

    def build(self, value: object) -> object:
        required = {"funcname": "f"} if self.owner is FunctionSpec else {}
        return self.owner(**required, **{self.name: value})

    def contains(self, value: Any) -> bool:
        return bool(value == self.no_limit or self.lo <= value <= self.hi)  # False for NaN


RANGES = [
    Range(FunctionSpec, "priority", MIN_PRIORITY, MAX_PRIORITY),
    Range(FunctionSpec, "maxwaittime", 0, MAX_SECONDS, is_float=True, no_limit=NO_LIMIT),
    Range(FunctionSpec, "maxexectime", 0, MAX_SECONDS, is_float=True, no_limit=NO_LIMIT),
    Range(FunctionSpec, "maxretries", 0, MAX_RETRIES),
    *(
        Range(Conditions, name, 0, INT64_MAX)
        for name in ("nodes", "processes", "processespernode", "cpu", "mem", "storage")
    ),
    Range(Conditions, "walltime", 0, MAX_SECONDS),
    *(Range(Gpu, name, 0, INT64_MAX) for name in ("count", "mem", "nodecount")),
]


def test_every_numeric_field_of_a_spec_has_a_stated_range() -> None:
    numeric = {
        f"{cls.__name__}.{f.name}"
        for cls in SPEC_CLASSES
        for f in dataclasses.fields(cls)
        if typing.get_type_hints(cls)[f.name] in (int, float)
    }
    assert numeric == {str(r) for r in RANGES}


# --- in range: accepted, and the same after the wire and after ColonyOS JSON ----------

amounts = st.integers(0, INT64_MAX)
# -1 and 0 (no limit), whole seconds and fractions, up to and including the maximum
time_limits = (
    st.sampled_from([NO_LIMIT, 0]) | st.integers(0, MAX_SECONDS) | st.floats(0, MAX_SECONDS)
)
in_range_specs = st.builds(
    FunctionSpec,
    funcname=st.just("f"),
    priority=st.integers(MIN_PRIORITY, MAX_PRIORITY),
    maxwaittime=time_limits,
    maxexectime=time_limits,
    maxretries=st.integers(0, MAX_RETRIES),
    conditions=st.builds(
        Conditions,
        nodes=amounts,
        processes=amounts,
        processespernode=amounts,
        cpu=amounts,
        mem=amounts,
        storage=amounts,
        gpu=st.builds(Gpu, count=amounts, mem=amounts, nodecount=amounts),
        walltime=st.integers(0, MAX_SECONDS),
    ),
)


@given(in_range_specs)
def test_in_range_numbers_are_accepted_and_round_trip(spec: FunctionSpec) -> None:
    assert type(spec.maxwaittime) is float and type(spec.maxexectime) is float
    raw = codec.canonical_bytes(spec)
    decoded = codec.from_data(FunctionSpec, codec.loads_canonical(raw))
    assert decoded == spec and codec.canonical_bytes(decoded) == raw
    as_json = json.loads(json.dumps(function_spec_to_colonyos(spec)))
    assert function_spec_from_colonyos(as_json) == spec


def test_colonyos_minus_one_still_loads() -> None:
    """ColonyOS's -1: no time limit, unlimited retries (read as the most the colony
    allows), a count or walltime not set."""
    spec = function_spec_from_colonyos(
        {
            "funcname": "f",
            "maxwaittime": -1,
            "maxexectime": -1,
            "maxretries": -1,
            "conditions": {"nodes": -1, "walltime": -1, "gpu": {"count": -1}},
        }
    )
    assert (spec.maxwaittime, spec.maxexectime, spec.maxretries) == (-1.0, -1.0, MAX_RETRIES)
    assert spec.conditions == Conditions()


# --- out of range: refused, naming the field ---------------------------------------------


def out_of_range(r: Range) -> st.SearchStrategy[Any]:
    """Numbers just or far outside ``r``: ints, and for float fields floats, NaN and
    infinities too (an int field refuses every float as not an integer anyway)."""
    values: st.SearchStrategy[Any] = st.integers(max_value=r.lo - 1)
    values |= st.integers(min_value=r.hi + 1)
    if r.is_float:
        values |= st.floats(max_value=r.lo, exclude_max=True)
        values |= st.floats(min_value=r.hi, exclude_min=True)
        values |= st.sampled_from([math.nan, math.inf, -math.inf, 1e308])
    return values


@pytest.mark.parametrize("r", RANGES, ids=str)
@given(data=st.data())
def test_out_of_range_numbers_are_refused_naming_the_field(r: Range, data: st.DataObject) -> None:
    value = data.draw(out_of_range(r))
    assume(not r.contains(value))  # -0.0 is 0, and -1 may be the field's no-limit value
    with pytest.raises(ValidationError) as exc:
        r.build(value)
    assert exc.value.field == r.name
    assert str(exc.value).startswith(f"{r.name}: must be ")
    if r.no_limit is not None:
        assert f"{r.no_limit} (no limit) or between {r.lo} and {r.hi} seconds" in str(exc.value)


@pytest.mark.parametrize("r", RANGES, ids=str)
@given(data=st.data())
def test_out_of_range_numbers_in_colonyos_json_are_refused_naming_the_field(
    r: Range, data: st.DataObject
) -> None:
    value = data.draw(out_of_range(r) | st.floats(allow_nan=True, allow_infinity=True))
    # ColonyOS's -1 ("not set", "no limit", "unlimited") is read, not refused (see above)
    assume(not r.contains(value) and value != -1)
    # conditions.cpu is cores in ColonyOS JSON numbers: write millicores to mean the same
    if r.name == "cpu" and type(value) is int:
        value = f"{value}m"
    data_json: dict[str, Any] = {"funcname": "f"}
    *parents, leaf = r.json_path.split(".")
    at = data_json
    for key in parents:
        at = at.setdefault(key, {})
    at[leaf] = value
    with pytest.raises(ValidationError) as exc:
        function_spec_from_colonyos(data_json)
    assert exc.value.field == r.json_path
    assert str(exc.value).startswith(f"{r.json_path}: ")


def test_the_messages_say_what_is_allowed() -> None:
    def refusal(**fields: Any) -> str:
        with pytest.raises(ValidationError) as exc:
            function_spec_from_colonyos({"funcname": "f", **fields})
        return str(exc.value)

    limit = f"must be -1 (no limit) or between 0 and {MAX_SECONDS} seconds"
    assert refusal(maxexectime=-5) == f"maxexectime: {limit}, got -5"
    assert refusal(maxexectime=1e308) == f"maxexectime: {limit}, got 1e+308"
    assert refusal(maxwaittime=10**400).startswith(f"maxwaittime: {limit}, got 10000000...")
    assert refusal(maxretries=-2) == (
        f"maxretries: must be -1 (no limit) or between 0 and {MAX_RETRIES}, got -2"
    )
    assert refusal(conditions={"walltime": MAX_SECONDS + 1}) == (
        f"conditions.walltime: must be between 0 and {MAX_SECONDS} seconds, got {MAX_SECONDS + 1}"
    )
    assert refusal(conditions={"gpu": {"nodecount": 2**63}}) == (
        f"conditions.gpu.nodecount: must be between 0 and {INT64_MAX}, got {2**63}"
    )


# --- through a running node: the local API, the Python API and the CLI ---------------------

BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({"funcname": "echo", "maxexectime": -5}, "maxexectime"),
    ({"funcname": "echo", "maxexectime": 1e308}, "maxexectime"),
    ({"funcname": "echo", "maxwaittime": -0.5}, "maxwaittime"),
    ({"funcname": "echo", "maxretries": -2}, "maxretries"),
    ({"funcname": "echo", "maxretries": MAX_RETRIES + 1}, "maxretries"),
    ({"funcname": "echo", "conditions": {"walltime": -5}}, "conditions.walltime"),
]


@pytest.mark.slow
def test_a_node_refuses_out_of_range_specs_and_stores_nothing(tmp_path: Path) -> None:
    colony = SyncColony.embedded(tmp_path / "node", colony="lab", params=FAST)
    with colony:
        # the local API, through the Python API's client: 400 with the model's message
        for body, field in BAD_SPECS:
            with pytest.raises(ApiError) as caught:
                colony.submit(body)
            assert (caught.value.status, caught.value.remote_code) == (400, "invalid")
            assert str(caught.value).startswith(f"{field}: must be "), caught.value
        with pytest.raises(ApiError, match=r"^specs\[1\]: maxexectime: must be "):
            colony.submit_many([{"funcname": "echo"}, BAD_SPECS[0][0]])
        wf = {"functionspecs": [{**BAD_SPECS[1][0], "nodename": "a"}]}
        with pytest.raises(ApiError, match=r"^functionspecs\[0\]\.maxexectime: must be "):
            colony.submit_workflow(wf)
        # the Python API refuses what it builds itself before sending anything
        with pytest.raises(ValidationError, match=r"^walltime: must be "):
            colony.submit("echo", walltime=-5)

        # the CLI: one line naming the field, a non-zero exit
        spec_file = tmp_path / "bad.json"
        spec_file.write_text(json.dumps(BAD_SPECS[0][0]))
        done = Node(tmp_path, "node").cli("submit", str(spec_file), check=False)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode != 0
        assert errors == [
            f"error: maxexectime: must be -1 (no limit) or between 0 and {MAX_SECONDS} seconds, "
            "got -5"
        ], done.stderr

        # nothing was stored, nothing started
        assert colony.processes() == []
        assert colony.status()["records"] == 0
        # ColonyOS's own -1 (unlimited retries) is no mistake: it is submitted
        unlimited = {"funcname": "echo", "maxretries": -1, "conditions": {"executortype": "x"}}
        accepted = colony.submit(unlimited)
        assert [p["pid"] for p in colony.processes()] == [accepted.pid]
