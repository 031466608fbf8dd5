"""Scenario files: the shipped ones load, defaults apply, and every bad input names its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.core.params import Params
from colonyp2p.errors import ScenarioError
from colonyp2p.simulations.scenario import (
    Colony,
    ExecutorGroup,
    Faults,
    FunctionMix,
    Network,
    Scenario,
    Workload,
    load,
    parse,
    shipped,
)


def toml(
    *,
    top: str = "",
    colony: str = "",
    group: str = 'type = "cpu"\ncount = 3',
    workload: str = "specs = 20",
    function: str = 'funcname = "work"',
    extra: str = "",
) -> str:
    """A small valid scenario, with lines added to (or replacing) each of its sections."""
    return f"""{top}

[colony]
{colony}

[[colony.executors]]
{group}

[workload]
{workload}

[[workload.functions]]
{function}

{extra}
"""


MINIMAL = toml()


# --- shipped scenarios ------------------------------------------------------------------


def test_shipped_lists_the_bundled_scenarios() -> None:
    names = shipped()
    assert {"demo", "continuum-1000", "scaling"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", shipped())
def test_every_shipped_scenario_loads(name: str) -> None:
    s = load(name)
    assert s.name == name
    assert s.description
    assert s.executors >= 1
    assert s.nodes == 1 + s.colony.admins + s.colony.users + s.executors + s.faults.byzantine
    assert 0 <= s.workload.workflow_specs <= s.workload.specs
    assert s.workload.run_seconds[1] < s.workload.maxexectime
    assert s.params.renew_every < s.params.lease_seconds
    types = {g.type for g in s.colony.executors}
    assert all(f.executortype in types for f in s.workload.functions if f.executortype)
    for p in s.faults.partitions:
        assert p.at < p.heal


def test_continuum_1000_is_a_thousand_members() -> None:
    s = load("continuum-1000")
    assert s.nodes == 1000
    assert s.executors >= 800
    assert s.workload.specs == 10_000
    assert s.workload.workflow_specs >= 1000
    assert s.network.loss > 0
    assert s.faults.crash_fraction > 0
    assert len(s.faults.partitions) >= 1
    slurm = next(g for g in s.colony.executors if g.type == "slurm")
    assert slurm.gpus == 4
    assert slurm.memory == 512 << 30


def test_demo_is_small_enough_for_the_readme() -> None:
    s = load("demo")
    assert s.nodes == 60
    assert s.workload.specs == 400


def test_load_reads_a_path_and_names_it_after_the_file(tmp_path: Path) -> None:
    path = tmp_path / "my-colony.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    assert load(path).name == "my-colony"
    assert load(str(path)).name == "my-colony"


def test_load_reads_an_existing_file_without_the_toml_suffix(tmp_path: Path) -> None:
    path = tmp_path / "other.txt"
    path.write_text(toml(top='name = "named"'), encoding="utf-8")
    assert load(path).name == "named"


# --- parse: defaults --------------------------------------------------------------------


def test_minimal_scenario_gets_the_documented_defaults() -> None:
    s = parse(MINIMAL)
    assert s == Scenario(
        name="scenario",
        colony=Colony(executors=(ExecutorGroup(type="cpu", count=3),)),
        workload=Workload(specs=20, functions=(FunctionMix(funcname="work"),)),
    )
    assert s.description == ""
    assert s.max_simulated_seconds == 3600.0
    assert s.sample_every == 5.0
    assert s.network == Network()
    assert s.faults == Faults()
    assert s.params == Params()
    assert s.colony.users == 1
    assert s.colony.admins == 0
    g = s.colony.executors[0]
    assert (g.capacity, g.cores, g.memory, g.gpus, g.gpu_name, g.location, g.functions) == (
        1,
        4,
        4 << 30,
        0,
        "",
        "",
        (),
    )
    w = s.workload
    assert w.workflow_specs == 0
    assert w.workflow_size == (3, 8)
    assert w.submit_window == (0.0, 60.0)
    assert w.run_seconds == (0.5, 5.0)
    assert (w.error_rate, w.hang_rate) == (0.0, 0.0)
    assert w.maxexectime == 60.0
    assert w.maxretries == 3
    assert w.maxwaittime == -1.0
    assert w.priorities == (0,)
    assert w.functions[0] == FunctionMix("work", executortype="", weight=1.0, gpus=0)
    assert s.nodes == 1 + 0 + 1 + 3
    assert s.executors == 3


def test_parse_uses_the_default_name_unless_the_file_names_itself() -> None:
    assert parse(MINIMAL, "given").name == "given"
    assert parse(toml(top='name = "own"'), "given").name == "own"


def test_parse_reads_every_section() -> None:
    text = toml(
        top='name = "full"\ndescription = "d"\nmax_simulated_seconds = 100\nsample_every = 0.5',
        colony="users = 2\nadmins = 1",
        group=(
            'type = "gpu"\ncount = 2\ncapacity = 4\ncores = 64\nmemory = "2Gi"\ngpus = 2\n'
            'gpu_name = "a100"\nlocation = "hpc"\nfunctions = ["train"]'
        ),
        workload=(
            "specs = 40\nworkflow_specs = 9\nworkflow_size = [3, 4]\nsubmit_window = [1, 2]\n"
            "run_seconds = [0.1, 0.2]\nerror_rate = 0.1\nhang_rate = 0.01\nmaxexectime = 5\n"
            "maxretries = 1\nmaxwaittime = 30\npriorities = [0, 5]"
        ),
        function='funcname = "train"\nexecutortype = "gpu"\nweight = 2\ngpus = 1',
        extra=(
            "[network]\nlatency = 0.1\njitter = 0\nloss = 0.2\nduplicate = 0.1\n"
            "gossip_latency = 1\ngossip_loss = 0.3\n"
            "[faults]\ncrash_fraction = 0.5\ncrash_window = [1, 9]\ndowntime = [2, 3]\n"
            "clock_skew = 0.25\n"
            "[[faults.partitions]]\nat = 10\nheal = 20\nfraction = 0.25\n"
            "[faults.churn]\njoins = 3\nrevokes = 1\nwindow = [5, 6]\n"
            "[params]\nkeepers = 3\nlease_seconds = 20\nrenew_every = 5\n"
        ),
    )
    s = parse(text)
    assert (s.name, s.description, s.max_simulated_seconds, s.sample_every) == (
        "full",
        "d",
        100.0,
        0.5,
    )
    assert (s.colony.users, s.colony.admins) == (2, 1)
    assert s.colony.executors[0] == ExecutorGroup(
        "gpu", 2, 4, 64, 2 << 30, 2, "a100", "hpc", ("train",)
    )
    assert s.workload == Workload(
        specs=40,
        functions=(FunctionMix("train", "gpu", 2.0, 1),),
        workflow_specs=9,
        workflow_size=(3, 4),
        submit_window=(1.0, 2.0),
        run_seconds=(0.1, 0.2),
        error_rate=0.1,
        hang_rate=0.01,
        maxexectime=5.0,
        maxretries=1,
        maxwaittime=30.0,
        priorities=(0, 5),
    )
    assert s.network == Network(0.1, 0.0, 0.2, 0.1, 1.0, 0.3)
    f = s.faults
    assert (f.crash_fraction, f.crash_window, f.downtime, f.clock_skew) == (
        0.5,
        (1.0, 9.0),
        (2.0, 3.0),
        0.25,
    )
    assert len(f.partitions) == 1
    assert (f.partitions[0].at, f.partitions[0].heal, f.partitions[0].fraction) == (10, 20, 0.25)
    assert (f.churn.joins, f.churn.revokes, f.churn.window) == (3, 1, (5.0, 6.0))
    assert s.params == Params(keepers=3, lease_seconds=20.0, renew_every=5.0)
    assert s.nodes == 1 + 1 + 2 + 2


# --- parse: bad input -------------------------------------------------------------------

BAD = [
    # pytest.param(scenario text, text the error must contain, id=...)
    pytest.param("[colony\n", "not valid TOML", id="invalid-toml"),
    pytest.param(toml(workload="specs = 1\nspecs = 2"), "not valid TOML", id="duplicate-key"),
    pytest.param(toml(top="bogus = 1"), "bogus: unknown key", id="unknown-top-level"),
    pytest.param(
        toml(extra="[network]\nlossy = 0.1"), "network.lossy: unknown key", id="unknown-network"
    ),
    pytest.param(toml(colony="userz = 2"), "colony.userz: unknown key", id="unknown-colony"),
    pytest.param(
        toml(group='type = "a"\ncount = 1\ncolour = "red"'),
        "colony.executors[0].colour",
        id="unknown-group",
    ),
    pytest.param(
        toml(function='funcname = "f"\nwieght = 2'),
        "workload.functions[0].wieght",
        id="unknown-function",
    ),
    pytest.param(
        toml(workload="specs = 2\nspec = 3"), "workload.spec: unknown key", id="unknown-workload"
    ),
    pytest.param(
        toml(extra="[faults.churn]\nspeed = 1"),
        "faults.churn.speed: unknown key",
        id="unknown-churn",
    ),
    pytest.param(
        toml(extra="[[faults.partitions]]\nat = 1\nheal = 2\nsize = 3"),
        "faults.partitions[0].size",
        id="unknown-partition",
    ),
    pytest.param(
        toml(extra="[params]\nlease = 3"), "params.lease: unknown key", id="unknown-param"
    ),
    pytest.param(toml(extra="[chaos]\nmonkeys = 1"), "chaos: unknown key", id="unknown-section"),
    pytest.param(
        toml(workload='specs = "many"'), "workload.specs: must be an integer", id="specs-string"
    ),
    pytest.param(
        toml(workload="specs = 2.5"), "workload.specs: must be an integer", id="specs-float"
    ),
    pytest.param(
        toml(group='type = "a"\ncount = true'),
        "colony.executors[0].count: must be an integer",
        id="count-bool",
    ),
    pytest.param(
        toml(extra='[network]\nloss = "some"'), "network.loss: must be a number", id="loss-string"
    ),
    pytest.param(
        toml(group="type = 3\ncount = 1"),
        "colony.executors[0].type: must be a string",
        id="type-not-string",
    ),
    pytest.param(
        toml(group='type = "a"\ncount = 1\nfunctions = [1]'),
        "colony.executors[0].functions",
        id="functions-not-strings",
    ),
    pytest.param(
        toml(workload="specs = 2\npriorities = []"), "workload.priorities", id="priorities-empty"
    ),
    pytest.param(
        toml(group='type = "a"\ncount = 1\nmemory = "lots"'),
        "colony.executors[0].memory",
        id="memory-not-size",
    ),
    pytest.param(
        "colony = 3\n[workload]\nspecs = 1", "colony: must be a table", id="colony-not-table"
    ),
    pytest.param(
        '[colony]\n[colony.executors]\ntype = "a"',
        "colony.executors: must be a non-empty array",
        id="executors-not-array",
    ),
    pytest.param(
        toml(colony="executors = []").replace("[[colony.executors]]", "[[x]]"),
        "colony.executors",
        id="executors-empty",
    ),
    pytest.param(
        toml(extra="[network]\nloss = 0.9"), "network.loss: must be at most 0.5", id="loss-too-high"
    ),
    pytest.param(
        toml(extra="[network]\nloss = -0.1"), "network.loss: must be at least 0", id="loss-negative"
    ),
    pytest.param(
        toml(extra="[faults]\ncrash_fraction = 2"),
        "faults.crash_fraction: must be at most 1",
        id="crash-fraction-2",
    ),
    pytest.param(
        toml(group='type = "a"\ncount = 0'),
        "colony.executors[0].count: must be at least 1",
        id="count-zero",
    ),
    pytest.param(toml(workload="specs = 0"), "workload.specs: must be at least 1", id="specs-zero"),
    pytest.param(
        toml(colony="users = -1"), "colony.users: must be at least 0", id="users-negative"
    ),
    pytest.param(
        toml(workload="specs = 2\nmaxretries = 101"),
        "workload.maxretries: must be at most 100",
        id="maxretries-huge",
    ),
    pytest.param(
        toml(workload="specs = 5\nworkflow_specs = 6"),
        "workload.workflow_specs: must be at most 5",
        id="workflow-specs-over-specs",
    ),
    pytest.param(
        toml(workload="specs = 5\nworkflow_specs = 2"),
        "workload.workflow_specs",
        id="workflow-smaller-than-one",
    ),
    pytest.param(
        toml(workload="specs = 5\nworkflow_size = [1, 3]"),
        "workload.workflow_size",
        id="workflow-size-1",
    ),
    pytest.param(
        toml(workload="specs = 5\nsubmit_window = [5, 1]"),
        "workload.submit_window",
        id="window-backwards",
    ),
    pytest.param(
        toml(workload="specs = 5\nsubmit_window = [0, 1, 2]"),
        "workload.submit_window",
        id="window-three",
    ),
    pytest.param(
        toml(extra="[faults]\ndowntime = [-1, 2]"), "faults.downtime", id="window-negative"
    ),
    pytest.param(
        toml(top="sample_every = 0.01"),
        "sample_every: must be at least 0.1",
        id="sample-every-tiny",
    ),
    pytest.param(
        '[workload]\nspecs = 1\n[[workload.functions]]\nfuncname = "f"',
        "colony: required",
        id="no-colony",
    ),
    pytest.param(
        toml().replace("[[colony.executors]]", "[[x]]"),
        "colony.executors: required",
        id="no-executors",
    ),
    pytest.param(toml(group="count = 1"), "colony.executors[0].type: required", id="no-group-type"),
    pytest.param(
        toml(group='type = "a"'), "colony.executors[0].count: required", id="no-group-count"
    ),
    pytest.param(
        '[colony]\n[[colony.executors]]\ntype = "a"\ncount = 1',
        "workload: required",
        id="no-workload",
    ),
    pytest.param(toml(workload=""), "workload.specs: required", id="no-specs"),
    pytest.param(
        toml().replace("[[workload.functions]]", "[[y]]"),
        "workload.functions: required",
        id="no-functions",
    ),
    pytest.param(
        toml(function="weight = 1"), "workload.functions[0].funcname: required", id="no-funcname"
    ),
    pytest.param(
        toml(function='funcname = "f"\nweight = 0'), "workload.functions", id="weights-zero"
    ),
    pytest.param(
        toml(extra="[[faults.partitions]]\nat = 30\nheal = 10"),
        "faults.partitions: heal",
        id="partition-heal-before-at",
    ),
    pytest.param(
        toml(extra="[[faults.partitions]]\nat = 10\nheal = 10"),
        "faults.partitions: heal",
        id="partition-heal-equals-at",
    ),
    pytest.param(
        toml(extra="[[faults.partitions]]\nat = 10"),
        "faults.partitions[0].heal: required",
        id="partition-no-heal",
    ),
    pytest.param(
        toml(function='funcname = "f"\nexecutortype = "gpu"'),
        "executortype 'gpu'",
        id="unknown-executortype",
    ),
    pytest.param(
        toml(group='type = "a"\ncount = 1\nfunctions = ["g"]'),
        "no executor group can run 'work'",
        id="no-group-serves-function",
    ),
    pytest.param(
        toml(function='funcname = "f"\ngpus = 1'),
        "no executor group can run 'f'",
        id="no-group-has-gpus",
    ),
    pytest.param(
        toml(workload="specs = 2\nrun_seconds = [1, 60]"),
        "workload.run_seconds",
        id="run-equals-maxexectime",
    ),
    pytest.param(
        toml(workload="specs = 2\nmaxexectime = 5\nrun_seconds = [1, 9]"),
        "workload.run_seconds",
        id="run-above-maxexectime",
    ),
    pytest.param(
        toml(extra="[params]\nrenew_every = 10.0\nlease_seconds = 10.0"),
        "params.renew_every",
        id="renew-equals-lease",
    ),
    pytest.param(
        toml(extra="[params]\nrenew_every = 12"), "params.renew_every", id="renew-above-lease"
    ),
    pytest.param(
        toml(extra="[params]\nkeepers = 0"), "params.keepers: must be at least 1", id="param-zero"
    ),
    pytest.param(
        toml(extra="[params]\nkeepers = 2.0"),
        "params.keepers: must be an integer",
        id="param-float-for-int",
    ),
    pytest.param(
        toml(extra="[faults.churn]\nrevokes = 3"), "faults.churn.revokes", id="revoke-everyone"
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_scenario_is_refused_naming_the_key(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse(text)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param(toml(extra="[network]\nloss = nan"), "network.loss", id="loss"),
        pytest.param(
            toml(workload="specs = 2\nmaxexectime = nan"), "workload.maxexectime", id="maxexectime"
        ),
        pytest.param(
            toml(extra="[[faults.partitions]]\nat = 1\nheal = nan"), "faults.partitions", id="heal"
        ),
    ],
)
def test_nan_is_refused(text: str, key: str) -> None:
    with pytest.raises(ScenarioError, match=key):
        parse(text)


def test_load_unknown_name_lists_the_shipped_scenarios() -> None:
    with pytest.raises(ScenarioError) as info:
        load("no-such-scenario")
    message = str(info.value)
    assert "'no-such-scenario'" in message
    for name in shipped():
        assert name in message


def test_load_missing_file_says_so() -> None:
    with pytest.raises(ScenarioError, match="no such file") as info:
        load("/tmp/definitely/missing.toml")
    assert "/tmp/definitely/missing.toml" in str(info.value)


def test_load_refuses_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ScenarioError, match=r"dir\.toml"):
        load(folder)


def test_load_reports_errors_inside_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml(extra="[network]\nlossy = 0.1"), encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"network\.lossy"):
        load(path)


# --- properties -------------------------------------------------------------------------

fractions = st.floats(0.0, 0.5, allow_nan=False)
spans = st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)).map(sorted)


@settings(max_examples=60, deadline=None)
@given(
    specs=st.integers(1, 50),
    count=st.integers(1, 20),
    users=st.integers(0, 10),
    maxretries=st.integers(0, 100),
    loss=fractions,
    duplicate=fractions,
    latency=st.floats(0.0, 1.0),
    crash_fraction=st.floats(0.0, 1.0),
    submit_window=spans,
)
def test_valid_values_round_trip(
    specs: int,
    count: int,
    users: int,
    maxretries: int,
    loss: float,
    duplicate: float,
    latency: float,
    crash_fraction: float,
    submit_window: list[float],
) -> None:
    low, high = submit_window
    text = toml(
        colony=f"users = {users}",
        group=f'type = "cpu"\ncount = {count}',
        workload=(
            f"specs = {specs}\nmaxretries = {maxretries}\nsubmit_window = [{low!r}, {high!r}]"
        ),
        extra=(
            f"[network]\nloss = {loss!r}\nduplicate = {duplicate!r}\nlatency = {latency!r}\n"
            f"[faults]\ncrash_fraction = {crash_fraction!r}"
        ),
    )
    s = parse(text)
    assert s.workload.specs == specs
    assert s.workload.maxretries == maxretries
    assert s.workload.submit_window == (low, high)
    assert s.colony.users == users
    assert s.executors == count
    assert s.nodes == 1 + users + count
    assert s.network == Network(latency=latency, loss=loss, duplicate=duplicate)
    assert s.faults.crash_fraction == crash_fraction


KEYS_BY_SECTION = {
    "": "top",
    "colony": "colony",
    "colony.executors[0]": "group",
    "workload": "workload",
    "workload.functions[0]": "function",
}


@settings(max_examples=40, deadline=None)
@given(
    section=st.sampled_from(sorted(KEYS_BY_SECTION)),
    key=st.from_regex(r"zz_[a-z_]{0,10}", fullmatch=True),
)
def test_any_unknown_key_is_named(section: str, key: str) -> None:
    parts = {
        "top": "",
        "colony": "",
        "group": 'type = "cpu"\ncount = 3',
        "workload": "specs = 20",
        "function": 'funcname = "work"',
    }
    where = KEYS_BY_SECTION[section]
    parts[where] += f"\n{key} = 1"
    text = toml(
        top=parts["top"],
        colony=parts["colony"],
        group=parts["group"],
        workload=parts["workload"],
        function=parts["function"],
    )
    with pytest.raises(ScenarioError) as info:
        parse(text)
    qualified = f"{section}.{key}" if section else key
    assert str(info.value) == f"{qualified}: unknown key"
