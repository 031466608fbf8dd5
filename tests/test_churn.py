"""The protocol under heavy churn (simulations/scenarios/churn-small.toml, a third of
churn-harsh): a fifth of the messages lost, 30% of the members crashing, two
overlapping partitions, joins and revocations of keepers and holders. Nothing
acknowledged vanishes, no invariant breaks, and everything ends once the faults stop
(the checker's liveness check, ``settle_seconds``). bench/bench_sim.py --part churn runs
both churn scenarios over many seeds."""

from __future__ import annotations

import pytest

from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import simulate

SEED = 5


@pytest.mark.slow
def test_a_harsh_colony_loses_nothing_and_settles_after_the_faults() -> None:
    s = scenarios.load("churn-small")
    result = simulate(s, SEED)
    assert result.violation is None, result.summary()["violation"]
    assert not result.lost and result.terminal
    c = result.counters
    assert c["revocations"] == 10 and c["crashes"] > 20 and c["partitions"] == 2
    # ended within settle_seconds of the last fault (else the checker would have said)
    assert result.simulated_seconds <= result.last_fault + s.settle_seconds
