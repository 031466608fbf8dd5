"""Membership versions between real daemons: a member that was down while the membership
changed several times gets every version it missed, and keeps each of them."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from cluster import cluster, wait_for

from colonyp2p.core.catchup import history_key
from colonyp2p.core.node import MEMBERSHIP
from colonyp2p.model.membership import MembershipSet
from colonyp2p.node.store import Store

pytestmark = pytest.mark.slow


def test_a_member_back_after_several_changes_catches_up_version_by_version(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        n1 = c.join("n1", owner)  # v2
        n1.kill9()
        a = c.join("a", owner, start=False)  # v3
        c.join("b", owner, start=False)  # v4
        owner.cli("members", "revoke", a.member_id)  # v5
        n1.start()
        wait_for(partial(n1.has_version, 5), 30, "n1 to catch up from v2 to v5")
        rejected = n1.status()["rejected"]
        assert not {"membership_gap", "unsolicited", "unauthorized"} & set(rejected), rejected
        n1.cli("stop")
        wait_for(lambda: n1.home.runtime() is None, 20, "n1 to stop")
        with Store(n1.home.state_path) as store:
            kept = store.load()[MEMBERSHIP]
        assert {k for k in kept if k != "current"} == {history_key(v) for v in range(1, 6)}
        current = kept["current"]
        assert isinstance(current, MembershipSet) and current.version == 5
        assert not current.is_member(a.member_id)
