"""The client role: storing a submitted spec at a majority of its keepers.

A submission is acknowledged (and only then reported to the user) once a
majority of keepers persisted it; from then on the keepers own it. The
submitter keeps its unacknowledged submissions on disk so a crash does not
drop them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonyp2p.core.messages import SpecAnnounce, StoreAck, StoreSpec
from colonyp2p.core.ranking import majority

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode

SUBMISSIONS = "submissions"
FOLLOW_UP_ROUNDS = 10  # after a majority, keep offering the spec to the other keepers a while


class ClientRole:
    def __init__(self, node: ColonyNode, pending: dict[str, StoreSpec]) -> None:
        self.node = node
        self.pending = pending
        self.acks: dict[str, set[str]] = {}
        self.acknowledged: dict[str, int] = {}  # pid -> follow-up rounds used
        self.refusals: dict[str, set[str]] = {}  # pid -> keepers that refused it for good

    def restore(self, now: float) -> None:
        for pid in self.pending:
            self._send(pid, now)

    def submit(self, store: StoreSpec, now: float) -> str:
        pid = store.spec.pid
        if pid in self.pending or pid in self.acknowledged:
            return pid
        self.pending[pid] = store
        self.node.persist(SUBMISSIONS, pid, store)
        self._send(pid, now)
        return pid

    def _send(self, pid: str, now: float) -> None:
        store = self.pending[pid]
        acks = self.acks.setdefault(pid, set())
        for keeper in store.keepers:
            if keeper not in acks:
                self.node.send(keeper, store)
        self.node.set_timer(now + self.node.params.submit_retry, ("submit", pid))

    def on_store_ack(self, sender: str, msg: StoreAck, now: float) -> None:
        store = self.pending.get(msg.pid)
        if store is None or sender not in store.keepers:
            return
        if msg.refused:
            self._on_refusal(sender, msg, store)
            return
        acks = self.acks.setdefault(msg.pid, set())
        acks.add(sender)
        self.refusals.get(msg.pid, set()).discard(sender)
        # a keeper revoked since it stored the spec does not count (its copy is lost
        # to the colony): acknowledged means a majority of current members hold it
        is_member = self.node.membership.is_member
        held = sum(1 for k in acks if is_member(k))
        if msg.pid not in self.acknowledged and held >= majority(len(store.keepers)):
            self.acknowledged[msg.pid] = 0
            spec = store.spec
            self.node.observe(
                "acknowledged",
                msg.pid,
                {
                    "parents": list(spec.parents),
                    "workflow_id": spec.workflow_id,
                    "keepers": list(store.keepers),
                    "priority": spec.spec.priority,
                },
            )
            if not spec.parents:
                self.node.publish(SpecAnnounce(spec, store.keepers, 0))
        if len(acks) == len(store.keepers):
            self._done(msg.pid)

    def _on_refusal(self, sender: str, msg: StoreAck, store: StoreSpec) -> None:
        """A keeper will not store it now (the submitter's quota there is full). Only once
        every keeper refused, so that no record of it exists anywhere, does the submission
        end, reported as ``refused`` (the local API answers 429). While some keeper holds
        it, it stays pending and is offered again: a keeper stores it once the submitter's
        backlog there shrank (or receives it from a fellow), and nothing that may run is
        ever reported refused."""
        refused = self.refusals.setdefault(msg.pid, set())
        refused.add(sender)
        if not self.acks.get(msg.pid) and refused >= set(store.keepers):
            self.node.observe("refused", msg.pid, {"reason": msg.refused})
            self._done(msg.pid)

    def _done(self, pid: str) -> None:
        if self.pending.pop(pid, None) is not None:
            self.node.persist(SUBMISSIONS, pid, None)
        self.acks.pop(pid, None)
        self.acknowledged.pop(pid, None)
        self.refusals.pop(pid, None)

    def on_timer(self, pid: str, now: float) -> None:
        if pid not in self.pending:
            return
        if pid in self.acknowledged:
            self.acknowledged[pid] += 1
            if self.acknowledged[pid] > FOLLOW_UP_ROUNDS:
                self._done(pid)  # the keepers own it now; anti-entropy is theirs
                return
        self._send(pid, now)
