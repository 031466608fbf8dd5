"""Labels: signed versions of a colony path. Forks resolve to the same head in any
arrival order, losers stay listed until a merge names them, and labels that are
forged, from non-members, for another colony or with bad paths or versions are refused."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.errors import BadSignature, NotAMember, ValidationError, WrongColony
from colonyp2p.identity import Identity
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.labels import WRITER_ROLES, Label, LabelLog, check_path
from colonyp2p.model.membership import ROLES, Member, MembershipSet

OWNER, EXEC, USER, OUTSIDER = (Identity.from_seed(bytes([n]) * 32) for n in range(1, 5))
WRITERS = [OWNER, EXEC, USER]
MEMBERS = MembershipSet.genesis(
    OWNER,
    "labels",
    1.0,
    members=[Member(EXEC.member_id, "executor"), Member(USER.member_id, "user")],
)
COLONY = MEMBERS.colony_id


def snap(n: int) -> str:
    return cids.manifest_cid(n.to_bytes(4, "big"))


def make(
    writer: Identity, version: int, parents: list[Label], n: int = 0, path: str = "/data"
) -> Label:
    return Label.create(
        writer, COLONY, path, version, snap(n), [p.label_id for p in parents], 100.0 + n
    )


def test_every_role_may_write() -> None:
    assert set(ROLES) == WRITER_ROLES
    log = LabelLog(COLONY)
    v1 = make(OWNER, 1, [])
    assert log.add(v1, MEMBERS) == "admitted"
    v2 = make(EXEC, 2, [v1], 1)
    v3 = make(USER, 3, [v2], 2)
    assert log.add(v2, MEMBERS) == "admitted"
    assert log.add(v3, MEMBERS) == "admitted"
    assert log.add(v3, MEMBERS) == "duplicate"
    assert log.head("/data") == v3
    assert [lb.version for lb in log.history("/data")] == [1, 2, 3]
    assert log.at_version("/data", 2) == v2
    assert log.conflicts("/data") == []


def test_refusals() -> None:
    log = LabelLog(COLONY)
    v1 = make(OWNER, 1, [])
    forged = dataclasses.replace(v1, snapshot=snap(9))
    with pytest.raises(BadSignature):
        log.add(forged, MEMBERS)
    stolen = dataclasses.replace(v1, writer=EXEC.member_id)
    with pytest.raises(BadSignature):
        log.add(stolen, MEMBERS)
    with pytest.raises(NotAMember):
        log.add(make(OUTSIDER, 1, []), MEMBERS)
    other = MembershipSet.genesis(OUTSIDER, "other", 1.0)
    with pytest.raises(WrongColony):
        log.add(Label.create(OUTSIDER, other.colony_id, "/data", 1, snap(0), (), 1.0), other)
    with pytest.raises(WrongColony):
        LabelLog(other.colony_id).add(v1, MEMBERS)
    # revoked: judged by the membership it arrives with
    revoked = MEMBERS.updated(OWNER, 2.0, remove=[EXEC.member_id])
    with pytest.raises(NotAMember):
        log.add(make(EXEC, 1, [], path="/x"), revoked)
    assert len(log) == 0
    log.add(v1, MEMBERS)
    # a version must be one more than its highest parent
    with pytest.raises(ValidationError, match="is 2, not 3"):
        log.add(make(OWNER, 3, [v1], 1), MEMBERS)
    with pytest.raises(ValidationError, match="not /other"):
        log.add(make(OWNER, 2, [v1], 1, path="/other"), MEMBERS)
    assert len(log) == 1


def test_path_rules() -> None:
    for good in ["/a", "/sat/images", "/a b/ü/x.y", "/..a/b.."]:
        check_path(good)
    for bad in ["", "a", "/", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/a\0b", "/" + "x" * 256]:
        with pytest.raises(ValidationError):
            check_path(bad)
    with pytest.raises(ValidationError):
        make(OWNER, 1, [], path="/a/")
    with pytest.raises(ValidationError, match="version 1 has no parents"):
        Label(COLONY, "/a", 2, snap(0), (), OWNER.member_id, 1.0)
    with pytest.raises(ValidationError, match="sorted"):
        Label(COLONY, "/a", 2, snap(0), ("b" * 64, "a" * 64), OWNER.member_id, 1.0)
    with pytest.raises(ValidationError, match="dag-cbor"):
        Label(COLONY, "/a", 1, cids.block_cid(b""), (), OWNER.member_id, 1.0)


def test_two_writers_from_the_same_version_fork_and_the_loser_stays_listed() -> None:
    log = LabelLog(COLONY)
    v1 = make(OWNER, 1, [])
    a = make(EXEC, 2, [v1], 1)
    b = make(USER, 2, [v1], 2)
    for label in (v1, a, b):
        log.add(label, MEMBERS)
    winner, loser = sorted([a, b], key=lambda lb: lb.label_id)
    assert log.head("/data") == winner
    assert log.conflicts("/data") == [loser]
    assert log.at_version("/data", 2) == winner
    assert log.common_ancestor(a.label_id, b.label_id) == v1
    # a plain next version builds on the head only: the loser stays a conflict
    nxt = log.next_label(OWNER, "/data", snap(3), 200.0)
    log.add(nxt, MEMBERS)
    assert nxt.parents == (winner.label_id,)
    assert log.conflicts("/data") == [loser]
    # a merge names every tip: nothing is left over
    merge = log.merge_label(OWNER, "/data", snap(4), 201.0)
    assert log.add(merge, MEMBERS) == "admitted"
    assert merge.version == 4
    assert set(merge.parents) == {nxt.label_id, loser.label_id}
    assert log.head("/data") == merge
    assert log.conflicts("/data") == []
    assert loser.label_id in log.ancestors(merge.label_id)


def test_a_label_waits_for_its_parents() -> None:
    log = LabelLog(COLONY)
    v1 = make(OWNER, 1, [])
    v2 = make(OWNER, 2, [v1], 1)
    bad = make(OWNER, 5, [v2], 2)  # inconsistent version, only visible once v2 is here
    v3 = make(OWNER, 3, [v2], 3)
    assert log.add(v3, MEMBERS) == "pending"
    assert log.add(bad, MEMBERS) == "pending"
    assert log.head("/data") is None
    assert log.add(v2, MEMBERS) == "pending"
    assert {lb.label_id for lb in log.pending()} == {v2.label_id, v3.label_id, bad.label_id}
    assert log.add(v1, MEMBERS) == "admitted"
    assert log.head("/data") == v3
    assert log.pending() == []
    assert list(log.refused()) == [bad.label_id]
    # a store that kept the refused version (it arrived pending) restores the same log
    again = LabelLog.restore(COLONY, [v1, v2, v3, bad])
    assert again.head("/data") == v3
    assert list(again.refused()) == [bad.label_id]


def test_restore_rechecks_signatures() -> None:
    v1 = make(OWNER, 1, [])
    v2 = make(EXEC, 2, [v1], 1)
    log = LabelLog.restore(COLONY, [v2, v1])
    assert log.head("/data") == v2
    assert Label.decode(v2.encode()) == v2
    with pytest.raises(BadSignature):
        LabelLog.restore(COLONY, [dataclasses.replace(v1, timestamp=5.0)])


@st.composite
def label_dags(draw: st.DrawFn) -> list[Label]:
    """Labels of two paths built by several writers on random earlier versions: forks,
    chains on top of losers, and merges of several versions."""
    labels: list[Label] = []
    for path in ("/data", "/out"):
        mine = [make(draw(st.sampled_from(WRITERS)), 1, [], 0, path)]
        if draw(st.booleans()):  # two independent first versions
            mine.append(make(draw(st.sampled_from(WRITERS)), 1, [], 1, path))
        for n in range(draw(st.integers(0, 10))):
            parents = draw(st.lists(st.sampled_from(mine), min_size=1, max_size=3))
            unique = list({p.label_id: p for p in parents}.values())
            version = 1 + max(p.version for p in unique)
            writer = draw(st.sampled_from(WRITERS))
            mine.append(make(writer, version, unique, n + 2, path))
        labels.extend(mine)
    return labels


def summary(log: LabelLog) -> object:
    return {
        path: (
            log.head(path),
            [lb.label_id for lb in log.conflicts(path)],
            [lb.label_id for lb in log.history(path)],
            [getattr(log.at_version(path, v), "label_id", None) for v in range(1, 14)],
        )
        for path in log.paths()
    }


@settings(max_examples=60, deadline=None)
@given(label_dags(), st.data())
def test_any_arrival_order_gives_the_same_head_and_keeps_every_loser(
    labels: list[Label], data: st.DataObject
) -> None:
    reference = LabelLog(COLONY)
    for label in labels:
        reference.add(label, MEMBERS)
    expected = summary(reference)
    for _ in range(3):
        order = data.draw(st.permutations(labels))
        log = LabelLog(COLONY)
        for label in order:
            log.add(label, MEMBERS)
        assert summary(log) == expected
        assert log.pending() == []
        assert len(log) == len({lb.label_id for lb in labels})
    for path in reference.paths():
        mine = [lb for lb in labels if lb.path == path]
        best = max(mine, key=lambda lb: (lb.version, [-ord(c) for c in lb.label_id]))
        assert reference.head(path) == best
        # every version is in the history, and every one is reachable from a tip:
        # the head or a listed conflict
        reachable: set[str] = set()
        for tip in reference.tips(path):
            reachable |= reference.ancestors(tip.label_id)
        assert reachable == {lb.label_id for lb in mine}
