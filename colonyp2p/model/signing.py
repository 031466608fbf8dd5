"""What a self-describing signed object's signer signs: its canonical bytes, signature emptied."""

from __future__ import annotations

from typing import Any

import cbor2

from colonyp2p import codec


def unsigned_bytes(obj: Any) -> bytes:
    """Canonical CBOR of a dataclass with a ``signature`` field, that field set to b"".

    Equal to ``codec.canonical_bytes(dataclasses.replace(obj, signature=b""))``
    without building (and validating) a copy: verification is on the hot path.
    """
    data = codec.to_data(obj)
    data["signature"] = b""
    return bytes(cbor2.dumps(data, canonical=True))
