"""The local API of real daemons serves its node's owner (issue "Zero trust inside the
colony"): another member's key may not submit, cancel or touch files through it, a
request signed for one node is refused by another, and the meta-filesystem's local
paths stay inside the configured directories, away from the node's home."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from cluster import FAST, Cluster, Node, cluster, wait_for

from colonyp2p.errors import ApiError
from colonyp2p.node.api_auth import sign_request
from colonyp2p.node.api_client import ApiClient

SPEC = {"funcname": "echo", "args": [1], "conditions": {"executortype": "nobody"}}


def _as(node: Node, key_of: Node) -> ApiClient:
    """A client of ``node``'s API signing with ``key_of``'s key."""
    url = str(node.runtime()["api"])
    return ApiClient(url, key_of.home.identity(), node=node.member_id, timeout=20.0)


def _refused(call: object) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def _owner_and_user(c: Cluster) -> tuple[Node, Node]:
    owner = c.found()
    user = c.join("user", owner, role="user")
    wait_for(lambda: owner.has_version(2), 30, "the owner to admit the user")
    return owner, user


def test_another_members_key_may_not_submit_cancel_or_touch_files(tmp_path: Path) -> None:
    """The attack, as it was run: the `user` member's key drove the owner's daemon to put
    the owner's identity.key into a label. Refused now, and so are submitting and
    cancelling; reading the node's status stays open to members."""
    with cluster(tmp_path / "c") as c:
        owner, user = _owner_and_user(c)
        pid = owner.submit(SPEC)["pid"]
        key = str(owner.home.identity_path)
        with _as(owner, user) as api:
            me, node = user.member_id, owner.member_id
            refusals = {
                "submit": _refused(lambda: api.submit(SPEC)),
                "fs put": _refused(lambda: api.fs("put", src=key, label="/stolen")),
                "fs get": _refused(lambda: api.fs("get", ref="/x", dest=str(tmp_path / "o"))),
                "cancel": _refused(lambda: api.cancel(pid)),
                "process": _refused(lambda: api.process(pid)),
            }
            assert api.status()["member_id"] == node
        for what, refused in refusals.items():
            assert (refused.status, refused.remote_code) == (403, "not_allowed"), what
            assert str(refused).startswith(f"{me} may not POST " if what != "process" else me)
            assert f"acts for the node's own key ({node}) only" in str(refused), what
            assert "api.allow in the node's config.json" in str(refused), what
        assert owner.call(lambda a: a.fs("ls"))["labels"] == []
        assert owner.process(pid)["state"] == "waiting"


def test_a_request_signed_for_one_node_is_refused_by_another(tmp_path: Path) -> None:
    """B lets the owner's key act through its API (api.allow); a request the owner signed
    for its own node, captured and sent to B, is refused there all the same."""
    with cluster(tmp_path / "c") as c:
        owner = c.found()
        b = c.join("b", owner, start=False)
        config = b.home.config()
        config.api = {"allow": [owner.member_id]}
        b.home.save_config(config)
        b.start()
        body = json.dumps(SPEC).encode()
        identity = owner.home.identity()

        def post(node: Node, headers: dict[str, str]) -> httpx.Response:
            url = str(node.runtime()["api"]) + "/v1/processes"
            headers = {**headers, "Content-Type": "application/json"}
            return httpx.post(url, content=body, headers=headers, timeout=20, trust_env=False)

        for_owner = sign_request(identity, "POST", "/v1/processes", body, time.time())
        replayed = post(b, for_owner)
        assert replayed.status_code == 401
        assert replayed.json()["error"] == {
            "code": "wrong_node",
            "message": f"this request was signed for node {owner.member_id}, not for this "
            f"node ({b.member_id}); sign it with X-Colony-Node set to the member id of the "
            "node you call",
        }
        assert post(owner, for_owner).status_code == 201  # where it was meant to go
        # the key may act at B: signed for B, B takes it
        for_b = sign_request(identity, "POST", "/v1/processes", body, time.time(), b.member_id)
        assert post(b, for_b).status_code == 201


def test_the_file_system_stays_inside_its_directories(tmp_path: Path) -> None:
    """With the node's own key: never its home (its key), nothing outside mfs.paths
    (the tests allow the temporary directory), no way round through a link or '..'."""
    with cluster(tmp_path / "c") as c:
        owner = c.found()
        home = owner.home.root.resolve()
        key = home / "identity.key"
        ok = tmp_path / "data"
        ok.mkdir()
        (ok / "a.txt").write_text("a")
        (tmp_path / "link").symlink_to(home)
        outside = Path("/etc/hostname") if Path("/etc/hostname").exists() else Path("/etc")
        allowed = os.path.realpath(tempfile.gettempdir())  # what tests/cluster.py allows
        cases = {
            "key": (
                "put",
                {"src": str(key), "label": "/k"},
                f"src: {key} is or holds the node's home {home} (its key and config): the "
                "meta-filesystem never reads or writes there",
            ),
            "home's parent": (
                "put",
                {"src": str(home.parent), "label": "/k"},
                f"src: {home.parent} is or holds the node's home {home} (its key and "
                "config): the meta-filesystem never reads or writes there",
            ),
            "through a link": (
                "put",
                {"src": str(tmp_path / "link" / "identity.key"), "label": "/k"},
                f"src: {tmp_path / 'link' / 'identity.key'} goes through a symbolic link "
                f"(to {key}): give the real path",
            ),
            "through ..": (
                "put",
                {"src": f"{ok}/../c/owner/identity.key", "label": "/k"},
                f"src: {ok}/../c/owner/identity.key goes through '..': give the path itself",
            ),
            "outside": (
                "put",
                {"src": str(outside), "label": "/k"},
                f"src: {outside} is outside the directories this node's meta-filesystem may "
                f"use ({allowed}); add a directory to mfs.paths in the node's config.json "
                "to allow it",
            ),
            "write outside": (
                "get",
                {"ref": "/d", "dest": "/etc/colonyp2p-test"},
                "dest: /etc/colonyp2p-test is outside the directories this node's "
                f"meta-filesystem may use ({allowed}); add a directory to mfs.paths in the "
                "node's config.json to allow it",
            ),
            "sync into the home": (
                "sync",
                {"label": "/d", "dir": str(home / "mfs")},
                f"dir: {home / 'mfs'} is or holds the node's home {home} (its key and config):"
                " the meta-filesystem never reads or writes there",
            ),
        }
        with owner.api() as api:
            for what, (op, args, message) in cases.items():
                refused = _refused(lambda op=op, args=args: api.fs(op, **args))
                assert (refused.status, refused.remote_code) == (403, "path_refused"), what
                assert str(refused) == message, what
            job = api.fs("put", src=str(ok), label="/d")["job"]
            done = wait_for(
                lambda: (j := api.fs_job(job))["state"] != "running" and j, 30, "the put"
            )
            assert done["state"] == "done", done
            assert not Path("/etc/colonyp2p-test").exists()
        assert [lb["path"] for lb in owner.call(lambda a: a.fs("ls"))["labels"]] == ["/d"]


def test_a_submitter_over_its_quota_is_told_so_and_nothing_is_kept(tmp_path: Path) -> None:
    """Quotas per member: the keepers (here the owner alone) store at most
    ``max_waiting_per_submitter`` waiting processes of one submitter; the next is
    answered 429 with why, is not kept, and the node carries on."""
    with cluster(tmp_path / "c") as c:
        owner = c.found("nobody-runs-this", params={**FAST, "max_waiting_per_submitter": 2})
        kept = [owner.submit(SPEC)["pid"] for _ in range(2)]
        refused = _refused(lambda: owner.call(lambda a: a.submit(SPEC)))
        assert (refused.status, refused.remote_code) == (429, "over_quota")
        assert "too many waiting processes" in str(refused)
        status = owner.call(lambda a: a.status())
        assert status["records"] == 2
        assert status["rejected"]["store_quota"] == 1
        assert [owner.process(pid)["state"] for pid in kept] == ["waiting", "waiting"]
