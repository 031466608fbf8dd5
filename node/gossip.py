"""GossipSub as a colony uses it: tuned for colony traffic and gated by membership.

py-libp2p's defaults are made for open networks of strangers and lose messages
silently under the bursts a colony produces (a batch of spec announcements, every
executor re-announcing its ad); this module holds the settings and the one Pubsub
subclass that change that, so that :mod:`colonyp2p.node.transport` only decides what
to publish and what to accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import trio
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub

from colonyp2p.errors import NotAMember

PROTOCOLS: Final = (PROTOCOL_ID_V12, PROTOCOL_ID_V11)
# py-libp2p pubsub refuses inbound RPCs over 1 MiB; leave room for the RPC's own
# fields (signed peer record, pubsub signature, topic) around our envelope.
MAX_SIZE: Final = 1024 * 1024 - 16 * 1024
# its per-peer outbound RPC queues hold 32 and drop the rest silently, so publishers
# wait (up to PUBLISH_WAIT) until every queue is at most this full
OUTBOUND_ROOM: Final = 16
PUBLISH_WAIT: Final = 1.0


def new_router() -> GossipSub:
    return GossipSub(
        protocols=list(PROTOCOLS),
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,  # default 120 s: meshes would form minutes late
        # the default limiter drops bursts above 10 msgs/s per topic, silently;
        # colony gossip is authenticated, and rate-limited by the core instead
        spam_protection_enabled=False,
        # IP diversity makes no sense for a colony on one LAN or one machine
        eclipse_protection_enabled=False,
    )


def origin(msg: Any) -> str:
    """The member id of a pubsub message's publisher (pubsub checked its signature)."""
    return str(ID(msg.from_id))


class ColonyPubsub(Pubsub):
    """Pubsub that treats non-members as blacklisted, asking ``is_member`` at every use,
    and hands messages to ``deliver`` instead of to py-libp2p's subscription channels,
    which hold 32 messages and drop the rest silently.

    py-libp2p consults the blacklist before opening its pubsub stream to a peer (so a
    non-member is never sent our gossip) and before handling a message (forwarder and
    publisher); the second check is repeated here so that those drops are counted.
    """

    def __init__(
        self,
        host: Any,
        router: GossipSub,
        *,
        is_member: Callable[[str], bool],
        refuse: Callable[[str, Exception], None],
        deliver: Callable[[Any], None],
    ) -> None:
        super().__init__(host, router)
        self._colony_is_member = is_member
        self._refuse = refuse
        self._deliver = deliver

    def is_peer_blacklisted(self, peer_id: ID) -> bool:
        if peer_id != self.my_id and not self._colony_is_member(str(peer_id)):
            return True
        return super().is_peer_blacklisted(peer_id)

    async def stream_handler(self, stream: Any) -> None:
        # py-libp2p's own catches a few errors (ParseError, IncompleteReadError) and
        # lets the others, protobuf's DecodeError among them, end the node; and after
        # the ones it catches it keeps the connection with gossip dead on it until the
        # peer reconnects. Every error goes to the gate instead (node/gate.py), which
        # counts it and drops that member's connection, so both sides start afresh.
        await self.continuously_read_stream(stream)

    async def push_msg(self, msg_forwarder: ID, msg: Any) -> None:
        # py-libp2p runs this as a task of the pubsub service, where an exception (a
        # publisher id that is not a peer id, a field the library trips over) would
        # end gossip for everyone: a peer's message may cost only itself
        try:
            if msg_forwarder != self.my_id:
                for peer, role in ((msg_forwarder, "forwarded"), (ID(msg.from_id), "published")):
                    if not self._colony_is_member(str(peer)):
                        self._refuse(
                            str(msg_forwarder), NotAMember(f"gossip {role} by {peer}, not a member")
                        )
                        return
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            self._refuse(str(msg_forwarder), exc)

    def notify_subscriptions(self, publish_message: Any) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            self._deliver(publish_message)

    async def wait_for_room(self) -> None:
        """Wait until no peer's outbound queue holds more than OUTBOUND_ROOM RPCs, or
        PUBLISH_WAIT passed: a stalled peer must not stop the colony's gossip."""
        with trio.move_on_after(PUBLISH_WAIT):
            while any(len(queue) > OUTBOUND_ROOM for queue in self.peer_queues.values()):
                await trio.sleep(0.001)
