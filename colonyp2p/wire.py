"""The envelope every colony message travels in: canonical CBOR, signed by its sender.

On the wire an envelope is the canonical CBOR map
``{"colony", "sender", "seq", "ts", "type", "body", "sig"}``; ``sig`` is the
sender's Ed25519 signature of the canonical CBOR of the same map without
``sig``. :func:`decode` refuses anything that is not exactly such a map, from a
current member, for this colony, fresh and never seen before, raising one
:class:`~colonyp2p.errors.WireError` subclass per kind of refusal so that
drivers can count them (:class:`RejectionCounter`).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from colonyp2p import codec
from colonyp2p.core.messages import MESSAGE_TYPES, Batch, BatchItem
from colonyp2p.errors import (
    BadSignature,
    ColonyError,
    MalformedMessage,
    NotAMember,
    OversizeMessage,
    ReplayedMessage,
    UnknownMessageType,
    WrongColony,
)
from colonyp2p.identity import Identity, is_member_id, verify

MAX_MESSAGE_SIZE = 4 * 1024 * 1024
REPLAY_WINDOW_SECONDS = 120.0
MAX_TRACKED_SENDERS = 65_536
# A sender may send this many messages per replay window before the guard starts
# refusing its oldest still-fresh seqs (it never forgets a seq it accepted: it raises
# the floor below which everything is refused instead).
MAX_SEQS_PER_SENDER = 100_000

_SIGNED_FIELDS: dict[str, type] = {
    "colony": str,
    "sender": str,
    "seq": int,
    "ts": float,
    "type": str,
    "body": dict,
}
_SIG = "sig"


@dataclass(frozen=True)
class Envelope:
    """A decoded message that passed every check; ``body`` is the message object."""

    colony_id: str
    sender: str
    seq: int
    timestamp: float
    type: str
    body: Any
    signature: bytes


def next_seq(last: int, now: float) -> int:
    """The sequence number after ``last``: microseconds of the clock, so that a restarted
    node never reuses one without persisting a counter, and always strictly increasing."""
    return max(last + 1, int(now * 1e6))


def encode(
    identity: Identity,
    colony_id: str,
    seq: int,
    timestamp: float,
    msg: object,
    *,
    max_size: int = MAX_MESSAGE_SIZE,
) -> bytes:
    """Sign and encode ``msg``; refuse to produce what a receiver would refuse as such."""
    name = type(msg).__name__
    if MESSAGE_TYPES.get(name) is not type(msg):
        raise UnknownMessageType(f"{type(msg)!r} is not a colony message type")
    if type(seq) is not int or seq < 0:
        raise MalformedMessage(f"seq must be a non-negative integer, got {seq!r}")
    ts = float(timestamp)
    if not math.isfinite(ts):
        raise MalformedMessage("timestamp must be finite")
    unsigned = {
        "colony": colony_id,
        "sender": identity.member_id,
        "seq": seq,
        "ts": ts,
        "type": name,
        "body": codec.to_data(msg),
    }
    payload = cbor2.dumps(unsigned, canonical=True)
    if len(payload) > max_size:  # don't sign what cannot be sent
        raise OversizeMessage(f"{name} message of {len(payload)} bytes exceeds {max_size}")
    raw: bytes = cbor2.dumps({**unsigned, _SIG: identity.sign(payload)}, canonical=True)
    if len(raw) > max_size:
        raise OversizeMessage(f"{name} message of {len(raw)} bytes exceeds {max_size}")
    return raw


def batch(msgs: Sequence[object]) -> Batch:
    """``msgs`` (colony messages, no batches) as one Batch body."""
    items = []
    for msg in msgs:
        name = type(msg).__name__
        if MESSAGE_TYPES.get(name) is not type(msg) or isinstance(msg, Batch):
            raise UnknownMessageType(f"{type(msg)!r} cannot go in a batch")
        items.append(BatchItem(name, codec.plain_bytes(msg)))
    return Batch(tuple(items))


def unbatch(body: Batch, kinds: tuple[type, ...]) -> list[Any]:
    """The messages of a verified batch, each decoded as strictly as an envelope's body;
    one bad item refuses the whole batch (its sender signed it all)."""
    out: list[Any] = []
    for i, item in enumerate(body.items):
        where = f"Batch.items[{i}]"
        cls = MESSAGE_TYPES.get(item.type)
        if cls is None:
            raise UnknownMessageType(f"{where}: unknown message type {item.type[:64]!r}")
        if cls is Batch or cls not in kinds:
            raise MalformedMessage(f"{where}: a {item.type} cannot travel in this batch")
        try:
            # Plain CBOR, not proved canonical as envelopes are: the batch's signature
            # already covers these bytes, and nothing hashes or verifies them again.
            data = codec.loads(item.body)
        except MalformedMessage as exc:
            raise MalformedMessage(f"{where}: {exc}") from exc
        out.append(codec.from_data(cls, data, f"{where}.{item.type}"))
    return out


def decode(
    raw: bytes,
    *,
    colony_id: str,
    is_member: Callable[[str], bool],
    now: float,
    replay: ReplayGuard | None,
    max_size: int = MAX_MESSAGE_SIZE,
) -> Envelope:
    """Check ``raw`` and return its envelope, or raise the WireError saying why not.

    Checks run cheapest first and the signature before anything stateful; the
    replay guard records the message only once every check has passed. With
    ``replay=None`` neither sequence numbers nor timestamps are checked (for
    messages that come from local storage, not from the network).
    A body that decodes but breaks the data model's rules raises the model's
    ValidationError unchanged.
    """
    if len(raw) > max_size:
        raise OversizeMessage(f"message of {len(raw)} bytes exceeds {max_size}")
    data = codec.loads_canonical(raw)
    unsigned, sig = _split(data)
    name: str = unsigned["type"]
    cls = MESSAGE_TYPES.get(name)
    if cls is None:
        raise UnknownMessageType(f"unknown message type {name[:64]!r}")
    if unsigned["colony"] != colony_id:
        raise WrongColony(f"message for colony {unsigned['colony'][:64]!r}")
    sender: str = unsigned["sender"]
    if not is_member_id(sender):
        raise NotAMember(f"sender {sender[:64]!r} is not a member id")
    if not is_member(sender):
        raise NotAMember(f"sender {sender} is not a member of the colony")
    if sig is None:
        raise BadSignature(f"unsigned message from {sender}")
    # loads_canonical proved raw canonical, so re-encoding reproduces the signed bytes
    verify(sender, cbor2.dumps(unsigned, canonical=True), sig)
    body: Any = codec.from_data(cls, unsigned["body"], name)
    seq: int = unsigned["seq"]
    ts: float = unsigned["ts"]
    if replay is not None:
        replay.accept(sender, seq, ts, now)
    return Envelope(
        colony_id=colony_id,
        sender=sender,
        seq=seq,
        timestamp=ts,
        type=name,
        body=body,
        signature=sig,
    )


def _split(data: Any) -> tuple[dict[str, Any], bytes | None]:
    """The signed part of an envelope and its signature (None if absent), with every
    field's type checked; a missing signature is the signature check's to refuse."""
    if not isinstance(data, dict):
        raise MalformedMessage(f"an envelope is a map, got {type(data).__name__}")
    keys = set(data)
    expected = set(_SIGNED_FIELDS)
    if not expected <= keys or not keys <= expected | {_SIG}:
        missing = sorted(expected - keys)
        extra = sorted(map(repr, keys - expected - {_SIG}))
        raise MalformedMessage(f"envelope fields: missing {missing}, unknown {extra}")
    for key, tp in _SIGNED_FIELDS.items():
        value = data[key]
        # bool is an int subclass: True is not a sequence number
        if not isinstance(value, tp) or isinstance(value, bool):
            raise MalformedMessage(f"envelope.{key}: wrong type {type(value).__name__}")
    if data["seq"] < 0:
        raise MalformedMessage("envelope.seq: negative")
    if not math.isfinite(data["ts"]):
        raise MalformedMessage("envelope.ts: not finite")
    sig = data.get(_SIG)
    if sig is not None and not isinstance(sig, bytes):
        raise MalformedMessage(f"envelope.sig: wrong type {type(sig).__name__}")
    return {k: data[k] for k in _SIGNED_FIELDS}, sig


# --- replay protection ----------------------------------------------------------------


@dataclass
class _SenderWindow:
    highest: int
    floor: int = -1  # every seq <= floor is refused (raised when the per-sender cap bites)
    seen: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)  # the same seqs as ``seen``, oldest first


class ReplayGuard:
    """Accepts each (sender, seq) once, and only while fresh.

    A seq is refused when it was seen before, or when it is at least one window
    (``window_seconds`` in microsecond seq units) below the highest seq seen from
    its sender; a message is refused when its timestamp is more than
    ``window_seconds`` from ``now``. Within the window, seqs may arrive in any order.

    Memory is bounded: per sender, only the seqs inside the window (at most
    ``max_seqs_per_sender``), and at most ``max_senders`` senders, least recently
    heard-from forgotten first. A forgotten sender's old messages stay refused by the
    timestamp check once they are older than the window; that is what makes
    forgetting safe, and why the window must stay short.
    """

    def __init__(
        self,
        window_seconds: float = REPLAY_WINDOW_SECONDS,
        *,
        max_senders: int = MAX_TRACKED_SENDERS,
        max_seqs_per_sender: int = MAX_SEQS_PER_SENDER,
    ) -> None:
        if window_seconds <= 0 or max_senders < 1 or max_seqs_per_sender < 1:
            raise ValueError("the replay window and bounds must be positive")
        self.window_seconds = window_seconds
        self.window_seqs = int(window_seconds * 1e6)
        self.max_senders = max_senders
        self.max_seqs_per_sender = max_seqs_per_sender
        self._senders: OrderedDict[str, _SenderWindow] = OrderedDict()

    def __len__(self) -> int:
        """The number of senders tracked."""
        return len(self._senders)

    def highest(self, sender: str) -> int | None:
        state = self._senders.get(sender)
        return None if state is None else state.highest

    def check(self, sender: str, seq: int, timestamp: float, now: float) -> None:
        """Raise ReplayedMessage if the message is stale or seen; change nothing."""
        if abs(timestamp - now) > self.window_seconds:
            raise ReplayedMessage(
                f"timestamp {timestamp:.3f} is more than {self.window_seconds}s from now"
            )
        state = self._senders.get(sender)
        if state is None:
            return
        if seq <= max(state.floor, state.highest - self.window_seqs):
            raise ReplayedMessage(f"seq {seq} from {sender} is older than the replay window")
        if seq in state.seen:
            raise ReplayedMessage(f"seq {seq} from {sender} was seen before")

    def record(self, sender: str, seq: int) -> None:
        """Remember ``seq``; call only for a message that passed every check."""
        state = self._senders.get(sender)
        if state is None:
            state = self._senders[sender] = _SenderWindow(highest=seq)
            while len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
        else:
            self._senders.move_to_end(sender)
        state.seen.add(seq)
        heapq.heappush(state.heap, seq)
        state.highest = max(state.highest, seq)
        low = state.highest - self.window_seqs
        while state.heap and (state.heap[0] <= low or len(state.heap) > self.max_seqs_per_sender):
            oldest = heapq.heappop(state.heap)
            state.seen.discard(oldest)
            state.floor = max(state.floor, oldest)

    def accept(self, sender: str, seq: int, timestamp: float, now: float) -> None:
        """Check, then record: the message is consumed only if it is accepted."""
        self.check(sender, seq, timestamp, now)
        self.record(sender, seq)


# --- counting what was dropped ------------------------------------------------------


class RejectionCounter:
    """Counts refused input by the reason that refused it (a ColonyError's ``code``, or
    the name of another exception that a peer's input raised), in all and by protocol."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.by_protocol: dict[str, Counter[str]] = {}

    def count(self, error: BaseException, protocol: str = "msg") -> str:
        """Count ``error`` against ``protocol``; the reason it was counted under."""
        reason = error.code if isinstance(error, ColonyError) else type(error).__name__
        self.counts[reason] += 1
        self.by_protocol.setdefault(protocol, Counter())[reason] += 1
        return reason

    def __getitem__(self, code: str) -> int:
        return self.counts[code]

    @property
    def total(self) -> int:
        return self.counts.total()

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts)

    def by_protocol_dict(self) -> dict[str, dict[str, int]]:
        return {p: dict(c) for p, c in sorted(self.by_protocol.items())}
