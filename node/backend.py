"""What the local API asks of a running daemon (the ``ApiBackend`` of ``node/api.py``).

Specs arrive as ColonyOS JSON from an authenticated caller that may act through this
node (its own key, or a member that config.json's ``api.allow`` lists: node/api.py
checks); the daemon signs them with its own key and answers once a majority of the
keepers stored them. A listed member thus acts with the node's key: what it submits
is the node's, and it may cancel what the node submitted.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from colonyp2p import codec
from colonyp2p.core.matching import unmet_condition
from colonyp2p.core.messages import Outcome, Status
from colonyp2p.errors import OverQuota, Unauthorized, ValidationError
from colonyp2p.identity import is_member_id
from colonyp2p.model.colonyos_json import function_spec_from_colonyos, workflow_from_colonyos
from colonyp2p.model.membership import ROLES, Role
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.workflow import sign_workflow

if TYPE_CHECKING:
    from colonyp2p.node.daemon import Daemon

ACK_TIMEOUT = 10.0
MAX_BATCH_SUBMIT = 1000  # specs in one submit_many call (its body is at most 1 MiB anyway)
SUBMITTED = "submitted:"
_PID = re.compile(r"[0-9a-f]{64}")  # a pid: sha256 in hex
CANCELLED = "cancelled by "  # a cancelled process's error: + the canceller's member id
DAY = 86400.0
ADMINS = "admins"  # in api.allow: the colony's owners and admins, as they are now


class DaemonBackend:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.allowed, self.allow_admins = api_allow(daemon.config.api)

    @property
    def node_id(self) -> str:
        return self.daemon.identity.member_id

    def is_member(self, member_id: str) -> bool:
        node = self.daemon.node
        return node is not None and node.membership.is_member(member_id)

    def may_act(self, member_id: str) -> bool:
        if member_id in self.allowed:
            return True
        node = self.daemon.node
        return self.allow_admins and node is not None and node.membership.can_administer(member_id)

    # --- the node and the colony -----------------------------------------------------

    async def status(self) -> dict[str, Any]:
        d = self.daemon
        node, transport = d.node, d.transport
        assert node is not None and transport is not None
        ad = node.executor.ad
        return {
            "member_id": node.member_id,
            "colony_id": node.membership.colony_id,
            "colony": node.membership.name,
            "membership_version": node.membership.version,
            "role": node.membership.role_of(node.member_id),
            "addrs": transport.addrs,
            "peers": len(transport.connected()),
            # members whose addresses it knows, and is connected to (node/redial.py)
            **({} if d.redial is None else d.redial.status()),
            "uptime": round(time.time() - d.started_at, 3),
            "executor": None
            if ad is None
            else {
                "type": ad.executortype,
                "name": ad.name,
                "functions": list(ad.functions),
                "capacity": ad.capacity,
                "running": len(node.executor.active),
            },
            "records": len(node.keeper.records),
            # the lines of processes this node keeps, within its budget (node/logs.py)
            "logs": d.kept_logs.status(),
            "rejected": {**transport.rejections.as_dict(), **dict(node.counters)},
            # what peers sent that was refused, by protocol and reason (node/gate.py)
            "refused": transport.rejections.by_protocol_dict(),
            # supervised subsystems: restarts and last errors (node/supervise.py)
            "subsystems": d.health.as_dict(),
        }

    async def members(self) -> dict[str, Any]:
        node = self.daemon.node
        assert node is not None
        m = node.membership
        return {
            "colony_id": m.colony_id,
            "name": m.name,
            "version": m.version,
            "members": [
                {
                    "member_id": x.member_id,
                    "role": x.role,
                    "name": x.name,
                    "executor": _ad_summary(node.ads.get(x.member_id)),
                }
                for x in m.members
            ],
            "pending": await self.daemon.admission.pending(),
        }

    def _check_admin(self, member: str) -> None:
        node = self.daemon.node
        assert node is not None
        if not node.membership.can_administer(member):
            raise Unauthorized(f"{member} is not an owner or admin of the colony")

    async def invite(self, request: dict[str, Any], member: str) -> dict[str, Any]:
        self._check_admin(member)
        role = _role(request.get("role", "executor"))
        valid_for = request.get("valid_for", DAY)
        if not isinstance(valid_for, int | float) or not 0 < valid_for <= 365 * DAY:
            raise ValidationError("must be a number of seconds up to a year", "valid_for")
        ticket = self.daemon.admission.invite(role, float(valid_for))
        return {"ticket": ticket.encode(), "expires_at": ticket.expires_at, "role": role}

    async def approve(
        self, member_id: str, request: dict[str, Any], member: str
    ) -> dict[str, Any] | None:
        self._check_admin(member)
        if member_id not in await self.daemon.admission.pending():
            return None
        new = await self.daemon.admission.approve(member_id, _role(request.get("role", "executor")))
        return {"version": new.version, "member_id": member_id}

    async def revoke(self, member_id: str, member: str) -> dict[str, Any] | None:
        self._check_admin(member)
        node = self.daemon.node
        assert node is not None
        if not node.membership.is_member(member_id):
            return None
        new = await self.daemon.admission.revoke(member_id)
        return {"version": new.version, "member_id": member_id}

    # --- processes -------------------------------------------------------------------

    async def submit(self, spec: dict[str, Any], submitter: str) -> dict[str, Any]:
        fs = function_spec_from_colonyos(spec)
        signed = SignedSpec.create(
            fs, self.daemon.identity, self._colony_id(), time.time(), os.urandom(12)
        )
        acked = await self._submit((signed,))
        return {"pid": signed.pid, "acknowledged": acked}

    async def submit_many(self, body: dict[str, Any], submitter: str) -> dict[str, Any]:
        specs = body.get("specs")
        if set(body) != {"specs"} or not isinstance(specs, list) or not specs:
            raise ValidationError('expected {"specs": [function spec, ...]}', "specs")
        if len(specs) > MAX_BATCH_SUBMIT:
            raise ValidationError(f"at most {MAX_BATCH_SUBMIT} specs at once", "specs")
        parsed = []
        for i, spec in enumerate(specs):  # every spec checked before any is submitted
            if not isinstance(spec, dict):
                raise ValidationError("a function spec is a JSON object", f"specs[{i}]")
            try:
                parsed.append(function_spec_from_colonyos(spec))
            except ValidationError as exc:
                raise ValidationError(str(exc), f"specs[{i}]") from exc
        now, colony = time.time(), self._colony_id()
        signed = tuple(
            SignedSpec.create(fs, self.daemon.identity, colony, now, os.urandom(12))
            for fs in parsed
        )
        acked = await self._submit(signed)
        return {"pids": [s.pid for s in signed], "acknowledged": acked}

    async def submit_workflow(self, workflow: dict[str, Any], submitter: str) -> dict[str, Any]:
        wf = workflow_from_colonyos(workflow)
        signed = sign_workflow(
            wf, self.daemon.identity, self._colony_id(), time.time(), lambda: os.urandom(12)
        )
        acked = await self._submit(signed)
        return {
            "workflow_id": signed[0].workflow_id,
            "pids": {s.spec.nodename: s.pid for s in signed},
            "acknowledged": acked,
        }

    def _colony_id(self) -> str:
        node = self.daemon.node
        assert node is not None
        return node.membership.colony_id

    async def _submit(self, specs: tuple[SignedSpec, ...]) -> bool:
        d = self.daemon
        rows = {SUBMITTED + s.pid: codec.plain_bytes(s) for s in specs}
        await trio.to_thread.run_sync(d.store.set_meta_many, rows)
        acks = [d.expect("acknowledged", s.pid) for s in specs]
        refusals = [d.expect("refused", s.pid) for s in specs]
        try:
            await d.submit_signed(specs)
            with trio.move_on_after(ACK_TIMEOUT):
                for ack, refusal in zip(acks, refusals, strict=True):
                    while not ack.is_set() and not refusal.is_set():
                        await d.wait_event()
        finally:
            for s in specs:
                d.forget("acknowledged", s.pid)
                d.forget("refused", s.pid)
        refused = sum(r.is_set() for r in refusals)
        if refused:
            raise OverQuota(
                f"{refused} of {len(specs)} processes refused by every keeper: this member "
                "has too many waiting processes (its quota of undecided records per keeper); "
                "submit again once some have ended"
            )
        return all(ack.is_set() for ack in acks)

    async def _spec(self, pid: str) -> SignedSpec | None:
        d = self.daemon
        assert d.node is not None
        rec = d.node.record(pid)
        if rec is not None:
            return rec.spec
        raw = await trio.to_thread.run_sync(d.store.get_meta, SUBMITTED + pid)
        if raw is None:
            return None
        return codec.from_data(SignedSpec, codec.loads(raw), "spec")

    async def process(self, pid: str) -> dict[str, Any] | None:
        if not _PID.fullmatch(pid):  # names no process (and would not parse as a key)
            return None
        status = await self.daemon.status_of(pid)
        spec = await self._spec(pid)
        if status is None and spec is None:
            return None
        view = _view(pid, spec, status)
        if view["state"] == "waiting" and spec is not None:
            view["waiting_reason"] = self._why_waiting(spec)
        # what it printed, as far as this node saw it (its executor sends it to the submitter)
        view["logs"] = self.daemon.logs_of(pid)
        return view

    def _why_waiting(self, spec: SignedSpec) -> str:
        """Why nothing runs it, as far as this node's ads tell (empty if someone could)."""
        node = self.daemon.node
        assert node is not None
        if spec.parents:
            return "waiting for its parents" if not node.ads else ""
        reasons = [unmet_condition(spec.spec, ad) for ad in node.ads.values()]
        if not reasons:
            return "no executor has announced itself yet"
        if any(r is None for r in reasons):
            return ""
        first = next(r for r in reasons if r)
        return f"no executor matches ({len(reasons)} known; e.g. {first})"

    async def processes(self, state: str | None) -> list[dict[str, Any]]:
        d = self.daemon
        assert d.node is not None
        items = await trio.to_thread.run_sync(d.store.meta_items, SUBMITTED)
        pids = [k[len(SUBMITTED) :] for k in items]
        pids += [p for p in d.node.keeper.records if SUBMITTED + p not in items]
        out = []
        for pid in pids:
            view = await self.process(pid)
            if view is not None and (state is None or view["state"] == state):
                out.append(view)
        return out

    async def cancel(self, pid: str, member: str) -> dict[str, Any] | None:
        d = self.daemon
        if not _PID.fullmatch(pid):
            return None
        spec = await self._spec(pid)
        if spec is None:
            return None
        assert d.node is not None
        # the caller acts with the node's key (node/api.py let it): what the node
        # submitted is the caller's to cancel
        mine = spec.submitter in (member, d.identity.member_id)
        if not mine and not d.node.membership.can_administer(member):
            raise Unauthorized("only the submitter or an admin may cancel a process")
        # Find its keepers first: a record stored around an unavailable member is not
        # at the canonical ones, and the keepers' answers tell the core where it is.
        await d.status_of(pid)
        await d.call(lambda node, now: (node.cancel(spec, CANCELLED + member, now), None))
        with trio.move_on_after(ACK_TIMEOUT):
            while True:
                status = await d.status_of(pid)
                if status is not None and status.decided is not None:
                    break
                await trio.sleep(0.2)
        return await self.process(pid)

    async def fs(self, op: str, request: dict[str, Any], member: str) -> dict[str, Any]:
        return await self.daemon.fs.api(op, request)

    async def fs_job(self, job_id: str) -> dict[str, Any] | None:
        job = self.daemon.fs.jobs.get(job_id)
        return None if job is None else job.as_dict()

    async def events(self, since: int) -> AsyncIterator[list[dict[str, Any]]]:
        d = self.daemon
        last = since
        while True:
            fresh = d.events_after(last)
            if fresh:
                last = fresh[-1]["seq"]
                yield fresh
            else:
                await d.wait_event()


def api_allow(config: dict[str, Any]) -> tuple[frozenset[str], bool]:
    """config.json's ``api``: the member ids listed in ``allow``, and whether it lists
    "admins". ValidationError names what is wrong, so the daemon does not start on a
    setting it would misread."""
    unknown = sorted(set(config) - {"allow"})
    if unknown:
        raise ValidationError(f"config.json: api has no {unknown[0]!r}", "api")
    allow = config.get("allow", [])
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise ValidationError('must be a list of member ids or "admins"', "api.allow")
    for entry in allow:
        if entry != ADMINS and not is_member_id(entry):
            raise ValidationError(f'{entry!r} is neither a member id nor "admins"', "api.allow")
    return frozenset(a for a in allow if a != ADMINS), ADMINS in allow


def _role(value: object) -> Role:
    if value not in ROLES or value == "owner":
        raise ValidationError("must be admin, executor or user", "role")
    return value


def _ad_summary(ad: Any) -> dict[str, Any] | None:
    if ad is None:
        return None
    return {
        "type": ad.executortype,
        "name": ad.name,
        "functions": list(ad.functions),
        "location": ad.location,
        "cores": ad.hardware.cores,
        "memory": ad.hardware.memory,
        "gpus": ad.hardware.gpu.count,
        "capacity": ad.capacity,
    }


def _cancelled(outcome: Outcome) -> bool:
    return bool(outcome.errors) and outcome.errors[0].startswith(CANCELLED)


def _view(pid: str, spec: SignedSpec | None, status: Status | None) -> dict[str, Any]:
    decided: Outcome | None = status.decided if status is not None else None
    if decided is not None and decided.kind == "moved":
        decided = None
    state: str
    if decided is not None:
        state = decided.kind
    elif status is not None and status.known:
        state = status.state or "waiting"
    else:
        state = "unknown"
    return {
        "pid": pid,
        "state": state,
        "funcname": spec.spec.funcname if spec is not None else "",
        "executortype": spec.spec.conditions.executortype if spec is not None else "",
        "nodename": spec.spec.nodename if spec is not None else "",
        "submitter": spec.submitter if spec is not None else "",
        "submitted_at": spec.submitted_at if spec is not None else 0.0,
        "workflow_id": spec.workflow_id if spec is not None else "",
        "parents": list(spec.parents) if spec is not None else [],
        "epoch": status.promised if status is not None else 0,
        # a cancel is decided by the canceller's node, which ran nothing
        "executor": "" if decided is None or _cancelled(decided) else decided.executor,
        "output": codec.to_data(list(decided.output)) if decided is not None else [],
        "errors": list(decided.errors) if decided is not None else [],
    }
