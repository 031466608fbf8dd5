"""The colonynode daemon's local API: HTTP/1.1 + JSON on 127.0.0.1, every request signed.

It lets the CLI, tools and other languages use a running node without linking
colonyp2p. It is small plain HTTP on h11 over trio streams rather than a web
framework, because the project runs all its concurrency on trio and the API
needs little: a handful of routes, strict limits, and one streaming route.

The server is hardened as if the loopback interface were hostile, because any
local user can reach it: requests are bounded in size and time, every request
but the OpenAPI document is signed by a colony member for this very node (see
api_auth), nothing reaches the backend before the signature, the target node, the
membership, the nonce and the caller's right to the route have been checked, and a
failure inside the node is answered 500 without its details.

The API serves its node's owner. The node signs what it submits with its own key and
reads and writes files as the daemon's user, so a caller acts with the node's
authority: by default only the node's own key (its home's identity.key) may. Other
member keys may too when the node's config.json lists them (``api.allow``: member
ids, or "admins" for the colony's owners and admins); any member may read the two
routes that show only what every member learns over the colony protocol anyway
(``OPEN_TO_MEMBERS``). Processes, their outputs and logs, events and fs jobs (local
paths) stay the owner's.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import parse_qs, unquote

import h11
import trio

from colonyp2p.errors import (
    BadSignature,
    OverQuota,
    ReplayedMessage,
    StoreFull,
    Unauthorized,
    ValidationError,
)
from colonyp2p.model.process import PROCESS_STATES
from colonyp2p.node.api_auth import NonceCache, verify_request
from colonyp2p.node.openapi import openapi_document

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
NDJSON_TYPE = "application/x-ndjson"
_RECEIVE_SIZE = 64 * 1024


class ApiBackend(Protocol):
    """What the daemon offers the API. Every member id passed in has been verified.

    ``submit``, ``submit_workflow`` and ``cancel`` raise ValidationError for input
    they refuse (answered 400 with its message) and Unauthorized for a member
    without the right (403). Any other exception is answered 500 and logged.
    """

    @property
    def node_id(self) -> str:
        """The node's own member id: the key it acts for, and the target requests name."""
        ...

    def is_member(self, member_id: str) -> bool: ...

    def may_act(self, member_id: str) -> bool:
        """Whether a member other than the node may act through the API (config)."""
        ...

    async def status(self) -> dict[str, Any]: ...

    async def members(self) -> dict[str, Any]: ...

    async def submit(self, spec: dict[str, Any], submitter: str) -> dict[str, Any]:
        """Create a process from a ColonyOS function spec; returns at least {"pid": ...}."""
        ...

    async def submit_workflow(self, workflow: dict[str, Any], submitter: str) -> dict[str, Any]: ...

    async def submit_many(self, body: dict[str, Any], submitter: str) -> dict[str, Any]:
        """Independent processes from {"specs": [function spec, ...]}, all or none;
        {"pids": [...]} in the same order."""
        ...

    async def process(self, pid: str) -> dict[str, Any] | None:
        """The process, or None if there is no such process (answered 404)."""
        ...

    async def processes(self, state: str | None) -> list[dict[str, Any]]: ...

    async def cancel(self, pid: str, member: str) -> dict[str, Any] | None:
        """Cancel on ``member``'s behalf; None if there is no such process (404)."""
        ...

    async def invite(self, request: dict[str, Any], member: str) -> dict[str, Any]:
        """A single-use join ticket ({"role", "valid_for"} seconds); {"ticket": ...}."""
        ...

    async def approve(
        self, member_id: str, request: dict[str, Any], member: str
    ) -> dict[str, Any] | None:
        """Admit a device that asked to join; None if it did not ask (404)."""
        ...

    async def revoke(self, member_id: str, member: str) -> dict[str, Any] | None:
        """Remove a member; None if there is no such member (404)."""
        ...

    async def fs(self, op: str, request: dict[str, Any], member: str) -> dict[str, Any]:
        """A meta-filesystem operation (``colonynode fs OP``); long ones answer {"job": id}."""
        ...

    async def fs_job(self, job_id: str) -> dict[str, Any] | None:
        """A meta-filesystem job's progress and result; None if unknown (404)."""
        ...

    def events(self, since: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Events (process state changes, logs) after sequence number ``since``, in
        order, then new ones as they happen, as many at a time as there are (each list
        is one write); the server closes it when the client leaves."""
        ...


@dataclass(frozen=True)
class Limits:
    max_body: int = 1 << 20
    max_header: int = 16 << 10
    # Time to receive one whole request (also how long an idle keep-alive connection
    # is kept), and to hand one response write to the kernel.
    request_timeout: float = 10.0
    write_timeout: float = 10.0
    max_connections: int = 256
    max_nonces: int = 100_000


# (method, path template, handler); the events and openapi routes are special-cased.
ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/v1/status", "status"),
    ("GET", "/v1/members", "members"),
    ("POST", "/v1/members/invite", "invite"),
    ("POST", "/v1/members/{pid}/approve", "approve"),
    ("POST", "/v1/members/{pid}/revoke", "revoke"),
    ("GET", "/v1/processes", "processes"),
    ("POST", "/v1/processes", "submit"),
    ("POST", "/v1/workflows", "submit_workflow"),
    ("POST", "/v1/processes/batch", "submit_many"),
    ("GET", "/v1/processes/{pid}", "process"),
    ("POST", "/v1/processes/{pid}/cancel", "cancel"),
    ("GET", "/v1/fs/jobs/{pid}", "fs_job"),
    ("POST", "/v1/fs/{pid}", "fs"),
    ("GET", "/v1/events", "events"),
    ("GET", "/v1/openapi.json", "openapi"),
)
# Routes any member may call: the node's public face (its id, addresses, counters) and
# the membership, both of which every member learns over the colony protocol anyway.
# Everything else signs, submits, cancels, changes membership, touches files, or shows
# what is the owner's (outputs, logs, events, local paths): the owner's alone by default.
OPEN_TO_MEMBERS = frozenset({"status", "members"})
_PATTERNS: dict[str, re.Pattern[str]] = {
    template: re.compile("^" + template.replace("{pid}", "(?P<pid>[^/]{1,128})") + "$")
    for _, template, _ in ROUTES
}


class Refusal(Exception):
    """A request answered with an error status and a JSON error body."""

    def __init__(self, status: int, code: str, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.close = close  # the request was not read to its end: the connection must go
        self.headers: list[tuple[str, str]] = []


def _refuse(status: int, code: str, message: str) -> NoReturn:
    raise Refusal(status, code, message)


@dataclass
class Request:
    method: str
    target: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, list[str]] = field(default_factory=dict)
    pid: str = ""
    member: str = ""

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        if values is None:
            return None
        if len(values) != 1:
            _refuse(400, "malformed", f"query parameter {name!r} given {len(values)} times")
        return values[0]

    def json_object(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise Refusal(400, "malformed", f"the body is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            _refuse(400, "malformed", "the body must be a JSON object")
        return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")


class ApiServer:
    """One API server over one backend; ``connections`` counts the open connections."""

    def __init__(
        self,
        backend: ApiBackend,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.limits = limits or Limits()
        self.clock = clock
        self.nonces = NonceCache(capacity=self.limits.max_nonces)
        self.connections = 0

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the local API listens on a loopback address only, not {host}")
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self.handle_connection, listeners)

    async def handle_connection(self, stream: trio.SocketStream) -> None:
        # serve_listeners lets a handler's exception crash the whole server, so
        # nothing may escape from here but cancellation.
        self.connections += 1
        try:
            conn = _Connection(self, stream)
            if self.connections > self.limits.max_connections:
                await conn.send_error(Refusal(503, "busy", "too many connections", close=True))
            else:
                await conn.run()
        except Exception as exc:
            if not _is_hangup(exc):
                log.exception("local API connection failed")
        finally:
            self.connections -= 1
            await trio.aclose_forcefully(stream)

    def authenticate(self, request: Request) -> None:
        now = self.clock()
        try:
            signed = verify_request(
                request.method,
                request.target,
                request.headers,
                request.body,
                now,
                self.backend.node_id,
            )
        except (BadSignature, ReplayedMessage) as exc:
            raise Refusal(401, exc.code, str(exc)) from None
        if not self.backend.is_member(signed.member):
            _refuse(403, "not_member", f"{signed.member} is not a member of this colony")
        try:
            self.nonces.check_and_add(signed.member, signed.nonce, signed.timestamp, now)
        except ReplayedMessage as exc:
            raise Refusal(401, exc.code, str(exc)) from None
        except OverflowError as exc:
            raise Refusal(503, "busy", str(exc)) from None
        request.member = signed.member

    def authorize(self, request: Request, handler: str) -> None:
        """403 unless the caller may use this route here (see the module's docstring)."""
        member, backend = request.member, self.backend
        if handler in OPEN_TO_MEMBERS or member == backend.node_id or backend.may_act(member):
            return
        _refuse(
            403,
            "not_allowed",
            f"{member} may not {request.method} {request.path} on this node: its local API "
            f"acts for the node's own key ({backend.node_id}) only; to let another key act "
            'through it, list its member id (or "admins") in api.allow in the node\'s '
            "config.json",
        )

    async def call(self, request: Request, handler: str) -> tuple[int, Any]:
        """The status and JSON body answering an authenticated, non-streaming request."""
        backend = self.backend
        if handler == "status":
            return 200, await backend.status()
        if handler == "members":
            return 200, await backend.members()
        if handler == "processes":
            state = request.query_value("state")
            if state is not None and state not in PROCESS_STATES:
                _refuse(400, "malformed", f"state must be one of {', '.join(PROCESS_STATES)}")
            return 200, {"processes": await backend.processes(state)}
        if handler == "submit":
            return 201, await backend.submit(request.json_object(), request.member)
        if handler == "submit_workflow":
            return 201, await backend.submit_workflow(request.json_object(), request.member)
        if handler == "submit_many":
            return 201, await backend.submit_many(request.json_object(), request.member)
        if handler == "invite":
            return 201, await backend.invite(request.json_object(), request.member)
        if handler == "fs":
            return 200, await backend.fs(request.pid, request.json_object(), request.member)
        if handler == "process":
            found = await backend.process(request.pid)
        elif handler == "approve":
            found = await backend.approve(request.pid, request.json_object(), request.member)
        elif handler == "revoke":
            found = await backend.revoke(request.pid, request.member)
        elif handler == "cancel":
            found = await backend.cancel(request.pid, request.member)
        elif handler == "fs_job":
            found = await backend.fs_job(request.pid)
        else:
            raise AssertionError(f"no handler {handler}")
        if found is None:
            what = {"approve": "member", "revoke": "member", "fs_job": "job"}.get(
                handler, "process"
            )
            _refuse(404, "not_found", f"no {what} {request.pid}")
        return 200, found


class _Connection:
    """One client connection: requests one after another (keep-alive), then close."""

    def __init__(self, server: ApiServer, stream: trio.SocketStream) -> None:
        self.server = server
        self.limits = server.limits
        self.stream = stream
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_header)

    async def run(self) -> None:
        while True:
            try:
                with trio.fail_after(self.limits.request_timeout):
                    request = await self._read_request()
            except trio.TooSlowError:
                # An idle keep-alive connection is closed quietly: a 408 there could be
                # taken by the client as the answer to the request it is about to send.
                if self.conn.their_state is not h11.IDLE or self.conn.trailing_data[0]:
                    await self.send_error(Refusal(408, "timeout", "request too slow", close=True))
                return
            except h11.RemoteProtocolError as exc:
                if exc.error_status_hint == 431:
                    refusal = Refusal(431, "too_large", "request headers too large", close=True)
                else:
                    refusal = Refusal(400, "malformed", "malformed HTTP", close=True)
                await self.send_error(refusal)
                return
            except Refusal as refusal:
                await self.send_error(refusal)
                return
            if request is None:
                return
            if not await self._answer(request):
                return
            if self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                return
            self.conn.start_next_cycle()

    async def _next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.conn.they_are_waiting_for_100_continue:
                await self._send(h11.InformationalResponse(status_code=100, headers=[]))
            self.conn.receive_data(await self.stream.receive_some(_RECEIVE_SIZE))

    async def _read_request(self) -> Request | None:
        head = await self._next_event()
        if isinstance(head, h11.ConnectionClosed):
            return None
        if not isinstance(head, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        # h11 bounds only a head still incomplete, and one read may bring a whole large
        # head: bound the parsed head too.
        if len(head.target) + sum(len(n) + len(v) + 4 for n, v in head.headers) > (
            self.limits.max_header
        ):
            raise h11.RemoteProtocolError("headers too large", error_status_hint=431)
        headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in head.headers}
        max_body = self.limits.max_body
        too_large = Refusal(413, "too_large", f"the body exceeds {max_body} bytes", close=True)
        # h11 has checked that Content-Length is digits; refuse before reading any body.
        if int(headers.get("content-length", "0")) > max_body:
            raise too_large
        body = bytearray()
        while not isinstance(event := await self._next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:  # chunked bodies declare no length
                    raise too_large
        # h11 only lets printable ASCII through in the request target.
        target = head.target.decode("ascii")
        method = head.method.decode("ascii")
        return Request(method, target, target.partition("?")[0], headers, bytes(body))

    async def _answer(self, request: Request) -> bool:
        """Answer one request; False if the connection must close afterwards."""
        try:
            handler = _route(request)
            if handler == "openapi":
                status, body = 200, openapi_document()
            else:
                self.server.authenticate(request)
                self.server.authorize(request, handler)
                if handler == "events":
                    return await self._stream_events(request)
                status, body = await self.server.call(request, handler)
        except Refusal as refusal:
            return await self.send_error(refusal)
        except ValidationError as exc:
            return await self.send_error(Refusal(400, exc.code, str(exc)))
        except Unauthorized as exc:
            return await self.send_error(Refusal(403, exc.code, str(exc)))
        except OverQuota as exc:
            return await self.send_error(Refusal(429, exc.code, str(exc)))
        except StoreFull as exc:
            # nothing was written, so nothing was acknowledged: the caller may try again
            # once there is room; the node itself carries on
            log.warning("local API: %s %s refused: %s", request.method, request.path, exc)
            return await self.send_error(Refusal(507, exc.code, str(exc)))
        except Exception:
            log.exception("local API: %s %s failed", request.method, request.path)
            return await self.send_error(Refusal(500, "internal", "internal error in the node"))
        try:
            payload = _json_bytes(body)
        except (TypeError, ValueError):
            log.exception("local API: %s %s answered non-JSON", request.method, request.path)
            return await self.send_error(Refusal(500, "internal", "internal error in the node"))
        return await self._send_body(status, payload, JSON_TYPE)

    async def _stream_events(self, request: Request) -> bool:
        since_text = request.query_value("since") or "0"
        if not since_text.isdigit() or len(since_text) > 18:
            _refuse(400, "malformed", "since must be a non-negative integer")
        events = self.server.backend.events(int(since_text))
        headers = [("Content-Type", NDJSON_TYPE), ("Cache-Control", "no-store")]
        # The stream only ends when the client leaves, so never offer keep-alive.
        headers.append(("Connection", "close"))
        await self._send(_response(200, headers))
        ended = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_for_hangup, nursery.cancel_scope)
                async for batch in events:
                    lines = b"".join(_json_bytes(event) + b"\n" for event in batch)
                    await self._send(h11.Data(data=lines))
                ended = True
                nursery.cancel_scope.cancel()
            if ended:
                await self._send(h11.EndOfMessage())
        except Exception as exc:
            if not _is_hangup(exc):
                raise
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await aclose()
        return False

    async def _watch_for_hangup(self, scope: trio.CancelScope) -> None:
        """Cancel ``scope`` when the client hangs up: while the stream waits for an
        event nothing is written, so a write error would come too late or never."""
        try:
            while await self.stream.receive_some(_RECEIVE_SIZE):
                pass  # a client does not talk during the stream; ignore it if it does
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def send_error(self, refusal: Refusal) -> bool:
        if refusal.status == 500:
            refusal.close = True
        body = _json_bytes({"error": {"code": refusal.code, "message": refusal.message}})
        if self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False  # a response is already under way: all we can do is hang up
        await self._send_body(refusal.status, body, JSON_TYPE, refusal.headers, refusal.close)
        return not refusal.close

    async def _send_body(
        self,
        status: int,
        body: bytes,
        content_type: str,
        extra: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> bool:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ]
        if close:
            headers.append(("Connection", "close"))
        await self._send(_response(status, headers), h11.Data(data=body), h11.EndOfMessage())
        return not close

    async def _send(self, *events: Any) -> None:
        # one write for the lot: a busy client's answers are a third of the node's time,
        # much of it in send syscalls
        data = b"".join(self.conn.send(event) or b"" for event in events)
        if data:
            with trio.fail_after(self.limits.write_timeout):
                await self.stream.send_all(data)


def _response(status: int, headers: list[tuple[str, str]]) -> h11.Response:
    return h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase)


_HANGUPS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


def _is_hangup(exc: BaseException) -> bool:
    """Whether ``exc`` only says that the client went away or stalled (not worth a log)."""
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.subgroup(lambda e: not isinstance(e, (BaseExceptionGroup, *_HANGUPS)))
        return rest is None
    return isinstance(exc, _HANGUPS)


def _route(request: Request) -> str:
    """The handler for the request's method and path; fills in the pid and query."""
    path, _, query = request.target.partition("?")
    allowed: list[str] = []
    for method, template, handler in ROUTES:
        match = _PATTERNS[template].match(path)
        if match is None:
            continue
        if method != request.method:
            allowed.append(method)
            continue
        request.pid = unquote(match.groupdict().get("pid", ""))
        try:
            request.query = parse_qs(query, keep_blank_values=True, strict_parsing=False)
        except ValueError:
            _refuse(400, "malformed", "unreadable query string")
        return handler
    if allowed:
        refusal = Refusal(405, "method_not_allowed", f"{path} takes {', '.join(allowed)}")
        refusal.headers.append(("Allow", ", ".join(allowed)))
        raise refusal
    _refuse(404, "not_found", f"no such path: {path}")


async def serve(
    backend: ApiBackend,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    limits: Limits | None = None,
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the local API until cancelled; ``task_status.started(port)`` once listening."""
    await ApiServer(backend, limits).serve(host, port, task_status=task_status)
