"""The shrinker: a scenario that fails with a seed, reduced to a smaller one that still
fails the same way, so that a fix comes with a small test that fails before it.

A failure is what makes ``colonynode simulate`` exit 1: a broken invariant (its name is
the failure's kind), an acknowledged process lost, or a run that does not end. The
shrinker tries one reduction at a time (half the specs, half an executor group, no
partition, no loss...), each simulated with the same seed; it keeps the first reduction
whose run fails with the same kind, and starts over from it, until no reduction keeps
the failure or ``max_runs`` runs were spent. Greedy, like delta debugging over the
scenario's knobs rather than over the run's events: a smaller scenario is a different
random run, so the shrunk case is a new failing case of the same kind, not a cut of the
old history (the history printed is the shrunk run's own).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from colonyp2p.errors import ScenarioError
from colonyp2p.simulations.engine import Result, Simulation, simulate
from colonyp2p.simulations.scenario import Scenario, parse, to_toml

MAX_RUNS = 60


def failure(result: Result) -> str | None:
    """The kind of a run's failure (None: it passed), as ``colonynode simulate`` judges."""
    if result.violation is not None:
        return result.violation.invariant
    if result.lost:
        return "lost"
    if not result.terminal:
        return "not_terminal"
    return None


@dataclass
class Shrunk:
    """The smallest failing scenario found, the run that fails with it, and how."""

    scenario: Scenario
    seed: int
    kind: str
    result: Result
    steps: list[str] = field(default_factory=list)  # the reductions kept, in order
    sizes: list[tuple[int, int, int]] = field(default_factory=list)  # size() first, then after each
    runs: int = 0  # simulations spent, the first (failing) run included


def shrink(
    scenario: Scenario,
    seed: int,
    *,
    first: Result | None = None,
    max_runs: int = MAX_RUNS,
    progress: Callable[[Shrunk, str, bool], None] | None = None,
) -> Shrunk | None:
    """``scenario`` reduced while it fails with ``seed`` the way it first failed (None
    when it does not fail). ``first`` is that first run, when the caller has it;
    ``progress(state, reduction, kept)`` is told of every reduction tried."""
    if first is None:
        first = simulate(scenario, seed)
    kind = failure(first)
    if kind is None:
        return None
    state = Shrunk(scenario, seed, kind, first, sizes=[size(scenario)], runs=1)
    _search(state, max_runs, progress)
    if state.steps and state.result.violation is not None:
        state.result = simulate(state.scenario, seed)  # again, with the history replayed
    return state


def _search(
    state: Shrunk, max_runs: int, progress: Callable[[Shrunk, str, bool], None] | None
) -> None:
    kind, seed = state.kind, state.seed
    while state.runs < max_runs:
        for what, candidate in reductions(state.scenario):
            if state.runs >= max_runs:
                return
            result = Simulation(candidate, seed).run()  # the history only at the end
            state.runs += 1
            kept = failure(result) == kind
            if progress is not None:
                progress(state, what, kept)
            if kept:
                state.scenario, state.result = candidate, result
                state.steps.append(what)
                state.sizes.append(size(candidate))
                break
        else:
            return  # no reduction keeps the failure: a local minimum


def size(s: Scenario) -> tuple[int, int, int]:
    """What shrinking reduces first: members, specs, faults."""
    f = s.faults
    faults = (
        len(f.partitions)
        + f.churn.joins
        + f.churn.revokes
        + f.byzantine
        + (f.crash_fraction > 0)
        + (f.clock_skew > 0)
    )
    return s.nodes, s.workload.specs, faults


def reductions(s: Scenario) -> Iterator[tuple[str, Scenario]]:
    """Smaller variants of ``s``, the largest cuts first; only those a scenario file may
    hold (each goes through the file's own checks, as the shrunk file will)."""
    for what, candidate in _candidates(s):
        if candidate == s:
            continue
        try:
            parse(to_toml(candidate), candidate.name)
        except ScenarioError:
            continue
        yield what, candidate


def _candidates(s: Scenario) -> Iterator[tuple[str, Scenario]]:
    w, f, n, c = s.workload, s.faults, s.network, s.colony
    rep = dataclasses.replace

    def workload(**kw: object) -> Scenario:
        return rep(s, workload=rep(w, **kw))

    def faults(**kw: object) -> Scenario:
        return rep(s, faults=rep(f, **kw))

    def network(**kw: object) -> Scenario:
        return rep(s, network=rep(n, **kw))

    def colony(**kw: object) -> Scenario:
        return rep(s, colony=rep(c, **kw))

    # members and work, halved
    if len(c.executors) > 1:
        for i, g in enumerate(c.executors):
            rest = c.executors[:i] + c.executors[i + 1 :]
            yield f"executor group {g.type!r} removed", colony(executors=rest)
    for i, g in enumerate(c.executors):
        if g.count > 1:
            groups = list(c.executors)
            groups[i] = rep(g, count=g.count // 2)
            yield (
                f"executor group {g.type!r}: {g.count} -> {g.count // 2}",
                colony(executors=tuple(groups)),
            )
    if w.specs > 1:
        specs = w.specs // 2
        flows = min(w.workflow_specs // 2, specs)
        if flows < w.workflow_size[0]:
            flows = 0
        yield f"specs: {w.specs} -> {specs}", workload(specs=specs, workflow_specs=flows)
    if w.workflow_specs:
        yield "no workflows", workload(workflow_specs=0)
    if c.users > 1:
        yield f"users: {c.users} -> {c.users // 2}", colony(users=c.users // 2)
    if c.admins:
        yield "no admins", colony(admins=0)
    # faults, removed
    for i, p in enumerate(f.partitions):
        others = f.partitions[:i] + f.partitions[i + 1 :]
        yield f"partition at {p.at:g} s removed", faults(partitions=others)
    if f.churn.joins or f.churn.revokes:
        yield "no churn", faults(churn=rep(f.churn, joins=0, revokes=0))
    if f.churn.revokes > 1:
        half = f.churn.revokes // 2
        yield f"revocations: {f.churn.revokes} -> {half}", faults(churn=rep(f.churn, revokes=half))
    if f.churn.joins > 1:
        half = f.churn.joins // 2
        yield f"joins: {f.churn.joins} -> {half}", faults(churn=rep(f.churn, joins=half))
    if f.crash_fraction:
        yield "no crashes", faults(crash_fraction=0.0)
        yield (
            f"crashes: {f.crash_fraction:g} -> {f.crash_fraction / 2:g}",
            faults(crash_fraction=f.crash_fraction / 2),
        )
    if f.byzantine:
        yield "no Byzantine members", faults(byzantine=0)
    if f.clock_skew:
        yield "no clock skew", faults(clock_skew=0.0)
    if n.loss or n.gossip_loss:
        yield "no message loss", network(loss=0.0, gossip_loss=0.0)
    if n.duplicate:
        yield "no duplicates", network(duplicate=0.0)
    if n.jitter:
        yield "no jitter", network(jitter=0.0)
    if w.error_rate or w.hang_rate:
        yield "no failing or hanging runs", workload(error_rate=0.0, hang_rate=0.0)
    if w.submit_window[1] - w.submit_window[0] >= 2.0:  # to a second, no finer
        start, end = w.submit_window
        yield (
            f"submissions within {start:g}..{(start + end) / 2:g} s",
            workload(submit_window=(start, (start + end) / 2)),
        )
