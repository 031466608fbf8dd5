"""Every error a colony refuses input with: one class per kind of rejection.

Drivers count rejections by the ``code`` of the exception, so each class
carries a short stable code next to its human message.
"""

from __future__ import annotations


class ColonyError(Exception):
    """Base of every error colonyp2p raises on purpose."""

    code = "error"


def root_cause(exc: BaseException) -> BaseException:
    """The first colony or OS error inside ``exc`` (trio wraps task errors in exception
    groups), else the first error inside it: what to tell a person."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = root_cause(inner)
            if isinstance(found, ColonyError | OSError):
                return found
        return root_cause(exc.exceptions[0])
    return exc


# --- wire: envelopes that are refused before they reach the core -------------


class WireError(ColonyError):
    """A message was refused by the wire layer; nothing in the core changed."""

    code = "wire"


class OversizeMessage(WireError):
    code = "oversize"


class MalformedMessage(WireError):
    """Not CBOR, not canonical, wrong field set or wrong field types."""

    code = "malformed"


class UnknownMessageType(WireError):
    code = "unknown_type"


class BadSignature(WireError):
    """Missing, truncated or forged Ed25519 signature."""

    code = "bad_signature"


class WrongColony(WireError):
    code = "wrong_colony"


class NotAMember(WireError):
    """The sender is not in the receiver's current membership set (or was revoked)."""

    code = "not_member"


class ReplayedMessage(WireError):
    """An old sequence number, a duplicate, or a timestamp outside the allowed window."""

    code = "replay"


# --- data model ----------------------------------------------------------------


class ValidationError(ColonyError):
    """A spec, workflow, membership set or ad that breaks the data model's rules."""

    code = "invalid"

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class CyclicWorkflow(ValidationError):
    code = "cyclic_workflow"


class UnknownDependency(ValidationError):
    code = "unknown_dependency"


# --- membership and identity ---------------------------------------------------


class MembershipError(ColonyError):
    """A membership update that is stale, unsigned or signed by someone without the right."""

    code = "membership"


class StaleMembership(MembershipError):
    code = "stale_membership"


class Unauthorized(MembershipError):
    code = "unauthorized"


class MembershipGap(MembershipError):
    """A membership version that does not follow the receiver's own by exactly one: the
    versions between are needed to judge who signed it."""

    code = "membership_gap"


class KeystoreError(ColonyError):
    code = "keystore"


# --- simulation ----------------------------------------------------------------


class ScenarioError(ColonyError):
    """A simulation scenario file that cannot be run as written."""

    code = "scenario"


# --- node storage --------------------------------------------------------------


class StoreError(ColonyError):
    """The node's state database is corrupt, unreadable, from a newer colonyp2p, or was
    asked to store something it cannot load back."""

    code = "store"


class StoreFull(StoreError):
    """The disk (or the store's size limit) is full; the write was rolled back."""

    code = "store_full"


class OverQuota(ColonyError):
    """Keepers refused to store more of this member's waiting processes (its quota of
    undecided records at each keeper, see docs/DAEMON.md); nothing new was kept."""

    code = "over_quota"


# --- local HTTP API ------------------------------------------------------------


class ApiError(ColonyError):
    """The node's local API refused a request or could not be reached.

    ``status`` is the HTTP status (0 when no answer came) and ``remote_code`` the
    ``error.code`` the node answered with, so that tools can branch on either.
    """

    code = "api"

    def __init__(self, message: str, status: int = 0, remote_code: str = "") -> None:
        self.status = status
        self.remote_code = remote_code
        super().__init__(message)


class DaemonNotRunning(ApiError):
    """Nothing listens on the local API's address: the node daemon is not started."""

    code = "daemon_not_running"


# --- meta-filesystem -----------------------------------------------------------


class MfsError(ColonyError):
    """The meta-filesystem refused an operation; what it had stored is unchanged."""

    code = "mfs"


class BadCid(MfsError):
    """Not a CID in the one form a colony uses (CIDv1, sha2-256, base32, raw or dag-cbor)."""

    code = "bad_cid"


class BadBlock(MfsError):
    """A block's bytes do not hash to its CID: corrupted on disk or forged by a peer."""

    code = "bad_block"


class BadManifest(MfsError):
    """A block that hashes right but is not a file manifest or directory snapshot."""

    code = "bad_manifest"


class BlockNotFound(MfsError):
    """The block store does not hold this block (never stored, collected or quarantined)."""

    code = "block_not_found"


class IncompleteSnapshot(BlockNotFound):
    """A snapshot whose blocks are not all stored locally: no label may point to it yet."""

    code = "incomplete_snapshot"

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        self.missing = missing
        super().__init__(message)


class UnsupportedFile(MfsError):
    """A file the meta-filesystem does not store (symlink, device, socket, non-UTF-8 name)."""

    code = "unsupported_file"


class QuotaExceeded(StoreFull):
    """A put would take the block store past its quota; nothing was written."""

    code = "quota_exceeded"
