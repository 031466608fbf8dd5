"""The Kubernetes executor: runs a spec as a Kubernetes Job (batch/v1), one pod.

No Kubernetes cluster runs in this project's CI. The manifest mapping is tested as a
pure function (and round-tripped through the official client's V1Job model), and the
transport (create, watch, logs, delete) is tested against an in-process stand-in of
the API server's endpoints that this executor calls, not against a real API server.

A run builds the Job with :func:`job_manifest`, creates it, and then does two things
at once until the Job has a ``Complete`` or ``Failed`` condition:

- polls the Job's status (every half second at first, backing off to a few seconds);
- follows the pod's log (``follow=true&timestamps=true``) as soon as its container has
  started, sending each line to the log; a stream that breaks off is opened again and
  the lines already seen (by their timestamps) are skipped.

A Job that completes is a success whose output is ``(0, last lines of the log)``, like
the shell and Slurm executors; one that fails is a failure naming the Job's reason
(BackoffLimitExceeded, DeadlineExceeded, ...) and the container's termination reason
and exit code. At the run's deadline (the daemon's, or maxexectime) and on a cancel,
the Job is deleted (``propagationPolicy=Background``) and the executor waits, bounded,
until its pods are gone; so it is when the Job's status cannot be read for two minutes
(no Job runs on with nobody watching it). A finished Job is left for
``ttlSecondsAfterFinished``, for ``kubectl`` to look at.

The official ``kubernetes`` client is synchronous: every call runs in a worker thread
(``trio.to_thread``). Calls that only read may be abandoned on a cancel; the create is
shielded, so that a cancel never loses a Job that exists; the log stream is shut down
from this side when its reader is cancelled.

The manifest (see :func:`job_manifest`):

- image: ``kwargs["image"]`` (required); command: ``[funcname, *args]``, or
  ``[*kwargs["command"], *args]`` when the spec gives one. Every argument is one literal
  word: Kubernetes runs the command without a shell, and ``$`` is written ``$$`` so
  that the kubelet's ``$(VAR)`` expansion leaves it alone (the same for env values).
- env: ``COLONY_PROCESS_ID``, a workflow child's inputs as JSON in
  ``COLONY_INPUTS_JSON``, then the spec's env, as far as the node's config allows
  (``env_allowed``, see executors/base.py ``confine_env``).
- cpu (millicores) and mem (bytes, as Gi or Mi rounded up) are requests and limits;
  storage is ``ephemeral-storage``; gpu count (a GPU name alone means one) is a limit
  of ``nvidia.com/gpu``. A GPU name becomes a node selector only where a node label is
  configured for it; a GPU's memory has no Kubernetes request and is only noted.
- walltime and maxexectime (the smaller of those set) become ``activeDeadlineSeconds``,
  so that the cluster ends the Job even if this node dies; ``backoffLimit: 0`` and
  ``restartPolicy: Never``, because the colony retries a process, not Kubernetes.
- name: ``colony-<pid>-<6 random hex digits>``, a DNS-1123 label of at most 63
  characters (a new name for every attempt); the pid, cut to a label value, is the
  ``colonyp2p/pid`` label of the Job and its pod, and whole in an annotation.
- nodes > 1 is refused: one Job here is one pod.
- the pod gets no service-account token, as the command comes from any colony member.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

import trio
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import LogSink, RunRequest, RunResult, confine_env
from colonyp2p.executors.shell import (
    KILLED_AT_DEADLINE,
    TAIL_LINES,
    LineSplitter,
    effective_deadline,
    stringify,
    tail_text,
    trio_deadline,
)
from colonyp2p.model.ads import Hardware
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.model.units import format_cpu

CONTAINER = "main"
NAME_PREFIX = "colony"
MAX_NAME = 63  # a DNS-1123 label, and the job-name label the pods get
DEFAULT_TTL = 600  # seconds a finished Job stays for kubectl to look at
PID_KEY = "colonyp2p/pid"  # label (the pid cut to a label value) and annotation (whole)
FUNCNAME_KEY = "colonyp2p/funcname"
MANAGED_BY = ("app.kubernetes.io/managed-by", "colonyp2p")
GPU_RESOURCE = "nvidia.com/gpu"
UNWATCHED = "Unwatched"  # the reason when the Job's status could not be read any more
MAX_INPUTS_ENV = 32 * 1024  # bytes of JSON inputs passed in an environment variable
GI = 1 << 30
MI = 1 << 20

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NOT_NAME = re.compile(r"[^a-z0-9]+")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9_.-]+")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")

T = TypeVar("T")


# --- the manifest ------------------------------------------------------------------


def is_dns_label(name: str) -> bool:
    """Whether ``name`` is a DNS-1123 label (what a Job's name should be)."""
    return len(name) <= MAX_NAME and _DNS_LABEL.fullmatch(name) is not None


def job_name(pid: str, suffix: str = "", prefix: str = NAME_PREFIX) -> str:
    """A DNS-1123 label of at most 63 characters made from ``pid``: ``colony-<pid>``,
    and ``-<suffix>`` when one is given.

    A pid that had to be changed to fit (upper case, other characters, too long) gets
    8 hex digits of its sha256 as well, so that two pids never share a name.
    """
    prefix = _NOT_NAME.sub("-", prefix.lower())[:20].strip("-") or NAME_PREFIX
    suffix = _NOT_NAME.sub("-", suffix.lower())[:16].strip("-")
    slug = _NOT_NAME.sub("-", pid.lower()).strip("-")
    tail = f"-{suffix}" if suffix else ""
    room = MAX_NAME - len(prefix) - 1 - len(tail)
    if slug != pid or len(slug) > room or not slug:
        digest = hashlib.sha256(pid.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        slug = slug[: room - 9].rstrip("-")
        slug = f"{slug}-{digest}" if slug else digest
    return f"{prefix}-{slug}{tail}"


def label_value(text: str) -> str:
    """``text`` made into a label value: at most 63 of [A-Za-z0-9._-], alphanumeric at
    both ends (a 64-digit pid loses its last digit; its annotation keeps all)."""
    value = _NOT_LABEL_VALUE.sub("-", text)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def escape_references(word: str) -> str:
    """``word`` as the kubelet must see it to pass it on unchanged: it expands
    ``$(VAR)`` in commands, arguments and env values, and reads ``$$`` as ``$``."""
    return word.replace("$", "$$")


def memory_quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity in Gi when exact, else in Mi rounded up."""
    if size % GI == 0:
        return f"{size // GI}Gi"
    return f"{math.ceil(size / MI)}Mi"


def active_deadline(spec: FunctionSpec) -> int | None:
    """activeDeadlineSeconds: the smaller of walltime and maxexectime (rounded up), if
    either is set."""
    limits = [spec.conditions.walltime] if spec.conditions.walltime > 0 else []
    if spec.maxexectime > 0:
        limits.append(math.ceil(spec.maxexectime))
    return max(min(limits), 1) if limits else None


def container_command(spec: FunctionSpec) -> list[str]:
    """The container's command as literal words: ``[funcname, *args]`` or
    ``[*kwargs["command"], *args]``, before $-escaping."""
    given = spec.kwargs.get("command")
    if given is None:
        head = [spec.funcname]
    elif isinstance(given, str) and given:
        head = [given]
    elif isinstance(given, list | tuple) and given and all(isinstance(w, str) for w in given):
        head = list(given)
    else:
        raise ValidationError(
            f"must be a non-empty list of strings, got {given!r}", "kwargs.command"
        )
    words = [*head, *(stringify(arg) for arg in spec.args)]
    for i, word in enumerate(words):
        if "\0" in word:
            raise ValidationError("a NUL byte cannot be passed to a command", f"command[{i}]")
    return words


def image_of(spec: FunctionSpec) -> str:
    image = spec.kwargs.get("image")
    if not isinstance(image, str) or not image.strip():
        raise ValidationError(
            "a Kubernetes run needs the container image to run in kwargs.image "
            f"(e.g. {{'image': 'python:3.12-slim'}}), got {image!r}",
            "kwargs.image",
        )
    if image != image.strip() or any(c.isspace() for c in image):
        raise ValidationError(f"{image!r} is not an image reference", "kwargs.image")
    return image


def _resources(
    spec: FunctionSpec, gpu_resource: str
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Requests, limits and notes (what cannot be asked for) for the container."""
    c = spec.conditions
    requests: dict[str, str] = {}
    notes: list[str] = []
    if c.cpu:
        requests["cpu"] = format_cpu(c.cpu)
    if c.mem:
        requests["memory"] = memory_quantity(c.mem)
    if c.storage:
        requests["ephemeral-storage"] = memory_quantity(c.storage)
    limits = dict(requests)
    gpus = c.gpu.count or (1 if c.gpu.name else 0)
    if gpus:
        limits[gpu_resource] = str(gpus)
    if c.gpu.mem:
        notes.append(f"gpu.mem {c.gpu.mem} bytes: Kubernetes cannot ask for it")
    if c.processes > 1 or c.processespernode > 1:
        notes.append("processes: one container runs the command once")
    return requests, limits, notes


def job_manifest(
    spec: FunctionSpec,
    pid: str,
    namespace: str = "default",
    *,
    name: str | None = None,
    env: Mapping[str, str] | None = None,
    ttl_seconds: int | None = DEFAULT_TTL,
    gpu_resource: str = GPU_RESOURCE,
    gpu_label: str | None = None,
    service_account: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The batch/v1 Job that runs ``spec`` for process ``pid`` (the mapping is in the
    module's docstring). ``name`` defaults to :func:`job_name` of the pid; ``env`` goes
    before the spec's own env (which wins); ``gpu_label`` is the node label a GPU name
    is matched against (``nvidia.com/gpu.product`` with NVIDIA's feature discovery).

    Raises ValidationError for what a Job cannot run: no image, nodes > 1, a NUL byte
    in an argument, a name that is not a DNS-1123 label.
    """
    image = image_of(spec)
    command = container_command(spec)
    c = spec.conditions
    if c.nodes > 1:
        raise ValidationError(
            f"a Kubernetes Job here runs one pod on one node, not {c.nodes} nodes",
            "conditions.nodes",
        )
    name = name if name is not None else job_name(pid)
    if not is_dns_label(name):
        raise ValidationError(f"{name!r} is not a DNS-1123 label", "name")
    if not is_dns_label(namespace):
        raise ValidationError(f"{namespace!r} is not a namespace name", "namespace")
    requests, limits, notes = _resources(spec, gpu_resource)
    merged_env = {**(env or {}), **spec.env}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "command": [escape_references(word) for word in command],
        "env": [{"name": k, "value": escape_references(v)} for k, v in merged_env.items()],
    }
    if requests or limits:
        container["resources"] = {
            key: value for key, value in (("requests", requests), ("limits", limits)) if value
        }
    all_labels = {
        **(labels or {}),
        MANAGED_BY[0]: MANAGED_BY[1],
        PID_KEY: label_value(pid),
    }
    annotations = {PID_KEY: pid, FUNCNAME_KEY: spec.funcname}
    if notes:
        annotations["colonyp2p/not-requested"] = "; ".join(notes)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "containers": [container],
    }
    if service_account:
        pod_spec["serviceAccountName"] = service_account
    if c.gpu.name:
        if gpu_label:
            if _LABEL_VALUE.fullmatch(c.gpu.name) is None or len(c.gpu.name) > MAX_NAME:
                raise ValidationError(
                    f"{c.gpu.name!r} cannot be matched against a node label",
                    "conditions.gpu.name",
                )
            pod_spec["nodeSelector"] = {gpu_label: c.gpu.name}
        else:
            annotations["colonyp2p/gpu-name"] = c.gpu.name
    job_spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": dict(all_labels), "annotations": dict(annotations)},
            "spec": pod_spec,
        },
    }
    deadline = active_deadline(spec)
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    if ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": all_labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }


# --- reading what the API server says -----------------------------------------------


@dataclass(frozen=True)
class JobOutcome:
    """A finished Job: whether it completed, and why not."""

    ok: bool
    reason: str = ""
    message: str = ""


def job_outcome(job: k8s.V1Job) -> JobOutcome | None:
    """The outcome once the Job has a ``Complete`` or ``Failed`` condition, else None
    (``FailureTarget`` and ``SuccessCriteriaMet`` come first while pods terminate)."""
    status = job.status
    for condition in (status.conditions if status else None) or []:
        if condition.status != "True":
            continue
        if condition.type == "Complete":
            return JobOutcome(True, condition.reason or "", condition.message or "")
        if condition.type == "Failed":
            return JobOutcome(False, condition.reason or "Failed", condition.message or "")
    return None


@dataclass(frozen=True)
class PodState:
    """What one pod of the Job is doing, from the container's point of view."""

    name: str
    phase: str
    started: bool  # its log can be read: running or terminated
    finished: bool  # the container has terminated
    detail: str  # "waiting: ImagePullBackOff", "running", "terminated: Error, exit code 3"
    exit_code: int | None = None


def pod_state(pod: k8s.V1Pod, container: str = CONTAINER) -> PodState:
    name = pod.metadata.name if pod.metadata and pod.metadata.name else "?"
    status = pod.status
    phase = (status.phase if status else None) or "Unknown"
    found = None
    for cs in (status.container_statuses if status else None) or []:
        if cs.name == container:
            found = cs
    state = found.state if found else None
    pod_reason = ", ".join(x for x in (status.reason, status.message) if x) if status else ""
    if state and state.terminated:
        t = state.terminated
        what = ", ".join(x for x in (t.reason, t.message) if x) or "terminated"
        detail = f"terminated: {what}, exit code {t.exit_code}"
        if t.signal:
            detail += f", signal {t.signal}"
        return PodState(name, phase, True, True, detail, t.exit_code)
    if state and state.running:
        return PodState(name, phase, True, False, "running")
    if phase in ("Failed", "Succeeded"):
        # Evicted, or the pod's own deadline, before the container said anything.
        return PodState(name, phase, False, True, f"{phase}: {pod_reason or 'no reason given'}")
    waiting = state.waiting if state else None
    if waiting:
        what = ", ".join(x for x in (waiting.reason, waiting.message) if x) or "waiting"
        return PodState(name, phase, False, False, f"waiting: {what}")
    return PodState(
        name, phase, False, False, phase.lower() + (f": {pod_reason}" if pod_reason else "")
    )


def newest_pod(pods: Sequence[k8s.V1Pod]) -> k8s.V1Pod | None:
    def created(pod: k8s.V1Pod) -> datetime.datetime:
        stamp = pod.metadata.creation_timestamp if pod.metadata else None
        return stamp or datetime.datetime.min.replace(tzinfo=datetime.UTC)

    return max(pods, key=created) if pods else None


def parse_log_line(line: str) -> tuple[tuple[int, int] | None, str]:
    """Split a ``timestamps=true`` log line into (seconds, nanoseconds) and its text;
    (None, line) when it has no timestamp."""
    stamp, _, text = line.partition(" ")
    match = _TIMESTAMP.fullmatch(stamp)
    if match is None:
        return None, line
    try:
        moment = datetime.datetime.fromisoformat(match.group(1) + match.group(3))
    except ValueError:
        return None, line
    nanos = int((match.group(2) or "0").ljust(9, "0"))
    return (int(moment.timestamp()), nanos), text


class LogCursor:
    """Which log lines were already sent on, by timestamp, so that a stream opened again
    from the start sends only the new ones (lines with equal timestamps are counted)."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None
        self.count = 0  # lines seen with timestamp ``last``
        self._skip = 0
        self._took_last = True

    def reopen(self) -> None:
        """A new stream starts from the beginning of the log."""
        self._skip = self.count

    def take(self, stamp: tuple[int, int] | None) -> bool:
        """Whether a line with this timestamp is new (a line without one, a long line's
        continuation, goes with the line before it)."""
        if stamp is None:
            return self._took_last
        if self.last is None or stamp > self.last:
            self.last, self.count, self._skip = stamp, 1, 0
            self._took_last = True
        elif stamp < self.last:
            self._took_last = False
        elif self._skip:
            self._skip -= 1
            self._took_last = False
        else:
            self.count += 1
            self._took_last = True
        return self._took_last


def api_error(exc: BaseException) -> str:
    """A short account of a failed API call: the Status message when there is one."""
    if isinstance(exc, ApiException):
        message = ""
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(exc.body or "")
            message = str(body.get("message", ""))
        return f"{exc.status} {exc.reason or ''}".strip() + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


# --- the executor -------------------------------------------------------------------


@dataclass
class _Run:
    """One Job being followed."""

    name: str
    namespace: str
    tail: deque[str]
    cursor: LogCursor = field(default_factory=LogCursor)
    pod: PodState | None = None
    done: bool = False  # the Job has its final condition
    logs_complete: bool = False  # the finished container's log was read to its end

    @property
    def state(self) -> str:
        return f"pod {self.pod.name} {self.pod.detail}" if self.pod else "without a pod"


class KubernetesExecutor:
    """Runs specs as Kubernetes Jobs in one namespace and follows them to their end."""

    uses_workdir = False

    def __init__(
        self,
        namespace: str = "default",
        executortype: str = "kubernetes",
        api_client: k8s.ApiClient | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        allowed_images: tuple[str, ...] | None = None,
        service_account: str | None = None,
        gpu_resource: str = GPU_RESOURCE,
        gpu_label: str | None = None,
        ttl_seconds: int | None = DEFAULT_TTL,
        poll: float = 0.5,
        max_poll: float = 3.0,
        request_timeout: float = 30.0,
        cancel_wait: float = 30.0,
        drain: float = 5.0,
        log_idle: float = 300.0,
        give_up: float = 120.0,
        tail_lines: int = TAIL_LINES,
        env_allowed: tuple[str, ...] = (),
        hardware: Hardware | None = None,
    ) -> None:
        self.namespace = namespace
        # what a spec's env may set (config executor.env; see base.confine_env)
        self.env_allowed = env_allowed
        self._executortype = executortype
        self._api_client = api_client
        self.kubeconfig = kubeconfig
        self.context = context
        # Image references (exact) or prefixes ending in "/" or ":" that may run.
        self.allowed_images = allowed_images
        self.service_account = service_account
        self.gpu_resource = gpu_resource
        self.gpu_label = gpu_label
        self.ttl_seconds = ttl_seconds
        self.poll = poll
        self.max_poll = max_poll
        self.request_timeout = request_timeout
        self.cancel_wait = cancel_wait  # how long to wait for a deleted Job's pods to go
        self.drain = drain  # how long to wait for the rest of the log after the end
        self.log_idle = log_idle
        self.give_up = give_up  # seconds without a status before the Job is given up
        self.tail_lines = tail_lines
        self._hardware = hardware or Hardware()

    @property
    def executortype(self) -> str:
        return self._executortype

    def functions(self) -> tuple[str, ...]:
        return ()

    def hardware(self) -> Hardware:
        return self._hardware

    def image_refusal(self, image: str) -> str | None:
        if self.allowed_images is None:
            return None
        for allowed in self.allowed_images:
            if image == allowed or (allowed.endswith(("/", ":")) and image.startswith(allowed)):
                return None
        return f"image {image!r} is not on this executor's allow-list"

    # --- talking to the API server ---------------------------------------------------

    def _load_client(self) -> k8s.ApiClient:
        """In-cluster configuration when running in a pod, else the kubeconfig."""
        from kubernetes import config

        configuration = k8s.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=self.kubeconfig,
                context=self.context,
                client_configuration=configuration,
                persist_config=False,
            )
        return k8s.ApiClient(configuration)

    async def _client(self) -> k8s.ApiClient:
        if self._api_client is None:
            self._api_client = await trio.to_thread.run_sync(self._load_client)
        return self._api_client

    async def _call(self, fn: Callable[[], T], *, abandon: bool = True) -> T:
        """One blocking client call in a worker thread. A call that only reads is left
        to finish on its own (within the request timeout) when the caller is cancelled."""
        return await trio.to_thread.run_sync(
            fn,
            abandon_on_cancel=abandon,  # type: ignore[call-arg]  # stubs predate it
        )

    async def _list_pods(self, core: k8s.CoreV1Api, run: _Run) -> list[k8s.V1Pod]:
        pods = await self._call(
            lambda: core.list_namespaced_pod(
                run.namespace,
                label_selector=f"job-name={run.name}",
                _request_timeout=self.request_timeout,
            )
        )
        return list(pods.items or [])

    async def _refresh_pod(self, core: k8s.CoreV1Api, run: _Run, log: LogSink) -> None:
        """Look at the Job's newest pod; one that was there and is not any more is gone
        (deleted, with the Job or by someone else)."""
        pod = newest_pod(await self._list_pods(core, run))
        if pod is None:
            if run.pod is not None and run.pod.detail != "gone":
                run.pod = PodState(run.pod.name, run.pod.phase, False, True, "gone")
                log(f"kubernetes: pod {run.pod.name} gone")
            return
        state = pod_state(pod)
        if run.pod is None or (state.name, state.detail) != (run.pod.name, run.pod.detail):
            log(f"kubernetes: pod {state.name} {state.detail}")
        run.pod = state

    # --- one run ---------------------------------------------------------------------

    async def run(self, request: RunRequest, log: LogSink) -> RunResult:
        spec = request.spec
        if spec.env:
            spec = replace(spec, env=confine_env(spec.env, self.env_allowed, log))
        env = {"COLONY_PROCESS_ID": request.pid}
        inputs = json.dumps(list(request.inputs), default=str) if request.inputs else ""
        if inputs:
            env["COLONY_INPUTS_JSON"] = inputs
        try:
            manifest = job_manifest(
                spec,
                request.pid,
                self.namespace,
                name=job_name(request.pid, secrets.token_hex(3)),
                env=env,
                ttl_seconds=self.ttl_seconds,
                gpu_resource=self.gpu_resource,
                gpu_label=self.gpu_label,
                service_account=self.service_account,
            )
        except ValidationError as exc:
            return RunResult(False, errors=(f"cannot make a Kubernetes Job: {exc}",))
        if len(inputs.encode()) > MAX_INPUTS_ENV:
            return RunResult(
                False,
                errors=(
                    f"the parents' outputs take {len(inputs.encode())} bytes of JSON, more "
                    f"than the {MAX_INPUTS_ENV} a Job's environment carries here: pass "
                    "them through the meta-filesystem",
                ),
            )
        refused = self.image_refusal(manifest["spec"]["template"]["spec"]["containers"][0]["image"])
        if refused is not None:
            return RunResult(False, errors=(refused,))
        try:
            api_client = await self._client()
        except Exception as exc:
            return RunResult(False, errors=(f"no Kubernetes configuration: {api_error(exc)}",))
        batch, core = k8s.BatchV1Api(api_client), k8s.CoreV1Api(api_client)
        run = _Run(manifest["metadata"]["name"], self.namespace, deque(maxlen=self.tail_lines))
        started = time.time()
        deadline = effective_deadline(request, started)
        body = k8s.V1Job.from_dict(manifest)
        assert body is not None
        # Shielded: a cancel while the POST is under way must not lose a Job that exists.
        with trio.CancelScope(shield=True):
            try:
                await self._call(
                    lambda: batch.create_namespaced_job(
                        self.namespace, body, _request_timeout=self.request_timeout
                    ),
                    abandon=False,
                )
            except ApiException as exc:
                if exc.status is None or exc.status >= 500:
                    await self._delete(batch, core, run, log)  # it may exist all the same
                why = f"kubernetes refused job {run.name}: {api_error(exc)}"
                return RunResult(False, errors=(why,))
            except Exception as exc:
                # The Job may exist all the same (a timeout after the server took it).
                await self._delete(batch, core, run, log)
                return RunResult(False, errors=(f"cannot create job {run.name}: {api_error(exc)}",))
        log(f"kubernetes: created job {self.namespace}/{run.name}")
        try:
            with trio.move_on_at(trio_deadline(deadline)) as timer:
                outcome = await self._follow(batch, core, run, log)
        except BaseException:
            with trio.CancelScope(shield=True):
                log(f"kubernetes: deleting job {run.name} (cancelled)")
                await self._delete(batch, core, run, log)
            raise
        if timer.cancelled_caught:
            with trio.CancelScope(shield=True):
                state = run.state
                await self._delete(batch, core, run, log)
            elapsed = time.time() - started
            return RunResult(
                False,
                errors=(
                    f"{KILLED_AT_DEADLINE}: kubernetes job {run.name} had not finished ({state}) "
                    f"when its deadline passed after {elapsed:.1f} s, and was deleted",
                    tail_text(run.tail),
                ),
            )
        if outcome.ok:
            return RunResult(True, output=(0, tail_text(run.tail)))
        if outcome.reason == UNWATCHED:
            # Nobody would know when it ends, nor stop it: it goes, as far as it can.
            with trio.CancelScope(shield=True):
                await self._delete(batch, core, run, log)
        why = f"kubernetes job {run.name} failed: {outcome.reason}"
        if outcome.message:
            why += f" ({outcome.message})"
        if run.pod is not None:
            why += f"; {run.state}"
        return RunResult(False, errors=(why, tail_text(run.tail)))

    async def _follow(
        self, batch: k8s.BatchV1Api, core: k8s.CoreV1Api, run: _Run, log: LogSink
    ) -> JobOutcome:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow_logs, core, run, log)
            outcome = await self._watch_job(batch, run, log)
            run.done = True
            # The log stream ends by itself once the container has ended; give it a
            # moment, then read what is left in one request.
            with trio.move_on_after(self.drain):
                while not run.logs_complete:
                    await trio.sleep(0.02)
            nursery.cancel_scope.cancel()
        with contextlib.suppress(Exception):
            await self._refresh_pod(core, run, log)
        if not run.logs_complete and run.pod is not None and run.pod.started:
            with contextlib.suppress(Exception):
                await self._read_rest(core, run, log)
        return outcome

    async def _watch_job(self, batch: k8s.BatchV1Api, run: _Run, log: LogSink) -> JobOutcome:
        interval = self.poll
        failing_since: float | None = None  # when the API server stopped answering
        while True:
            try:
                job = await self._call(
                    lambda: batch.read_namespaced_job_status(
                        run.name, run.namespace, _request_timeout=self.request_timeout
                    )
                )
            except Exception as exc:
                if isinstance(exc, ApiException) and exc.status == 404:
                    return JobOutcome(False, "Deleted", "the Job was deleted by someone else")
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                log(f"kubernetes: reading job {run.name}: {api_error(exc)} (will ask again)")
                if now - failing_since >= self.give_up:
                    return JobOutcome(
                        False,
                        UNWATCHED,
                        f"no status for {now - failing_since:.0f} s: {api_error(exc)}",
                    )
            else:
                failing_since = None
                outcome = job_outcome(job)
                if outcome is not None:
                    log(f"kubernetes: job {run.name} {'Complete' if outcome.ok else 'Failed'}")
                    return outcome
            await trio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll)

    async def _follow_logs(self, core: k8s.CoreV1Api, run: _Run, log: LogSink) -> None:
        """Find the pod, wait for its container to start, stream its log to the end."""
        interval = self.poll
        while True:
            try:
                await self._refresh_pod(core, run, log)
                if run.pod is None:
                    if run.done:
                        return  # over before a pod was ever seen
                elif run.pod.started:
                    await self._stream(core, run, run.pod.name, log)
                    await self._refresh_pod(core, run, log)
                    if run.pod.finished:
                        # The stream may have broken before the container ended, and the
                        # pod finished meanwhile: what it missed is read once (the cursor
                        # skips what was seen). Without this a busy machine lost the end
                        # of a log (test_a_broken_log_stream_is_resumed_without_repeats).
                        await self._read_rest(core, run, log)
                        run.logs_complete = True
                        return
                elif run.pod.finished:
                    run.logs_complete = True  # ended or gone before its container started
                    return
            except Exception as exc:
                log(f"kubernetes: following the log of job {run.name}: {api_error(exc)}")
            await trio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll)

    async def _stream(self, core: k8s.CoreV1Api, run: _Run, pod: str, log: LogSink) -> None:
        response = cast(
            Any,
            await self._call(
                lambda: core.read_namespaced_pod_log(
                    pod,
                    run.namespace,
                    container=CONTAINER,
                    follow=True,
                    timestamps=True,
                    _preload_content=False,
                    # A stream quiet for this long is opened again: a connection can
                    # die without a word, and a quiet job costs only a re-read.
                    _request_timeout=(self.request_timeout, self.log_idle),
                )
            ),
        )
        run.cursor.reopen()
        splitter = LineSplitter()
        try:
            while True:
                data: bytes = await self._call(lambda: response.read1(65536))
                if not data:
                    break
                self._emit(splitter.feed(data), run, log)
            self._emit(splitter.flush(), run, log)
        finally:
            # Wakes a reader thread left blocked by a cancel, then frees the connection.
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()

    async def _read_rest(self, core: k8s.CoreV1Api, run: _Run, log: LogSink) -> None:
        assert run.pod is not None
        name = run.pod.name
        text = await self._call(
            lambda: core.read_namespaced_pod_log(
                name,
                run.namespace,
                container=CONTAINER,
                timestamps=True,
                _request_timeout=self.request_timeout,
            )
        )
        run.cursor.reopen()
        self._emit(text.splitlines(), run, log)

    def _emit(self, lines: list[str], run: _Run, log: LogSink) -> None:
        for line in lines:
            stamp, text = parse_log_line(line)
            if run.cursor.take(stamp):
                run.tail.append(text)
                log(text)

    async def _delete(
        self, batch: k8s.BatchV1Api, core: k8s.CoreV1Api, run: _Run, log: LogSink
    ) -> None:
        """Delete the Job (its pods go in the background) and wait, bounded, until no
        pod of it is left running."""
        with trio.move_on_after(self.cancel_wait) as waiting:
            try:
                await self._call(
                    lambda: batch.delete_namespaced_job(
                        run.name,
                        run.namespace,
                        propagation_policy="Background",
                        _request_timeout=self.request_timeout,
                    ),
                    abandon=False,
                )
                log(f"kubernetes: deleted job {run.name}")
            except ApiException as exc:
                if exc.status != 404:
                    log(f"kubernetes: could not delete job {run.name}: {api_error(exc)}")
                    return
            except Exception as exc:
                log(f"kubernetes: could not delete job {run.name}: {api_error(exc)}")
                return
            while True:
                try:
                    pods = await self._list_pods(core, run)
                except Exception as exc:
                    log(f"kubernetes: could not list the pods of job {run.name}: {api_error(exc)}")
                    return
                if all(pod_state(p).finished for p in pods):
                    return
                await trio.sleep(0.2)
        if waiting.cancelled_caught:
            log(f"kubernetes: pods of job {run.name} still there after {self.cancel_wait:.0f} s")


__all__ = [
    "CONTAINER",
    "JobOutcome",
    "KubernetesExecutor",
    "LogCursor",
    "PodState",
    "active_deadline",
    "container_command",
    "escape_references",
    "is_dns_label",
    "job_manifest",
    "job_name",
    "job_outcome",
    "label_value",
    "memory_quantity",
    "parse_log_line",
    "pod_state",
]
