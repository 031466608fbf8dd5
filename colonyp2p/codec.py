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
import io
import math
import types
import typing
from typing import Any, TypeVar

import cbor2

from colonyp2p.errors import MalformedMessage

T = TypeVar("T")

MAX_DEPTH = 32


_SCALARS = frozenset({str, int, float, bytes, bool, type(None)})
# Per dataclass: its fields' names, each with whether it is declared float. Encoding
# runs for every message sent and received; the plan saves the dataclasses machinery.
_PLANS: dict[type, tuple[tuple[str, bool], ...]] = {}


def to_data(obj: Any) -> Any:
    """Plain CBOR/JSON-able data for an object (dataclasses become maps, tuples lists)."""
    tp = type(obj)
    if tp in _SCALARS:
        return obj
    plan = _PLANS.get(tp)
    if plan is None:
        if isinstance(obj, tuple | list):
            return [to_data(v) for v in obj]
        if isinstance(obj, dict):
            return {k: to_data(v) for k, v in obj.items()}
        if not dataclasses.is_dataclass(obj) or isinstance(obj, type):
            return obj
        plan = _PLANS[tp] = _plan(tp)
    return _fields_data(obj, plan)


def _fields_data(obj: Any, plan: tuple[tuple[str, bool], ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, is_float in plan:
        value = getattr(obj, name)
        # An int in a float field (FunctionSpec(maxwaittime=-1)) must encode as the
        # float it decodes to; otherwise the object's canonical bytes, hence its hash
        # and signature, change on the way through the wire.
        if is_float and type(value) is int:
            value = float(value)
        out[name] = value if type(value) in _SCALARS else to_data(value)
    return out


def to_data_without(obj: Any, field: str) -> dict[str, Any]:
    """``to_data`` of a dataclass instance without one of its fields (kept elsewhere;
    ``from_data(..., given=...)`` puts it back)."""
    cls: Any = type(obj)  # typeshed's functools.cache takes Hashable, which type[] is not
    return _fields_data(obj, _plan_without(cls, field))


@functools.cache
def _plan_without(cls: type, field: str) -> tuple[tuple[str, bool], ...]:
    plan = _plan(cls)
    if field not in {name for name, _ in plan}:
        raise TypeError(f"{cls.__name__} has no field {field!r}")
    return tuple(entry for entry in plan if entry[0] != field)


def canonical_bytes(obj: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 core deterministic encoding) of an object."""
    return cbor2.dumps(to_data(obj), canonical=True)


def plain_bytes(obj: Any) -> bytes:
    """CBOR of an object, map keys in field order: about three times faster than
    ``canonical_bytes``, for bytes that nothing signs or hashes (``loads`` reads both)."""
    return cbor2.dumps(to_data(obj))


def plain_bytes_without(obj: Any, field: str) -> bytes:
    """``plain_bytes`` of a dataclass instance without one of its fields."""
    return cbor2.dumps(to_data_without(obj, field))


def loads(raw: bytes) -> Any:
    """Decode one CBOR item that is all of ``raw``, raising MalformedMessage on garbage
    (cbor2.loads stops after the first item and ignores what follows)."""
    fp = io.BytesIO(raw)
    try:
        data = cbor2.CBORDecoder(fp).decode()
    except Exception as exc:  # cbor2 raises many kinds of errors on garbage
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    if fp.tell() != len(raw):
        raise MalformedMessage(f"{len(raw) - fp.tell()} bytes after the CBOR item")
    return data


def loads_canonical(raw: bytes) -> Any:
    """Decode CBOR and insist it was canonical: one object has one encoding only."""
    data = loads(raw)
    try:
        again = cbor2.dumps(data, canonical=True)
    except Exception as exc:
        raise MalformedMessage(f"CBOR holds values a colony message cannot: {exc}") from exc
    if again != raw:
        raise MalformedMessage("CBOR is not in canonical form")
    return data


def from_data(
    tp: type[T], data: Any, where: str = "", *, given: typing.Mapping[str, Any] | None = None
) -> T:
    """Build a ``tp`` from plain data, raising MalformedMessage with the path of the bad field.
    ``given``: fields of a dataclass ``tp`` already built (left out of ``data``, see
    ``to_data_without``), taken as they are."""
    if given is None:
        return typing.cast(T, _convert(tp, data, where or _name(tp), 0))
    annotation: Any = tp
    _converter(annotation)  # builds the dataclass's builder, or refuses tp
    if tp not in _BUILDERS:
        raise TypeError(f"given fields need a dataclass, not {tp!r}")
    return typing.cast(T, _BUILDERS[tp](data, where or _name(tp), 0, given))


def _plan(cls: type) -> tuple[tuple[str, bool], ...]:
    return tuple((f.name, f.type in (float, "float")) for f in _fields(cls))


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, data: Any, where: str, depth: int) -> Any:
    return _converter(tp)(data, where, depth)


# A converter checks and builds one annotation's values: (data, where, depth) -> value.
# Built once per annotation, because decoding runs for every message a node receives
# and looking the annotation's structure up each time cost most of the decoding.
_Converter = typing.Callable[[Any, str, int], Any]


@functools.cache
def _converter(tp: Any) -> _Converter:
    if tp is Any:

        def plain(data: Any, where: str, depth: int) -> Any:
            _check_plain(data, where, depth)
            return data

        return _deep(plain)
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        return _deep(_union(tp))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)

        def literal(data: Any, where: str, depth: int) -> Any:
            # compare types too: 1 == True == 1.0, but only the declared value is allowed
            if not any(type(data) is type(a) and data == a for a in allowed):
                raise MalformedMessage(f"{where}: {data!r} is not one of {allowed}")
            return data

        return _deep(literal)
    if origin is tuple:
        return _deep(_tuple(typing.get_args(tp)))
    if origin is dict:
        return _deep(_dict(*typing.get_args(tp)))
    if tp in _SIMPLE:
        return _deep(_SIMPLE[tp])
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _deep(_dataclass(tp))
    raise TypeError(f"codec cannot handle the annotation {tp!r}")


def _deep(convert: _Converter) -> _Converter:
    def checked(data: Any, where: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise MalformedMessage(f"{where}: nested deeper than {MAX_DEPTH}")
        return convert(data, where, depth)

    return checked


def _union(tp: Any) -> _Converter:
    options = typing.get_args(tp)
    # X | None: null is settled without trying X (a refusal raises, which is slow)
    nullable = type(None) in options
    others = tuple(o for o in options if o is not type(None))

    def union(data: Any, where: str, depth: int) -> Any:
        if data is None and nullable:
            return None
        errors = []
        for option in others if nullable else options:
            try:
                return _converter(option)(data, where, depth)
            except MalformedMessage as exc:
                errors.append(str(exc))
        # say why each option failed: the path of the bad field is inside one of them
        raise MalformedMessage(
            f"{where}: {type(data).__name__} fits none of {tp} ({'; '.join(errors)})"
        )

    return union


def _tuple(args: tuple[Any, ...]) -> _Converter:
    if len(args) == 2 and args[1] is Ellipsis:
        item = args[0]

        def variadic(data: Any, where: str, depth: int) -> Any:
            if not isinstance(data, list | tuple):
                raise MalformedMessage(f"{where}: expected a list, got {type(data).__name__}")
            convert = _converter(item)
            exact = _SCALAR_CHECKS.get(convert)
            if exact is not None and exact is not float:  # no paths to build
                for v in data:
                    if type(v) is not exact:
                        break
                else:
                    return tuple(data)
            return tuple(convert(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(data))

        return variadic

    def fixed(data: Any, where: str, depth: int) -> Any:
        if not isinstance(data, list | tuple):
            raise MalformedMessage(f"{where}: expected a list, got {type(data).__name__}")
        if len(args) != len(data):
            raise MalformedMessage(f"{where}: expected {len(args)} items, got {len(data)}")
        return tuple(
            _converter(a)(v, f"{where}[{i}]", depth + 1)
            for i, (a, v) in enumerate(zip(args, data, strict=True))
        )

    return fixed


def _dict(key_tp: Any, value_tp: Any) -> _Converter:
    def mapping(data: Any, where: str, depth: int) -> Any:
        if not isinstance(data, dict):
            raise MalformedMessage(f"{where}: expected a map, got {type(data).__name__}")
        key, value = _converter(key_tp), _converter(value_tp)
        out = {}
        for k, v in data.items():
            out[key(k, f"{where} key", depth + 1)] = value(v, f"{where}.{k}", depth + 1)
        return out

    return mapping


def _none(data: Any, where: str, depth: int) -> Any:
    if data is not None:
        raise MalformedMessage(f"{where}: expected null, got {type(data).__name__}")
    return None


def _instance_of(tp: type, what: str) -> _Converter:
    def check(data: Any, where: str, depth: int) -> Any:
        if not isinstance(data, tp):
            raise MalformedMessage(f"{where}: expected {what}, got {type(data).__name__}")
        return data

    return check


def _int(data: Any, where: str, depth: int) -> Any:
    if not isinstance(data, int) or isinstance(data, bool):
        raise MalformedMessage(f"{where}: expected an integer, got {type(data).__name__}")
    return data


def _float(data: Any, where: str, depth: int) -> Any:
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise MalformedMessage(f"{where}: expected a number, got {type(data).__name__}")
    try:
        number = float(data)
    except OverflowError:  # a bignum: float() and isfinite() both raise on it
        raise MalformedMessage(f"{where}: number out of range") from None
    if not math.isfinite(number):
        raise MalformedMessage(f"{where}: numbers must be finite")
    return number


_SIMPLE: dict[Any, _Converter] = {
    type(None): _none,
    bool: _instance_of(bool, "a boolean"),
    int: _int,
    float: _float,
    str: _instance_of(str, "a string"),
    bytes: _instance_of(bytes, "bytes"),
}
# converters that pass every value of exactly this type as it is (a float: if finite)
_SCALAR_CHECKS: dict[_Converter, type] = {}


def _dataclass(cls: type) -> _Converter:
    hints = _hints(cls)
    plan = [
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in _fields(cls)
    ]
    known = frozenset(name for name, _, _ in plan)
    # converters by field, looked up at the first build (a field may name a dataclass
    # whose converter is being built right now): hashing annotations at every field of
    # every message was a third of decoding
    converters: list[tuple[str, bool, _Converter, type | None]] = []

    def build(
        data: Any, where: str, depth: int, given: typing.Mapping[str, Any] | None = None
    ) -> Any:
        if not isinstance(data, dict):
            raise MalformedMessage(f"{where}: expected a map, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        if given is not None:
            if not given.keys().isdisjoint(data):
                raise MalformedMessage(f"{where}: holds fields kept elsewhere: {sorted(given)}")
            kwargs.update(given)
        if not converters:
            for name, tp, required in plan:
                convert = _converter(tp)
                converters.append((name, required, convert, _SCALAR_CHECKS.get(convert)))
        for name, required, convert, exact in converters:
            if name in data:
                value = data[name]
                # the common case, a scalar of exactly the declared type, without a call
                # or the path string only an error would need
                if type(value) is exact and (exact is not float or math.isfinite(value)):  # type: ignore[arg-type]
                    kwargs[name] = value
                else:
                    kwargs[name] = convert(value, f"{where}.{name}", depth + 1)
            elif required and name not in kwargs:
                raise MalformedMessage(f"{where}: missing field {name!r}")
        if len(kwargs) != len(data) + (0 if given is None else len(given)):
            unknown = [k for k in data if k not in known]
            raise MalformedMessage(f"{where}: unknown fields {sorted(map(str, unknown))}")
        try:
            return cls(**kwargs)
        except (ValueError, TypeError) as exc:  # __post_init__ validation
            raise MalformedMessage(f"{where}: {exc}") from exc

    _BUILDERS[cls] = build
    return build


# Each dataclass's builder, for from_data(..., given=...)
_BUILDERS: dict[type, typing.Callable[..., Any]] = {}


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


_SCALAR_CHECKS.update({_converter(t): t for t in (str, bytes, int, bool, float)})
