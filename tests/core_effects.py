"""What a core step did, picked out of its effects: for the core's unit tests."""

from __future__ import annotations

import dataclasses
from typing import TypeVar

from colonyp2p.core import effects as fx
from colonyp2p.core.messages import Certificate, Outcome, StoreSpec, Vote
from colonyp2p.core.node import ColonyNode
from colonyp2p.core.provenance import place, sign_vote
from colonyp2p.identity import Identity
from colonyp2p.model.signed import SignedSpec

M = TypeVar("M")


def sent(effects: list[fx.Effect], kind: type[M]) -> list[tuple[str, M]]:
    """The messages of type ``kind`` sent, with whom they went to."""
    return [(e.to, e.msg) for e in effects if isinstance(e, fx.Send) and isinstance(e.msg, kind)]


def observed(effects: list[fx.Effect], kind: str) -> list[fx.Observe]:
    return [e for e in effects if isinstance(e, fx.Observe) and e.kind == kind]


def rejects(effects: list[fx.Effect]) -> list[str]:
    return [e.code for e in effects if isinstance(e, fx.Reject)]


def submitted(client: ColonyNode, spec: SignedSpec) -> tuple[str, ...]:
    """Submit ``spec`` from ``client`` (at t=1): the keepers it was sent to."""
    stores = [s for _, s in sent(client.submit(spec, 1.0), StoreSpec)]
    assert stores
    return stores[0].keepers


def placed(store: StoreSpec, *keys: Identity) -> StoreSpec:
    """``store`` with its placement signed by its spec's submitter, the one of ``keys``
    that is (as a node's submit signs it): keepers refuse a StoreSpec without one
    (core/provenance.py). A spec none of ``keys`` submitted goes unplaced."""
    for key in keys:
        if key.member_id == store.spec.submitter:
            spec, keepers, version = store.spec, store.keepers, store.config_version
            placement = place(key.sign, spec, keepers, version, store.parents)
            return dataclasses.replace(store, placement=placement)
    return store


def certificate(
    colony_id: str,
    pid: str,
    keepers: tuple[str, ...],
    version: int,
    epoch: int,
    value: Outcome,
    *signers: Identity,
) -> Certificate:
    """The certificate of ``value`` chosen at ``epoch`` by ``keepers`` (at membership
    ``version``), with the votes of ``signers``: what a proposer assembles from the
    Accepted of a majority."""
    votes = tuple(
        Vote(s.member_id, sign_vote(s.sign, colony_id, pid, keepers, version, epoch, value))
        for s in signers
    )
    return Certificate(keepers, version, epoch, value, votes)
