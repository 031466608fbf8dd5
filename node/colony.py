"""Colony lifecycle on a node's home, without a running daemon: create a colony (this
node becomes its owner) and record a membership set received when joining."""

from __future__ import annotations

from colonyp2p.core import catchup
from colonyp2p.core.effects import Persist
from colonyp2p.core.node import MEMBERSHIP
from colonyp2p.errors import ColonyError
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.node.home import Home
from colonyp2p.node.store import Store


def history_key(membership: MembershipSet) -> str:
    """Where each membership version is kept, beside "current" (as the core keeps them)."""
    return catchup.history_key(membership.version)


class ColonyExists(ColonyError):
    code = "colony_exists"


def current_membership(home: Home) -> MembershipSet | None:
    with Store(home.state_path) as store:
        value = store.load().get(MEMBERSHIP, {}).get("current")
    return value if isinstance(value, MembershipSet) else None


def create(home: Home, name: str, members: list[Member] | None = None, now: float = 0.0) -> str:
    """Found a colony owned by this node's key; returns the colony id."""
    if current_membership(home) is not None:
        raise ColonyExists(f"{home.root} is already a member of a colony")
    genesis = MembershipSet.genesis(home.identity(), name, now, members=members or [])
    adopt(home, genesis)
    return genesis.colony_id


def adopt_chain(home: Home, chain: tuple[MembershipSet, ...]) -> None:
    """Record a verified chain received when joining (genesis first)."""
    with Store(home.state_path) as store:
        store.apply([Persist(MEMBERSHIP, history_key(m), m) for m in chain])
        store.apply([Persist(MEMBERSHIP, "current", chain[-1])])
    config = home.config()
    config.colony_id = chain[-1].colony_id
    home.save_config(config)


def adopt(home: Home, membership: MembershipSet) -> None:
    """Record ``membership`` as this node's current set (after checking it)."""
    current = current_membership(home)
    if current is None and membership.version == 1:
        membership.verify_genesis()
    elif current is None:
        membership.verify_signature()
    elif current.colony_id != membership.colony_id:
        raise ColonyExists(f"{home.root} is a member of colony {current.colony_id}")
    else:
        current.verify_successor(membership)
    with Store(home.state_path) as store:
        store.apply([Persist(MEMBERSHIP, "current", membership)])
        store.apply([Persist(MEMBERSHIP, history_key(membership), membership)])
    config = home.config()
    config.colony_id = membership.colony_id
    home.save_config(config)
