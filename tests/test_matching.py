"""Matching a spec's conditions against an executor's ad."""

from __future__ import annotations

from typing import Any

import pytest

from colonyp2p.core.matching import matches, unmet_condition
from colonyp2p.identity import Identity
from colonyp2p.model.ads import ExecutorAd, Hardware
from colonyp2p.model.spec import Conditions, FunctionSpec, Gpu

EXECUTOR = Identity.from_seed(b"\x09" * 32).member_id
GI = 1 << 30


def ad(**changes: Any) -> ExecutorAd:
    fields: dict[str, Any] = {
        "executor_id": EXECUTOR,
        "executortype": "edge",
        "name": "pi-1",
        "location": "lab",
        "hardware": Hardware(cores=4, memory=8 * GI, storage=64 * GI),
    }
    fields.update(changes)
    return ExecutorAd(**fields)


def spec(funcname: str = "echo", **conditions: Any) -> FunctionSpec:
    return FunctionSpec(funcname=funcname, conditions=Conditions(**conditions))


def test_no_conditions_match_anything() -> None:
    assert unmet_condition(spec(), ad()) is None
    assert matches(spec(), ad())
    assert matches(spec(), ad(hardware=Hardware()))


def test_funcname_must_be_served_unless_the_executor_serves_all() -> None:
    assert matches(spec("echo"), ad(functions=("echo", "sum")))
    reason = unmet_condition(spec("train"), ad(functions=("echo", "sum")))
    assert reason is not None and "'train'" in reason
    assert matches(spec("train"), ad(functions=()))


@pytest.mark.parametrize(
    ("conditions", "ad_changes", "reason"),
    [
        ({"executortype": "hpc"}, {}, "executortype 'hpc' wanted, this is 'edge'"),
        ({"executornames": ("pi-2", "pi-3")}, {}, "executor 'pi-2', 'pi-3' wanted, this is 'pi-1'"),
        ({"location": "cloud"}, {}, "location 'cloud' wanted, this is 'lab'"),
        ({"cpu": 8000}, {}, "needs 8 cores, has 4"),
        ({"cpu": 4500}, {}, "needs 4.5 cores, has 4"),
        ({"mem": 16 * GI}, {}, "needs 16Gi memory, has 8Gi"),
        ({"storage": 10**12}, {}, "needs 1T storage, has 64Gi"),
        ({"nodes": 2}, {}, "needs 2 nodes, has 1"),
        ({"gpu": Gpu(count=1)}, {}, "needs 1 GPU, has none"),
        (
            {"gpu": Gpu(count=2)},
            {"hardware": Hardware(gpu=Gpu(name="t4", count=1))},
            "needs 2 GPUs, has 1",
        ),
        (
            {"gpu": Gpu(name="a100", count=1)},
            {"hardware": Hardware(gpu=Gpu(name="t4", count=1))},
            "GPU 'a100' wanted, this has 't4'",
        ),
        ({"gpu": Gpu(name="a100")}, {}, "GPU 'a100' wanted, this has none"),
        (
            {"gpu": Gpu(count=1, mem=40 * GI)},
            {"hardware": Hardware(gpu=Gpu(count=1, mem=16 * GI))},
            "needs 40Gi per GPU, has 16Gi",
        ),
        (
            {"gpu": Gpu(count=1, nodecount=2)},
            {"hardware": Hardware(gpu=Gpu(count=1))},
            "needs GPUs on 2 nodes, has 1",
        ),
    ],
)
def test_unmet_conditions_explain_themselves(
    conditions: dict[str, Any], ad_changes: dict[str, Any], reason: str
) -> None:
    assert unmet_condition(spec(**conditions), ad(**ad_changes)) == reason
    assert not matches(spec(**conditions), ad(**ad_changes))


@pytest.mark.parametrize(
    ("conditions", "ad_changes"),
    [
        ({"executortype": "edge"}, {}),
        ({"executornames": ("pi-0", "pi-1")}, {}),
        ({"location": "lab"}, {}),
        ({"cpu": 4000, "mem": 8 * GI, "storage": 64 * GI, "nodes": 1}, {}),
        ({"cpu": 500}, {}),
        ({"walltime": 365 * 86400}, {}),  # informational only (a year: the most allowed)
        # undeclared sizes do not constrain (a Slurm front end does not know them)
        ({"cpu": 10**6, "mem": 10**15, "storage": 10**15}, {"hardware": Hardware()}),
        ({"nodes": 16}, {"hardware": Hardware(nodes=64)}),
        (
            {"gpu": Gpu(name="A100", count=2, mem=40 * GI)},
            {"hardware": Hardware(gpu=Gpu(name="a100", count=4, mem=80 * GI))},
        ),
        ({"gpu": Gpu(count=1, mem=40 * GI)}, {"hardware": Hardware(gpu=Gpu(count=1))}),
    ],
)
def test_met_conditions(conditions: dict[str, Any], ad_changes: dict[str, Any]) -> None:
    assert unmet_condition(spec(**conditions), ad(**ad_changes)) is None


def test_the_first_unmet_condition_is_reported() -> None:
    reason = unmet_condition(spec(executortype="hpc", cpu=10**6), ad())
    assert reason is not None and reason.startswith("executortype")
