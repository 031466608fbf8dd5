"""The codec: strict dataclass <-> CBOR data conversion and canonical CBOR."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.codec import (
    MAX_DEPTH,
    canonical_bytes,
    from_data,
    loads,
    loads_canonical,
    plain_bytes,
    to_data,
    to_data_without,
)
from colonyp2p.errors import MalformedMessage


@dataclass(frozen=True)
class Inner:
    name: str
    count: int
    ratio: float
    flag: bool = False


@dataclass(frozen=True)
class Outer:
    label: str
    blob: bytes
    inner: Inner
    items: tuple[Inner, ...]
    tags: dict[str, int]
    maybe: Inner | None
    pair: tuple[str, int]
    kind: Literal["a", "b"]
    level: Literal[0, 1]
    extra: Any
    limit: float = -1  # an int default in a float field, as FunctionSpec has
    names: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Chain:
    value: int
    next: Chain | None = None


finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = finite | st.integers(-(2**53), 2**53)  # a float field also takes an int
plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | finite
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
inners = st.builds(
    Inner, name=st.text(max_size=8), count=st.integers(), ratio=numbers, flag=st.booleans()
)
outers = st.builds(
    Outer,
    label=st.text(max_size=16),
    blob=st.binary(max_size=16),
    inner=inners,
    items=st.lists(inners, max_size=3).map(tuple),
    tags=st.dictionaries(st.text(max_size=8), st.integers(), max_size=4),
    maybe=st.none() | inners,
    pair=st.tuples(st.text(max_size=4), st.integers()),
    kind=st.sampled_from(["a", "b"]),
    level=st.sampled_from([0, 1]),
    extra=plain,
    limit=numbers,
    names=st.lists(st.text(max_size=4), max_size=3).map(tuple),
)


def good_data() -> dict[str, Any]:
    inner = {"name": "n", "count": 1, "ratio": 0.5, "flag": False}
    return {
        "label": "l",
        "blob": b"b",
        "inner": dict(inner),
        "items": [dict(inner), dict(inner)],
        "tags": {"k": 1},
        "maybe": None,
        "pair": ["p", 2],
        "kind": "a",
        "level": 0,
        "extra": {"x": [1, 2.5, "y"]},
    }


# --- round trips and determinism ---------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(outers)
def test_round_trip(obj: Outer) -> None:
    raw = canonical_bytes(obj)
    back = from_data(Outer, loads_canonical(raw))
    assert back == obj
    # the decoded object encodes to the same bytes: its hash and signature survive transit
    assert canonical_bytes(back) == raw


@settings(max_examples=100, deadline=None)
@given(outers)
def test_canonical_bytes_equal_for_equal_objects(obj: Outer) -> None:
    shuffled = dataclasses.replace(
        obj,
        tags=dict(reversed(list(obj.tags.items()))),
        limit=float(obj.limit) if isinstance(obj.limit, int) else obj.limit,
    )
    assert shuffled == obj
    assert canonical_bytes(shuffled) == canonical_bytes(obj) == canonical_bytes(obj)


@settings(max_examples=100, deadline=None)
@given(outers)
def test_plain_bytes_round_trip(obj: Outer) -> None:
    back = from_data(Outer, loads(plain_bytes(obj)))
    assert back == obj
    assert canonical_bytes(back) == canonical_bytes(obj)


@settings(max_examples=100, deadline=None)
@given(outers, st.sampled_from([f.name for f in dataclasses.fields(Outer)]))
def test_a_field_kept_elsewhere_is_given_back(obj: Outer, name: str) -> None:
    data = to_data_without(obj, name)
    assert name not in data
    given_back = {name: getattr(obj, name)}
    assert from_data(Outer, loads(cbor2.dumps(data)), given=given_back) == obj
    with pytest.raises(MalformedMessage, match="kept elsewhere"):
        from_data(Outer, to_data(obj), given=given_back)


def test_only_a_dataclass_has_fields_to_keep_elsewhere() -> None:
    with pytest.raises(TypeError, match="no field 'nope'"):
        to_data_without(Inner("n", 1, 0.5), "nope")
    with pytest.raises(TypeError, match="need a dataclass"):
        from_data(tuple[int, ...], [1], given={"x": 1})


def test_int_in_a_float_field_encodes_as_the_float_it_decodes_to() -> None:
    obj = Inner(name="n", count=1, ratio=3)
    assert canonical_bytes(obj) == canonical_bytes(Inner(name="n", count=1, ratio=3.0))
    assert type(to_data(obj)["ratio"]) is float


@settings(max_examples=100, deadline=None)
@given(plain)
def test_plain_values_round_trip_through_loads_canonical(value: Any) -> None:
    raw = cbor2.dumps(value, canonical=True)
    assert loads_canonical(raw) == value


# --- loads_canonical refuses every non-canonical encoding --------------------------


@pytest.mark.parametrize(
    "hex_raw",
    [
        "a2616201616102",  # {"b": 1, "a": 2}: keys out of order
        "a2616101616102",  # {"a": 1, "a": 2}: duplicate keys
        "1805",  # 5 in the one-byte-argument form
        "190005",  # 5 in the two-byte-argument form
        "1a00000005",  # ... four bytes
        "3800",  # -1 in a longer form
        "fb3ff0000000000000",  # 1.0 as a double
        "fa3f800000",  # 1.0 as a single
        "9f0102ff",  # indefinite-length array
        "5f4101ff",  # indefinite-length byte string
        "7861" + "61",  # "a" with a one-byte length argument
        "c24101",  # bignum tag for 1
        "0100",  # trailing bytes
        "",  # nothing
        "ff",  # a lone break
        "62c328",  # invalid UTF-8
        "83",  # truncated array
    ],
)
def test_loads_canonical_refuses_non_canonical_cbor(hex_raw: str) -> None:
    with pytest.raises(MalformedMessage):
        loads_canonical(bytes.fromhex(hex_raw))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 23), st.sampled_from(["18", "19", "1a", "1b"]))
def test_small_integers_in_longer_forms_are_refused(n: int, head: str) -> None:
    width = {"18": 1, "19": 2, "1a": 4, "1b": 8}[head]
    assert loads_canonical(bytes([n])) == n
    with pytest.raises(MalformedMessage):
        loads_canonical(bytes.fromhex(head) + n.to_bytes(width, "big"))


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.integers(0, 23), min_size=2, max_size=6))
def test_maps_in_any_other_key_order_are_refused(value: dict[str, int]) -> None:
    canonical = cbor2.dumps(value, canonical=True)
    for order in (sorted(value), sorted(value, reverse=True)):
        raw = cbor2.dumps({k: value[k] for k in order})
        if raw != canonical:
            with pytest.raises(MalformedMessage):
                loads_canonical(raw)


# --- from_data refuses what its annotations do not allow ----------------------------


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("inner", "count"), "1", r"Outer\.inner\.count"),
        (("inner", "count"), True, r"Outer\.inner\.count"),
        (("inner", "count"), 1.0, r"Outer\.inner\.count"),
        (("inner", "ratio"), "0.5", r"Outer\.inner\.ratio"),
        (("inner", "ratio"), 10**400, r"Outer\.inner\.ratio"),
        (("inner", "flag"), 0, r"Outer\.inner\.flag"),
        (("items", 1, "name"), b"n", r"Outer\.items\[1\]\.name"),
        (("tags", "k"), "1", r"Outer\.tags\.k"),
        (("pair",), ["p"], r"Outer\.pair"),
        (("pair", 1), "2", r"Outer\.pair\[1\]"),
        (("label",), None, r"Outer\.label"),
        (("blob",), "b", r"Outer\.blob"),
        (("items",), {"0": {}}, r"Outer\.items"),
        (("kind",), "c", r"Outer\.kind"),
        (("level",), True, r"Outer\.level"),
        (("level",), 0.0, r"Outer\.level"),
        (("maybe",), 3, r"Outer\.maybe"),
        (("inner", "count"), True, r"Outer\.inner\.count"),
        (("inner", "flag"), 1, r"Outer\.inner\.flag"),
        (("names",), ["a", 1], r"Outer\.names\[1\]"),
        (("names",), ["a", b"b"], r"Outer\.names\[1\]"),
        (("extra", "x", 1), {1: 2}, r"Outer\.extra\.x\[1\]"),
        (("extra", "x", 1), {1, 2}, r"Outer\.extra\.x\[1\]"),
    ],
)
def test_from_data_names_the_bad_field(path: tuple[Any, ...], value: Any, where: str) -> None:
    data = good_data()
    assert from_data(Outer, data)  # the data is good but for the change below
    target: Any = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(MalformedMessage, match=where):
        from_data(Outer, data)


def test_from_data_refuses_unknown_and_missing_fields() -> None:
    data = good_data()
    data["inner"]["surprise"] = 1
    with pytest.raises(MalformedMessage, match=r"Outer\.inner: unknown fields \['surprise'\]"):
        from_data(Outer, data)
    data = good_data()
    del data["label"]
    with pytest.raises(MalformedMessage, match="missing field 'label'"):
        from_data(Outer, data)
    with pytest.raises(MalformedMessage, match="expected a map"):
        from_data(Outer, [])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_from_data_refuses_non_finite_floats(bad: float) -> None:
    data = good_data()
    data["inner"]["ratio"] = bad
    with pytest.raises(MalformedMessage, match="finite"):
        from_data(Outer, data)
    data = good_data()
    data["extra"] = [1, [bad]]
    with pytest.raises(MalformedMessage, match="finite"):
        from_data(Outer, data)
    # the same through the wire's bytes
    data = good_data()
    data["limit"] = bad
    with pytest.raises(MalformedMessage, match="finite"):
        from_data(Outer, loads_canonical(cbor2.dumps(data, canonical=True)))


def test_from_data_refuses_nesting_deeper_than_max_depth() -> None:
    def nested_any(depth: int) -> Any:
        value: Any = 0
        for _ in range(depth):
            value = [value]
        return value

    data = good_data()
    data["extra"] = nested_any(MAX_DEPTH - 2)
    from_data(Outer, data)
    data["extra"] = nested_any(MAX_DEPTH + 5)
    with pytest.raises(MalformedMessage, match="deeper"):
        from_data(Outer, data)

    def chain(depth: int) -> dict[str, Any]:
        node: dict[str, Any] = {"value": 0}
        for _ in range(depth):
            node = {"value": 0, "next": node}
        return node

    assert from_data(Chain, chain(10)).next is not None
    with pytest.raises(MalformedMessage, match="deeper"):
        from_data(Chain, chain(MAX_DEPTH + 5))


@settings(max_examples=300, deadline=None)
@given(plain)
def test_from_data_raises_only_malformed_on_arbitrary_data(value: Any) -> None:
    # never an Outer: that is a map with 9 required fields, and ``plain`` maps hold at
    # most 4 entries; so each value must be refused, and with MalformedMessage only
    with pytest.raises(MalformedMessage):
        from_data(Outer, value)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(good_data())), plain)
def test_from_data_checks_every_field(name: str, value: Any) -> None:
    data = good_data()
    data[name] = value
    try:
        obj = from_data(Outer, data)
    except MalformedMessage as exc:
        assert f"Outer.{name}" in str(exc)
    else:  # whatever it accepted is a well-formed Outer
        assert from_data(Outer, loads_canonical(canonical_bytes(obj))) == obj


def test_bytes_after_an_item_are_refused() -> None:
    raw = cbor2.dumps({"a": 1})
    assert loads(raw) == {"a": 1}
    with pytest.raises(MalformedMessage, match="2 bytes after the CBOR item"):
        loads(raw + b"\x00\x00")
