"""A synchronous client of the node's local API, for the CLI and for scripts.

Synchronous because its callers (typer commands, notebooks) are; it signs every
request with the member's key exactly as the server checks it (see api_auth) and
turns every failure into an ApiError with the node's own message, so that the
CLI can print it as it is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from colonyp2p.errors import ApiError, DaemonNotRunning
from colonyp2p.identity import Identity
from colonyp2p.node.api_auth import sign_request


class ApiClient:
    """Signed requests to one node: ``ApiClient("http://127.0.0.1:PORT", identity)``.

    ``node`` is the member id of the node behind that address (``member_id`` in its
    home's daemon.json); every signature names it, so that no other node accepts the
    request. The default is the signer's own node: by default a node's API serves
    only the node's own key."""

    def __init__(
        self,
        base_url: str,
        identity: Identity,
        *,
        node: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.identity = identity
        self.node = identity.member_id if node is None else node
        self.timeout = timeout
        self._clock = clock
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not capture
        # requests to the loopback interface.
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- the API ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self._object(self._call("GET", "/v1/status"))

    def members(self) -> dict[str, Any]:
        return self._object(self._call("GET", "/v1/members"))

    def invite(self, role: str, valid_for: float) -> dict[str, Any]:
        """A single-use ticket for a device to join as ``role`` within ``valid_for`` seconds."""
        body = {"role": role, "valid_for": valid_for}
        return self._object(self._call("POST", "/v1/members/invite", body=body))

    def approve(self, member_id: str, role: str) -> dict[str, Any]:
        path = f"/v1/members/{_segment(member_id)}/approve"
        return self._object(self._call("POST", path, body={"role": role}))

    def revoke(self, member_id: str) -> dict[str, Any]:
        path = f"/v1/members/{_segment(member_id)}/revoke"
        return self._object(self._call("POST", path, body={}))

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a ColonyOS function spec; the answer holds the new process's ``pid``."""
        return self._object(self._call("POST", "/v1/processes", body=spec))

    def submit_many(self, specs: list[dict[str, Any]]) -> dict[str, Any]:
        """Submit independent function specs at once (all or none); ``pids`` in order."""
        return self._object(self._call("POST", "/v1/processes/batch", body={"specs": specs}))

    def submit_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        return self._object(self._call("POST", "/v1/workflows", body=workflow))

    def process(self, pid: str) -> dict[str, Any]:
        return self._object(self._call("GET", f"/v1/processes/{_segment(pid)}"))

    def processes(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {} if state is None else {"state": state}
        answer = self._object(self._call("GET", "/v1/processes", params=params))
        found = answer.get("processes")
        if not isinstance(found, list) or not all(isinstance(p, dict) for p in found):
            raise ApiError("the node answered a process list that is not a list of objects")
        return found

    def cancel(self, pid: str) -> dict[str, Any]:
        return self._object(self._call("POST", f"/v1/processes/{_segment(pid)}/cancel", body={}))

    def events(self, since: int = 0) -> Generator[dict[str, Any], None, None]:
        """Events after sequence number ``since``, as they happen, until the caller stops
        iterating (closing the generator closes the connection) or the node goes away."""
        # No read timeout: a quiet colony may send nothing for hours.
        timeout = httpx.Timeout(self.timeout, read=None)
        request = self._request("GET", "/v1/events", {"since": since}, None, timeout)
        response = self._send(request, stream=True)
        try:
            if not response.is_success:
                response.read()
                _raise_for(response)
            for line in response.iter_lines():
                if line.strip():
                    yield self._object_from(line)
        except httpx.HTTPError as exc:
            raise ApiError(f"the event stream from the node broke off: {exc}") from exc
        finally:
            response.close()

    def fs(self, op: str, **args: Any) -> dict[str, Any]:
        """A meta-filesystem operation (see docs/MFS.md); long ones answer {"job": id}."""
        return self._object(self._call("POST", f"/v1/fs/{_segment(op)}", body=args))

    def fs_job(self, job_id: str) -> dict[str, Any]:
        return self._object(self._call("GET", f"/v1/fs/jobs/{_segment(job_id)}"))

    # --- plumbing --------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        response = self._send(self._request(method, path, params, body, None))
        if not response.is_success:
            _raise_for(response)
        return response

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        timeout: httpx.Timeout | None,
    ) -> httpx.Request:
        content = b"" if body is None else json.dumps(body, allow_nan=False).encode("utf-8")
        headers = {"Content-Type": "application/json"} if content else {}
        request = self._http.build_request(
            method,
            path,
            params=params,
            content=content,
            headers=headers,
            timeout=timeout if timeout is not None else self.timeout,
        )
        # Sign the target exactly as httpx will put it on the wire, after its encoding.
        target = request.url.raw_path.decode("ascii")
        request.headers.update(
            sign_request(self.identity, method, target, content, self._clock(), self.node)
        )
        return request

    def _send(self, request: httpx.Request, stream: bool = False) -> httpx.Response:
        try:
            return self._http.send(request, stream=stream)
        except httpx.ConnectError as exc:
            raise DaemonNotRunning(
                f"the colonynode daemon is not running (nothing answers at {self.base_url}); "
                "start it with `colonynode start`"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ApiError(f"the node at {self.base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ApiError(f"talking to the node at {self.base_url} failed: {exc}") from exc

    def _object(self, response: httpx.Response) -> dict[str, Any]:
        return self._object_from(response.content)

    @staticmethod
    def _object_from(text: str | bytes) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ApiError(f"the node answered something that is not JSON: {exc}") from exc
        if not isinstance(value, dict):
            raise ApiError("the node answered JSON that is not an object")
        return value


def _segment(pid: str) -> str:
    """``pid`` as one path segment: a '/' or '?' in it must not change the route."""
    return quote(pid, safe="")


def _raise_for(response: httpx.Response) -> None:
    """Raise the ApiError that an error response carries."""
    status = response.status_code
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "", f"the node answered HTTP {status} {response.reason_phrase}".strip()
    raise ApiError(message, status=status, remote_code=code)
