"""The shrinker (simulations/shrink.py): a failing scenario reduced to a smaller one that
fails the same way, written as a scenario file that replays the failure; and the writer
of scenario files it relies on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_simulator import SMALL
from typer.testing import CliRunner

from colonyp2p.core.keeper import KeeperRole
from colonyp2p.core.records import KeeperRecord
from colonyp2p.node.cli import app
from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import simulate
from colonyp2p.simulations.shrink import failure, reductions, shrink, size

# SMALL with more crashes and no partition: with keepers that do not persist, crashes
# lose acknowledged processes (the planted bug of test_simulator.py)
CRASHY = SMALL.replace("crash_fraction = 0.15", "crash_fraction = 0.6").replace(
    "[[faults.partitions]]\nat = 8\nheal = 20\nfraction = 0.3\n", ""
)
SEED = 1
RUNS = 30  # enough to cut members and specs several times over, a few seconds


def _forgetful_keepers(monkeypatch: pytest.MonkeyPatch) -> None:
    def save_in_memory_only(self: KeeperRole, rec: KeeperRecord, now: float) -> None:
        self.records[rec.pid] = rec

    monkeypatch.setattr(KeeperRole, "_save", save_in_memory_only)


@pytest.mark.parametrize("name", scenarios.shipped())
def test_every_shipped_scenario_is_written_as_a_file_that_reads_back_equal(name: str) -> None:
    s = scenarios.load(name)
    assert scenarios.parse(scenarios.to_toml(s), "other") == s


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(max_size=30) | st.sampled_from(["\x7f", "\U0001f600", 'a"b\\c\n\t']),
    loss=st.floats(0.0, 0.5),
    specs=st.integers(1, 10_000),
    at=st.floats(0.0, 1e6, allow_subnormal=False),
)
def test_written_scenarios_keep_any_text_and_number(
    text: str, loss: float, specs: int, at: float
) -> None:
    base = scenarios.parse(SMALL)
    s = dataclasses.replace(
        base,
        name=text,
        description=text,
        network=dataclasses.replace(base.network, loss=loss),
        workload=dataclasses.replace(base.workload, specs=max(specs, 24)),
        faults=dataclasses.replace(
            base.faults, partitions=(scenarios.Partition(at=at, heal=at + 1.5),)
        ),
    )
    assert scenarios.parse(scenarios.to_toml(s)) == s


def test_every_reduction_is_smaller_and_a_valid_scenario() -> None:
    s = scenarios.parse(SMALL)
    found = list(reductions(s))
    assert len(found) >= 15  # members, specs, each kind of fault
    for what, smaller in found:
        assert smaller != s, what
        assert scenarios.parse(scenarios.to_toml(smaller)) == smaller, what
        assert size(smaller) <= size(s) or smaller.network != s.network, what


def test_a_passing_run_is_not_shrunk() -> None:
    s = scenarios.parse(CRASHY)
    assert shrink(s, SEED, max_runs=3) is None


def test_a_planted_bug_shrinks_to_a_smaller_case_that_fails_before_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = scenarios.parse(CRASHY)
    _forgetful_keepers(monkeypatch)
    tried: list[tuple[str, bool]] = []
    shrunk = shrink(
        s, SEED, max_runs=RUNS, progress=lambda _, what, kept: tried.append((what, kept))
    )
    assert shrunk is not None
    assert shrunk.kind == "vanished"  # acknowledged, then stored by no member
    assert shrunk.runs <= RUNS and len(tried) == shrunk.runs - 1
    assert shrunk.steps == [what for what, kept in tried if kept] and shrunk.steps
    assert shrunk.sizes[0] == size(s) and shrunk.sizes[-1] == size(shrunk.scenario)
    assert len(shrunk.sizes) == len(shrunk.steps) + 1
    members, specs, _ = size(shrunk.scenario)
    assert members < s.nodes / 2 and specs < s.workload.specs / 2, size(shrunk.scenario)
    assert shrunk.result.violation is not None and shrunk.result.history  # replayed
    # the file it is written as fails the same way, with the same seed...
    again = simulate(scenarios.parse(scenarios.to_toml(shrunk.scenario)), SEED)
    assert failure(again) == "vanished"
    assert again.trace_digest == shrunk.result.trace_digest
    # ... and passes with keepers that persist: a test that fails before the fix
    monkeypatch.undo()
    assert failure(simulate(shrunk.scenario, SEED)) is None


def test_the_cli_writes_the_shrunk_scenario_and_prints_its_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, out, summary = tmp_path / "crashy.toml", tmp_path / "small.toml", tmp_path / "s.json"
    path.write_text(CRASHY, encoding="utf-8")
    _forgetful_keepers(monkeypatch)
    monkeypatch.setattr("colonyp2p.simulations.shrink.MAX_RUNS", RUNS)
    args = ["simulate", str(path), "--seed", str(SEED), "--quiet", "--shrink", str(out)]
    result = CliRunner().invoke(app, [*args, "--json", str(summary)])
    assert result.exit_code == 1, result.output
    assert "shrunk in" in result.output and "still vanished" in result.output
    assert f"replay it with: colonynode simulate {out} --seed {SEED}" in result.output
    shrunk = scenarios.load(out)
    assert shrunk.name == "small"  # the name names the colony: it is kept
    assert "Shrunk from small with seed 1 (still vanished)" in shrunk.description
    data = json.loads(summary.read_text(encoding="utf-8"))
    assert data["violation"]["invariant"] == "vanished"
    assert data["shrunk"]["kind"] == "vanished" and data["shrunk"]["path"] == str(out)
    assert data["shrunk"]["summary"]["nodes"] == shrunk.nodes < data["nodes"]
    assert data["shrunk"]["summary"]["violation"]["history"]
    last = data["shrunk"]["steps"][-1]
    assert (last["members"], last["specs"]) == (shrunk.nodes, shrunk.workload.specs)
