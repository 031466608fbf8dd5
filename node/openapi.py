"""The OpenAPI 3.1 description of the node's local API, served at /v1/openapi.json.

Written by hand next to the routes rather than generated, because the server is
plain h11 with no framework to introspect; tests check that every route the
server answers is listed here, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

from colonyp2p.model.process import PROCESS_STATES
from colonyp2p.model.spec import MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS, MIN_PRIORITY
from colonyp2p.node.api_auth import (
    MEMBER_HEADER,
    NODE_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    SKEW_WINDOW,
    TIMESTAMP_HEADER,
)

API_VERSION = "1.0.0"

_SIGNING = f"""Every request except this document is signed by a colony member's Ed25519 key;
there are no tokens. Send five headers:

- `{MEMBER_HEADER}`: the member id (the libp2p PeerID of the member's Ed25519 key)
- `{TIMESTAMP_HEADER}`: unix seconds (a decimal number), within ±{SKEW_WINDOW:.0f} s \
of the node's clock
- `{NONCE_HEADER}`: 16 to 64 random hex digits, never reused
- `{NODE_HEADER}`: the member id of the node called (`member_id` in its daemon.json), so \
that no other node accepts the request
- `{SIGNATURE_HEADER}`: the hex Ed25519 signature of the UTF-8 bytes of
  `METHOD + "\\n" + PATH_WITH_QUERY + "\\n" + TIMESTAMP + "\\n" + NONCE + "\\n" + \
hex(sha256(BODY)) + "\\n" + NODE`,
  where PATH_WITH_QUERY is the request target exactly as sent and TIMESTAMP the header's
  text.

A missing, unreadable or forged signature, a request signed for another node, a stale
timestamp or a reused nonce is answered 401; a valid signature by a key that is not a
member of the colony is answered 403, and so is one by a member that may not use the
route on this node (`not_allowed`): the API acts for the node's own key, and for the
members its config.json lists in `api.allow`; any member may read `/v1/status` and
`/v1/members`."""

# What FunctionSpec accepts (colonyp2p/model/spec.py); anything else is answered 400.
_TIME_LIMIT = {
    "type": "number",
    "minimum": -1,
    "maximum": MAX_SECONDS,
    "description": "Seconds. -1 or 0: no limit; other negative numbers are refused.",
}

_SECURITY_SCHEMES = {
    "member": (MEMBER_HEADER, "The signing member's id."),
    "timestamp": (TIMESTAMP_HEADER, "Unix seconds when the request was signed."),
    "nonce": (NONCE_HEADER, "Random hex, unique per request."),
    "node": (NODE_HEADER, "The member id of the node the request is for."),
    "signature": (SIGNATURE_HEADER, "Hex Ed25519 signature of the canonical request."),
}
# One requirement object naming them all: OpenAPI reads that as "all of them".
_SIGNED: list[dict[str, list[str]]] = [{name: [] for name in _SECURITY_SCHEMES}]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


_ERROR_RESPONSES = {
    400: "Malformed request: bad JSON, bad parameters or an invalid spec.",
    401: "Unsigned, forged, stale or replayed request.",
    403: "The signer is not a member of the colony, or may not use this route on this node.",
    404: "Unknown path or process.",
    405: "The path does not take this method.",
    408: "The client was too slow to send its request.",
    413: "The request body is too large.",
    431: "The request headers are too large.",
    500: "The node failed; the message does not say how (see the node's log).",
    503: "The node is too busy to take the request.",
}
_COMMON = (401, 403, 408, 431, 500, 503)

_PID = {
    "name": "pid",
    "in": "path",
    "required": True,
    "description": "The process id (the hash of the signed spec).",
    "schema": {"type": "string", "maxLength": 128},
}

_MEMBER = {
    "name": "pid",
    "in": "path",
    "required": True,
    "description": "The member id (a libp2p PeerID).",
    "schema": {"type": "string", "maxLength": 128},
}
_ROLE = {"type": "string", "enum": ["admin", "executor", "user"]}

_SCHEMAS: dict[str, Any] = {
    "Invite": {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": _ROLE,
            "valid_for": {"type": "number", "description": "Seconds (default one day)."},
        },
    },
    "Approve": {"type": "object", "properties": {"role": _ROLE}},
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Short, stable, for programs."},
                    "message": {"type": "string", "description": "For people."},
                },
            }
        },
    },
    "FunctionSpec": {
        "type": "object",
        "description": "A ColonyOS function specification (ColonyOS JSON field names).",
        "required": ["funcname"],
        "properties": {
            "nodename": {"type": "string"},
            "funcname": {"type": "string"},
            "args": {"type": "array"},
            "kwargs": {"type": "object"},
            "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "maxwaittime": _TIME_LIMIT,
            "maxexectime": _TIME_LIMIT,
            "maxretries": {
                "type": "integer",
                "minimum": -1,
                "maximum": MAX_RETRIES,
                "description": f"-1: ColonyOS's unlimited retries, read as {MAX_RETRIES}.",
            },
            "conditions": {"type": "object"},
            "label": {"type": "string"},
            "fs": {"type": "object"},
            "env": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "Workflow": {
        "type": "object",
        "description": "A ColonyOS workflow: function specs linked by conditions.dependencies.",
        "required": ["functionspecs"],
        "properties": {
            "colonyname": {"type": "string"},
            "functionspecs": {"type": "array", "items": _ref("FunctionSpec")},
        },
    },
    "SpecBatch": {
        "type": "object",
        "description": "Independent function specs submitted at once (all or none).",
        "required": ["specs"],
        "properties": {
            "specs": {
                "type": "array",
                "items": _ref("FunctionSpec"),
                "minItems": 1,
                "maxItems": 1000,
            },
        },
    },
    "Submitted": {
        "type": "object",
        "required": ["pid"],
        "properties": {"pid": {"type": "string"}},
    },
    "Process": {
        "type": "object",
        "required": ["pid", "state"],
        "properties": {
            "pid": {"type": "string"},
            "state": {"type": "string", "enum": list(PROCESS_STATES)},
        },
    },
    "ProcessList": {
        "type": "object",
        "required": ["processes"],
        "properties": {"processes": {"type": "array", "items": _ref("Process")}},
    },
    "FsRequest": {"type": "object", "description": "Arguments of a meta-filesystem operation."},
    "Event": {
        "type": "object",
        "description": "A process state change or a log line; `seq` orders the events.",
        "properties": {"seq": {"type": "integer"}, "type": {"type": "string"}},
    },
}


def _operation(
    summary: str,
    ok: dict[str, Any],
    errors: tuple[int, ...],
    *,
    status: int = 200,
    parameters: list[dict[str, Any]] | None = None,
    body: tuple[str, str] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "security": _SIGNED,
        "responses": {str(status): ok, **_errors(*errors, *_COMMON)},
    }
    if parameters:
        op["parameters"] = parameters
    if body:
        schema, description = body
        op["requestBody"] = {"required": True, **_json(_ref(schema), description)}
    return op


def _paths() -> dict[str, Any]:
    free_form = {"type": "object"}
    return {
        "/v1/status": {
            "get": _operation("The node's status", _json(free_form, "Node status."), ())
        },
        "/v1/members": {
            "get": _operation("The colony's membership set", _json(free_form, "Members."), ())
        },
        "/v1/members/invite": {
            "post": _operation(
                "Issue a single-use join ticket",
                _json(free_form, "The ticket, for `colonynode join --ticket`."),
                (400, 403, 413),
                status=201,
                body=("Invite", "The role to invite as and how long the ticket is valid."),
            )
        },
        "/v1/members/{pid}/approve": {
            "post": _operation(
                "Admit a device that asked to join",
                _json(free_form, "The new membership set."),
                (400, 403, 404, 413),
                parameters=[_MEMBER],
                body=("Approve", "The role to give."),
            )
        },
        "/v1/members/{pid}/revoke": {
            "post": _operation(
                "Revoke a member",
                _json(free_form, "The new membership set."),
                (400, 403, 404, 413),
                parameters=[_MEMBER],
            )
        },
        "/v1/processes": {
            "get": _operation(
                "List processes",
                _json(_ref("ProcessList"), "Processes, optionally of one state."),
                (400,),
                parameters=[
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": list(PROCESS_STATES)},
                    }
                ],
            ),
            "post": _operation(
                "Submit a function spec",
                _json(_ref("Submitted"), "The new process's id."),
                (400, 413),
                status=201,
                body=("FunctionSpec", "A ColonyOS function spec."),
            ),
        },
        "/v1/workflows": {
            "post": _operation(
                "Submit a workflow",
                _json(free_form, "The new processes' ids."),
                (400, 413),
                status=201,
                body=("Workflow", "A ColonyOS workflow."),
            )
        },
        "/v1/processes/batch": {
            "post": _operation(
                "Submit independent processes at once (all or none)",
                _json(free_form, "The new processes' ids, in order."),
                (400, 413),
                status=201,
                body=("SpecBatch", "{specs: [ColonyOS function spec, ...]}."),
            )
        },
        "/v1/processes/{pid}": {
            "get": _operation(
                "One process",
                _json(_ref("Process"), "The process."),
                (404,),
                parameters=[_PID],
            )
        },
        "/v1/processes/{pid}/cancel": {
            "post": _operation(
                "Cancel a process",
                _json(free_form, "The process as cancelled."),
                (400, 404, 413),
                parameters=[_PID],
            )
        },
        "/v1/fs/{pid}": {
            "post": _operation(
                "A meta-filesystem operation: put, get, ls, rm, label, history, snapshot, "
                "sync, pin, gc or du (the path segment); long ones answer {job: id}",
                _json(free_form, "The result, or the job to follow."),
                (400, 404, 413),
                parameters=[
                    {"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                body=("FsRequest", "The operation's arguments (see docs/MFS.md)."),
            )
        },
        "/v1/fs/jobs/{pid}": {
            "get": _operation(
                "A meta-filesystem job: state, progress, result or error",
                _json(free_form, "The job."),
                (404,),
                parameters=[
                    {"name": "pid", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
        "/v1/events": {
            "get": _operation(
                "Stream events",
                {
                    "description": "Newline-delimited JSON events over chunked transfer "
                    "encoding, one object per line, until the client disconnects.",
                    "content": {"application/x-ndjson": {"schema": _ref("Event")}},
                },
                (400,),
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "Send only events after this sequence number.",
                        "schema": {"type": "integer", "minimum": 0, "default": 0},
                    }
                ],
            )
        },
        "/v1/openapi.json": {
            "get": {
                "summary": "This document (unsigned, so that tools can discover the API)",
                "security": [],
                "responses": {"200": _json(free_form, "An OpenAPI 3.1 document.")},
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "colonyp2p node local API",
            "version": API_VERSION,
            "description": "The local API of a colonynode daemon, on 127.0.0.1 only.\n\n"
            + _SIGNING,
        },
        "servers": [{"url": "http://127.0.0.1"}],
        "security": _SIGNED,
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                name: {"type": "apiKey", "in": "header", "name": header, "description": text}
                for name, (header, text) in _SECURITY_SCHEMES.items()
            },
            "responses": {
                f"E{status}": _json(_ref("Error"), text)
                for status, text in _ERROR_RESPONSES.items()
            },
        },
    }
