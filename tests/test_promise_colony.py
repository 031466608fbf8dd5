"""Promises of README.md and docs/ checked on one colony of three real daemons: the
owner (the builtin ``local`` executor; it serves its blocks slowly, ``mfs.serve_rate``)
and two members of type "py" that serve this file's functions in worker processes.

- docs/MFS.md: a spec's ``fs`` section syncs labels into the working directory before
  the run and uploads results after it "for every executor kind": here a python
  function, which reads what was downloaded and writes what is uploaded; a failure of
  the meta-filesystem before the run fails the process with ``meta-filesystem before
  the run: ...`` and nothing runs.
- README.md / docs/PYTHON_API.md: ``cancel()`` of a running process stops its run (the
  worker process is gone); ``Process.logs()`` (Colony and SyncColony) yields the lines
  the process printed on another member.
- README.md / docs/MFS.md: ``fs get`` finds the members that have a snapshot through
  the DHT.
- docs/DAEMON.md (Transport): a stopped peer delays only its own messages.
- executors/python.py, docs/DAEMON.md (``isolation``): a run whose executor lost its
  lease is stopped (its worker process killed).

The tests run in this order; those that stop a member (SIGSTOP) let it go on before
they end."""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from cluster import Cluster, Node, cluster, wait_for

from colonyp2p import Colony, SyncColony

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("promise_colony")]

MiB = 1 << 20

MODULE = '''
import os, time

def shout(marker):
    """Upper-cases in/words.txt into out/upper.txt, in the working directory."""
    with open(marker, "w") as f:
        f.write(os.getcwd())
    with open(os.path.join("in", "words.txt")) as f:
        text = f.read()
    os.makedirs("out", exist_ok=True)
    with open(os.path.join("out", "upper.txt"), "w") as f:
        f.write(text.upper())
    return os.getpid()

def touch(marker):
    with open(marker, "w") as f:
        f.write("ran")
    return marker

def spin(beats):
    # never returns; a file named by its worker's pid holds the worker's parent (the
    # daemon that runs it)
    mine = os.path.join(beats, str(os.getpid()))
    while True:
        with open(mine + ".tmp", "w") as f:
            f.write(str(os.getppid()))
        os.replace(mine + ".tmp", mine)
        time.sleep(0.05)

def chatter(n):
    for i in range(n):
        print(f"line {i} of {n}", flush=True)
    return n

def echo(*args):
    return list(args)
'''

FUNCTIONS = [f"{name}=promisemod:{name}" for name in ("shout", "touch", "spin", "chatter", "echo")]


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("promise_colony")
    mods = root / "mods"
    mods.mkdir()
    (mods / "promisemod.py").write_text(textwrap.dedent(MODULE))
    with pytest.MonkeyPatch.context() as mp:
        # the daemons, and so their workers, find the module
        mp.setenv("PYTHONPATH", str(mods))
        with cluster(root / "c") as c:
            # the owner sends 4 MB a second at most (see the DHT test)
            owner = c.found(mfs={"serve_rate": 4_000_000, "chunker": "fixed:262144"})
            for name in ("w1", "w2"):
                member = c.join(name, owner, executortype="py", start=False)
                config = member.home.config()
                assert config.executor is not None
                config.executor.functions = list(FUNCTIONS)
                config.executor.isolation = "process"
                member.home.save_config(config)
                member.start()
            for node in c.nodes:
                wait_for(partial(_connected, node), 30, f"{node.name} to connect to both")
            for member in c.nodes[1:]:
                wait_for(partial(_serves, owner, member), 30, f"{member.name}'s ad")
            yield c


def _connected(node: Node) -> bool:
    return bool(node.status()["peers"] >= 2)


def _serves(owner: Node, member: Node) -> bool:
    """Whether the owner knows the member's ad, with this file's functions."""
    for m in owner.members()["members"]:
        if m["member_id"] == member.member_id and m["executor"]:
            return "spin" in m["executor"]["functions"]
    return False


def _nodes(c: Cluster) -> tuple[Node, Node, Node]:
    return c.nodes[0], c.nodes[1], c.nodes[2]


def _fs_job(node: Node, op: str, **args: Any) -> dict[str, Any]:
    with node.api() as api:
        job_id = api.fs(op, **args)["job"]

    def ended() -> dict[str, Any] | None:
        with node.api() as api:
            job: dict[str, Any] = api.fs_job(job_id)
        return job if job["state"] != "running" else None

    return wait_for(ended, 60, f"fs {op} on {node.name}")


def _fs(node: Node, op: str, **args: Any) -> dict[str, Any]:
    with node.api() as api:
        return dict(api.fs(op, **args))


def _has_label(node: Node, path: str) -> bool:
    return any(lb["path"] == path for lb in _fs(node, "ls")["labels"])


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def _runs(beats: Path) -> dict[int, int]:
    """Worker pid -> the pid of the daemon it works for, of every run of ``spin``."""
    return {int(p.name): int(p.read_text()) for p in beats.iterdir() if p.suffix != ".tmp"}


def _py(funcname: str, *args: Any, **fields: Any) -> dict[str, Any]:
    return {
        "funcname": funcname,
        "args": list(args),
        "conditions": {"executortype": "py"},
        **fields,
    }


# --- sync directives around a python function ---------------------------------------


def test_sync_directives_around_a_python_function_run_in_a_worker_process(
    colony: Cluster, tmp_path: Path
) -> None:
    owner, w1, w2 = _nodes(colony)
    src = tmp_path / "src"
    src.mkdir()
    (src / "words.txt").write_text("hello colony\n")
    assert _fs_job(owner, "put", src=str(src), label="/py/in")["state"] == "done"
    for member in (w1, w2):
        wait_for(partial(_has_label, member, "/py/in"), 30, f"/py/in on {member.name}")
    marker = tmp_path / "cwd"
    fs = {
        "snapshots": [{"label": "/py/in", "dir": "/in"}],
        "dirs": [{"label": "/py/out", "dir": "/out"}],
    }
    pid = owner.submit(_py("shout", str(marker), fs=fs))["pid"]
    done = wait_for(partial(owner.finished, pid), 60, "the python run")
    assert done["state"] == "successful", done["errors"]
    (runner,) = [m for m in (w1, w2) if m.member_id == done["executor"]]
    # it ran in a worker process of the member, not in a daemon, inside the run's
    # working directory, where the directives put the label's files
    assert done["output"][0] not in (owner.pid, w1.pid, w2.pid)
    assert Path(marker.read_text()).is_relative_to(runner.home.root / "work")
    # the upload after the run reached the owner
    wait_for(partial(_has_label, owner, "/py/out"), 30, "/py/out on the owner")
    out = tmp_path / "result"
    assert _fs_job(owner, "get", ref="/py/out", dest=str(out))["state"] == "done"
    assert (out / "upper.txt").read_text() == "HELLO COLONY\n"
    wait_for(
        lambda: "[fs] uploaded out as /py/out v1" in owner.process(pid)["logs"],
        30,
        "the upload's log line on the owner",
    )
    # keepfiles false (the default): the run's copies are gone
    assert not list((runner.home.root / "work").rglob("upper.txt"))


def test_a_failure_of_the_meta_filesystem_before_the_run_fails_it_and_nothing_runs(
    colony: Cluster, tmp_path: Path
) -> None:
    owner, _, _ = _nodes(colony)
    marker = tmp_path / "ran"
    fs = {"snapshots": [{"label": "/no/such/label", "dir": "/in"}]}
    pid = owner.submit(_py("touch", str(marker), fs=fs))["pid"]
    done = wait_for(partial(owner.finished, pid), 60, "the process to fail")
    assert done["state"] == "failed"
    (error,) = done["errors"]
    assert error.startswith("meta-filesystem before the run: no label /no/such/label"), error
    assert not marker.exists()  # the function never ran


# --- the Python API: cancel() and logs() ---------------------------------------------


def test_cancelling_a_running_function_kills_its_worker_process(
    colony: Cluster, tmp_path: Path
) -> None:
    owner, w1, w2 = _nodes(colony)
    beats = tmp_path / "beats"
    beats.mkdir()
    with SyncColony.connect(owner.home.root) as api:
        process = api.submit("spin", str(beats), executortype="py")
        worker, daemon = next(iter(wait_for(lambda: _runs(beats), 60, "the run").items()))
        assert daemon in (w1.pid, w2.pid) and worker not in (w1.pid, w2.pid)
        assert process.cancel() == "failed"
    assert owner.process(process.pid)["errors"][0].startswith("cancelled by ")
    wait_for(lambda: not _alive(worker), 30, "the worker process of the cancelled run to end")
    assert list(_runs(beats)) == [worker]  # it ran once, and nowhere else after the cancel


def test_process_logs_yields_the_lines_a_process_printed(colony: Cluster) -> None:
    owner, _, _ = _nodes(colony)
    want = [f"line {i} of 5" for i in range(5)]
    with SyncColony.connect(owner.home.root) as api:
        process = api.submit("chatter", 5, executortype="py")
        assert process.wait(timeout=60) == [5]
        assert [line for line in process.logs() if line.startswith("line ")] == want

    async def run() -> list[str]:
        async with Colony.connect(owner.home.root) as api:
            process = await api.submit("chatter", 5, executortype="py")
            # read while it runs, until it ends
            return [line async for line in process.logs() if line.startswith("line ")]

    assert trio.run(run) == want


# --- providers through the DHT -------------------------------------------------------


def test_fs_get_finds_providers_through_the_dht(colony: Cluster, tmp_path: Path) -> None:
    """The owner writes a label, w1 pins it (and so announces itself as a provider in
    the DHT), w2 fetches it with the real CLI, told of no provider. The label names only
    its writer, the owner, and a fetch turns to every connected member only when the
    DHT and the writer name nobody (or all of them failed): blocks from w1 come from
    its DHT record. The owner serves slowly, so that w1, once found, serves a share."""
    owner, holder, fetcher = _nodes(colony)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(4 * MiB))
    owner.cli("fs", "put", str(src), "/dht/data", "--quiet")
    wait_for(partial(_has_label, holder, "/dht/data"), 30, "the label on the holder")
    holder.cli("fs", "pin", "/dht/data", "--quiet")
    wait_for(partial(_has_label, fetcher, "/dht/data"), 30, "the label on the fetcher")
    (label,) = [lb for lb in _fs(fetcher, "ls")["labels"] if lb["path"] == "/dht/data"]
    assert label["writer"] == owner.member_id  # the label itself names the owner only
    attempt = 0

    def fetched_from_holder() -> dict[str, Any] | None:
        """A fetch into a fresh directory with the CLI; its figures if the holder
        served blocks of it (its DHT record travels on its own: until it is stored, the
        owner alone serves, and the fetched blocks are dropped again)."""
        nonlocal attempt
        attempt += 1
        out = tmp_path / f"out{attempt}"
        got = fetcher.cli("fs", "get", "/dht/data", str(out), "--json", "--quiet")
        fetch: dict[str, Any] = json.loads(got.stdout)["fetch"]
        assert (out / "data.bin").read_bytes() == (src / "data.bin").read_bytes()
        if fetch["by_provider"].get(holder.member_id):
            return fetch
        assert _fs(fetcher, "gc")["freed_blocks"] > 0  # not pinned: fetch it all again
        return None

    fetch = wait_for(fetched_from_holder, 60, "a fetch that the holder served blocks of")
    assert set(fetch["by_provider"]) <= {owner.member_id, holder.member_id}
    # every block came from a member that has the tree and none was missing or corrupt; a
    # provider dropped for a failed stream (a busy machine) is told with its reason, and
    # its blocks came from the other
    assert (fetch["not_found"], fetch["bad_blocks"]) == (0, 0), fetch
    assert set(fetch["lost"]) <= {owner.member_id, holder.member_id}, fetch
    assert bool(fetch["lost"]) == bool(fetch["provider_failures"]), fetch


# --- a stopped peer -------------------------------------------------------------------

COUNT = 8
PAYLOAD = "x" * 150_000  # COUNT of them: several times Yamux's initial 256 KiB window


def test_a_stopped_member_delays_only_its_own_messages(colony: Cluster) -> None:
    """All three are keepers of every process. w2 is stopped (SIGSTOP): it reads
    nothing, so the owner's stream to it stalls once its window is spent. The owner
    submits more than that (each spec carries 150 KB to every keeper, w2 included), and
    the processes are still stored by the owner and w1 (a majority), run on w1 and end."""
    owner, runner, stopped = _nodes(colony)
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        pids = [owner.submit(_py("echo", i, PAYLOAD))["pid"] for i in range(COUNT)]
        for i, pid in enumerate(pids):
            process = wait_for(partial(owner.finished, pid), 60, f"process {i} to end")
            assert process["state"] == "successful", process["errors"]
            assert process["executor"] == runner.member_id
            assert process["output"] == [[i, PAYLOAD]]
        assert _stopped(stopped.pid)  # nothing it could have sent helped
    finally:
        os.kill(stopped.pid, signal.SIGCONT)
    # once it runs again, what queued up for it arrives
    wait_for(partial(stopped.finished, pids[-1]), 60, "the stopped member to catch up")
    wait_for(partial(_connected, owner), 30, "the owner to be connected to both again")


# --- a lost lease ---------------------------------------------------------------------


def test_a_run_whose_executor_lost_its_lease_is_stopped(colony: Cluster, tmp_path: Path) -> None:
    """The member running ``spin`` is stopped for longer than a lease (3 s, FAST in
    tests/cluster.py): the keepers, the owner and the other member, hand the process to
    the other member, which runs it again. Once the first member runs again, its renewal
    is refused (the keepers moved on) and its worker process is killed."""
    owner, w1, w2 = _nodes(colony)
    beats = tmp_path / "beats"
    beats.mkdir()
    pid = owner.submit(_py("spin", str(beats), maxretries=5))["pid"]
    first, daemon = next(iter(wait_for(lambda: _runs(beats), 60, "the run").items()))
    (holder,) = [m for m in (w1, w2) if m.pid == daemon]
    (other,) = [m for m in (w1, w2) if m is not holder]
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        # the keepers move on: the other member runs the process again
        wait_for(lambda: other.pid in _runs(beats).values(), 60, "the run on the other member")
        assert _alive(first)  # its daemon is stopped: nothing stopped it yet
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    # the first member hears that its lease is lost and stops its run
    wait_for(lambda: not _alive(first), 60, "the worker of the lost lease to end")
    assert owner.process(pid)["state"] == "running"
    assert [w for w, d in _runs(beats).items() if d == other.pid and _alive(w)]
    with owner.api() as api:
        assert api.cancel(pid)["state"] == "failed"
