"""Promises of the codec and the envelope's bookkeeping that mutation testing found
unchecked (bench/mutation_score.py, bench/results/MUTATION.md): each test fails with a
mutant that survived the other tests."""

from __future__ import annotations

import typing
from typing import Any

import cbor2
import pytest

from colonyp2p import codec
from colonyp2p.core.messages import Batch, BatchItem, Message, Query, StoreAck
from colonyp2p.errors import MalformedMessage, ReplayedMessage, UnknownMessageType
from colonyp2p.wire import RejectionCounter, ReplayGuard, batch, decode, unbatch

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
