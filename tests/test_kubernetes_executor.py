"""The Kubernetes executor, without a cluster.

No cluster runs here. Manifests are checked against the Kubernetes schema as the
official client knows it (its generated, strict models of release 1.37): a manifest
must deserialize into a V1Job and serialize back to exactly itself, so that no field is
unknown, misspelt, missing or of the wrong type. The transport runs against
``FakeApiServer``: a small threading HTTP server on 127.0.0.1 that answers the
endpoints the executor calls with the JSON shapes of the real API server (which the
client's strict models would refuse otherwise) and plays each Job's pod from a script.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client as k8s
from kubernetes.utils import parse_quantity
from pydantic import ValidationError as SchemaError

from colonyp2p.errors import ValidationError
from colonyp2p.executors.base import RunRequest, RunResult
from colonyp2p.executors.kubernetes import (
    CONTAINER,
    KubernetesExecutor,
    LogCursor,
    container_command,
    is_dns_label,
    job_manifest,
    job_name,
    job_outcome,
    label_value,
    memory_quantity,
    parse_log_line,
    pod_state,
)
from colonyp2p.executors.shell import KILLED_AT_DEADLINE
from colonyp2p.model.spec import Conditions, FunctionSpec, Gpu

MI = 1 << 20
GI = 1 << 30
PID = "9f" * 32  # a real pid is 64 hex digits
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


# --- checking a manifest against the schema -------------------------------------------


def validate(manifest: dict[str, Any]) -> k8s.V1Job:
    """The manifest as the client's V1Job, after checking it is exactly one."""
    api = k8s.ApiClient()
    job = api.deserialize(json.dumps(manifest), "V1Job", "application/json")
    assert isinstance(job, k8s.V1Job)
    # Unknown or misspelt fields are dropped by the model, so the round trip shows them.
    assert api.sanitize_for_serialization(job) == manifest  # type: ignore[no-untyped-call]
    assert job.api_version == "batch/v1" and job.kind == "Job"
    assert job.metadata is not None and job.metadata.name is not None
    assert is_dns_label(job.metadata.name)
    assert job.metadata.namespace is not None and is_dns_label(job.metadata.namespace)
    assert job.spec is not None and job.spec.template.spec is not None
    pod = job.spec.template.spec
    assert pod.restart_policy == "Never" and job.spec.backoff_limit == 0
    assert len(pod.containers) == 1 and pod.containers[0].image
    meta = job.spec.template.metadata
    for labels in (job.metadata.labels or {}, meta.labels if meta and meta.labels else {}):
        for key, value in labels.items():
            assert _LABEL_KEY.fullmatch(key) and len(key.rpartition("/")[2]) <= 63, key
            assert _LABEL_VALUE.fullmatch(value) and len(value) <= 63, value
    resources = pod.containers[0].resources
    for quantities in (resources.requests, resources.limits) if resources else ():
        for quantity in (quantities or {}).values():
            parse_quantity(quantity)  # type: ignore[no-untyped-call]  # raises for what Kubernetes would not read
    if job.spec.active_deadline_seconds is not None:
        assert job.spec.active_deadline_seconds > 0
    return job


def test_the_validator_catches_what_the_server_would_refuse() -> None:
    good = job_manifest(FunctionSpec("true", kwargs={"image": "busybox"}), PID)
    validate(good)
    wrong_type = json.loads(json.dumps(good))
    wrong_type["spec"]["activeDeadlineSeconds"] = "10"
    # the client's models (pydantic) refuse wrong types and missing fields, naming them
    with pytest.raises(SchemaError, match="activeDeadlineSeconds"):
        validate(wrong_type)
    misspelt = json.loads(json.dumps(good))
    misspelt["spec"]["template"]["spec"]["restartpolicy"] = "Never"
    with pytest.raises(AssertionError):
        validate(misspelt)
    no_name = json.loads(json.dumps(good))
    del no_name["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(SchemaError, match="V1Container\nname"):
        validate(no_name)
    arg_not_text = json.loads(json.dumps(good))
    arg_not_text["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", 5]
    with pytest.raises(SchemaError, match=r"command\.1"):
        validate(arg_not_text)


# --- the manifest mapping ---------------------------------------------------------------


def manifest_for(**kw: Any) -> tuple[dict[str, Any], k8s.V1Job]:
    kwargs = kw.pop("kwargs", {"image": "registry.example/tools:1.2"})
    spec = FunctionSpec(kw.pop("funcname", "work"), kwargs=kwargs, **kw)
    manifest = job_manifest(spec, PID, "colony")
    return manifest, validate(manifest)


def container_of(job: k8s.V1Job) -> k8s.V1Container:
    assert job.spec is not None and job.spec.template.spec is not None
    return job.spec.template.spec.containers[0]


def test_a_plain_spec_becomes_a_one_pod_job() -> None:
    manifest, job = manifest_for(args=("a", 1, True, None, [1, "x"], 2.5))
    # written out, not rebuilt: what the cluster is asked to run, field by field
    labels = {"app.kubernetes.io/managed-by": "colonyp2p", "colonyp2p/pid": PID[:63]}
    annotations = {"colonyp2p/pid": PID, "colonyp2p/funcname": "work"}
    assert manifest == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "colony-" + PID[:47] + "-182854d3",  # too long for a name: cut, and hashed
            "namespace": "colony",
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "backoffLimit": 0,  # a failed pod fails the job: retries are the colony's
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": "registry.example/tools:1.2",
                            "command": ["work", "a", "1", "true", "null", '[1, "x"]', "2.5"],
                            "env": [],
                        }
                    ],
                },
            },
        },
    }
    c = container_of(job)
    assert c.name == CONTAINER and c.image == "registry.example/tools:1.2"
    assert c.command == ["work", "a", "1", "true", "null", '[1, "x"]', "2.5"]
    assert c.args is None and c.resources is None and c.env == []
    assert job.spec is not None and job.spec.template.spec is not None
    assert job.spec.active_deadline_seconds is None
    assert job.spec.ttl_seconds_after_finished == 600
    assert job.spec.template.spec.automount_service_account_token is False
    assert job.metadata is not None and job.metadata.labels is not None
    assert job.metadata.labels["colonyp2p/pid"] == PID[:63]
    assert job.metadata.annotations == {"colonyp2p/pid": PID, "colonyp2p/funcname": "work"}
    template = job.spec.template.metadata
    assert template is not None and template.labels == job.metadata.labels
    assert manifest["metadata"]["namespace"] == "colony"


def test_cpu_memory_and_storage_are_requests_and_limits() -> None:
    cases = [
        (Conditions(cpu=500), {"cpu": "500m"}),
        (Conditions(cpu=2000), {"cpu": "2"}),
        (Conditions(cpu=1500, mem=512 * MI), {"cpu": "1500m", "memory": "512Mi"}),
        (Conditions(mem=2 * GI), {"memory": "2Gi"}),
        (Conditions(mem=10**9), {"memory": "954Mi"}),  # rounded up, never down
        (Conditions(mem=1), {"memory": "1Mi"}),
        (Conditions(storage=10 * GI), {"ephemeral-storage": "10Gi"}),
    ]
    for conditions, expected in cases:
        _, job = manifest_for(conditions=conditions)
        resources = container_of(job).resources
        assert resources is not None
        assert resources.requests == expected and resources.limits == expected, conditions
    assert memory_quantity(10**9) == "954Mi" and 954 * MI >= 10**9


def test_gpus_are_limits_and_a_gpu_name_is_a_node_selector_only_when_configured() -> None:
    _, job = manifest_for(conditions=Conditions(gpu=Gpu(count=2)))
    resources = container_of(job).resources
    assert resources is not None
    assert resources.limits == {"nvidia.com/gpu": "2"} and resources.requests is None
    _, job = manifest_for(conditions=Conditions(gpu=Gpu(name="A100", mem=80 * GI)))
    resources = container_of(job).resources
    assert resources is not None and resources.limits == {"nvidia.com/gpu": "1"}
    assert job.metadata is not None and job.metadata.annotations is not None
    assert job.metadata.annotations["colonyp2p/gpu-name"] == "A100"
    assert "gpu.mem" in job.metadata.annotations["colonyp2p/not-requested"]
    assert job.spec is not None and job.spec.template.spec is not None
    assert job.spec.template.spec.node_selector is None
    spec = FunctionSpec("w", kwargs={"image": "x"}, conditions=Conditions(gpu=Gpu(name="A100")))
    manifest = job_manifest(
        spec, PID, gpu_label="nvidia.com/gpu.product", gpu_resource="amd.com/gpu"
    )
    pod = validate(manifest).spec
    assert pod is not None and pod.template.spec is not None
    assert pod.template.spec.node_selector == {"nvidia.com/gpu.product": "A100"}
    assert pod.template.spec.containers[0].resources is not None
    assert pod.template.spec.containers[0].resources.limits == {"amd.com/gpu": "1"}
    bad = FunctionSpec("w", kwargs={"image": "x"}, conditions=Conditions(gpu=Gpu(name="a b")))
    with pytest.raises(ValidationError, match=r"gpu\.name"):
        job_manifest(bad, PID, gpu_label="nvidia.com/gpu.product")


def test_walltime_and_maxexectime_become_the_active_deadline() -> None:
    def deadline(**kw: Any) -> int | None:
        _, job = manifest_for(**kw)
        assert job.spec is not None
        return job.spec.active_deadline_seconds

    assert deadline() is None
    assert deadline(conditions=Conditions(walltime=3600)) == 3600
    assert deadline(maxexectime=2.5) == 3
    assert deadline(maxexectime=0.2) == 1
    assert deadline(maxexectime=100, conditions=Conditions(walltime=60)) == 60
    assert deadline(maxexectime=30, conditions=Conditions(walltime=60)) == 30


def test_nodes_beyond_one_are_refused_and_one_is_fine() -> None:
    manifest_for(conditions=Conditions(nodes=1))
    with pytest.raises(ValidationError, match="nodes"):
        manifest_for(conditions=Conditions(nodes=2))


def test_env_and_a_given_command() -> None:
    spec = FunctionSpec(
        "train",
        args=("--epochs", 3),
        kwargs={"image": "pytorch:2", "command": ["python", "train.py"]},
        env={"MODE": "fast", "COLONY_PROCESS_ID": "mine", "PRICE": "$(5)"},
    )
    job = validate(job_manifest(spec, PID, env={"COLONY_PROCESS_ID": PID, "BASE": "1"}))
    c = container_of(job)
    assert c.command == ["python", "train.py", "--epochs", "3"]
    assert [(e.name, e.value) for e in c.env or []] == [
        ("COLONY_PROCESS_ID", "mine"),  # the spec's env wins, as in the shell executor
        ("BASE", "1"),
        ("MODE", "fast"),
        ("PRICE", "$$(5)"),
    ]
    for bad in (["python", 3], [], 7):
        with pytest.raises(ValidationError, match=r"kwargs\.command"):
            container_command(FunctionSpec("x", kwargs={"image": "i", "command": bad}))
    with pytest.raises(ValidationError, match="NUL"):
        container_command(FunctionSpec("x", args=("a\0b",), kwargs={"image": "i"}))


def test_the_image_is_required() -> None:
    for kwargs in ({}, {"image": ""}, {"image": 3}, {"image": "a b"}):
        with pytest.raises(ValidationError, match=r"kwargs\.image"):
            job_manifest(FunctionSpec("x", kwargs=kwargs), PID)


# --- names and arguments, for any input ------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(), st.text(alphabet="abcdef0123456789-", max_size=20))
def test_job_names_are_always_dns_labels_and_never_shared(a: str, b: str, suffix: str) -> None:
    for pid in (a, b):
        name = job_name(pid, suffix)
        assert is_dns_label(name) and len(name) <= 63, name
        assert job_name(pid, suffix) == name
        assert _LABEL_VALUE.fullmatch(label_value(pid)) and len(label_value(pid)) <= 63
    if a != b:
        assert job_name(a) != job_name(b)


def kubelet_expand(text: str, mapping: Callable[[str], str]) -> str:
    """Kubernetes' expansion of $(VAR) in commands, args and env values (a port of
    third_party/forked/golang/expansion/expand.go)."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            rest = text[cursor + 1 :]
            if rest[0] == "$":
                read, is_var, advance = "$", False, 1
            elif rest[0] == "(":
                close = rest.find(")", 1)
                if close > 0:
                    read, is_var, advance = rest[1:close], True, close + 1
                else:
                    read, is_var, advance = "$(", False, 1
            else:
                read, is_var, advance = "$" + rest[0], False, 1
            out.append(mapping(read) if is_var else read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def test_the_kubelet_expansion_port_expands() -> None:
    # results of Kubernetes' own expansion (cases from its expand_test.go), written out
    cases = {
        "a$(X)b$$(Y)$": "a<X>b$(Y)$",
        "$$": "$",
        "$$$$": "$$",
        "$$(X)": "$(X)",
        "$(X": "$(X",  # never closed: left as it is
        "$(": "$(",
        "a$b": "a$b",  # only $( and $$ mean something
        "$(X)$(Y)": "<X><Y>",
        "$$$$$$(BIG_MONEY)": "$$$(BIG_MONEY)",
        "$$$$$$$(BIG_MONEY)": "$$$<BIG_MONEY>",
    }
    assert {text: kubelet_expand(text, lambda v: f"<{v}>") for text in cases} == cases


ARGS = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(exclude_characters="\0")),
        st.sampled_from(["$(HOME)", "$$", "$", "; rm -rf ~", "`id`", "$(", "a b", "'\""]),
        st.integers(-(2**63), 2**63 - 1),
        st.booleans(),
        st.none(),
    ),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(ARGS, st.dictionaries(st.sampled_from(["A", "B_1", "PATHX"]), st.text(alphabet="ab$()")))
def test_arguments_and_env_arrive_literally(args: list[Any], env: dict[str, str]) -> None:
    spec = FunctionSpec("prog", args=tuple(args), kwargs={"image": "img"}, env=env)
    job = validate(job_manifest(spec, PID))
    c = container_of(job)
    expanded = [kubelet_expand(word, lambda v: "<EXPANDED>") for word in c.command or []]
    # each argument as the shell executor spells it: text as is, anything else as JSON
    assert expanded == ["prog", *(a if isinstance(a, str) else json.dumps(a) for a in args)]
    assert c.args is None  # the image's CMD never adds words
    values = {e.name: kubelet_expand(e.value or "", lambda v: "<EXPANDED>") for e in c.env or []}
    assert values == env


# --- reading statuses and logs -----------------------------------------------------------


def model(kind: str, data: dict[str, Any]) -> Any:
    return k8s.ApiClient().deserialize(json.dumps(data), kind, "application/json")


def test_job_outcome_waits_for_the_final_condition() -> None:
    def outcome(*conditions: dict[str, Any]) -> Any:
        return job_outcome(model("V1Job", {"status": {"conditions": list(conditions)}}))

    assert outcome() is None
    assert outcome({"type": "FailureTarget", "status": "True", "reason": "X"}) is None
    assert outcome({"type": "Failed", "status": "False"}) is None
    failed = outcome({"type": "Failed", "status": "True", "reason": "DeadlineExceeded"})
    assert failed is not None and not failed.ok and failed.reason == "DeadlineExceeded"
    done = outcome(
        {"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}
    )
    assert done is not None and done.ok


def test_pod_state_names_what_happened() -> None:
    def state(status: dict[str, Any]) -> Any:
        return pod_state(model("V1Pod", {"metadata": {"name": "p"}, "status": status}))

    def container(st: dict[str, Any]) -> dict[str, Any]:
        return {
            "containerStatuses": [
                {
                    "name": CONTAINER,
                    "state": st,
                    "ready": False,
                    "restartCount": 0,
                    "image": "i",
                    "imageID": "",
                }
            ]
        }

    oom = state(
        {"phase": "Failed", **container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})}
    )
    assert oom.finished and oom.started and oom.exit_code == 137
    assert oom.detail == "terminated: OOMKilled, exit code 137"
    pulling = state({"phase": "Pending", **container({"waiting": {"reason": "ImagePullBackOff"}})})
    assert not pulling.started and pulling.detail == "waiting: ImagePullBackOff"
    evicted = state({"phase": "Failed", "reason": "Evicted", "message": "low on memory"})
    assert evicted.finished and not evicted.started and "Evicted, low on memory" in evicted.detail
    assert state({}).detail == "unknown"


def test_log_lines_are_split_from_their_timestamps() -> None:
    assert parse_log_line("2024-05-01T10:00:00.5Z hello world") == (
        (1714557600, 500000000),
        "hello world",
    )
    assert parse_log_line("2024-05-01T10:00:00Z ") == ((1714557600, 0), "")
    assert parse_log_line("2024-05-01T12:00:00.000000001+02:00 x") == ((1714557600, 1), "x")
    assert parse_log_line("no timestamp here") == (None, "no timestamp here")
    # Nanoseconds compare as numbers, not as text of varying length.
    later, _ = parse_log_line("2024-05-01T10:00:00.5Z a")
    earlier, _ = parse_log_line("2024-05-01T10:00:00.123Z a")
    assert later is not None and earlier is not None and later > earlier


def test_the_cursor_skips_exactly_what_was_seen() -> None:
    cursor = LogCursor()
    stamps = [(1, 0), (2, 0), (2, 0), (3, 0), (3, 0)]
    assert [cursor.take(s) for s in stamps[:4]] == [True] * 4
    cursor.reopen()  # the stream broke after the first (3, 0) and starts over
    assert [cursor.take(s) for s in stamps] == [False, False, False, False, True]
    assert cursor.take(None) is True  # a long line's continuation goes with its line
    assert [cursor.take(s) for s in [(4, 0), (4, 0)]] == [True, True]


# --- the stand-in API server ------------------------------------------------------------


@dataclass
class Script:
    """What a Job's one pod does, in seconds from the Job's creation."""

    lines: list[str] = field(default_factory=list)
    exit_code: int = 0
    reason: str = ""  # the container's termination reason; Completed or Error if empty
    pending: float = 0.05  # ContainerCreating for this long
    every: float = 0.01  # between two lines
    stamp_step: float | None = None  # between two lines' timestamps (default: every)
    forever: bool = False  # runs until deleted or its activeDeadlineSeconds
    waiting: str = "ContainerCreating"
    never_starts: bool = False  # stays waiting (e.g. ImagePullBackOff)
    drop_stream_after: int | None = None  # the first follow stream ends after N lines
    refuse: tuple[int, str, str] | None = None  # create answers (code, reason, message)
    status_errors: int = 0  # the first N status reads answer 500


def rfc3339(ns: int, nano: bool = False) -> str:
    seconds, fraction = divmod(ns, 10**9)
    text = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{fraction:09d}".rstrip("0") if nano else ""
    return text + (f".{digits}" if digits else "") + "Z"


@dataclass
class FakeJob:
    manifest: dict[str, Any]
    script: Script
    created: float  # monotonic
    created_ns: int  # wall clock
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    deleted: bool = False
    streams: int = 0
    status_reads: int = 0

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def pod_name(self) -> str:
        return self.name + "-x7k2q"

    def age(self) -> float:
        return time.monotonic() - self.created

    def end(self) -> float | None:
        s = self.script
        if s.forever or s.never_starts:
            return None
        return s.pending + len(s.lines) * s.every

    def deadline_passed(self) -> bool:
        limit = self.manifest["spec"].get("activeDeadlineSeconds")
        end = self.end()
        return limit is not None and self.age() >= limit and (end is None or end > limit)

    def lines_so_far(self) -> int:
        s = self.script
        if s.never_starts or self.age() < s.pending:
            return 0
        return min(len(s.lines), int((self.age() - s.pending) / s.every) + 1)

    def log_line(self, i: int) -> str:
        s = self.script
        step = s.every if s.stamp_step is None else s.stamp_step
        stamp = self.created_ns + int((s.pending + i * step) * 1e9)
        return f"{rfc3339(stamp, nano=True)} {s.lines[i]}\n"

    def status(self) -> dict[str, Any]:
        start = rfc3339(self.created_ns)
        end = self.end()
        if self.deadline_passed():
            failed = {
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
            return self._final(start, "Failed", failed, {"failed": 1})
        if end is not None and self.age() >= end:
            if self.script.exit_code == 0:
                return self._final(start, "Complete", {}, {"succeeded": 1})
            failed = {
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
            }
            return self._final(start, "Failed", failed, {"failed": 1})
        ready = 1 if self.age() >= self.script.pending and not self.script.never_starts else 0
        return {
            "startTime": start,
            "active": 1,
            "ready": ready,
            "terminating": 0,
            "uncountedTerminatedPods": {},
        }

    def _final(
        self, start: str, kind: str, why: dict[str, str], counts: dict[str, int]
    ) -> dict[str, Any]:
        now = rfc3339(time.time_ns())
        target = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
        conditions = [
            {"type": t, "status": "True", "lastProbeTime": now, "lastTransitionTime": now, **why}
            for t in (target, kind)
        ]
        return {
            "startTime": start,
            "conditions": conditions,
            "ready": 0,
            "terminating": 0,
            **counts,
        }

    def pod(self) -> dict[str, Any] | None:
        if self.deleted or self.deadline_passed():
            return None
        s, age, end = self.script, self.age(), self.end()
        image = self.manifest["spec"]["template"]["spec"]["containers"][0]["image"]
        started = rfc3339(self.created_ns + int(s.pending * 1e9))
        state: dict[str, Any]
        if s.never_starts or age < s.pending:
            phase, state = "Pending", {"waiting": {"reason": s.waiting}}
        elif end is None or age < end:
            phase, state = "Running", {"running": {"startedAt": started}}
        else:
            code = s.exit_code
            phase = "Succeeded" if code == 0 else "Failed"
            reason = s.reason or ("Completed" if code == 0 else "Error")
            finished = rfc3339(self.created_ns + int(end * 1e9))
            state = {
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": started,
                    "finishedAt": finished,
                    "containerID": "containerd://" + self.uid.replace("-", ""),
                }
            }
        labels = {
            **self.manifest["spec"]["template"]["metadata"]["labels"],
            "batch.kubernetes.io/controller-uid": self.uid,
            "batch.kubernetes.io/job-name": self.name,
            "controller-uid": self.uid,
            "job-name": self.name,
        }
        return {
            "metadata": {
                "name": self.pod_name,
                "namespace": self.manifest["metadata"]["namespace"],
                "uid": str(uuid.uuid5(uuid.NAMESPACE_OID, self.uid)),
                "creationTimestamp": rfc3339(self.created_ns),
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": self.name,
                        "uid": self.uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": self.manifest["spec"]["template"]["spec"],
            "status": {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": CONTAINER,
                        "state": state,
                        "ready": phase == "Running",
                        "restartCount": 0,
                        "image": image,
                        "imageID": "",
                        "started": phase == "Running",
                    }
                ],
            },
        }

    def pod_over(self) -> bool:
        pod = self.pod()
        return pod is None or pod["status"]["phase"] in ("Succeeded", "Failed")


def status_body(code: int, reason: str, message: str, **details: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


class FakeApiServer:
    """Jobs and their pods in memory, behind the API server's URLs for them."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], FakeJob] = {}
        self.scripts: dict[str, Script] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path?query)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def client(self) -> k8s.ApiClient:
        return k8s.ApiClient(k8s.Configuration(host=f"http://127.0.0.1:{self.port}"))

    def job(self, name_prefix: str = "") -> FakeJob:
        (found,) = [j for j in self.jobs.values() if j.name.startswith(name_prefix)]
        return found

    def deletes(self) -> list[str]:
        return [path for method, path in self.requests if method == "DELETE"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                self.route("POST")

            def do_GET(self) -> None:
                self.route("GET")

            def do_DELETE(self) -> None:
                self.route("DELETE")

            def route(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                body = self._body()
                with fake.lock:
                    fake.requests.append((method, self.path))
                parts = url.path.strip("/").split("/")
                match parts:
                    case ["apis", "batch", "v1", "namespaces", ns, "jobs"] if method == "POST":
                        self.create(ns, json.loads(body))
                    case ["apis", "batch", "v1", "namespaces", ns, "jobs", name, "status"] if (
                        method == "GET"
                    ):
                        self.read_job(ns, name)
                    case ["apis", "batch", "v1", "namespaces", ns, "jobs", name] if (
                        method == "DELETE"
                    ):
                        self.delete(ns, name, query)
                    case ["api", "v1", "namespaces", ns, "pods"] if method == "GET":
                        self.list_pods(ns, query.get("labelSelector", ""))
                    case ["api", "v1", "namespaces", ns, "pods", pod, "log"] if method == "GET":
                        self.pod_log(ns, pod, query)
                    case _:
                        self._send(
                            404,
                            status_body(
                                404, "NotFound", "the server could not find the requested resource"
                            ),
                        )

            def create(self, ns: str, manifest: dict[str, Any]) -> None:
                job = k8s.V1Job.from_dict(manifest)  # what the server would decode
                assert job is not None and job.metadata is not None and job.spec is not None
                name = job.metadata.name or ""
                if not is_dns_label(name) or job.metadata.namespace not in (None, ns):
                    self._send(422, status_body(422, "Invalid", f'Job.batch "{name}" is invalid'))
                    return
                image = manifest["spec"]["template"]["spec"]["containers"][0]["image"]
                script = fake.scripts.get(image, Script())
                if script.refuse is not None:
                    code, reason, message = script.refuse
                    self._send(code, status_body(code, reason, message))
                    return
                with fake.lock:
                    if (ns, name) in fake.jobs:
                        self._send(
                            409,
                            status_body(
                                409, "AlreadyExists", f'jobs.batch "{name}" already exists'
                            ),
                        )
                        return
                    stored = FakeJob(manifest, script, time.monotonic(), time.time_ns())
                    fake.jobs[(ns, name)] = stored
                answer = json.loads(json.dumps(manifest))
                answer["metadata"].update(
                    uid=stored.uid,
                    resourceVersion="1",
                    generation=1,
                    creationTimestamp=rfc3339(stored.created_ns),
                )
                answer["status"] = {}
                self._send(201, answer)

            def _job(self, ns: str, name: str) -> FakeJob | None:
                with fake.lock:
                    job = fake.jobs.get((ns, name))
                if job is None:
                    self._send(
                        404,
                        status_body(404, "NotFound", f'jobs.batch "{name}" not found', name=name),
                    )
                return job

            def read_job(self, ns: str, name: str) -> None:
                job = self._job(ns, name)
                if job is None:
                    return
                job.status_reads += 1
                if job.status_reads <= job.script.status_errors:
                    self._send(500, status_body(500, "InternalError", "etcdserver: leader changed"))
                    return
                self._send(200, {**job.manifest, "status": job.status()})

            def delete(self, ns: str, name: str, query: dict[str, str]) -> None:
                job = self._job(ns, name)
                if job is None:
                    return
                with fake.lock:
                    del fake.jobs[(ns, name)]
                    job.deleted = True  # Background: the pods go right after
                details = {"name": name, "group": "batch", "kind": "jobs", "uid": job.uid}
                self._send(200, {**status_body(200, "", ""), "details": details})

            def list_pods(self, ns: str, selector: str) -> None:
                wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
                with fake.lock:
                    jobs = [j for (n, _), j in fake.jobs.items() if n == ns]
                pods = [p for p in (j.pod() for j in jobs) if p is not None]
                items = [
                    p
                    for p in pods
                    if all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())
                ]
                self._send(
                    200,
                    {
                        "kind": "PodList",
                        "apiVersion": "v1",
                        "metadata": {"resourceVersion": "7"},
                        "items": items,
                    },
                )

            def pod_log(self, ns: str, pod: str, query: dict[str, str]) -> None:
                with fake.lock:
                    found = [j for (n, _), j in fake.jobs.items() if n == ns and j.pod_name == pod]
                if not found or found[0].pod() is None:
                    self._send(404, status_body(404, "NotFound", f'pods "{pod}" not found'))
                    return
                job = found[0]
                if query.get("container") not in (None, CONTAINER):
                    self._send(400, status_body(400, "BadRequest", "container not valid"))
                    return
                if job.script.never_starts or job.age() < job.script.pending:
                    message = (
                        f'container "{CONTAINER}" in pod "{pod}" is waiting to start: '
                        + job.script.waiting
                    )
                    self._send(400, status_body(400, "BadRequest", message))
                    return
                stamps = query.get("timestamps") == "true"

                def line(i: int) -> bytes:
                    text = job.log_line(i)
                    return (text if stamps else text.partition(" ")[2]).encode()

                if query.get("follow") != "true":
                    data = b"".join(line(i) for i in range(job.lines_so_far()))
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                job.streams += 1
                limit = job.script.drop_stream_after if job.streams == 1 else None
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                sent = 0
                try:
                    while True:
                        ready = job.lines_so_far()
                        while sent < ready and (limit is None or sent < limit):
                            data = line(sent)
                            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                            self.wfile.flush()
                            sent += 1
                        over = job.pod_over() and sent >= job.lines_so_far()
                        if over or (limit is not None and sent >= limit):
                            break
                        time.sleep(0.005)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:
                    pass  # the client went away

        return Handler


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def output(self) -> list[str]:
        return [line for line in self.lines if not line.startswith("kubernetes: ")]


def executor(fake: FakeApiServer, **kw: Any) -> KubernetesExecutor:
    options: dict[str, Any] = dict(
        poll=0.02, max_poll=0.1, request_timeout=5.0, cancel_wait=2.0, drain=1.0
    )
    options.update(kw)
    return KubernetesExecutor("colony", api_client=fake.client(), **options)


def request(tmp_path: Path, image: str | None, *args: Any, **kw: Any) -> RunRequest:
    kwargs = {} if image is None else {"image": image}
    deadline = kw.pop("deadline", None)
    inputs = kw.pop("inputs", ())
    spec = FunctionSpec("work", args=args, kwargs=kwargs, **kw)
    return RunRequest(PID, spec, inputs, tmp_path, deadline)


async def run(ex: KubernetesExecutor, req: RunRequest) -> tuple[RunResult, Log]:
    log = Log()
    with trio.fail_after(10):
        result = await ex.run(req, log)
    return result, log


# --- runs against the stand-in ----------------------------------------------------------


async def test_a_job_that_succeeds_returns_its_log(fake: FakeApiServer, tmp_path: Path) -> None:
    lines = [f"line {i}" for i in range(12)]
    fake.scripts["ok:1"] = Script(lines=lines)
    result, log = await run(executor(fake), request(tmp_path, "ok:1", "a", 2, inputs=({"x": 1},)))
    assert result == RunResult(True, output=(0, "\n".join(lines)))
    assert log.output() == lines
    job = fake.job("colony-")
    assert is_dns_label(job.name) and job.name.startswith("colony-" + PID[:20])
    assert not job.deleted and fake.deletes() == []  # left for its ttlSecondsAfterFinished
    container = job.manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["work", "a", "2"]
    assert {"name": "COLONY_PROCESS_ID", "value": PID} in container["env"]
    assert {"name": "COLONY_INPUTS_JSON", "value": '[{"x": 1}]'} in container["env"]
    validate(job.manifest)
    assert any(line.startswith("kubernetes: created job colony/") for line in log.lines)


async def test_a_spec_env_reaches_the_container_only_as_far_as_the_config_allows(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.scripts["ok:1"] = Script(lines=["done"])
    env = {"LD_PRELOAD": "/x.so", "MODE": "fast", "FOO": "1"}
    ex = executor(fake, env_allowed=("MODE", "LD_*"))
    result, log = await run(ex, request(tmp_path, "ok:1", env=env))
    assert result.ok
    container = fake.job("colony-").manifest["spec"]["template"]["spec"]["containers"][0]
    names = {e["name"] for e in container["env"]}
    assert "MODE" in names and "LD_PRELOAD" not in names and "FOO" not in names
    assert log.lines[0].startswith("[env] not set, not allowed by this executor: FOO, LD_PRELOAD")


async def test_the_output_keeps_the_last_lines(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["many:1"] = Script(lines=[str(i) for i in range(30)], every=0.001)
    result, log = await run(executor(fake, tail_lines=5), request(tmp_path, "many:1"))
    assert result.ok and result.output == (0, "25\n26\n27\n28\n29")
    assert log.output() == [str(i) for i in range(30)]


async def test_a_job_that_fails_says_why(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["bad:1"] = Script(lines=["starting", "oops: no such file"], exit_code=3)
    result, log = await run(executor(fake), request(tmp_path, "bad:1"))
    assert not result.ok and result.output == ()
    why, tail = result.errors
    assert "BackoffLimitExceeded" in why and "Job has reached the specified backoff limit" in why
    assert "terminated: Error, exit code 3" in why
    assert tail == "starting\noops: no such file"
    assert log.output() == ["starting", "oops: no such file"]


async def test_an_oom_kill_is_named(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["big:1"] = Script(lines=["allocating"], exit_code=137, reason="OOMKilled")
    result, _ = await run(executor(fake), request(tmp_path, "big:1"))
    assert not result.ok and "terminated: OOMKilled, exit code 137" in result.errors[0]


async def test_past_its_deadline_the_job_is_deleted(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["loop:1"] = Script(lines=["tick"] * 1000, forever=True, every=0.05)
    result, log = await run(executor(fake), request(tmp_path, "loop:1", maxexectime=0.6))
    assert not result.ok and result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert "deadline" in result.errors[0] and "running" in result.errors[0]
    assert "tick" in result.errors[1]
    assert fake.jobs == {}
    (path,) = fake.deletes()
    assert "propagationPolicy=Background" in path
    assert any(line.startswith("kubernetes: deleted job") for line in log.lines)


async def test_the_clusters_own_deadline_is_reported(fake: FakeApiServer, tmp_path: Path) -> None:
    # activeDeadlineSeconds (walltime) fires before the executor's own deadline.
    fake.scripts["slow:1"] = Script(lines=["working"] * 100, every=0.1)
    req = request(tmp_path, "slow:1", conditions=Conditions(walltime=1))
    result, _ = await run(executor(fake), req)
    assert not result.ok and "DeadlineExceeded" in result.errors[0]
    assert "Job was active longer than specified deadline" in result.errors[0]
    assert "working" in result.errors[1]


async def test_a_pod_that_never_starts_is_reported_at_the_deadline(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.scripts["nope:1"] = Script(never_starts=True, waiting="ImagePullBackOff")
    result, log = await run(executor(fake), request(tmp_path, "nope:1", maxexectime=0.4))
    assert not result.ok and result.errors[0].startswith(KILLED_AT_DEADLINE)
    assert "waiting: ImagePullBackOff" in result.errors[0]
    assert any("waiting: ImagePullBackOff" in line for line in log.lines)
    assert fake.jobs == {} and len(fake.deletes()) == 1


async def test_cancellation_deletes_the_job(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["loop:2"] = Script(lines=["tick"] * 1000, forever=True, every=0.02)
    log = Log()
    ex = executor(fake)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def go() -> None:
                await ex.run(request(tmp_path, "loop:2"), log)
                raise AssertionError("run returned instead of being cancelled")

            nursery.start_soon(go)
            while "tick" not in log.lines:
                await trio.sleep(0.01)
            cancelled = fake.job().name
            nursery.cancel_scope.cancel()
    assert fake.jobs == {}
    (path,) = fake.deletes()
    assert "propagationPolicy=Background" in path
    assert any("(cancelled)" in line for line in log.lines)
    requests_after = len(fake.requests)
    # Control: another run, polled by the same loop against the same server for several
    # max_poll periods, ends; a poller of the cancelled run left behind would have asked
    # about its job meanwhile.
    fake.scripts["ok:2"] = Script(lines=["x"] * 8, every=0.05)
    other = dataclasses.replace(request(tmp_path, "ok:2"), pid="ab" * 32)
    result, _ = await run(ex, other)
    assert result.ok
    later = [path for _, path in fake.requests[requests_after:]]
    assert sum("/jobs/colony-abab" in p and p.endswith("/status") for p in later) >= 3
    assert [p for p in later if cancelled in p] == []  # nothing of the run goes on polling


async def test_a_broken_log_stream_is_resumed_without_repeats(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    lines = [f"l{i}" for i in range(10)]
    # Lines 2..9 share one timestamp: the cursor must count them, not only compare.
    fake.scripts["drop:1"] = Script(lines=lines, drop_stream_after=4, every=0.02, stamp_step=0.0)
    result, log = await run(executor(fake), request(tmp_path, "drop:1"))
    assert result.ok and log.output() == lines
    assert fake.job().streams >= 2


async def test_a_missing_image_fails_without_any_api_call(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    result, log = await run(executor(fake), request(tmp_path, None, "x"))
    assert not result.ok and "kwargs.image" in result.errors[0]
    assert fake.requests == [] and log.lines == []
    # Nor does it need a cluster configuration to say so.
    no_cluster = KubernetesExecutor(kubeconfig=str(tmp_path / "absent"))
    result, _ = await run(no_cluster, request(tmp_path, None))
    assert not result.ok and "kwargs.image" in result.errors[0]


async def test_refusals_come_back_as_failed_results(fake: FakeApiServer, tmp_path: Path) -> None:
    fake.scripts["quota:1"] = Script(
        refuse=(403, "Forbidden", 'jobs.batch "x" is forbidden: exceeded quota: compute')
    )
    result, _ = await run(executor(fake), request(tmp_path, "quota:1"))
    assert not result.ok and "403" in result.errors[0] and "exceeded quota" in result.errors[0]
    result, _ = await run(executor(fake), request(tmp_path, "x:1", conditions=Conditions(nodes=3)))
    assert not result.ok and "nodes" in result.errors[0]
    allow = executor(fake, allowed_images=("registry.example/", "busybox:1.36"))
    result, _ = await run(allow, request(tmp_path, "evil.example/miner"))
    assert not result.ok and "allow-list" in result.errors[0]
    result, _ = await run(allow, request(tmp_path, "busybox:latest"))
    assert not result.ok and "allow-list" in result.errors[0]
    assert [m for m, _ in fake.requests] == ["POST"]
    result, _ = await run(executor(fake), request(tmp_path, "x:1", inputs=("y" * 40_000,)))
    assert not result.ok and "meta-filesystem" in result.errors[0]
    no_cluster = KubernetesExecutor(kubeconfig=str(tmp_path / "absent"))
    result, _ = await run(no_cluster, request(tmp_path, "busybox"))
    assert not result.ok and "no Kubernetes configuration" in result.errors[0]


async def test_a_job_deleted_by_someone_else_fails_the_run(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.scripts["loop:3"] = Script(lines=["tick"] * 1000, forever=True)
    log = Log()

    async def delete_soon() -> None:
        # once the run follows its job (its log streams), the job goes behind its back
        while "tick" not in log.lines:
            await trio.sleep(0.01)
        with fake.lock:
            fake.jobs.popitem()[1].deleted = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(delete_soon)
        with trio.fail_after(10):
            result = await executor(fake).run(request(tmp_path, "loop:3"), log)
    assert not result.ok and "deleted by someone else" in result.errors[0]


async def test_status_errors_are_waited_out_then_given_up(
    fake: FakeApiServer, tmp_path: Path
) -> None:
    fake.scripts["flaky:1"] = Script(lines=["fine"], status_errors=3)
    result, log = await run(executor(fake), request(tmp_path, "flaky:1"))
    assert result.ok and result.output == (0, "fine")
    assert sum("leader changed" in line for line in log.lines) == 3
    fake.scripts["blind:1"] = Script(lines=["tick"] * 1000, forever=True, status_errors=10**6)
    result, _ = await run(executor(fake, give_up=0.3), request(tmp_path, "blind:1"))
    assert not result.ok and "Unwatched" in result.errors[0] and "500" in result.errors[0]
    # Not left running with nobody watching it (the flaky one stays for its TTL).
    assert [j.script.forever for j in fake.jobs.values()] == [False]
    assert len(fake.deletes()) == 1


def test_the_executor_announces_itself() -> None:
    ex = KubernetesExecutor("ns", "k8s-gpu", api_client=k8s.ApiClient())
    assert ex.executortype == "k8s-gpu" and ex.functions() == () and ex.namespace == "ns"
    assert ex.hardware().nodes == 1
