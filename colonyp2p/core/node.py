"""ColonyNode: one member's protocol state machine (client, keeper, executor roles together).

Drivers call the ``on_*`` methods and ``submit*`` with the node's own clock and
carry out the effects returned. Nothing here reads a clock, sleeps or does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from colonyp2p import codec
from colonyp2p.core.catchup import CatchUpRole
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
from colonyp2p.core.ranking import KeeperRing
from colonyp2p.core.records import KeeperRecord
from colonyp2p.errors import ColonyError
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import MembershipSet
from colonyp2p.model.signed import SignedSpec

Durable = Mapping[str, Mapping[str, Any]]
MEMBERSHIP = "membership"
AD_EVERY = 60.0
MEMBERSHIP_EVERY = 30.0


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    ok: bool
    output: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()


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
    ) -> None:
        durable = durable or {}
        self.member_id = member_id
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
        self.keeper = KeeperRole(self, dict(durable.get(RECORDS, {})))
        self.proposer = Proposer(self)
        self.executor = ExecutorRole(self, ad)
        self.client = ClientRole(self, dict(durable.get(SUBMISSIONS, {})))
        self.catchup = CatchUpRole(self)
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
            Status: self.keeper.on_status,
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

    def keeper_count(self) -> int:
        """``params.keepers``, or fewer in a small colony. Never an even number above 2:
        four keepers survive one failure, as three do, for a third more messages and
        writes per process (two keep two copies where one would keep one)."""
        k = max(1, min(self.params.keepers, len(self.ring.members)))
        return k - 1 if k > 2 and k % 2 == 0 else k

    def keepers_for(self, pid: str) -> tuple[str, ...]:
        return self.ring.keepers_for(pid, self.keeper_count())

    def _begin(self, now: float) -> list[Effect]:
        self.now = now
        out: list[Effect] = []
        self.out = out
        return out

    # --- driver entry points ---------------------------------------------------------------

    def start(self, now: float) -> list[Effect]:
        out = self._begin(now)
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
            self.learn_membership(item.membership, now)
            return out
        if not self.membership.is_member(publisher):
            self.reject("not_member", f"announcement from {publisher}")
            return out
        if isinstance(item, SpecAnnounce):
            if item.spec.colony_id != self.membership.colony_id:
                self.reject("wrong_colony", f"spec of colony {item.spec.colony_id[:12]}")
                return out
            self.executor.on_spec(item, publisher, now)
        elif isinstance(item, AdAnnounce):
            ad = item.ad
            if ad.executor_id != publisher or not self.membership.is_member(ad.executor_id):
                self.reject("bad_ad", f"ad for {ad.executor_id} published by {publisher}")
                return out
            self.learn_ad(ad)
        return out

    def learn_ad(self, ad: ExecutorAd) -> None:
        """Keep ``ad`` unless an ad of its executor as new or newer is known (the caller
        has checked that the ad is its executor's)."""
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
        if spec.colony_id != self.membership.colony_id:
            self.reject("wrong_colony", f"spec for colony {spec.colony_id[:12]}")
            return
        parents = tuple(ParentRef(p, self.keepers_for(p)) for p in spec.parents)
        store = StoreSpec(spec, self.keepers_for(spec.pid), self.ring.version, parents)
        self.client.submit(store, now)

    def cancel(self, spec: SignedSpec, reason: str, now: float) -> list[Effect]:
        """End a process that has not started as failed with ``reason`` (a ``fail`` ballot:
        keepers refuse it while an executor holds the lease, and it cannot race a result)."""
        out = self._begin(now)
        self.proposer.begin(spec, self.keepers_for(spec.pid), 1, "fail", reason=reason)
        return out

    def adopt_membership(self, membership: MembershipSet, now: float) -> list[Effect]:
        """A membership set signed locally by an owner or admin (the CLI signs it)."""
        out = self._begin(now)
        self._adopt(membership, now, from_peer=False)
        return out

    # --- membership ------------------------------------------------------------------------

    def _adopt(self, new: MembershipSet, now: float, from_peer: bool) -> None:
        current = self.membership
        if new.version <= current.version:
            return
        try:
            current.verify_successor(new)
        except ColonyError as exc:
            self.reject(exc.code, str(exc))
            return
        added = set(new.member_ids) - set(current.member_ids)
        removed = set(current.member_ids) - set(new.member_ids)
        self.membership = new
        self.ring = KeeperRing(new.version, new.keeper_ids)
        self.persist(MEMBERSHIP, "current", new)
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

    def _on_offer(self, sender: str, msg: Offer, now: float) -> None:
        item = msg.announce
        if item.spec.colony_id != self.membership.colony_id:
            self.reject("wrong_colony", f"offer of colony {item.spec.colony_id[:12]}")
            return
        self.executor.on_spec(item, sender, now, msg.rank)

    def learn_membership(self, membership: MembershipSet, now: float) -> None:
        """A membership version a peer sent: adopted if it is a valid successor."""
        self._adopt(membership, now, from_peer=True)

    # --- decisions ---------------------------------------------------------------------------

    def _on_decide(self, sender: str, msg: Decide, now: float) -> None:
        if msg.pid in self.keeper.records:
            self.keeper.on_decide(sender, msg, now)
        self.learned_decision(msg.pid, msg.epoch, msg.value, sender, now, msg.config)

    def learned_decision(
        self, pid: str, epoch: int, value: Outcome, source: str, now: float, config: str = ""
    ) -> None:
        """A decided outcome, learned from ``source``. A real outcome is the process's, in
        whichever keeper set it was chosen; a move applies only to the set it moved from."""
        self.executor.forget(pid)
        rec = self.keeper.records.get(pid)
        if (
            rec is not None
            and rec.decided is None
            and (source == self.member_id or source in rec.keepers)
            and not (value.kind == "moved" and self.keeper.foreign(rec, config))
        ):
            self.keeper.decide(rec, epoch, value, now)
        if value.kind != "moved":
            self.keeper.learn_parent(pid, value, now, share=True)

    # --- views for drivers and the local API ----------------------------------------------

    def record(self, pid: str) -> KeeperRecord | None:
        return self.keeper.records.get(pid)

    def status(self, pid: str, now: float) -> Status | None:
        """What this node, as a keeper, knows of a process (None if it keeps no record)."""
        rec = self.keeper.records.get(pid)
        return None if rec is None else self.keeper.status(rec, now)
