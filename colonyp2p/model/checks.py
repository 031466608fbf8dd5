"""Small field checks shared by the model's ``__post_init__`` methods.

Every check raises ValidationError naming the field, never ValueError: the
codec turns ValueError into MalformedMessage and would lose the field name.
They are written for the hot path (specs are built for every message that
carries one): type tests with ``type(x) is``, no allocation when a value is fine.
"""

from __future__ import annotations

import math
import sys
from typing import Any

from colonyp2p.errors import ValidationError

INT64_MAX = 2**63 - 1
FLOAT_MAX = sys.float_info.max  # the default bounds of as_float: any finite float
# CBOR encodes integers in [-2**64, 2**64 - 1] without a bignum tag; JSON users
# rarely need more, and the codec's strict decoding would refuse a tag.
CBOR_INT_MIN = -(2**64)
CBOR_INT_MAX = 2**64 - 1
# Nesting allowed inside args/kwargs/outputs. The codec refuses messages nested
# deeper than 32 levels in all; the envelope, SignedSpec and FunctionSpec take
# a few of those, so user values get fewer.
MAX_VALUE_DEPTH = 16
# Upper bound of a CBOR item header (major type + 8-byte length or value).
HEADER = 9


def set_field(obj: object, name: str, value: object) -> None:
    """Normalise a field of a frozen dataclass during ``__post_init__``."""
    object.__setattr__(obj, name, value)


def check_int(
    value: object,
    field: str,
    lo: int,
    hi: int = INT64_MAX,
    *,
    unit: str = "",
    no_limit: int | None = None,
) -> None:
    """An int (not a bool) in [lo, hi], or exactly ``no_limit`` if one is given."""
    if type(value) is not int:
        raise ValidationError(f"must be an integer, got {type(value).__name__}", field)
    if not lo <= value <= hi and value != no_limit:
        raise ValidationError(_refusal(value, lo, hi, INT64_MAX, unit, no_limit), field)


def check_bool(value: object, field: str) -> None:
    """A bool (not 0 or 1: CBOR tells them apart)."""
    if type(value) is not bool:
        raise ValidationError(f"must be true or false, got {type(value).__name__}", field)


def as_float(
    value: object,
    field: str,
    lo: float = -FLOAT_MAX,
    hi: float = FLOAT_MAX,
    *,
    unit: str = "",
    no_limit: float | None = None,
) -> float:
    """A number in [lo, hi] (finite, whatever the bounds), or exactly ``no_limit``, as a float.

    Float fields must hold floats: canonical CBOR encodes ``-1`` and ``-1.0``
    differently, and the codec decodes every float field as a float, so an int
    left in a float field would change the bytes (and break the signature) after
    one trip over the wire.
    """
    if type(value) is float or type(value) is int:
        # False for nan; exact for ints of any size; and the bounds are finite, so a
        # value that passes is finite and float() cannot overflow on it.
        if lo <= value <= hi or value == no_limit:
            return float(value)
        raise ValidationError(_refusal(value, lo, hi, FLOAT_MAX, unit, no_limit), field)
    raise ValidationError(f"must be a number, got {type(value).__name__}", field)


def _refusal(
    value: float, lo: float, hi: float, top: float, unit: str, no_limit: float | None
) -> str:
    """What check_int and as_float accept and what they got: one message for every refusal."""
    if lo == -top and hi == top:
        allowed = "a finite number"
    elif hi == top and not value > hi:  # the type's own maximum goes unsaid unless passed
        allowed = f"at least {lo}{unit}"
    else:
        allowed = f"between {lo} and {hi}{unit}"
    if no_limit is not None:
        allowed = f"{no_limit} (no limit) or {allowed}"
    got = str(value)
    if len(got) > 24:  # a JSON integer may have hundreds of digits
        got = f"{got[:8]}... ({len(got)} digits)"
    return f"must be {allowed}, got {got}"


def check_str(value: object, field: str, max_len: int = 4096, nonempty: bool = False) -> None:
    """A string of at most ``max_len`` characters (and not empty if ``nonempty``)."""
    if type(value) is not str:
        raise ValidationError(f"must be a string, got {type(value).__name__}", field)
    if nonempty and not value:
        raise ValidationError("must not be empty", field)
    if len(value) > max_len:
        raise ValidationError(f"must be at most {max_len} characters, got {len(value)}", field)


def as_str_tuple(value: object, field: str, max_len: int = 4096) -> tuple[str, ...]:
    """A tuple of strings; a list is accepted and turned into a tuple."""
    if type(value) is list:
        value = tuple(value)
    if type(value) is not tuple:
        raise ValidationError(f"must be a list of strings, got {type(value).__name__}", field)
    for i, item in enumerate(value):
        check_str(item, f"{field}[{i}]", max_len)
    return value


def str_size(text: str) -> int:
    """An upper bound of the CBOR size of a string, without encoding it."""
    return HEADER + (len(text) if text.isascii() else 4 * len(text))


def plain_size(value: Any, field: str, depth: int = 0) -> int:
    """Check a JSON-like value and return an upper bound of its CBOR size.

    JSON-like: None, bool, int, finite float, str, bytes, lists (or tuples) of
    such values and maps with string keys. This is what ColonyOS args, kwargs
    and outputs hold, plus bytes.
    """
    if depth > MAX_VALUE_DEPTH:
        raise ValidationError(f"nested deeper than {MAX_VALUE_DEPTH} levels", field)
    kind = type(value)
    if kind is str:
        return str_size(value)
    if kind is int:
        if not CBOR_INT_MIN <= value <= CBOR_INT_MAX:
            raise ValidationError("integer out of the 64-bit range", field)
        return HEADER
    if value is None or kind is bool:
        return 1
    if kind is float:
        if not math.isfinite(value):
            raise ValidationError("numbers must be finite (no NaN or infinity)", field)
        return HEADER
    if kind is bytes:
        return HEADER + len(value)
    if kind is list or kind is tuple:
        total = HEADER
        for i, item in enumerate(value):
            total += plain_size(item, f"{field}[{i}]", depth + 1)
        return total
    if kind is dict:
        total = HEADER
        for key, item in value.items():
            if type(key) is not str:
                raise ValidationError(
                    f"map keys must be strings, got {type(key).__name__} {key!r}", field
                )
            total += str_size(key) + plain_size(item, f"{field}.{key}", depth + 1)
        return total
    raise ValidationError(
        f"{kind.__name__} is not a JSON-like value (use None, bool, int, float, str, bytes, "
        "lists and maps with string keys)",
        field,
    )


def as_tuple(value: object, field: str) -> tuple[Any, ...]:
    """A tuple field's value; a list is accepted and turned into a tuple."""
    if type(value) is tuple:
        return value
    if type(value) is list:
        return tuple(value)
    raise ValidationError(f"must be a list, got {type(value).__name__}", field)
