"""Promises of the codec and the envelope's bookkeeping that mutation testing found
unchecked (bench/mutation_score.py, bench/results/MUTATION.md): each test fails with a
mutant that survived the other tests."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import cbor2
import pytest

from colonyp2p import codec
from colonyp2p.core.messages import MAX_BATCH, Batch, BatchItem, Message, Query, StoreAck
from colonyp2p.errors import (
    BadSignature,
    MalformedMessage,
    NotAMember,
    OversizeMessage,
    ReplayedMessage,
    UnknownMessageType,
    WireError,
    WrongColony,
)
from colonyp2p.identity import Identity
from colonyp2p.wire import RejectionCounter, ReplayGuard, batch, decode, encode, unbatch

DIRECT = typing.get_args(Message)


def test_rejections_are_counted_by_reason_in_all_and_by_protocol() -> None:
    counter = RejectionCounter()
    assert counter.count(ReplayedMessage("again")) == "replay"
    assert counter.count(ReplayedMessage("again")) == "replay"
    # an exception that is no ColonyError counts under its class name
    assert counter.count(KeyError("x"), "catchup") == "KeyError"
    assert counter.count(MalformedMessage("bad"), "catchup") == "malformed"
    assert counter.as_dict() == {"replay": 2, "KeyError": 1, "malformed": 1}
    assert counter["replay"] == 2
    assert counter.total == 4
    # without a protocol, a message ("msg")
    assert counter.by_protocol_dict() == {
        "catchup": {"KeyError": 1, "malformed": 1},
        "msg": {"replay": 2},
    }


def test_plain_bytes_without_a_field_leave_out_only_that_field() -> None:
    ack = StoreAck("p" * 64, refused="quota")
    raw = codec.plain_bytes_without(ack, "refused")
    assert cbor2.loads(raw) == {"pid": "p" * 64}
    assert codec.from_data(StoreAck, codec.loads(raw), given={"refused": "quota"}) == ack
    with pytest.raises(TypeError):
        codec.plain_bytes_without(ack, "nothing")


def test_a_none_annotation_takes_null_only() -> None:
    assert codec.from_data(type(None), None) is None
    refused: tuple[object, ...] = (0, "", False, [], {})
    for data in refused:
        with pytest.raises(MalformedMessage, match=f"x: expected null, got {type(data).__name__}"):
            codec.from_data(type(None), data, "x")


def test_a_bad_batch_item_is_named_by_its_place_and_type() -> None:
    items = (
        BatchItem("Query", codec.plain_bytes(Query("p"))),
        BatchItem("Query", codec.canonical_bytes({"pid": 3})),
    )
    with pytest.raises(
        MalformedMessage, match=r"^Batch\.items\[1\]\.Query\.pid: expected a string"
    ):
        unbatch(Batch(items), DIRECT)
    # an unknown type is quoted to 64 characters at most
    with pytest.raises(UnknownMessageType) as refused:
        unbatch(Batch((BatchItem("N" * 100, b""),)), DIRECT)
    assert str(refused.value) == f"Batch.items[0]: unknown message type {'N' * 64!r}"


def test_a_batch_refuses_a_batch_by_name() -> None:
    with pytest.raises(UnknownMessageType) as refused:
        batch([batch([Query("p")])])
    assert str(refused.value) == f"{Batch!r} cannot go in a batch"


def test_a_sender_s_seqs_are_all_remembered_up_to_the_cap() -> None:
    guard = ReplayGuard(60.0, max_seqs_per_sender=3)
    for seq in (10, 20, 30):
        guard.accept("s", seq, 0.0, 0.0)
    # three seqs are within the cap: none was forgotten, so an older fresh one is taken
    guard.check("s", 5, 0.0, 0.0)
    guard.accept("s", 40, 0.0, 0.0)  # the fourth: the oldest is forgotten, and below it all
    with pytest.raises(ReplayedMessage, match="older than the replay window"):
        guard.check("s", 5, 0.0, 0.0)
    guard.check("s", 15, 0.0, 0.0)


@pytest.mark.parametrize(
    ("annotation", "data", "message"),
    [
        (dict[str, int], [1], "m: expected a map, got list"),
        (dict[str, int], {1: 2}, "m key: expected a string, got int"),
        (dict[str, int], {"a": "b"}, "m.a: expected an integer, got str"),
        (float, "1", "m: expected a number, got str"),
        (bytes, "1", "m: expected bytes, got str"),
        (bool, 1, "m: expected a boolean, got int"),
        # a nullable union tries its other options only, and says why each failed
        (int | None, "1", "m: str fits none of int | None (m: expected an integer, got str)"),
        (
            int | bytes,
            "1",
            "m: str fits none of int | bytes (m: expected an integer, got str; "
            "m: expected bytes, got str)",
        ),
        # null is no value of a union without None
        (
            int | str,
            None,
            "m: NoneType fits none of int | str (m: expected an integer, got "
            "NoneType; m: expected a string, got NoneType)",
        ),
    ],
)
def test_a_refused_value_is_named_by_its_path_and_type(
    annotation: Any, data: Any, message: str
) -> None:
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(annotation, data, "m")
    assert str(refused.value) == message


def _nested(levels: int) -> tuple[Any, Any]:
    """dict[str, dict[str, ... str]] ``levels`` maps deep, and a value of it."""
    tp: Any = str
    data: Any = "leaf"
    for _ in range(levels):
        tp = dict[str, tp]
        data = {"k": data}
    return tp, data


def test_maps_nest_to_max_depth_keys_included() -> None:
    tp, data = _nested(codec.MAX_DEPTH)  # the deepest key and value at depth MAX_DEPTH
    assert codec.from_data(tp, data, "m") == data
    tp, data = _nested(codec.MAX_DEPTH + 1)
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(tp, data, "m")
    deepest = "m" + ".k" * (codec.MAX_DEPTH + 1)
    assert str(refused.value) == f"{deepest}: nested deeper than {codec.MAX_DEPTH}"


_FIELDS: dict[str, Any] = {
    "colony": "c",
    "sender": "s",
    "seq": 1,
    "ts": 1.0,
    "type": "Query",
    "body": {"pid": "p"},
}


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ([1], "an envelope is a map, got list"),
        (
            {"colony": "c"},
            "envelope fields: missing ['body', 'sender', 'seq', 'ts', 'type'], unknown []",
        ),
        ({**_FIELDS, "x": 1}, "envelope fields: missing [], unknown [\"'x'\"]"),
        ({**_FIELDS, "seq": "1"}, "envelope.seq: wrong type str"),
        ({**_FIELDS, "seq": -1}, "envelope.seq: negative"),
        ({**_FIELDS, "ts": math.inf}, "envelope.ts: not finite"),
        ({**_FIELDS, "sig": "x"}, "envelope.sig: wrong type str"),
    ],
)
def test_a_malformed_envelope_is_refused_saying_what_is_wrong(envelope: Any, message: str) -> None:
    with pytest.raises(MalformedMessage) as refused:
        decode(
            cbor2.dumps(envelope, canonical=True),
            colony_id="c",
            is_member=lambda _: True,
            now=1.0,
            replay=None,
        )
    assert str(refused.value) == message


SENDER = Identity.from_seed(b"w" * 32)


@pytest.mark.parametrize(
    ("seq", "timestamp", "msg", "error", "message"),
    [
        (-1, 1.0, Query("p"), MalformedMessage, "seq must be a non-negative integer, got -1"),
        (True, 1.0, Query("p"), MalformedMessage, "seq must be a non-negative integer, got True"),
        (1, math.nan, Query("p"), MalformedMessage, "timestamp must be finite"),
        (1, 1.0, {"pid": "p"}, UnknownMessageType, "<class 'dict'> is not a colony message type"),
    ],
)
def test_encode_refuses_what_a_receiver_would_refuse_saying_why(
    seq: Any, timestamp: float, msg: object, error: type[WireError], message: str
) -> None:
    with pytest.raises(error) as refused:
        encode(SENDER, "c", seq, timestamp, msg)
    assert str(refused.value) == message


def test_encode_refuses_by_the_size_of_what_would_travel() -> None:
    msg = Query("p" * 100)
    raw = encode(SENDER, "c", 1, 1.0, msg)
    unsigned = {k: v for k, v in cbor2.loads(raw).items() if k != "sig"}
    payload = len(cbor2.dumps(unsigned, canonical=True))
    # a message of exactly max_size bytes is sent
    assert encode(SENDER, "c", 1, 1.0, msg, max_size=len(raw)) == raw
    # the unsigned part fits but the signed message does not: refused by its full size
    for max_size in (payload, len(raw) - 1):
        with pytest.raises(OversizeMessage) as refused:
            encode(SENDER, "c", 1, 1.0, msg, max_size=max_size)
        assert str(refused.value) == f"Query message of {len(raw)} bytes exceeds {max_size}"
    # not even the unsigned part fits: refused before it is signed
    with pytest.raises(OversizeMessage) as refused:
        encode(SENDER, "c", 1, 1.0, msg, max_size=payload - 1)
    assert str(refused.value) == f"Query message of {payload} bytes exceeds {payload - 1}"


_MEMBER = {**_FIELDS, "sender": SENDER.member_id}


@pytest.mark.parametrize(
    ("envelope", "member", "max_size", "error", "message"),
    [
        # what a peer sent is quoted to 64 characters: its type, colony and sender
        (
            {**_FIELDS, "type": "N" * 100},
            True,
            1000,
            UnknownMessageType,
            f"unknown message type {'N' * 64!r}",
        ),
        (
            {**_FIELDS, "colony": "x" * 100},
            True,
            1000,
            WrongColony,
            f"message for colony {'x' * 64!r}",
        ),
        (
            {**_FIELDS, "sender": "s" * 100},
            True,
            1000,
            NotAMember,
            f"sender {'s' * 64!r} is not a member id",
        ),
        (
            _MEMBER,
            False,
            1000,
            NotAMember,
            f"sender {SENDER.member_id} is not a member of the colony",
        ),
        (_MEMBER, True, 1000, BadSignature, f"unsigned message from {SENDER.member_id}"),
        (
            {**_FIELDS, "body": {"pid": "p" * 100}},
            True,
            100,
            OversizeMessage,
            "message of {size} bytes exceeds 100",
        ),
    ],
)
def test_a_refused_envelope_says_why(
    envelope: Any, member: bool, max_size: int, error: type[WireError], message: str
) -> None:
    raw = cbor2.dumps(envelope, canonical=True)
    with pytest.raises(error) as refused:
        decode(
            raw,
            colony_id="c",
            is_member=lambda _: member,
            now=1.0,
            replay=None,
            max_size=max_size,
        )
    assert str(refused.value) == message.format(size=len(raw))


def test_a_list_of_scalars_is_checked_item_by_item() -> None:
    assert codec.from_data(tuple[str, ...], ["a", "b"], "m") == ("a", "b")
    assert codec.from_data(tuple[str, ...], [], "m") == ()
    floats = codec.from_data(tuple[float, ...], [1, 2.5], "m")
    assert floats == (1.0, 2.5) and type(floats[0]) is float
    refused: list[tuple[Any, Any, str]] = [
        (tuple[str, ...], "ab", "m: expected a list, got str"),
        (tuple[str, ...], [1], "m[0]: expected a string, got int"),
        (tuple[str, ...], ["a", 1], "m[1]: expected a string, got int"),
        (tuple[int, ...], [1, True], "m[1]: expected an integer, got bool"),
        (tuple[float, ...], [1.0, math.inf], "m[1]: numbers must be finite"),
    ]
    for annotation, data, message in refused:
        with pytest.raises(MalformedMessage) as refusal:
            codec.from_data(annotation, data, "m")
        assert str(refusal.value) == message


def _nested_lists(levels: int, fixed: bool) -> tuple[Any, Any]:
    """Lists ``levels`` deep around a ``str | None`` (no scalar fast path), as
    ``tuple[X]`` or ``tuple[X, ...]``, and a value of it."""
    tp: Any = str | None
    data: Any = "leaf"
    for _ in range(levels):
        tp = tuple[tp] if fixed else tuple[tp, ...]
        data = [data]
    return tp, data


@pytest.mark.parametrize("fixed", [False, True])
def test_lists_nest_to_max_depth(fixed: bool) -> None:
    tp, data = _nested_lists(codec.MAX_DEPTH, fixed)
    value = codec.from_data(tp, data, "m")
    for _ in range(codec.MAX_DEPTH):
        assert type(value) is tuple and len(value) == 1
        value = value[0]
    assert value == "leaf"
    tp, data = _nested_lists(codec.MAX_DEPTH + 1, fixed)
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(tp, data, "m")
    deepest = "m" + "[0]" * (codec.MAX_DEPTH + 1)
    assert str(refused.value) == f"{deepest}: nested deeper than {codec.MAX_DEPTH}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("x", "m: expected a list, got str"),
        ([1], "m: expected 2 items, got 1"),
        ([1, 2, 3], "m: expected 2 items, got 3"),
        ([1, 2], "m[1]: expected a string, got int"),
    ],
)
def test_a_fixed_tuple_is_refused_saying_why(data: Any, message: str) -> None:
    assert codec.from_data(tuple[int, str], [1, "a"], "m") == (1, "a")
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(tuple[int, str], data, "m")
    assert str(refused.value) == message


def test_a_decoded_envelope_holds_what_its_sender_signed() -> None:
    guard = ReplayGuard(60.0)
    raw = encode(SENDER, "c", 7, 1.5, Query("p"))
    env = decode(raw, colony_id="c", is_member=lambda _: True, now=1.0, replay=guard)
    assert (env.colony_id, env.sender, env.seq, env.timestamp, env.type, env.body) == (
        "c",
        SENDER.member_id,
        7,
        1.5,
        "Query",
        Query("p"),
    )
    assert env.signature == cbor2.loads(raw)["sig"]
    assert guard.highest(SENDER.member_id) == 7


def test_a_replay_guard_may_track_one_sender_and_one_seq() -> None:
    guard = ReplayGuard(60.0, max_senders=1, max_seqs_per_sender=1)
    guard.accept("a", 10, 0.0, 0.0)
    guard.accept("a", 20, 0.0, 0.0)  # 10 forgotten, and everything up to it refused
    with pytest.raises(ReplayedMessage, match="older than the replay window"):
        guard.check("a", 10, 0.0, 0.0)
    guard.accept("b", 5, 0.0, 0.0)  # the least recently heard-from sender is forgotten
    assert len(guard) == 1
    assert guard.highest("a") is None and guard.highest("b") == 5
    for bounds in ({"max_senders": 0}, {"max_seqs_per_sender": 0}):
        with pytest.raises(ValueError, match=r"^the replay window and bounds must be positive$"):
            ReplayGuard(60.0, **bounds)
    with pytest.raises(ValueError, match=r"^the replay window and bounds must be positive$"):
        ReplayGuard(0.0)


def test_without_a_path_a_refusal_names_the_annotation() -> None:
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(int | None, "x")  # type: ignore[arg-type]
    assert str(refused.value) == (
        "int | None: str fits none of int | None (int | None: expected an integer, got str)"
    )
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(StoreAck, {"pid": 1})
    assert str(refused.value) == "StoreAck.pid: expected a string, got int"
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(StoreAck, {"pid": "p", "x": 1}, given={"refused": "q"})
    assert str(refused.value) == "StoreAck: unknown fields ['x']"


@pytest.mark.parametrize(
    ("data", "given", "message"),
    [
        ([1], None, "m: expected a map, got list"),
        ({}, None, "m: missing field 'pid'"),
        ({"pid": "p", "y": 1, "x": 2}, None, "m: unknown fields ['x', 'y']"),
        (
            {"pid": "p", "refused": "x"},
            {"refused": "q"},
            "m: holds fields kept elsewhere: ['refused']",
        ),
        ({"pid": "p", "x": 1}, {"refused": "q"}, "m: unknown fields ['x']"),
    ],
)
def test_a_message_with_wrong_fields_is_refused_saying_which(
    data: Any, given: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(StoreAck, data, "m", given=given)
    assert str(refused.value) == message


def test_fields_kept_elsewhere_complete_the_message() -> None:
    # a required field given, an optional one sent; and the other way round
    assert codec.from_data(StoreAck, {"refused": "q"}, given={"pid": "p"}) == StoreAck("p", "q")
    assert codec.from_data(StoreAck, {"pid": "p"}, given={"refused": "q"}) == StoreAck("p", "q")
    assert codec.from_data(StoreAck, {}, given={"pid": "p"}) == StoreAck("p")


@dataclasses.dataclass(frozen=True)
class _Holder:
    value: Any


@pytest.mark.parametrize("in_maps", [False, True])
def test_a_field_counts_one_level_of_nesting(in_maps: bool) -> None:
    def wrap(value: Any) -> Any:
        return {"k": value} if in_maps else [value]

    data: Any = "leaf"
    for _ in range(codec.MAX_DEPTH - 1):
        data = wrap(data)
    # the field at depth 1, its innermost value at MAX_DEPTH
    assert codec.from_data(_Holder, {"value": data}, "m") == _Holder(data)
    assert codec.from_data(_Holder, {"value": data}, "m", given={}) == _Holder(data)
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(_Holder, {"value": wrap(data)}, "m")
    deepest = "m.value" + (".k" if in_maps else "[0]") * codec.MAX_DEPTH
    assert str(refused.value) == f"{deepest}: nested deeper than {codec.MAX_DEPTH}"


def test_a_message_its_own_checks_refuse_is_malformed_saying_why() -> None:
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(Batch, {"items": []}, "m")
    assert str(refused.value) == f"m: a batch holds 1 to {MAX_BATCH} items, not 0"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({1: "x"}, "m.value: map keys must be strings"),
        ({"a": [1, {"b": 2, 3: 4}]}, "m.value.a[1]: map keys must be strings"),
        ([0.5, math.nan], "m.value[1]: numbers must be finite"),
        ({"a": math.inf}, "m.value.a: numbers must be finite"),
        ({"a": [set()]}, "m.value.a[0]: set is not a plain value"),
    ],
)
def test_a_json_like_value_is_refused_saying_where(value: Any, message: str) -> None:
    plain: list[Any] = [None, True, 1, "s", b"b", 1.5, [], {}, {"a": [1, {"b": None}]}]
    assert codec.from_data(_Holder, {"value": plain}, "m") == _Holder(plain)
    with pytest.raises(MalformedMessage) as refused:
        codec.from_data(_Holder, {"value": value}, "m")
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (cbor2.dumps({"b": 1, "a": 2}), r"^CBOR is not in canonical form$"),
        # a list that holds itself (shared references), which canonical CBOR cannot encode
        (b"\xd8\x1c\x81\xd8\x1d\x00", r"^CBOR holds values a colony message cannot: cyclic"),
        (cbor2.dumps(1) + b"\x00\x00", r"^2 bytes after the CBOR item$"),
        (b"\xff\x00", r"^not CBOR: "),
    ],
)
def test_cbor_that_is_not_one_canonical_item_is_refused_saying_why(
    raw: bytes, message: str
) -> None:
    assert codec.loads_canonical(cbor2.dumps({"a": 2, "b": 1}, canonical=True)) == {"a": 2, "b": 1}
    with pytest.raises(MalformedMessage, match=message):
        codec.loads_canonical(raw)


def test_values_the_codec_does_not_know_are_left_to_cbor() -> None:
    tag = cbor2.CBORTag(9999, 1)
    assert codec.to_data({"t": [tag]}) == {"t": [tag]}
    assert codec.canonical_bytes({"t": tag}) == cbor2.dumps({"t": tag}, canonical=True)
    assert codec.to_data(StoreAck) is StoreAck  # a dataclass itself, not an instance
