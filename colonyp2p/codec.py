"""One codec for every colony object: dataclasses <-> CBOR data, strictly typed.

Objects are frozen dataclasses whose fields are annotated with str, int, float,
bool, bytes, None, unions, tuple[X, ...], dict[str, X], other such dataclasses,
or Any (JSON-like values: what ColonyOS args and outputs hold). Decoding checks
every field against its annotation and refuses unknown or missing fields, so
anything that decodes is a well-formed object.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any, TypeVar

import cbor2

from colonyp2p.errors import MalformedMessage

T = TypeVar("T")

MAX_DEPTH = 32


def to_data(obj: Any) -> Any:
    """Plain CBOR/JSON-able data for an object (dataclasses become maps, tuples lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_data(_as_declared(f, getattr(obj, f.name))) for f in _fields(type(obj))}
    if isinstance(obj, tuple | list):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def _as_declared(f: dataclasses.Field[Any], value: Any) -> Any:
    # An int in a float field (FunctionSpec(maxwaittime=-1)) must encode as the float it
    # decodes to; otherwise the object's canonical bytes, hence its hash and signature,
    # change on the way through the wire.
    if type(value) is int and f.type in (float, "float"):
        return float(value)
    return value


def canonical_bytes(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 core deterministic encoding) of an object."""
    return cbor2.dumps(to_data(obj), canonical=True)


def loads_canonical(raw: bytes) -> Any:
    """Decode CBOR and insist it was canonical: one object has one encoding only."""
    try:
        data = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises many kinds of errors on garbage
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    try:
        again = cbor2.dumps(data, canonical=True)
    except Exception as exc:
        raise MalformedMessage(f"CBOR holds values a colony message cannot: {exc}") from exc
    if again != raw:
        raise MalformedMessage("CBOR is not in canonical form")
    return data


def from_data(tp: type[T], data: Any, where: str = "") -> T:
    """Build a ``tp`` from plain data, raising MalformedMessage with the path of the bad field."""
    return typing.cast(T, _convert(tp, data, where or _name(tp), 0))


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, data: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"{where}: nested deeper than {MAX_DEPTH}")
    if tp is Any:
        _check_plain(data, where, depth)
        return data
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        errors = []
        for option in typing.get_args(tp):
            try:
                return _convert(option, data, where, depth)
            except MalformedMessage as exc:
                errors.append(str(exc))
        # say why each option failed: the path of the bad field is inside one of them
        raise MalformedMessage(
            f"{where}: {type(data).__name__} fits none of {tp} ({'; '.join(errors)})"
        )
    if origin is typing.Literal:
        # compare types too: 1 == True == 1.0, but only the declared value is allowed
        if not any(type(data) is type(a) and data == a for a in typing.get_args(tp)):
            raise MalformedMessage(f"{where}: {data!r} is not one of {typing.get_args(tp)}")
        return data
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(data, list | tuple):
            raise MalformedMessage(f"{where}: expected a list, got {type(data).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(
                _convert(args[0], v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data)
            )
        if len(args) != len(data):
            raise MalformedMessage(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(
            _convert(a, v, f"{where}[{i}]", depth + 1)
            for i, (a, v) in enumerate(zip(args, data, strict=True))
        )
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(data, dict):
            raise MalformedMessage(f"{where}: expected a map, got {type(data).__name__}")
        out = {}
        for k, v in data.items():
            out[_convert(key_tp, k, f"{where} key", depth + 1)] = _convert(
                value_tp, v, f"{where}.{k}", depth + 1
            )
        return out
    if tp is type(None):
        if data is not None:
            raise MalformedMessage(f"{where}: expected null, got {type(data).__name__}")
        return None
    if tp is bool:
        if not isinstance(data, bool):
            raise MalformedMessage(f"{where}: expected a boolean, got {type(data).__name__}")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise MalformedMessage(f"{where}: expected an integer, got {type(data).__name__}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise MalformedMessage(f"{where}: expected a number, got {type(data).__name__}")
        try:
            number = float(data)
        except OverflowError:  # a bignum: float() and isfinite() both raise on it
            raise MalformedMessage(f"{where}: number out of range") from None
        if not math.isfinite(number):
            raise MalformedMessage(f"{where}: numbers must be finite")
        return number
    if tp is str:
        if not isinstance(data, str):
            raise MalformedMessage(f"{where}: expected a string, got {type(data).__name__}")
        return data
    if tp is bytes:
        if not isinstance(data, bytes):
            raise MalformedMessage(f"{where}: expected bytes, got {type(data).__name__}")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, data, where, depth)
    raise TypeError(f"codec cannot handle the annotation {tp!r} at {where}")


def _convert_dataclass(cls: type, data: Any, where: str, depth: int) -> Any:
    if not isinstance(data, dict):
        raise MalformedMessage(f"{where}: expected a map, got {type(data).__name__}")
    hints = _hints(cls)
    kwargs = {}
    known = set()
    for f in _fields(cls):
        known.add(f.name)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}", depth + 1)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise MalformedMessage(f"{where}: missing field {f.name!r}")
    unknown = [k for k in data if k not in known]
    if unknown:
        raise MalformedMessage(f"{where}: unknown fields {sorted(map(str, unknown))}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ validation
        raise MalformedMessage(f"{where}: {exc}") from exc


def _check_plain(data: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedMessage(f"{where}: nested deeper than {MAX_DEPTH}")
    if data is None or isinstance(data, bool | int | str | bytes):
        return
    if isinstance(data, float):
        if not math.isfinite(data):
            raise MalformedMessage(f"{where}: numbers must be finite")
        return
    if isinstance(data, list | tuple):
        for i, v in enumerate(data):
            _check_plain(v, f"{where}[{i}]", depth + 1)
        return
    if isinstance(data, dict):
        for k, v in data.items():
            if not isinstance(k, str):
                raise MalformedMessage(f"{where}: map keys must be strings")
            _check_plain(v, f"{where}.{k}", depth + 1)
        return
    raise MalformedMessage(f"{where}: {type(data).__name__} is not a plain value")
