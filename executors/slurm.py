"""The Slurm executor: runs a spec as a Slurm batch job from a login node.

A run writes a batch script into the process's working directory, submits it with
``sbatch --parsable``, and polls the job (every half second at first, backing off to a
few seconds) until it ends, streaming the job's stdout and stderr files to the log as
they grow. The working directory must therefore be on a filesystem the compute nodes
share, as it is on any Slurm cluster.

Final states come from ``scontrol show job``, which knows a finished job for
``MinJobAge`` seconds, and from ``sacct`` after that: a small cluster often runs
without the accounting daemon, and then sacct knows nothing at all.

The script is built by :func:`sbatch_script`, a pure function, from the spec's
conditions:

- ``nodes`` -> ``--nodes``; ``processes`` -> ``--ntasks``; ``processespernode`` ->
  ``--ntasks-per-node``; more than one node or task starts the command with ``srun``
  (one copy per task), else the script ``exec``-s it.
- ``cpu`` and ``mem`` are per node, as they are matched against an ad's cores and
  memory: cpu becomes ``--cpus-per-task`` (whole CPUs, shared out between the tasks of a
  node) and mem ``--mem`` in MiB, both rounded up.
- ``gpu`` -> ``--gres=gpu[:name]:count`` per node (a name without a count asks for one).
  Slurm has no request for a GPU's own memory: ``gpu.mem`` is noted in a comment only.
- ``walltime`` -> ``--time``. Without one, ``maxexectime`` plus a minute becomes the time
  limit, so that Slurm ends the job even if this node dies before it can scancel.
- ``env`` is exported by the script, each value quoted for bash, as far as the node's
  config allows (``env_allowed``, see executors/base.py ``confine_env``); the command
  is funcname and args, each quoted with shlex, so no argument is ever read as shell
  syntax.

sbatch itself runs with a small fixed environment (sbatch exports its environment into
the job by default, and the daemon's must not leak there).
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import LogSink, RunRequest, RunResult, confine_env
from colonyp2p.executors.shell import (
    DEFAULT_PATH,
    KILLED_AT_DEADLINE,
    TAIL_LINES,
    LineSplitter,
    effective_deadline,
    emit,
    stringify,
    tail_text,
    trio_deadline,
    write_inputs,
)
from colonyp2p.model.ads import Hardware
from colonyp2p.model.spec import FunctionSpec, Gpu

MIB = 1 << 20
SCRIPT_NAME = "colony-job.sh"
OUTPUT_PATTERN = "colony-%j.out"
ERROR_PATTERN = "colony-%j.err"
BACKSTOP_SECONDS = 60  # added to maxexectime for --time when the spec sets no walltime

PENDING_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
FINAL_STATES = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GRES_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PARTITION = re.compile(r"[A-Za-z0-9_.,-]+")
_JOB_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_SCONTROL_FIELD = re.compile(r"(?:^|\s)(JobState|ExitCode|Reason)=(\S*)")


def slurm_time(seconds: int) -> str:
    """Slurm's days-hours:minutes:seconds; Slurm itself rounds up to whole minutes."""
    days, rest = divmod(max(seconds, 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _tasks_per_node(nodes: int, processes: int, per_node: int) -> int:
    if per_node:
        return per_node
    if processes:
        return math.ceil(processes / max(nodes, 1))
    return 1


def _gres(gpu: Gpu) -> str | None:
    count = gpu.count or (1 if gpu.name else 0)
    if not count:
        return None
    if not gpu.name:
        return f"gpu:{count}"
    if _GRES_NAME.fullmatch(gpu.name) is None:
        raise ValidationError(f"{gpu.name!r} cannot be a Slurm GPU type", "conditions.gpu.name")
    return f"gpu:{gpu.name}:{count}"


def _directive(option: str) -> str:
    if "\n" in option or "\r" in option:
        raise ValidationError(f"{option!r} spans lines", "sbatch option")
    return f"#SBATCH {option}"


def command_line(spec: FunctionSpec) -> str:
    """funcname and args as one bash command line in which every word is literal."""
    words = [spec.funcname, *(stringify(arg) for arg in spec.args)]
    for i, word in enumerate(words):
        if "\0" in word:
            raise ValidationError("a NUL byte cannot be passed to a command", f"args[{i - 1}]")
    return " ".join(shlex.quote(word) for word in words)


def sbatch_script(
    spec: FunctionSpec,
    *,
    partition: str | None = None,
    job_name: str = "colony",
    output: str = OUTPUT_PATTERN,
    error: str = ERROR_PATTERN,
    env: Mapping[str, str] | None = None,
    options: Sequence[str] = (),
) -> str:
    """The batch script for ``spec`` (see the module's docstring for the mapping).

    ``env`` is exported before the spec's own env (which wins); ``options`` are more
    ``#SBATCH`` lines (an account, a QOS) from the node's config. Raises
    ValidationError for what a batch script cannot express: an env name bash cannot
    export, a GPU type Slurm cannot parse, a NUL byte in an argument.
    """
    c = spec.conditions
    lines = ["#!/bin/bash", f"# colonyp2p process, function {spec.funcname}"]
    directives = [
        f"--job-name={_JOB_NAME_BAD.sub('-', job_name)[:64] or 'colony'}",
        f"--output={output}",
        f"--error={error}",
    ]
    if partition:
        if _PARTITION.fullmatch(partition) is None:
            raise ValidationError(f"{partition!r} is not a partition name", "partition")
        directives.append(f"--partition={partition}")
    if c.nodes:
        directives.append(f"--nodes={c.nodes}")
    if c.processes:
        directives.append(f"--ntasks={c.processes}")
    if c.processespernode:
        directives.append(f"--ntasks-per-node={c.processespernode}")
    if c.cpu:
        cores = math.ceil(c.cpu / 1000)
        per_task = math.ceil(cores / _tasks_per_node(c.nodes, c.processes, c.processespernode))
        directives.append(f"--cpus-per-task={max(per_task, 1)}")
    if c.mem:
        directives.append(f"--mem={math.ceil(c.mem / MIB)}M")
    gres = _gres(c.gpu)
    if gres:
        directives.append(f"--gres={gres}")
    limit = c.walltime
    if not limit and spec.maxexectime > 0:
        limit = math.ceil(spec.maxexectime) + BACKSTOP_SECONDS
    if limit:
        directives.append(f"--time={slurm_time(limit)}")
    lines += [_directive(d) for d in (*directives, *options)]
    if c.gpu.mem:
        lines.append(f"# gpu.mem {c.gpu.mem} bytes: Slurm cannot ask for it, not requested")
    if c.gpu.nodecount:
        lines.append(f"# gpu.nodecount {c.gpu.nodecount}: the gres above is per node")
    merged = {**(env or {}), **spec.env}
    for name, value in merged.items():
        if _ENV_NAME.fullmatch(name) is None:
            raise ValidationError(f"{name!r} cannot be exported by a batch script", "env")
        if "\0" in value:
            raise ValidationError("a NUL byte cannot be in the environment", f"env.{name}")
        lines.append(f"export {name}={shlex.quote(value)}")
    launcher = "srun" if c.nodes > 1 or c.processes > 1 or c.processespernode > 1 else "exec"
    lines.append(f"{launcher} {command_line(spec)}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, as scontrol or sacct tell it."""

    state: str  # the base state, e.g. CANCELLED for sacct's "CANCELLED by 0"
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


def _exit(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.partition(":")
    try:
        return int(code), int(sig) if sig else 0
    except ValueError:
        return None, None


def parse_scontrol(text: str) -> JobStatus | None:
    """The status in ``scontrol show job -o`` output; None when it has none."""
    fields = dict(_SCONTROL_FIELD.findall(text))
    state = fields.get("JobState")
    if not state:
        return None
    code, sig = _exit(fields.get("ExitCode", ""))
    reason = fields.get("Reason", "")
    return JobStatus(state.upper(), code, sig, "" if reason == "None" else reason)


def parse_sacct(text: str) -> JobStatus | None:
    """The status in ``sacct -n -P -X -o State,ExitCode`` output; None when it has none."""
    for line in text.splitlines():
        state, sep, exit_code = line.strip().partition("|")
        if sep and state:
            code, sig = _exit(exit_code)
            return JobStatus(state.split()[0].upper(), code, sig)
    return None


def parse_gres(text: str) -> Gpu:
    """The GPUs in a node's Gres (``gpu:a100:4(S:0-1),nic:1``); none for ``(null)``."""
    for item in text.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] != "gpu" or len(parts) < 2:
            continue
        count = parts[-1]
        name = parts[1] if len(parts) > 2 else ""
        if count.isdigit():
            return Gpu(name=name, count=int(count))
    return Gpu()


def parse_sinfo(text: str) -> Hardware | None:
    """A partition's hardware from ``sinfo -h -N -o %N|%c|%m|%G``: the largest node's
    cores, memory and GPUs (what one node can give a job), and how many nodes."""
    nodes: set[str] = set()
    cores = memory = 0
    gpu = Gpu()
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0]:
            continue
        nodes.add(fields[0])
        cpus = re.sub(r"\D", "", fields[1])
        mem = re.sub(r"\D", "", fields[2])
        cores = max(cores, int(cpus) if cpus else 0)
        memory = max(memory, int(mem) * MIB if mem else 0)
        node_gpu = parse_gres(fields[3])
        if node_gpu.count > gpu.count:
            gpu = node_gpu
    if not nodes:
        return None
    return Hardware(cores=cores, memory=memory, gpu=gpu, nodes=len(nodes))


class FileTail:
    """Follows a file that a job appends to, from wherever the last read stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._splitter = LineSplitter()

    def _read(self) -> bytes:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read(1 << 20)
        except FileNotFoundError:
            return b""
        self._offset += len(data)
        return data

    async def poll(self) -> list[str]:
        lines: list[str] = []
        while True:
            data = await trio.to_thread.run_sync(self._read)
            if not data:
                return lines
            lines += self._splitter.feed(data)

    async def finish(self) -> list[str]:
        return [*await self.poll(), *self._splitter.flush()]


@dataclass
class _Job:
    """One submitted job and what has been read of it so far."""

    job_id: str
    stdout: FileTail
    stderr: FileTail
    out_tail: deque[str]
    err_tail: deque[str]
    state: str = "PENDING"

    async def pump(self, log: LogSink, final: bool = False) -> None:
        if final:
            out, err = await self.stdout.finish(), await self.stderr.finish()
        else:
            out, err = await self.stdout.poll(), await self.stderr.poll()
        emit(out, "", self.out_tail, log)
        emit(err, "stderr: ", self.err_tail, log)


def _user_env() -> dict[str, str]:
    try:
        user = pwd.getpwuid(os.getuid())
    except KeyError:
        return {}
    return {"HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}


class SlurmError(Exception):
    """A Slurm command failed in a way the run cannot go on from."""


class SlurmExecutor:
    """Submits specs to Slurm as batch jobs and follows them to their end."""

    uses_workdir = True

    def __init__(
        self,
        partition: str | None = None,
        executortype: str = "slurm",
        allowed: tuple[str, ...] | None = None,
        *,
        options: Sequence[str] = (),
        poll: float = 0.5,
        max_poll: float = 3.0,
        tail_lines: int = TAIL_LINES,
        cancel_wait: float = 30.0,
        path: str = DEFAULT_PATH,
        client_env: Mapping[str, str] | None = None,
        env_allowed: tuple[str, ...] = (),
        hardware: Hardware | None = None,
    ) -> None:
        self.partition = partition
        # what a spec's env may export (config executor.env; see base.confine_env)
        self.env_allowed = env_allowed
        self._executortype = executortype
        self.allowed = allowed
        self.options = tuple(options)
        self.poll = poll
        self.max_poll = max_poll
        self.tail_lines = tail_lines
        self.cancel_wait = cancel_wait  # how long to wait for a scancelled job to end
        self.path = path
        # What the Slurm commands run with, and so (sbatch exports it) what the job starts
        # with: the user's identity and home, a PATH, and SLURM_CONF where a non-standard
        # one points the commands at the cluster; nothing else of the daemon's.
        self.client_env = {"PATH": path, "LANG": "C.UTF-8", **_user_env()}
        if "SLURM_CONF" in os.environ:
            self.client_env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        self.client_env.update(client_env or {})
        self._hardware = hardware
        self._hardware_checked = -math.inf

    @property
    def executortype(self) -> str:
        return self._executortype

    def functions(self) -> tuple[str, ...]:
        return tuple(sorted(self.allowed)) if self.allowed else ()

    def hardware(self) -> Hardware:
        """The partition's largest node, from sinfo (asked at most once a minute, and
        only until it answers), or what the constructor was given."""
        if self._hardware is not None:
            return self._hardware
        now = time.monotonic()
        if now - self._hardware_checked < 60:
            return Hardware(nodes=0)
        self._hardware_checked = now
        argv = ["sinfo", "-h", "-N", "-o", "%N|%c|%m|%G"]
        if self.partition:
            argv += ["-p", self.partition]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=5,
                env=self.client_env,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            return Hardware(nodes=0)
        found = parse_sinfo(done.stdout) if done.returncode == 0 else None
        if found is None:
            return Hardware(nodes=0)
        self._hardware = found
        return found

    # --- running a job ---------------------------------------------------------------

    async def _slurm(
        self, *argv: str, cwd: Path | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            with trio.fail_after(timeout):
                return await trio.run_process(
                    list(argv),
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    cwd=cwd,
                    env=self.client_env,
                    stdin=b"",
                )
        except OSError as exc:
            raise SlurmError(f"cannot run {argv[0]}: {exc}") from exc
        except trio.TooSlowError as exc:
            raise SlurmError(f"{argv[0]} did not answer within {timeout:.0f} s") from exc

    async def status(self, job_id: str) -> JobStatus | None:
        """The job's status; None when neither scontrol nor sacct knows the job."""
        done = await self._slurm("scontrol", "show", "job", "-o", job_id)
        if done.returncode == 0:
            found = parse_scontrol(done.stdout.decode(errors="replace"))
            if found is not None:
                return found
        elif b"Invalid job id" not in done.stderr:
            # slurmctld is restarting or unreachable: not an answer about the job.
            raise SlurmError(f"scontrol: {done.stderr.decode(errors='replace').strip()}")
        acct = await self._slurm("sacct", "-n", "-P", "-X", "-o", "State,ExitCode", "-j", job_id)
        if acct.returncode == 0:
            return parse_sacct(acct.stdout.decode(errors="replace"))
        return None

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        if self.allowed is not None and spec.funcname not in self.allowed:
            return RunResult(
                False, errors=(f"command {spec.funcname!r} is not on this executor's allow-list",)
            )
        if spec.env:
            spec = replace(spec, env=confine_env(spec.env, self.env_allowed, log))
        env = {"COLONY_PROCESS_ID": request.pid}
        try:
            inputs = write_inputs(request.workdir, request.inputs)
            if inputs is not None:
                env["COLONY_INPUTS"] = str(inputs)
            script = sbatch_script(
                spec,
                partition=self.partition,
                job_name=f"colony-{request.pid[:16]}",
                env=env,
                options=self.options,
            )
            (request.workdir / SCRIPT_NAME).write_text(script)
        except (ValidationError, OSError) as exc:
            return RunResult(False, errors=(f"cannot make a batch script: {exc}",))
        started = time.time()
        deadline = effective_deadline(request, started)
        # Shielded: a cancel that lands while sbatch runs must not lose the job id, or
        # the job would run on with nobody to scancel it.
        with trio.CancelScope(shield=True):
            try:
                submitted = await self._slurm(
                    "sbatch", "--parsable", SCRIPT_NAME, cwd=request.workdir, timeout=60
                )
            except SlurmError as exc:
                return RunResult(False, errors=(str(exc),))
        if submitted.returncode != 0:
            why = submitted.stderr.decode(errors="replace").strip()
            return RunResult(False, errors=(f"sbatch refused the job: {why}",))
        job_id = submitted.stdout.decode(errors="replace").strip().split(";")[0]
        if not job_id:
            return RunResult(False, errors=("sbatch accepted the job but named no job id",))
        job = _Job(
            job_id,
            FileTail(request.workdir / OUTPUT_PATTERN.replace("%j", job_id)),
            FileTail(request.workdir / ERROR_PATTERN.replace("%j", job_id)),
            deque(maxlen=self.tail_lines),
            deque(maxlen=self.tail_lines),
        )
        log(f"slurm: submitted job {job_id}")
        try:
            with trio.move_on_at(trio_deadline(deadline)) as timer:
                final = await self._follow(job, log)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._cancel(job, log)
            raise
        if timer.cancelled_caught:
            was = job.state
            with trio.CancelScope(shield=True):
                await self._cancel(job, log)
            elapsed = time.time() - started
            return RunResult(
                False,
                errors=(
                    f"{KILLED_AT_DEADLINE}: slurm job {job_id} was still {was} when its "
                    f"deadline passed after {elapsed:.1f} s, and was cancelled (scancel)",
                    tail_text(job.err_tail),
                ),
            )
        return self._result(job, final)

    async def _follow(self, job: _Job, log: LogSink) -> JobStatus:
        interval = self.poll
        unknown = 0
        while True:
            try:
                status = await self.status(job.job_id)
            except SlurmError as exc:
                log(f"slurm: {exc} (will ask again)")
                status = None
                unknown = 0
            else:
                unknown = unknown + 1 if status is None else 0
            await job.pump(log)
            if status is not None:
                if status.state != job.state:
                    job.state = status.state
                    log(f"slurm: job {job.job_id} {status.state}")
                if status.final:
                    await job.pump(log, final=True)
                    return status
            elif unknown >= 5:
                await job.pump(log, final=True)
                return JobStatus("UNKNOWN", reason="neither scontrol nor sacct knows the job")
            await trio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll)

    async def _cancel(self, job: _Job, log: LogSink) -> None:
        """scancel the job and wait (bounded) until it has ended, processes and all."""
        try:
            done = await self._slurm("scancel", job.job_id)
            if done.returncode != 0:
                log(f"slurm: scancel {job.job_id}: {done.stderr.decode(errors='replace').strip()}")
            log(f"slurm: cancelled job {job.job_id}")
            with trio.move_on_after(self.cancel_wait):
                while True:
                    status = await self.status(job.job_id)
                    if status is None or status.final:
                        break
                    await trio.sleep(0.2)
            await job.pump(log, final=True)
        except SlurmError as exc:
            log(f"slurm: could not make sure job {job.job_id} ended: {exc}")

    def _result(self, job: _Job, status: JobStatus) -> RunResult:
        if status.state == "COMPLETED" and status.exit_code in (0, None):
            return RunResult(True, output=(status.exit_code or 0, tail_text(job.out_tail)))
        detail = []
        if status.exit_code is not None:
            detail.append(f"exit code {status.exit_code}")
        if status.signal:
            detail.append(f"signal {status.signal}")
        if status.reason:
            detail.append(status.reason)
        more = f" ({', '.join(detail)})" if detail else ""
        return RunResult(
            False,
            errors=(f"slurm job {job.job_id} {status.state}{more}", tail_text(job.err_tail)),
        )
