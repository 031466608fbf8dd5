"""A scenario made concrete: identities, the signed membership set, executor ads and the
signed specs of the workload, all drawn from one seeded RNG so a seed fixes the colony.

The simulated function of a spec is described in its kwargs (``seconds`` to run,
``error`` to report a failure, ``hang`` to outlast maxexectime), so the same
process behaves the same on whichever executor runs it, however often.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import Conditions, FunctionSpec, Gpu
from colonyp2p.model.workflow import WorkflowSpec, sign_workflow
from colonyp2p.simulations.scenario import ExecutorGroup, FunctionMix, Scenario, Workload


@dataclass(frozen=True)
class Submission:
    """What one user submits at ``at``: a single spec, or a workflow's specs parents first."""

    at: float
    submitter: int  # member index
    specs: tuple[SignedSpec, ...]


@dataclass
class Colony:
    owner: Identity
    identities: list[Identity]  # index = member index; 0 is the owner
    membership: MembershipSet
    ads: dict[int, ExecutorAd]
    groups: dict[int, ExecutorGroup]
    users: list[int]
    submissions: list[Submission]
    spares: list[tuple[Identity, ExecutorAd]] = field(default_factory=list)  # churn joiners
    byzantine: list[int] = field(default_factory=list)  # members that lie (byzantine.py)


def build(scenario: Scenario, rng: random.Random) -> Colony:
    n_groups = scenario.colony.executors
    owner = Identity.from_seed(rng.randbytes(32))
    identities = [owner]
    members: list[Member] = []
    users: list[int] = []
    for _ in range(scenario.colony.admins):
        identities.append(Identity.from_seed(rng.randbytes(32)))
        members.append(Member(identities[-1].member_id, "admin"))
    for _ in range(scenario.colony.users):
        users.append(len(identities))
        identities.append(Identity.from_seed(rng.randbytes(32)))
        members.append(Member(identities[-1].member_id, "user"))
    ads: dict[int, ExecutorAd] = {}
    groups: dict[int, ExecutorGroup] = {}
    for group in n_groups:
        for _ in range(group.count):
            ident = Identity.from_seed(rng.randbytes(32))
            idx = len(identities)
            identities.append(ident)
            members.append(Member(ident.member_id, "executor"))
            ads[idx] = make_ad(ident, group, len(ads))
            groups[idx] = group
    byzantine: list[int] = []
    keeper_liars = scenario.faults.byzantine_role == "keeper"
    for _ in range(scenario.faults.byzantine):
        byzantine.append(len(identities))
        identities.append(Identity.from_seed(rng.randbytes(32)))
        liar = identities[-1].member_id
        members.append(Member(liar, "executor") if keeper_liars else Member(liar, "user"))
    membership = MembershipSet.genesis(owner, scenario.name, 0.0, members=members)
    spares = []
    for i in range(scenario.faults.churn.joins):
        group = n_groups[i % len(n_groups)]
        ident = Identity.from_seed(rng.randbytes(32))
        spares.append((ident, make_ad(ident, group, len(ads) + i)))
    submitters = users or [0]
    submissions = _workload(scenario, rng, identities, submitters, membership.colony_id)
    return Colony(owner, identities, membership, ads, groups, users, submissions, spares, byzantine)


def make_ad(ident: Identity, group: ExecutorGroup, number: int) -> ExecutorAd:
    return ExecutorAd.create(
        ident,
        0.0,
        executortype=group.type,
        name=f"{group.type}-{number}",
        functions=group.functions,
        location=group.location,
        hardware=Hardware(
            cores=group.cores,
            memory=group.memory,
            gpu=Gpu(name=group.gpu_name, count=group.gpus),
        ),
        capacity=group.capacity,
    )


def _workload(
    scenario: Scenario,
    rng: random.Random,
    identities: list[Identity],
    submitters: list[int],
    colony_id: str,
) -> list[Submission]:
    w = scenario.workload
    mix = list(w.functions)
    weights = [f.weight for f in mix]
    out: list[Submission] = []

    def nonce() -> bytes:
        return rng.randbytes(12)

    for _ in range(w.specs - w.workflow_specs):
        at = rng.uniform(*w.submit_window)
        who = rng.choice(submitters)
        spec = _spec(w, rng.choices(mix, weights)[0], rng)
        signed = SignedSpec.create(spec, identities[who], colony_id, at, nonce())
        out.append(Submission(at, who, (signed,)))
    remaining = w.workflow_specs
    lo, hi = w.workflow_size
    while remaining:
        size = min(rng.randint(lo, hi), remaining)
        if remaining - size < lo:
            size = remaining
        remaining -= size
        at = rng.uniform(*w.submit_window)
        who = rng.choice(submitters)
        specs = []
        for i in range(size):
            parents: tuple[str, ...] = ()
            if i:
                count = min(i, rng.choice((1, 1, 2)))
                parents = tuple(f"n{p}" for p in sorted(rng.sample(range(i), count)))
            specs.append(_spec(w, rng.choices(mix, weights)[0], rng, f"n{i}", parents))
        wf = WorkflowSpec(scenario.name, tuple(specs))
        signed_all = sign_workflow(wf, identities[who], colony_id, at, nonce)
        out.append(Submission(at, who, signed_all))
    out.sort(key=lambda s: s.at)
    return out


def _spec(
    w: Workload,
    f: FunctionMix,
    rng: random.Random,
    nodename: str = "",
    dependencies: tuple[str, ...] = (),
) -> FunctionSpec:
    hang = rng.random() < w.hang_rate
    error = not hang and rng.random() < w.error_rate
    seconds = round(rng.uniform(*w.run_seconds), 3)
    return FunctionSpec(
        funcname=f.funcname,
        nodename=nodename,
        kwargs={"seconds": seconds, "error": error, "hang": hang},
        priority=rng.choice(w.priorities),
        maxwaittime=w.maxwaittime,
        maxexectime=w.maxexectime,
        maxretries=w.maxretries,
        conditions=Conditions(
            executortype=f.executortype,
            gpu=Gpu(count=f.gpus),
            dependencies=dependencies,
        ),
    )
