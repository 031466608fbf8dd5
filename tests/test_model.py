"""The data model: validation names the bad field, signatures bind every field."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from colonyp2p import codec
from colonyp2p.errors import BadSignature, ValidationError
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.process import Process
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import (
    Conditions,
    FsSpec,
    FunctionSpec,
    Gpu,
    SnapshotMount,
    SyncDirMount,
)

ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(1, 33)))
COLONY = "c" * 64


def field_of(exc: pytest.ExceptionInfo[ValidationError]) -> str | None:
    return exc.value.field


# --- FunctionSpec -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"funcname": ""}, "funcname"),
        ({"funcname": "1st"}, "funcname"),
        ({"funcname": "has space"}, "funcname"),
        ({"funcname": "x" * 129}, "funcname"),
        ({"funcname": 7}, "funcname"),
        ({"nodename": 3}, "nodename"),
        ({"priority": 10**9}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"maxretries": -1}, "maxretries"),
        ({"maxwaittime": math.nan}, "maxwaittime"),
        ({"maxexectime": "60"}, "maxexectime"),
        ({"args": ({1, 2},)}, "args[0]"),
        ({"args": (1, [math.inf])}, "args[1][0]"),
        ({"args": ({1: "x"},)}, "args[0]"),
        ({"args": (2**70,)}, "args[0]"),
        ({"args": "abc"}, "args"),
        ({"kwargs": {"a": {"b": object()}}}, "kwargs.a.b"),
        ({"kwargs": {1: 2}}, "kwargs"),
        ({"kwargs": [("a", 1)]}, "kwargs"),
        ({"env": {"A": 1}}, "env.A"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"env": {"": "x"}}, "env"),
        ({"conditions": {}}, "conditions"),
        ({"fs": None}, "fs"),
    ],
)
def test_function_spec_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    fields: dict[str, Any] = {"funcname": "echo", **changes}
    with pytest.raises(ValidationError) as exc:
        FunctionSpec(**fields)
    assert field_of(exc) == field


def test_function_spec_accepts_colonyos_names_and_json_values() -> None:
    for name in ("echo", "_private", "pkg.module:func", "hello-world", "A1"):
        assert FunctionSpec(funcname=name).funcname == name
    spec = FunctionSpec(
        funcname="f",
        args=(None, True, -(2**63), 1.5, "s", b"\x00", [1, {"k": [None]}]),
        kwargs={"nested": {"deep": [1, 2, 3]}},
        env={"PATH": "/bin"},
    )
    assert spec.args[-1] == [1, {"k": [None]}]


def test_nesting_is_bounded() -> None:
    value: Any = 1
    for _ in range(20):
        value = [value]
    with pytest.raises(ValidationError) as exc:
        FunctionSpec(funcname="f", args=(value,))
    assert exc.value.field is not None and exc.value.field.startswith("args[0]")


def test_size_bound_on_the_encoding() -> None:
    FunctionSpec(funcname="f", args=("x" * 500_000,))  # over the cheap bound? no: fine
    FunctionSpec(funcname="f", args=("é" * 300_000,))  # bound says maybe, encoding says fine
    with pytest.raises(ValidationError, match="bytes"):
        FunctionSpec(funcname="f", args=("x" * (1 << 20),))
    with pytest.raises(ValidationError, match="bytes"):
        FunctionSpec(funcname="f", kwargs={"blob": b"\x00" * (1 << 20)})


def test_lists_become_tuples_and_ints_become_floats() -> None:
    spec = FunctionSpec(
        funcname="f",
        args=[1, 2],  # type: ignore[arg-type]
        maxwaittime=-1,
        conditions=Conditions(executornames=["a"], dependencies=["p"]),  # type: ignore[arg-type]
    )
    assert spec.args == (1, 2)
    assert spec.conditions.executornames == ("a",)
    assert spec.conditions.dependencies == ("p",)
    assert type(spec.maxwaittime) is float
    # what matters: one object, one encoding, before and after the wire
    decoded = codec.from_data(FunctionSpec, codec.to_data(spec))
    assert decoded == spec
    assert codec.canonical_bytes(decoded) == codec.canonical_bytes(spec)


def test_codec_lets_validation_errors_through() -> None:
    data = codec.to_data(FunctionSpec(funcname="ok"))
    data["funcname"] = "not ok"
    with pytest.raises(ValidationError) as exc:
        codec.from_data(FunctionSpec, data)
    assert field_of(exc) == "funcname"


# --- Conditions, Gpu, FsSpec ------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cpu": -1}, "cpu"),
        ({"mem": -5}, "mem"),
        ({"storage": 1.0}, "storage"),
        ({"nodes": -1}, "nodes"),
        ({"processes": -1}, "processes"),
        ({"processespernode": -1}, "processespernode"),
        ({"walltime": -1}, "walltime"),
        ({"executornames": ("a", 1)}, "executornames[1]"),
        ({"dependencies": ("a", "b", "a")}, "dependencies[2]"),
        ({"dependencies": ("",)}, "dependencies[0]"),
        ({"gpu": "a100"}, "gpu"),
    ],
)
def test_conditions_name_the_bad_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Conditions(**changes)
    assert field_of(exc) == field


@pytest.mark.parametrize("field", ["count", "mem", "nodecount"])
def test_gpu_numbers_are_not_negative(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        fields: dict[str, Any] = {field: -1}
        Gpu(**fields)
    assert field_of(exc) == field


@pytest.mark.parametrize(
    ("label", "dir", "field"),
    [
        ("", "data", "label"),
        ("data", "data", "label"),
        ("/data", "", "dir"),
        ("/data", "/abs", "dir"),
        ("/data", "a/../b", "dir"),
        ("/data", "..", "dir"),
        ("/data", "a\\..\\b", "dir"),
    ],
)
def test_mounts_name_the_bad_field(label: str, dir: str, field: str) -> None:
    for cls in (SnapshotMount, SyncDirMount):
        with pytest.raises(ValidationError) as exc:
            cls(label=label, dir=dir)
        assert field_of(exc) == field


def test_mounts_accept_relative_dirs() -> None:
    fs = FsSpec(
        mount="/cfs/x",
        snapshots=[SnapshotMount("/x/src", "src/{processid}")],  # type: ignore[arg-type]
        dirs=(SyncDirMount("/x/out", "out/a..b"),),
    )
    assert fs.snapshots[0].dir == "src/{processid}"
    with pytest.raises(ValidationError) as exc:
        FsSpec(dirs=("out",))  # type: ignore[arg-type]
    assert field_of(exc) == "dirs[0]"


# --- Member, MembershipSet, ExecutorAd -------------------------------------------


def test_member_needs_a_member_id_and_a_role() -> None:
    with pytest.raises(ValidationError) as exc:
        Member("node-1", "executor")
    assert field_of(exc) == "member_id"
    with pytest.raises(ValidationError) as exc:
        Member(ALICE.member_id, "root")  # type: ignore[arg-type]
    assert field_of(exc) == "role"


@pytest.mark.parametrize(
    ("members", "version", "field"),
    [
        ((Member(ALICE.member_id, "admin"),), 1, "members"),
        ((Member(ALICE.member_id, "owner"), Member(BOB.member_id, "owner")), 1, "members"),
        ((Member(ALICE.member_id, "owner"), Member(ALICE.member_id, "user")), 1, "members[1]"),
        ((Member(ALICE.member_id, "owner"),), 0, "version"),
        ((), 1, "members"),
    ],
)
def test_membership_set_rules(members: tuple[Member, ...], version: int, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        MembershipSet(COLONY, "c", version, members, 0.0, ALICE.member_id)
    assert field_of(exc) == field


def test_executor_ad_rules() -> None:
    with pytest.raises(ValidationError) as exc:
        ExecutorAd(ALICE.member_id, "edge", "n", capacity=0)
    assert field_of(exc) == "capacity"
    with pytest.raises(ValidationError) as exc:
        ExecutorAd(ALICE.member_id, "", "n")
    assert field_of(exc) == "executortype"
    with pytest.raises(ValidationError) as exc:
        Hardware(cores=-2)
    assert field_of(exc) == "cores"


# --- signing ------------------------------------------------------------------------


def signed(spec: FunctionSpec | None = None, nonce: bytes = b"n1", **kw: Any) -> SignedSpec:
    return SignedSpec.create(
        spec or FunctionSpec(funcname="echo", args=("hi",)), ALICE, COLONY, 100.0, nonce, **kw
    )


def test_signed_spec_verifies_and_has_a_stable_pid() -> None:
    one = signed()
    one.verify()
    assert len(one.pid) == 64 and int(one.pid, 16) >= 0
    assert one.submitter == ALICE.member_id
    assert signed().pid == one.pid  # Ed25519 is deterministic: same inputs, same process
    assert signed(nonce=b"n2").pid != one.pid
    assert signed(parents=("a" * 64,)).pid != one.pid
    decoded = codec.from_data(SignedSpec, codec.loads_canonical(codec.canonical_bytes(one)))
    decoded.verify()
    assert decoded.pid == one.pid


def test_signed_spec_with_int_time_survives_the_wire() -> None:
    one = SignedSpec.create(FunctionSpec(funcname="f"), ALICE, COLONY, 100, b"n")
    decoded = codec.from_data(SignedSpec, codec.to_data(one))
    decoded.verify()
    assert decoded.pid == one.pid


@pytest.mark.parametrize(
    "changes",
    [
        {"spec": FunctionSpec(funcname="echo", args=("bye",))},
        {"colony_id": "d" * 64},
        {"nonce": b"n2"},
        {"parents": ("a" * 64,)},
        {"workflow_id": "w"},
        {"submitted_at": 101.0},
        {"submitter": BOB.member_id},
        {"signature": b"\x00" * 64},
        {"signature": b""},
    ],
)
def test_signed_spec_refuses_tampering(changes: dict[str, Any]) -> None:
    forged = dataclasses.replace(signed(), **changes)
    with pytest.raises(BadSignature):
        forged.verify()


def test_executor_ad_is_self_signed() -> None:
    ad = ExecutorAd.create(
        BOB, 5.0, executortype="edge", name="pi-1", hardware=Hardware(cores=4, memory=1 << 30)
    )
    assert ad.executor_id == BOB.member_id
    ad.verify()
    codec.from_data(ExecutorAd, codec.to_data(ad)).verify()
    for changes in ({"capacity": 9}, {"executor_id": ALICE.member_id}, {"hardware": Hardware()}):
        with pytest.raises(BadSignature):
            dataclasses.replace(ad, **changes).verify()


# --- Process ----------------------------------------------------------------------------


def test_process_view_and_colonyos_json() -> None:
    spec = signed(FunctionSpec(funcname="echo", args=(b"\x01",), maxexectime=10))
    proc = Process(
        pid=spec.pid,
        spec=spec,
        state="successful",
        attempts=1,
        output=["ok"],  # type: ignore[arg-type]
        attributes={"k": b"v"},
        submitted_at=100,
        started_at=101,
        ended_at=102.5,
    )
    assert proc.output == ("ok",) and proc.is_final
    data = proc.to_colonyos_json()
    assert data["processid"] == spec.pid
    assert data["state"] == 2
    assert data["out"] == ["ok"]
    assert data["spec"]["funcname"] == "echo"
    assert data["spec"]["args"] == [b"\x01"]
    assert data["submissiontime"] == "1970-01-01T00:01:40.000000Z"
    assert data["attributes"] == [{"key": "k", "value": "dg=="}]
    waiting = Process(pid=spec.pid, spec=spec, state="waiting")
    assert waiting.to_colonyos_json()["state"] == 0
    assert waiting.to_colonyos_json()["starttime"] == "0001-01-01T00:00:00Z"
    with pytest.raises(ValidationError) as exc:
        Process(pid=spec.pid, spec=spec, state="done")  # type: ignore[arg-type]
    assert field_of(exc) == "state"
