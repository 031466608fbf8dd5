"""What a newcomer meets: the commands of the README and the docs do what they say.

One colony of two real daemons (tests/cluster.py) serves the tests that need one; the
others need no daemon. Every wait has a deadline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from cluster import Cluster, Node, cluster, events, wait_for

from colonyp2p import SyncColony
from colonyp2p.node.cli_node import resolve
from colonyp2p.node.home import Config, HomeError
from colonyp2p.node.ports import PortTaken, check_ports

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("newcomer")]


def _error(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a command that failed."""
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def colony(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with cluster(tmp_path_factory.mktemp("newcomer")) as c:
        owner = c.found()
        c.join("b", owner)
        wait_for(lambda: owner.status()["peers"] >= 1, 20, "b to connect")
        yield c


def _owner(c: Cluster) -> Node:
    return c.nodes[0]


def _until(node: Node, pid: str, state: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        view = node.process(pid)
        return view if view["state"] == state else None

    return wait_for(reached, 30, f"{pid} to be {state}")


# --- config.json and start: one line, nothing changed -------------------------------


def test_config_keys_and_values_are_checked() -> None:
    good = Config().to_json()
    assert Config.from_json(good) == Config()

    def refused(**change: Any) -> str:
        data = {**good, **change}
        with pytest.raises(HomeError) as info:
            Config.from_json(data, "/n/config.json")
        return str(info.value)

    assert refused(lisen=[]) == "/n/config.json: unknown key 'lisen' (did you mean 'listen'?)"
    ex = {**good["executor"], "isolaton": "process"}
    assert "'executor.isolaton' (did you mean 'executor.isolation'?)" in refused(executor=ex)
    assert "'params.lease_second' (did you mean" in refused(params={"lease_second": 3})
    assert "'mfs.quot' (did you mean 'mfs.quota'?)" in refused(mfs={"quot": 1})
    assert "executor.capacity: must be an integer" in refused(executor={"capacity": "2"})
    assert "listen: 'garbage' is not a multiaddr" in refused(listen=["garbage"])
    assert "listen: must be a list" in refused(listen="/ip4/127.0.0.1/tcp/0")
    assert "psk: must be 64 lowercase hex digits" in refused(psk="0" * 63)
    assert "dht: must be one of server, client, off" in refused(dht="on")
    assert Config.from_json({**good, "executor": None}).executor is None


def test_start_mistakes_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    node = Node(tmp_path, "n")
    node.cli("init")
    node.cli("colony", "create", "c")
    config = node.home.config_path.read_text()
    garbage = _error(node.cli("start", "--listen", "garbage", check=False))
    assert garbage == "error: --listen: 'garbage' is not a multiaddr (unknown protocol: garbage)"
    assert node.home.config_path.read_text() == config and node.home.runtime() is None
    for key, value, said in (
        ("lisen", ["/ip4/127.0.0.1/tcp/0"], "unknown key 'lisen' (did you mean 'listen'?)"),
        ("psk", "xyz", "psk: must be 64 lowercase hex digits"),
        ("listen", ["/ip4/127.0.0.1/tcp/notaport"], "'/ip4/127.0.0.1/tcp/notaport' is not"),
    ):
        data = json.loads(config)
        data[key] = value
        node.home.config_path.write_text(json.dumps(data))
        line = _error(node.cli("start", check=False))
        assert str(node.home.config_path) in line and said in line
        assert node.home.runtime() is None
    bootstrap = node.cli("join", "x", "--bootstrap", "nowhere", check=False)
    assert "--bootstrap: 'nowhere' is not a multiaddr" in _error(bootstrap)


def test_the_port_of_a_running_daemon_is_refused(colony: Cluster, tmp_path: Path) -> None:
    port = _owner(colony).addrs[0].split("/")[4]
    other = Node(tmp_path, "other")
    other.cli("init")
    other.cli("colony", "create", "elsewhere")
    taken = other.cli("start", "--listen", f"/ip4/127.0.0.1/tcp/{port}", check=False)
    assert f"tcp/{port}: the port is in use" in _error(taken)
    assert other.home.runtime() is None
    assert other.home.config().listen == ["/ip4/127.0.0.1/tcp/0"]  # --listen not kept


def test_check_ports_sees_a_listener_that_shares_its_port() -> None:
    with socket.socket() as s:  # as py-libp2p listens: SO_REUSEPORT, which binds again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(PortTaken, match="the port is in use"):
            check_ports([f"/ip4/127.0.0.1/tcp/{port}"])
    check_ports(["/ip4/127.0.0.1/tcp/0", "/dns4/example.org/tcp/1"])  # nothing to try


def test_embedded_listen_is_checked_at_once(tmp_path: Path) -> None:
    from colonyp2p import Colony

    with pytest.raises(HomeError, match="listen: 'nowhere' is not a multiaddr"):
        Colony.embedded(tmp_path / "e", colony="c", listen=["nowhere"])


# --- processes ----------------------------------------------------------------------


def test_submit_wait_and_wait_agree_on_failure(colony: Cluster) -> None:
    owner = _owner(colony)
    failed = owner.cli("submit", "--func", "fail", "--wait", check=False)
    assert failed.returncode == 1 and "failed on purpose" in failed.stdout
    pid = failed.stdout.split()[0]
    assert owner.cli("wait", pid, check=False).returncode == 1
    ok = owner.cli("submit", "--func", "add", "--arg", "40", "--arg", "2", "--wait")
    assert "[42.0]" in ok.stdout


def test_waiting_reason_prefixes_and_cancel(colony: Cluster) -> None:
    owner = _owner(colony)
    pid = owner.cli("submit", "--func", "add", "--executortype", "nowhere").stdout.strip()
    short = pid[:16]
    assert short in owner.cli("ps").stdout
    why = "no executor matches"
    wait_for(lambda: why in owner.cli("get", short).stdout, 20, "the waiting reason")
    late = _error(owner.cli("wait", pid[:10], "--timeout", "0.5", check=False))
    assert f"{short} is still waiting after 0.5 s: {why}" in late
    unknown = _error(owner.cli("get", "0" * 63 + "g", check=False))
    assert "no process id starts with" in unknown and "colonynode ps" in unknown
    with SyncColony.connect(owner.home.root) as api:
        nowhere = api.processes(executortype="nowhere")
        assert [p["pid"] for p in nowhere] == [pid]
    assert owner.cli("cancel", short).stdout.startswith(f"cancelled {short}")
    view = owner.process(pid)
    assert view["state"] == "failed" and view["executor"] == ""  # not the canceller
    assert view["errors"][0].startswith("cancelled by ")


def test_a_running_process_is_cancelled_and_its_run_stopped(colony: Cluster) -> None:
    owner = _owner(colony)
    pid = owner.submit({"funcname": "sleep", "args": [60]})["pid"]
    _until(owner, pid, "running")
    said = owner.cli("cancel", pid[:12]).stdout
    assert said.startswith(f"stopped {pid[:16]} (failed)"), said
    view = owner.process(pid)
    assert view["state"] == "failed" and view["errors"][0].startswith("cancelled by ")
    # the executor stopped the run: its lease ended at once, not after the 60 s sleep
    wait_for(
        lambda: any(
            e["kind"] == "lease_lost" and e["pid"] == pid
            for node in colony.nodes
            for e in events(node)
        ),
        30,
        "the executor to hear that its lease is over",
    )
    ended = _error(owner.cli("cancel", pid[:12], check=False))
    assert f"process {pid[:16]} already ended (failed)" in ended
    with SyncColony.connect(owner.home.root) as api:
        handle = api.submit("noop")
        handle.wait(timeout=30)
        assert handle.cancel() == "successful"  # ended: nothing to do, no error
        running = api.submit("sleep", 60)
        wait_for(lambda: running.state == "running", 30, "the sleep to run")
        assert running.cancel() == "failed"
        assert not [p for p in api.processes(state="running") if p["pid"] == running.pid]


def test_resolve_takes_unique_prefixes_and_names_the_candidates(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = ["abc123", "abd456", "ffff00"]
    assert resolve("f", ids, "process", "colonynode ps") == "ffff00"
    assert resolve("abc123", ids, "process", "colonynode ps") == "abc123"
    assert resolve("zz", ids, "member", "colonynode members", whole=True) == "zz"
    with pytest.raises(typer.Exit):
        resolve("ab", ids, "process", "colonynode ps")
    said = capsys.readouterr().err
    assert "'ab' is ambiguous, the start of 2 process ids (abc123..., abd456...)" in said


# --- members ------------------------------------------------------------------------


def test_members_json_list_and_approve_by_prefix(colony: Cluster, tmp_path: Path) -> None:
    owner = _owner(colony)
    listed = json.loads(owner.cli("members", "--json").stdout)
    assert {m["member_id"] for m in listed["members"]} == {n.member_id for n in colony.nodes}
    assert json.loads(owner.cli("members", "list", "--json").stdout) == listed
    table = owner.cli("members", "list").stdout
    assert owner.member_id[:20] in table and "…" not in table
    asking = Node(tmp_path, "asking")
    asking.cli("init")
    env = {**os.environ, "COLONYP2P_HOME": str(asking.home.root)}
    colony_id = owner.status()["colony_id"]
    args = ["join", colony_id, "--bootstrap", owner.addrs[0], "--wait", "60"]
    join = subprocess.Popen(
        [sys.executable, "-m", "colonyp2p.node.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: asking.member_id in owner.members()["pending"], 30, "the request")
        approved = owner.cli("members", "approve", asking.member_id[:20])
        assert f"admitted {asking.member_id}" in approved.stdout
        _, errors = join.communicate(timeout=60)
        assert join.returncode == 0, errors
    finally:
        join.kill()
    revoked = owner.cli("members", "revoke", asking.member_id[:24])
    assert f"revoked {asking.member_id}" in revoked.stdout
    nobody = _error(owner.cli("members", "revoke", "12D3KooWnobody", check=False))
    assert "no member id starts with '12D3KooWnobody'" in nobody


# --- the meta-filesystem --------------------------------------------------------------


def test_fs_prints_results_alone_and_takes_cid_prefixes(colony: Cluster, tmp_path: Path) -> None:
    owner = _owner(colony)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("one")
    put = owner.cli("fs", "put", str(data), "/t/data", "--json").stdout
    assert put.startswith("{")  # no blank line first, no progress bar off a terminal
    snapshot = json.loads(put)["snapshot"]
    line = owner.cli("fs", "put", str(data), "/t/data").stdout
    assert line == f"/t/data v2 -> {snapshot}\n"
    assert snapshot[:20] in owner.cli("fs", "ls").stdout
    moved = owner.cli("fs", "label", "/t/data", snapshot[:20]).stdout
    assert moved.startswith("/t/data v3 -> " + snapshot)
    bad = _error(owner.cli("fs", "label", "/t/data", "bzzzz", check=False))
    assert "no snapshot id starts with 'bzzzz'" in bad
    owner.cli("fs", "pin", "/t/data")
    unpinned = owner.cli("fs", "pin", "/t/data", "--unpin").stdout
    assert unpinned.startswith("unpinned /t/data: dropped ") and "pins" in unpinned
    assert "was not pinned" in owner.cli("fs", "pin", "/t/data", "--unpin").stdout


def test_the_quota_error_names_the_command(tmp_path: Path) -> None:
    from colonyp2p.errors import QuotaExceeded
    from colonyp2p.mfs.blockstore import BlockStore

    with BlockStore(tmp_path / "s", quota=10) as store, pytest.raises(QuotaExceeded) as info:
        store.put(b"x" * 11)
    assert "`colonynode fs gc`" in str(info.value) and "gc()" not in str(info.value)


# --- what a terminal shows ----------------------------------------------------------


def test_status_shows_the_whole_colony_id_at_80_columns(colony: Cluster) -> None:
    owner = _owner(colony)
    env = {**os.environ, "COLONYP2P_HOME": str(owner.home.root), "COLUMNS": "80"}
    shown = subprocess.run(
        [sys.executable, "-m", "colonyp2p.node.cli", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "…" not in shown
    colony_id = owner.status()["colony_id"]
    assert colony_id in "".join(line.strip("│ ") for line in shown.splitlines())


def test_commands_without_a_daemon_import_little(tmp_path: Path) -> None:
    """What `colonynode --help` and `init` import: not the simulator, trio, httpx, libp2p
    or pydantic (bench/bench_cli.py measures the time)."""
    probe = (
        "import sys\n"
        "from colonyp2p.node.cli import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('trio', 'httpx', 'libp2p', 'pydantic', 'colonyp2p.simulations.engine')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    for args in (["--help"], ["submit", "--help"], ["init"]):
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            env={**os.environ, "COLONYP2P_HOME": str(tmp_path / "h")},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.stderr.strip().splitlines()[-1] == "[]", (args, done.stderr)
