"""The invariants a simulated colony must keep, checked as the run goes.

The checker sees what every core reports (Observe effects), what every node
persists and which executions start. A broken invariant raises Violation at
once, naming the process; the engine then replays the run to print the
shortest event history that shows it (see ``history.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain
from typing import Any

from colonyp2p.core.effects import Observe, StartExecution
from colonyp2p.core.keeper import value_id
from colonyp2p.core.ranking import config_tag, majority
from colonyp2p.core.records import KeeperRecord
from colonyp2p.model.membership import MembershipSet
from colonyp2p.simulations.byzantine import forged


class Violation(Exception):
    """An invariant broke: ``invariant`` names it, ``pid`` the process it broke for."""

    def __init__(self, invariant: str, pid: str, detail: str, at: float) -> None:
        self.invariant = invariant
        self.pid = pid
        self.detail = detail
        self.at = at
        super().__init__(f"{invariant} at t={at:.3f}s for process {pid[:16]}: {detail}")


@dataclass(slots=True)
class Terminal:
    kind: str  # successful or failed
    value: str
    output: tuple[Any, ...]


class Checker:
    def __init__(self) -> None:
        self.submitted: dict[str, tuple[str, ...]] = {}  # pid -> parents
        self.acknowledged: set[str] = set()
        self.terminal: dict[str, Terminal] = {}
        self.decided_value: dict[str, str] = {}
        # (member, pid, keeper set, its membership version): a record that moves away and
        # back to the same keeper set is another configuration, with epochs of its own
        self.promised: dict[tuple[int, str, str, int], int] = {}
        self.accepts: dict[tuple[str, tuple[str, ...], int, int, str], set[int]] = {}
        self.chosen: dict[str, str] = {}
        self.holders: dict[str, set[int]] = {}
        self.runs: set[tuple[str, str, int]] = set()
        # what each finished run output, by its value id (see value_id): a parent whose
        # outcome a majority accepted is done before any keeper hears it was chosen
        self.outputs: dict[tuple[str, str], tuple[Any, ...]] = {}
        self.successful = 0
        self.failed = 0
        self.runs_started = 0
        self.stale_epoch_accepts = 0
        self.duplicate_results: set[str] = set()
        self.liars: set[str] = set()  # Byzantine members' ids (see byzantine.py)
        # Byzantine keepers run the protocol for what they keep: their moves and their
        # fellows' outcomes are honest, and only the marks of byzantine.py tell a lie
        self.marked_only = False

    # --- what the engine reports -------------------------------------------------------

    def submitted_spec(self, pid: str, parents: tuple[str, ...]) -> None:
        self.submitted[pid] = parents

    def persisted(self, node: int, pid: str, rec: Any, at: float) -> None:
        holders = self.holders.get(pid)
        if holders is None:
            holders = self.holders[pid] = set()
        if rec is None:
            holders.discard(node)
            return
        holders.add(node)
        if isinstance(rec, KeeperRecord) and self.liars:
            self._honest_record(node, pid, rec, at)
        decided = rec.decided if isinstance(rec, KeeperRecord) else None
        if decided is not None and decided.kind != "moved" and pid not in self.terminal:
            self._terminal(pid, rec, at)

    def _honest_record(self, node: int, pid: str, rec: KeeperRecord, at: float) -> None:
        """What a keeper stores came from honest members: a spec its submitter signed and
        submitted, outcomes honest executions or keepers produced, leases to members that
        may run processes, parent outputs from the parents' runs."""
        if not rec.spec.valid() or pid not in self.submitted:
            raise Violation("planted_spec", pid, f"member #{node} stores a planted spec", at)
        for what, value in (("accepted", rec.accepted), ("decided", rec.decided)):
            if forged(value, self.liars, self.marked_only):
                raise Violation("forged_outcome", pid, f"member #{node} {what} {value}", at)
        for parent, value in rec.parent_outcomes:
            if forged(value, self.liars, self.marked_only):
                raise Violation(
                    "forged_outcome", pid, f"member #{node} took parent {parent[:12]}: {value}", at
                )
        if rec.holder in self.liars and rec.holder not in rec.keepers:
            # (a Byzantine keeper's own ballots on what it keeps are the protocol's)
            raise Violation("byzantine_lease", pid, f"member #{node} leased it to a liar", at)

    def adopted(
        self, node: int, membership: MembershipSet, issued: dict[int, MembershipSet], at: float
    ) -> None:
        """A member adopted a membership version: the one the owner issued."""
        if issued.get(membership.version) != membership:
            raise Violation(
                "forged_membership",
                "",
                f"member #{node} adopted a version {membership.version} nobody issued",
                at,
            )

    def _terminal(self, pid: str, rec: KeeperRecord, at: float) -> None:
        value = rec.decided
        assert value is not None
        self.terminal[pid] = Terminal(value.kind, value_id(value), value.output)
        if value.kind == "successful":
            self.successful += 1
            if value.executor and (pid, value.executor, value.run_epoch) not in self.runs:
                raise Violation(
                    "phantom_result",
                    pid,
                    f"result of a run never started ({value.executor[:12]} epoch "
                    f"{value.run_epoch})",
                    at,
                )
            for parent in self.submitted.get(pid, ()):
                # chosen is enough: a parent's certificate (a majority's votes) may reach
                # the child's keepers before any of the parent's keepers has the Decide
                got = self._done(parent)
                if got is None or got.kind != "successful":
                    raise Violation(
                        "workflow_order",
                        pid,
                        f"succeeded although parent {parent[:16]} "
                        f"{'is not done' if got is None else got.kind}",
                        at,
                    )
        else:
            self.failed += 1

    def observed(self, node: int, e: Observe, at: float) -> None:
        kind = e.kind
        if kind == "acknowledged":
            self.acknowledged.add(e.pid)
        elif kind == "promised":
            key = (node, e.pid, e.data["config"], e.data.get("version", 0))
            epoch = e.data["epoch"]
            if epoch > self.promised.get(key, 0):
                self.promised[key] = epoch
        elif kind == "accepted":
            self._accepted(node, e, at)
        elif kind == "result":
            self._result(node, e, at)
        elif kind == "decided" and e.data["kind"] != "moved":
            value = e.data["value"]
            before = self.decided_value.setdefault(e.pid, value)
            if before != value:
                self.duplicate_results.add(e.pid)
                raise Violation("duplicate_result", e.pid, f"decided both {before} and {value}", at)

    def _result(self, node: int, e: Observe, at: float) -> None:
        """A member reports an outcome (to its user): the one the keepers chose."""
        value = e.data["outcome"]
        if forged(value, self.liars, self.marked_only):
            raise Violation("forged_outcome", e.pid, f"member #{node} reports {value}", at)
        chosen = self.decided_value.get(e.pid) or self.chosen.get(e.pid)
        if chosen != value_id(value):
            raise Violation(
                "forged_outcome",
                e.pid,
                f"member #{node} reports {value_id(value)}, chosen {chosen}",
                at,
            )

    def _accepted(self, node: int, e: Observe, at: float) -> None:
        data = e.data
        epoch = data["epoch"]
        keepers = tuple(data["keepers"])
        version = data.get("version", 0)
        promised = self.promised.get((node, e.pid, config_tag(keepers), version), 0)
        if epoch < promised:
            self.stale_epoch_accepts += 1
            raise Violation(
                "stale_epoch_accept",
                e.pid,
                f"member #{node} accepted epoch {epoch} after promising {promised}",
                at,
            )
        if data["kind"] == "moved":
            return
        key = (e.pid, keepers, version, epoch, data["value"])
        group = self.accepts.get(key)
        if group is None:
            group = self.accepts[key] = set()
        group.add(node)
        if len(group) >= majority(len(keepers)):
            before = self.chosen.setdefault(e.pid, data["value"])
            if before != data["value"]:
                self.duplicate_results.add(e.pid)
                raise Violation(
                    "duplicate_result",
                    e.pid,
                    f"a majority accepted {data['value']} after {before} was chosen",
                    at,
                )

    def finished(
        self, pid: str, member_id: str, epoch: int, ok: bool, output: tuple[Any, ...]
    ) -> None:
        """A run ended (reported by the engine, whose executors make the outputs)."""
        kind = "successful" if ok else "failed"
        self.outputs[(pid, f"{kind}:{member_id}:{epoch}")] = output

    def _done(self, pid: str) -> Terminal | None:
        """How ``pid`` ended: decided by a keeper, or chosen (accepted by a majority of
        one configuration's keepers) though no keeper has heard so yet."""
        got = self.terminal.get(pid)
        if got is not None:
            return got
        chosen = self.chosen.get(pid)
        if chosen is None:
            return None
        output = self.outputs.get((pid, chosen), ())
        return Terminal(chosen.partition(":")[0], chosen, output)

    def started(self, member_id: str, e: StartExecution, at: float) -> None:
        if self.liars and (not e.spec.valid() or e.pid not in self.submitted):
            raise Violation("planted_spec", e.pid, f"{member_id[:12]} runs a planted spec", at)
        self.runs.add((e.pid, member_id, e.epoch))
        self.runs_started += 1
        parents = e.spec.parents
        if not parents:
            return
        outputs = []
        for parent in parents:
            got = self._done(parent)
            if got is None or got.kind != "successful":
                raise Violation(
                    "workflow_order",
                    e.pid,
                    f"started although parent {parent[:16]} "
                    f"{'is not done' if got is None else got.kind}",
                    at,
                )
            outputs.append(got.output)
        expected = tuple(chain.from_iterable(outputs))
        if tuple(e.inputs) != expected:
            raise Violation(
                "workflow_inputs", e.pid, f"inputs {e.inputs!r} are not {expected!r}", at
            )

    # --- checks over the whole colony ----------------------------------------------------

    def check_stored(self, gone: Iterable[int], at: float) -> None:
        """Every acknowledged, unfinished process is still on some member's disk."""
        gone_set = set(gone)
        # in submission order: a set's order follows PYTHONHASHSEED, and the same seed
        # must name the same process in every interpreter
        for pid in self.submitted:
            if pid not in self.acknowledged or pid in self.terminal:
                continue
            holders = self.holders.get(pid, set())
            if not holders - gone_set:
                raise Violation("vanished", pid, "acknowledged but no member stores it", at)

    def lost(self) -> list[str]:
        """Acknowledged processes that did not end (in submission order)."""
        return [p for p in self.submitted if p in self.acknowledged and p not in self.terminal]

    def check_descendants_failed(self, at: float) -> None:
        for pid, parents in self.submitted.items():
            mine = self.terminal.get(pid)
            if mine is None or mine.kind != "successful":
                continue
            for parent in parents:
                got = self.terminal.get(parent)
                if got is not None and got.kind != "successful":
                    raise Violation(
                        "workflow_order", pid, f"succeeded although parent {parent[:16]} failed", at
                    )
