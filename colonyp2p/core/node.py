"""ColonyNode: one member's protocol state machine (client, keeper, executor roles together).

Drivers call the ``on_*`` methods and ``submit*`` with the node's own clock and
carry out the effects returned. Nothing here reads a clock, sleeps or does I/O.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from colonyp2p import codec
from colonyp2p.core.availability import Availability
from colonyp2p.core.catchup import CatchUpRole, history_key
from colonyp2p.core.client import SUBMISSIONS, ClientRole
from colonyp2p.core.effects import Effect, Observe, Persist, Publish, Reject, Send, SetTimer
from colonyp2p.core.executor import OFFER_TO, ExecutorRole
from colonyp2p.core.keeper import RECORDS, KeeperRole
from colonyp2p.core.messages import (
    Accept,
    Accepted,
    AdAnnounce,
    Announcement,
    CatchUp,
    CaughtUp,
    Certificate,
    Decide,
    Install,
    InstallAck,
    LogLines,
    MembershipAnnounce,
    Message,
    Offer,
    Outcome,
    ParentOutcomes,
    ParentRef,
    Prepare,
    Promise,
    Query,
    Refuse,
    Release,
    Renew,
    RenewAck,
    SetAttributes,
    SpecAnnounce,
    Status,
    StoreAck,
    StoreSpec,
)
from colonyp2p.core.params import Params
from colonyp2p.core.proposer import Proposer
from colonyp2p.core.provenance import (
    Config,
    Signer,
    decision_ok,
    follow,
    place,
    placement_ok,
    record_config,
)
from colonyp2p.core.ranking import KeeperRing
from colonyp2p.core.records import KeeperRecord
from colonyp2p.errors import ColonyError
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import MembershipSet, follow_chain
from colonyp2p.model.signed import SignedSpec

Durable = Mapping[str, Mapping[str, Any]]
MEMBERSHIP = "membership"
AD_EVERY = 60.0
MEMBERSHIP_EVERY = 30.0
# keeper sets this node knows for processes it does not keep, where they are not the
# canonical ones (its own submissions, and what keepers' Status said), most recent kept
PLACEMENTS_KEPT = 32768
# pids whose outcome this node reported (Observe "result") or is checking with their
# keepers, most recent kept
RESULTS_KEPT = 8192
# requests their receiver always answers: one unanswered for a lease makes it "silent"
# (see core/availability.py)
_ANSWERED = frozenset({StoreSpec, Prepare, Accept, Renew, Query, Install, CatchUp})


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    ok: bool
    output: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()


def _is_pid(pid: str) -> bool:
    """Whether ``pid`` can be a process id (a sha256 in hex) and so has a place on the ring."""
    try:
        int(pid, 16)
    except ValueError:
        return False
    return True


def _ignore(sender: str, msg: Any, now: float) -> None:
    """For messages that only the drivers act on."""


class ColonyNode:
    """All of a member's protocol state. Construct from durable state to restart after a crash."""

    def __init__(
        self,
        member_id: str,
        membership: MembershipSet,
        params: Params | None = None,
        ad: ExecutorAd | None = None,
        durable: Durable | None = None,
        sign: Signer | None = None,
    ) -> None:
        durable = durable or {}
        self.member_id = member_id
        # the member's key (pure computation, no I/O): it signs its placements and its
        # votes, which make the certificates of core/provenance.py. Without one (unit
        # tests of other rules) the node signs nothing, and what it keeps cannot be
        # handed to a member that never held it.
        self.sign = sign
        self.params = params or Params()
        saved = durable.get(MEMBERSHIP, {}).get("current")
        if isinstance(saved, MembershipSet) and saved.version > membership.version:
            membership = saved
        self.membership = membership
        self.ring = KeeperRing(membership.version, membership.keeper_ids)
        self.ads: dict[str, ExecutorAd] = {}
        if ad is not None:
            self.ads[ad.executor_id] = ad
        self.out: list[Effect] = []
        self.now = 0.0
        self.counters: Counter[str] = Counter()
        self.revoked = False
        # members whose every connection to us dropped, until we hear from them again
        self.lost: set[str] = set()
        # who can be counted on to answer, for the keepers of new specs
        self.availability = Availability(self.params.lease_seconds)
        self.placements: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._results: OrderedDict[str, None] = OrderedDict()
        self._checking: OrderedDict[str, None] = OrderedDict()
        # this node's own submissions (volatile, most recent kept): a Decide from a sender
        # we cannot judge is checked with the keepers only for these, so a forged Decide
        # about anything else costs nothing (it cannot make us query k keepers)
        # with the configuration each was placed in: the root from which a certificate
        # of its outcome is checked (core/provenance.py)
        self._mine: OrderedDict[str, Config] = OrderedDict()
        self._valid_specs: OrderedDict[str, None] = OrderedDict()
        self.keeper = KeeperRole(self, dict(durable.get(RECORDS, {})))
        self.proposer = Proposer(self)
        self.executor = ExecutorRole(self, ad)
        self.client = ClientRole(self, dict(durable.get(SUBMISSIONS, {})))
        self.catchup = CatchUpRole(self, durable.get(MEMBERSHIP, {}))
        self._handlers: dict[type, Callable[[str, Any, float], None]] = {
            StoreSpec: self.keeper.on_store,
            StoreAck: self.client.on_store_ack,
            Prepare: self.keeper.on_prepare,
            Promise: self.proposer.on_promise,
            Refuse: self.proposer.on_refuse,
            Renew: self.keeper.on_renew,
            RenewAck: self.proposer.on_renew_ack,
            Accept: self.keeper.on_accept,
            Accepted: self.proposer.on_accepted,
            Decide: self._on_decide,
            Release: self.keeper.on_release,
            Query: self.keeper.on_query,
            Status: self._on_status,
            ParentOutcomes: self.keeper.on_parent_outcomes,
            Install: self.keeper.on_install,
            InstallAck: self.keeper.on_install_ack,
            SetAttributes: self.keeper.on_set_attributes,
            LogLines: _ignore,
            Offer: self._on_offer,
            CatchUp: self.catchup.on_request,
            CaughtUp: self.catchup.on_reply,
        }

    # --- what the roles use --------------------------------------------------------------

    def send(self, to: str, msg: Message) -> None:
        if to == self.member_id:
            self._dispatch(to, msg, self.now)  # loop back without the network
        else:
            self.out.append(Send(to, msg))
            if type(msg) in _ANSWERED:
                self.availability.asked(to, self.now)

    def publish(self, item: Announcement) -> None:
        if not isinstance(item, SpecAnnounce):
            self.out.append(Publish(item))
            return
        # Our own executor hears our announcements here (gossip does not echo them).
        self.executor.on_spec(item, self.member_id, self.now)
        # Where ranks are exact, the best-ranked executors get the announcement as a
        # direct Offer: it arrives in a millisecond where a gossip hop takes tens, and
        # costs only the executors that would claim it. A first announcement goes no
        # further; a keeper's re-announcement (round 1 on: the process still waits)
        # also goes on gossip, to every executor that can run it.
        best = self.executor.best_ranked(item.spec, OFFER_TO if item.round == 0 else 1)
        for rank, member in enumerate(best or ()):
            if member != self.member_id:
                self.send(member, Offer(item, rank))
        if not best or item.round > 0:
            self.out.append(Publish(item))

    def persist(self, table: str, key: str, value: Any) -> None:
        self.out.append(Persist(table, key, value))

    def set_timer(self, at: float, key: tuple[Any, ...]) -> None:
        self.out.append(SetTimer(at, key))

    def observe(self, kind: str, pid: str = "", data: dict[str, Any] | None = None) -> None:
        self.out.append(Observe(kind, pid, data or {}))

    def effect(self, effect: Effect) -> None:
        self.out.append(effect)

    def reject(self, code: str, detail: str) -> None:
        self.counters[code] += 1
        self.out.append(Reject(code, detail))

    def _administers(self) -> bool:
        return self.membership.role_of(self.member_id) in ("owner", "admin")

    # --- who may send what (docs/PROTOCOL.md, *Who may send what*) --------------------------

    def may_keep(self, member: str) -> bool:
        """Whether ``member`` may hold records: not a member with the role ``user`` (an id
        this node does not know may be in a newer membership; it cannot send anything
        here until this node knows it)."""
        return self.membership.role_of(member) != "user"

    def plausible_keepers(self, keepers: Sequence[str]) -> bool:
        """Whether a keeper set named in a message may be one: no member of it is a
        ``user`` (users keep nothing, so a user naming itself a keeper is a forgery)."""
        return bool(keepers) and all(self.may_keep(k) for k in keepers)

    def spec_ok(self, spec: SignedSpec, sender: str) -> bool:
        """A spec entering this node (submitted, stored, installed, announced, offered):
        for this colony and signed by its submitter, else refused and counted."""
        if spec.colony_id != self.membership.colony_id:
            self.reject("wrong_colony", f"spec of colony {spec.colony_id[:12]} from {sender}")
            return False
        if not self.spec_valid(spec):
            self.reject("bad_spec", f"spec {spec.pid[:12]} from {sender}: not its submitter's")
            return False
        return True

    def spec_valid(self, spec: SignedSpec) -> bool:
        """Whether ``spec``'s submitter signed it. Its pid hashes the whole signed spec,
        signature included, so a pid verified once stands for every copy: the daemon
        decodes a new object per message, and a spec arrives as StoreSpec, SpecAnnounce
        and Offer."""
        pid = spec.pid
        if pid in self._valid_specs:
            return True
        if not spec.valid():
            return False
        self._valid_specs[pid] = None
        if len(self._valid_specs) > RESULTS_KEPT:
            self._valid_specs.popitem(last=False)
        return True

    def report_result(self, pid: str, epoch: int, value: Outcome) -> None:
        """An outcome this node accepted from a sender entitled to tell it (its own ballot,
        its own record, the record's keepers): the daemon shows and caches these, never
        a raw Decide (anyone can send one)."""
        if value.kind == "moved" or pid in self._results:
            return
        self._results[pid] = None
        if len(self._results) > RESULTS_KEPT:
            self._results.popitem(last=False)
        self._checking.pop(pid, None)
        self.observe(
            "result",
            pid,
            {"kind": value.kind, "executor": value.executor, "epoch": epoch, "outcome": value},
        )

    def proven(
        self,
        pid: str,
        value: Outcome,
        moves: tuple[Certificate, ...],
        certificate: Certificate | None,
        status: Status | None = None,
    ) -> bool:
        """Whether ``certificate`` proves ``value`` the outcome of ``pid``, following
        ``moves`` from the placement: this node's own (its submission), or the one a
        ``status`` brought with the spec (asked with ``Query(proof=True)``)."""
        if certificate is None:
            return False
        root = self._mine.get(pid)
        if status is not None and status.spec is not None and status.placement is not None:
            spec, placed = status.spec, status.placement
            if spec.pid == pid and self.spec_valid(spec) and placement_ok(spec, placed):
                root = (placed.keepers, placed.config_version)
        if root is None:
            return False
        colony = self.membership.colony_id
        config = follow(colony, pid, root[0], root[1], moves)
        return config is not None and decision_ok(colony, pid, config, certificate, value)

    def believes(self, msg: Status) -> bool:
        """Whether the outcome ``msg`` reports (it has one) may be shown as the process's:
        only with its certificate, proven from the placement this node made (its own
        submission) or the one the Status brought (``Query(proof=True)``). A member that
        keeps no record of it could otherwise name itself keeper and report anything,
        and one keeper of a set the record moved to is not that set's majority (the
        simulator's Byzantine keepers made a submitter report their outcome so)."""
        decided = msg.decided
        if decided is None or decided.kind == "moved":
            return False
        return self.proven(msg.pid, decided, msg.moves, msg.certificate, msg)

    def _check_with_keepers(self, pid: str) -> None:
        """A decision from a sender we cannot judge (the holder's Decide to the submitter):
        ask the record's keepers, whose answers (pushed once they decide) we can."""
        if pid in self._results or pid in self._checking or pid not in self._mine:
            return
        self._checking[pid] = None
        if len(self._checking) > RESULTS_KEPT:
            self._checking.popitem(last=False)
        query = Query(pid, watch=True)
        for keeper in self.keepers_of(pid):
            if keeper != self.member_id:
                self.send(keeper, query)

    def keeper_count(self) -> int:
        """``params.keepers``, or fewer in a small colony. Never an even number above 2:
        four keepers survive one failure, as three do, for a third more messages and
        writes per process (two keep two copies where one would keep one)."""
        k = max(1, min(self.params.keepers, len(self.ring.members)))
        return k - 1 if k > 2 and k % 2 == 0 else k

    def keepers_for(self, pid: str) -> tuple[str, ...]:
        """The canonical keepers of ``pid`` (the k XOR-closest members): where a record is
        unless its submitter had to pass over some of them (see ``keepers_of``). None for
        what is no process id (any member can send any string as one)."""
        if not _is_pid(pid):
            return ()
        return self.ring.keepers_for(pid, self.keeper_count())

    def unavailable(self, member: str) -> bool:
        """Whether this node thinks ``member`` cannot answer now (core/availability.py)."""
        return member != self.member_id and self.availability.unavailable(
            member, self.now, self.ads.__contains__
        )

    def placement(self, pid: str) -> tuple[str, ...]:
        """The keepers for a new record of ``pid``: the k XOR-closest members this node
        thinks available (the canonical set when it thinks them all available). One
        member that cannot answer must not make every spec near it wait on it."""
        return self.ring.available_keepers_for(pid, self.keeper_count(), self.unavailable)

    def keepers_of(self, pid: str) -> tuple[str, ...]:
        """Where the record of ``pid`` is, as far as this node knows: its own record's
        keepers (or where it moved), a placement it made or was told of, else the
        canonical set. Records carry their keeper set; recomputing it from the pid would
        miss every record stored around an unavailable member."""
        rec = self.keeper.records.get(pid)
        if rec is not None:
            moved = rec.decided
            if moved is not None and moved.kind == "moved" and moved.moved_to:
                return moved.moved_to
            return rec.keepers
        known = self.placements.get(pid)
        if known is not None:
            return known
        pending = self.client.pending.get(pid)
        if pending is not None:
            return pending.keepers
        return self.keepers_for(pid)

    def keeper_candidates(self, pid: str) -> tuple[str, ...]:
        """Members that may keep ``pid`` when its submitter passed over some: the 2k
        XOR-closest (a placement skips at most as many as it takes), closest first."""
        return self.ring.keepers_for(pid, 2 * self.keeper_count())

    def learn_placement(self, pid: str, keepers: tuple[str, ...]) -> None:
        """``pid``'s record is kept by ``keepers``: remembered where that is not the
        canonical set (the canonical one is recomputed when asked)."""
        placements = self.placements
        if keepers == self.keepers_for(pid):
            placements.pop(pid, None)
            return
        placements[pid] = keepers
        placements.move_to_end(pid)
        if len(placements) > PLACEMENTS_KEPT:
            placements.popitem(last=False)

    def _begin(self, now: float) -> list[Effect]:
        self.now = now
        out: list[Effect] = []
        self.out = out
        return out

    # --- driver entry points ---------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        out = self._begin(now)
        self.availability.start(now)
        self.keeper.restore(now)
        self.client.restore(now)
        self.set_timer(now + self.params.tick, ("tick",))
        self._announce_self(now)
        self.catchup.start(now)
        return out

    def _announce_self(self, now: float) -> None:
        ad = self.executor.ad
        if ad is not None:
            self.publish(AdAnnounce(ad))
            self.set_timer(now + AD_EVERY, ("ad",))
        if self._administers():
            self.publish(MembershipAnnounce(self.membership))
            self.set_timer(now + MEMBERSHIP_EVERY, ("membership",))

    def on_message(self, sender: str, msg: Message, now: float) -> list[Effect]:
        out = self._begin(now)
        if self.revoked:
            return out
        if not self.membership.is_member(sender):
            self.reject(
                "not_member",
                f"message from {sender}, not a member of version {self.membership.version}",
            )
            return out
        self.lost.discard(sender)
        self.availability.heard_from(sender)
        self._dispatch(sender, msg, now)
        return out

    def on_peer_lost(self, member: str, now: float) -> list[Effect]:
        """The driver lost every connection to ``member``: its process died (the kernel
        closes a killed process's sockets at once) or the network between us failed.
        Leases it holds here end now instead of at their expiry, and rankings pass over
        it until we hear from it again. Safety does not rest on this: a holder that is
        alive after all renews before another claim wins, or loses its run to the
        claim's higher epoch, as with any expired lease."""
        out = self._begin(now)
        if self.revoked or member == self.member_id or not self.membership.is_member(member):
            return out
        self.lost.add(member)
        self.availability.lost_connection(member)
        self.observe("peer_lost", "", {"member": member})
        self.keeper.holder_lost(member, now)
        return out

    def _dispatch(self, sender: str, msg: Message, now: float) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            self.reject("unknown_type", type(msg).__name__)
            return
        handler(sender, msg, now)

    def on_announcement(self, publisher: str, item: Announcement, now: float) -> list[Effect]:
        out = self._begin(now)
        if self.revoked:
            return out
        if isinstance(item, MembershipAnnounce):
            self.catchup.on_announced(publisher, item.membership, now)
            if self.membership.is_member(publisher):
                self.availability.heard_from(publisher)
            return out
        if not self.membership.is_member(publisher):
            self.reject("not_member", f"announcement from {publisher}")
            return out
        # Any announcement says its publisher runs (the daemon passes its members'
        # address announcements, PeerAddrs, for this alone).
        self.availability.heard_from(publisher)
        if isinstance(item, SpecAnnounce):
            if self._announce_ok(item, publisher):
                self.executor.on_spec(item, publisher, now)
        elif isinstance(item, AdAnnounce):
            ad = item.ad
            if ad.executor_id != publisher or not self.membership.is_member(ad.executor_id):
                self.reject("bad_ad", f"ad for {ad.executor_id} published by {publisher}")
                return out
            if not self.may_keep(publisher):
                self.reject("bad_ad", f"ad of {publisher}, a user (users run nothing)")
                return out
            self.learn_ad(ad)
        return out

    def _announce_ok(self, item: SpecAnnounce, sender: str) -> bool:
        """An announcement (gossip or Offer) of a waiting process comes from its submitter
        or one of the keepers it names, names keepers that may keep, and carries a spec
        its submitter signed: else an executor would claim a planted spec, or claim from
        keepers a forger named (itself)."""
        if not self.spec_ok(item.spec, sender):
            return False
        if sender != item.spec.submitter and sender not in item.keepers:
            self.reject("announce_sender", f"{sender} announced {item.spec.pid[:12]}")
            return False
        if not self.plausible_keepers(item.keepers):
            self.reject("bad_keepers", f"{sender} announced {item.spec.pid[:12]} at users")
            return False
        return True

    def learn_ad(self, ad: ExecutorAd) -> None:
        """Keep ``ad`` unless an ad of its executor as new or newer is known (the caller
        has checked that the ad is its executor's). Users run nothing: their ads are
        skipped."""
        if not self.may_keep(ad.executor_id):
            return
        known = self.ads.get(ad.executor_id)
        if known is None or known.issued_at < ad.issued_at:
            self.ads[ad.executor_id] = ad
            self.executor.ads_changed(known, ad)

    def on_timer(self, key: tuple[Any, ...], now: float) -> list[Effect]:
        out = self._begin(now)
        if self.revoked:
            return out
        kind = key[0]
        if kind == "tick":
            self.keeper.tick(now)
            self.set_timer(now + self.params.tick, ("tick",))
        elif kind == "claim":
            self.executor.on_wake(now)
        elif kind == "ballot":
            self.proposer.on_timer(key[1], key[2], now)
        elif kind == "renew":
            self.proposer.on_renew_timer(key[1], key[2], now)
        elif kind == "submit":
            self.client.on_timer(key[1], now)
        elif kind == "catchup":
            self.catchup.on_timer(key[1], now)
        elif kind == "ad" and self.executor.ad is not None:
            self.publish(AdAnnounce(self.executor.ad))
            self.set_timer(now + AD_EVERY, ("ad",))
        elif kind == "membership" and self._administers():
            self.publish(MembershipAnnounce(self.membership))
            self.set_timer(now + MEMBERSHIP_EVERY, ("membership",))
        return out

    def on_execution_done(
        self, pid: str, epoch: int, result: ExecutionResult, now: float
    ) -> list[Effect]:
        out = self._begin(now)
        value = Outcome(
            "successful" if result.ok else "failed",
            # as it reads back from disk or the wire (tuples inside become lists), so that
            # the copy this node keeps compares equal to the copies its peers decode
            output=tuple(codec.to_data(list(result.output))),
            errors=result.errors,
            executor=self.member_id,
            run_epoch=epoch,
        )
        if not self.proposer.on_execution_done(pid, epoch, value, now):
            self.observe("late_result", pid, {"epoch": epoch})
        return out

    def submit(self, spec: SignedSpec, now: float) -> list[Effect]:
        """Store a signed spec at its keepers. Workflow children must come after their parents."""
        out = self._begin(now)
        self._submit(spec, now)
        return out

    def submit_workflow(self, specs: Sequence[SignedSpec], now: float) -> list[Effect]:
        out = self._begin(now)
        for spec in specs:
            self._submit(spec, now)
        return out

    def _submit(self, spec: SignedSpec, now: float) -> None:
        if not self.spec_ok(spec, self.member_id):
            return
        pid = spec.pid
        if pid in self.client.pending or pid in self.client.acknowledged:
            return  # already on its way (the client ignores it; keep its placement)
        # The parents' real keepers (they were placed just before, in this same call):
        # the child's keepers ask them for the parents' outcomes.
        parents = tuple(ParentRef(p, self.keepers_of(p)) for p in spec.parents)
        # A spec this node stored before stays where it is; a new one avoids members
        # that cannot answer.
        known = pid in self.placements or pid in self.keeper.records
        keepers = self.keepers_of(pid) if known else self.placement(pid)
        self.learn_placement(pid, keepers)
        version = self.ring.version
        self._mine[pid] = (keepers, version)
        if len(self._mine) > PLACEMENTS_KEPT:
            self._mine.popitem(last=False)
        placement = place(self.sign, spec, keepers, version, parents) if self.sign else None
        self.client.submit(StoreSpec(spec, keepers, version, parents, placement), now)

    def cancel(self, spec: SignedSpec, reason: str, now: float) -> list[Effect]:
        """End a process, waiting or running, as failed with ``reason`` (a ``cancel``
        ballot: its submitter's or an admin's; it ends a running lease, whose holder stops
        the run, and it cannot race a result: one already accepted is finished instead)."""
        out = self._begin(now)
        self.proposer.stop_run(spec.pid)
        self.proposer.begin(spec, self.keepers_of(spec.pid), 1, "cancel", reason=reason)
        return out

    def adopt_membership(self, membership: MembershipSet, now: float) -> list[Effect]:
        """A membership set signed locally by an owner or admin (the CLI signs it)."""
        out = self._begin(now)
        self._adopt((membership,), now, from_peer=False)
        return out

    # --- membership ------------------------------------------------------------------------

    def _adopt(self, chain: Sequence[MembershipSet], now: float, from_peer: bool) -> None:
        """Move to the last version of ``chain``, each version of which must follow the
        one before (the first, this node's own): see core/catchup.py."""
        current = self.membership
        try:
            new = follow_chain(current, chain)
        except ColonyError as exc:
            self.reject(exc.code, str(exc))
            return
        if new is current:
            return
        added = set(new.member_ids) - set(current.member_ids)
        removed = set(current.member_ids) - set(new.member_ids)
        self.membership = new
        self.ring = KeeperRing(new.version, new.keeper_ids)
        self.persist(MEMBERSHIP, "current", new)
        for step in chain:  # every version, for members behind this one and for joins
            self.catchup.history[step.version] = step
            self.persist(MEMBERSHIP, history_key(step.version), step)
        self.observe("membership", "", {"version": new.version})
        for gone in sorted(removed):
            self.executor.ads_changed(self.ads.pop(gone, None), None)
        if not new.is_member(self.member_id):
            self.revoked = True
            return
        self.keeper.on_membership_change(added, removed, now)
        if not from_peer or self._administers():
            self.publish(MembershipAnnounce(new))
        if added and self.executor.ad is not None:
            self.publish(AdAnnounce(self.executor.ad))  # newcomers learn who can run what

    def _on_status(self, sender: str, msg: Status, now: float) -> None:
        # Only the record's keepers (as this node knows them) tell it an outcome.
        entitled = sender in self.keepers_of(msg.pid)
        # A keeper's answer names its record's keepers (or where it moved): the way a
        # member that does not keep a process finds a record stored off its canonical
        # set, to cancel it or to ask about it again. Users keep nothing: an answer
        # naming one is a forgery. Where this node's own submission is, it placed itself:
        # only its keepers (as it knows them) tell it where the record went since. About
        # anything else, only an answer that proves where the record is (its spec,
        # placement and moves: ``Query(proof=True)``): one that merely names its sender
        # would send every later question to a member that does not answer.
        mine = msg.pid in self._mine
        if msg.known and sender in msg.keepers and msg.pid not in self.keeper.records:
            moved = msg.decided is not None and msg.decided.kind == "moved"
            target = msg.moved_to if moved else msg.keepers
            where = target if mine and entitled else self._proven_keepers(msg)
            if where and where == target and self.plausible_keepers(target):
                self.learn_placement(msg.pid, target)
        self.keeper.on_status(sender, msg, now)
        if msg.decided is not None and msg.decided.kind != "moved":
            rec = self.keeper.records.get(msg.pid)
            if rec is not None and rec.decided is not None:
                self.report_result(msg.pid, rec.decided_epoch, rec.decided)
            elif self.believes(msg):
                self.report_result(msg.pid, msg.decided_epoch, msg.decided)

    def _proven_keepers(self, msg: Status) -> tuple[str, ...] | None:
        """Where ``msg`` proves the record is: its spec's signed placement, then the
        certified moves (and the move the Status reports, with its certificate)."""
        spec = msg.spec
        if spec is None or spec.pid != msg.pid or not self.spec_valid(spec):
            return None
        moves = msg.moves
        decided, cert = msg.decided, msg.certificate
        if decided is not None and decided.kind == "moved" and cert is not None:
            moves = (*moves, cert)
        config = record_config(spec, msg.placement, moves)
        return None if config is None else config[0]

    def _on_offer(self, sender: str, msg: Offer, now: float) -> None:
        item = msg.announce
        if self._announce_ok(item, sender):
            self.executor.on_spec(item, sender, now, msg.rank)

    def learn_chain(self, chain: Sequence[MembershipSet], now: float) -> None:
        """Membership versions a peer sent, oldest first: adopted if each follows the one
        before, the first this node's own (else refused and counted, nothing changed)."""
        self._adopt(chain, now, from_peer=True)

    # --- decisions ---------------------------------------------------------------------------

    def _on_decide(self, sender: str, msg: Decide, now: float) -> None:
        if msg.pid in self.keeper.records:
            self.keeper.on_decide(sender, msg, now)
        self.learned_decision(
            msg.pid, msg.epoch, msg.value, sender, now, msg.config, msg.certificate, msg.moves
        )

    def learned_decision(
        self,
        pid: str,
        epoch: int,
        value: Outcome,
        source: str,
        now: float,
        config: str = "",
        certificate: Certificate | None = None,
        moves: tuple[Certificate, ...] = (),
    ) -> None:
        """A decided outcome, learned from ``source``. A real outcome is the process's, in
        whichever keeper set it was chosen; a move applies only to the set it moved from.
        Only this node itself and the record's keepers are believed; anyone else's word
        (the holder's Decide to the submitter: the holder is no keeper) is checked with
        the keepers first."""
        rec = self.keeper.records.get(pid)
        entitled = source == self.member_id or source in self.keepers_of(pid)
        if (
            rec is not None
            and rec.decided is None
            and not self.keeper.not_our_move(rec, value, config)
        ):
            chain = self.keeper.proof(rec, value, certificate, moves)
            if chain is not None:
                self.keeper.decide(rec, epoch, value, now, certificate, chain)
            elif source == self.member_id:
                self.keeper.decide(rec, epoch, value, now)  # its own ballot chose it
        if entitled:
            self.executor.forget(pid)
        if value.kind == "moved":
            return
        self.keeper.learn_parent(
            pid, value, now, share=True, source=source, certificate=certificate
        )
        rec = self.keeper.records.get(pid)
        if rec is not None and rec.decided is not None:
            self.report_result(pid, rec.decided_epoch, rec.decided)
        elif source == self.member_id or self.proven(pid, value, moves, certificate):
            # its own ballot, or a certificate from the keepers it placed the spec at: the
            # holder's Decide to the submitter needs no round trip to the keepers
            self.report_result(pid, epoch, value)
        elif rec is None:
            self._check_with_keepers(pid)

    # --- views for drivers and the local API ----------------------------------------------

    def record(self, pid: str) -> KeeperRecord | None:
        return self.keeper.records.get(pid)

    def status(self, pid: str, now: float) -> Status | None:
        """What this node, as a keeper, knows of a process (None if it keeps no record)."""
        rec = self.keeper.records.get(pid)
        return None if rec is None else self.keeper.status(rec, now)
