"""The wire envelope: signed canonical CBOR, and everything a receiver refuses."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from colonyp2p import codec
from colonyp2p.core.messages import (
    MAX_BATCH,
    MESSAGE_TYPES,
    Announcement,
    Batch,
    BatchItem,
    Message,
    PeerAddrs,
    Prepare,
    Query,
    StoreAck,
)
from colonyp2p.errors import (
    BadSignature,
    ColonyError,
    MalformedMessage,
    NotAMember,
    OversizeMessage,
    ReplayedMessage,
    UnknownMessageType,
    ValidationError,
    WireError,
    WrongColony,
)
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, Role
from colonyp2p.model.spec import MAX_SECONDS, NO_LIMIT
from colonyp2p.wire import (
    MAX_MESSAGE_SIZE,
    Envelope,
    RejectionCounter,
    ReplayGuard,
    batch,
    decode,
    encode,
    next_seq,
    unbatch,
)

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
MALLORY = Identity.from_seed(b"m" * 32)  # not a member
COLONY = "colony-1"
NOW = 1_700_000_000.0
SEQ = next_seq(0, NOW)
WINDOW = 120.0
MEMBERS = frozenset({ALICE.member_id, BOB.member_id})


def is_member(member_id: str) -> bool:
    return member_id in MEMBERS


def receive(
    raw: bytes,
    guard: ReplayGuard | None = None,
    *,
    now: float = NOW,
    member: Callable[[str], bool] = is_member,
    max_size: int = MAX_MESSAGE_SIZE,
) -> Envelope:
    return decode(raw, colony_id=COLONY, is_member=member, now=now, replay=guard, max_size=max_size)


def send(msg: object, seq: int = SEQ, ts: float = NOW, sender: Identity = ALICE) -> bytes:
    return encode(sender, COLONY, seq, ts, msg)


def envelope(
    signer: Identity = ALICE,
    *,
    sign: bool = True,
    sig: Any = None,
    drop: tuple[str, ...] = (),
    **overrides: Any,
) -> bytes:
    """A hand-made envelope: the fields ``encode`` would write, changed by ``overrides``,
    signed by ``signer`` after the change (so only the changed field is wrong)."""
    fields: dict[str, Any] = {
        "colony": COLONY,
        "sender": ALICE.member_id,
        "seq": SEQ,
        "ts": NOW,
        "type": "StoreAck",
        "body": {"pid": "p1"},
    }
    fields.update(overrides)
    for name in drop:
        del fields[name]
    if sign:
        fields["sig"] = signer.sign(cbor2.dumps(fields, canonical=True)) if sig is None else sig
    return bytes(cbor2.dumps(fields, canonical=True))


# --- strategies for every message type, from its annotations --------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | finite
    | st.text(max_size=4)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=4,
)
short_text = st.text(max_size=6)
MEMBER_IDS = [Identity.from_seed(bytes([i]) * 32).member_id for i in range(1, 6)]


@st.composite
def members(draw: st.DrawFn) -> tuple[Member, ...]:
    """A valid member list: distinct ids, exactly one owner."""
    ids = draw(st.lists(st.sampled_from(MEMBER_IDS), min_size=1, max_size=4, unique=True))
    others: list[Role] = ["admin", "executor", "user"]
    roles: list[Role] = ["owner"]
    roles += [draw(st.sampled_from(others)) for _ in ids[1:]]
    return tuple(Member(i, role, draw(short_text)) for i, role in zip(ids, roles, strict=True))


# Fields whose model rules a generic value would break nearly always (by class and field
# name); everything else is drawn from its annotation, and what the model still refuses
# is rejected.
FIELD_STRATEGIES: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("FunctionSpec", "funcname"): st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:-]{0,8}", fullmatch=True),
    ("FunctionSpec", "priority"): st.integers(-100_000, 100_000),
    ("FunctionSpec", "maxretries"): st.integers(0, 1000),
    ("FunctionSpec", "maxwaittime"): st.just(NO_LIMIT) | st.floats(0, MAX_SECONDS),
    ("FunctionSpec", "maxexectime"): st.just(NO_LIMIT) | st.floats(0, MAX_SECONDS),
    ("Conditions", "walltime"): st.integers(0, MAX_SECONDS),
    ("FunctionSpec", "env"): st.dictionaries(
        st.from_regex(r"[A-Z_]{1,6}", fullmatch=True),
        st.from_regex(r"[a-z0-9 ]{0,6}", fullmatch=True),
    ),
    ("Conditions", "dependencies"): st.lists(
        st.text(min_size=1, max_size=4), max_size=2, unique=True
    ).map(tuple),
    ("SnapshotMount", "label"): st.just("/labels/in"),
    ("SnapshotMount", "dir"): st.sampled_from(["in", "data/in"]),
    ("SyncDirMount", "label"): st.just("/labels/out"),
    ("SyncDirMount", "dir"): st.sampled_from(["out", "data/out"]),
    ("Member", "member_id"): st.sampled_from(MEMBER_IDS),
    ("MembershipSet", "members"): members(),
    ("MembershipSet", "colony_id"): st.text(min_size=1, max_size=6),
    ("MembershipSet", "version"): st.integers(1, 2**40),
    ("ExecutorAd", "executortype"): st.text(min_size=1, max_size=6),
    ("ExecutorAd", "capacity"): st.integers(1, 64),
    ("SignedSpec", "nonce"): st.binary(max_size=16),
}


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of an annotation in the codec's grammar: whatever a message may hold."""
    if tp is Any:
        return plain
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is types.UnionType or origin is typing.Union:
        return st.one_of([strategy_for(a) for a in args])
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=2).map(tuple)
        return st.tuples(*(strategy_for(a) for a in args))
    if origin is dict:
        return st.dictionaries(strategy_for(args[0]), strategy_for(args[1]), max_size=2)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(0, 2**40),
        float: finite | st.integers(-1000, 1000),  # an int in a float field, as users write
        str: short_text,
        bytes: st.binary(max_size=6),
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return dataclass_strategy(tp)
    raise TypeError(f"no strategy for {tp!r}")


def deferred_strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    # deferred: built on first draw, so building every message's strategy stays cheap
    return st.deferred(lambda: strategy_for(tp))


def dataclass_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in dataclasses.fields(cls):
        strategy = FIELD_STRATEGIES.get((cls.__name__, f.name))
        if strategy is None:
            strategy = deferred_strategy_for(hints[f.name])
        has_default = f.default is not dataclasses.MISSING
        has_default = has_default or f.default_factory is not dataclasses.MISSING
        # fields with defaults are left out at times, which keeps nested messages small
        (optional if has_default else required)[f.name] = strategy

    def construct(kwargs: dict[str, Any]) -> Any:
        try:
            return cls(**kwargs)
        except ValidationError:  # the model's own rules: not what this file tests
            reject()

    return st.fixed_dictionaries(required, optional=optional).map(construct)


MESSAGE_STRATEGIES = {name: dataclass_strategy(cls) for name, cls in MESSAGE_TYPES.items()}
DIRECT = typing.get_args(Message)
ANNOUNCEMENTS = typing.get_args(Announcement)
direct_message = st.sampled_from(sorted(c.__name__ for c in DIRECT)).flatmap(
    lambda n: MESSAGE_STRATEGIES[n]
)
# A batch as the daemons make them: direct messages coalesced for one peer.
MESSAGE_STRATEGIES["Batch"] = st.lists(direct_message, min_size=1, max_size=3).map(batch)
any_message = st.sampled_from(sorted(MESSAGE_TYPES)).flatmap(lambda n: MESSAGE_STRATEGIES[n])


# --- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MESSAGE_TYPES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip_every_message_type(name: str, data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[name])
    seq = data.draw(st.integers(0, 2**63))
    ts = data.draw(st.floats(NOW - WINDOW, NOW + WINDOW))
    env = receive(encode(BOB, COLONY, seq, ts, msg), ReplayGuard(WINDOW))
    assert env == Envelope(COLONY, BOB.member_id, seq, ts, name, msg, env.signature)
    assert type(env.body) is MESSAGE_TYPES[name]
    # the body survives with the same canonical bytes: its hash and inner signatures hold
    assert codec.canonical_bytes(env.body) == codec.canonical_bytes(msg)


def test_encode_is_deterministic_and_canonical() -> None:
    raw = send(Prepare(pid="p", epoch=3, purpose="claim"))
    assert raw == send(Prepare(pid="p", epoch=3, purpose="claim"))
    assert codec.loads_canonical(raw)["type"] == "Prepare"
    assert set(codec.loads_canonical(raw)) == {
        "colony",
        "sender",
        "seq",
        "ts",
        "type",
        "body",
        "sig",
    }


# --- any corruption is refused as a WireError ----------------------------------------


@settings(max_examples=600, deadline=None)
@given(any_message, st.data())
def test_flipped_bits_are_refused(msg: object, data: st.DataObject) -> None:
    raw = bytearray(send(msg))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    guard = ReplayGuard(WINDOW)
    with pytest.raises(WireError):
        receive(bytes(raw), guard)
    assert len(guard) == 0


@settings(max_examples=300, deadline=None)
@given(any_message, st.data())
def test_truncated_and_extended_messages_are_refused(msg: object, data: st.DataObject) -> None:
    raw = send(msg)
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(WireError):
        receive(raw[:cut], ReplayGuard(WINDOW))
    with pytest.raises(WireError):
        receive(raw + data.draw(st.binary(min_size=1, max_size=4)), ReplayGuard(WINDOW))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_refused_as_a_wire_error(raw: bytes) -> None:
    with pytest.raises(WireError):
        receive(raw, ReplayGuard(WINDOW))


# --- each kind of refusal --------------------------------------------------------------


def test_oversize_is_refused_before_parsing() -> None:
    with pytest.raises(OversizeMessage):
        receive(b"\xff" * 101, max_size=100)  # garbage: parsing it would say malformed
    raw = send(StoreAck(pid="p" * 200))
    with pytest.raises(OversizeMessage):
        receive(raw, max_size=len(raw) - 1)
    assert receive(raw, max_size=len(raw)).body == StoreAck(pid="p" * 200)
    assert MAX_MESSAGE_SIZE == 4 * 1024 * 1024
    with pytest.raises(OversizeMessage):
        receive(b"\x00" * (MAX_MESSAGE_SIZE + 1))


def test_encode_refuses_oversize_and_non_messages() -> None:
    with pytest.raises(OversizeMessage):
        encode(ALICE, COLONY, SEQ, NOW, StoreAck(pid="p" * 1000), max_size=1000)
    with pytest.raises(OversizeMessage):
        encode(ALICE, COLONY, SEQ, NOW, StoreAck(pid="p" * (MAX_MESSAGE_SIZE + 1)))

    @dataclass(frozen=True)
    class StoreAckImpostor:
        pid: str

    with pytest.raises(UnknownMessageType):
        encode(ALICE, COLONY, SEQ, NOW, StoreAckImpostor(pid="p"))
    with pytest.raises(UnknownMessageType):
        encode(ALICE, COLONY, SEQ, NOW, {"pid": "p"})
    with pytest.raises(MalformedMessage):
        encode(ALICE, COLONY, -1, NOW, StoreAck(pid="p"))
    with pytest.raises(MalformedMessage):
        encode(ALICE, COLONY, SEQ, float("nan"), StoreAck(pid="p"))


@pytest.mark.parametrize(
    "raw",
    [
        envelope(extra=1),
        envelope(drop=("seq",)),
        envelope(drop=("body",)),
        envelope(seq=True),
        envelope(seq=-1),
        envelope(seq="1"),
        envelope(ts=int(NOW)),
        envelope(ts="now"),
        envelope(colony=b"colony-1"),
        envelope(sender=None),
        envelope(type=1),
        envelope(body=["p1"]),
        envelope(sig="signature"),
        cbor2.dumps([1, 2], canonical=True),
        cbor2.dumps({"colony": COLONY}, canonical=True),
    ],
)
def test_wrong_field_sets_and_types_are_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedMessage):
        receive(raw, ReplayGuard(WINDOW))


def test_non_canonical_encoding_of_a_valid_message_is_refused() -> None:
    fields = codec.loads_canonical(send(StoreAck(pid="p")))
    raw = cbor2.dumps(dict(sorted(fields.items())))  # same content, keys not in canonical order
    assert cbor2.loads(raw) == fields and raw != send(StoreAck(pid="p"))
    with pytest.raises(MalformedMessage, match="canonical"):
        receive(raw)


def test_unknown_type_is_refused() -> None:
    with pytest.raises(UnknownMessageType):
        receive(envelope(type="Bogus"))
    with pytest.raises(UnknownMessageType):
        receive(envelope(type="__class__"))


def test_wrong_colony_is_refused() -> None:
    with pytest.raises(WrongColony):
        receive(envelope(colony="colony-2"))
    with pytest.raises(WrongColony):
        receive(encode(ALICE, "colony-2", SEQ, NOW, StoreAck(pid="p")))


def test_non_members_and_revoked_members_are_refused() -> None:
    with pytest.raises(NotAMember):
        receive(send(StoreAck(pid="p"), sender=MALLORY))
    with pytest.raises(NotAMember):
        receive(envelope(sender="not-a-member-id"))
    members = set(MEMBERS)
    raw = send(StoreAck(pid="p"), sender=BOB)
    assert receive(raw, member=members.__contains__).sender == BOB.member_id
    members.discard(BOB.member_id)  # a newer membership set revokes Bob
    with pytest.raises(NotAMember):
        receive(send(StoreAck(pid="q"), sender=BOB), member=members.__contains__)


def test_forged_and_missing_signatures_are_refused() -> None:
    with pytest.raises(BadSignature):
        receive(envelope(MALLORY))  # Mallory signs, claiming to be Alice
    with pytest.raises(BadSignature):
        receive(envelope(BOB))  # even another member cannot speak for Alice
    with pytest.raises(BadSignature):
        receive(envelope(sign=False))
    with pytest.raises(BadSignature):
        receive(envelope(sig=b""))
    with pytest.raises(BadSignature):
        receive(envelope(sig=ALICE.sign(b"x")[:63]))
    with pytest.raises(BadSignature):
        receive(envelope(sig=ALICE.sign(b"x") + b"\x00"))
    with pytest.raises(BadSignature):
        receive(envelope(sig=ALICE.sign(b"something else")))


def test_malformed_body_is_refused_after_the_signature() -> None:
    with pytest.raises(MalformedMessage, match=r"StoreAck: missing field 'pid'"):
        receive(envelope(body={}))
    with pytest.raises(MalformedMessage, match=r"Prepare\.purpose"):
        receive(envelope(type="Prepare", body={"pid": "p", "epoch": 1, "purpose": "steal"}))
    with pytest.raises(MalformedMessage, match=r"StoreAck\.pid"):
        receive(envelope(body={"pid": 7}))


def test_checks_run_cheapest_first() -> None:
    """Each message below fixes one more thing than the one before it, so it is refused by
    the next check in line; nothing reaches the replay guard's memory."""
    guard = ReplayGuard(WINDOW)
    wrong: dict[str, Any] = {
        "type": "Bogus",
        "colony": "colony-2",
        "sender": MALLORY.member_id,
        "body": {},
        "ts": NOW - 10 * WINDOW,
    }
    right: dict[str, Any] = {
        "type": "StoreAck",
        "colony": COLONY,
        "sender": ALICE.member_id,
        "body": {"pid": "p"},
        "ts": NOW,
    }
    steps: list[tuple[str, type[WireError]]] = [
        ("type", UnknownMessageType),
        ("colony", WrongColony),
        ("sender", NotAMember),
        ("signer", BadSignature),
        ("body", MalformedMessage),
        ("ts", ReplayedMessage),
    ]
    for i, (_, error) in enumerate(steps):
        fixed = {name for name, _ in steps[:i]}
        fields = {k: right[k] if k in fixed else wrong[k] for k in wrong}
        signer = ALICE if "signer" in fixed else MALLORY
        with pytest.raises(error):
            receive(envelope(signer, **fields), guard)
    assert len(guard) == 0
    receive(envelope(ALICE, **right), guard)
    assert len(guard) == 1


def test_model_validation_errors_propagate_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MESSAGE_TYPES, "Picky", Picky)
    guard = ReplayGuard(WINDOW)
    assert receive(send(Picky(n=1)), guard).body == Picky(n=1)
    with pytest.raises(ValidationError, match="positive"):
        receive(envelope(type="Picky", body={"n": -1}, seq=SEQ + 1), guard)
    assert guard.highest(ALICE.member_id) == SEQ


@dataclass(frozen=True)
class Picky:
    n: int

    def __post_init__(self) -> None:
        if self.n <= 0:
            raise ValidationError("must be positive", "n")


# --- replay protection ----------------------------------------------------------------


def test_the_same_bytes_are_accepted_once() -> None:
    guard = ReplayGuard(WINDOW)
    raw = send(StoreAck(pid="p"))
    receive(raw, guard)
    with pytest.raises(ReplayedMessage, match="seen before"):
        receive(raw, guard)
    with pytest.raises(ReplayedMessage):
        receive(send(StoreAck(pid="other")), guard)  # same seq, different message
    receive(send(StoreAck(pid="p"), sender=BOB), guard)  # seqs are per sender


def test_seqs_older_than_the_window_are_refused() -> None:
    guard = ReplayGuard(WINDOW)
    receive(send(StoreAck(pid="p"), seq=SEQ), guard)
    window = int(WINDOW * 1e6)
    with pytest.raises(ReplayedMessage, match="older"):
        receive(send(StoreAck(pid="p"), seq=SEQ - window), guard)
    receive(send(StoreAck(pid="p"), seq=SEQ - window + 1), guard)
    # the window slides up with the highest seq seen
    receive(send(StoreAck(pid="p"), seq=SEQ + window // 2), guard)
    with pytest.raises(ReplayedMessage, match="older"):
        receive(send(StoreAck(pid="p"), seq=SEQ - window // 2), guard)


@pytest.mark.parametrize("skew", [WINDOW + 0.001, -WINDOW - 0.001, 3600.0, -86400.0])
def test_timestamps_outside_the_window_are_refused(skew: float) -> None:
    guard = ReplayGuard(WINDOW)
    with pytest.raises(ReplayedMessage, match="timestamp"):
        receive(send(StoreAck(pid="p"), ts=NOW + skew), guard)
    assert len(guard) == 0
    # with no guard (messages from local storage), neither is checked
    assert receive(send(StoreAck(pid="p"), ts=NOW + skew), None).timestamp == NOW + skew


@pytest.mark.parametrize("skew", [WINDOW, -WINDOW, 0.0])
def test_timestamps_at_the_window_edge_are_accepted(skew: float) -> None:
    receive(send(StoreAck(pid="p"), ts=NOW + skew), ReplayGuard(WINDOW))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, int(WINDOW * 1e6) - 1), min_size=1, max_size=20, unique=True))
def test_reordered_fresh_seqs_are_accepted_once_each(offsets: list[int]) -> None:
    guard = ReplayGuard(WINDOW)
    raws = [send(Query(pid=str(i)), seq=SEQ + off) for i, off in enumerate(offsets)]
    for raw in raws:
        receive(raw, guard)
    for raw in raws:
        with pytest.raises(ReplayedMessage):
            receive(raw, guard)


def test_a_refused_message_is_not_recorded() -> None:
    guard = ReplayGuard(WINDOW)
    raw = send(StoreAck(pid="p"))
    with pytest.raises(NotAMember):
        receive(raw, guard, member=lambda _: False)
    with pytest.raises(WrongColony):
        decode(raw, colony_id="other", is_member=is_member, now=NOW, replay=guard)
    with pytest.raises(ReplayedMessage):
        receive(raw, guard, now=NOW + 2 * WINDOW)
    assert len(guard) == 0 and guard.highest(ALICE.member_id) is None
    assert receive(raw, guard).body == StoreAck(pid="p")  # the same bytes, now acceptable
    assert guard.highest(ALICE.member_id) == SEQ


def test_a_refused_replay_leaves_the_window_unchanged() -> None:
    guard = ReplayGuard(WINDOW)
    receive(send(StoreAck(pid="p"), seq=SEQ + 10), guard)
    with pytest.raises(ReplayedMessage):
        receive(send(StoreAck(pid="p"), seq=SEQ + 10**12), guard, now=NOW + 10**6)
    assert guard.highest(ALICE.member_id) == SEQ + 10  # the refused far seq did not slide it
    receive(send(StoreAck(pid="p"), seq=SEQ), guard)


def test_next_seq_grows_and_survives_restarts() -> None:
    assert next_seq(0, NOW) == int(NOW * 1e6)
    assert next_seq(int(NOW * 1e6), NOW) == int(NOW * 1e6) + 1  # faster than the clock
    assert next_seq(5, NOW + 1) > next_seq(int(NOW * 1e6) + 999, NOW)  # restart: clock wins
    guard = ReplayGuard(WINDOW)
    last = 0
    for step in range(5):
        last = next_seq(last, NOW)
        receive(send(Query(pid=str(step)), seq=last), guard)
    restarted = next_seq(0, NOW + 1)  # the sender lost its counter but not its clock
    receive(send(Query(pid="after restart"), seq=restarted, ts=NOW + 1), guard, now=NOW + 1)


def test_replay_guard_memory_is_bounded() -> None:
    guard = ReplayGuard(1.0, max_senders=2, max_seqs_per_sender=50)
    for seq in range(0, 10_000_000, 10_000):  # 1000 seqs over 10 s of a 1 s window
        guard.accept("a", seq, NOW, NOW)
    state = guard._senders["a"]
    assert len(state.seen) == len(state.heap) <= 50
    with pytest.raises(ReplayedMessage):
        guard.accept("a", 9_990_000, NOW, NOW)  # still refused though the cap dropped it
    guard.accept("b", 1, NOW, NOW)
    guard.accept("a", 10_000_001, NOW, NOW)  # a heard from again: b is the oldest now
    guard.accept("c", 1, NOW, NOW)
    assert len(guard) == 2 and guard.highest("b") is None and guard.highest("a") is not None


def test_replay_guard_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        ReplayGuard(0)
    with pytest.raises(ValueError):
        ReplayGuard(WINDOW, max_senders=0)


# --- counting rejections ---------------------------------------------------------------


def test_rejection_counter_counts_by_code() -> None:
    counter = RejectionCounter()
    guard = ReplayGuard(WINDOW)
    raw = send(StoreAck(pid="p"))
    for bad in [raw, raw, b"\x00", envelope(MALLORY), envelope(colony="x"), b"\xff" * 10]:
        try:
            receive(bad, guard, max_size=9)
        except ColonyError as exc:
            counter.count(exc)
    for bad in [raw, raw, b"\x00", envelope(MALLORY)]:
        try:
            receive(bad, guard)
        except ColonyError as exc:
            counter.count(exc)
    assert counter.as_dict() == {
        "oversize": 5,
        "malformed": 2,
        "replay": 1,
        "bad_signature": 1,
    }
    assert counter["replay"] == 1 and counter["not_member"] == 0
    assert counter.total == 9


# --- batches ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(direct_message, min_size=1, max_size=6))
def test_a_batch_carries_its_messages_in_order_through_an_envelope(msgs: list[Any]) -> None:
    env = receive(send(batch(msgs)), ReplayGuard(WINDOW))
    assert isinstance(env.body, Batch)
    out = unbatch(env.body, DIRECT)
    assert [codec.canonical_bytes(m) for m in out] == [codec.canonical_bytes(m) for m in msgs]
    assert [type(m) for m in out] == [type(m) for m in msgs]


def _item(msg: object) -> BatchItem:
    return BatchItem(type(msg).__name__, codec.canonical_bytes(msg))


@pytest.mark.parametrize(
    ("items", "error", "says"),
    [
        ((_item(PeerAddrs(("/ip4/1.2.3.4/tcp/1",))),), MalformedMessage, "cannot travel"),
        ((_item(Query("p")), _item(Batch((_item(Query("q")),)))), MalformedMessage, "cannot"),
        ((BatchItem("Nope", codec.canonical_bytes({"pid": "p"})),), UnknownMessageType, "Nope"),
        (
            (BatchItem("Query", cbor2.dumps({"pid": "p", "watch": "yes"})),),
            MalformedMessage,
            "watch",
        ),
        ((BatchItem("Query", codec.canonical_bytes({"pid": 3})),), MalformedMessage, "pid"),
        ((BatchItem("Query", b"\xff"),), MalformedMessage, "CBOR"),
    ],
    ids=[
        "announcement-on-direct",
        "nested-batch",
        "unknown-type",
        "bad-type",
        "bad-field",
        "garbage",
    ],
)
def test_a_bad_item_refuses_the_whole_batch(
    items: tuple[BatchItem, ...], error: type[Exception], says: str
) -> None:
    with pytest.raises(error, match=says):
        unbatch(Batch(items), DIRECT)


def test_batches_hold_one_to_max_batch_items() -> None:
    for n in (0, MAX_BATCH + 1):
        body = {"items": [{"type": "Query", "body": codec.canonical_bytes(Query("p"))}] * n}
        unsigned = {
            "colony": COLONY,
            "sender": ALICE.member_id,
            "seq": SEQ,
            "ts": NOW,
            "type": "Batch",
            "body": body,
        }
        payload = cbor2.dumps(unsigned, canonical=True)
        raw = cbor2.dumps({**unsigned, "sig": ALICE.sign(payload)}, canonical=True)
        with pytest.raises(MalformedMessage, match="batch holds"):
            receive(raw, ReplayGuard(WINDOW))
    with pytest.raises(UnknownMessageType):
        batch([batch([Query("p")])])
    assert len(unbatch(batch([Query("p")] * MAX_BATCH), DIRECT)) == MAX_BATCH
    assert ANNOUNCEMENTS  # announcements batch on their own channel (see test_transport)
