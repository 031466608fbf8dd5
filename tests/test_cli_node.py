"""The mistakes users make with colonynode end in one clear line and a non-zero exit."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from cluster import Node, cluster

from colonyp2p.node import colony
from colonyp2p.node.join import Ticket

pytestmark = pytest.mark.slow


def _error(done: object) -> str:
    text = str(getattr(done, "stderr", ""))
    lines = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, text
    return lines[0]


def test_mistakes_without_a_colony(tmp_path: Path) -> None:
    node = Node(tmp_path, "lonely")
    assert "colonynode init" in _error(node.cli("start", check=False))
    node.cli("init")
    again = node.cli("init", check=False)
    assert again.returncode != 0 and "already has a key" in _error(again)
    assert "in no colony" in _error(node.cli("start", check=False))
    assert "not running" in _error(node.cli("status", check=False))
    garbage = node.cli("join", "abc", "--ticket", "colony-ticket:zzz", check=False)
    assert "damaged" in _error(garbage)
    nowhere = node.cli("join", "abc", check=False)
    assert "--ticket or --bootstrap" in _error(nowhere)


def test_port_in_use_wrong_colony_and_expired_ticket(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            other = c.node("other")
            other.home.init()  # as `init` and `colony create` make them (tested above)
            colony.create(other.home, "elsewhere", now=time.time())
            taken = other.cli("start", "--listen", f"/ip4/127.0.0.1/tcp/{port}", check=False)
            assert taken.returncode == 1 and "port is in use" in _error(taken)
        finally:
            busy.close()
        ticket = owner.cli("invite").stdout.strip().replace("\n", "")
        wrong = c.node("wrong")
        wrong.home.init()
        mismatch = wrong.cli("join", "f" * 64, "--ticket", ticket, check=False)
        assert "the ticket is for colony" in _error(mismatch)
        colony_id = owner.status()["colony_id"]
        # --expires sets the ticket's expiry (checked on the ticket, not by waiting it out)
        before = time.time()
        short = owner.cli("invite", "--expires", "30m").stdout.strip().replace("\n", "")
        expires_at = Ticket.decode(short).expires_at
        assert before + 1800 <= expires_at <= time.time() + 1800
        # a ticket the owner signed that ran out a minute ago: no wait for one to expire
        expired = Ticket.issue(
            owner.home.identity(), colony_id, "executor", time.time() - 60, tuple(owner.addrs)
        ).encode()
        late = wrong.cli("join", colony_id, "--ticket", expired, check=False)
        assert _error(late).endswith("the ticket has expired: ask for a new invite")
        used = c.node("used")
        used.home.init()
        used.cli("join", colony_id, "--ticket", ticket)
        reuse = wrong.cli("join", colony_id, "--ticket", ticket, check=False)
        assert "used already" in _error(reuse)
        assert "not a duration" in _error(owner.cli("invite", "--expires", "soon", check=False))
