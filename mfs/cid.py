"""Content identifiers: the name of every block and manifest is the hash of its bytes.

A colony uses exactly one CID form: CIDv1, sha2-256 multihash, lower-case base32
string (multibase prefix ``b``), with the ``raw`` codec for file blocks and
``dag-cbor`` for manifests. One form means one name per content, so two nodes that
store the same bytes agree on the name, a string comparison is a CID comparison,
and a parser can be strict (a CID from a peer is also a file name on disk).

The codec prefixes come from py-cid and py-multihash (the multiformats tables
py-libp2p brings) once, at import; naming a block is then one sha256 and one
base32 encoding, ten times faster than building a py-cid object per block,
which matters when a directory holds thousands of small files.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import cid as pycid  # type: ignore[import-untyped]
import multihash  # type: ignore[import-untyped]

from colonyp2p.errors import BadBlock, BadCid

Codec = Literal["raw", "dag-cbor"]
RAW: Codec = "raw"
DAG_CBOR: Codec = "dag-cbor"
HASH = "sha2-256"
DIGEST_SIZE = 32
# "b" + base32 of 4 prefix bytes (version, codec, hash code, digest length) + digest
CID_LENGTH = 59
_CID_RE = re.compile(r"b[a-z2-7]{58}")


def _prefix(codec: Codec) -> bytes:
    sample = bytes(multihash.digest(b"", HASH).encode())
    return bytes(pycid.CIDv1(codec, sample).buffer)[:-DIGEST_SIZE]


_PREFIX: dict[Codec, bytes] = {RAW: _prefix(RAW), DAG_CBOR: _prefix(DAG_CBOR)}
_CODEC_OF: dict[bytes, Codec] = {prefix: codec for codec, prefix in _PREFIX.items()}


@dataclass(frozen=True)
class ParsedCid:
    """What a colony CID says: the codec of the content and its sha256 digest."""

    codec: Codec
    digest: bytes


def _encode(raw: bytes) -> str:
    return "b" + base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def cid_for(data: bytes, codec: Codec) -> str:
    """The CID of ``data`` stored with ``codec``."""
    return _encode(_PREFIX[codec] + hashlib.sha256(data).digest())


def block_cid(data: bytes) -> str:
    """The CID of a file block (raw codec)."""
    return cid_for(data, RAW)


def manifest_cid(encoded: bytes) -> str:
    """The CID of an encoded manifest (dag-cbor codec)."""
    return cid_for(encoded, DAG_CBOR)


def parse(text: object) -> ParsedCid:
    """Decode a CID string, refusing anything but the colony's one form with BadCid.

    Strict on purpose: a CID becomes a file name in the block store, so only
    base32 characters may pass, and the re-encoding check refuses the second
    spelling a base32 string has when its unused trailing bits are not zero.
    """
    if type(text) is not str:
        raise BadCid(_explain(text))
    return _parse(text)


# A CID is checked where it arrives, in each manifest that names it, and again as a
# path: caching the strings saves a fifth of the CPU of importing small files.
@functools.lru_cache(maxsize=1 << 16)
def _parse(text: str) -> ParsedCid:
    if not _CID_RE.fullmatch(text):
        raise BadCid(_explain(text))
    raw = base64.b32decode(text[1:].upper() + "=" * (-(len(text) - 1) % 8))
    codec = _CODEC_OF.get(raw[:-DIGEST_SIZE])
    if codec is None or _encode(raw) != text:
        raise BadCid(_explain(text))
    return ParsedCid(codec, raw[-DIGEST_SIZE:])


def is_cid(text: object, codec: Codec | None = None) -> bool:
    """Whether ``text`` is a colony CID (of ``codec``, if given)."""
    try:
        parsed = parse(text)
    except BadCid:
        return False
    return codec is None or parsed.codec == codec


def check(text: object, codec: Codec | None = None) -> str:
    """``text`` if it is a colony CID (of ``codec``, if given); BadCid otherwise."""
    parsed = parse(text)
    if codec is not None and parsed.codec != codec:
        raise BadCid(f"{text} is a {parsed.codec} CID where a {codec} CID is expected")
    assert isinstance(text, str)
    return text


def verify(cid: str, data: bytes) -> None:
    """Raise BadBlock unless ``data`` is the content ``cid`` names."""
    expected = parse(cid).digest
    if hashlib.sha256(data).digest() != expected:
        raise BadBlock(f"block {cid} does not match its content ({len(data)} bytes): corrupted")


def _explain(text: object) -> str:
    """Why a string is not a colony CID; py-cid tells a foreign CID from garbage."""
    if type(text) is not str:
        return f"a CID is a string, got {type(text).__name__}"
    shown = text if len(text) <= 80 else text[:77] + "..."
    try:
        other = pycid.from_string(text)
        info = multihash.decode(other.multihash)
    except Exception:  # py-cid raises ValueError, KeyError and others on garbage
        return f"{shown!r} is not a CID"
    canonical = _encode(bytes(other.buffer))
    if canonical != text and _CODEC_OF.get(bytes(other.buffer)[:-DIGEST_SIZE]):
        return f"{shown!r} is not in the one spelling a colony uses; write it {canonical}"
    return (
        f"{shown!r} is a CIDv{other.version} ({other.codec}, {info.name}); a colony names "
        "content with base32 CIDv1, sha2-256, raw or dag-cbor only"
    )
