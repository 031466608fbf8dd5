"""The colony's membership set: versioned, signed by the owner or an admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["owner", "admin", "executor", "user"]


@dataclass(frozen=True)
class Member:
    member_id: str
    role: Role
    name: str = ""


@dataclass(frozen=True)
class MembershipSet:
    colony_id: str
    name: str
    version: int
    members: tuple[Member, ...]
    issued_at: float
    signer: str
    signature: bytes = b""
