"""ColonyOS JSON files as users bring them, and the resource units inside them."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonyp2p.errors import CyclicWorkflow, UnknownDependency, ValidationError
from colonyp2p.model.colonyos_json import (
    function_spec_from_colonyos,
    function_spec_to_colonyos,
    load_spec_file,
    load_workflow_file,
    workflow_from_colonyos,
    workflow_to_colonyos,
)
from colonyp2p.model.spec import (
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MIN_PRIORITY,
    Conditions,
    ConflictRule,
    FsSpec,
    FunctionSpec,
    Gpu,
    OnConflicts,
    SnapshotMount,
    SyncDirMount,
)
from colonyp2p.model.units import (
    format_bytes,
    format_cpu,
    parse_bytes,
    parse_cpu,
    parse_seconds,
)
from colonyp2p.model.workflow import WorkflowSpec

DATA = Path(__file__).parent / "data" / "colonyos"
GI = 1 << 30


# --- the example files ---------------------------------------------------------------


def test_spec_file_with_conditions_and_fs() -> None:
    ignored: list[str] = []
    spec = load_spec_file(DATA / "spec_conditions_fs.json", ignored)
    assert ignored == ["channels"]
    assert spec.funcname == "execute" and spec.nodename == "train"
    assert spec.args == ("python3", "/cfs/ml/src/train.py", "--epochs", 10)
    assert spec.kwargs["args"] == ["--lr", 0.001]
    assert (spec.maxwaittime, spec.maxexectime, spec.maxretries) == (-1.0, 3600.0, 3)
    c = spec.conditions
    assert (c.executortype, c.executornames, c.location) == ("hpc", (), "lumi")
    assert (c.nodes, c.processes, c.processespernode) == (2, 8, 4)
    assert (c.cpu, c.mem, c.storage, c.walltime) == (4000, 64 * GI, 0, 7200)
    assert c.gpu == Gpu(name="nvidia-a100", count=4, mem=40 * GI, nodecount=2)
    assert spec.fs.mount == "/cfs/ml"
    assert spec.fs.snapshots == (SnapshotMount(label="/ml/src", dir="src"),)
    assert spec.fs.dirs[0] == SyncDirMount(
        label="/ml/data",
        dir="data",
        keepfiles=True,
        onconflicts=OnConflicts(onclose=ConflictRule(keeplocal=True)),
    )
    assert spec.env == {"TF_CPP_MIN_LOG_LEVEL": "2", "EPOCHS": "10"}


def test_fan_out_fan_in_workflow_file() -> None:
    wf = load_workflow_file(DATA / "workflow_fanout.json")
    assert wf.colonyname == "dev"
    assert [s.nodename for s in wf.order()] == ["split", "work1", "work2", "work3", "merge"]
    assert wf.children_of("split") == ("work1", "work2", "work3")
    assert wf.parents_of("merge") == ("work1", "work2", "work3")
    assert wf.spec("work3").conditions.cpu == 2000
    assert wf.spec("work1").conditions.mem == 512 << 20
    assert wf.spec("merge").fs.dirs[0].dir == "output"


def test_bare_list_workflow_file_takes_the_colony_from_its_specs() -> None:
    wf = load_workflow_file(DATA / "workflow_bare_list.json")
    assert wf.colonyname == "dev"
    assert wf.parents_of("world") == ("hello",)


def test_cyclic_workflow_file() -> None:
    with pytest.raises(CyclicWorkflow) as exc:
        load_workflow_file(DATA / "workflow_cyclic.json")
    for name in ("clean", "analyse", "report"):
        assert name in str(exc.value)
    assert "fetch" not in str(exc.value).split(": ")[-1]
    assert any("workflow_cyclic.json" in note for note in exc.value.__notes__)


def test_unknown_dependency_file() -> None:
    with pytest.raises(UnknownDependency) as exc:
        load_workflow_file(DATA / "workflow_unknown_dependency.json")
    assert exc.value.field == "functionspecs[1].conditions.dependencies[1]"
    assert "'clean'" in str(exc.value)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        load_spec_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"funcname": "x",\n  oops}')
    with pytest.raises(ValidationError, match="line 2"):
        load_spec_file(bad)
    with pytest.raises(ValidationError, match="workflow"):
        load_spec_file(DATA / "workflow_fanout.json")


# --- forgiving and strict reading ---------------------------------------------------------


def minimal(**changes: Any) -> dict[str, Any]:
    return {"funcname": "echo", **changes}


def test_nulls_empties_and_notset_mean_unset() -> None:
    data = minimal(
        args=None,
        kwargs=None,
        env=None,
        fs=None,
        maxwaittime=None,
        conditions={
            "executornames": None,
            "dependencies": None,
            "cpu": "",
            "mem": None,
            "gpu": None,
            "nodes": -1,
            "walltime": -1,
            "colonyname": "dev",
        },
    )
    assert function_spec_from_colonyos(data) == FunctionSpec(funcname="echo")


def test_colonyos_spellings() -> None:
    snap = {"label": "ml/src", "dir": "//src", "keepsnaphot": True}
    spec = function_spec_from_colonyos(
        minimal(fs={"snapshots": [snap]}, conditions={"location": "lab", "walltime": "60"})
    )
    assert spec.fs.snapshots[0] == SnapshotMount(label="/ml/src", dir="src", keepsnapshot=True)
    assert spec.conditions.location == "lab"
    assert spec.conditions.walltime == 60
    snap2 = {"label": "/x", "dir": "x", "keepsnapshot": True}
    assert (
        function_spec_from_colonyos(minimal(fs={"snapshots": [snap2]})).fs.snapshots[0].keepsnapshot
    )


def test_unlimited_retries() -> None:
    assert function_spec_from_colonyos(minimal(maxretries=-1)).maxretries == MAX_RETRIES


def test_unknown_keys_are_ignored_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    data = minimal(newfield=1, conditions={"future": True, "gpu": {"vendor": "x"}})
    ignored: list[str] = []
    function_spec_from_colonyos(data, ignored)
    assert ignored == ["newfield", "conditions.future", "conditions.gpu.vendor"]
    with caplog.at_level("WARNING"):
        function_spec_from_colonyos(data)
    assert "conditions.future" in caplog.text


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(funcname=""), "funcname"),
        ({}, "funcname"),
        (minimal(funcname=3), "funcname"),
        (minimal(args={"a": 1}), "args"),
        (minimal(args=[1, math.nan]), "args[1]"),
        (minimal(kwargs=[]), "kwargs"),
        (minimal(priority="high"), "priority"),
        (minimal(maxretries=-2.5), "maxretries"),
        (minimal(env={"A": 1}), "env.A"),
        (minimal(conditions={"mem": "lots"}), "conditions.mem"),
        (minimal(conditions={"cpu": "1.5m"}), "conditions.cpu"),
        (minimal(conditions={"cpu": True}), "conditions.cpu"),
        (minimal(conditions={"nodes": -3}), "conditions.nodes"),
        (minimal(conditions={"walltime": "1h"}), "conditions.walltime"),
        (minimal(conditions={"gpu": {"mem": "big"}}), "conditions.gpu.mem"),
        (minimal(conditions={"gpu": {"count": -2}}), "conditions.gpu.count"),
        (minimal(conditions={"executornames": [1]}), "conditions.executornames[0]"),
        (minimal(conditions={"dependencies": ["a", "a"]}), "conditions.dependencies[1]"),
        (minimal(conditions=[]), "conditions"),
        (minimal(fs={"dirs": [{"label": "/l", "dir": "a/../../etc"}]}), "fs.dirs[0].dir"),
        (minimal(fs={"dirs": [{"label": "/l", "dir": "/"}]}), "fs.dirs[0].dir"),
        (minimal(fs={"dirs": [{"label": "", "dir": "a"}]}), "fs.dirs[0].label"),
        (minimal(fs={"snapshots": [{"label": "/l"}]}), "fs.snapshots[0].dir"),
        (
            minimal(fs={"dirs": [{"label": "/l", "dir": "a", "keepfiles": "yes"}]}),
            "fs.dirs[0].keepfiles",
        ),
        (
            minimal(fs={"dirs": [{"label": "/l", "dir": "a", "onconflicts": {"onstart": 1}}]}),
            "fs.dirs[0].onconflicts.onstart",
        ),
    ],
)
def test_errors_carry_the_json_path(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        function_spec_from_colonyos(data)
    assert exc.value.field == field


def test_workflow_errors_carry_the_json_path() -> None:
    good = minimal(nodename="a")
    with pytest.raises(ValidationError) as exc:
        workflow_from_colonyos(
            {"functionspecs": [good, minimal(nodename="b", conditions={"mem": "x"})]}
        )
    assert exc.value.field == "functionspecs[1].conditions.mem"
    with pytest.raises(ValidationError) as exc:
        workflow_from_colonyos([good, minimal(nodename="a")])
    assert exc.value.field == "[1].nodename"
    with pytest.raises(UnknownDependency) as exc2:
        workflow_from_colonyos([minimal(nodename="b", conditions={"dependencies": ["z"]})])
    assert exc2.value.field == "[0].conditions.dependencies[0]"
    with pytest.raises(ValidationError) as exc:
        workflow_from_colonyos({"colonyname": "dev"})
    assert exc.value.field == "functionspecs"


def test_written_json_is_what_colonyos_writes() -> None:
    spec = load_spec_file(DATA / "spec_conditions_fs.json")
    data = function_spec_to_colonyos(spec, "ml-colony")
    original = json.loads((DATA / "spec_conditions_fs.json").read_text())
    expected = copy.deepcopy(original)
    del expected["channels"]
    expected["conditions"]["executornames"] = []
    expected["conditions"]["cpu"] = "4"
    expected["fs"]["snapshots"][0]["keepsnapshot"] = expected["fs"]["snapshots"][0].pop(
        "keepsnaphot"
    )
    assert data == expected
    json.dumps(data)  # plain JSON


# --- round trips -------------------------------------------------------------------------

texts = st.text(max_size=12)
names = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)


def _nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
        max_leaves=12,
    )


json_values = _nested(json_leaves | st.binary(max_size=8))  # CBOR carries bytes too
text_values = _nested(json_leaves)  # what a JSON text can hold
segments = st.from_regex(r"[A-Za-z0-9_{}-][A-Za-z0-9_.{}-]{0,8}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
rel_dirs = st.lists(segments, min_size=1, max_size=3).map("/".join)
labels = st.builds(lambda s: "/" + s, texts)
sizes = st.integers(0, 2**62)
counts = st.integers(0, 10**6)
env_keys = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)

gpus = st.builds(Gpu, name=texts, count=counts, mem=sizes, nodecount=counts)
conditions = st.builds(
    Conditions,
    executortype=texts,
    executornames=st.lists(texts, max_size=3).map(tuple),
    location=texts,
    nodes=counts,
    processes=counts,
    processespernode=counts,
    cpu=st.integers(0, 10**9),
    mem=sizes,
    storage=sizes,
    gpu=gpus,
    walltime=st.integers(0, MAX_SECONDS),
    dependencies=st.lists(names, unique=True, max_size=3).map(tuple),
)
rules = st.builds(ConflictRule, keeplocal=st.booleans())
fs_specs = st.builds(
    FsSpec,
    mount=texts,
    snapshots=st.lists(
        st.builds(
            SnapshotMount,
            label=labels,
            dir=rel_dirs,
            snapshotid=texts,
            keepfiles=st.booleans(),
            keepsnapshot=st.booleans(),
        ),
        max_size=2,
    ).map(tuple),
    dirs=st.lists(
        st.builds(
            SyncDirMount,
            label=labels,
            dir=rel_dirs,
            keepfiles=st.booleans(),
            onconflicts=st.builds(OnConflicts, onstart=rules, onclose=rules),
        ),
        max_size=2,
    ).map(tuple),
)


def _function_specs(values: st.SearchStrategy[Any]) -> st.SearchStrategy[FunctionSpec]:
    return st.builds(
        FunctionSpec,
        funcname=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:-]{0,20}", fullmatch=True),
        nodename=texts,
        args=st.lists(values, max_size=4).map(tuple),
        kwargs=st.dictionaries(texts, values, max_size=4),
        priority=st.integers(MIN_PRIORITY, MAX_PRIORITY),
        maxwaittime=st.just(-1.0) | st.floats(0, MAX_SECONDS),
        maxexectime=st.integers(-1, 10**6).map(float),
        maxretries=st.integers(0, MAX_RETRIES),
        conditions=conditions,
        label=texts,
        env=st.dictionaries(env_keys, st.text(st.characters(exclude_characters="\0"), max_size=8)),
        fs=fs_specs,
    )


function_specs = _function_specs(json_values)
# bytes are no JSON, and ColonyOS files never hold them: specs a JSON text can carry
json_specs = _function_specs(text_values)


@given(function_specs)
def test_function_spec_round_trip(spec: FunctionSpec) -> None:
    assert function_spec_from_colonyos(function_spec_to_colonyos(spec)) == spec


@given(json_specs)
def test_round_trip_through_json_text(spec: FunctionSpec) -> None:
    assert (
        function_spec_from_colonyos(json.loads(json.dumps(function_spec_to_colonyos(spec)))) == spec
    )


@given(st.lists(function_specs, min_size=1, max_size=4), texts)
def test_workflow_round_trip(specs: list[FunctionSpec], colonyname: str) -> None:
    # a chain: each spec depends on the one before
    chained = []
    for i, spec in enumerate(specs):
        deps = (f"n{i - 1}",) if i else ()
        conditions = Conditions(**{**_fields(spec.conditions), "dependencies": deps})
        chained.append(
            FunctionSpec(**{**_fields(spec), "nodename": f"n{i}", "conditions": conditions})
        )
    wf = WorkflowSpec(colonyname, tuple(chained))
    assert workflow_from_colonyos(workflow_to_colonyos(wf)) == wf


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


# --- units ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("10Gi", 10 * GI),
        ("512Mi", 512 << 20),
        ("1G", 10**9),
        ("100M", 10**8),
        ("1000", 1000),
        ("1Ti", 1 << 40),
        ("1Ki", 1024),
        ("1k", 1000),
        ("1K", 1000),
        ("1.5Gi", 3 * (1 << 29)),
        ("10GB", 10**10),
        ("2MiB", 2 << 20),
        (" 4Gi ", 4 * GI),
        ("", 0),
        (2048, 2048),
    ],
)
def test_parse_bytes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize(
    "text",
    ["lots", "10 Gib", "-1Gi", "1.5", "0.1k1", "1gi", "Gi", "1e9", "1m", "1.0000001Ki", "9Ei"],
)
def test_parse_bytes_refuses_garbage(text: str) -> None:
    with pytest.raises(ValidationError) as exc:
        parse_bytes(text, "conditions.mem")
    assert exc.value.field == "conditions.mem"


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("500m", 500), ("2", 2000), ("0.5", 500), ("1000m", 1000), ("", 0), (4, 4000), ("1.25", 1250)],
)
def test_parse_cpu(text: str | int, millicores: int) -> None:
    assert parse_cpu(text) == millicores


@pytest.mark.parametrize("text", ["fast", "1.5m", "-2", "2 cores", "0.0001", "m", "2k"])
def test_parse_cpu_refuses_garbage(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_cpu(text)


def test_parse_seconds() -> None:
    assert parse_seconds(60) == 60
    assert parse_seconds("60") == 60
    assert parse_seconds(60.0) == 60
    assert parse_seconds(None) == 0
    assert parse_seconds(-5) == -5  # the range is Conditions.walltime's (tests/test_spec_limits.py)
    for bad in ("-1", 1.5, "1h", True, [1]):
        with pytest.raises(ValidationError):
            parse_seconds(bad)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (1024, "1Ki"),
        (10 * GI, "10Gi"),
        (10**9, "1G"),
        (1000, "1k"),
        (1500, "1500"),
        (1024000, "1024k"),  # shorter than 1000Ki
        (10485760 * 10**9, "9765625Gi"),  # a tie with 10485760G: binary wins
        (3 * (1 << 29), "1536Mi"),
        (1 << 60, "1Ei"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_format_cpu() -> None:
    assert format_cpu(500) == "500m"
    assert format_cpu(2000) == "2"
    assert format_cpu(0) == "0"
    assert format_cpu(1250) == "1250m"


@given(st.integers(0, 2**63 - 1))
def test_bytes_round_trip_and_shortest(size: int) -> None:
    text = format_bytes(size)
    assert parse_bytes(text) == size
    assert len(text) <= len(str(size))
    for suffix, factor in (("Ki", 1 << 10), ("Gi", 1 << 30), ("k", 1000), ("G", 10**9)):
        if size and size % factor == 0:
            assert len(text) <= len(f"{size // factor}{suffix}")


@given(st.integers(0, 10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T", ""]))
def test_bytes_parse_written_values(number: int, suffix: str) -> None:
    factor = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6}
    factor |= {"G": 10**9, "T": 10**12, "": 1}
    assert parse_bytes(f"{number}{suffix}") == number * factor[suffix]


@given(st.integers(0, 10**15))
def test_cpu_round_trip(millicores: int) -> None:
    assert parse_cpu(format_cpu(millicores)) == millicores


@given(st.text(max_size=8))
def test_units_never_crash_on_text(text: str) -> None:
    for parse in (parse_bytes, parse_cpu):
        try:
            value = parse(text)
        except ValidationError:
            continue
        assert value >= 0
