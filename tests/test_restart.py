"""Coming back: a node restarted after SIGKILL listens where its members last saw it,
dials the members it kept the addresses of, and its colony finishes what it accepted."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from functools import partial
from pathlib import Path
from typing import cast

import pytest
import trio
import trio.testing
from cluster import Node, cluster, wait_for

from colonyp2p.identity import Identity
from colonyp2p.node.home import Home
from colonyp2p.node.peers import PREFIX, PeerBook
from colonyp2p.node.ports import remember_ports, sticky_ports
from colonyp2p.node.redial import MAX_PAUSE, Redialer
from colonyp2p.node.store import Store
from colonyp2p.node.transport import MAX_ADDRS_PER_MEMBER, Transport

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


def _kept_members(node: Node) -> set[str]:
    """The members whose addresses ``node`` has written to its store (read-only, while
    it runs)."""
    db = sqlite3.connect(f"file:{node.home.state_path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT key FROM meta WHERE substr(key, 1, ?) = ?", (len(PREFIX), PREFIX)
        ).fetchall()
    finally:
        db.close()
    return {str(key)[len(PREFIX) :] for (key,) in rows}


def _port(node: Node) -> int:
    return int(node.addrs[0].split("/")[4])


class _Submitter:
    """Submits specs through one member's API in a loop, in a thread, and records which
    were acknowledged."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.acked: list[str] = []
        self.refused = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Submitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        with self.node.api() as api:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    answer = api.submit({"funcname": "add", "args": [n, 1]})
                except Exception:
                    self.refused += 1
                    self._stop.wait(0.1)  # the API may be busy: do not spin on it
                    continue
                if answer["acknowledged"]:
                    self.acked.append(answer["pid"])

    def more_than(self, n: int) -> bool:
        return len(self.acked) > n


@pytest.mark.slow
def test_a_founder_killed_under_load_comes_back_and_finishes_what_was_acknowledged(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        n1, n2 = c.join_all(owner, ["n1", "n2"])
        members = {n1.member_id, n2.member_id}
        for node in (owner, n1, n2):
            wait_for(partial(node.has_version, 3), 20, f"{node.name} to learn membership v3")
        # the founder has no bootstrap config: only what it kept tells it where they are
        wait_for(lambda: _kept_members(owner) == members, 20, "the owner to keep their addresses")
        port = _port(owner)
        with _Submitter(n1) as client:
            wait_for(partial(client.more_than, 5), 30, "specs acknowledged before the kill")
            owner.kill9()
            at_kill = len(client.acked)
            wait_for(partial(client.more_than, at_kill + 5), 30, "specs acknowledged meanwhile")
            restarted = time.monotonic()
            owner.cli("start")
            up = time.monotonic() - restarted
            # every member is connected to it again (the owner's connections: both ends)
            wait_for(
                lambda: owner.status()["members_connected"] == 2,
                10,
                "both members to be connected to the restarted owner",
            )
            connected = time.monotonic() - restarted
            print(f"\nrestart: up in {up:.2f} s, connected to both members {connected:.2f} s")
            assert _port(owner) == port
            at_restart = len(client.acked)
            wait_for(partial(client.more_than, at_restart + 5), 30, "specs acknowledged after")
        status = owner.status()
        assert status["members_known"] == 2
        pending = set(client.acked)
        print(f"{len(pending)} specs acknowledged, {at_restart - at_kill} while the owner was away")

        def all_finished() -> bool:
            pids = list(pending)  # asked in one API client, not one per process
            answers = n1.requests([("process", [pid]) for pid in pids])
            for pid, process in zip(pids, answers, strict=True):
                if process["state"] in ("successful", "failed"):
                    assert process["state"] == "successful", process
                    pending.discard(pid)
            return not pending

        wait_for(all_finished, 90, "every acknowledged spec to finish")


@pytest.mark.slow
def test_a_restarted_node_keeps_its_port_unless_another_program_took_it(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        port = _port(owner)
        owner.kill9()
        owner.cli("start")
        assert _port(owner) == port
        # the port taken meanwhile: a fresh one, with one warning, and that one is kept
        owner.kill9()
        # the killed daemon's socket is gone once the kernel has reaped everything that
        # held it (under load, a moment after the process): take the port when it can be
        squatter = wait_for(lambda: _listen_on(port), 30, f"port {port} to be free")
        with squatter:
            owner.cli("start")
            fresh = _port(owner)
            assert fresh != port
            log = owner.home.log_path.read_text()
            assert log.count(f"port {port}, where this node listened before, is taken") == 1
            assert owner.home.listen_ports() == {LOOPBACK: fresh}
            # a port given explicitly that is taken stays an error
            owner.kill9()
            refused = owner.cli("start", "--listen", f"/ip4/127.0.0.1/tcp/{port}", check=False)
            assert refused.returncode != 0
            assert "cannot listen on" in refused.stdout + refused.stderr


def _listen_on(port: int) -> socket.socket | None:
    """A socket listening on 127.0.0.1:``port``, or None while the port is taken."""
    sock = socket.socket()
    # SO_REUSEADDR: connections of the killed daemon may linger in TIME_WAIT; only a
    # listener takes the port
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        return None
    return sock


def test_ports_are_kept_only_for_port_zero_addresses(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    home.root.mkdir()
    quic = "/ip4/127.0.0.1/udp/0/quic-v1"
    fixed = "/ip4/127.0.0.1/tcp/4999"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        tcp_port = s.getsockname()[1]
    remember_ports(
        home,
        [LOOPBACK, quic, fixed],
        [f"/ip4/127.0.0.1/tcp/{tcp_port}", "/ip4/127.0.0.1/udp/40001/quic-v1", fixed],
    )
    assert home.listen_ports() == {LOOPBACK: tcp_port, quic: 40001}
    assert home.listen_path.stat().st_mode & 0o777 == 0o600
    assert sticky_ports(home, [LOOPBACK, fixed]) == [f"/ip4/127.0.0.1/tcp/{tcp_port}", fixed]
    # another listen config: the old one's port is forgotten
    remember_ports(home, ["/ip4/0.0.0.0/tcp/0"], ["/ip4/0.0.0.0/tcp/40002"])
    assert home.listen_ports() == {"/ip4/0.0.0.0/tcp/0": 40002}
    home.listen_path.write_text("not json")
    assert sticky_ports(home, [LOOPBACK]) == [LOOPBACK]


def test_the_kept_address_book_is_bounded_holds_only_members_and_survives_reopen(
    tmp_path: Path,
) -> None:
    a, b, gone = (Identity.generate().member_id for _ in range(3))
    members = {a, b}
    path = tmp_path / "state.db"
    with Store(path) as store:
        book = PeerBook(store)
        many = [f"/ip4/10.0.0.{i}/tcp/4001" for i in range(MAX_ADDRS_PER_MEMBER + 4)]
        book.learn(a, many)
        book.learn(b, [f"/ip4/10.0.1.1/tcp/4001/p2p/{b}"])
        book.learn(gone, ["/ip4/10.0.2.1/tcp/4001"])
        book.save(members.__contains__)
        # the same announcement again changes nothing, and writes nothing
        writes = book.writes
        book.learn(b, [f"/ip4/10.0.1.1/tcp/4001/p2p/{b}"])
        book.save(members.__contains__)
        assert book.writes == writes
        # a newer address goes first and the oldest falls out
        book.learn(a, ["/ip4/10.0.9.9/tcp/4001"])
        book.save(members.__contains__)
    with Store(path) as store:
        kept = PeerBook(store).load(lambda m: True)
    assert set(kept) == members  # the non-member was never written
    assert kept[a] == ["/ip4/10.0.9.9/tcp/4001", *many[: MAX_ADDRS_PER_MEMBER - 1]]
    assert kept[b] == ["/ip4/10.0.1.1/tcp/4001"]
    # a member revoked since is neither loaded nor kept
    with Store(path) as store:
        book = PeerBook(store)
        assert set(book.load({a}.__contains__)) == {a}
        book.save({a}.__contains__)
    with Store(path) as store:
        assert set(store.meta_items(PREFIX)) == {PREFIX + a}


class _FakeTransport:
    """What the redialer uses of a Transport: dials are recorded (virtual time, member)
    and fail, except to members listed in ``answers``."""

    def __init__(self) -> None:
        self.member_id = Identity.generate().member_id
        self.dials: list[tuple[float, str]] = []
        self.answers: set[str] = set()
        self.up: set[str] = set()
        self.book: dict[str, list[str]] = {}

    def add_addrs(self, member: str, addrs: list[str]) -> None:
        self.book[member] = list(addrs)

    def connected(self) -> set[str]:
        return set(self.up)

    async def reach(self, member: str) -> bool:
        self.dials.append((trio.current_time(), member))
        if len(self.dials) == 1:
            raise RuntimeError("a dial's bug")  # counted, not raised out
        if member in self.answers:
            self.up.add(member)
        return member in self.up


def test_a_node_cut_off_redials_its_members_with_backoff_but_not_revoked_ones(
    tmp_path: Path,
) -> None:
    a, b = Identity.generate().member_id, Identity.generate().member_id
    fake = _FakeTransport()
    members = {fake.member_id, a, b}
    with Store(tmp_path / "state.db") as store:
        book = PeerBook(store)
        book.learn(a, ["/ip4/10.0.0.1/tcp/4001"])
        book.learn(b, ["/ip4/10.0.0.2/tcp/4001"])
        book.save(members.__contains__)
        redial = Redialer(
            cast(Transport, fake), store, [], members.__contains__, jitter=lambda: 0.5
        )

        def dials_to(member: str, since: float = 0.0) -> list[float]:
            return [t for t, m in fake.dials if m == member and t >= since]

        async def scenario() -> None:
            async with trio.open_nursery() as nursery:
                await redial.load()
                assert set(fake.book) == {a, b}  # the kept book, in the transport
                nursery.start_soon(redial.run)
                await trio.sleep(100)
                # every member at start, then pauses doubling up to MAX_PAUSE
                gaps = [t2 - t1 for t1, t2 in zip(dials_to(a), dials_to(a)[1:], strict=False)]
                assert gaps[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, MAX_PAUSE]
                assert dials_to(b) == dials_to(a)
                # b revoked: no longer dialed
                members.discard(b)
                revoked = trio.current_time()
                await trio.sleep(100)
                assert dials_to(a, revoked) and not dials_to(b, revoked)
                # a answers: the redialing stops once connected
                fake.answers.add(a)
                await trio.sleep(MAX_PAUSE + 1)
                reached = trio.current_time()
                await trio.sleep(100)
                assert not dials_to(a, reached)
                # and starts again, from the first pause, when the last connection ends
                fake.up.clear()
                fake.answers.clear()
                redial.peer_lost()
                lost = trio.current_time()
                await trio.sleep(2)
                assert dials_to(a, lost)[:2] == [lost + 0.5, lost + 1.5]
                assert redial.stats["errors"] == 0 and redial.stats["failed"] > 0
                assert redial.status()["members_known"] == 1
                nursery.cancel_scope.cancel()

        trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0))
