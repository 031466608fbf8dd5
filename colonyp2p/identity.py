"""Ed25519 identities: the member id is the libp2p PeerID of the same key.

A PeerID for an Ed25519 key inlines the key (identity multihash of the
protobuf-encoded public key), so any member id can be turned back into the
public key that verifies its signatures: no key directory is needed.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import base58
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from colonyp2p.errors import BadSignature, KeystoreError

# identity multihash (0x00, length 36) of the libp2p PublicKey protobuf
# {Type: Ed25519 (1), Data: 32 bytes}
_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
SIGNATURE_SIZE = 64


def member_id_from_public_key(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise ValueError("an Ed25519 public key has 32 bytes")
    return str(base58.b58encode(_PEER_ID_PREFIX + public_key).decode("ascii"))


def public_key_from_member_id(member_id: str) -> bytes:
    """The Ed25519 public key inlined in a member id; ValueError if it holds none."""
    try:
        raw = base58.b58decode(member_id)
    except ValueError as exc:
        raise ValueError(f"not a member id: {member_id!r}") from exc
    if len(raw) != len(_PEER_ID_PREFIX) + 32 or not raw.startswith(_PEER_ID_PREFIX):
        raise ValueError(f"not an Ed25519 member id: {member_id!r}")
    return raw[len(_PEER_ID_PREFIX) :]


def is_member_id(value: str) -> bool:
    try:
        public_key_from_member_id(value)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=1 << 16)
def dht_key(member_id: str) -> int:
    """The point on the XOR ring where a member sits (as libp2p's Kademlia does: sha256)."""
    return int.from_bytes(hashlib.sha256(member_id.encode("ascii")).digest(), "big")


@functools.lru_cache(maxsize=1 << 14)
def _verify_key(member_id: str) -> VerifyKey:
    """The key of a member id, decoded once: base58 in Python costs a third of a check
    (24 of 80 us here), and a node checks the same members' signatures all day (every
    envelope, every vote). ValueError (not cached) for what holds no key."""
    return VerifyKey(public_key_from_member_id(member_id))


def verify(member_id: str, message: bytes, signature: bytes) -> None:
    """Raise BadSignature unless ``signature`` is ``member_id``'s signature of ``message``."""
    if len(signature) != SIGNATURE_SIZE:
        raise BadSignature(f"signature must have {SIGNATURE_SIZE} bytes, got {len(signature)}")
    try:
        key = _verify_key(member_id)
    except ValueError as exc:
        raise BadSignature(str(exc)) from exc
    try:
        key.verify(message, signature)
    except BadSignatureError as exc:
        raise BadSignature(f"forged or corrupted signature from {member_id}") from exc


@dataclass(frozen=True)
class Identity:
    """A member's key pair. ``repr`` never shows the secret."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != 32:
            raise KeystoreError("an Ed25519 seed has 32 bytes")
        return cls(SigningKey(seed))

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def member_id(self) -> str:
        return member_id_from_public_key(self.public_key)

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    def sign(self, message: bytes) -> bytes:
        return bytes(self.signing_key.sign(message).signature)

    def __repr__(self) -> str:
        return f"Identity({self.member_id})"


KEY_FILE_MODE = 0o600
_KEY_FILE_MAGIC = b"colonyp2p-ed25519-seed-v1\n"


def save_identity(identity: Identity, path: Path) -> None:
    """Write the seed with 0600 permissions, atomically; never widen an existing file's mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)
        os.write(fd, _KEY_FILE_MAGIC + identity.seed)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_identity(path: Path) -> Identity:
    """Read a key file, refusing one that others can read or that is not a colonyp2p key."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError as exc:
        raise KeystoreError(f"no key file at {path}; run `colonynode init` first") from exc
    if mode & 0o077:
        raise KeystoreError(
            f"key file {path} has permissions {oct(mode)}; it must be 0600 (chmod 600 {path})"
        )
    data = path.read_bytes()
    if not data.startswith(_KEY_FILE_MAGIC) or len(data) != len(_KEY_FILE_MAGIC) + 32:
        raise KeystoreError(f"{path} is not a colonyp2p key file")
    return Identity.from_seed(data[len(_KEY_FILE_MAGIC) :])
