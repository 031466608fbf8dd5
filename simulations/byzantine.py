"""Byzantine members: members of role ``user`` that speak the colony protocol with their
own valid keys and lie (``[faults] byzantine``). They run no core; every
``byzantine_every`` seconds each sends one attack, drawn from the run's RNG:

- forged outcomes: ``Install`` of a decided record, ``Decide``, ``Status``, ``Accept``
  without a lease, to a process's keepers and its submitter;
- planted specs: a spec in an honest member's name with a bad signature, stored,
  installed, announced and offered;
- claims: ``Prepare`` (claim, fail, move, recover) for processes they cannot run,
  followed by ``Accept`` and ``Decide`` of a forged value;
- parent outputs: ``ParentOutcomes`` and ``Status`` of a parent to a child's keepers;
- re-announcements of real specs naming themselves as keepers;
- membership: a next version signed by themselves, and one with a forged signature,
  announced; log lines to submitters; an executor ad.

Every forged outcome carries ``forged`` in its output or a Byzantine member as its
executor or move target, so the checker (simulations/checker.py) recognises it wherever
it lands.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from colonyp2p.core.messages import (
    Accept,
    AdAnnounce,
    CatchUp,
    CaughtUp,
    Decide,
    Install,
    LogLines,
    MembershipAnnounce,
    Offer,
    Outcome,
    ParentOutcomes,
    Prepare,
    SpecAnnounce,
    Status,
    StoreSpec,
    Transfer,
)
from colonyp2p.core.ranking import config_tag
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import Member
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.model.spec import Conditions, FunctionSpec

if TYPE_CHECKING:
    from colonyp2p.simulations.engine import Simulation

FORGED = "forged"


@dataclasses.dataclass(frozen=True, slots=True)
class Known:
    """A process a Byzantine member learned of (as it would from gossip)."""

    spec: SignedSpec
    keepers: tuple[str, ...]
    submitter: str


def forged(outcome: Outcome | None, liars: set[str], marked_only: bool = False) -> bool:
    """Whether ``outcome`` is one a Byzantine member made up: marked so (``FORGED`` in its
    output or errors), or, where the liars are users (``marked_only`` false: they run
    nothing and keep nothing), produced by one or moving a record to one."""
    if outcome is None:
        return False
    if not marked_only and (outcome.executor in liars or liars.intersection(outcome.moved_to)):
        return True
    marks = (*outcome.output, *outcome.errors)
    return any(isinstance(o, str) and o.startswith(FORGED) for o in marks)


ATTACKS = (
    "install",
    "plant",
    "decide",
    "status",
    "claim",
    "ballot",
    "accept",
    "parents",
    "announce",
    "membership",
    "logs",
)


class Byzantine:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.known: list[Known] = []
        self.liars = {sim.mids[i] for i in sim.colony.byzantine}

    def learned(self, spec: SignedSpec, keepers: tuple[str, ...], submitter: str) -> None:
        self.known.append(Known(spec, keepers, submitter))

    def _value(self, me: str, epoch: int) -> Outcome:
        sim = self.sim
        rng = sim.rng
        # sometimes in an honest executor's name (the checker still tells it by its output)
        honest = [sim.mids[i] for i in sorted(sim.colony.ads)]
        executor = me if rng.random() < 0.5 or not honest else rng.choice(honest)
        return Outcome(
            "successful", output=(f"{FORGED} by {me[:12]}",), executor=executor, run_epoch=epoch
        )

    def attack(self, idx: int) -> None:
        sim = self.sim
        rng = sim.rng
        me = sim.mids[idx]
        keeper = sim.keeper_liars
        # A Byzantine keeper claims nothing: holding a lease, any executor can report the
        # output it likes (docs/PROTOCOL.md, "What these rules do not settle").
        kind = rng.choice([a for a in ATTACKS if a != "claim"] if keeper else ATTACKS)
        sim.counters[f"byzantine_{kind}"] += 1
        if kind == "membership":
            self._membership(idx, me)
            return
        if kind == "plant":
            self._plant(idx, me)
            return
        if not self.known:
            return
        target = rng.choice(self.known)
        pid = target.spec.pid
        keepers = target.keepers
        victims: tuple[str, ...] = ()
        if keeper:
            if self._keeps(idx, target):
                sim.counters["byzantine_own_record"] += 1
                return  # it keeps this one: there it runs the protocol
            # members that never held the record: they cannot ask a keeper of their own
            others = [m for m in sim.mids if m not in keepers and m != me]
            victims = tuple(rng.sample(others, min(3, len(others))))
        tag = config_tag(keepers)
        epoch = rng.randint(1, 1 << 20)
        value = self._value(me, epoch)
        send = sim._send
        if kind == "install":
            # a forged outcome, or (half the time, by a keeper) an undecided record whose
            # keepers are the liar and members that never held it: it would then decide
            # what it likes with them
            planted = keeper and rng.random() < 0.5
            named = (me, *victims[:2]) if planted else keepers
            if not planted and rng.random() < 0.5:
                named = (*keepers[:-1], me)
            transfer = Transfer(
                spec=target.spec,
                keepers=named,
                config_version=sim.membership.version + rng.randint(0, 3),
                parents=(),
                promised=epoch,
                expired_attempts=0,
                decided=None if planted else value,
                decided_epoch=0 if planted else epoch,
            )
            for k in (*keepers, *victims, *named):
                if k != me:
                    send(idx, k, Install(transfer))
        elif kind == "decide":
            for k in (*keepers, target.submitter, *victims):
                send(idx, k, Decide(pid, epoch, value, tag))
        elif kind == "status":
            status = Status(pid, True, "successful", epoch, value, epoch, keepers=(me,))
            for k in (*keepers, target.submitter, *victims):
                send(idx, k, status)
        elif kind == "claim":
            for k in keepers:
                send(idx, k, Prepare(pid, epoch, "claim", tag))
                send(idx, k, Accept(pid, epoch, value, tag))
                send(idx, k, Decide(pid, epoch, value, tag))
        elif kind == "ballot":
            purpose = rng.choice(("fail", "move", "recover"))
            if purpose == "move":
                value = Outcome(
                    "moved",
                    errors=(FORGED,),
                    executor=me,
                    run_epoch=epoch,
                    moved_to=(me,),
                    moved_version=sim.membership.version + 1,
                )
            for k in keepers:
                send(idx, k, Prepare(pid, epoch, purpose, tag))  # type: ignore[arg-type]
                send(idx, k, Accept(pid, epoch, value, tag))
                send(idx, k, Decide(pid, epoch, value, tag))
        elif kind == "accept":
            for k in keepers:
                send(idx, k, Accept(pid, epoch, value, tag))
        elif kind == "parents":
            children = [
                c for c in self.known if c.spec.parents and not (keeper and self._keeps(idx, c))
            ]
            if not children:
                return
            child = rng.choice(children)
            parent = rng.choice(child.spec.parents)
            for k in child.keepers:
                send(idx, k, ParentOutcomes(child.spec.pid, ((parent, value),)))
                send(idx, k, Status(parent, True, "successful", epoch, value, epoch, keepers=(me,)))
                send(idx, k, Decide(parent, epoch, value))
        elif kind == "announce":
            item = SpecAnnounce(target.spec, (me,), rng.randint(0, 3))
            sim._publish(idx, item)
            for i in sorted(sim.colony.ads)[:3]:
                send(idx, sim.mids[i], Offer(item, 0))
        elif kind == "logs":
            send(idx, target.submitter, LogLines(pid, epoch, 0, (f"{FORGED} log",)))

    def _keeps(self, idx: int, known: Known) -> bool:
        """Whether Byzantine keeper ``idx`` keeps ``known``'s record (or ever did)."""
        node = self.sim.nodes[idx]
        mine = node is not None and known.spec.pid in node.keeper.records
        return mine or self.sim.mids[idx] in known.keepers

    def _plant(self, idx: int, me: str) -> None:
        """A spec in the owner's name (or another honest member's) with a bad signature."""
        sim = self.sim
        rng = sim.rng
        victim = sim.mids[rng.choice([0, *sim.colony.users])]
        spec = FunctionSpec(
            "resize", kwargs={"seconds": 1.0}, conditions=Conditions(executortype="")
        )
        planted = SignedSpec(
            spec,
            sim.colony_id,
            victim,
            sim.now,
            rng.randbytes(12),
            signature=bytes(64) if rng.random() < 0.5 else rng.randbytes(64),
        )
        owner = sim.nodes[0]
        keepers = owner.keepers_for(planted.pid) if owner is not None else ()
        for k in keepers:
            sim._send(idx, k, StoreSpec(planted, keepers, sim.membership.version))
            transfer = Transfer(planted, keepers, sim.membership.version, (), 0, 0, None, 0)
            sim._send(idx, k, Install(transfer))
        item = SpecAnnounce(planted, keepers or (me,))
        sim._publish(idx, item)
        for i in sorted(sim.colony.ads)[:3]:
            sim._send(idx, sim.mids[i], Offer(item, 0))

    def _membership(self, idx: int, me: str) -> None:
        """A next version that makes the liar an admin: signed by itself (no right), or
        claiming the owner's signature (forged)."""
        sim = self.sim
        rng = sim.rng
        ident = sim.colony.identities[idx]
        current = sim.membership
        raised = [m if m.member_id != me else Member(me, "admin") for m in current.members]
        new = dataclasses.replace(current, version=current.version + 1, members=tuple(raised))
        if rng.random() < 0.5:
            new = dataclasses.replace(new, signer=me, signature=b"")
            new = dataclasses.replace(new, signature=ident.sign(unsigned_bytes(new)))
        else:
            new = dataclasses.replace(new, signature=rng.randbytes(64))
        sim._publish(idx, MembershipAnnounce(new))
        # the same version as an answer nobody asked for, to a member at random
        victim = sim.mids[rng.choice(sorted(sim.colony.ads))]
        sim._send(idx, victim, CaughtUp(chain=(new,), ask=rng.randint(0, 8), newest=new.version))
        if rng.random() < 0.5 and not sim.keeper_liars:
            # an executor ad: users run nothing (gossiped, and carried by a catch-up question)
            ad = ExecutorAd.create(ident, sim.now, executortype="edge", name=f"liar-{idx}")
            sim._publish(idx, AdAnnounce(ad))
            sim._send(idx, victim, CatchUp(current.version, ad=ad, ask=rng.randint(1, 8)))
