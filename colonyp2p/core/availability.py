"""Which members a node can count on to answer, as far as it can tell: the keepers of a
new spec are chosen among those (see ``ColonyNode.placement``).

A spec's keepers are the k members XOR-closest to its id. Chosen blindly, a member
that joined but never started, or one that stopped answering without its connections
closing (SIGSTOP, a hung host, a cut network), stays a keeper of every new spec near
it: with two such members among three keepers no spec there is ever acknowledged.
So a node passes over, for NEW specs only, the members it has reason to think cannot
answer, and uses them again as soon as anything arrives from them:

- **lost**: the driver lost every connection to it (``ColonyNode.on_peer_lost``);
- **silent**: a request to it (one that is always answered) has gone unanswered for
  longer than a lease while this node kept asking;
- **never seen**: a lease has passed since this node started and it has neither heard
  from the member (a message or an announcement) nor learned its executor ad (an ad
  is made by a running node, and starting nodes are sent every ad they lack).

Nothing here reads a clock: the node passes its own ``now``. Safety never rests on
this view: a record's keeper set is fixed when it is stored and travels with it, so
a wrong guess only costs where a record lives, never which result it gets.
"""

from __future__ import annotations

from collections.abc import Callable


class Availability:
    __slots__ = ("asking", "heard", "lease", "lost", "silent", "started")

    def __init__(self, lease: float) -> None:
        self.lease = lease
        self.started: float | None = None  # None: the driver did not start the node
        self.heard: set[str] = set()  # members heard from since the start
        self.lost: set[str] = set()
        # member -> (first, latest) request sent to it since it last said anything
        self.asking: dict[str, tuple[float, float]] = {}
        self.silent: set[str] = set()

    def start(self, now: float) -> None:
        self.started = now

    def heard_from(self, member: str) -> None:
        """Anything from ``member`` (a message or an announcement): it is there."""
        self.heard.add(member)
        if member in self.asking:
            del self.asking[member]
            self.silent.discard(member)
        self.lost.discard(member)

    def lost_connection(self, member: str) -> None:
        self.lost.add(member)

    def asked(self, member: str, now: float) -> None:
        """A request that ``member`` always answers was sent to it."""
        wait = self.asking.get(member)
        if wait is None or (now - wait[1] > self.lease and member not in self.silent):
            # A new wait; or the previous one was dropped (nothing asked for a lease: the
            # protocol had its answers from others), and its single unanswered request
            # may just have been lost: it proves nothing about the member.
            self.asking[member] = (now, now)
            return
        self.asking[member] = (wait[0], now)
        if now - wait[0] >= self.lease:
            self.silent.add(member)  # asked all along for a lease: until it says something

    def unavailable(self, member: str, now: float, has_ad: Callable[[str], bool]) -> bool:
        if member in self.lost or member in self.silent:
            return True
        wait = self.asking.get(member)
        if wait is not None and now - wait[0] > self.lease and now - wait[1] <= self.lease:
            return True  # still asking, and its first unanswered request is a lease old
        started = self.started
        return (
            started is not None
            and now - started >= self.lease
            and member not in self.heard
            and not has_ad(member)
        )
