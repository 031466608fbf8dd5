"""A starting node catches up on executor ads (and a newer membership) from one peer.

Ads are not persisted, and gossip is a poor way to learn them: the 60 s republication
means a node that starts, restarts or joins would rank processes from its own ad
alone for up to a minute, and its first announcements may go out before gossip has a
mesh (py-libp2p), or be lost (the simulator's gossip loss). So a starting node asks
one member directly, admins first (the inviter is one, and its address is in the
ticket), then the others in turn, until one answers; the answer carries every ad the
member knows. Ads are signed by their executors, so a relayed one is verified before
use, and a message with a forged ad changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colonyp2p.core.messages import CatchUp, CaughtUp
from colonyp2p.errors import BadSignature
from colonyp2p.model.ads import ExecutorAd

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode

CATCHUP_AFTER = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before asking the next member
CATCHUP_ADS = 256  # ads per answer message (a colony of thousands answers in several)


class CatchUpRole:
    def __init__(self, node: ColonyNode) -> None:
        self.node = node
        self.answered = False

    def start(self, now: float) -> None:
        self.answered = False
        self._ask(0, now)

    def on_timer(self, attempt: int, now: float) -> None:
        if not self.answered:
            self._ask(attempt, now)

    def _ask(self, attempt: int, now: float) -> None:
        order = self._whom()
        if not order or attempt >= len(CATCHUP_AFTER) or attempt >= len(order):
            return
        node = self.node
        node.send(order[attempt], CatchUp(node.membership.version, node.executor.ad))
        node.set_timer(now + CATCHUP_AFTER[attempt], ("catchup", attempt + 1))

    def _whom(self) -> list[str]:
        """Admins first, then the other members in member-id order after this one."""
        m, me = self.node.membership, self.node.member_id
        admins = [m.owner_id, *m.admins]
        ids = m.member_ids
        after = [i for i in ids if i > me] + [i for i in ids if i < me]
        return [i for i in dict.fromkeys(admins + after) if i != me]

    def on_request(self, sender: str, msg: CatchUp, now: float) -> None:
        node = self.node
        if msg.ad is not None:
            if msg.ad.executor_id != sender:
                node.reject("bad_ad", f"{sender} sent the ad of {msg.ad.executor_id}")
                return
            node.learn_ad(msg.ad)
        ads = [ad for member, ad in node.ads.items() if member != sender]
        newer = node.membership if msg.have_version < node.membership.version else None
        chunks = [tuple(ads[i : i + CATCHUP_ADS]) for i in range(0, len(ads), CATCHUP_ADS)]
        for i, chunk in enumerate(chunks or [()]):
            node.send(sender, CaughtUp(chunk, newer if i == 0 else None))

    def on_reply(self, sender: str, msg: CaughtUp, now: float) -> None:
        node = self.node
        if msg.membership is not None:  # first: the ads may be of members new in it
            node.learn_membership(msg.membership, now)
        fresh: list[ExecutorAd] = []
        for ad in msg.ads:
            known = node.ads.get(ad.executor_id)
            if (
                ad.executor_id == node.member_id
                or not node.membership.is_member(ad.executor_id)  # gone since they knew it
                or (known is not None and known.issued_at >= ad.issued_at)
            ):
                continue
            try:
                ad.verify()
            except BadSignature as exc:
                node.reject("bad_ad", f"{sender} relayed a forged ad: {exc}")
                return
            fresh.append(ad)
        self.answered = True
        for ad in fresh:
            node.learn_ad(ad)
