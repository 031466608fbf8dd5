"""Executors behind real daemons: a shell command whose executor dies is run again
elsewhere and the submitter sees both attempts' logs; a Slurm job through the colony."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import pytest
from cluster import Node, cluster, events, wait_for

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _logs(node: Node, pid: str) -> list[str]:
    return list(node.process(pid).get("logs", []))


def test_a_dead_executor_s_command_runs_again_and_both_attempts_are_logged(
    tmp_path: Path,
) -> None:
    with cluster(tmp_path) as c:
        owner = c.found()
        w1, w2 = c.join_all(owner, ["w1", "w2"], executortype="worker", kind="shell")
        # The first attempt cannot finish before it is killed, however slow the
        # machine; the second finds the marker and finishes at once.
        marker = tmp_path / "first-attempt-started"
        script = (
            f"echo attempt on $COLONY_PROCESS_ID; "
            f"if [ -e {marker} ]; then echo done; else echo $$ > {marker}; exec sleep 120; fi"
        )
        pid = owner.submit(
            {
                "funcname": "sh",
                "args": ["-c", script],
                "conditions": {"executortype": "worker"},
                "maxretries": 3,
            }
        )["pid"]

        def first_line_seen() -> bool:
            return any(line.startswith("attempt on") for line in _logs(owner, pid))

        wait_for(first_line_seen, 30, "the first attempt's log at the submitter")
        running = [w for w in (w1, w2) if any(e["kind"] == "running" for e in events(w))]
        assert len(running) == 1
        running[0].kill9()
        process = wait_for(partial(owner.finished, pid), 40, "the second attempt")
        assert process["state"] == "successful"
        other = w2 if running[0] is w1 else w1
        assert process["executor"] == other.member_id
        logs = _logs(owner, pid)
        assert sum(line.startswith("attempt on") for line in logs) == 2, logs
        assert logs.count("done") == 1, logs
        # A SIGKILLed daemon cannot stop its command: the orphan is ours to end.
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(marker.read_text()), signal.SIGKILL)


@pytest.mark.xdist_group("slurm")  # one worker uses the one Slurm node at a time
def test_a_slurm_job_through_the_colony(tmp_path: Path) -> None:
    up = subprocess.run(
        [str(ROOT / "scripts" / "slurm-up")], capture_output=True, text=True, timeout=420
    )
    if up.returncode != 0:
        pytest.skip(f"Slurm cannot start here: {(up.stdout + up.stderr).strip()[-400:]}")
    with cluster(tmp_path) as c:
        owner = c.found()
        c.join("hpc", owner, executortype="hpc", kind="slurm")
        ok = owner.submit(
            {"funcname": "echo", "args": ["from", "slurm"], "conditions": {"executortype": "hpc"}}
        )["pid"]
        bad = owner.submit(
            {
                "funcname": "sh",
                "args": ["-c", "echo broken >&2; exit 3"],
                "conditions": {"executortype": "hpc"},
            }
        )["pid"]
        done = wait_for(partial(owner.finished, ok), 60, "the Slurm job")
        assert done["state"] == "successful"
        assert "from slurm" in str(done["output"])
        failed = wait_for(partial(owner.finished, bad), 60, "the failing Slurm job")
        assert failed["state"] == "failed"
        assert "exit code 3" in " ".join(failed["errors"])
        assert "broken" in " ".join(failed["errors"])
