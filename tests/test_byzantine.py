"""Byzantine members in the simulator (``[faults] byzantine``): members of role ``user``
with valid keys that forge outcomes, plant specs, claim what they cannot run, feed
children forged parent outputs and sign membership versions of their own. The colony
accepts none of it; and with one of the core's refusals taken away, the checker catches
the lie that gets through. (A planted spec with a bad signature from a user is refused
before its signature is looked at, for its sender; the signature check itself is
tested in tests/test_core_authorization.py, with a sender that may keep records.)"""

from __future__ import annotations

from typing import Any

import pytest

from colonyp2p.core.keeper import KeeperRole
from colonyp2p.core.messages import Certificate, Decide
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.records import KeeperRecord
from colonyp2p.simulations import scenario as scenarios
from colonyp2p.simulations.engine import simulate

SEED = 17


@pytest.fixture(scope="module")
def byzantine() -> scenarios.Scenario:
    return scenarios.load("byzantine")


def test_no_lie_is_accepted_anywhere(byzantine: scenarios.Scenario) -> None:
    result = simulate(byzantine, SEED)
    assert result.violation is None, result.summary()["violation"]
    assert not result.lost and result.terminal
    counters = result.counters
    attacks = sum(v for k, v in counters.items() if k.startswith("byzantine_"))
    assert attacks > 300
    # each kind of lie met its refusal
    for code in (
        "install_sender",
        "bad_spec",
        "bad_keepers",
        "claim_role",
        "ballot_sender",
        "parent_sender",
        "not_submitter",
        "bad_ad",
    ):
        assert counters.get(f"rejected_{code}", 0) > 0, code
    assert counters.get("rejected_unauthorized", 0) + counters.get("rejected_bad_signature", 0)


def _open(*_: Any) -> tuple[str, str]:
    return "", ""


def _any_decide_is_a_result(self: ColonyNode, sender: str, msg: Decide, now: float) -> None:
    """The daemon before: the first Decide from anyone was the submitter's result."""
    self.report_result(msg.pid, msg.epoch, msg.value)


def _any_parent_source(*_: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("target", "name", "replacement", "caught"),
    [
        (KeeperRole, "_install_refusal", _open, {"forged_outcome", "planted_spec"}),
        (KeeperRole, "_ballot_refusal", _open, {"byzantine_lease", "forged_outcome"}),
        (KeeperRole, "_parent_source", _any_parent_source, {"forged_outcome", "workflow_inputs"}),
        (ColonyNode, "_on_decide", _any_decide_is_a_result, {"forged_outcome"}),
    ],
)
def test_without_a_refusal_the_lie_is_caught(
    byzantine: scenarios.Scenario,
    monkeypatch: pytest.MonkeyPatch,
    target: type,
    name: str,
    replacement: Any,
    caught: set[str],
) -> None:
    monkeypatch.setattr(target, name, replacement)
    result = simulate(byzantine, SEED)
    assert result.violation is not None, f"{name} removed and nothing caught"
    assert result.violation.invariant in caught, result.violation


# --- Byzantine keepers ---------------------------------------------------------------------
# Members that may keep records (executors without an ad: they keep, and run nothing)
# and lie about every process they do not keep: only a certificate (a majority of a
# record's keepers) makes a member that never held a record believe an outcome, a
# configuration or a parent's output (core/provenance.py).

KEEPER_SEED = 5


@pytest.fixture(scope="module")
def keepers() -> scenarios.Scenario:
    return scenarios.load("byzantine-keepers")


def test_no_lie_of_a_keeper_is_accepted_by_members_that_never_held_the_record(
    keepers: scenarios.Scenario,
) -> None:
    result = simulate(keepers, KEEPER_SEED)
    assert result.violation is None, result.summary()["violation"]
    assert not result.lost and result.terminal
    counters = result.counters
    assert sum(v for k, v in counters.items() if k.startswith("byzantine_")) > 300
    for code in ("install_proof", "install_sender", "install_decided", "ballot_sender"):
        assert counters.get(f"rejected_{code}", 0) > 0, code


def _any_proof(self: KeeperRole, rec: KeeperRecord, *_: Any) -> tuple[Certificate, ...]:
    return rec.moves


def _always(*_: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("target", "name", "replacement"),
    [
        (KeeperRole, "_proof_refusal", _open),  # an Install believed without its proof
        (KeeperRole, "proof", _any_proof),  # a Decide believed on a keeper's word
        (ColonyNode, "believes", _always),  # a Status believed on its sender's word
        (KeeperRole, "_parent_source", _any_parent_source),
    ],
)
def test_without_a_proof_a_keeper_s_lie_is_caught(
    keepers: scenarios.Scenario,
    monkeypatch: pytest.MonkeyPatch,
    target: type,
    name: str,
    replacement: Any,
) -> None:
    monkeypatch.setattr(target, name, replacement)
    result = simulate(keepers, KEEPER_SEED)
    assert result.violation is not None, f"{name} removed and nothing caught"
    # (a record planted at a set of the liar's choosing is decided there a second time)
    caught = {"forged_outcome", "workflow_inputs", "duplicate_result"}
    assert result.violation.invariant in caught, result.violation
