"""Workflows: function specs linked by their nodenames into a directed acyclic graph.

A spec's ``conditions.dependencies`` names its parents. A child runs when all
its parents succeeded and receives their outputs as input. Submitting signs
every spec, parents first, so that each child's SignedSpec carries the process
ids of its parents.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from colonyp2p import codec
from colonyp2p.errors import CyclicWorkflow, UnknownDependency, ValidationError
from colonyp2p.identity import Identity
from colonyp2p.model.checks import as_tuple, check_str, set_field
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import MAX_NAME, MAX_SPEC_BYTES, FunctionSpec

MAX_WORKFLOW_SPECS = 10_000
MAX_WORKFLOW_BYTES = 16 << 20


@dataclass(frozen=True)
class WorkflowSpec:
    """Function specs whose nodenames and dependencies form a DAG (checked on creation)."""

    colonyname: str
    functionspecs: tuple[FunctionSpec, ...]

    def __post_init__(self) -> None:
        check_str(self.colonyname, "colonyname", MAX_NAME)
        specs = as_tuple(self.functionspecs, "functionspecs")
        set_field(self, "functionspecs", specs)
        if not specs:
            raise ValidationError("a workflow needs at least one function spec", "functionspecs")
        if len(specs) > MAX_WORKFLOW_SPECS:
            raise ValidationError(
                f"at most {MAX_WORKFLOW_SPECS} function specs, got {len(specs)}", "functionspecs"
            )
        index: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if not isinstance(spec, FunctionSpec):
                raise ValidationError(
                    f"must be a FunctionSpec, got {type(spec).__name__}", f"functionspecs[{i}]"
                )
            if not spec.nodename:
                raise ValidationError(
                    "every spec of a workflow needs a nodename", f"functionspecs[{i}].nodename"
                )
            if spec.nodename in index:
                first = index[spec.nodename]
                raise ValidationError(
                    f"{spec.nodename!r} is also the nodename of functionspecs[{first}]",
                    f"functionspecs[{i}].nodename",
                )
            index[spec.nodename] = i
        for i, spec in enumerate(specs):
            for j, dep in enumerate(spec.conditions.dependencies):
                if dep not in index:
                    raise UnknownDependency(
                        f"{spec.nodename!r} depends on {dep!r}, which is no nodename in this "
                        "workflow",
                        f"functionspecs[{i}].conditions.dependencies[{j}]",
                    )
        self.__dict__["_index"] = index
        self.__dict__["_order"] = _topological_order(specs, index)
        # Each spec is at most MAX_SPEC_BYTES already: encode only when that is not enough.
        if len(specs) * MAX_SPEC_BYTES > MAX_WORKFLOW_BYTES:
            size = len(codec.canonical_bytes(self))
            if size > MAX_WORKFLOW_BYTES:
                raise ValidationError(
                    f"the workflow encodes to {size} bytes, more than the {MAX_WORKFLOW_BYTES} "
                    "allowed",
                    "functionspecs",
                )

    @cached_property
    def _index(self) -> dict[str, int]:
        return {spec.nodename: i for i, spec in enumerate(self.functionspecs)}

    @cached_property
    def _order(self) -> tuple[FunctionSpec, ...]:
        return _topological_order(self.functionspecs, self._index)

    @cached_property
    def _children(self) -> dict[str, tuple[str, ...]]:
        children: dict[str, list[str]] = {spec.nodename: [] for spec in self.functionspecs}
        for spec in self.functionspecs:
            for dep in spec.conditions.dependencies:
                children[dep].append(spec.nodename)
        return {name: tuple(kids) for name, kids in children.items()}

    def order(self) -> tuple[FunctionSpec, ...]:
        """The specs parents first; among specs ready at the same time, input order."""
        return self._order

    def spec(self, nodename: str) -> FunctionSpec:
        """The spec with this nodename (KeyError if there is none)."""
        return self.functionspecs[self._index[nodename]]

    def parents_of(self, nodename: str) -> tuple[str, ...]:
        """The nodenames this node depends on, in its dependency order."""
        return self.spec(nodename).conditions.dependencies

    def children_of(self, nodename: str) -> tuple[str, ...]:
        """The nodenames that depend on this node, in input order."""
        if nodename not in self._index:
            raise KeyError(nodename)
        return self._children[nodename]

    @cached_property
    def roots(self) -> tuple[str, ...]:
        """The nodenames without parents, in input order: they start the workflow."""
        return tuple(s.nodename for s in self.functionspecs if not s.conditions.dependencies)

    @cached_property
    def leaves(self) -> tuple[str, ...]:
        """The nodenames without children, in input order: their outputs end the workflow."""
        return tuple(s.nodename for s in self.functionspecs if not self._children[s.nodename])


def _topological_order(
    specs: tuple[FunctionSpec, ...], index: dict[str, int]
) -> tuple[FunctionSpec, ...]:
    # Kahn's algorithm with a heap of input positions: the order is stable.
    pending = [len(spec.conditions.dependencies) for spec in specs]
    children: list[list[int]] = [[] for _ in specs]
    for i, spec in enumerate(specs):
        for dep in spec.conditions.dependencies:
            children[index[dep]].append(i)
    ready = [i for i, count in enumerate(pending) if count == 0]
    heapq.heapify(ready)
    order: list[FunctionSpec] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(specs[i])
        for child in children[i]:
            pending[child] -= 1
            if pending[child] == 0:
                heapq.heappush(ready, child)
    if len(order) < len(specs):
        cycle = _find_cycle(specs, index, pending)
        raise CyclicWorkflow(
            "the dependencies form a cycle: " + " -> ".join(cycle), "functionspecs"
        )
    return tuple(order)


def _find_cycle(
    specs: tuple[FunctionSpec, ...], index: dict[str, int], pending: list[int]
) -> list[str]:
    """Nodenames along one cycle, each a parent of the next, the first repeated at the end."""
    # Every node Kahn could not place has a parent it could not place either,
    # so walking up such parents from one of them must come back to a node.
    start = next(i for i, count in enumerate(pending) if count > 0)
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(
            index[dep] for dep in specs[node].conditions.dependencies if pending[index[dep]] > 0
        )
    cycle = path[seen[node] :]
    names = [specs[i].nodename for i in reversed(cycle)]
    return [*names, names[0]]


def workflow_id_for(workflow: WorkflowSpec, submitter: str, now: float) -> str:
    """The id every process of one submitted workflow shares (64 hex characters)."""
    return hashlib.sha256(codec.canonical_bytes([workflow, submitter, float(now)])).hexdigest()


def sign_workflow(
    wf: WorkflowSpec,
    identity: Identity,
    colony_id: str,
    now: float,
    nonce_source: Callable[[], bytes],
) -> tuple[SignedSpec, ...]:
    """Sign every spec of ``wf``, parents first.

    Each child's ``parents`` holds the process ids of its parents in the order
    of its ``conditions.dependencies``; all share one ``workflow_id``.
    """
    workflow_id = workflow_id_for(wf, identity.member_id, now)
    pids: dict[str, str] = {}
    signed: list[SignedSpec] = []
    for spec in wf.order():
        one = SignedSpec.create(
            spec,
            identity,
            colony_id,
            now,
            nonce_source(),
            parents=tuple(pids[dep] for dep in spec.conditions.dependencies),
            workflow_id=workflow_id,
        )
        pids[spec.nodename] = one.pid
        signed.append(one)
    return tuple(signed)
