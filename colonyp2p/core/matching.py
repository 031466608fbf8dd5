"""Whether an executor's ad satisfies a spec's conditions, and if not, why not.

This runs for every (waiting process, executor) pair an executor considers, so
it returns at the first unmet condition and builds a string only to explain a
refusal: the success path allocates nothing.

Resource sizes the ad leaves undeclared (0 cores, memory or storage, GPU memory)
are not checked: an executor that does not know its limits (a Slurm or
Kubernetes front end) is trusted to find room. Counts are checked as declared:
an ad without GPUs has none, and one without ``nodes`` has one node. Walltime
is for the executor's own scheduler (Slurm) and is not matched.
"""

from __future__ import annotations

from colonyp2p.model.ads import ExecutorAd
from colonyp2p.model.spec import FunctionSpec
from colonyp2p.model.units import format_bytes


def unmet_condition(spec: FunctionSpec, ad: ExecutorAd) -> str | None:
    """None when ``ad`` can run ``spec``, else a short reason for people."""
    if ad.functions and spec.funcname not in ad.function_set:
        return f"function {spec.funcname!r} is not served by {ad.name or ad.executortype!r}"
    c = spec.conditions
    if c.executortype and c.executortype != ad.executortype:
        return f"executortype {c.executortype!r} wanted, this is {ad.executortype!r}"
    if c.executornames and ad.name not in c.executornames:
        wanted = ", ".join(repr(n) for n in c.executornames)
        return f"executor {wanted} wanted, this is {ad.name!r}"
    if c.location and c.location != ad.location:
        return f"location {c.location!r} wanted, this is {ad.location or 'unknown'!r}"
    hw = ad.hardware
    if c.cpu and hw.cores and c.cpu > hw.cores * 1000:
        return f"needs {_cores(c.cpu)} cores, has {hw.cores}"
    if c.mem and hw.memory and c.mem > hw.memory:
        return f"needs {format_bytes(c.mem)} memory, has {format_bytes(hw.memory)}"
    if c.storage and hw.storage and c.storage > hw.storage:
        return f"needs {format_bytes(c.storage)} storage, has {format_bytes(hw.storage)}"
    if c.nodes > hw.nodes:
        return f"needs {c.nodes} nodes, has {hw.nodes}"
    gpu = c.gpu
    if gpu.count or gpu.name or gpu.mem or gpu.nodecount:
        return _unmet_gpu(spec, ad)
    return None


def _unmet_gpu(spec: FunctionSpec, ad: ExecutorAd) -> str | None:
    want = spec.conditions.gpu
    have = ad.hardware.gpu
    if want.count > have.count:
        plural = "" if want.count == 1 else "s"
        return f"needs {want.count} GPU{plural}, has {have.count or 'none'}"
    if want.name and want.name != have.name and want.name.casefold() != have.name.casefold():
        if not have.count and not have.name:
            return f"GPU {want.name!r} wanted, this has none"
        return f"GPU {want.name!r} wanted, this has {have.name!r}"
    if want.mem and have.mem and want.mem > have.mem:
        return f"needs {format_bytes(want.mem)} per GPU, has {format_bytes(have.mem)}"
    if want.nodecount > ad.hardware.nodes:
        return f"needs GPUs on {want.nodecount} nodes, has {ad.hardware.nodes}"
    return None


def matches(spec: FunctionSpec, ad: ExecutorAd) -> bool:
    """Whether ``ad`` can run ``spec``."""
    return unmet_condition(spec, ad) is None


def _cores(millicores: int) -> str:
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores / 1000:g}"
