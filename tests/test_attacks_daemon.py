"""Attacks of issue 14 replayed on real daemons, where no other test replays them there.

The issue lists attacks that were run on real daemons at an old commit. Most have a
real-daemon test of their own elsewhere (each test below says which it completes):

- 2, another member's key drives a node's local API: tests/test_api_node.py (a user's
  key refused, requests bound to their node, fs paths confined for the node's own key);
  here: a key the node lets act (``api.allow: ["admins"]``) still cannot read the
  node's key or write outside ``mfs.paths``, and what it submits is the node's;
- 3, a revoked admin's membership at version 2^63 - 1: only core tests
  (test_core_catchup.py, test_membership.py); here between daemons;
- 4, a spec's ``env`` through the shell executor: only executor tests
  (test_shell_executor.py); here through a daemon;
- 5, log-line injection and floods: tests/test_zero_trust_logs.py;
- 6, one ticket at two admins: tests/test_admission.py;
- 7, join requests from strangers: tests/test_admission.py (size, escapes, rates); here
  the name's length and the 100 devices waiting, which only unit tests checked;
- 8, the default executor's bounds: tests/test_process_pool.py (an entry point past
  maxexectime is killed); here the built-ins' bounds through a daemon.

Beyond the issue: a forged outcome sent to a member that neither submitted nor keeps
the process (docs/PROTOCOL.md, "Provenance"; the core's side in
tests/test_core_provenance.py), here between daemons.

One colony serves every test (the module's fixture): the owner runs the built-ins
("local"); ``worker`` runs shell commands (``env`` only, the spec's env admitted by
patterns an admin might write) and lets the colony's admins act through its API;
``mallory`` (user) and ``eve`` (admin) joined and never started: their keys attack.
The last test adds ``liar`` (an executor, never started) and ``watcher`` (a user's
daemon)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import FAST, Cluster, Node, cluster, events, wait_for

from colonyp2p.core.messages import (
    CatchUp,
    CaughtUp,
    Certificate,
    MembershipAnnounce,
    Message,
    Outcome,
    Query,
    Status,
    Vote,
)
from colonyp2p.core.provenance import vote_bytes
from colonyp2p.core.topics import colony_topic
from colonyp2p.errors import ApiError
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signing import unsigned_bytes
from colonyp2p.node import join
from colonyp2p.node.admission import MAX_PENDING, request_join
from colonyp2p.node.api_client import ApiClient
from colonyp2p.node.colony import current_membership
from colonyp2p.node.transport import Transport

# the tests share one colony (the module's fixture): one worker makes it, once
pytestmark = pytest.mark.xdist_group("attacks-daemon")

SHELL = "shellenv"  # the worker's executor type


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, Node]]]:
    with cluster(Path(tmp_path_factory.mktemp("attacks"))) as c:
        owner = c.found()
        worker = c.join("worker", owner, executortype=SHELL, kind="shell", start=False)
        config = worker.home.config()
        assert config.executor is not None
        config.executor.functions = ["env"]  # the only command it runs
        # patterns that would admit the loader's and interpreters' variables, were they
        # taken as written
        config.executor.env = ["LD_*", "PY*", "P*", "BASH*", "OMP_*", "MODE"]
        config.api = {"allow": ["admins"]}
        worker.home.save_config(config)
        mallory = c.join("mallory", owner, role="user", start=False)
        eve = c.join("eve", owner, role="admin", start=False)
        worker.start()
        version = owner.status()["membership_version"]
        wait_for(lambda: worker.has_version(version), 45, f"the worker at v{version}")
        yield c, {"owner": owner, "worker": worker, "mallory": mallory, "eve": eve}


def _as(node: Node, key_of: Node, signed_for: Node | None = None) -> ApiClient:
    """A client of ``node``'s API signing with ``key_of``'s key, for ``signed_for``'s
    node (by default ``node``)."""
    url = str(node.runtime()["api"])
    target = (signed_for or node).member_id
    return ApiClient(url, key_of.home.identity(), node=target, timeout=20.0)


def _refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# --- 2: the local API ---------------------------------------------------------------------


def test_a_key_the_node_allows_acts_as_the_node_but_never_reaches_its_key_or_outside_paths(
    colony: tuple[Cluster, dict[str, Node]], tmp_path: Path
) -> None:
    """The attack drove the node's API with another member's key: `fs put` of the node's
    identity.key into a label, `fs get` into a directory of its choosing, `submit` signed
    with the node's key. The worker lets the colony's admins act through its API: a user
    is still refused, and an admin acts with the node's authority within its paths."""
    _, nodes = colony
    owner, worker, mallory = nodes["owner"], nodes["worker"], nodes["mallory"]
    home = worker.home.root.resolve()
    key = home / "identity.key"
    spec = {"funcname": "env", "conditions": {"executortype": "nobody-runs-this"}}
    with _as(worker, mallory) as api:  # a user is no admin
        refusals = [
            _refused(lambda: api.submit(spec)),
            _refused(lambda: api.fs("put", src=str(key), label="/stolen")),
            _refused(lambda: api.fs("get", ref="/x", dest=str(tmp_path / "out"))),
        ]
    for refused in refusals:
        assert (refused.status, refused.remote_code) == (403, "not_allowed"), refused
        assert str(refused).startswith(f"{mallory.member_id} may not POST "), refused
    with _as(worker, owner) as api:  # an admin, allowed
        paths = [
            _refused(lambda: api.fs("put", src=str(key), label="/stolen")),
            _refused(lambda: api.fs("put", src=str(home), label="/stolen")),
            _refused(lambda: api.fs("get", ref="/x", dest="/etc/colonyp2p-attack")),
            _refused(lambda: api.fs("sync", label="/x", dir=str(home / "mfs"))),
        ]
        pid = api.submit(spec)["pid"]
    for refused in paths:
        assert (refused.status, refused.remote_code) == (403, "path_refused"), refused
    assert "never reads or writes there" in str(paths[0])
    assert "outside the directories this node's meta-filesystem may use" in str(paths[2])
    assert not Path("/etc/colonyp2p-attack").exists()
    assert worker.call(lambda a: a.fs("ls"))["labels"] == []
    # what the admin submitted through the worker is the worker's, signed by its key
    assert worker.process(pid)["submitter"] == worker.member_id
    # a request the admin signed for its own node is refused by the worker
    with _as(worker, owner, signed_for=owner) as api:
        wrong = _refused(lambda: api.submit(spec))
    assert (wrong.status, wrong.remote_code) == (401, "wrong_node")


# --- 4: a spec's env through the shell executor --------------------------------------------


def test_a_spec_s_loader_and_interpreter_variables_never_reach_a_command(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    """The attack: with only `echo` allowed, a spec's LD_PRELOAD made it load a library of
    the spec's choosing. Submitted by another member, run by a daemon whose config admits
    `LD_*`, `PY*`, `P*` and `BASH*`: only the harmless names reach the command, and the
    submitter's log says what was dropped."""
    _, nodes = colony
    owner, worker = nodes["owner"], nodes["worker"]
    hostile = {
        "LD_PRELOAD": "/tmp/evil.so",
        "LD_LIBRARY_PATH": "/tmp/evil",
        "PYTHONPATH": "/tmp/evil",
        "PYTHONSTARTUP": "/tmp/evil.py",
        "PATH": "/tmp/evil",
        "BASH_ENV": "/tmp/evil.sh",
        "PERL5OPT": "-Mevil",
        "COLONY_PROCESS_ID": "forged",
    }
    env = {**hostile, "OMP_NUM_THREADS": "4", "MODE": "fast", "PAGER": "less", "FOO": "1"}
    pid = owner.submit(
        {"funcname": "env", "env": env, "conditions": {"executortype": SHELL}, "maxexectime": 60}
    )["pid"]
    done = wait_for(lambda: owner.finished(pid), 60, "the env command")
    assert done["state"] == "successful", done
    assert done["executor"] == worker.member_id
    seen = dict(line.split("=", 1) for line in str(done["output"][1]).splitlines() if "=" in line)
    assert {k: seen.get(k) for k in ("OMP_NUM_THREADS", "MODE", "PAGER")} == {
        "OMP_NUM_THREADS": "4",
        "MODE": "fast",
        "PAGER": "less",
    }
    assert "FOO" not in seen  # not listed at all
    for name, value in hostile.items():
        assert seen.get(name) != value, (name, seen)
    assert not {"LD_PRELOAD", "LD_LIBRARY_PATH", "PYTHONPATH", "BASH_ENV"} & set(seen), seen
    assert seen["COLONY_PROCESS_ID"] == pid
    dropped = ", ".join(sorted([*hostile, "FOO"]))
    note = f"[env] not set, not allowed by this executor: {dropped} "

    def logged() -> list[str] | None:
        lines = [str(line) for line in owner.process(pid)["logs"]]
        return lines if any(line.startswith(note) for line in lines) else None

    wait_for(logged, 30, "the worker's note on the dropped names at the submitter")


# --- 8: the default executor's bounds ------------------------------------------------------


def test_built_ins_refuse_arguments_beyond_their_bounds_through_a_daemon(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    """The attack: primes(1e9) kept 1.1 GiB and a core of the node for 15 s after its run
    had failed at maxexectime. The node's built-ins refuse it before taking anything, and
    the node goes on running processes."""
    _, nodes = colony
    owner = nodes["owner"]

    def run(funcname: str, arg: float) -> dict[str, Any]:
        spec = {"funcname": funcname, "args": [arg], "conditions": {"executortype": "local"}}
        pid = owner.submit(spec)["pid"]
        done: dict[str, Any] = wait_for(lambda: owner.finished(pid), 60, f"{funcname}({arg})")
        return done

    primes = run("primes", 1_000_000_000)
    assert primes["state"] == "failed", primes
    assert primes["errors"][0] == (
        "ValueError: primes: limit must be a whole number from 0 to 50000000, got 1000000000"
    )
    sleep = run("sleep", 86400)
    assert sleep["state"] == "failed", sleep
    assert sleep["errors"][0] == "ValueError: sleep: seconds must be from 0 to 3600, got 86400"
    small = run("primes", 100)
    assert small["state"] == "successful", small


# --- 7: join requests from strangers -------------------------------------------------------


def _ask_each(addr: str, requests: list[tuple[Identity, join.JoinRequest]]) -> list[join.JoinReply]:
    """Each request sent by its own stranger's host to the node at ``addr``; a request
    refused for the node's rate is asked again (the node's total rate is 10 a second), so
    the answers are the node's answers to the requests themselves."""
    replies: list[join.JoinReply] = []

    async def one(identity: Identity, request: join.JoinRequest) -> join.JoinReply:
        transport = Transport(
            identity,
            request.colony_id,
            is_member=lambda m: False,
            on_message=lambda s, m: None,
            on_announcement=lambda s, m: None,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            with trio.fail_after(60):
                while True:
                    reply = await request_join(transport, addr, request)
                    if not reply.reason.startswith("this node answers at most"):
                        break
                    await trio.sleep(0.1)  # the node's bucket refills: ask again
            nursery.cancel_scope.cancel()
        return reply

    async def run() -> None:
        for identity, request in requests:
            replies.append(await one(identity, request))

    trio.run(run)
    return replies


def _request(identity: Identity, colony_id: str, name: str) -> join.JoinRequest:
    return join.JoinRequest.create(identity, colony_id, name, "", time.time())


def test_a_stranger_s_long_names_and_a_hundred_devices_are_all_an_admin_keeps(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    """The attack filled an admin's store with ticketless join requests, names of 60 KB
    with terminal escapes. tests/test_admission.py replays the size, escapes and rates;
    here a name just over 64 characters (well within the request's size) sent straight
    to the daemon, and strangers, each with a key of its own, asking until 100 devices
    wait: the next one is refused and nothing more is kept."""
    _, nodes = colony
    owner = nodes["owner"]
    status = owner.status()
    colony_id, addr = status["colony_id"], status["addrs"][0]
    before = dict(status["refused"].get("join", {}))
    long = Identity.generate()
    (reply,) = _ask_each(addr, [(long, _request(long, colony_id, "x" * (join.MAX_NAME + 1)))])
    assert (reply.status, reply.reason) == ("refused", "name: at most 64 characters, got 65")
    assert owner.members()["pending"] == {}
    fine = join.MAX_NAME * "n"
    strangers = [Identity.generate() for _ in range(MAX_PENDING + 1)]
    replies = _ask_each(addr, [(s, _request(s, colony_id, fine)) for s in strangers])
    assert [r.status for r in replies[:MAX_PENDING]] == ["pending"] * MAX_PENDING
    assert (replies[-1].status, replies[-1].reason) == (
        "refused",
        f"{MAX_PENDING} devices already wait for an admin's approval here: ask an admin "
        "to approve them (colonynode members approve ID) or for a ticket (colonynode invite)",
    )
    pending = owner.members()["pending"]
    assert set(pending) == {s.member_id for s in strangers[:MAX_PENDING]}
    assert {row["name"] for row in pending.values()} == {fine}
    refused = owner.status()["refused"]["join"]
    assert refused.get("invalid", 0) - before.get("invalid", 0) == 1, refused
    assert refused.get("join_pending_full", 0) - before.get("join_pending_full", 0) == 1


# --- 3: a revoked admin's jump to version 2^63 - 1 -----------------------------------------


def _member_transport(
    identity: Identity, colony_id: str, on_message: Callable[[str, Message], None]
) -> Transport:
    """The project's own transport with a member's key, that takes anyone as a member:
    the attacker speaks the colony protocol as a daemon would, without a core."""
    return Transport(
        identity,
        colony_id,
        is_member=lambda m: True,
        on_message=on_message,
        on_announcement=lambda s, m: None,
    )


def _forged(doc: MembershipSet, signer: Identity, **changes: Any) -> MembershipSet:
    """``doc`` with ``changes``, signed again by ``signer``."""
    unsigned = dataclasses.replace(doc, signer=signer.member_id, signature=b"", **changes)
    return dataclasses.replace(unsigned, signature=signer.sign(unsigned_bytes(unsigned)))


async def test_an_admin_s_jump_to_the_last_version_is_refused_and_its_revocation_adopted(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    """The attack: a member that had not got the revocation of an admin took, from that
    admin, a membership version 2^63 - 1 of its own (keeping itself, adding an admin of
    its choosing); every genuine version after it was "stale". Eve, an admin of the
    worker's version, announces such a version on gossip and answers the worker's
    question with it: the worker refuses it (``membership_gap``), stays at its version,
    and adopts the owner's revocation of eve that comes next."""
    _, nodes = colony
    owner, worker, eve = nodes["owner"], nodes["worker"], nodes["eve"]
    status = await trio.to_thread.run_sync(worker.status)
    version, colony_id = status["membership_version"], status["colony_id"]
    gaps = status["rejected"].get("membership_gap", 0)
    identity = eve.home.identity()
    base = current_membership(eve.home)  # the version eve joined at, where it is an admin
    assert base is not None and base.role_of(identity.member_id) == "admin"
    accomplice = Identity.generate()
    own = base.updated(identity, time.time(), add=[Member(accomplice.member_id, "admin")])
    jump = _forged(own, identity, version=2**63 - 1)
    jump.verify_signature()  # a genuine signature of an admin of the worker's version

    asked: list[CatchUp] = []

    def on_message(sender: str, msg: Message) -> None:
        if sender == worker.member_id and isinstance(msg, CatchUp):
            asked.append(msg)

    transport = _member_transport(identity, colony_id, on_message)
    topic = colony_topic(colony_id)
    async with trio.open_nursery() as nursery:
        await transport.subscribe(topic)
        await nursery.start(transport.run)
        await transport.connect(worker.addrs[0])
        # announced until the worker asks eve for the versions in between (the gossip
        # mesh forms at a heartbeat; until then a publication reaches nobody)
        with trio.move_on_after(30):
            while not asked:
                await transport.publish(topic, MembershipAnnounce(jump))
                await trio.sleep(0.5)
        if not asked:
            took = (await trio.to_thread.run_sync(worker.status))["membership_version"]
            raise AssertionError(
                f"the worker (at v{version} before) never asked eve for the versions before "
                f"{jump.version}; it runs with v{took} now"
            )
        assert asked[0].have_version == version and not asked[0].ads
        # the answer eve's question asks for: its jump, as the versions after the worker's
        assert await transport.send(worker.member_id, CaughtUp(chain=(jump,), ask=asked[0].ask))

        def refused() -> dict[str, Any] | None:
            now = worker.status()
            return now if now["rejected"].get("membership_gap", 0) > gaps else None

        now = await trio.to_thread.run_sync(wait_for, refused, 30, "the worker to refuse it")
        nursery.cancel_scope.cancel()
    assert now["membership_version"] == version
    members = {m["member_id"]: m["role"] for m in worker.members()["members"]}
    assert accomplice.member_id not in members and members[identity.member_id] == "admin"
    # the owner revokes eve: the worker, still on the colony's versions, follows
    owner.call(lambda a: a.revoke(identity.member_id))
    await trio.to_thread.run_sync(
        wait_for, lambda: worker.has_version(version + 1), 30, f"the worker at v{version + 1}"
    )
    after = {m["member_id"] for m in worker.members()["members"]}
    assert identity.member_id not in after and accomplice.member_id not in after


# --- a forged outcome, at a member that neither submitted nor keeps the process ------------


async def test_a_forged_outcome_sent_to_a_member_that_did_not_submit_is_never_shown(
    colony: tuple[Cluster, dict[str, Node]],
) -> None:
    """The attack: a member whose key may keep records (an executor) sent a node that
    neither submitted nor kept a process a decided ``Status`` naming itself the record's
    keeper, twice: the node learned it as the keeper, reported the forged outcome as the
    process's result and showed it through its local API. Here the liar, an executor
    that runs no daemon, does so, then adds the best proof one key can make (its own
    vote as the sole keeper, with the spec and placement that a keeper hands any member
    that asks) and answers the node's questions with it. The node, a user's daemon (it
    keeps nothing), shows the real outcome only and never reports the forged one."""
    c, nodes = colony
    owner, worker = nodes["owner"], nodes["worker"]

    def setup() -> tuple[Node, Node, str, dict[str, Any]]:
        liar = c.join("liar", owner, start=False)  # an executor, never started
        watcher = c.join("watcher", owner, role="user")
        version = owner.status()["membership_version"]
        wait_for(lambda: worker.has_version(version), 45, f"the worker at v{version}")
        # a lease after its start the owner passes over members it never heard from
        # (the liar, eve) when it places a process: before, they may be its keepers
        lease = FAST["lease_seconds"]
        wait_for(lambda: owner.status()["uptime"] > lease + 1, 30, "the owner up for a lease")
        spec = {"funcname": "primes", "args": [30], "conditions": {"executortype": "local"}}
        pid = owner.submit(spec)["pid"]
        real: dict[str, Any] = wait_for(lambda: owner.finished(pid), 60, "primes(30)")
        # the watcher submitted nothing and keeps nothing: it lists neither
        assert pid not in {p["pid"] for p in watcher.processes()}
        return liar, watcher, pid, real

    liar, watcher, pid, real = await trio.to_thread.run_sync(setup)
    assert real["state"] == "successful" and real["executor"] == owner.member_id, real
    identity, colony_id = liar.home.identity(), str(owner.status()["colony_id"])
    me = identity.member_id
    incoming, inbox = trio.open_memory_channel[tuple[str, Message]](256)
    answers, answered = trio.open_memory_channel[tuple[str, Status]](256)
    lies: list[Status] = []  # what the liar answers a question about the process with

    def on_message(sender: str, msg: Message) -> None:
        if isinstance(msg, Query | Status) and msg.pid == pid:
            incoming.send_nowait((sender, msg))

    transport = _member_transport(identity, colony_id, on_message)

    async def lie_when_asked() -> None:
        async for sender, msg in inbox:
            if isinstance(msg, Status):
                answers.send_nowait((sender, msg))
            elif lies:
                await transport.send(sender, lies[-1])

    async def answer_from(member: str) -> Status:
        with trio.fail_after(30):
            while True:
                sender, status = await answered.receive()
                if sender == member:
                    return status

    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        nursery.start_soon(lie_when_asked)
        # what any member may learn from a keeper: the spec and its placement
        await transport.connect(owner.addrs[0])
        assert await transport.send(owner.member_id, Query(pid, proof=True))
        told = await answer_from(owner.member_id)
        assert told.spec is not None and told.placement is not None, told
        epoch = told.decided_epoch + 1
        forged = Outcome("successful", ("forged",), (), me, epoch)
        plain = Status(pid, True, "successful", epoch, forged, epoch, keepers=(me,))
        # its own vote, as the sole keeper of a configuration of its own making
        signed = vote_bytes(colony_id, pid, (me,), told.config_version, epoch, forged)
        vote = Vote(me, identity.sign(signed))
        certified = dataclasses.replace(
            plain,
            config_version=told.config_version,
            certificate=Certificate((me,), told.config_version, epoch, forged, (vote,)),
            placement=told.placement,
            spec=told.spec,
        )
        lies.append(certified)
        # the forgery twice (the first makes the liar the keeper the watcher knows),
        # with the proof, then a question: one stream, read in order, so the answer
        # comes once the watcher took them all
        await transport.connect(watcher.addrs[0])
        for msg in (plain, plain, certified, Query(pid)):
            assert await transport.send(watcher.member_id, msg)
        assert not (await answer_from(watcher.member_id)).known  # it keeps no record

        shown: list[dict[str, Any]] = []

        def decided() -> dict[str, Any] | None:
            view = watcher.process(pid)
            shown.append(view)
            return view if view["state"] in ("successful", "failed") else None

        # asked while the liar still answers, then once it left
        await trio.to_thread.run_sync(wait_for, decided, 30, "the watcher to show the outcome")
        nursery.cancel_scope.cancel()
    view = await trio.to_thread.run_sync(watcher.process, pid)
    for seen in [*shown, view]:
        assert seen["output"] != ["forged"] and seen["executor"] != me, seen
    keys = ("state", "output", "errors", "executor")
    assert {k: view[k] for k in keys} == {k: real[k] for k in keys}

    def results() -> list[dict[str, Any]]:
        return [e for e in events(watcher) if e["kind"] == "result" and e["pid"] == pid]

    reported = await trio.to_thread.run_sync(wait_for, results, 10, "the watcher's result event")
    assert [(e["outcome"], e["executor"]) for e in reported] == [("successful", owner.member_id)]
