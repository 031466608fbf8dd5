"""The simulator's workflow-order check counts a parent as succeeded once its success is
chosen (a majority of one configuration's keepers accepted it), as the protocol does: a
parent's certificate may reach its children's keepers before any of the parent's own
keepers has the Decide (churn-small seed 12 once broke the invariant so, falsely)."""

from __future__ import annotations

import pytest

from colonyp2p.core.effects import Observe
from colonyp2p.core.messages import Outcome
from colonyp2p.core.records import KeeperRecord
from colonyp2p.identity import Identity
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.simulations.checker import Checker, Violation

USER, EXECUTOR = Identity.from_seed(b"u" * 32), Identity.from_seed(b"e" * 32)
KEEPERS = ("k1", "k2", "k3")
PARENT = SignedSpec.create(FunctionSpec("parent"), USER, "c" * 64, 1.0, b"parent")
CHILD = SignedSpec.create(FunctionSpec("child"), USER, "c" * 64, 1.0, b"child")


def _accepted(checker: Checker, node: int) -> None:
    data = {
        "epoch": 1,
        "keepers": list(KEEPERS),
        "version": 1,
        "kind": "successful",
        "value": f"successful:{EXECUTOR.member_id}:1",
    }
    checker.observed(node, Observe("accepted", PARENT.pid, data), 2.0)


def _child_decided(checker: Checker) -> None:
    checker.runs.add((CHILD.pid, EXECUTOR.member_id, 1))  # its run (not a phantom)
    outcome = Outcome("successful", executor=EXECUTOR.member_id, run_epoch=1)
    rec = KeeperRecord(CHILD, CHILD.pid, KEEPERS, 1, decided=outcome, decided_epoch=1)
    checker.persisted(0, CHILD.pid, rec, 4.0)


def test_a_child_succeeds_after_its_parent_s_success_was_chosen() -> None:
    checker = Checker()
    checker.submitted_spec(PARENT.pid, ())
    checker.submitted_spec(CHILD.pid, (PARENT.pid,))
    for node in (1, 2):  # a majority of three: chosen, though no keeper decided it yet
        _accepted(checker, node)
    _child_decided(checker)
    assert checker.successful == 1


def test_a_child_that_succeeds_before_its_parent_is_chosen_is_caught() -> None:
    checker = Checker()
    checker.submitted_spec(PARENT.pid, ())
    checker.submitted_spec(CHILD.pid, (PARENT.pid,))
    _accepted(checker, 1)  # one of three: not chosen
    with pytest.raises(Violation, match=r"succeeded although parent \w+ is not done"):
        _child_decided(checker)
