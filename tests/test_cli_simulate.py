"""The ``colonynode`` command line: simulate a tiny scenario, its JSON, plot and errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from colonyp2p.node.cli import app
from colonyp2p.simulations import engine
from colonyp2p.simulations import scenario as scenarios

TINY = """\
name = "tiny"
max_simulated_seconds = 600
sample_every = 1.0

[colony]
users = 1

[[colony.executors]]
type = "edge"
count = 8

[[colony.executors]]
type = "cloud"
count = 4
capacity = 2

[workload]
specs = 30
workflow_specs = 6
workflow_size = [3, 3]
submit_window = [0, 10]
run_seconds = [0.5, 2.0]
maxexectime = 20

[[workload.functions]]
funcname = "resize"
executortype = "edge"
weight = 2

[[workload.functions]]
funcname = "aggregate"
executortype = "cloud"

[network]
loss = 0.05

[faults]
crash_fraction = 0.1
crash_window = [2, 10]
downtime = [2, 5]
"""

SUMMARY_KEYS = {
    "nodes",
    "specs",
    "processes_successful",
    "processes_failed",
    "lost",
    "duplicate_results",
    "stale_epoch_accepts",
    "terminal",
    "simulated_seconds",
    "wall_seconds",
    "events",
    "trace_digest",
}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def simulate(scenario: Path, seed: int, out: Path, *extra: str) -> tuple[Result, dict[str, Any]]:
    json_out = out / f"seed{seed}.json"
    args = ["simulate", str(scenario), "--seed", str(seed), "--json", str(json_out), "--quiet"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(json_out.read_text(encoding="utf-8"))
    return result, summary


def test_simulate_writes_json_and_plot(tiny: Path, tmp_path: Path) -> None:
    plot = tmp_path / "plots" / "out.png"
    plot.parent.mkdir()
    result, summary = simulate(tiny, 3, tmp_path, "--plot", str(plot))
    assert not SUMMARY_KEYS - summary.keys()
    assert summary["scenario"] == "tiny"
    assert summary["seed"] == 3
    assert summary["nodes"] == 1 + 1 + 12
    assert summary["executors"] == 12
    assert summary["specs"] == 30
    assert summary["workflow_specs"] == 6
    assert summary["lost"] == 0
    assert summary["duplicate_results"] == 0
    assert summary["stale_epoch_accepts"] == 0
    assert summary["terminal"] is True
    assert summary["violation"] is None
    assert summary["processes_successful"] + summary["processes_failed"] == summary["specs"]
    assert 0 < summary["simulated_seconds"] <= 600
    assert summary["wall_seconds"] >= 0
    # the file holds this run's own numbers: the same run in this process agrees on all
    # but the wall-clock ones
    same = engine.simulate(scenarios.load(tiny), 3).summary()
    for wall in ("wall_seconds", "events_per_wall_second"):
        del summary[wall], same[wall]
    assert summary == same
    assert summary["events"] > 0 and re.fullmatch("[0-9a-f]{64}", summary["trace_digest"])
    assert plot.read_bytes().startswith(PNG_MAGIC)
    assert "summary written to" in result.stdout
    assert "plot written to" in result.stdout


def test_same_seed_same_trace_other_seed_other_trace(tiny: Path, tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for d in (first, second, other):
        d.mkdir()
    _, a = simulate(tiny, 5, first)
    _, b = simulate(tiny, 5, second)
    _, c = simulate(tiny, 6, other)
    assert a["trace_digest"] == b["trace_digest"]
    assert a["events"] == b["events"]
    assert a["simulated_seconds"] == b["simulated_seconds"]
    assert c["trace_digest"] != a["trace_digest"]


def test_json_parent_folder_is_created(tiny: Path, tmp_path: Path) -> None:
    json_out = tmp_path / "deep" / "er" / "run.json"
    result = runner.invoke(app, ["simulate", str(tiny), "--json", str(json_out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(json_out.read_text(encoding="utf-8"))["seed"] == 1


def test_bad_scenario_exits_2_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY + "lossy = 0.1\n", encoding="utf-8")  # lands in [faults]
    json_out = tmp_path / "never.json"
    result = runner.invoke(app, ["simulate", str(bad), "--json", str(json_out), "--quiet"])
    assert result.exit_code == 2
    assert "faults.lossy" in result.stderr
    assert "faults.lossy" in result.output
    assert "faults.lossy" not in result.stdout
    assert "error" in result.stderr
    assert not json_out.exists()


def test_missing_scenario_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["simulate", str(tmp_path / "nope.toml"), "--quiet"])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_unknown_scenario_name_exits_2_and_lists_shipped() -> None:
    result = runner.invoke(app, ["simulate", "no-such-scenario", "--quiet"])
    assert result.exit_code == 2
    assert "no-such-scenario" in result.stderr
    assert "continuum-1000" in result.stderr


def test_error_text_with_brackets_is_printed_verbatim(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace("submit_window = [0, 10]", "submit_window = [10, 0]"))
    result = runner.invoke(app, ["simulate", str(bad), "--quiet"])
    assert result.exit_code == 2
    assert "must be [low, high]" in result.stderr


def test_scenarios_lists_the_shipped_ones() -> None:
    result = runner.invoke(app, ["scenarios"])
    assert result.exit_code == 0, result.output
    assert "demo" in result.stdout
    assert "continuum-1000" in result.stdout
    assert "scaling" in result.stdout
    # each row: name, members, specs (whatever the table's border characters)
    assert re.search(r"continuum-1000\W+1000\W+10000\b", result.stdout)
    assert re.search(r"demo\W+60\W+400\b", result.stdout)
