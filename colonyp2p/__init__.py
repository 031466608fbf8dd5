"""colonyp2p: a peer-to-peer meta-operating system for distributed computing.

The Python API is ``Colony`` (trio) and ``SyncColony`` (blocking), connected to the node
running on this device or embedding one that serves your ``@colony.function``-s; see
colonyp2p/colony.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonyp2p.colony import (
        Colony,
        EmbeddedColony,
        Process,
        ProcessFailed,
        SyncColony,
        SyncProcess,
        WaitTimeout,
    )

__all__ = [
    "Colony",
    "EmbeddedColony",
    "Process",
    "ProcessFailed",
    "SyncColony",
    "SyncProcess",
    "WaitTimeout",
]


def __getattr__(name: str) -> Any:
    # imported on first use: ``import colonyp2p.codec`` should not pull in the client
    if name in __all__:
        from colonyp2p import colony

        return getattr(colony, name)
    raise AttributeError(f"module 'colonyp2p' has no attribute {name!r}")
