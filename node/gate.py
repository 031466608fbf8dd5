"""Who gets which protocol on a member's host, and what a failing handler costs.

**Gating before parsing.** Every inbound stream passes through :meth:`Gate.inbound`
before multistream-select hands it to a handler. A current member negotiates among all
the host's protocols; anyone else among the protocols opened to strangers only (the
admission handshake), so a non-member's bytes reach no other parser: not GossipSub, not
identify, not the DHT, not our colony streams. Outbound, identify runs only towards
members (py-libp2p starts it on every new connection, and would parse a stranger's
answer). Membership is asked at every stream, never cached: it changes at run time.

**Containment.** A handler that raises (a frame that does not parse, a library bug
that a peer's input reaches) ends that stream, never the node: the exception is
counted by protocol and reason in the transport's ``rejections``, logged with the
peer once per (protocol, reason) (then at debug level, so that a peer cannot fill the
log), and the stream is reset. A member whose gossip stream failed also loses that
connection, so that both sides' pubsub start afresh when it is redialed (py-libp2p
keeps a dead pubsub peer dead until it reconnects). The same containment wraps the
places where py-libp2p parses peer input outside a stream handler: identify's outbound
task (a trio *system* task, whose exception would end the whole trio run) and the
inbound connection upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

from libp2p.abc import IMultiselectCommunicator
from libp2p.custom_types import TProtocol
from libp2p.protocol_muxer.exceptions import MultiselectError
from libp2p.protocol_muxer.multiselect import Multiselect
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator

from colonyp2p import wire
from colonyp2p.errors import NotAMember
from colonyp2p.node import gossip
from colonyp2p.node.framing import reset_stream

log = logging.getLogger(__name__)

NEGOTIATE_TIMEOUT: Final = 5  # s: a stranger's stream holds a task no longer than this
MULTISTREAM: Final = "/multistream/1.0.0"
IDENTIFY: Final = "/ipfs/id/1.0.0"
CONNECTION: Final = "connection"  # the upgrade of an inbound connection (pnet, Noise, Yamux)


# how protocols are named in the counts (``colonynode status``): short, both GossipSub
# versions as one; others by their id
_LABELS: Final[dict[str, str]] = {
    **{p: "gossip" for p in gossip.PROTOCOLS},
    "/colonyp2p/msg/2.0.0": "msg",
    "/colonyp2p/join/1.0.0": "join",
    "/colonyp2p/blocks/1.0.0": "blocks",
    "/ipfs/kad/1.0.0": "kad",
    IDENTIFY: "identify",
    "/ipfs/id/push/1.0.0": "identify-push",
    "/ipfs/ping/1.0.0": "ping",
}


def label(protocol: str | None) -> str:
    """How ``protocol`` is named in the counts."""
    if not protocol:
        return "negotiation"
    return _LABELS.get(protocol, protocol)


class Gate:
    """Gating and containment for one host (see the module doc). ``install`` once, right
    after the host is built and before it listens."""

    def __init__(
        self,
        host: Any,
        *,
        is_member: Callable[[str], bool],
        rejections: wire.RejectionCounter,
        open_protocols: Iterable[str] = (),
    ) -> None:
        self._host = host
        self._is_member = is_member
        self.rejections = rejections
        self._open: set[str] = set(open_protocols)
        self._logged: set[tuple[str, str]] = set()

    def open_to_strangers(self, protocol: str) -> None:
        """Let non-members negotiate ``protocol`` (its handler must check who asks)."""
        self._open.add(protocol)

    def install(self) -> None:
        host = self._host
        network = host.get_network()
        network.set_stream_handler(self.inbound)
        # Instance attributes shadow BasicHost's and Swarm's methods: the library calls
        # them as self.<name>, so only this host changes (pinned: see libp2p_fixes).
        should_identify = host._should_identify_peer

        def identify_members(peer_id: Any) -> bool:
            return self._is_member(str(peer_id)) and bool(should_identify(peer_id))

        identify = host._identify_peer

        async def contained_identify(peer_id: Any, *, reason: str) -> None:
            try:
                await identify(peer_id, reason=reason)
            except Exception as exc:
                self.refused(IDENTIFY, peer_id, exc)

        upgrade = network._handle_inbound_connection

        async def contained_upgrade(read_write_closer: Any, maddr: Any) -> None:
            try:
                await upgrade(read_write_closer, maddr)
            except Exception as exc:
                self.refused(CONNECTION, maddr, exc)

        host._should_identify_peer = identify_members
        host._identify_peer = contained_identify
        network._handle_inbound_connection = contained_upgrade

    def refused(self, protocol: str | None, peer: Any, exc: BaseException) -> None:
        """Count ``exc`` against ``protocol`` and log it, once per protocol and reason."""
        name = label(protocol)
        reason = self.rejections.count(exc, name)
        if (name, reason) in self._logged:
            log.debug("refused on %s from %s: %r", name, peer, exc)
            return
        self._logged.add((name, reason))
        log.warning(
            "refused on %s from %s: %s (counted in status; more of these are logged "
            "at debug level)",
            name,
            peer,
            _describe(exc),
        )

    async def inbound(self, stream: Any) -> None:
        """The swarm's handler of every inbound stream (py-libp2p runs it in the
        connection's nursery: nothing may escape it)."""
        peer = stream.muxed_conn.peer_id
        member = self._is_member(str(peer))
        try:
            if member:
                await self._host._swarm_stream_handler(stream)
            else:
                await self._stranger(stream, peer)
        except Exception as exc:
            protocol = stream.get_protocol()
            self.refused(protocol, peer, exc)
            await reset_stream(stream)
            if member and protocol in gossip.PROTOCOLS:
                await self._disconnect(peer)

    async def _stranger(self, stream: Any, peer: Any) -> None:
        """Negotiate among the protocols open to strangers only; whatever else they ask
        for is answered "na", counted as refused, and never parsed."""
        handlers = self._host.get_mux().handlers
        select = Multiselect({TProtocol(p): handlers[p] for p in self._open if p in handlers})
        asked = _Recording(MultiselectCommunicator(stream))
        try:
            protocol, handler = await select.negotiate(asked, NEGOTIATE_TIMEOUT)
        except MultiselectError:
            protocol = handler = None
        if protocol is None or handler is None:
            for wanted in asked.commands or ["(none)"]:
                # counted under names we know only: a stranger chooses what it asks for
                name = wanted if wanted in handlers else "unknown"
                self.refused(name, peer, NotAMember(f"{peer} asked for {wanted!r}"))
            await reset_stream(stream)
            return
        stream.set_protocol(protocol)
        await handler(stream)

    async def _disconnect(self, peer: Any) -> None:
        try:
            await self._host.disconnect(peer)
        except Exception as exc:
            log.debug("disconnecting %s failed: %r", peer, exc)


class _Recording(IMultiselectCommunicator):
    """A multiselect communicator that remembers which protocols the peer asked for."""

    def __init__(self, inner: MultiselectCommunicator) -> None:
        self._inner = inner
        self.commands: list[str] = []

    async def read(self) -> str:
        command: str = await self._inner.read()
        if command != MULTISTREAM and len(self.commands) < 8:
            self.commands.append(command[:64])
        return command

    async def write(self, msg_str: str) -> None:
        await self._inner.write(msg_str)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
