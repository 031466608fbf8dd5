"""The keeper role: holds the authoritative records of the processes closest to it.

A keeper answers ballots (Prepare = lease request, Accept = outcome, Decide),
and runs maintenance on its records: expired leases, re-announcements,
maxwaittime and maxretries, workflow parents, anti-entropy and hand-off.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import TYPE_CHECKING

from colonyp2p.core import provenance
from colonyp2p.core.matching import matches
from colonyp2p.core.messages import (
    Accept,
    Accepted,
    Certificate,
    Decide,
    Install,
    InstallAck,
    Outcome,
    ParentOutcomes,
    ParentProof,
    Prepare,
    Promise,
    Purpose,
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
    Transfer,
)
from colonyp2p.core.ranking import config_tag, majority
from colonyp2p.core.records import KeeperRecord
from colonyp2p.model.membership import KEEPER_ROLES

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode
    from colonyp2p.model.spec import FunctionSpec

RECORDS = "records"


SILENT_EXPIRIES_PER_TRY = 3


def _out_of_tries(spec: FunctionSpec, attempts: int, silent: int) -> bool:
    """Whether a process has used up its tries (ColonyOS's maxretries).

    A lease that ran out after its holder renewed it is a run that used a try. One that
    ran out before any renewal is not known to have run: the claim may have lost a
    contended ballot and its Release come late or been lost with a connection (a member
    just joining). Those count against a budget SILENT_EXPIRIES_PER_TRY times larger, so
    that a process which kills its executor as it starts still ends.
    """
    if attempts > spec.maxretries and attempts > 0:
        return True
    return silent >= SILENT_EXPIRIES_PER_TRY * (spec.maxretries + 1)


def value_id(value: Outcome) -> str:
    """The identity of an outcome: the run that produced it (re-proposals keep it)."""
    return f"{value.kind}:{value.executor}:{value.run_epoch}"


class KeeperRole:
    def __init__(self, node: ColonyNode, records: dict[str, KeeperRecord]) -> None:
        self.node = node
        self.records = records
        self._due: list[tuple[float, str]] = []
        self._next_due: dict[str, float] = {}
        # volatile bookkeeping, rebuilt lazily after a restart
        self._announced_at: dict[str, float] = {}
        self._announce_round: dict[str, int] = {}
        self._quiet_since: dict[str, float] = {}
        self._watchers: dict[str, list[str]] = {}
        self._waiting_on_parent: dict[str, list[str]] = {}
        self._parent_poll: dict[str, int] = {}
        self._install_acks: dict[str, set[str]] = {}
        self._known_since: dict[str, float] = {}
        self._first_seen: dict[tuple[str, str], float] = {}
        self._replicas_asked: dict[str, float] = {}
        self._replicas_known: dict[str, set[str]] = {}
        # member -> pids it was last promised (so a lost member's leases are found
        # without a scan of every record); entries go when the record is decided
        self._held: dict[str, set[str]] = {}
        # parents whose records moved after their children were stored (parent -> its
        # new keepers): the children's ParentRefs name the old ones
        self._parent_moved: dict[str, tuple[str, ...]] = {}
        # undecided records of which a newer configuration of the same keeper set exists
        # (a ballot of ours met its promises): they wait for its decision, passively
        self._superseded: set[str] = set()
        # pids whose holder was lost here and that wait for their re-announcement: every
        # keeper that notices announces at once, not in its turn. The first in turn may
        # not have noticed yet, and a claim it refused as leased meanwhile gave up.
        self._holder_lost: set[str] = set()
        # per submitter: its undecided records here, and its StoreSpec token bucket
        # (tokens, at): what one member's valid key makes this keeper store is bounded
        self._waiting_of: dict[str, int] = {}
        # pid -> members of the keeper sets its record moved through after ours, as their
        # keepers told us (volatile): who may replace our copy with a newer configuration
        self._moved_through: dict[str, set[str]] = {}
        self._moves_asked: dict[str, float] = {}
        self._store_tokens: dict[str, tuple[float, float]] = {}
        # child -> parent -> the proof of the parent outcome this node took (volatile,
        # until it shares the child's parent outcomes with its fellows)
        self._parent_proofs: dict[str, dict[str, ParentProof]] = {}

    # --- lifecycle -------------------------------------------------------------------

    def restore(self, now: float) -> None:
        lease = self.node.params.lease_seconds
        for pid, rec in list(self.records.items()):
            if not rec.released and rec.decided is None:
                # Renewals are not persisted: assume the holder may live one more lease.
                rec = dataclasses.replace(rec, lease_until=max(rec.lease_until, now + lease))
                self.records[pid] = rec
                self._held.setdefault(rec.holder, set()).add(pid)
            self._index_parents(rec)
            self._quiet_since[pid] = now
            self.schedule(pid, now)
            self._count_waiting(None, rec)

    def _index_parents(self, rec: KeeperRecord) -> None:
        if rec.parents and rec.decided is None and not rec.parents_known():
            for ref in rec.parents:
                if rec.parent_outcome(ref.pid) is None:
                    self._waiting_on_parent.setdefault(ref.pid, []).append(rec.pid)

    def schedule(self, pid: str, at: float) -> None:
        current = self._next_due.get(pid)
        if current is None or at < current:
            self._next_due[pid] = at
            heapq.heappush(self._due, (at, pid))

    def _save(self, rec: KeeperRecord, now: float) -> None:
        self._count_waiting(self.records.get(rec.pid), rec)
        self.records[rec.pid] = rec
        self._quiet_since[rec.pid] = now
        self.node.persist(RECORDS, rec.pid, rec)

    def _rank(self, rec: KeeperRecord) -> int:
        """This keeper's turn among the record's keepers, not counting lost or
        unavailable ones (core/availability.py): the next live keeper acts at once when
        the first has died, never started or stopped answering."""
        node = self.node
        me, lost = node.member_id, node.lost
        rank = 0
        for keeper in rec.keepers:
            if keeper == me:
                return rank
            if keeper not in lost and not node.unavailable(keeper):
                rank += 1
        return len(rec.keepers)

    def _count_waiting(self, old: KeeperRecord | None, new: KeeperRecord) -> None:
        delta = (new.decided is None) - (old is not None and old.decided is None)
        if delta:
            submitter = new.spec.submitter
            self._waiting_of[submitter] = self._waiting_of.get(submitter, 0) + delta

    def waiting_of(self, submitter: str) -> int:
        """How many undecided records of ``submitter`` this keeper holds."""
        return self._waiting_of.get(submitter, 0)

    def _store_quota(self, sender: str, now: float) -> str:
        """Why a new record of ``sender`` is not stored now (empty: it is): "quota" when
        it holds params.max_waiting_per_submitter undecided records here (refused, the
        submitter's user is told), "rate" beyond params.store_rate a second after a
        burst of params.store_burst (not answered: the submitter's resend comes later)."""
        p = self.node.params
        if self._waiting_of.get(sender, 0) >= p.max_waiting_per_submitter:
            return "quota"
        tokens, at = self._store_tokens.get(sender, (p.store_burst, now))
        tokens = min(p.store_burst, tokens + (now - at) * p.store_rate)
        if tokens < 1.0:
            self._store_tokens[sender] = (tokens, now)
            return "rate"
        self._store_tokens[sender] = (tokens - 1.0, now)
        return ""

    # --- messages ----------------------------------------------------------------------

    def on_store(self, sender: str, msg: StoreSpec, now: float) -> None:
        node = self.node
        pid = msg.spec.pid
        if node.member_id not in msg.keepers:
            node.reject("not_keeper", f"{sender} asked {node.member_id} to keep {pid[:12]}")
            return
        if msg.spec.submitter != sender:
            # The envelope proves who sent it; a spec in someone else's name is a forgery
            # (its submitter may cancel it and receives its logs).
            node.reject("not_submitter", f"{sender} stored a spec of {msg.spec.submitter}")
            return
        if not node.spec_ok(msg.spec, sender):
            return
        if not node.plausible_keepers(msg.keepers):
            node.reject("bad_keepers", f"{sender} named users as keepers of {pid[:12]}")
            return
        placed = msg.placement
        if (
            placed is None
            or (placed.keepers, placed.config_version, placed.parents)
            != (msg.keepers, msg.config_version, msg.parents)
            or not provenance.placement_ok(msg.spec, placed)
        ):
            # the root of the record's provenance: without it no member the record is
            # handed to later could tell it from a forgery
            node.reject("bad_placement", f"{sender} stored {pid[:12]} without its placement")
            return
        rec = self.records.get(pid)
        if rec is None:
            over = self._store_quota(sender, now)
            if over:
                waiting = self._waiting_of.get(sender, 0)
                node.reject(f"store_{over}", f"{sender} stored {pid[:12]} ({waiting} waiting)")
                if over == "quota":
                    node.send(sender, StoreAck(pid, refused=over))
                return
            rec = KeeperRecord(
                spec=msg.spec,
                pid=pid,
                keepers=msg.keepers,
                config_version=msg.config_version,
                parents=msg.parents,
                stored_at=now,
                placement=placed,
            )
            self._save(rec, now)
            node.observe("stored", pid)
            self._announced_at[pid] = now
            self._index_parents(rec)
            self.schedule(pid, now + (0.0 if rec.parents else node.params.reannounce_after))
        node.send(sender, StoreAck(pid))

    def _ballot_refusal(self, sender: str, purpose: str, rec: KeeperRecord) -> tuple[str, str]:
        """Who may open a ballot (code and detail of the refusal, or empty): a claim, a
        member that may run processes (not a ``user``) whose signed ad, where this keeper
        knows it, matches the spec (ads gossip: one not known yet is not held against the
        claimant, whose role an admin gave); a move or a recovery, the record's keepers; a
        fail, the record's keepers, the spec's submitter or an admin; a cancel (which may
        end a running process's lease), only the spec's submitter or an admin."""
        node = self.node
        if purpose == "claim":
            role = node.membership.role_of(sender)
            if role not in KEEPER_ROLES:
                return "claim_role", f"{sender} ({role}) claimed {rec.pid[:12]}"
            ad = node.ads.get(sender)
            if ad is not None and not matches(rec.spec.spec, ad):
                return "claim_ad", f"{sender}'s ad does not match {rec.pid[:12]}"
            return "", ""
        if purpose != "cancel" and (sender == node.member_id or sender in rec.keepers):
            return "", ""
        if purpose in ("fail", "cancel") and (
            sender == rec.spec.submitter or node.membership.can_administer(sender)
        ):
            return "", ""
        return "ballot_sender", f"{sender} opened a {purpose} ballot on {rec.pid[:12]}"

    def _value_refusal(
        self, sender: str, rec: KeeperRecord, value: Outcome, epoch: int
    ) -> tuple[str, str]:
        """What a holder may have decided (code and detail of the refusal, or empty): the
        record's keepers run recoveries and moves, which propose any value; anyone else
        proposes its own run's outcome (a claim) or a failure (a cancel), or a value this
        keeper accepted itself (a re-proposal). A claimant that re-proposes a value only
        other keepers accepted is refused here; the keepers' recovery finishes it."""
        if sender == self.node.member_id or sender in rec.keepers:
            return "", ""
        if rec.accepted is not None and rec.accepted_epoch <= epoch and rec.accepted == value:
            return "", ""
        if rec.purpose == "claim" and value.kind in ("successful", "failed"):
            return "", ""
        if rec.purpose in ("fail", "cancel") and value.kind == "failed":
            return "", ""
        detail = f"{sender}'s {rec.purpose} ballot proposed {value.kind} ({rec.pid[:12]})"
        return "bad_value", detail

    def on_prepare(self, sender: str, msg: Prepare, now: float) -> None:
        node = self.node
        rec = self.records.get(msg.pid)
        if rec is None:
            node.send(sender, Refuse(msg.pid, msg.epoch, "unknown"))
            return
        if rec.decided is not None:
            if rec.decided.kind == "moved":
                node.send(
                    sender, Refuse(msg.pid, msg.epoch, "moved", moved_to=rec.decided.moved_to)
                )
            else:
                node.send(
                    sender,
                    Refuse(
                        msg.pid,
                        msg.epoch,
                        "decided",
                        rec.promised,
                        rec.decided,
                        rec.decided_epoch,
                        certificate=rec.certificate,
                        moves=rec.moves,
                    ),
                )
            return
        if self.foreign(rec, msg.config):
            # The proposer addresses another keeper set than the one our record belongs to.
            if self._moved_keepers(rec) is None:
                node.send(sender, Refuse(msg.pid, msg.epoch, "moved", moved_to=rec.keepers))
            else:
                node.send(sender, Refuse(msg.pid, msg.epoch, "unknown"))
            return
        # Who may open a ballot is judged once the ballot is known to be for this record
        # (the answers above only say what anyone may Query).
        code, detail = self._ballot_refusal(sender, msg.purpose, rec)
        if code:
            node.reject(code, detail)
            node.send(sender, Refuse(msg.pid, msg.epoch, "not_ready", rec.promised))
            return
        if msg.epoch == rec.promised and sender == rec.holder and not rec.released:
            node.send(sender, self._promise(rec, now))  # a resent Prepare: same answer
            return
        preempted = rec.leased(now) and rec.holder != sender
        if preempted and msg.purpose != "cancel":
            # Said before a stale epoch: a claimant that lost to a live lease must give
            # up, not retry at a higher epoch and take the winner's keepers from it.
            node.send(sender, Refuse(msg.pid, msg.epoch, "leased", rec.promised))
            return
        if msg.epoch <= rec.promised:
            node.send(sender, Refuse(msg.pid, msg.epoch, "stale_epoch", rec.promised))
            return
        if preempted:
            # A cancel ends the running lease: its holder hears so now rather than at its
            # next renewal, and stops the run (a majority of these, as of failed renewals).
            # A result it already had accepted still wins: the canceller's ballot finds it
            # in the promises and finishes it (Paxos), so a cancel never races a result.
            node.send(rec.holder, RenewAck(msg.pid, rec.promised, False, 0.0))
        if msg.purpose == "claim" and (not rec.ready() or self._must_leave(rec)):
            node.send(sender, Refuse(msg.pid, msg.epoch, "not_ready", rec.promised))
            return
        attempts, silent = rec.expired_attempts, rec.silent_expiries
        if not rec.leased(now) and self._unfinished_claim(rec):
            # the previous claim's lease ran out (see _out_of_tries)
            attempts, silent = (attempts + 1, silent) if rec.ran else (attempts, silent + 1)
            if msg.purpose == "claim" and _out_of_tries(rec.spec.spec, attempts, silent):
                # No claim gets it any more; the keepers fail it, saying why.
                counted = dataclasses.replace(
                    rec, released=True, expired_attempts=attempts, silent_expiries=silent
                )
                self._save(counted, now)
                node.send(sender, Refuse(msg.pid, msg.epoch, "not_ready", rec.promised))
                self.schedule(rec.pid, now)
                return
        rec = dataclasses.replace(
            rec,
            promised=msg.epoch,
            holder=sender,
            purpose=msg.purpose,
            lease_until=now + node.params.lease_seconds,
            lease_started=now,
            released=False,
            ran=False,
            expired_attempts=attempts,
            silent_expiries=silent,
            started_at=rec.started_at or (now if msg.purpose == "claim" else 0.0),
        )
        self._save(rec, now)
        self._held.setdefault(sender, set()).add(rec.pid)
        node.observe(
            "promised",
            rec.pid,
            {
                "epoch": msg.epoch,
                "holder": sender,
                "config": config_tag(rec.keepers),
                "version": rec.config_version,
            },
        )
        node.send(sender, self._promise(rec, now))
        self.schedule(rec.pid, rec.lease_until)

    def _promise(self, rec: KeeperRecord, now: float) -> Promise:
        return Promise(
            pid=rec.pid,
            epoch=rec.promised,
            lease_seconds=max(0.0, rec.lease_until - now),
            accepted_epoch=rec.accepted_epoch,
            accepted=rec.accepted,
            expired_attempts=rec.expired_attempts,
            inputs=rec.inputs() if rec.parents_known() else None,
            config_version=rec.config_version,
            moves=rec.moves,
        )

    def on_renew(self, sender: str, msg: Renew, now: float) -> None:
        node = self.node
        rec = self.records.get(msg.pid)
        if (
            rec is None
            or rec.decided is not None
            or rec.promised != msg.epoch
            or rec.holder != sender
            or rec.released
            or self.foreign(rec, msg.config)
        ):
            node.send(sender, RenewAck(msg.pid, msg.epoch, False, 0.0))
            return
        until = now + node.params.lease_seconds
        maxexec = rec.spec.spec.maxexectime
        if maxexec > 0:
            until = min(until, rec.lease_started + maxexec)
        if until <= now:
            # maxexectime is over: the lease ends now and the run counts as an attempt
            self.records[rec.pid] = dataclasses.replace(rec, lease_until=now, ran=True)
            node.send(sender, RenewAck(msg.pid, msg.epoch, False, 0.0))
            self.schedule(rec.pid, now)
            return
        # Renewals are volatile on purpose (see restore): no Persist on this hot path. A
        # keeper restarted meanwhile forgets that the holder ran, and so does not count
        # the run if its lease then expires: it errs towards one more try.
        self.records[rec.pid] = dataclasses.replace(rec, lease_until=until, ran=True)
        node.send(sender, RenewAck(msg.pid, msg.epoch, True, until - now))

    def on_accept(self, sender: str, msg: Accept, now: float) -> None:
        node = self.node
        rec = self.records.get(msg.pid)
        if rec is None:
            node.send(sender, Accepted(msg.pid, msg.epoch, False, "unknown"))
            return
        if rec.decided is not None:
            same = rec.decided == msg.value
            node.send(sender, Accepted(msg.pid, msg.epoch, same, "" if same else "decided"))
            return
        if self.foreign(rec, msg.config):
            node.send(sender, Accepted(msg.pid, msg.epoch, False, "moved"))
            return
        if msg.epoch != rec.promised or rec.holder != sender:
            node.send(sender, Accepted(msg.pid, msg.epoch, False, "stale_epoch"))
            return
        code, detail = self._value_refusal(sender, rec, msg.value, msg.epoch)
        if code:
            node.reject(code, detail)
            node.send(sender, Accepted(msg.pid, msg.epoch, False, code))
            return
        if rec.accepted_epoch == msg.epoch and rec.accepted == msg.value:
            vote = self._vote(rec, msg.epoch, msg.value)
            node.send(sender, Accepted(msg.pid, msg.epoch, True, "", rec.config_version, vote))
            return
        rec = dataclasses.replace(rec, accepted_epoch=msg.epoch, accepted=msg.value)
        self._save(rec, now)
        node.observe(
            "accepted",
            rec.pid,
            {
                "epoch": msg.epoch,
                "value": value_id(msg.value),
                "kind": msg.value.kind,
                "keepers": rec.keepers,
                "version": rec.config_version,
            },
        )
        vote = self._vote(rec, msg.epoch, msg.value)
        node.send(sender, Accepted(msg.pid, msg.epoch, True, "", rec.config_version, vote))

    def _vote(self, rec: KeeperRecord, epoch: int, value: Outcome) -> bytes:
        """This keeper's signature on ``value`` accepted at ``epoch`` in ``rec``'s
        configuration: a majority of these certify the choice (core/provenance.py)."""
        sign = self.node.sign
        if sign is None:
            return b""
        colony = rec.spec.colony_id
        return provenance.sign_vote(
            sign, colony, rec.pid, rec.keepers, rec.config_version, epoch, value
        )

    def proof(
        self,
        rec: KeeperRecord,
        value: Outcome,
        cert: Certificate | None,
        moves: tuple[Certificate, ...] = (),
    ) -> tuple[Certificate, ...] | None:
        """The moves to keep with ``cert`` where it proves ``value`` the outcome of
        ``rec``'s process (None where it does not): chosen in ``rec``'s own
        configuration (its own moves), or, for a real outcome, in the configuration
        ``moves`` lead to from its placement. A real outcome is the process's wherever it
        was chosen: a record this node holds in another configuration (a claimant's
        ballot addressed the set the record moved to) takes it with that set's moves,
        and can then hand it on with a proof."""
        if cert is None or cert.value != value:
            return None
        if cert.keepers == rec.keepers and cert.config_version == rec.config_version:
            chain = rec.moves
        elif value.kind != "moved" and provenance.record_config(rec.spec, rec.placement, moves) == (
            cert.keepers,
            cert.config_version,
        ):
            chain = moves
        else:
            return None
        return chain if provenance.certificate_ok(rec.spec.colony_id, rec.pid, cert) else None

    def on_decide(self, sender: str, msg: Decide, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is None or rec.decided is not None:
            return
        if self.not_our_move(rec, msg.value, msg.config):
            return
        # A decision is taken from this node's own ballot or with its certificate: a
        # majority of this configuration's keepers signed it (core/provenance.py). Not
        # on anyone's word, a fellow keeper's included: one keeper cannot make the
        # others decide what it likes.
        chain = self.proof(rec, msg.value, msg.certificate, msg.moves)
        if chain is None:
            if sender == self.node.member_id:
                self.decide(rec, msg.epoch, msg.value, now)  # its own ballot chose it
            else:
                # We cannot check the claim ourselves: ask the other keepers, who can.
                self._ask_peers(rec)
            return
        self.decide(rec, msg.epoch, msg.value, now, msg.certificate, chain)

    def decide(
        self,
        rec: KeeperRecord,
        epoch: int,
        value: Outcome,
        now: float,
        certificate: Certificate | None = None,
        moves: tuple[Certificate, ...] | None = None,
    ) -> None:
        """Record the decision, with its certificate and the moves that lead to it (see
        ``proof``, which callers ran): they go with the record wherever it is handed. A
        decision without them (its own ballot, whose checked votes did not make a
        majority) gets them from a fellow's Status later."""
        if certificate is None or moves is None:
            certificate, moves = None, rec.moves
        rec = dataclasses.replace(
            rec,
            decided=value,
            decided_epoch=epoch,
            released=True,
            lease_until=0.0,
            ended_at=now,
            certificate=certificate,
            moves=moves,
        )
        self._save(rec, now)
        held = self._held.get(rec.holder)
        if held is not None:
            held.discard(rec.pid)
        self._holder_lost.discard(rec.pid)
        self._superseded.discard(rec.pid)
        self._parent_proofs.pop(rec.pid, None)
        # acks of an earlier hand-off of this pid (the record moved here from a set it had
        # moved away to before) say nothing about this decision's hand-off
        self._install_acks.pop(rec.pid, None)
        for action in ("recover", "move", "fail"):
            self._first_seen.pop((rec.pid, action), None)
        if value.kind != "moved":
            # a chosen outcome is never replaced: nobody need be asked where it went
            self._moved_through.pop(rec.pid, None)
            self._moves_asked.pop(rec.pid, None)
        node = self.node
        node.observe(
            "decided", rec.pid, {"epoch": epoch, "kind": value.kind, "value": value_id(value)}
        )
        status = self.status(rec, now)
        for watcher in self._watchers.pop(rec.pid, []):
            node.send(watcher, status)
        if value.kind == "moved":
            self.schedule(rec.pid, now)

    def on_release(self, sender: str, msg: Release, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is None or rec.promised != msg.epoch or rec.holder != sender or rec.released:
            return
        rec = dataclasses.replace(rec, released=True, lease_until=0.0)
        self._save(rec, now)
        self.schedule(rec.pid, now)

    def on_query(self, sender: str, msg: Query, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is None:
            self.node.send(sender, Status(msg.pid, False))
            return
        if msg.watch and rec.decided is None:
            watchers = self._watchers.setdefault(msg.pid, [])
            if sender not in watchers:
                watchers.append(sender)
        self.node.send(sender, self.status(rec, now, msg.proof))

    def status(self, rec: KeeperRecord, now: float, proof: bool = False) -> Status:
        decided = rec.decided
        return Status(
            pid=rec.pid,
            known=True,
            state=rec.state(now),
            promised=rec.promised,
            decided=decided,
            decided_epoch=rec.decided_epoch,
            moved_to=decided.moved_to if decided and decided.kind == "moved" else (),
            config=config_tag(rec.keepers),
            keepers=rec.keepers,
            config_version=rec.config_version,
            moves=rec.moves,
            certificate=rec.certificate,
            placement=rec.placement if proof else None,
            spec=rec.spec if proof else None,
        )

    def on_status(self, sender: str, msg: Status, now: float) -> None:
        """Statuses answer anti-entropy queries (about our records) and parent polls."""
        rec = self.records.get(msg.pid)
        if not msg.known:
            self.repair(sender, rec)
            return
        if rec is not None and sender in rec.keepers:
            behind = msg.decided is None or msg.decided.kind == "moved"
            if behind and msg.config_version < rec.config_version:
                # A fellow keeper holds an older configuration, of this keeper set (the
                # record moved away and back while it was down or cut off) or of another
                # it was in (it missed the moves that brought the record here): it waits,
                # superseded, for a decision that needs its promise in ours. Give it ours.
                # (Skipping other sets' answers left such a fellow out for good: with two
                # of five keepers revoked, the three left were never a majority again.)
                self.repair(sender, rec)
            elif not self.foreign(rec, msg.config):
                self._replicas_known.setdefault(msg.pid, set()).add(sender)
        if msg.decided is None:
            return
        if (
            rec is not None
            and msg.decided.kind == "moved"
            and msg.moved_to
            and self._may_replace(sender, rec)
            and msg.decided.moved_version > rec.config_version
            and self.node.plausible_keepers(msg.moved_to)
        ):
            # where our record went, from a keeper of it or of a set it went to since:
            # their keepers may hand us the newer configuration (_install_refusal)
            self._moved_through.setdefault(msg.pid, set()).update(msg.moved_to)
        chain = None
        if rec is not None and (rec.decided is None or rec.certificate is None):
            chain = self.proof(rec, msg.decided, msg.certificate, msg.moves)
        if (
            rec is not None
            and rec.decided is None
            and chain is not None
            and not self.not_our_move(rec, msg.decided, msg.config)
        ):
            self.decide(rec, msg.decided_epoch, msg.decided, now, msg.certificate, chain)
        elif rec is not None and rec.decided == msg.decided and chain is not None:
            # decided here without a proof (its own ballot, whose checked votes did not
            # make a majority): a fellow's certificate completes the record, so that it
            # can be handed on
            proven = dataclasses.replace(rec, certificate=msg.certificate, moves=chain)
            self._save(proven, now)
        if msg.decided.kind != "moved":
            self.learn_parent(
                msg.pid,
                msg.decided,
                now,
                share=True,
                source=sender,
                moves=msg.moves,
                certificate=msg.certificate,
            )
        elif msg.moved_to and msg.pid in self._waiting_on_parent:
            # A parent's record moved since its child was stored: ask where it is now. A
            # keeper of it says so (one that may keep, naming members that may keep: the
            # record may have moved more than once, so its keepers as the children's
            # ParentRefs name them are not the only ones that can tell).
            if not self.node.may_keep(sender) or not self.node.plausible_keepers(msg.moved_to):
                self.node.reject("parent_sender", f"{sender} moved parent {msg.pid[:12]}")
                return
            self._parent_moved[msg.pid] = msg.moved_to

    def _parent_source(
        self,
        child: str,
        parent: str,
        source: str,
        outcome: Outcome,
        moves: tuple[Certificate, ...],
        certificate: Certificate | None,
    ) -> bool:
        """Whether ``child``'s keepers take ``outcome`` as ``parent``'s: from this node
        itself (it decided it), else with the parent's certificate, signed by a majority
        of the parent's keepers as the child's ParentRef names them (the child's
        submitter signed those) or of a set they certifiably moved it to. One keeper of
        the parent is not believed alone; a parent's keeper saying it moved says where
        to ask (``_parent_moved``), not whom to believe."""
        if source == self.node.member_id:
            return True
        rec = self.records.get(child)
        if rec is None:
            return False
        for ref in rec.parents:
            if ref.pid != parent:
                continue
            if certificate is not None:
                colony = rec.spec.colony_id
                config = provenance.follow_from(colony, parent, ref.keepers, moves)
                if config is not None and provenance.decision_ok(
                    colony, parent, config, certificate, outcome
                ):
                    return True
        return False

    @classmethod
    def not_our_move(cls, rec: KeeperRecord, value: Outcome, config: str) -> bool:
        """Whether ``value`` is a move of another configuration than ``rec``'s: of
        another keeper set (``config``), or of an older record of this same set (a move
        always goes to a newer membership version than the record it moves; a record
        can move away and back to the same keepers, and the old one's late Decide must
        not end the new one)."""
        return value.kind == "moved" and (
            cls.foreign(rec, config) or value.moved_version <= rec.config_version
        )

    @staticmethod
    def foreign(rec: KeeperRecord, config: str) -> bool:
        """Whether a message tagged ``config`` is about another keeper set's record."""
        return bool(config) and config != config_tag(rec.keepers)

    def _replicas_complete(self, rec: KeeperRecord) -> bool:
        known = self._replicas_known.get(rec.pid, set())
        return all(k in known or k == self.node.member_id for k in rec.keepers)

    def repair(self, peer: str, rec: KeeperRecord | None) -> None:
        """A fellow keeper never got a record (it was down or cut off when the spec was
        stored): give it ours. It never promised or accepted anything for this process,
        so installing our promised epoch only makes it refuse more."""
        if rec is None or peer not in rec.keepers:
            return
        if rec.decided is not None and rec.decided.kind == "moved":
            return
        self.node.send(peer, Install(rec.transfer(rec.keepers, rec.config_version, rec.promised)))

    def learn_parent(
        self,
        parent: str,
        outcome: Outcome,
        now: float,
        share: bool,
        source: str,
        moves: tuple[Certificate, ...] = (),
        certificate: Certificate | None = None,
    ) -> None:
        """``parent`` decided ``outcome``, says ``source``: the children waiting on it
        that may believe it take it (see _parent_source); the others wait for the
        parent's keepers."""
        own = self.records.get(parent)
        if own is not None and own.decided is not None and own.decided.kind != "moved":
            # this node keeps the parent too: its own record's decision is the one to take
            outcome, source = own.decided, self.node.member_id
            moves, certificate = own.moves, own.certificate
        waiting = self._waiting_on_parent.pop(parent, [])
        kept = [
            c
            for c in waiting
            if not self._parent_source(c, parent, source, outcome, moves, certificate)
        ]
        if kept:
            self._waiting_on_parent[parent] = kept
        else:
            self._parent_moved.pop(parent, None)
        proof = None if certificate is None else ParentProof(parent, moves, certificate)
        for child in waiting:
            if child not in kept:
                self._set_parent(child, parent, outcome, now, share, proof)

    def _set_parent(
        self,
        child: str,
        parent: str,
        outcome: Outcome,
        now: float,
        share: bool,
        proof: ParentProof | None,
    ) -> None:
        rec = self.records.get(child)
        if rec is None or rec.decided is not None or rec.parent_outcome(parent) is not None:
            return
        rec = dataclasses.replace(rec, parent_outcomes=(*rec.parent_outcomes, (parent, outcome)))
        if proof is not None and share:
            self._parent_proofs.setdefault(child, {})[parent] = proof
        if not rec.parents_known():
            # Volatile until the last parent is known: persisting the growing record
            # at each parent would cost a fan-in of n parents O(n^2) bytes written.
            # A restart loses only what _poll_parents asks the parents' keepers again.
            self.records[child] = rec
            return
        self._save(rec, now)
        self._known_since[child] = now
        proofs = self._parent_proofs.pop(child, {})
        if share:
            msg = ParentOutcomes(child, rec.parent_outcomes, tuple(proofs.values()))
            for peer in rec.keepers:
                if peer != self.node.member_id:
                    self.node.send(peer, msg)
        self.schedule(child, now)

    def on_parent_outcomes(self, sender: str, msg: ParentOutcomes, now: float) -> None:
        """A fellow keeper of the child (and only one: it asked the parents' keepers)
        shares what they said; it feeds this child alone, only its own parents, and
        each only with its proof (a parent outcome without one is asked for again)."""
        rec = self.records.get(msg.pid)
        if rec is None:
            return
        if sender not in rec.keepers:
            # A keeper of another configuration of the record (it moved) is ignored, as it
            # always was; anyone else is refused and counted.
            if not self.node.may_keep(sender):
                self.node.reject(
                    "parent_sender", f"{sender} sent parent outcomes of {msg.pid[:12]}"
                )
            return
        parents = {ref.pid for ref in rec.parents}
        proofs = {p.parent: p for p in msg.proofs}
        for parent, outcome in msg.outcomes:
            proof = proofs.get(parent)
            if proof is None or not self._parent_source(
                msg.pid, parent, sender, outcome, proof.moves, proof.certificate
            ):
                continue
            if parent in parents and rec.parent_outcome(parent) is None:
                waiting = self._waiting_on_parent.get(parent)
                if waiting is not None and msg.pid in waiting:
                    waiting.remove(msg.pid)
                    if not waiting:
                        del self._waiting_on_parent[parent]
                self._set_parent(msg.pid, parent, outcome, now, share=False, proof=None)
                rec = self.records.get(msg.pid, rec)

    def _install_refusal(
        self, sender: str, t: Transfer, rec: KeeperRecord | None
    ) -> tuple[str, str]:
        """Who may hand this node a record (code and detail of the refusal, or empty): a
        member that may keep records (never a ``user``: every Install comes from a keeper
        of the record, moving it or repairing a fellow's copy). The keepers named
        must all be members that may keep, and the spec must be its submitter's. A
        chosen outcome is never replaced by another. A record this node holds is replaced
        by a newer configuration only from its keepers or those of a set it moved to (as
        its keepers said): anyone else is refused, and this node asks its fellows where
        the record went, so a genuine hand-off it missed is taken at the next resend.

        Every record comes with its provenance (core/provenance.py): the submitter's
        placement and the certified moves lead to the keepers named, or to the
        configuration whose certificate proves the outcome handed over. The sender's
        word is not enough: placements pass over members the submitter could not count
        on, so a record's keepers can be far from the process on the ring, any member
        that may keep records could claim to have kept this one, and one keeper of the
        set a record moved to is not its majority (the simulator's Byzantine keepers
        replaced a moved record with a forged outcome so)."""
        node = self.node
        pid = t.spec.pid
        if not node.may_keep(sender):
            return "install_sender", f"{sender}, a user, installed {pid[:12]}"
        if not node.plausible_keepers(t.keepers):
            return "bad_keepers", f"{sender} installed {pid[:12]} at users"
        if t.spec.colony_id != node.membership.colony_id or not node.spec_valid(t.spec):
            return "bad_spec", f"{sender} installed {pid[:12]} with a spec not its submitter's"
        decided = None if rec is None else rec.decided
        if (
            decided is not None
            and decided.kind != "moved"
            and t.decided is not None
            and t.decided != decided
        ):
            return "install_decided", f"{sender} installed another outcome of {pid[:12]}"
        if (
            rec is not None
            and rec.config_version < t.config_version
            and (decided is None or decided.kind == "moved")
            and not self._may_replace(sender, rec)
        ):
            self._ask_where(rec)
            return "install_sender", f"{sender} replaced {pid[:12]}, kept by others"
        code, detail = self._proof_refusal(t)
        if code:
            return code, f"{sender} installed {pid[:12]}: {detail}"
        return "", ""

    @staticmethod
    def _proof_refusal(t: Transfer) -> tuple[str, str]:
        """Why ``t``'s provenance does not hold (code and detail, or empty)."""
        config = provenance.record_config(t.spec, t.placement, t.moves)
        if config is None or t.placement is None:
            return "install_proof", "no placement signed by its submitter, or a move uncertified"
        if t.placement.parents != t.parents:
            return "install_proof", "parents other than its submitter placed"
        if t.decided is None:
            if config != (t.keepers, t.config_version):
                return "install_proof", "keepers other than its moves lead to"
        elif not provenance.decision_ok(
            t.spec.colony_id, t.spec.pid, config, t.certificate, t.decided
        ):
            return "install_proof", f"a {t.decided.kind} outcome without its certificate"
        return "", ""

    def _keepers_known(self, rec: KeeperRecord) -> set[str]:
        """Who keeps ``rec`` or a configuration it moved to, as far as its keepers told
        this node: who may replace it (_install_refusal), whom to ask where it went."""
        known = set(rec.keepers)
        if rec.decided is not None:
            known.update(rec.decided.moved_to)
        known.update(self._moved_through.get(rec.pid, ()))
        return known

    def _may_replace(self, sender: str, rec: KeeperRecord) -> bool:
        return sender == self.node.member_id or sender in self._keepers_known(rec)

    def _ask_where(self, rec: KeeperRecord) -> None:
        """Ask the keepers of ``rec`` (or of the set it moved to) about it, at most once
        a ``query_after``: their Status says where it moved (see on_status)."""
        now = self.node.now
        if now - self._moves_asked.get(rec.pid, -1e18) < self.node.params.query_after:
            return
        self._moves_asked[rec.pid] = now
        query = Query(rec.pid)
        for peer in sorted(self._keepers_known(rec) - {self.node.member_id}):
            self.node.send(peer, query)

    def on_install(self, sender: str, msg: Install, now: float) -> None:
        t = msg.transfer
        pid = t.spec.pid
        if self.node.member_id not in t.keepers:
            return
        rec = self.records.get(pid)
        code, detail = self._install_refusal(sender, t, rec)
        if code:
            self.node.reject(code, detail)
            return
        # A keeper of both the old and the new set holds the old record, decided "moved":
        # the newer configuration replaces it like any older undecided one.
        superseded = rec is not None and rec.config_version < t.config_version
        if rec is None or (superseded and (rec.decided is None or rec.decided.kind == "moved")):
            self._superseded.discard(pid)
            if t.decided is None and t.parent_outcomes:
                # the parents' outcomes are the sender's word (nothing certifies them
                # here): this node keeps those it learned itself, with the parents'
                # certificates, in the record this one replaces, and asks the parents'
                # keepers for the rest, as its placement names them
                known = rec.parent_outcomes if rec is not None else ()
                t = dataclasses.replace(t, parent_outcomes=known)
            rec = KeeperRecord.from_transfer(t, now)
            self._save(rec, now)
            self.node.observe("installed", pid, {"keepers": t.keepers})
            self._index_parents(rec)
            self._announced_at[pid] = now - self.node.params.reannounce_after
            self.schedule(pid, now)
        self.node.send(sender, InstallAck(pid))

    def superseded(self, pid: str) -> None:
        """A ballot on our record of ``pid`` met a newer configuration of the same keeper
        set (see Ballot.expect): ours is left behind, and stops acting (see _check)."""
        rec = self.records.get(pid)
        if rec is not None and rec.decided is None:
            self._superseded.add(pid)
            self.schedule(pid, self.node.now + self.node.params.query_after)

    def holder_lost(self, member: str, now: float) -> None:
        """``member`` is lost (see ColonyNode.on_peer_lost): the leases it holds end now.
        Volatile, as renewals are: a restarted keeper gives leases one more term."""
        for pid in self._held.pop(member, ()):
            rec = self.records.get(pid)
            if rec is None or rec.decided is not None:
                continue
            if rec.holder == member and rec.leased(now):
                self.records[pid] = dataclasses.replace(rec, lease_until=now)
                self._holder_lost.add(pid)
                self.schedule(pid, now)
        self.tick(now)  # now, not at the next maintenance tick

    def on_install_ack(self, sender: str, msg: InstallAck, now: float) -> None:
        self._install_acks.setdefault(msg.pid, set()).add(sender)

    def on_set_attributes(self, sender: str, msg: SetAttributes, now: float) -> None:
        rec = self.records.get(msg.pid)
        if rec is None or rec.promised != msg.epoch or rec.holder != sender or rec.decided:
            self.node.reject("stale_attributes", f"{sender} does not hold {msg.pid[:12]}")
            return
        self._save(dataclasses.replace(rec, attributes={**rec.attributes, **msg.attributes}), now)

    # --- maintenance ---------------------------------------------------------------------

    def tick(self, now: float) -> None:
        due = self._due
        while due and due[0][0] <= now:
            at, pid = heapq.heappop(due)
            if self._next_due.get(pid) != at:
                continue
            del self._next_due[pid]
            rec = self.records.get(pid)
            if rec is not None:
                self._check(rec, now)

    def on_membership_change(self, added: set[str], removed: set[str], now: float) -> None:
        ring = self.node.ring
        for pid, rec in self.records.items():
            if rec.config_version >= ring.version:
                continue
            if removed.intersection(rec.keepers) or self._closer_joined(rec, added):
                self.schedule(pid, now + self._rank(rec) * self.node.params.stagger)

    def _closer_joined(self, rec: KeeperRecord, added: set[str]) -> bool:
        if not added:
            return False
        from colonyp2p.core.ranking import distance

        farthest = max(distance(rec.pid, k) for k in rec.keepers)
        return any(distance(rec.pid, m) < farthest for m in sorted(added))

    def _check(self, rec: KeeperRecord, now: float) -> None:
        node = self.node
        p = node.params
        pid = rec.pid
        stagger = self._rank(rec) * p.stagger
        if rec.decided is not None:
            self._check_decided(rec, now, stagger)
            return
        asked = self._replicas_asked.get(pid, rec.stored_at)
        if now - asked >= p.query_after and not self._replicas_complete(rec):
            # Do all fellow keepers have the record? Those that answer no get it (_repair).
            self._replicas_asked[pid] = now
            self._ask_peers(rec)
        if pid in self._superseded:
            # The process lives on in a newer configuration of these keepers; whatever this
            # record started (moves from a stale membership, announcements) would only
            # disturb it. Its decision comes with a Decide, or as an answer to our queries.
            if now - self._quiet_since.get(pid, now) >= p.query_after:
                self._quiet_since[pid] = now
                self._ask_peers(rec)
            self.schedule(pid, now + p.query_after)
            return
        if rec.leased(now):
            self.schedule(pid, rec.lease_until)
            return
        if node.proposer.busy(pid):
            self.schedule(pid, now + p.request_timeout * 2)
            return
        idle_since = rec.lease_until if not rec.released else self._quiet_since.get(pid, now)
        if rec.accepted is not None:
            # An outcome was accepted but its proposer vanished before deciding it: finish it.
            self._ballot(rec, "recover", now, stagger)
            return
        new_keepers = self._moved_keepers(rec)
        if new_keepers is not None:
            self._ballot(rec, "move", now, stagger, move_to=new_keepers)
            return
        spec = rec.spec.spec
        if rec.parents and not rec.parents_known():
            self._poll_parents(rec, now, stagger)
            return
        failure = self._failure_reason(rec, now)
        if failure:
            self._ballot(rec, "fail", now, stagger, reason=failure)
            return
        next_at = now + p.query_after
        since = self._announced_at.get(pid)
        rounds = self._announce_round.get(pid, 0)
        every = min(p.reannounce_after * (2 ** min(rounds, 4)), 120.0)
        became_idle = max(idle_since, self._known_since.get(pid, 0.0))
        if since is None or since < became_idle or now - since >= every:
            wait = 0.0 if pid in self._holder_lost else stagger
            if now >= became_idle + wait:
                self._holder_lost.discard(pid)
                self._announced_at[pid] = now
                self._announce_round[pid] = rounds + 1
                node.publish(SpecAnnounce(rec.spec, rec.keepers, rounds + 1))
                next_at = now + every
            else:
                next_at = became_idle + wait
        else:
            next_at = min(next_at, since + every)
        if now - self._quiet_since.get(pid, now) >= p.query_after:
            self._quiet_since[pid] = now
            self._ask_peers(rec)
        if spec.maxwaittime > 0 and not rec.started_at:
            next_at = min(next_at, rec.stored_at + spec.maxwaittime + stagger)
        self.schedule(pid, max(next_at, now + p.tick))

    def _ballot(
        self,
        rec: KeeperRecord,
        purpose: Purpose,
        now: float,
        stagger: float,
        *,
        move_to: tuple[str, ...] = (),
        reason: str = "",
    ) -> None:
        """A keeper's own ballot on its record (recover, move, fail), in its turn (see
        _turn), one epoch above what it promised; then look again a lease (or its stagger)
        later, in case no ballot went through."""
        p = self.node.params
        if self._turn(rec.pid, purpose, now, stagger):
            self.node.proposer.begin(
                rec.spec,
                rec.keepers,
                rec.promised + 1,
                purpose,
                move_to=move_to,
                reason=reason,
                version=rec.config_version,
            )
        self.schedule(rec.pid, now + min(p.lease_seconds, stagger or p.lease_seconds))

    def _ask_peers(self, rec: KeeperRecord) -> None:
        query = Query(rec.pid)
        for peer in rec.keepers:
            if peer != self.node.member_id:
                self.node.send(peer, query)

    def _turn(self, pid: str, action: str, now: float, stagger: float) -> bool:
        """Keepers take turns by rank: the r-th acts r*stagger after it first saw the need,
        so the first live keeper acts and the others only step in when it did not."""
        first = self._first_seen.setdefault((pid, action), now)
        if now >= first + stagger:
            self._first_seen[(pid, action)] = now + self.node.params.lease_seconds
            return True
        return False

    def _failure_reason(self, rec: KeeperRecord, now: float) -> str:
        spec = rec.spec.spec
        for parent, outcome in rec.parent_outcomes:
            if outcome.kind != "successful":
                return f"parent {parent} {outcome.kind}"
        expired = self._unfinished_claim(rec)  # _check calls this once no lease is live
        attempts = rec.expired_attempts + (expired and rec.ran)
        silent = rec.silent_expiries + (expired and not rec.ran)
        if attempts > spec.maxretries and attempts > 0:
            tries = f"{attempts} leases expired (maxretries {spec.maxretries})"
            if spec.maxexectime > 0 and rec.lease_started + spec.maxexectime <= rec.lease_until:
                # the last lease ended because the run outlasted maxexectime (a hang)
                return f"maxexectime exceeded: still running after {spec.maxexectime:g} s; {tries}"
            return f"maxretries exceeded: {tries}"
        if _out_of_tries(spec, attempts, silent):
            return (
                f"maxretries exceeded: {silent} leases expired before their holders renewed "
                f"them (each died as it started, or never started; maxretries {spec.maxretries})"
            )
        if spec.maxwaittime > 0 and not rec.started_at and now - rec.stored_at > spec.maxwaittime:
            return f"maxwaittime exceeded: not started within {spec.maxwaittime:g} s"
        return ""

    @staticmethod
    def _unfinished_claim(rec: KeeperRecord) -> bool:
        """Whether the record's lease is a claim's that ended with nothing accepted."""
        return not rec.released and rec.purpose == "claim" and rec.accepted is None

    def _must_leave(self, rec: KeeperRecord) -> bool:
        """Whether a keeper of ``rec`` was revoked: the record moves to current members
        before anything else. Claims wait meanwhile (refused ``not_ready``), so that they
        do not duel with the move's ballot while one more revocation among the keepers
        left could cost the record its majority (the simulator's churn scenarios lost
        processes so)."""
        is_member = self.node.membership.is_member
        return not all(is_member(k) for k in rec.keepers)

    def _moved_keepers(self, rec: KeeperRecord) -> tuple[str, ...] | None:
        """Where a record stored under an older membership should go now: the keepers a
        new spec would get (available members only, as the submitter chose), or None
        where that is where it is."""
        node = self.node
        if node.ring.version <= rec.config_version:
            return None
        wanted = node.placement(rec.pid)
        return None if wanted == rec.keepers else wanted

    def _poll_parents(self, rec: KeeperRecord, now: float, stagger: float) -> None:
        p = self.node.params
        if now >= rec.stored_at + stagger:
            n = self._parent_poll.get(rec.pid, 0)
            self._parent_poll[rec.pid] = n + 1
            node = self.node
            for ref in rec.parents:
                keepers = self._parent_moved.get(ref.pid, ref.keepers)
                if rec.parent_outcome(ref.pid) is None and keepers:
                    # one keeper per round, in turn, passing over those that cannot answer
                    live = [
                        k for k in keepers if k not in node.lost and not node.unavailable(k)
                    ] or list(keepers)
                    node.send(live[n % len(live)], Query(ref.pid, watch=True))
                    waiting = self._waiting_on_parent.setdefault(ref.pid, [])
                    if rec.pid not in waiting:
                        waiting.append(rec.pid)
            # The parents' keepers push their outcome to watchers: asking again only
            # covers a watch lost with a restart, so back off towards query_after.
            delay = min(p.query_after, 2.0 * 2 ** min(n, 4))
        else:
            delay = rec.stored_at + stagger - now
        self.schedule(rec.pid, now + max(delay, p.tick))

    def _check_decided(self, rec: KeeperRecord, now: float, stagger: float) -> None:
        node = self.node
        decided = rec.decided
        assert decided is not None
        if decided.kind == "moved":
            targets = decided.moved_to
            version = decided.moved_version
            promised = rec.decided_epoch
        else:
            wanted = self._moved_keepers(rec)
            if wanted is None:
                return
            targets, version, promised = wanted, node.ring.version, rec.decided_epoch
        acks = self._install_acks.get(rec.pid, set())
        if len(acks.intersection(targets)) >= majority(len(targets)):
            return
        if now < rec.ended_at + stagger:
            self.schedule(rec.pid, rec.ended_at + stagger)
            return
        install = Install(rec.transfer(targets, version, promised))
        for member in targets:
            if member not in acks:
                node.send(member, install)
        self.schedule(rec.pid, now + node.params.query_after / 3)
