"""What may end a daemon: only its core or its store, and then with one clear line and a
non-zero exit. Everything else a peer or a subsystem does costs at most a stream, one
process or a restart of that subsystem (the fuzzing of every protocol is in
test_fuzz_protocols.py; gossip's restart in test_transport.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import CLI_TIMEOUT, cluster, wait_for

from colonyp2p.errors import ApiError
from colonyp2p.node import colony


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_submits_and_ends_the_daemon_with_one_line(
    small_disk: Path, tmp_path: Path
) -> None:
    """The owner's home is on a small disk that fills up. A submit through its own API
    is refused with a clear error (nothing written, nothing acknowledged); a spec that
    a member stores at it makes its core's commit fail, and the owner exits non-zero
    with one line naming the store. Once there is room again and it is started, the
    member's spec runs: nothing acknowledged was lost."""
    with cluster(small_disk) as c, cluster(tmp_path) as elsewhere:
        owner = c.node("owner")
        owner.home.init()  # as `colonynode init` and `colony create` make them
        colony.create(owner.home, "full", now=time.time())
        owner.configure("local")
        env = {**os.environ, "COLONYP2P_HOME": str(owner.home.root), "COLUMNS": "200"}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "colonyp2p.node.cli", "start", "--foreground"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(owner.home.runtime, 30, "the owner to start")
            member = elsewhere.join("n1", owner)
            wait_for(lambda: owner.status()["peers"] >= 1, 30, "the member to connect")
            _fill(small_disk)
            with owner.api() as api, pytest.raises(ApiError) as refused:
                api.submit({"funcname": "add", "args": [2, 2]})
            assert refused.value.status == 507, refused.value
            assert "disk is full" in str(refused.value)
            pid = member.submit({"funcname": "add", "args": [40, 2]})["pid"]
            _, stderr = daemon.communicate(timeout=CLI_TIMEOUT)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
        assert daemon.returncode == 1
        lines = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, stderr[-3000:]
        assert "the store failed" in lines[0], lines[0]
        assert "disk is full" in lines[0], lines[0]
        assert "Nothing it acknowledged is lost" in lines[0], lines[0]
        (small_disk / "filler").unlink()
        owner.start()
        done = wait_for(lambda: member.finished(pid), 60, "the member's spec to end")
        assert done["state"] == "successful", done
        assert done["output"] == [42.0], done


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
