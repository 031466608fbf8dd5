"""A node catches up on executor ads and membership versions from one member at a time.

Ads are not persisted, and gossip is a poor way to learn them: the 60 s republication
means a node that starts, restarts or joins would rank processes from its own ad
alone for up to a minute, and its first announcements may go out before gossip has a
mesh (py-libp2p), or be lost (the simulator's gossip loss). So a starting node asks
one member directly, admins first (the inviter is one, and its address is in the
ticket), then the others in turn, until one answers; the answer carries every ad the
member knows. Ads are signed by their executors, so a relayed one is verified before
use, and a message with a forged ad changes nothing.

Membership moves one version at a time (``MembershipSet.verify_successor``): only the
version before can say whether a signer was an admin. So the answer also carries the
versions after the asker's, and an announcement of a version more than one ahead
makes the node ask the publisher (which has them) and the owner for the versions in
between; the node adopts them only once each step checks out from its own version.
Every member keeps every version it adopted (``history``) to answer such questions.
An answer counts only to a question asked, and only from the member asked: anything
else is refused (``unsolicited``) and changes nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from colonyp2p.core.messages import CatchUp, CaughtUp
from colonyp2p.errors import BadSignature, ColonyError, StaleMembership
from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.membership import MembershipSet

if TYPE_CHECKING:
    from colonyp2p.core.node import ColonyNode

CATCHUP_AFTER = (1.0, 2.0, 4.0, 8.0, 16.0)  # seconds before asking the next member
CATCHUP_ADS = 256  # ads per answer message (a colony of thousands answers in several)
# membership versions per answer: at most this many, and no more member entries than
# CHAIN_MEMBERS in all (one version always goes), so an answer fits a frame; the asker
# asks again for the rest
CHAIN_STEPS = 64
CHAIN_MEMBERS = 8192
CHAIN_ASK_EVERY = 2.0  # seconds between questions for missing versions (announcements repeat)
ASKS_KEPT = 16  # recent questions whose answers still count (an answer may be several messages)
HISTORY = "v"  # durable key prefix of each membership version, beside "current"


def history_key(version: int) -> str:
    """Where membership version ``version`` is kept (in the core's membership table)."""
    return f"{HISTORY}{version:012d}"


class CatchUpRole:
    def __init__(self, node: ColonyNode, saved: Mapping[str, Any]) -> None:
        self.node = node
        self.answered = False
        current = node.membership
        # every version this node adopted: for members that are behind, and for joins
        self.history: dict[int, MembershipSet] = {
            m.version: m
            for key, m in saved.items()
            if key.startswith(HISTORY)
            and isinstance(m, MembershipSet)
            and m.colony_id == current.colony_id
            and m.version <= current.version
        }
        self.history[current.version] = current
        self._asks: OrderedDict[int, tuple[str, bool]] = OrderedDict()  # -> (whom, ads?)
        self._asked = 0
        self._chain_asked_at = -math.inf

    # --- asking ------------------------------------------------------------------------

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
        self._question(order[attempt], ads=True)
        self.node.set_timer(now + CATCHUP_AFTER[attempt], ("catchup", attempt + 1))

    def _question(self, to: str, ads: bool) -> None:
        node = self.node
        self._asked += 1
        self._asks[self._asked] = (to, ads)
        if len(self._asks) > ASKS_KEPT:
            self._asks.popitem(last=False)
        ad = node.executor.ad if ads else None
        node.send(to, CatchUp(node.membership.version, ad, self._asked, ads))

    def _whom(self) -> list[str]:
        """Admins first, then the other members in member-id order after this one."""
        m, me = self.node.membership, self.node.member_id
        admins = [m.owner_id, *m.admins]
        ids = m.member_ids
        after = [i for i in ids if i > me] + [i for i in ids if i < me]
        return [i for i in dict.fromkeys(admins + after) if i != me]

    # --- membership versions -------------------------------------------------------------

    def on_announced(self, publisher: str, new: MembershipSet, now: float) -> None:
        """A membership version on gossip: the next one is adopted if it checks out; one
        further ahead is judged only with the versions between, asked for here."""
        node = self.node
        current = node.membership
        if new.version <= current.version:
            known = self.history.get(new.version)
            if known is not None and known.signature != new.signature:
                # two different sets of one version: an admin of the version before signed
                # both (equivocation), or two admins changed it at once. Kept: the first.
                node.reject(
                    "membership_fork",
                    f"{publisher} announced a version {new.version} other than this node's "
                    f"(signed by {known.signer})",
                )
            return  # else gossip repeating itself
        if new.version == current.version + 1:
            node.learn_chain((new,), now)
            return
        try:
            if new.colony_id != current.colony_id:
                raise StaleMembership(f"membership of colony {new.colony_id} announced")
            new.verify_signature()  # not worth asking about a forgery
        except ColonyError as exc:
            node.reject(exc.code, str(exc))
            return
        if now - self._chain_asked_at < CHAIN_ASK_EVERY:
            return  # a question is on its way
        self._chain_asked_at = now
        # The publisher has these versions. The owner too, and it is an admin of every
        # version: where an admin of this node's version equivocates (signs a next version
        # other than the colony's), the owner's versions can still bring the node back.
        whom = [publisher] if publisher in current else []
        for to in dict.fromkeys([*whom, current.owner_id]):
            if to != node.member_id:
                self._question(to, ads=False)

    def chain_after(self, version: int) -> tuple[MembershipSet, ...]:
        """The versions after ``version``, consecutive, as many as one answer carries
        (none where this node lacks the next one)."""
        out: list[MembershipSet] = []
        members = 0
        for v in range(max(version, 0) + 1, self.node.membership.version + 1):
            m = self.history.get(v)
            if m is None:
                break  # a gap (a home from before every version was kept): no use
            members += len(m)
            if out and (len(out) >= CHAIN_STEPS or members > CHAIN_MEMBERS):
                break
            out.append(m)
        return tuple(out)

    def versions(self) -> tuple[MembershipSet, ...]:
        """Every version this node has, oldest first (from the genesis, for joins)."""
        return tuple(self.history[v] for v in sorted(self.history))

    # --- answering ----------------------------------------------------------------------

    def on_request(self, sender: str, msg: CatchUp, now: float) -> None:
        node = self.node
        if msg.ad is not None:
            if msg.ad.executor_id != sender:
                node.reject("bad_ad", f"{sender} sent the ad of {msg.ad.executor_id}")
                return
            node.learn_ad(msg.ad)
        ads = [ad for member, ad in node.ads.items() if member != sender] if msg.ads else []
        chain = self.chain_after(msg.have_version)
        newest = node.membership.version
        chunks = [tuple(ads[i : i + CATCHUP_ADS]) for i in range(0, len(ads), CATCHUP_ADS)]
        for i, chunk in enumerate(chunks or [()]):
            node.send(sender, CaughtUp(chunk, chain if i == 0 else (), msg.ask, newest))

    def on_reply(self, sender: str, msg: CaughtUp, now: float) -> None:
        node = self.node
        asked = self._asks.get(msg.ask)
        if asked is None or asked[0] != sender:
            node.reject(
                "unsolicited", f"{sender} answered a question this node did not ask it ({msg.ask})"
            )
            return
        # first: the ads may be of members new in these versions
        steps = tuple(m for m in msg.chain if m.version > node.membership.version)
        if steps:
            node.learn_chain(steps, now)
            if node.membership.version != steps[-1].version:
                return  # refused (and counted): nothing of this answer is used
            if node.revoked:
                return
            if node.membership.version < msg.newest:  # the rest, from the same member
                self._chain_asked_at = now
                self._question(sender, ads=False)
        if not asked[1]:
            return
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
