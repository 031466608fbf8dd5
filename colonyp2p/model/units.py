"""ColonyOS (Kubernetes-style) resource strings: cpu "500m", mem "10Gi", walltime seconds.

The model holds plain integers (millicores, bytes, seconds); these functions
translate at the edges, where users write ColonyOS JSON. An empty string means
"not set" and reads as 0. Values must come out whole: "1.5Gi" is fine (an exact
number of bytes), "0.5m" cpu is not (half a millicore).
"""

from __future__ import annotations

import re
from fractions import Fraction

from colonyp2p.errors import ValidationError
from colonyp2p.model.checks import INT64_MAX

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_CPU_RE = re.compile(_NUMBER + r"(m?)")
_BYTES_RE = re.compile(_NUMBER + r"\s*(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?(B?)")

BINARY_UNITS: dict[str, int] = {
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "Ei": 1 << 60,
}
DECIMAL_UNITS: dict[str, int] = {
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}
# "K" is not Kubernetes, but people write "1K" and "1KB" and mean a thousand.
_ALL_UNITS: dict[str, int] = {**BINARY_UNITS, **DECIMAL_UNITS, "K": 10**3}
# Largest first, so the first exact fit of each family is its shortest spelling.
_FORMAT_UNITS = sorted(
    [*BINARY_UNITS.items(), *DECIMAL_UNITS.items()], key=lambda item: item[1], reverse=True
)


def _as_text(value: object, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"must be a string like the ColonyOS ones, got {value!r}", field)
    return str(value).strip()


def _whole(amount: Fraction, text: str, unit_name: str, field: str) -> int:
    if amount.denominator != 1:
        raise ValidationError(f"{text!r} is not a whole number of {unit_name}", field)
    value = int(amount)
    if value > INT64_MAX:
        raise ValidationError(f"{text!r} is too large", field)
    return value


def parse_cpu(value: str | int, field: str = "cpu") -> int:
    """Millicores from "500m" (500), "2" (2000), "0.5" (500); "" is 0.

    An int is read as a number of cores, as the string of its digits would be.
    """
    text = _as_text(value, field)
    if not text:
        return 0
    match = _CPU_RE.fullmatch(text)
    if match is None:
        raise ValidationError(
            f"{text!r} is not a cpu amount (write cores like '2' or millicores like '500m')", field
        )
    amount = Fraction(match.group(1))
    if not match.group(2):
        amount *= 1000
    return _whole(amount, text, "millicores", field)


def parse_bytes(value: str | int, field: str = "mem") -> int:
    """Bytes from "10Gi", "512Mi", "1G", "100M", "1k", "1000", "1.5Gi", "10GB"; "" is 0.

    Binary suffixes (Ki, Mi, Gi, Ti, Pi, Ei) are powers of 1024, decimal ones
    (k or K, M, G, T, P, E) powers of 1000; a trailing "B" is allowed. An int is
    a number of bytes.
    """
    text = _as_text(value, field)
    if not text:
        return 0
    match = _BYTES_RE.fullmatch(text)
    if match is None:
        raise ValidationError(
            f"{text!r} is not a size (write bytes like '1000', or '512Mi', '10Gi', '1G')", field
        )
    number, unit, _ = match.groups()
    amount = Fraction(number) * (_ALL_UNITS[unit] if unit else 1)
    return _whole(amount, text, "bytes", field)


def parse_seconds(value: object, field: str = "walltime") -> int:
    """Whole seconds from an int, an integral float or a string of digits; None or "" is 0.

    Only the form is checked here: the range (negative numbers, more than a year) is
    Conditions.walltime's, which names the field and says what is allowed.
    """
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        raise ValidationError(f"must be a number of seconds, got {value!r}", field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int):
        raise ValidationError(f"must be a whole number of seconds, got {value!r}", field)
    return value


def format_cpu(millicores: int) -> str:
    """ "2" for 2000 millicores, "500m" for 500, "0" for 0."""
    if millicores < 0:
        raise ValidationError(f"cpu cannot be negative, got {millicores}", "cpu")
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_bytes(size: int) -> str:
    """The shortest exact spelling of a size: 1024 -> "1Ki", 10**9 -> "1G", 1500 -> "1500".

    Ties go to the binary unit, which is what ColonyOS users usually write.
    """
    if size < 0:
        raise ValidationError(f"a size cannot be negative, got {size}", "mem")
    best = str(size)
    if size == 0:
        return best
    for suffix, factor in _FORMAT_UNITS:
        if size % factor == 0:
            candidate = f"{size // factor}{suffix}"
            if len(candidate) < len(best) or (
                len(candidate) == len(best) and suffix in BINARY_UNITS and best[-1] != "i"
            ):
                best = candidate
    return best
