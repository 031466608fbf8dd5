"""The Slurm executor: the batch script it writes (no Slurm needed), then real jobs on a
one-node Slurm cluster that scripts/slurm-up starts on this machine.

The script tests run the generated script with bash (its #SBATCH lines are comments to
bash), so quoting is checked by what a real shell makes of it, not by string compare.
The real-Slurm tests skip, showing the daemons' last log lines, only where Slurm cannot
start at all (no root, no packages); each is bounded by trio.fail_after.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import trio

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.shell import KILLED_AT_DEADLINE
from colonyp2p.executors.slurm import (
    SCRIPT_NAME,
    JobStatus,
    SlurmError,
    SlurmExecutor,
    parse_gres,
    parse_sacct,
    parse_scontrol,
    parse_sinfo,
    sbatch_script,
    slurm_time,
)
from colonyp2p.model.ads import Hardware
from colonyp2p.model.spec import Conditions, FunctionSpec, Gpu

# one worker uses the one Slurm node at a time (pytest-xdist, --dist loadgroup)
pytestmark = pytest.mark.xdist_group("slurm")

ROOT = Path(__file__).resolve().parent.parent
SLURM_UP_SECONDS = 420  # a first run installs the packages (apt-get update and install)
HOSTILE = [
    "; rm -rf x",
    "$(touch pwned)",
    "`touch pwned2`",
    "a && rm x",
    "*",
    "it's",
    '"double" \\ back',
    "line\nbreak",
    "$HOME",
    "",
]


def directives(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line[:7] == "#SBATCH"]


def run_script(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = cwd / "job.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", str(path)], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
    )


# --- the batch script, without Slurm ---------------------------------------------------


def test_plain_spec_makes_a_plain_script() -> None:
    script = sbatch_script(FunctionSpec("echo", args=("hi",)), job_name="colony-abc")
    assert script.startswith("#!/bin/bash\n")
    assert directives(script) == [
        "--job-name=colony-abc",
        "--output=colony-%j.out",
        "--error=colony-%j.err",
    ]
    assert script.endswith("\nexec echo hi\n")


def test_every_condition_maps_to_an_sbatch_option() -> None:
    conditions = Conditions(
        nodes=2,
        processes=8,
        processespernode=4,
        cpu=3500,  # 4 whole cores per node, shared by its 4 tasks
        mem=(3 << 29) + 1,  # 1.5 GiB and a byte: rounded up to whole MiB
        gpu=Gpu(name="a100", count=2, mem=40 << 30, nodecount=2),
        walltime=3725,
    )
    spec = FunctionSpec("solver", args=("--steps", 10), conditions=conditions, maxexectime=60)
    script = sbatch_script(
        spec, partition="gpu", job_name="j", options=("--account=physics", "--qos=low")
    )
    assert directives(script) == [
        "--job-name=j",
        "--output=colony-%j.out",
        "--error=colony-%j.err",
        "--partition=gpu",
        "--nodes=2",
        "--ntasks=8",
        "--ntasks-per-node=4",
        "--cpus-per-task=1",
        "--mem=1537M",
        "--gres=gpu:a100:2",
        "--time=0-01:02:05",  # walltime wins over maxexectime
        "--account=physics",
        "--qos=low",
    ]
    assert "# gpu.mem 42949672960 bytes: Slurm cannot ask for it" in script
    assert script.endswith("\nsrun solver --steps 10\n")  # several tasks: srun starts them


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (Conditions(cpu=4000), ["--cpus-per-task=4"]),
        (Conditions(cpu=500), ["--cpus-per-task=1"]),
        (Conditions(cpu=4000, processes=2), ["--ntasks=2", "--cpus-per-task=2"]),
        (
            Conditions(cpu=6000, nodes=2, processes=4),
            ["--nodes=2", "--ntasks=4", "--cpus-per-task=3"],
        ),
        (Conditions(cpu=2000, processespernode=3), ["--ntasks-per-node=3", "--cpus-per-task=1"]),
        (Conditions(mem=1 << 30), ["--mem=1024M"]),
        (Conditions(mem=1), ["--mem=1M"]),
        (Conditions(gpu=Gpu(count=3)), ["--gres=gpu:3"]),
        (Conditions(gpu=Gpu(name="v100")), ["--gres=gpu:v100:1"]),
        (Conditions(walltime=59), ["--time=0-00:00:59"]),
        (Conditions(walltime=2 * 86400 + 1), ["--time=2-00:00:01"]),
        (Conditions(nodes=1), ["--nodes=1"]),
    ],
)
def test_condition_mappings(conditions: Conditions, expected: list[str]) -> None:
    script = sbatch_script(FunctionSpec("f", conditions=conditions), job_name="j")
    assert directives(script)[3:] == expected


def test_launcher_is_srun_only_for_several_tasks_or_nodes() -> None:
    def last(nodes: int = 0, processes: int = 0, processespernode: int = 0) -> str:
        conditions = Conditions(nodes=nodes, processes=processes, processespernode=processespernode)
        return sbatch_script(FunctionSpec("f", conditions=conditions)).splitlines()[-1]

    assert last() == "exec f"
    assert last(nodes=1, processes=1) == "exec f"
    assert last(nodes=2) == "srun f"
    assert last(processes=2) == "srun f"
    assert last(processespernode=2) == "srun f"


def test_maxexectime_becomes_a_backstop_time_limit() -> None:
    script = sbatch_script(FunctionSpec("f", maxexectime=90.5))
    assert "--time=0-00:02:31" in directives(script)  # 91 s and a minute
    assert not any(d.startswith("--time") for d in directives(sbatch_script(FunctionSpec("f"))))


def test_slurm_time() -> None:
    assert slurm_time(0) == "0-00:00:00"
    assert slurm_time(61) == "0-00:01:01"
    assert slurm_time(90061) == "1-01:01:01"


def test_hostile_args_reach_the_command_literally(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("still here")
    script = sbatch_script(FunctionSpec("printf", args=("%s|", *HOSTILE)))
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "".join(arg + "|" for arg in HOSTILE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.sh", "x"]


def test_env_is_exported_literally_and_the_spec_wins(tmp_path: Path) -> None:
    hostile_value = "$(touch pwned); `touch pwned2` 'q' \"d\"\nnext"
    spec = FunctionSpec(
        "sh", args=("-c", 'printf "%s|%s" "$V" "$W"'), env={"V": hostile_value, "W": "spec"}
    )
    script = sbatch_script(spec, env={"W": "base", "COLONY_PROCESS_ID": "p"})
    done = run_script(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == hostile_value + "|spec"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.sh"]


def test_what_a_script_cannot_say_is_refused() -> None:
    with pytest.raises(ValidationError, match="cannot be exported"):
        sbatch_script(FunctionSpec("f", env={"BAD-NAME": "x"}))
    with pytest.raises(ValidationError, match="NUL"):
        sbatch_script(FunctionSpec("f", args=("a\0b",)))
    with pytest.raises(ValidationError, match="GPU type"):
        sbatch_script(FunctionSpec("f", conditions=Conditions(gpu=Gpu(name="a100:2,mps", count=1))))
    with pytest.raises(ValidationError, match="partition"):
        sbatch_script(FunctionSpec("f"), partition="debug\n#SBATCH --uid=0")
    with pytest.raises(ValidationError, match="spans lines"):
        sbatch_script(FunctionSpec("f"), options=("--qos=x\nrm -rf /",))


def test_job_name_is_sanitised() -> None:
    script = sbatch_script(FunctionSpec("f"), job_name="a b/c;d")
    assert directives(script)[0] == "--job-name=a-b-c-d"


def test_parse_scontrol() -> None:
    text = (
        "JobId=12 JobName=colony-x UserId=root(0) Priority=1 JobState=FAILED "
        "Reason=NonZeroExitCode Dependency=(null) ExitCode=3:0 RunTime=00:00:01 "
        "WorkDir=/tmp/a b StdErr=/tmp/a b/colony-12.err"
    )
    assert parse_scontrol(text) == JobStatus("FAILED", 3, 0, "NonZeroExitCode")
    done = parse_scontrol("JobId=1 JobState=COMPLETED Reason=None ExitCode=0:0")
    assert done == JobStatus("COMPLETED", 0, 0, "")
    assert done.final
    assert not JobStatus("COMPLETING").final
    assert parse_scontrol("slurm_load_jobs error: Invalid job id specified") is None


def test_parse_sacct() -> None:
    assert parse_sacct("CANCELLED by 0|0:15\n") == JobStatus("CANCELLED", 0, 15)
    assert parse_sacct("OUT_OF_MEMORY|0:125\n") == JobStatus("OUT_OF_MEMORY", 0, 125)
    assert parse_sacct("") is None


def test_parse_sinfo_and_gres() -> None:
    assert parse_gres("(null)") == Gpu()
    assert parse_gres("gpu:a100:4(S:0-1),nic:1") == Gpu(name="a100", count=4)
    assert parse_gres("gpu:2") == Gpu(count=2)
    text = "n1|32|128000|gpu:a100:4(S:0)\nn2|64|256000|(null)\nn1|32|128000|gpu:a100:4(S:0)\n"
    assert parse_sinfo(text) == Hardware(
        cores=64, memory=256000 << 20, gpu=Gpu(name="a100", count=4), nodes=2
    )
    assert parse_sinfo("") is None


async def test_allow_list_refuses_before_submitting(tmp_path: Path) -> None:
    executor = SlurmExecutor(allowed=("solver",))
    assert executor.functions() == ("solver",)
    result = await executor.run(RunRequest("p", FunctionSpec("rm"), (), tmp_path), print)
    assert not result.ok
    assert "allow-list" in result.errors[0]
    assert list(tmp_path.iterdir()) == []


async def test_a_spec_that_cannot_be_a_script_is_a_failed_result(tmp_path: Path) -> None:
    spec = FunctionSpec("f", env={"NOT-A-NAME": "x"})
    executor = SlurmExecutor(env_allowed=("NOT-A-NAME",))  # allowed, yet bash cannot say it
    result = await executor.run(RunRequest("p", spec, (), tmp_path), print)
    assert not result.ok
    assert "cannot make a batch script" in result.errors[0]


async def test_a_spec_env_is_exported_only_as_far_as_the_config_allows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shell executor's attack (LD_PRELOAD from a spec) would work on a Slurm job's
    script as well: only allowed names are exported, never the loader's by a pattern."""
    env = {"LD_PRELOAD": "/x.so", "OMP_NUM_THREADS": "4", "FOO": "1"}
    executor = SlurmExecutor(env_allowed=("OMP_*", "LD_*"))

    async def no_slurm(*argv: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        raise SlurmError("no Slurm in this test")  # the script is written before sbatch

    monkeypatch.setattr(executor, "_slurm", no_slurm)
    log = Log()
    await executor.run(RunRequest("p", FunctionSpec("true", env=env), (), tmp_path), log)
    script = (tmp_path / SCRIPT_NAME).read_text()
    assert "export OMP_NUM_THREADS=4" in script
    assert "LD_PRELOAD" not in script and "FOO" not in script
    assert log.lines[0].startswith("[env] not set, not allowed by this executor: FOO, LD_PRELOAD")


# --- real Slurm -----------------------------------------------------------------------


class SlurmUnavailable(UserWarning):
    """Shown in pytest's warnings summary, which a plain run prints (skip reasons need -rs)."""


def skip(reason: str) -> NoReturn:
    warnings.warn(SlurmUnavailable(reason), stacklevel=2)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def slurm() -> Iterator[None]:
    """A running one-node Slurm, or a skip that says why it cannot start here."""
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "slurm-up")],
            capture_output=True,
            text=True,
            timeout=SLURM_UP_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        skip(f"Slurm did not start within {SLURM_UP_SECONDS} s:\n{err[-3000:]}")
    except OSError as exc:
        skip(f"cannot run scripts/slurm-up: {exc}")
    if done.returncode != 0:
        skip(f"Slurm cannot start here (scripts/slurm-up):\n{done.stderr[-3000:]}")
    yield


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def request(tmp_path: Path, funcname: str, *args: Any, **spec: Any) -> RunRequest:
    return RunRequest(
        "slurmtest-" + tmp_path.name, FunctionSpec(funcname, args=args, **spec), (), tmp_path
    )


def submitted_job(log: Log) -> str:
    for line in log.lines:
        if line.startswith("slurm: submitted job "):
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"no job was submitted: {log.lines}")


def active_jobs() -> set[str]:
    done = subprocess.run(
        ["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=10, check=True
    )
    return set(done.stdout.split())


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


async def test_a_job_that_succeeds_returns_its_output(slurm: None, tmp_path: Path) -> None:
    log = Log()
    script = 'echo "hello from $SLURM_JOB_ID"; echo "$GREETING $COLONY_PROCESS_ID"; echo warn >&2'
    req = request(tmp_path, "sh", "-c", script, env={"GREETING": "hi there"})
    with trio.fail_after(30):
        result = await SlurmExecutor(poll=0.2, env_allowed=("GREETING",)).run(req, log)
    job = submitted_job(log)
    assert result == RunResult(
        True, output=(0, f"hello from {job}\nhi there slurmtest-{tmp_path.name}")
    )
    assert "stderr: warn" in log.lines
    assert f"slurm: job {job} COMPLETED" in log.lines


async def test_several_tasks_run_under_srun(slurm: None, tmp_path: Path) -> None:
    conditions = Conditions(processes=2)
    req = request(tmp_path, "sh", "-c", 'echo "task $SLURM_PROCID"', conditions=conditions)
    with trio.fail_after(30):
        result = await SlurmExecutor(poll=0.2).run(req, Log())
    assert result.ok, result.errors
    assert sorted(result.output[1].splitlines()) == ["task 0", "task 1"]


async def test_a_job_that_fails_returns_state_exit_code_and_stderr(
    slurm: None, tmp_path: Path
) -> None:
    log = Log()
    req = request(tmp_path, "sh", "-c", "echo out; echo 'it broke' >&2; exit 3")
    with trio.fail_after(30):
        result = await SlurmExecutor(poll=0.2).run(req, log)
    job = submitted_job(log)
    assert not result.ok
    assert result.errors[0].startswith(f"slurm job {job} FAILED (exit code 3")
    assert result.errors[1] == "it broke"
    assert "out" in log.lines


async def test_a_job_past_its_deadline_is_scancelled(slurm: None, tmp_path: Path) -> None:
    log = Log()
    req = request(
        tmp_path, "sh", "-c", "echo $$ > job.pid; echo started; exec sleep 60", maxexectime=4
    )
    with trio.fail_after(30):  # against a hang only; the job would sleep for 60 s
        result = await SlurmExecutor(poll=0.2).run(req, log)
    job = submitted_job(log)
    assert not result.ok
    assert result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert "deadline" in result.errors[0]
    assert "scancel" in result.errors[0]
    assert "started" in log.lines  # it was killed running, not merely taken off the queue
    assert job not in active_jobs()
    assert not alive(int((tmp_path / "job.pid").read_text()))


async def test_cancelling_the_run_scancels_the_job(slurm: None, tmp_path: Path) -> None:
    log = Log()
    req = request(tmp_path, "sh", "-c", "echo $$ > job.pid; exec sleep 60")
    pidfile = tmp_path / "job.pid"
    results: list[RunResult] = []
    with trio.fail_after(30):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def go() -> None:
                    results.append(await SlurmExecutor(poll=0.2).run(req, log))

                nursery.start_soon(go)
                while not (pidfile.exists() and pidfile.read_text().strip()):
                    await trio.sleep(0.05)
                pid = int(pidfile.read_text())
                assert alive(pid)
                scope.cancel()
    assert scope.cancelled_caught
    assert results == []
    job = submitted_job(log)
    assert job not in active_jobs()
    assert not alive(pid)
    assert f"slurm: cancelled job {job}" in log.lines


def test_hardware_comes_from_sinfo(slurm: None) -> None:
    hw = SlurmExecutor().hardware()
    assert hw.nodes == 1
    assert hw.cores == len(os.sched_getaffinity(0))
    # the node's RealMemory (MiB), as sinfo reports it, in bytes
    sinfo = subprocess.run(["sinfo", "-h", "-N", "-o", "%m"], capture_output=True, text=True)
    assert hw.memory == int(sinfo.stdout.split()[0]) << 20, sinfo
