"""Workflows: topological order, cycles, unknown dependencies and signing a whole DAG."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import CyclicWorkflow, UnknownDependency, ValidationError
from colonyp2p.identity import Identity
from colonyp2p.model.spec import Conditions, FunctionSpec
from colonyp2p.model.workflow import WorkflowSpec, sign_workflow, workflow_id_for

ALICE = Identity.from_seed(b"\x07" * 32)
COLONY = "c" * 64

Edges = dict[str, list[str]]  # node -> its parents


def node(name: str, *deps: str) -> FunctionSpec:
    return FunctionSpec(funcname="f", nodename=name, conditions=Conditions(dependencies=deps))


def workflow(order: list[str], parents: Edges) -> WorkflowSpec:
    return WorkflowSpec("dev", tuple(node(n, *parents.get(n, [])) for n in order))


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], Edges]:
    """A random DAG (edges go from earlier to later in a hidden rank) listed in random order."""
    n = draw(st.integers(1, 12))
    names = [f"n{i}" for i in range(n)]
    parents: Edges = {}
    for j in range(n):
        earlier = names[:j]
        if earlier:
            parents[names[j]] = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=4))
    return draw(st.permutations(names)), parents


def reachable(parents: Edges, start: str) -> set[str]:
    """Nodes reachable from ``start`` along parent -> child edges."""
    children: dict[str, list[str]] = {}
    for child, ps in parents.items():
        for p in ps:
            children.setdefault(p, []).append(child)
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


@given(dags())
def test_order_respects_every_edge(dag: tuple[list[str], Edges]) -> None:
    names, parents = dag
    wf = workflow(names, parents)
    order = [s.nodename for s in wf.order()]
    assert sorted(order) == sorted(names)
    position = {name: i for i, name in enumerate(order)}
    for child, ps in parents.items():
        for p in ps:
            assert position[p] < position[child]
    assert set(wf.roots) == {n for n in names if not parents.get(n)}
    for name in names:
        assert wf.parents_of(name) == tuple(parents.get(name, []))
        for child in wf.children_of(name):
            assert name in wf.parents_of(child)


@given(dags())
def test_order_is_stable(dag: tuple[list[str], Edges]) -> None:
    """Kahn's order where the ready node first in the input always goes next."""
    names, parents = dag
    order = [s.nodename for s in workflow(names, parents).order()]
    done: set[str] = set()
    for name in order:
        ready = [n for n in names if n not in done and set(parents.get(n, [])) <= done]
        assert name == ready[0]
        done.add(name)


@given(dags(), st.data())
def test_a_back_edge_makes_a_cycle(dag: tuple[list[str], Edges], data: st.DataObject) -> None:
    names, parents = dag
    ancestor = data.draw(st.sampled_from(names))
    # make the ancestor depend on itself or on one of its descendants
    descendant = data.draw(st.sampled_from(sorted(reachable(parents, ancestor) | {ancestor})))
    # never a duplicate dependency (which would be refused as such, not as a cycle): in
    # a DAG no descendant of a node, nor the node itself, is already one of its parents
    assert descendant not in parents.get(ancestor, [])
    cyclic = {k: list(v) for k, v in parents.items()}
    cyclic.setdefault(ancestor, []).append(descendant)
    with pytest.raises(CyclicWorkflow) as exc:
        workflow(names, cyclic)
    cycle = str(exc.value).split(": ")[-1].split(" -> ")
    assert cycle[0] == cycle[-1] and len(cycle) >= 2
    for parent, child in itertools.pairwise(cycle):
        assert parent in cyclic.get(child, [])


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(CyclicWorkflow, match="a -> a"):
        workflow(["a"], {"a": ["a"]})


def test_unknown_dependency_is_named() -> None:
    with pytest.raises(UnknownDependency) as exc:
        workflow(["a", "b"], {"b": ["a", "ghost"]})
    assert "ghost" in str(exc.value)
    assert exc.value.field == "functionspecs[1].conditions.dependencies[1]"


@pytest.mark.parametrize(
    ("specs", "field"),
    [
        ((), "functionspecs"),
        ((FunctionSpec(funcname="f"),), "functionspecs[0].nodename"),
        ((node("a"), node("a")), "functionspecs[1].nodename"),
        (("a",), "functionspecs[0]"),
    ],
)
def test_workflow_rules(specs: tuple[FunctionSpec, ...], field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        WorkflowSpec("dev", specs)
    assert exc.value.field == field


def test_workflow_size_is_bounded() -> None:
    big = "x" * 900_000
    specs = tuple(FunctionSpec(funcname="f", nodename=f"n{i}", args=(big,)) for i in range(20))
    with pytest.raises(ValidationError, match="bytes"):
        WorkflowSpec("dev", specs)


def test_graph_queries() -> None:
    wf = workflow(
        ["merge", "split", "w1", "w2"],
        {"w1": ["split"], "w2": ["split"], "merge": ["w2", "w1"]},
    )
    assert [s.nodename for s in wf.order()] == ["split", "w1", "w2", "merge"]
    assert wf.roots == ("split",)
    assert wf.leaves == ("merge",)
    assert wf.children_of("split") == ("w1", "w2")
    assert wf.parents_of("merge") == ("w2", "w1")
    assert wf.spec("w1").nodename == "w1"
    with pytest.raises(KeyError):
        wf.children_of("nope")


@settings(max_examples=25)
@given(dags())
def test_sign_workflow(dag: tuple[list[str], Edges]) -> None:
    names, parents = dag
    wf = workflow(names, parents)
    counter = itertools.count()
    signed = sign_workflow(wf, ALICE, COLONY, 50.0, lambda: next(counter).to_bytes(8, "big"))
    assert [s.spec for s in signed] == list(wf.order())
    pids = {s.spec.nodename: s.pid for s in signed}
    assert len(set(pids.values())) == len(names)
    workflow_id = workflow_id_for(wf, ALICE.member_id, 50.0)
    for one in signed:
        one.verify()
        assert one.workflow_id == workflow_id
        assert one.colony_id == COLONY
        assert one.parents == tuple(pids[d] for d in one.spec.conditions.dependencies)


def test_workflow_id_depends_on_submitter_and_time() -> None:
    wf = workflow(["a"], {})
    assert workflow_id_for(wf, ALICE.member_id, 1.0) == workflow_id_for(wf, ALICE.member_id, 1)
    assert workflow_id_for(wf, ALICE.member_id, 1.0) != workflow_id_for(wf, ALICE.member_id, 2.0)
    other = Identity.from_seed(b"\x08" * 32).member_id
    assert workflow_id_for(wf, ALICE.member_id, 1.0) != workflow_id_for(wf, other, 1.0)
