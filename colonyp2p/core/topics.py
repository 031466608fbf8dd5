"""Gossip topics of a colony. Spec announcements go to the topic of the executor type a spec
asks for, so only executors that could run it receive it; ads and membership go to everyone.
The daemon and the simulator subscribe by the same rules."""

from __future__ import annotations

from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.spec import FunctionSpec

ANY_TYPE = "*"


def colony_topic(colony_id: str) -> str:
    """Ads and membership sets: every member subscribes."""
    return f"/colonyp2p/{colony_id}/colony"


def spec_topic(colony_id: str, spec: FunctionSpec) -> str:
    return f"/colonyp2p/{colony_id}/specs/{spec.conditions.executortype or ANY_TYPE}"


def subscriptions(colony_id: str, ad: ExecutorAd | None) -> tuple[str, ...]:
    """The topics a member with executor ``ad`` (or none) subscribes to."""
    topics = [colony_topic(colony_id)]
    if ad is not None:
        topics.append(f"/colonyp2p/{colony_id}/specs/{ANY_TYPE}")
        topics.append(f"/colonyp2p/{colony_id}/specs/{ad.executortype}")
    return tuple(topics)
