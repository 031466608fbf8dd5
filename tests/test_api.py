"""The node's local API: every route answers the node's own signed request, anything
unsigned, forged, stale, replayed, signed for another node or from a non-member is
refused before the backend sees it, another member may only read what is open to
members unless the node allows it, malformed and oversize input gets a JSON error, the
event stream ends when its client leaves, and garbage on the socket never takes the
server down."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import h11
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonyp2p.errors import ApiError, DaemonNotRunning, ReplayedMessage, ValidationError
from colonyp2p.identity import Identity
from colonyp2p.node.api import OPEN_TO_MEMBERS, ROUTES, ApiServer, Limits
from colonyp2p.node.api_auth import (
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SIGNED_HEADERS,
    NonceCache,
    sign_request,
)
from colonyp2p.node.api_client import ApiClient

MEMBER = Identity.from_seed(bytes([1]) * 32)  # the node's own key
OUTSIDER = Identity.from_seed(bytes([2]) * 32)
OTHER = Identity.from_seed(bytes([3]) * 32)  # another member of the colony
NODE = MEMBER.member_id
TIMEOUT = 10.0
T = TypeVar("T")

SPEC = {"funcname": "echo", "args": [1, 2], "conditions": {"executortype": "edge"}}
WORKFLOW = {"colonyname": "dev", "functionspecs": [SPEC]}
EVENT_LOG: list[dict[str, Any]] = [
    {"seq": n, "type": "state", "pid": "p1", "state": "waiting"} for n in range(1, 6)
]


class FakeBackend:
    """Records every call but ``is_member``, so a test can tell the backend was not reached."""

    node_id = NODE

    def __init__(self) -> None:
        self.members_ids = {MEMBER.member_id, OTHER.member_id}
        self.allowed: set[str] = set()  # config api.allow, as the daemon reads it
        self.calls: list[tuple[Any, ...]] = []
        self.procs: dict[str, dict[str, Any]] = {}
        self.crash = False
        self.subscribed = trio.Event()
        self.events_closed = trio.Event()
        self.live_send, self.live = trio.open_memory_channel[dict[str, Any]](100)

    def is_member(self, member_id: str) -> bool:
        return member_id in self.members_ids

    def may_act(self, member_id: str) -> bool:
        return member_id in self.allowed

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.crash:
            raise RuntimeError("disk /secret/path/node.db is corrupt")

    async def status(self) -> dict[str, Any]:
        self._called("status")
        return {"member": MEMBER.member_id, "peers": 3}

    async def members(self) -> dict[str, Any]:
        self._called("members")
        return {"version": 2, "members": [{"id": MEMBER.member_id, "role": "owner"}]}

    async def submit(self, spec: dict[str, Any], submitter: str) -> dict[str, Any]:
        self._called("submit", spec, submitter)
        if "funcname" not in spec:
            raise ValidationError("is required", "funcname")
        pid = f"p{len(self.procs) + 1}"
        self.procs[pid] = {"pid": pid, "state": "waiting", "spec": spec}
        return {"pid": pid}

    async def submit_workflow(self, workflow: dict[str, Any], submitter: str) -> dict[str, Any]:
        self._called("submit_workflow", workflow, submitter)
        return {"pids": ["w1"]}

    async def submit_many(self, body: dict[str, Any], submitter: str) -> dict[str, Any]:
        self._called("submit_many", body, submitter)
        return {"pids": [f"b{i}" for i in range(len(body["specs"]))]}

    async def process(self, pid: str) -> dict[str, Any] | None:
        self._called("process", pid)
        return self.procs.get(pid)

    async def processes(self, state: str | None) -> list[dict[str, Any]]:
        self._called("processes", state)
        return [p for p in self.procs.values() if state in (None, p["state"])]

    async def cancel(self, pid: str, member: str) -> dict[str, Any] | None:
        self._called("cancel", pid, member)
        if pid not in self.procs:
            return None
        self.procs[pid]["state"] = "failed"
        return self.procs[pid]

    async def invite(self, request: dict[str, Any], member: str) -> dict[str, Any]:
        self._called("invite", request, member)
        return {"ticket": "colony-ticket:x", "role": request["role"]}

    async def approve(
        self, member_id: str, request: dict[str, Any], member: str
    ) -> dict[str, Any] | None:
        self._called("approve", member_id, request, member)
        return {"version": 3} if member_id == "asked" else None

    async def revoke(self, member_id: str, member: str) -> dict[str, Any] | None:
        self._called("revoke", member_id, member)
        return {"version": 4} if member_id in self.members_ids else None

    async def fs(self, op: str, request: dict[str, Any], member: str) -> dict[str, Any]:
        self._called("fs", op, request, member)
        return {"job": "j1"} if op == "put" else {"labels": []}

    async def fs_job(self, job_id: str) -> dict[str, Any] | None:
        self._called("fs_job", job_id)
        return {"job": job_id, "state": "done"} if job_id == "j1" else None

    async def events(self, since: int) -> AsyncIterator[list[dict[str, Any]]]:
        self._called("events", since)
        try:
            kept = [event for event in EVENT_LOG if event["seq"] > since]
            if kept:
                yield kept
            self.subscribed.set()
            async for event in self.live:
                yield [event]
        finally:
            self.events_closed.set()


@dataclass
class Api:
    server: ApiServer
    backend: FakeBackend
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, identity: Identity = MEMBER) -> ApiClient:
        return ApiClient(self.url, identity, node=NODE, timeout=5.0)


async def start(nursery: trio.Nursery, limits: Limits | None = None) -> Api:
    backend = FakeBackend()
    server = ApiServer(backend, limits)
    port = await nursery.start(server.serve)
    return Api(server, backend, port)


@pytest.fixture
async def api(nursery: trio.Nursery) -> Api:
    return await start(nursery)


async def in_thread(fn: Callable[[], T]) -> T:
    # trio-typing's stub predates abandon_on_cancel; without it fail_after could not
    # end a test whose client hangs in its thread.
    run: Any = trio.to_thread.run_sync
    result: T = await run(fn, abandon_on_cancel=True)
    return result


# --- a raw HTTP client on trio sockets, to send what ApiClient never would ------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    chunks: list[bytes] = field(default_factory=list)

    def error(self) -> dict[str, str]:
        error = json.loads(self.body)["error"]
        assert set(error) == {"code", "message"}
        return {str(k): str(v) for k, v in error.items()}


def signed(
    method: str,
    target: str,
    body: bytes = b"",
    identity: Identity = MEMBER,
    now: float | None = None,
    node: str = NODE,
) -> dict[str, str]:
    return sign_request(identity, method, target, body, time.time() if now is None else now, node)


async def raw_request(
    port: int, method: str, target: str, headers: dict[str, str], body: bytes = b""
) -> Reply:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    head = [("Host", "127.0.0.1"), ("Content-Length", str(len(body))), *headers.items()]
    async with stream:
        await stream.send_all(conn.send(h11.Request(method=method, target=target, headers=head)))
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
        reply: Reply | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some())
            elif isinstance(event, h11.Response):
                names = {k.decode().lower(): v.decode() for k, v in event.headers}
                reply = Reply(event.status_code, names)
            elif isinstance(event, h11.Data):
                assert reply is not None
                reply.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert reply is not None
                return reply
            else:
                raise AssertionError(f"unexpected {event!r}")


async def send_raw(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and return everything the server answers until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    answer = b""
    async with stream:
        try:
            await stream.send_all(data)
            await stream.send_eof()
            while chunk := await stream.receive_some():
                answer += chunk
        except trio.BrokenResourceError:
            pass  # the server may close before taking all the garbage
    return answer


# --- happy paths -----------------------------------------------------------------


async def test_every_route_answers_a_member(api: Api) -> None:
    def session() -> dict[str, Any]:
        with api.client() as client:
            submitted = client.submit(SPEC)
            pid = submitted["pid"]
            return {
                "status": client.status(),
                "members": client.members(),
                "submitted": submitted,
                "workflow": client.submit_workflow(WORKFLOW),
                "many": client.submit_many([SPEC, SPEC]),
                "all": client.processes(),
                "waiting": client.processes("waiting"),
                "running": client.processes(state="running"),
                "one": client.process(pid),
                "cancelled": client.cancel(pid),
            }

    with trio.fail_after(TIMEOUT):
        got = await in_thread(session)
    me = MEMBER.member_id
    assert got["status"] == {"member": me, "peers": 3}
    assert got["members"]["version"] == 2
    assert got["submitted"] == {"pid": "p1"}
    assert got["workflow"] == {"pids": ["w1"]}
    assert got["many"] == {"pids": ["b0", "b1"]}
    assert [p["pid"] for p in got["all"]] == ["p1"] == [p["pid"] for p in got["waiting"]]
    assert got["running"] == []
    assert got["one"] == {"pid": "p1", "state": "waiting", "spec": SPEC}
    assert got["cancelled"]["state"] == "failed"
    calls = api.backend.calls
    assert ("submit", SPEC, me) in calls
    assert ("submit_workflow", WORKFLOW, me) in calls
    assert ("submit_many", {"specs": [SPEC, SPEC]}, me) in calls
    assert ("processes", None) in calls and ("processes", "waiting") in calls
    assert ("cancel", "p1", me) in calls


async def test_membership_routes_reach_the_backend(api: Api) -> None:
    me = MEMBER.member_id

    def session() -> dict[str, Any]:
        with api.client() as client:
            out: dict[str, Any] = {
                "invite": client.invite("executor", 3600),
                "approve": client.approve("asked", "user"),
                "revoke": client.revoke(me),
            }
            calls: list[tuple[str, Callable[[], object]]] = [
                ("approve_unknown", lambda: client.approve("nobody", "user")),
                ("revoke_unknown", lambda: client.revoke("nobody")),
            ]
            for name, call in calls:
                try:
                    call()
                except ApiError as exc:
                    out[name] = exc.status
            return out

    with trio.fail_after(TIMEOUT):
        got = await in_thread(session)
    assert got["invite"] == {"ticket": "colony-ticket:x", "role": "executor"}
    assert got["approve"] == {"version": 3} and got["revoke"] == {"version": 4}
    assert got["approve_unknown"] == 404 == got["revoke_unknown"]
    calls = api.backend.calls
    assert ("invite", {"role": "executor", "valid_for": 3600}, me) in calls
    assert ("approve", "asked", {"role": "user"}, me) in calls


async def test_submit_answers_201_as_json(api: Api) -> None:
    body = json.dumps(SPEC).encode()
    with trio.fail_after(TIMEOUT):
        reply = await raw_request(
            api.port, "POST", "/v1/processes", signed("POST", "/v1/processes", body), body
        )
    assert reply.status == 201
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == {"pid": "p1"}


async def test_a_pid_is_one_path_segment_whatever_it_holds(api: Api) -> None:
    api.backend.procs["a/b?c"] = {"pid": "a/b?c", "state": "running"}
    with trio.fail_after(TIMEOUT), api.client() as client:
        got = await in_thread(lambda: client.process("a/b?c"))
    assert got["state"] == "running"
    assert ("process", "a/b?c") in api.backend.calls


# --- errors from the backend ---------------------------------------------------


async def test_an_invalid_spec_is_400_with_the_models_message(api: Api) -> None:
    with trio.fail_after(TIMEOUT), api.client() as client, pytest.raises(ApiError) as caught:
        await in_thread(lambda: client.submit({"args": [1]}))
    assert caught.value.status == 400
    assert caught.value.remote_code == "invalid"
    assert str(caught.value) == "funcname: is required"


async def test_an_unknown_process_is_404(api: Api) -> None:
    with trio.fail_after(TIMEOUT), api.client() as client:
        for call in (lambda: client.process("nope"), lambda: client.cancel("nope")):
            with pytest.raises(ApiError) as caught:
                await in_thread(call)
            assert (caught.value.status, caught.value.remote_code) == (404, "not_found")
            assert "nope" in str(caught.value)


async def test_a_failing_backend_is_500_without_its_details(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    api.backend.crash = True
    with trio.fail_after(TIMEOUT), api.client() as client:
        with pytest.raises(ApiError) as caught:
            await in_thread(client.status)
        assert caught.value.status == 500
        assert "secret" not in str(caught.value)
        assert "secret" in caplog.text  # the operator still finds it in the log
        api.backend.crash = False
        assert (await in_thread(client.status))["peers"] == 3


# --- refused before the backend --------------------------------------------------


def _forged(headers: dict[str, str]) -> dict[str, str]:
    signature = bytearray.fromhex(headers[SIGNATURE_HEADER])
    signature[0] ^= 1
    return {**headers, SIGNATURE_HEADER: signature.hex()}


REFUSALS: dict[str, tuple[Callable[[], dict[str, str]], int, str]] = {
    "unsigned": (lambda: {}, 401, "bad_signature"),
    "partly signed": (
        lambda: {k: v for k, v in signed("GET", "/v1/status").items() if k != NONCE_HEADER},
        401,
        "bad_signature",
    ),
    "forged": (lambda: _forged(signed("GET", "/v1/status")), 401, "bad_signature"),
    "signed for another path": (lambda: signed("GET", "/v1/members"), 401, "bad_signature"),
    "stale": (lambda: signed("GET", "/v1/status", now=time.time() - 300), 401, "replay"),
    "from the future": (lambda: signed("GET", "/v1/status", now=time.time() + 300), 401, "replay"),
    "short nonce": (
        lambda: {**signed("GET", "/v1/status"), NONCE_HEADER: "ab"},
        401,
        "bad_signature",
    ),
    "non-member": (lambda: signed("GET", "/v1/status", identity=OUTSIDER), 403, "not_member"),
    "signed for another node": (
        lambda: signed("GET", "/v1/status", node=OTHER.member_id),
        401,
        "wrong_node",
    ),
    "no target node": (
        lambda: {k: v for k, v in signed("GET", "/v1/status").items() if k != NODE_HEADER},
        401,
        "bad_signature",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refused_requests_never_reach_the_backend(api: Api, case: str) -> None:
    make_headers, status, code = REFUSALS[case]
    with trio.fail_after(TIMEOUT):
        reply = await raw_request(api.port, "GET", "/v1/status", make_headers())
    assert reply.status == status
    assert reply.error()["code"] == code
    assert api.backend.calls == []


async def test_a_replayed_request_is_refused(api: Api) -> None:
    body = json.dumps(SPEC).encode()
    headers = signed("POST", "/v1/processes", body)
    with trio.fail_after(TIMEOUT):
        first = await raw_request(api.port, "POST", "/v1/processes", headers, body)
        again = await raw_request(api.port, "POST", "/v1/processes", headers, body)
    assert first.status == 201
    assert (again.status, again.error()["code"]) == (401, "replay")
    assert [c[0] for c in api.backend.calls] == ["submit"]


async def test_the_client_reports_refusals_with_the_servers_message(api: Api) -> None:
    with (
        trio.fail_after(TIMEOUT),
        api.client(OUTSIDER) as client,
        pytest.raises(ApiError) as caught,
    ):
        await in_thread(client.status)
    assert caught.value.status == 403
    assert str(caught.value) == f"{OUTSIDER.member_id} is not a member of this colony"


# --- who may act through the node -------------------------------------------------


def _not_allowed(member: str, method: str, path: str) -> str:
    return (
        f"{member} may not {method} {path} on this node: its local API acts for the node's "
        f"own key ({NODE}) only; to let another key act through it, list its member id "
        '(or "admins") in api.allow in the node\'s config.json'
    )


async def test_another_member_may_only_read_what_is_open_to_members(api: Api) -> None:
    """The attack: with another member's key (a `user`, as another OS user), the owner's
    daemon put its own identity.key into a label, wrote into a root-only directory, and
    signed specs with the node's key. Every route that signs, submits, cancels, changes
    membership, touches files or shows the owner's data is the node's own key's."""
    api.backend.procs["p1"] = {"pid": "p1", "state": "running"}
    for method, template, handler in ROUTES:
        if handler == "openapi":
            continue
        target = template.replace("{pid}", "put" if handler == "fs" else "p1")
        body = b"{}" if method == "POST" else b""
        headers = signed(method, target, body, identity=OTHER)
        with trio.fail_after(TIMEOUT):
            reply = await raw_request(api.port, method, target, headers, body)
        if handler in OPEN_TO_MEMBERS:
            assert reply.status == 200, (target, reply.body)
            continue
        assert reply.status == 403, (target, reply.body)
        assert reply.error() == {
            "code": "not_allowed",
            "message": _not_allowed(OTHER.member_id, method, target),
        }
    assert sorted(c[0] for c in api.backend.calls) == sorted(OPEN_TO_MEMBERS)


async def test_the_client_names_the_key_and_the_setting_when_refused(api: Api) -> None:
    with trio.fail_after(TIMEOUT), api.client(OTHER) as client:
        for call, method, path in (
            (lambda: client.submit(SPEC), "POST", "/v1/processes"),
            (lambda: client.fs("put", src="/x", label="/l"), "POST", "/v1/fs/put"),
            (lambda: client.cancel("p1"), "POST", "/v1/processes/p1/cancel"),
        ):
            with pytest.raises(ApiError) as caught:
                await in_thread(call)
            assert (caught.value.status, caught.value.remote_code) == (403, "not_allowed")
            assert str(caught.value) == _not_allowed(OTHER.member_id, method, path)
    assert api.backend.calls == []


async def test_a_member_the_node_allows_acts_through_it(api: Api) -> None:
    api.backend.allowed.add(OTHER.member_id)
    with trio.fail_after(TIMEOUT), api.client(OTHER) as client:
        assert await in_thread(lambda: client.submit(SPEC)) == {"pid": "p1"}
    assert ("submit", SPEC, OTHER.member_id) in api.backend.calls


async def test_a_request_signed_for_one_node_is_refused_by_another(
    nursery: trio.Nursery,
) -> None:
    """Node B's server with a key that may act at both: what was signed for A is
    refused at B, before B's backend sees it."""
    a = await start(nursery)
    b_backend = FakeBackend()
    b_backend.node_id = OTHER.member_id
    b_backend.allowed.add(MEMBER.member_id)
    b_port = await nursery.start(ApiServer(b_backend).serve)
    body = json.dumps(SPEC).encode()
    headers = signed("POST", "/v1/processes", body)  # for A, the node of MEMBER
    with trio.fail_after(TIMEOUT):
        at_b = await raw_request(b_port, "POST", "/v1/processes", headers, body)
        at_a = await raw_request(a.port, "POST", "/v1/processes", headers, body)
    assert at_b.status == 401
    assert at_b.error() == {
        "code": "wrong_node",
        "message": f"this request was signed for node {NODE}, not for this node "
        f"({OTHER.member_id}); sign it with X-Colony-Node set to the member id of the "
        "node you call",
    }
    assert b_backend.calls == []
    assert at_a.status == 201  # the same request where it was meant to go


# --- malformed and oversize input ------------------------------------------------


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"x": NaN}', b"\xff\xfe", b""])
async def test_a_body_that_is_not_a_json_object_is_400(api: Api, body: bytes) -> None:
    with trio.fail_after(TIMEOUT):
        reply = await raw_request(
            api.port, "POST", "/v1/processes", signed("POST", "/v1/processes", body), body
        )
    assert (reply.status, reply.error()["code"]) == (400, "malformed")
    assert api.backend.calls == []


async def test_a_body_declared_too_large_is_413_before_it_is_sent(api: Api) -> None:
    head = b"POST /v1/processes HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n"
    with trio.fail_after(TIMEOUT):
        answer = await send_raw(api.port, head)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b'"too_large"' in answer


async def test_a_chunked_body_growing_too_large_is_413(nursery: trio.Nursery) -> None:
    api = await start(nursery, Limits(max_body=1000))
    chunk = b"%x\r\n%s\r\n" % (600, b"x" * 600)
    head = b"POST /v1/processes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with trio.fail_after(TIMEOUT):
        answer = await send_raw(api.port, head + chunk * 2 + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_headers_too_large_are_431(api: Api) -> None:
    head = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    with trio.fail_after(TIMEOUT):
        answer = await send_raw(api.port, head)
    assert answer.startswith(b"HTTP/1.1 431 ")


async def test_unknown_paths_methods_and_parameters(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        missing = await raw_request(api.port, "GET", "/v1/nothing", signed("GET", "/v1/nothing"))
        wrong = await raw_request(api.port, "DELETE", "/v1/status", {})
        state = "/v1/processes?state=sleeping"
        bad_state = await raw_request(api.port, "GET", state, signed("GET", state))
        since = "/v1/events?since=-1"
        bad_since = await raw_request(api.port, "GET", since, signed("GET", since))
    assert (missing.status, missing.error()["code"]) == (404, "not_found")
    assert (wrong.status, wrong.headers["allow"]) == (405, "GET")
    assert bad_state.status == 400 and "waiting" in bad_state.error()["message"]
    assert bad_since.status == 400
    assert api.backend.calls == []


async def test_a_slow_client_is_timed_out_and_an_idle_one_closed(nursery: trio.Nursery) -> None:
    api = await start(nursery, Limits(request_timeout=0.3))
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", api.port)
        async with stream:
            await stream.send_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
        idle = await trio.open_tcp_stream("127.0.0.1", api.port)
        async with idle:
            quietly_closed = await idle.receive_some()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert quietly_closed == b""


async def test_connections_over_the_limit_are_turned_away(nursery: trio.Nursery) -> None:
    api = await start(nursery, Limits(max_connections=2))
    with trio.fail_after(TIMEOUT):
        idle = [await trio.open_tcp_stream("127.0.0.1", api.port) for _ in range(2)]
        # A request on an idle connection proves the server has taken both.
        await idle[0].send_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await idle[0].receive_some()).startswith(b"HTTP/1.1 200 ")
        answer = await send_raw(api.port, b"")
        for stream in idle:
            await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 503 ")


def test_the_server_listens_on_loopback_only() -> None:
    async def main() -> None:
        await ApiServer(FakeBackend()).serve("0.0.0.0")

    with pytest.raises(ValueError, match="loopback"):
        trio.run(main)


# --- the event stream --------------------------------------------------------------


async def test_the_event_stream_delivers_in_order_and_ends_when_the_client_leaves(
    api: Api,
) -> None:
    live = {"seq": 6, "type": "log", "pid": "p1", "line": "hello"}

    def read_five() -> list[dict[str, Any]]:
        with api.client() as client:
            stream = client.events(since=1)
            got = [next(stream) for _ in range(5)]
            stream.close()  # hangs up mid-stream
            return got

    async def feed_live_event() -> None:
        await api.backend.subscribed.wait()
        await api.backend.live_send.send(live)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed_live_event)
            got = await in_thread(read_five)
        await api.backend.events_closed.wait()
        with api.client() as client:
            assert (await in_thread(client.status))["peers"] == 3
    assert got == [*EVENT_LOG[1:], live]
    assert ("events", 1) in api.backend.calls


async def test_the_event_stream_is_chunked_ndjson(api: Api) -> None:
    target = "/v1/events?since=3"
    request = h11.Request(
        method="GET", target=target, headers=[("Host", "x"), *signed("GET", target).items()]
    )
    conn = h11.Connection(h11.CLIENT)
    lines = b""
    with trio.fail_after(TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", api.port)
        async with stream:
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            while lines.count(b"\n") < 2:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some())
                elif isinstance(event, h11.Response):
                    headers = {k.lower(): v for k, v in event.headers}
                    assert event.status_code == 200
                    assert headers[b"transfer-encoding"] == b"chunked"
                    assert headers[b"content-type"] == b"application/x-ndjson"
                elif isinstance(event, h11.Data):
                    lines += event.data
        await api.backend.events_closed.wait()
    assert [json.loads(line) for line in lines.splitlines()] == EVENT_LOG[3:]


# --- discovery -----------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


async def test_the_openapi_document_lists_every_route_and_is_served_unsigned(api: Api) -> None:
    with trio.fail_after(TIMEOUT):
        reply = await raw_request(api.port, "GET", "/v1/openapi.json", {})
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert doc["openapi"].startswith("3.1")
    assert {"title", "version"} <= set(doc["info"])
    listed = {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}
    assert listed == {(method, template) for method, template, _ in ROUTES}
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert "200" in op["responses"] or "201" in op["responses"], path
            for param in op.get("parameters", []):
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path
    schemes = doc["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey"}
    assert {s["in"] for s in schemes.values()} == {"header"}
    assert {s["name"] for s in schemes.values()} == set(SIGNED_HEADERS)
    assert doc["security"] == [{name: [] for name in schemes}]
    assert doc["paths"]["/v1/openapi.json"]["get"]["security"] == []
    error = doc["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["code", "message"]
    for ref in _refs(doc):
        match = re.fullmatch(r"#/components/(\w+)/(\w+)", ref)
        assert match is not None and match[2] in doc["components"][match[1]], ref
    assert api.backend.calls == []


# --- garbage -------------------------------------------------------------------------

PREFIXES = [
    b"",
    b"GET ",
    b"POST /v1/processes HTTP/1.1\r\n",
    b"GET /v1/status HTTP/1.1\r\nHost: x\r\n",
    b"POST /v1/processes HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n",
    b"POST /v1/processes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(PREFIXES), garbage=st.binary(max_size=3000))
async def test_garbage_never_crashes_the_server(prefix: bytes, garbage: bytes) -> None:
    errors = _Errors()
    logging.getLogger("colonyp2p.node.api").addHandler(errors)
    try:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                api = await start(nursery)
                answer = await send_raw(api.port, prefix + garbage)
                reply = await raw_request(
                    api.port, "GET", "/v1/status", signed("GET", "/v1/status")
                )
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("colonyp2p.node.api").removeHandler(errors)
    assert answer == b"" or re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:100]
    assert reply.status == 200
    assert errors.records == []


# --- the client without a daemon ------------------------------------------------------


async def test_the_client_says_when_the_daemon_is_not_running() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    with trio.fail_after(TIMEOUT), ApiClient(f"http://127.0.0.1:{port}", MEMBER) as client:
        for call in (client.status, lambda: next(client.events())):
            with pytest.raises(DaemonNotRunning, match="colonynode start"):
                await in_thread(call)


# --- the replay window's memory ---------------------------------------------------------


def test_the_nonce_cache_forgets_only_what_the_window_refuses_anyway() -> None:
    cache = NonceCache(capacity=2, window=120)
    cache.check_and_add("m", "n1", timestamp=1000, now=1000)
    cache.check_and_add("m", "n2", timestamp=1010, now=1000)
    with pytest.raises(OverflowError):
        cache.check_and_add("m", "n3", timestamp=1000, now=1000)
    cache.check_and_add("other", "n3", timestamp=1121, now=1121)  # n1 has left the window
    assert len(cache) == 2
    with pytest.raises(ReplayedMessage):
        cache.check_and_add("m", "n2", timestamp=1010, now=1121)
