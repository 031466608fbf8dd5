"""Supervision of a node's subsystems: one that fails is restarted, never the node's end.

A daemon runs many long-lived tasks besides its core: gossip, discovery, the publisher,
one sender per peer, the address announcements. Under trio an exception in any of them
would cancel the daemon's nursery and end the node; here each runs under
:func:`supervise` instead: its failure is counted and logged, it is started again after
a backoff (0.5 s doubling to 30 s, with jitter, back to 0.5 s once it ran a minute),
and ``colonynode status`` shows it in :class:`Health`. Only the core task and the store
are not supervised: a node that cannot run its protocol or keep what it acknowledged
must stop, with a clear message and a non-zero exit (see ``Daemon.run``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import trio

from colonyp2p.errors import root_cause

log = logging.getLogger(__name__)

FIRST_DELAY: Final = 0.5  # s before the first restart
MAX_DELAY: Final = 30.0
HEALTHY_AFTER: Final = 60.0  # s of running that reset the backoff


@dataclass
class Subsystem:
    state: str = "running"  # running, restarting
    restarts: int = 0
    failures: int = 0
    last_error: str = ""
    last_failed_at: float = 0.0


class SubsystemEnded(Exception):
    """A subsystem returned although it should run until cancelled."""


class Health:
    """What each supervised subsystem is doing, for ``colonynode status``."""

    def __init__(self) -> None:
        self.subsystems: dict[str, Subsystem] = {}

    def failed(self, name: str, exc: BaseException, *, restarting: bool = True) -> None:
        """``name`` failed with ``exc``: it is being restarted, or (``restarting``
        False) the failure cost only one piece of its work, such as one run."""
        sub = self.subsystems.setdefault(name, Subsystem())
        if restarting:
            sub.state = "restarting"
            sub.restarts += 1
        sub.failures += 1
        cause = root_cause(exc)  # not trio's "Exceptions from Trio nursery"
        sub.last_error = f"{type(cause).__name__}: {str(cause)[:200]}"
        sub.last_failed_at = time.time()

    def running(self, name: str) -> None:
        self.subsystems.setdefault(name, Subsystem()).state = "running"

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "state": s.state,
                "restarts": s.restarts,
                "failures": s.failures,
                "last_error": s.last_error,
                "last_failed_at": s.last_failed_at,
            }
            for name, s in sorted(self.subsystems.items())
        }


async def supervise(
    name: str,
    run: Callable[[], Awaitable[object]],
    health: Health,
    *,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> None:
    """Run ``run()`` until cancelled, starting it again whenever it raises or returns."""
    delay = first_delay
    while True:
        health.running(name)
        started = trio.current_time()
        try:
            await run()
            raise SubsystemEnded(f"{name} returned")
        except Exception as exc:
            health.failed(name, exc)
            if trio.current_time() - started >= HEALTHY_AFTER:
                delay = first_delay
            log.error(
                "%s failed (%s); restarting it in %.1f s",
                name,
                health.subsystems[name].last_error,
                delay,
                exc_info=exc,
            )
        await trio.sleep(delay * random.uniform(0.8, 1.2))
        delay = min(delay * 2, max_delay)
