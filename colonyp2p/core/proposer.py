"""Ballots: how a node takes a lease (Paxos phase 1), runs under it, and gets an outcome
decided (phase 2). Executors use ballots to claim processes; keepers use them to fail,
recover or move a process. A node runs at most one ballot per process at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from colonyp2p.core import provenance
from colonyp2p.core.effects import CancelExecution, StartExecution
from colonyp2p.core.keeper import KeeperRole, value_id
from colonyp2p.core.messages import (
    Accept,
    Accepted,
    Certificate,
    Decide,
    Outcome,
    Prepare,
    Promise,
    Purpose,
    Query,
    Refuse,
    Release,
    Renew,
    RenewAck,
    Vote,
)
from colonyp2p.core.ranking import config_tag, majority
from colonyp2p.model.signed import SignedSpec

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode

MAX_RESENDS = 4
# A keeper's own ballot (recover, move, fail) refused for a stale epoch is tried again at
# once, at the epoch the refusals name, this many times in a row; then the keeper waits
# for its next turn (KeeperRole._turn, a lease later). One retry covers a keeper that
# missed some epochs. Without a bound, keepers whose ballots cut each other off (each
# one's Prepare making the others' Accepts stale) started the next at once, for ever:
# the fault harness found ten daemons' keepers at epoch 48 of one process, every one of
# them re-proposing the same accepted value, none deciding it (bench/results/FAULTS.md).
KEEPER_RETRIES = 1
# A request unanswered is resent after request_timeout, then twice, four times as long
# (at most): keepers that answer late are busy, and resending at a fixed pace to a
# colony that has fallen behind only adds to what it has to get through.
RESEND_BACKOFF_CAP = 4


@dataclass(slots=True)
class Ballot:
    spec: SignedSpec
    pid: str
    epoch: int
    purpose: Purpose
    keepers: tuple[str, ...]
    phase: str = "prepare"  # prepare -> run (claims) -> accept -> done
    promises: dict[str, Promise] = field(default_factory=dict)
    refusals: dict[str, Refuse] = field(default_factory=dict)
    accepts: set[str] = field(default_factory=set)
    # keeper -> its vote (signature) on ``value``, checked as it came: the certificate
    votes: dict[str, bytes] = field(default_factory=dict)
    # the certified moves from the spec's placement to the configuration of ``version``
    # (from the promises): they prove the certificate's keepers to anyone
    moves: tuple[Certificate, ...] = ()
    nacks: set[str] = field(default_factory=set)
    value: Outcome | None = None
    sent_at: float = 0.0
    resends: int = 0
    renew_oks: set[str] = field(default_factory=set)
    renew_nacks: set[str] = field(default_factory=set)
    move_to: tuple[str, ...] = ()
    # the membership version ``move_to`` was computed in: the moved outcome names it, so
    # a revocation adopted while the ballot ran makes the new record move on again
    # (stamped with the later version, it named a revoked keeper as current; the
    # simulator found a record stuck so)
    move_version: int = 0
    reason: str = ""
    # The membership version of the keepers' records whose promises count (the newest
    # seen). A record that moved away and back to the same keeper set has the same
    # config tag as the old one that a keeper cut off from the moves may still hold;
    # the two are separate Paxos instances, and mixing their promises and accepts
    # could choose two outcomes (the simulator found it).
    version: int = -1
    # For a keeper's own ballot (recover, move, fail): its record's version. A promise
    # from a newer configuration of the same keeper set means that record moved on
    # without it; its ballot (a move computed from a stale membership, say) is not for
    # the newer record, so it is dropped.
    expect: int | None = None
    # ballots this node started in a row for the process after stale-epoch refusals
    retries: int = 0

    @property
    def needed(self) -> int:
        return majority(len(self.keepers))

    def hopeless(self, failures: int) -> bool:
        return failures > len(self.keepers) - self.needed


class Proposer:
    def __init__(self, node: ColonyNode) -> None:
        self.node = node
        self.ballots: dict[str, Ballot] = {}

    def busy(self, pid: str) -> bool:
        return pid in self.ballots

    def begin(
        self,
        spec: SignedSpec,
        keepers: tuple[str, ...],
        epoch: int,
        purpose: Purpose,
        *,
        move_to: tuple[str, ...] = (),
        reason: str = "",
        version: int | None = None,
        move_version: int | None = None,
        retries: int = 0,
    ) -> bool:
        """``version``: a keeper's ballot on its own record of that membership version
        (see Ballot.expect); ``retries``: see KEEPER_RETRIES."""
        pid = spec.pid
        if pid in self.ballots:
            return False
        b = Ballot(
            spec, pid, epoch, purpose, keepers, move_to=move_to, reason=reason, retries=retries
        )
        b.move_version = self.node.ring.version if move_version is None else move_version
        b.expect = version
        self.ballots[pid] = b
        self._send_prepare(b, self.node.now)
        return True

    def _send_prepare(self, b: Ballot, now: float) -> None:
        b.sent_at = now
        msg = Prepare(b.pid, b.epoch, b.purpose, config_tag(b.keepers))
        for keeper in b.keepers:
            if keeper not in b.promises and keeper not in b.refusals:
                self.node.send(keeper, msg)
        self.node.set_timer(now + self._timeout(b), ("ballot", b.pid, b.epoch))

    def _timeout(self, b: Ballot) -> float:
        return self.node.params.request_timeout * min(1 << b.resends, RESEND_BACKOFF_CAP)

    def _current(self, pid: str, epoch: int, sender: str) -> Ballot | None:
        b = self.ballots.get(pid)
        if b is None or b.epoch != epoch or sender not in b.keepers:
            return None
        return b

    # --- phase 1 ---------------------------------------------------------------------

    def on_promise(self, sender: str, msg: Promise, now: float) -> None:
        b = self._current(msg.pid, msg.epoch, sender)
        if b is None:
            # A promise for a ballot we gave up: free that keeper's lease at once.
            self.node.send(sender, Release(msg.pid, msg.epoch))
            return
        if b.phase != "prepare":
            return
        if msg.config_version < b.version:
            # an older configuration's record (its hand-off has not reached it yet)
            self.node.send(sender, Release(msg.pid, msg.epoch))
            return
        if b.expect is not None and msg.config_version > b.expect:
            self.node.send(sender, Release(msg.pid, msg.epoch))
            self._finish(b, release=True)
            self.node.keeper.superseded(b.pid)
            return
        if msg.config_version > b.version:
            stale = b.promises
            b.promises = {}
            b.version = msg.config_version
            for keeper in stale:
                self.node.send(keeper, Release(msg.pid, msg.epoch))
        b.promises[sender] = msg
        b.moves = msg.moves  # the keepers' chain to the configuration they promise in
        if len(b.promises) >= b.needed:
            self._promised(b, now)

    def _promised(self, b: Ballot, now: float) -> None:
        node = self.node
        prior = max(
            (p for p in b.promises.values() if p.accepted is not None),
            key=lambda p: p.accepted_epoch,
            default=None,
        )
        if prior is not None and prior.accepted is not None:
            # Paxos: a value some keeper accepted may have been chosen; finish it, never replace it.
            self._propose(b, prior.accepted, now)
            return
        spec = b.spec.spec
        if b.purpose == "claim":
            attempts = max(p.expired_attempts for p in b.promises.values())
            if attempts > spec.maxretries:
                b.reason = f"maxretries exceeded: {attempts} leases expired"
                self._propose(b, self._failure(b), now)
                return
            inputs = next((p.inputs for p in b.promises.values() if p.inputs is not None), ())
            b.phase = "run"
            node.observe("started", b.pid, {"epoch": b.epoch})
            node.effect(StartExecution(b.pid, b.epoch, b.spec, inputs or ()))
            node.set_timer(now + node.params.renew_every, ("renew", b.pid, b.epoch))
        elif b.purpose in ("fail", "cancel"):
            self._propose(b, self._failure(b), now)
        elif b.purpose == "move":
            moved = Outcome(
                "moved",
                executor=node.member_id,
                run_epoch=b.epoch,
                moved_to=b.move_to,
                moved_version=b.move_version,
            )
            self._propose(b, moved, now)
        else:  # recover, and nothing was accepted after all
            self._finish(b, release=True)

    def _failure(self, b: Ballot) -> Outcome:
        return Outcome(
            "failed", errors=(b.reason,), executor=self.node.member_id, run_epoch=b.epoch
        )

    def on_refuse(self, sender: str, msg: Refuse, now: float) -> None:
        b = self._current(msg.pid, msg.epoch, sender)
        if b is None or b.phase != "prepare":
            return
        b.refusals[sender] = msg
        node = self.node
        if msg.reason == "decided" and msg.decided is not None:
            node.learned_decision(
                msg.pid,
                msg.decided_epoch,
                msg.decided,
                sender,
                now,
                certificate=msg.certificate,
                moves=msg.moves,
            )
            self._finish(b, release=True)
            return
        if msg.reason == "unknown" and b.purpose != "claim":
            # A fellow keeper of our own record never got it (down or cut off when it was
            # stored or moved): hand it over now, so that it can promise at the next try,
            # rather than at the next anti-entropy round (query_after).
            rec = node.keeper.records.get(msg.pid)
            if rec is not None and not KeeperRole.foreign(rec, config_tag(b.keepers)):
                node.keeper.repair(sender, rec)
        if msg.reason == "moved":
            self._finish(b, release=True)
            if b.purpose == "claim":
                node.executor.on_moved(b.spec, msg.moved_to, now)
            else:
                # A keeper's own ballot: its record may be one its fellows already moved
                # on (a late Install made it after the move). Their Status says so, and
                # the record then learns its move instead of trying again for ever.
                node.send(sender, Query(b.pid))
            return
        self._refused(b, now)

    def _unreachable(self, b: Ballot) -> int:
        """Keepers that have not answered and that this node thinks cannot answer."""
        node = self.node
        return sum(
            1
            for k in b.keepers
            if k not in b.promises
            and k not in b.refusals
            and (k in node.lost or node.unavailable(k) or not node.membership.is_member(k))
        )

    def _refused(self, b: Ballot, now: float) -> None:
        """Phase 1 ends once a majority can no longer promise: counting the keepers that
        cannot answer, and not only once they do not after every resend. Its promises
        are released at once: held for the rest of the resends, they made two keepers'
        ballots (say, moves) refuse each other as leased in turn, for ever (the
        simulator found it)."""
        node = self.node
        if b.hopeless(len(b.refusals) + self._unreachable(b)):
            self._finish(b, release=True)
            reasons = {r.reason for r in b.refusals.values()}
            retry_epoch = max(r.promised for r in b.refusals.values()) + 1
            if reasons == {"stale_epoch"} or reasons == {"stale_epoch", "unknown"}:
                if b.purpose == "claim":
                    node.executor.retry_claim(b.spec, b.keepers, retry_epoch, now)
                elif b.retries < KEEPER_RETRIES:
                    self.begin(
                        b.spec,
                        b.keepers,
                        retry_epoch,
                        b.purpose,
                        move_to=b.move_to,
                        move_version=b.move_version,
                        reason=b.reason,
                        version=b.expect,
                        retries=b.retries + 1,
                    )
            elif b.purpose == "claim":
                node.executor.claim_refused(b.pid, now)

    # --- running under the lease -------------------------------------------------------

    def on_renew_ack(self, sender: str, msg: RenewAck, now: float) -> None:
        b = self._current(msg.pid, msg.epoch, sender)
        if b is None or b.phase != "run":
            return
        if msg.ok:
            b.renew_oks.add(sender)
        else:
            b.renew_nacks.add(sender)
            if b.hopeless(len(b.renew_nacks)):
                # The keepers moved on (expired lease, maxexectime): stop the run.
                self.node.effect(CancelExecution(b.pid, b.epoch, "lease lost"))
                self.node.observe("lease_lost", b.pid, {"epoch": b.epoch})
                self._finish(b, release=False)

    def stop_run(self, pid: str) -> None:
        """This node cancels a process it runs itself: the run stops and its lease is
        released, so that the cancel's ballot can start (one ballot per pid here). A run
        whose result is being proposed already is left to finish: the result wins."""
        b = self.ballots.get(pid)
        if b is not None and b.purpose == "claim" and b.phase == "run":
            self.node.effect(CancelExecution(b.pid, b.epoch, "cancelled"))
            self.node.observe("lease_lost", b.pid, {"epoch": b.epoch})
            self._finish(b, release=True)

    def on_renew_timer(self, pid: str, epoch: int, now: float) -> None:
        b = self.ballots.get(pid)
        if b is None or b.epoch != epoch or b.phase != "run":
            return
        b.renew_oks = set()
        b.renew_nacks = set()
        msg = Renew(pid, epoch, config_tag(b.keepers))
        for keeper in b.keepers:
            self.node.send(keeper, msg)
        self.node.set_timer(now + self.node.params.renew_every, ("renew", pid, epoch))

    def on_execution_done(self, pid: str, epoch: int, value: Outcome, now: float) -> bool:
        b = self.ballots.get(pid)
        if b is None or b.epoch != epoch or b.phase != "run":
            return False
        self._propose(b, value, now)
        return True

    # --- phase 2 ------------------------------------------------------------------------

    def _propose(self, b: Ballot, value: Outcome, now: float) -> None:
        b.phase = "accept"
        b.value = value
        b.resends = 0
        self._send_accept(b, now)

    def _send_accept(self, b: Ballot, now: float) -> None:
        assert b.value is not None
        msg = Accept(b.pid, b.epoch, b.value, config_tag(b.keepers))
        for keeper in b.keepers:
            if keeper not in b.accepts and keeper not in b.nacks:
                self.node.send(keeper, msg)
        self.node.set_timer(now + self._timeout(b), ("ballot", b.pid, b.epoch))

    def on_accepted(self, sender: str, msg: Accepted, now: float) -> None:
        b = self._current(msg.pid, msg.epoch, sender)
        if b is None or b.phase != "accept" or b.value is None:
            return
        if msg.ok:
            if msg.config_version != b.version:
                return  # another configuration's record (see Ballot.version)
            b.accepts.add(sender)
            if msg.vote:
                b.votes[sender] = msg.vote
            if len(b.accepts) >= b.needed:
                self._decided(b, now)
        else:
            b.nacks.add(sender)
            if b.hopeless(len(b.nacks)):
                self.node.observe("fenced", b.pid, {"epoch": b.epoch, "reason": msg.reason})
                self._finish(b, release=False)

    def _certificate(self, b: Ballot) -> Certificate | None:
        """The votes of the keepers that accepted, as a certificate, where a majority of
        them hold (a keeper without a key, or a lying one, gives none that does)."""
        assert b.value is not None
        shell = Certificate(b.keepers, b.version, b.epoch, b.value, ())
        colony = b.spec.colony_id
        votes = tuple(
            Vote(k, sig)
            for k, sig in sorted(b.votes.items())
            if provenance.vote_ok(colony, b.pid, shell, Vote(k, sig))
        )
        if len(votes) < b.needed:
            return None
        return Certificate(b.keepers, b.version, b.epoch, b.value, votes)

    def _decided(self, b: Ballot, now: float) -> None:
        assert b.value is not None
        node = self.node
        cert = self._certificate(b)
        decide_config = config_tag(b.keepers)
        decide = Decide(b.pid, b.epoch, b.value, decide_config, cert, b.moves)
        for keeper in b.keepers:
            node.send(keeper, decide)
        submitter = b.spec.submitter
        if submitter not in b.keepers and submitter != node.member_id:
            node.send(submitter, decide)
        node.observe(
            "chose", b.pid, {"epoch": b.epoch, "kind": b.value.kind, "value": value_id(b.value)}
        )
        self._finish(b, release=False)
        node.learned_decision(
            b.pid,
            b.epoch,
            b.value,
            node.member_id,
            now,
            decide_config,
            certificate=cert,
            moves=b.moves,
        )

    # --- timeouts and the end of a ballot --------------------------------------------

    def on_timer(self, pid: str, epoch: int, now: float) -> None:
        b = self.ballots.get(pid)
        if b is None or b.epoch != epoch:
            return
        if now < b.sent_at + self._timeout(b) - 1e-9 and b.phase == "prepare":
            return
        if b.phase == "prepare" and b.refusals:
            self._refused(b, now)  # those that did not answer may be known unreachable now
            if self.ballots.get(pid) is not b:
                return
        b.resends += 1
        if b.resends > MAX_RESENDS:
            # Keepers unreachable: give up; leases we got expire, keepers recover accepted values.
            self._finish(b, release=b.phase == "prepare")
            if b.purpose == "claim" and b.phase == "prepare":
                self.node.executor.claim_refused(pid, now)
            return
        if b.phase == "prepare":
            self._send_prepare(b, now)
        elif b.phase == "accept":
            self._send_accept(b, now)

    def _finish(self, b: Ballot, *, release: bool) -> None:
        if self.ballots.get(b.pid) is b:
            del self.ballots[b.pid]
        if release:
            msg = Release(b.pid, b.epoch)
            for keeper in b.promises:
                self.node.send(keeper, msg)
        if b.purpose == "claim":
            self.node.executor.ballot_finished(b.pid, b.epoch)
