"""CIDs: what the meta-filesystem produces is what py-cid and py-multihash parse as
CIDv1 / sha2-256 / base32 of the right codec, and anything else is refused clearly."""

from __future__ import annotations

import hashlib

import cid as pycid  # type: ignore[import-untyped]
import multibase  # type: ignore[import-untyped]
import multihash  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import BadBlock, BadCid
from colonyp2p.mfs import cid as cids


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=4096))
def test_block_cids_parse_in_py_cid_as_raw_sha256_base32(data: bytes) -> None:
    text = cids.block_cid(data)
    parsed = pycid.from_string(text)
    assert parsed.version == 1
    assert parsed.codec == "raw"
    info = multihash.decode(parsed.multihash)
    assert info.name == "sha2-256"
    assert info.digest == hashlib.sha256(data).digest()
    # the string form is py-multibase's base32 of py-cid's binary CID
    assert text == multibase.encode("base32", parsed.buffer).decode("ascii")
    assert str(pycid.make_cid(1, "raw", multihash.digest(data, "sha2-256").encode())) != ""
    assert pycid.CIDv1("raw", parsed.multihash).encode("base32").decode() == text
    assert len(text) == cids.CID_LENGTH
    ours = cids.parse(text)
    assert (ours.codec, ours.digest) == ("raw", info.digest)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=512))
def test_manifest_cids_are_dag_cbor(data: bytes) -> None:
    text = cids.manifest_cid(data)
    parsed = pycid.from_string(text)
    assert (parsed.version, parsed.codec) == (1, "dag-cbor")
    assert multihash.decode(parsed.multihash).digest == hashlib.sha256(data).digest()
    assert cids.parse(text).codec == "dag-cbor"
    assert cids.is_cid(text, "dag-cbor") and not cids.is_cid(text, "raw")
    # same bytes, other codec: another name
    assert text != cids.block_cid(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=256), st.data())
def test_verify_refuses_any_other_content(data: bytes, draw: st.DataObject) -> None:
    text = cids.block_cid(data)
    cids.verify(text, data)
    position = draw.draw(st.integers(0, len(data) - 1))
    bit = draw.draw(st.integers(0, 7))
    flipped = bytearray(data)
    flipped[position] ^= 1 << bit
    with pytest.raises(BadBlock, match="does not match"):
        cids.verify(text, bytes(flipped))
    with pytest.raises(BadBlock):
        cids.verify(text, data + b"\0")


def test_foreign_and_malformed_cids_are_refused_with_a_reason() -> None:
    data = b"hello"
    mh = multihash.digest(data, "sha2-256").encode()
    v0 = str(pycid.make_cid(0, "dag-pb", mh))
    base58 = pycid.CIDv1("raw", mh).encode("base58btc").decode()
    sha512 = pycid.CIDv1("raw", multihash.digest(data, "sha2-512").encode())
    other_codec = pycid.CIDv1("dag-pb", mh).encode("base32").decode()
    with pytest.raises(BadCid, match="CIDv0"):
        cids.parse(v0)
    with pytest.raises(BadCid, match="write it " + cids.block_cid(data)):
        cids.parse(base58)
    with pytest.raises(BadCid, match="sha2-512"):
        cids.parse(sha512.encode("base32").decode())
    with pytest.raises(BadCid, match="dag-pb"):
        cids.parse(other_codec)
    good = cids.block_cid(data)
    for bad in ["", "bafy", good.upper(), good + "a", "../../etc/passwd", good[:-1] + "/"]:
        with pytest.raises(BadCid):
            cids.parse(bad)
    with pytest.raises(BadCid, match="is a string"):
        cids.parse(b"bytes")
    # the second base32 spelling (non-zero unused trailing bits) of the same CID
    last = "abcdefghijklmnopqrstuvwxyz234567".index(good[-1])
    twin = good[:-1] + "abcdefghijklmnopqrstuvwxyz234567"[last | 1]
    assert twin != good
    with pytest.raises(BadCid, match="spelling"):
        cids.parse(twin)
    with pytest.raises(BadCid, match="raw CID where a dag-cbor"):
        cids.check(good, "dag-cbor")
