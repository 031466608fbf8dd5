"""README.md ("Simulating your colony") and docs/SIMULATOR.md: the run checks the
protocol's invariants, workflow inputs among them; a violation prints the seed and the
shortest event history that shows it, and `colonynode simulate` exits 1.

Nothing plants a bug from the command line, so the bug is planted in-process: the
protocol core hands a workflow child one input more than its parents' outputs, and the
CLI's own entry (typer's runner, in this process) runs the scenario."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_cli_simulate import TINY
from typer.testing import CliRunner

from colonyp2p.core import proposer
from colonyp2p.core.effects import StartExecution
from colonyp2p.node.cli import app
from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import simulate

SEED = 3
WRONG = "not a parent's output"


def _wrong_inputs(pid: str, epoch: int, spec: Any, inputs: tuple[Any, ...]) -> StartExecution:
    """The planted bug: a child (a spec with parents) gets one input too many."""
    if spec.parents:
        inputs = (*inputs, WRONG)
    return StartExecution(pid, epoch, spec, inputs)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_the_workflow_inputs_check_catches_a_child_fed_wrong_inputs(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = scenarios.load(str(tiny))
    control = simulate(scenario, SEED)
    assert control.violation is None and control.terminal  # the honest core passes
    monkeypatch.setattr(proposer, "StartExecution", _wrong_inputs)
    result = simulate(scenario, SEED)
    v = result.violation
    assert v is not None, "the checker let a child run with inputs its parents never gave"
    assert v.invariant == "workflow_inputs", v
    assert WRONG in v.detail
    assert result.history, "no history of the violating process"
    assert any("started" in line for line in result.history), result.history


def test_simulate_exits_1_with_the_seed_and_the_shortest_history(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proposer, "StartExecution", _wrong_inputs)
    expected = simulate(scenarios.load(str(tiny)), SEED)
    assert expected.violation is not None
    done = CliRunner().invoke(app, ["simulate", str(tiny), "--seed", str(SEED), "--quiet"])
    assert done.exit_code == 1, done.output
    # (rich wraps lines at the runner's width: compared with whitespace collapsed)
    out = _flat(done.output)
    v = expected.violation
    assert f"invariant broken: {_flat(str(v))}" in out, out
    assert v.invariant == "workflow_inputs"
    # the seed, as the command that replays the run
    assert f"replay it with: colonynode simulate tiny --seed {SEED} (process {v.pid})" in out
    # the history: what the run recorded of that one process, every line, in order
    header = f"shortest history of process {v.pid[:16]} ({len(expected.history)} events):"
    assert header in out, out
    assert out.split(header, 1)[1].strip() == _flat(" ".join(expected.history))
    # the history is cut to that process, far shorter than the run
    assert len(expected.history) < expected.events


def _flat(text: str) -> str:
    return " ".join(text.split())
