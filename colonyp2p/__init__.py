"""colonyp2p: a peer-to-peer meta-operating system for distributed computing.

The Python API is ``Colony`` (trio) and ``SyncColony`` (blocking); see colonyp2p/colony.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from colonyp2p.colony import Colony, Process, ProcessFailed, SyncColony, WaitTimeout

__all__ = ["Colony", "Process", "ProcessFailed", "SyncColony", "WaitTimeout"]


def __getattr__(name: str) -> Any:
    # imported on first use: ``import colonyp2p.codec`` should not pull in the client
    if name in __all__:
        from colonyp2p import colony

        return getattr(colony, name)
    raise AttributeError(f"module 'colonyp2p' has no attribute {name!r}")
