"""Where a record comes from, in signatures anyone can check: its submitter's placement,
then every move and its decision, each certified by a majority of the keeper set that
chose it.

A keeper signs what it accepts (a ``Vote`` in its ``Accepted``). A value accepted by a
majority of a configuration's keepers at one epoch is chosen (Paxos), so the votes of
such a majority are a ``Certificate`` of that choice. A record's configurations form a
chain: the submitter signs the first (``Placement``: keepers, membership version and
its parents' keepers), and each next one is the ``moved`` outcome certified by the one
before. A member that never held the record (a keeper it is handed to, a member asking
about a process it did not submit) checks the chain from the spec's own signature, and
so believes neither a member that claims to have kept the record nor one that claims
it moved: one member's valid key is not enough to forge either (docs/PROTOCOL.md,
"Provenance").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import cbor2

from colonyp2p import codec
from colonyp2p.core.messages import Certificate, Outcome, ParentRef, Placement, Vote
from colonyp2p.core.ranking import majority
from colonyp2p.errors import ColonyError
from colonyp2p.identity import verify
from colonyp2p.model.signed import SignedSpec

Signer = Callable[[bytes], bytes]
# verified (signed bytes, signature, signer) triples, most recent kept: one vote is
# checked by every member a certificate reaches, and the simulator hands one object
# to many members
_VERIFIED: OrderedDict[tuple[bytes, bytes, str], None] = OrderedDict()
VERIFIED_KEPT = 1 << 16
# a record's configurations, at most: a chain longer than this is refused (each move
# follows a membership change; a record that moved this often is not worth carrying)
MAX_MOVES = 256


def vote_bytes(
    colony_id: str,
    pid: str,
    keepers: tuple[str, ...],
    config_version: int,
    epoch: int,
    value: Outcome,
) -> bytes:
    """What a keeper signs when it accepts ``value``: the configuration is in it, so a
    vote counts only for the keeper set (and version) it was given in."""
    what = [epoch, codec.to_data(value)]
    return _signed("colonyp2p/vote/1", colony_id, pid, keepers, config_version, what)


def placement_bytes(
    colony_id: str,
    pid: str,
    keepers: tuple[str, ...],
    config_version: int,
    parents: tuple[ParentRef, ...],
) -> bytes:
    what = [[[ref.pid, list(ref.keepers)] for ref in parents]]
    return _signed("colonyp2p/placement/1", colony_id, pid, keepers, config_version, what)


def _signed(
    kind: str,
    colony_id: str,
    pid: str,
    keepers: tuple[str, ...],
    config_version: int,
    what: Sequence[object],
) -> bytes:
    """Canonical CBOR of a configuration of one process and what is said of it, under a
    tag naming the kind (a vote's signature is never a placement's)."""
    data = [kind, colony_id, pid, list(keepers), config_version, *what]
    return bytes(cbor2.dumps(data, canonical=True))


def place(
    sign: Signer,
    spec: SignedSpec,
    keepers: tuple[str, ...],
    config_version: int,
    parents: tuple[ParentRef, ...],
) -> Placement:
    """The submitter's signed placement of ``spec``."""
    signed = placement_bytes(spec.colony_id, spec.pid, keepers, config_version, parents)
    return Placement(keepers, config_version, parents, sign(signed))


def _valid(message: bytes, signature: bytes, signer: str) -> bool:
    key = (message, signature, signer)
    if key in _VERIFIED:
        return True
    try:
        verify(signer, message, signature)
    except ColonyError:
        return False
    _VERIFIED[key] = None
    if len(_VERIFIED) > VERIFIED_KEPT:
        _VERIFIED.popitem(last=False)
    return True


def vote_ok(colony_id: str, pid: str, cert: Certificate, vote: Vote) -> bool:
    """Whether ``vote`` is its keeper's signature on ``cert``'s value and configuration."""
    signed = vote_bytes(colony_id, pid, cert.keepers, cert.config_version, cert.epoch, cert.value)
    return _valid(signed, vote.signature, vote.keeper)


def certificate_ok(colony_id: str, pid: str, cert: Certificate) -> bool:
    """Whether a majority of ``cert.keepers`` (distinct, each in the set) signed its value
    at its epoch and configuration."""
    keepers = cert.keepers
    if not keepers or len(set(keepers)) != len(keepers):
        return False
    signed = vote_bytes(colony_id, pid, keepers, cert.config_version, cert.epoch, cert.value)
    voters: set[str] = set()
    for vote in cert.votes:
        fresh = vote.keeper in keepers and vote.keeper not in voters
        if fresh and _valid(signed, vote.signature, vote.keeper):
            voters.add(vote.keeper)
    return len(voters) >= majority(len(keepers))


def placement_ok(spec: SignedSpec, placement: Placement) -> bool:
    """Whether ``spec``'s submitter signed ``placement``."""
    signed = placement_bytes(
        spec.colony_id, spec.pid, placement.keepers, placement.config_version, placement.parents
    )
    return _valid(signed, placement.signature, spec.submitter)


Config = tuple[tuple[str, ...], int]


def follow(
    colony_id: str,
    pid: str,
    start: tuple[str, ...],
    version: int | None,
    moves: tuple[Certificate, ...],
) -> Config | None:
    """The configuration a record reached from keepers ``start`` (at ``version``; None:
    whichever version the first move names) through certified ``moves``; None where one
    move is not certified by the configuration before it."""
    if len(moves) > MAX_MOVES:
        return None
    keepers = start
    for cert in moves:
        if cert.keepers != keepers or (version is not None and cert.config_version != version):
            return None
        if cert.value.kind != "moved" or not certificate_ok(colony_id, pid, cert):
            return None
        keepers, version = cert.value.moved_to, cert.value.moved_version
    return keepers, (-1 if version is None else version)


def follow_from(
    colony_id: str, pid: str, keepers: tuple[str, ...], moves: tuple[Certificate, ...]
) -> Config | None:
    """As ``follow``, from a configuration somewhere along ``moves`` (a child's ParentRef
    names its parent's keepers as they were when the child was submitted: the parent may
    have moved before, and after)."""
    for i, cert in enumerate(moves):
        if cert.keepers == keepers:
            return follow(colony_id, pid, keepers, cert.config_version, moves[i:])
    return keepers, -1  # no move from there: a decision of those keepers themselves


def decision_ok(
    colony_id: str,
    pid: str,
    config: Config,
    cert: Certificate | None,
    value: Outcome | None = None,
) -> bool:
    """Whether ``cert`` certifies a real outcome (``value``, where given) in ``config``
    (a version of -1 matches any)."""
    if cert is None or cert.value.kind == "moved" or (value is not None and cert.value != value):
        return False
    keepers, version = config
    if cert.keepers != keepers or (version != -1 and cert.config_version != version):
        return False
    return certificate_ok(colony_id, pid, cert)


def record_config(
    spec: SignedSpec, placement: Placement | None, moves: tuple[Certificate, ...]
) -> Config | None:
    """The configuration a record is in, proven from its submitter's signature: its
    placement, then its moves. None where the proof does not hold."""
    if placement is None or not placement_ok(spec, placement):
        return None
    return follow(spec.colony_id, spec.pid, placement.keepers, placement.config_version, moves)


def sign_vote(
    sign: Signer,
    colony_id: str,
    pid: str,
    keepers: tuple[str, ...],
    config_version: int,
    epoch: int,
    value: Outcome,
) -> bytes:
    return sign(vote_bytes(colony_id, pid, keepers, config_version, epoch, value))
