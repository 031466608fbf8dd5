"""README.md and docs/DAEMON.md: a member's executor may be a Kubernetes one
(config.json ``executor.kind = "kubernetes"``), built by the executor factory inside the
daemon. Here a daemon of that kind runs processes submitted by another member as Jobs
of the stand-in API server of tests/test_kubernetes_executor.py, which it finds through
its kubeconfig (``KUBECONFIG``), and their output, log lines and failures come back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import Node, cluster, wait_for
from test_kubernetes_executor import FakeApiServer, Script

pytestmark = pytest.mark.slow


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def _kubeconfig(path: Path, port: int) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
        "current-context": "fake",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def _serves(owner: Node, member: Node) -> bool:
    return any(
        m["member_id"] == member.member_id and m["executor"] for m in owner.members()["members"]
    )


def test_a_kubernetes_executor_in_a_daemon_runs_jobs(
    fake: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the daemon finds the API server through its kubeconfig, not in a cluster
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "kubeconfig", fake.port)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    fake.scripts["ok:1"] = Script(lines=["hello from the pod", "bye"])
    fake.scripts["bad:1"] = Script(lines=["oops: no such file"], exit_code=3)
    with cluster(tmp_path / "c") as c:
        owner = c.found()
        kube = c.join("kube", owner, executortype="k8s", kind="kubernetes", start=False)
        config = kube.home.config()
        assert config.executor is not None and config.executor.kind == "kubernetes"
        config.executor.namespace = "colony"
        kube.home.save_config(config)
        kube.start()
        wait_for(lambda: _serves(owner, kube), 30, "the owner to know the kubernetes executor")

        def submit(image: str, *args: Any) -> str:
            spec = {
                "funcname": "work",
                "args": list(args),
                "kwargs": {"image": image},
                "conditions": {"executortype": "k8s"},
            }
            return str(owner.submit(spec)["pid"])

        ok = submit("ok:1", "a", 2)
        done = wait_for(lambda: owner.finished(ok), 60, "the job's process")
        assert done["state"] == "successful", done["errors"]
        assert done["output"] == [0, "hello from the pod\nbye"]
        assert done["executor"] == kube.member_id
        job = fake.job("colony-" + ok[:20])
        assert job.manifest["metadata"]["namespace"] == "colony"
        container = job.manifest["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "ok:1" and container["command"] == ["work", "a", "2"]
        assert {"name": "COLONY_PROCESS_ID", "value": ok} in container["env"]
        # the pod's lines reach the submitter
        wait_for(
            lambda: {"hello from the pod", "bye"} <= set(owner.process(ok)["logs"]),
            30,
            "the pod's lines on the owner",
        )

        bad = submit("bad:1")
        failed = wait_for(lambda: owner.finished(bad), 60, "the failing job's process")
        assert failed["state"] == "failed"
        assert any("exit code 3" in error for error in failed["errors"]), failed["errors"]
        assert any("oops: no such file" in error for error in failed["errors"])
