"""The colony protocol's messages: direct request/response messages and gossip announcements.

Leases are Paxos ballots: ``Prepare`` at epoch e is phase 1 (a grant is a
promise to refuse every lower epoch), ``Accept`` carries the outcome (phase 2),
``Decide`` tells everyone the chosen outcome. The epoch is the fencing token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import MembershipSet
from colonyp2p.model.signed import SignedSpec

OutcomeKind = Literal["successful", "failed", "moved"]
# "cancel": the submitter's or an admin's fail, which may end a live lease (a running
# process); "fail": a keeper's (or an older canceller's), only once no lease is live
Purpose = Literal["claim", "fail", "move", "recover", "cancel"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The value a process's ballot decides: its result, its failure, or its move
    to new keepers. ``executor`` and ``run_epoch`` name the run that produced it."""

    kind: OutcomeKind
    output: tuple[Any, ...] = ()
    errors: tuple[str, ...] = ()
    executor: str = ""
    run_epoch: int = 0
    moved_to: tuple[str, ...] = ()
    moved_version: int = 0


@dataclass(frozen=True, slots=True)
class ParentRef:
    pid: str
    keepers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Vote:
    """One keeper's signature on the value it accepted (see core/provenance.py)."""

    keeper: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class Certificate:
    """Proof that ``value`` was chosen for a process in one configuration: the votes of a
    majority of ``keepers`` (the record's keeper set at membership ``config_version``),
    each given as that keeper accepted ``value`` at ``epoch`` (Paxos: a value accepted by
    a majority at one epoch is chosen). Anyone checks it without asking the keepers."""

    keepers: tuple[str, ...]
    config_version: int
    epoch: int
    value: Outcome
    votes: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the submitter stored its process (keepers, membership version, the keepers
    of its parents), signed by the submitter: the root of the record's provenance."""

    keepers: tuple[str, ...]
    config_version: int
    parents: tuple[ParentRef, ...]
    signature: bytes


@dataclass(frozen=True, slots=True)
class Transfer:
    """What a keeper hands to a process's new keepers (no leases: only idle or decided
    records move)."""

    spec: SignedSpec
    keepers: tuple[str, ...]
    config_version: int
    parents: tuple[ParentRef, ...]
    promised: int
    expired_attempts: int
    decided: Outcome | None
    decided_epoch: int
    parent_outcomes: tuple[tuple[str, Outcome], ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    # the record's provenance (core/provenance.py): its submitter's placement, the
    # certified moves from there, and the certified decision if there is one
    placement: Placement | None = None
    moves: tuple[Certificate, ...] = ()
    certificate: Certificate | None = None


# --- direct messages -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSpec:
    spec: SignedSpec
    keepers: tuple[str, ...]
    config_version: int
    parents: tuple[ParentRef, ...] = ()
    placement: Placement | None = None  # the three fields above, signed by the submitter


@dataclass(frozen=True, slots=True)
class StoreAck:
    pid: str
    # Empty: stored. Otherwise why this keeper will not store it, for good ("quota": the
    # submitter holds too many waiting records here); the submitter stops asking it.
    refused: str = ""


@dataclass(frozen=True, slots=True)
class Prepare:
    pid: str
    epoch: int
    purpose: Purpose
    config: str = ""  # config_tag of the keepers the proposer addresses


@dataclass(frozen=True, slots=True)
class Promise:
    pid: str
    epoch: int
    lease_seconds: float
    accepted_epoch: int
    accepted: Outcome | None
    expired_attempts: int
    inputs: tuple[Any, ...] | None  # parents' outputs when the keeper knows them all
    # the membership version of the keeper's record: a record that moves away and later
    # back to the same keeper set has the same config tag, and only promises of the
    # newest configuration count together (see Proposer.on_promise)
    config_version: int = 0
    # the record's certified moves from its placement (core/provenance.py): with the
    # votes, they make the proposer's certificate a proof anyone can check
    moves: tuple[Certificate, ...] = ()


RefuseReason = Literal["stale_epoch", "leased", "not_ready", "unknown", "decided", "moved"]


@dataclass(frozen=True, slots=True)
class Refuse:
    pid: str
    epoch: int
    reason: RefuseReason
    promised: int = 0
    decided: Outcome | None = None
    decided_epoch: int = 0
    moved_to: tuple[str, ...] = ()
    certificate: Certificate | None = None  # of ``decided``
    moves: tuple[Certificate, ...] = ()  # from the placement to the certificate's keepers


@dataclass(frozen=True, slots=True)
class Renew:
    pid: str
    epoch: int
    config: str = ""


@dataclass(frozen=True, slots=True)
class RenewAck:
    pid: str
    epoch: int
    ok: bool
    lease_seconds: float


@dataclass(frozen=True, slots=True)
class Accept:
    pid: str
    epoch: int
    value: Outcome
    config: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    pid: str
    epoch: int
    ok: bool
    reason: str = ""
    config_version: int = 0  # of the keeper's record, as in Promise
    vote: bytes = b""  # the keeper's signature on what it accepted (core/provenance.py)


@dataclass(frozen=True, slots=True)
class Decide:
    pid: str
    epoch: int
    value: Outcome
    config: str = ""
    certificate: Certificate | None = None
    moves: tuple[Certificate, ...] = ()  # from the placement to the certificate's keepers


@dataclass(frozen=True, slots=True)
class Release:
    pid: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Query:
    """Ask a keeper about a process; ``watch`` asks it to send a Status once it is decided."""

    pid: str
    watch: bool = False
    proof: bool = False  # the answer brings the spec and its placement too


@dataclass(frozen=True, slots=True)
class Status:
    pid: str
    known: bool
    state: str = ""
    promised: int = 0
    decided: Outcome | None = None
    decided_epoch: int = 0
    moved_to: tuple[str, ...] = ()
    config: str = ""
    # the record's keeper set: where the submitter had to pass over members, it is not
    # the one the asker would compute from the pid (see core/availability.py)
    keepers: tuple[str, ...] = ()
    # the membership version of the record's configuration: a record that moved away and
    # back to the same keepers has the same config tag (as in Promise)
    config_version: int = 0
    # the record's provenance (core/provenance.py): its moves from the submitter's
    # placement and the certificate of ``decided``; the placement and the spec only
    # where the Query asked for them (``proof``)
    moves: tuple[Certificate, ...] = ()
    certificate: Certificate | None = None
    placement: Placement | None = None
    spec: SignedSpec | None = None


@dataclass(frozen=True, slots=True)
class ParentOutcomes:
    """A child's keeper shares the decided outcomes of the child's parents with its peers,
    each with its proof (its fellows take none on its word)."""

    pid: str
    outcomes: tuple[tuple[str, Outcome], ...]
    proofs: tuple[ParentProof, ...] = ()


@dataclass(frozen=True, slots=True)
class ParentProof:
    """A parent's certificate, and its certified moves from where the child's ParentRef
    names its keepers (core/provenance.py)."""

    parent: str
    moves: tuple[Certificate, ...]
    certificate: Certificate


@dataclass(frozen=True, slots=True)
class Install:
    transfer: Transfer


@dataclass(frozen=True, slots=True)
class InstallAck:
    pid: str


@dataclass(frozen=True, slots=True)
class SetAttributes:
    pid: str
    epoch: int
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogLines:
    """Lines a process printed, from its executor to its submitter (``first`` numbers the
    first line, so a repeated batch is recognised). The daemons handle these; the
    protocol core ignores them."""

    pid: str
    epoch: int
    first: int
    lines: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Offer:
    """A SpecAnnounce sent straight to one of the executors that rank best for the
    process (see ColonyNode.publish): it claims in its slot without a gossip hop."""

    announce: SpecAnnounce
    rank: int = 0  # the receiver's rank among the executors offered it, as the sender sees


@dataclass(frozen=True, slots=True)
class CatchUp:
    """A starting node's question to one member at a time, until one answers (see
    core/catchup.py): which executors are there, and which membership versions came
    after ``have_version``? It carries the asker's own ad, so at least the member asked
    learns it at once. ``ask`` numbers the question: only answers to a question asked
    count. A member that only lacks membership versions asks without ``ads``."""

    have_version: int
    ad: ExecutorAd | None = None
    ask: int = 0
    ads: bool = True


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The answer to question ``ask``: every executor ad the member knows (each signed by
    its executor, so the asker verifies them; at most CATCHUP_ADS per message) and, in
    the first message, the membership versions after the asker's, consecutive (as many
    as CHAIN_STEPS and CHAIN_MEMBERS allow: ``newest`` says whether more follow)."""

    ads: tuple[ExecutorAd, ...] = ()
    chain: tuple[MembershipSet, ...] = ()
    ask: int = 0
    newest: int = 0  # the member's own version


Message = (
    StoreSpec
    | StoreAck
    | Prepare
    | Promise
    | Refuse
    | Renew
    | RenewAck
    | Accept
    | Accepted
    | Decide
    | Release
    | Query
    | Status
    | ParentOutcomes
    | Install
    | InstallAck
    | SetAttributes
    | LogLines
    | Offer
    | CatchUp
    | CaughtUp
)


# --- gossip announcements ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpecAnnounce:
    """A process that waits for an executor. ``round`` grows each time a keeper
    announces it again, which widens the set of executors that consider it."""

    spec: SignedSpec
    keepers: tuple[str, ...]
    round: int = 0


@dataclass(frozen=True, slots=True)
class AdAnnounce:
    ad: ExecutorAd


@dataclass(frozen=True, slots=True)
class MembershipAnnounce:
    membership: MembershipSet


@dataclass(frozen=True, slots=True)
class PeerAddrs:
    """Where the publishing member listens (libp2p multiaddrs). The daemons keep address
    books with these; the protocol core ignores them."""

    addrs: tuple[str, ...]


Announcement = SpecAnnounce | AdAnnounce | MembershipAnnounce | PeerAddrs


# --- batches -------------------------------------------------------------------------

MAX_BATCH = 1024


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One message of a batch: its type name and its CBOR body (plain, not canonical:
    the envelope's signature covers these bytes, and nothing hashes them again)."""

    type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Batch:
    """Several messages to one peer, or announcements on one topic, under one envelope
    and one signature: the daemon's senders coalesce what queued up while the previous
    write was in flight, so a busy node pays one envelope, one signature and one frame
    for many messages. Items are all direct messages or all announcements, never
    batches. Driver-level: the protocol core never sees one."""

    items: tuple[BatchItem, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.items) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} items, not {len(self.items)}")


MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        StoreSpec,
        StoreAck,
        Prepare,
        Promise,
        Refuse,
        Renew,
        RenewAck,
        Accept,
        Accepted,
        Decide,
        Release,
        Query,
        Status,
        ParentOutcomes,
        Install,
        InstallAck,
        SetAttributes,
        LogLines,
        Offer,
        CatchUp,
        CaughtUp,
        SpecAnnounce,
        AdAnnounce,
        MembershipAnnounce,
        PeerAddrs,
        Batch,
    )
}
