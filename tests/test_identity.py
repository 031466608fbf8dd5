"""Identity: member ids are libp2p PeerIDs, signatures verify, key files stay private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import Ed25519PrivateKey
from libp2p.peer.id import ID

from colonyp2p.errors import BadSignature, KeystoreError
from colonyp2p.identity import (
    Identity,
    is_member_id,
    load_identity,
    member_id_from_public_key,
    public_key_from_member_id,
    save_identity,
    verify,
)

seeds = st.binary(min_size=32, max_size=32)


@settings(max_examples=50, deadline=None)
@given(seeds)
def test_member_id_is_the_libp2p_peer_id(seed: bytes) -> None:
    key = Ed25519PrivateKey.from_bytes(seed)
    peer_id = ID.from_pubkey(key.get_public_key()).to_base58()
    identity = Identity.from_seed(seed)
    assert identity.member_id == peer_id
    assert identity.public_key == key.get_public_key().to_bytes()


@settings(max_examples=50, deadline=None)
@given(seeds)
def test_public_key_round_trips_through_the_member_id(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    assert public_key_from_member_id(identity.member_id) == identity.public_key
    assert member_id_from_public_key(identity.public_key) == identity.member_id
    assert is_member_id(identity.member_id)


@pytest.mark.parametrize(
    "not_an_id",
    ["", "0OIl", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", "12D3KooW", "é"],
)
def test_public_key_from_member_id_refuses_other_strings(not_an_id: str) -> None:
    assert not is_member_id(not_an_id)
    with pytest.raises(ValueError):
        public_key_from_member_id(not_an_id)


@settings(max_examples=30, deadline=None)
@given(seeds, st.binary(max_size=256))
def test_verify_accepts_a_real_signature(seed: bytes, message: bytes) -> None:
    identity = Identity.from_seed(seed)
    verify(identity.member_id, message, identity.sign(message))


@settings(max_examples=30, deadline=None)
@given(seeds, st.binary(max_size=256), st.integers(0, 64 * 8 - 1))
def test_verify_refuses_a_flipped_signature_bit(seed: bytes, message: bytes, bit: int) -> None:
    identity = Identity.from_seed(seed)
    sig = bytearray(identity.sign(message))
    sig[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BadSignature):
        verify(identity.member_id, message, bytes(sig))


def test_verify_refuses_forged_truncated_and_misattributed_signatures() -> None:
    alice, mallory = Identity.from_seed(b"a" * 32), Identity.from_seed(b"m" * 32)
    sig = alice.sign(b"hello")
    with pytest.raises(BadSignature):
        verify(alice.member_id, b"hello", mallory.sign(b"hello"))  # forged
    with pytest.raises(BadSignature):
        verify(alice.member_id, b"hello", sig[:-1])  # truncated
    with pytest.raises(BadSignature):
        verify(alice.member_id, b"hello", b"")  # missing
    with pytest.raises(BadSignature):
        verify(alice.member_id, b"hellO", sig)  # other message
    with pytest.raises(BadSignature):
        verify(mallory.member_id, b"hello", sig)  # someone else's
    with pytest.raises(BadSignature):
        verify("not-a-member-id", b"hello", sig)


def test_save_identity_writes_mode_0600(tmp_path: Path) -> None:
    identity = Identity.generate()
    path = tmp_path / "keys" / "node.key"
    save_identity(identity, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_identity(path).member_id == identity.member_id


def test_save_identity_narrows_a_leftover_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    leftover = tmp_path / "node.key.tmp"
    leftover.write_bytes(b"junk")
    leftover.chmod(0o644)
    save_identity(Identity.generate(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_load_identity_refuses_a_readable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    save_identity(Identity.generate(), path)
    path.chmod(0o644)
    with pytest.raises(KeystoreError, match="chmod"):
        load_identity(path)


def test_load_identity_refuses_garbage_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    good = tmp_path / "good.key"
    save_identity(Identity.generate(), good)
    for garbage in [b"", b"\x00" * 32, good.read_bytes()[:-1], good.read_bytes() + b"\x00"]:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, garbage)
        os.close(fd)
        with pytest.raises(KeystoreError):
            load_identity(path)
    with pytest.raises(KeystoreError):
        load_identity(tmp_path / "absent.key")


def test_from_seed_refuses_a_wrong_length() -> None:
    with pytest.raises(KeystoreError):
        Identity.from_seed(b"short")


def test_repr_does_not_show_the_seed() -> None:
    identity = Identity.from_seed(bytes(range(32)))
    for text in (repr(identity), str(identity), f"{identity}"):
        assert identity.seed.hex() not in text
        assert repr(identity.seed) not in text
        assert str(list(identity.seed)) not in text
        assert identity.member_id in text
