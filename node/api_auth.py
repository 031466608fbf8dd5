"""Signed requests for the node's local API: every request carries a member's signature.

The API has no tokens or sessions: a token left in a shell history or a log would
be a standing credential, while a signature is good for one request, for about two
minutes, only for the exact method, path, query and body it covers, and only at the
node it names (``X-Colony-Node``, the target node's member id): a request captured on
its way to one node cannot be replayed to another node whose API its signer may also
use. The signer is the member id itself (an Ed25519 PeerID inlines its key), so the
node needs no key directory, only its membership set.

This module is pure: it takes ``now`` and never reads a clock, so the server and
the tests drive it alike.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from colonyp2p.errors import BadSignature, ReplayedMessage
from colonyp2p.identity import SIGNATURE_SIZE, Identity, verify

MEMBER_HEADER = "X-Colony-Member"
TIMESTAMP_HEADER = "X-Colony-Timestamp"
NONCE_HEADER = "X-Colony-Nonce"
SIGNATURE_HEADER = "X-Colony-Signature"
NODE_HEADER = "X-Colony-Node"
SIGNED_HEADERS = (MEMBER_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER, NODE_HEADER)

# How far a request's timestamp may be from the node's clock, either way.
SKEW_WINDOW = 120.0
NONCE_BYTES = 16
# Nonces are hex; 16 to 64 digits keeps them unguessable yet bounds what we store.
_NONCE_DIGITS = range(2 * 8, 2 * 32 + 1)
_HEX = frozenset("0123456789abcdefABCDEF")


class WrongNode(BadSignature):
    """A request signed for another node than the one that received it."""

    code = "wrong_node"


def canonical_request(
    method: str, target: str, timestamp: str, nonce: str, body: bytes, node: str
) -> bytes:
    """The bytes a request's signature covers.

    ``target`` is the request target exactly as sent (path and query, still
    percent-encoded) and ``timestamp`` the header's text, not a re-formatted float:
    both sides must sign the same bytes, whatever their URL or float formatting.
    ``node`` is the member id of the node the request is meant for (so that no other
    node takes it); it comes last, after the lines signed before it was added.
    """
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), target, timestamp, nonce, digest, node)).encode("utf-8")


def sign_request(
    identity: Identity,
    method: str,
    target: str,
    body: bytes,
    now: float,
    node: str | None = None,
) -> dict[str, str]:
    """The headers that make a request from ``identity`` to node ``node`` (default: the
    signer's own node, the one whose local API serves that key by default)."""
    node = identity.member_id if node is None else node
    timestamp = repr(float(now))
    nonce = secrets.token_hex(NONCE_BYTES)
    signature = identity.sign(canonical_request(method, target, timestamp, nonce, body, node))
    return {
        MEMBER_HEADER: identity.member_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature.hex(),
        NODE_HEADER: node,
    }


@dataclass(frozen=True)
class SignedHeaders:
    member: str
    timestamp_text: str
    timestamp: float
    nonce: str
    signature: bytes
    node: str


def parse_signed_headers(headers: Mapping[str, str]) -> SignedHeaders:
    """The signing headers of a request (keys lower-case); BadSignature if any is absent
    or unreadable."""
    values = {}
    for name in SIGNED_HEADERS:
        value = headers.get(name.lower())
        if not value:
            raise BadSignature(f"unsigned request: header {name} is missing")
        values[name] = value
    try:
        timestamp = float(values[TIMESTAMP_HEADER])
    except ValueError:
        timestamp = math.nan
    if not math.isfinite(timestamp):
        raise BadSignature(f"{TIMESTAMP_HEADER} must be unix seconds")
    nonce = values[NONCE_HEADER]
    if len(nonce) not in _NONCE_DIGITS or not _HEX.issuperset(nonce):
        raise BadSignature(f"{NONCE_HEADER} must be 16 to 64 hex digits")
    try:
        signature = bytes.fromhex(values[SIGNATURE_HEADER])
    except ValueError:
        signature = b""
    if len(signature) != SIGNATURE_SIZE:
        raise BadSignature(f"{SIGNATURE_HEADER} must be {SIGNATURE_SIZE} bytes in hex")
    return SignedHeaders(
        values[MEMBER_HEADER],
        values[TIMESTAMP_HEADER],
        timestamp,
        nonce.lower(),
        signature,
        values[NODE_HEADER],
    )


def verify_request(
    method: str, target: str, headers: Mapping[str, str], body: bytes, now: float, node: str
) -> SignedHeaders:
    """Check a request's signature, freshness and target (not membership, not replay):
    ``node`` is the member id of the node checking it.

    Raises BadSignature for missing, unreadable or forged headers, WrongNode for a
    request signed for another node, and ReplayedMessage for a timestamp outside the
    window.
    """
    signed = parse_signed_headers(headers)
    if signed.node != node:
        raise WrongNode(
            f"this request was signed for node {signed.node}, not for this node ({node}); "
            f"sign it with {NODE_HEADER} set to the member id of the node you call"
        )
    if abs(now - signed.timestamp) > SKEW_WINDOW:
        raise ReplayedMessage(
            f"request timestamp is {now - signed.timestamp:+.0f} s off the node's clock "
            f"(allowed: ±{SKEW_WINDOW:.0f} s); check the clock of the signing machine"
        )
    message = canonical_request(
        method, target, signed.timestamp_text, signed.nonce, body, signed.node
    )
    verify(signed.member, message, signed.signature)
    return signed


@dataclass
class NonceCache:
    """The nonces seen within the window, so a captured request cannot be sent twice.

    A nonce need only be remembered until its timestamp leaves the window: after
    that the timestamp check refuses the replay. When ``capacity`` nonces are still
    live, new requests are refused instead of forgetting one early, since forgetting
    would reopen a replay.
    """

    capacity: int = 100_000
    window: float = SKEW_WINDOW
    _expiry: list[tuple[float, str, str]] = field(default_factory=list)
    _seen: set[tuple[str, str]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, member: str, nonce: str, timestamp: float, now: float) -> None:
        """Remember (member, nonce); ReplayedMessage if it was seen before.

        Raises OverflowError when the cache is full of live nonces.
        """
        self._forget_expired(now)
        key = (member, nonce)
        if key in self._seen:
            raise ReplayedMessage("this request was already received (nonce reused)")
        if len(self._seen) >= self.capacity:
            raise OverflowError("too many signed requests in the replay window")
        self._seen.add(key)
        # A timestamp from the future stays acceptable until timestamp + window.
        heapq.heappush(self._expiry, (max(timestamp, now) + self.window, member, nonce))

    def _forget_expired(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] < now:
            _, member, nonce = heapq.heappop(self._expiry)
            self._seen.discard((member, nonce))
