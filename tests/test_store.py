"""The node's SQLite store: what the core persists comes back equal after a reopen, a
batch is all or nothing, a commit survives SIGKILL, and a full disk, a corrupt file or
a newer schema are refused with clear errors that leave the data as it was."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colonyp2p import codec
from colonyp2p.core.client import SUBMISSIONS
from colonyp2p.core.effects import Effect, Observe, Persist, SetTimer
from colonyp2p.core.keeper import RECORDS
from colonyp2p.core.messages import Outcome, ParentRef, StoreSpec
from colonyp2p.core.node import MEMBERSHIP, ColonyNode
from colonyp2p.core.params import Params
from colonyp2p.core.records import KeeperRecord
from colonyp2p.errors import ColonyError, StoreError, StoreFull
from colonyp2p.identity import Identity
from colonyp2p.model.membership import Member, MembershipSet
from colonyp2p.model.signed import SignedSpec
from colonyp2p.model.spec import MAX_SECONDS, NO_LIMIT, Conditions, FunctionSpec, Gpu
from colonyp2p.node.store import SCHEMA_VERSION, TABLES, Store

IDS = [Identity.from_seed(bytes([n]) * 32) for n in range(1, 5)]
OWNER = IDS[0]
MEMBER_IDS = [i.member_id for i in IDS]
GENESIS = MembershipSet.genesis(
    OWNER, "store-test", 1.0, members=[Member(m, "executor") for m in MEMBER_IDS[1:]]
)
COLONY = GENESIS.colony_id


def make_spec(n: int, args: tuple[Any, ...] = (), submitter: Identity = OWNER) -> SignedSpec:
    """A deterministic signed spec (Ed25519 signatures are deterministic)."""
    spec = FunctionSpec(funcname="work", args=(n, *args), maxwaittime=-1, maxretries=2)
    return SignedSpec.create(spec, submitter, COLONY, 10.0 + n, n.to_bytes(8, "big"))


def make_store_spec(n: int, args: tuple[Any, ...] = ()) -> StoreSpec:
    return StoreSpec(make_spec(n, args), tuple(MEMBER_IDS[:3]), 1)


def make_record(n: int) -> KeeperRecord:
    spec = make_spec(n)
    done = Outcome("successful", output=("out", n, 1.5, b"\x00"), executor=MEMBER_IDS[1])
    return KeeperRecord(
        spec=spec,
        pid=spec.pid,
        keepers=tuple(MEMBER_IDS[:3]),
        config_version=1,
        promised=3,
        holder=MEMBER_IDS[1],
        purpose="claim",
        lease_until=25,  # an int in a float field, as a driver's clock may give
        accepted_epoch=3,
        accepted=done,
        decided=done,
        decided_epoch=3,
        attributes={"note": [1, None, {"x": 2.5}]},
    )


# --- hypothesis strategies: realistic, valid colony objects -------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
small_text = st.text(max_size=6)
# JSON-like values with lists, not tuples: the codec decodes every sequence inside an
# Any field as a list (see test_tuples_inside_any_fields_come_back_as_lists).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | finite
    | small_text
    | st.binary(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(small_text, inner, max_size=3),
    max_leaves=6,
)
member_ids = st.sampled_from(MEMBER_IDS)
pids = st.binary(min_size=32, max_size=32).map(bytes.hex)
keeper_sets = st.lists(member_ids, min_size=1, max_size=3, unique=True).map(tuple)
times = st.integers(0, 10**6) | finite  # ints in float fields must come back as floats
# a spec's time limits are no limit or up to a year (colonyp2p/model/spec.py)
limits = st.just(NO_LIMIT) | st.integers(0, 10**6) | st.floats(0, MAX_SECONDS)
env_names = st.from_regex(r"[A-Z]{1,4}", fullmatch=True)


@st.composite
def signed_specs(draw: st.DrawFn) -> SignedSpec:
    spec = FunctionSpec(
        funcname=draw(st.sampled_from(["work", "train.model", "sh:run"])),
        nodename=draw(small_text),
        args=tuple(draw(st.lists(json_values, max_size=3))),
        kwargs=draw(st.dictionaries(small_text, json_values, max_size=2)),
        priority=draw(st.integers(-5, 5)),
        maxwaittime=draw(limits),
        maxexectime=draw(limits),
        maxretries=draw(st.integers(0, 3)),
        conditions=Conditions(
            executortype=draw(st.sampled_from(["", "edge", "slurm"])),
            cpu=draw(st.integers(0, 4000)),
            mem=draw(st.integers(0, 2**40)),
            gpu=Gpu(name=draw(small_text), count=draw(st.integers(0, 4))),
        ),
        label=draw(st.sampled_from(["", "/data/in"])),
        env=draw(
            st.dictionaries(env_names, small_text.filter(lambda s: "\0" not in s), max_size=2)
        ),
    )
    return SignedSpec.create(
        spec,
        draw(st.sampled_from(IDS)),
        COLONY,
        draw(times),
        draw(st.binary(max_size=16)),
        parents=draw(st.lists(pids, max_size=2)),
        workflow_id=draw(st.sampled_from(["", "wf-1"])),
    )


outcomes = st.builds(
    Outcome,
    kind=st.sampled_from(["successful", "failed", "moved"]),
    output=st.lists(json_values, max_size=3).map(tuple),
    errors=st.lists(small_text, max_size=2).map(tuple),
    executor=member_ids,
    run_epoch=st.integers(0, 9),
    moved_to=keeper_sets,
    moved_version=st.integers(0, 3),
)
parent_refs = st.builds(ParentRef, pid=pids, keepers=keeper_sets)


@st.composite
def keeper_records(draw: st.DrawFn) -> KeeperRecord:
    spec = draw(signed_specs())
    return KeeperRecord(
        spec=spec,
        pid=spec.pid,
        keepers=draw(keeper_sets),
        config_version=draw(st.integers(1, 5)),
        parents=tuple(draw(st.lists(parent_refs, max_size=2))),
        promised=draw(st.integers(0, 9)),
        holder=draw(st.sampled_from(["", *MEMBER_IDS])),
        purpose=draw(st.sampled_from(["", "claim", "fail", "move", "recover"])),
        lease_until=draw(times),
        lease_started=draw(times),
        released=draw(st.booleans()),
        accepted_epoch=draw(st.integers(0, 9)),
        accepted=draw(st.none() | outcomes),
        decided=draw(st.none() | outcomes),
        decided_epoch=draw(st.integers(0, 9)),
        expired_attempts=draw(st.integers(0, 3)),
        parent_outcomes=tuple(draw(st.lists(st.tuples(pids, outcomes), max_size=2))),
        attributes=draw(st.dictionaries(small_text, json_values, max_size=2)),
        stored_at=draw(times),
        started_at=draw(times),
        ended_at=draw(times),
    )


store_specs = st.builds(
    StoreSpec,
    spec=signed_specs(),
    keepers=keeper_sets,
    config_version=st.integers(1, 5),
    parents=st.lists(parent_refs, max_size=2).map(tuple),
)


@st.composite
def memberships(draw: st.DrawFn) -> MembershipSet:
    others = draw(st.lists(st.sampled_from(MEMBER_IDS[1:]), unique=True))
    members = [
        Member(m, draw(st.sampled_from(["admin", "executor", "user"])), draw(small_text))
        for m in others
    ]
    genesis = MembershipSet.genesis(OWNER, draw(small_text), draw(times), members=members)
    version_2 = draw(st.booleans())
    if others and version_2:
        return genesis.updated(OWNER, draw(finite), remove=[others[0]])  # version 2
    return genesis


keys = st.sampled_from(["k1", "k2", "k3"])  # few keys, so that writes overwrite and delete
persists = st.one_of(
    st.builds(Persist, st.just(RECORDS), keys, st.none() | keeper_records()),
    st.builds(Persist, st.just(SUBMISSIONS), keys, st.none() | store_specs),
    st.builds(Persist, st.just(MEMBERSHIP), st.just("current"), st.none() | memberships()),
)
other_effects = st.sampled_from([Observe("stored", "p"), SetTimer(1.0, ("tick",))])
batches = st.lists(st.lists(persists | other_effects, max_size=6), min_size=1, max_size=4)


def replay(model: dict[str, dict[str, Any]], batch: list[Any]) -> None:
    for e in batch:
        if isinstance(e, Persist):
            if e.value is None:
                model[e.table].pop(e.key, None)
            else:
                model[e.table][e.key] = e.value


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches, st.booleans())
def test_what_is_applied_loads_back_equal_after_a_reopen(
    batches: list[list[Any]], reopen_between: bool
) -> None:
    model: dict[str, dict[str, Any]] = {table: {} for table in TABLES}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        store = Store(path)
        try:
            for batch in batches:
                store.apply(batch)
                replay(model, batch)
                if reopen_between:  # as a restarted daemon: load, then go on writing
                    store.close()
                    store = Store(path)
                    assert store.load() == model
        finally:
            store.close()
        with Store(path) as store:
            loaded = store.load()
    assert loaded == model
    for table, rows in loaded.items():
        for key, value in rows.items():
            assert type(value) is TABLES[table]
            # equal bytes too: a reloaded spec keeps its pid and signature
            assert codec.canonical_bytes(value) == codec.canonical_bytes(model[table][key])


def test_tuples_inside_any_fields_come_back_as_lists(tmp_path: Path) -> None:
    """A codec property the core should know about: Any fields hold JSON-like data, so a
    tuple in an output comes back as a list. The bytes (hence pids and signatures) are
    the same, but the objects no longer compare equal."""
    record = KeeperRecord(
        spec=make_spec(1),
        pid=make_spec(1).pid,
        keepers=(MEMBER_IDS[0],),
        config_version=1,
        decided=Outcome("successful", output=((1, 2),)),
    )
    with Store(tmp_path / "s.db") as store:
        store.apply([Persist(RECORDS, record.pid, record)])
        loaded = store.load()[RECORDS][record.pid]
    assert loaded.decided.output == ([1, 2],)
    assert loaded != record
    assert codec.canonical_bytes(loaded) == codec.canonical_bytes(record)


def test_a_restarted_node_gets_back_what_its_core_persisted(tmp_path: Path) -> None:
    membership = MembershipSet.genesis(
        OWNER, "lab", 0.0, members=[Member(m, "executor") for m in MEMBER_IDS[1:3]]
    )
    params = Params(keepers=3)
    node = ColonyNode(OWNER.member_id, membership, params, sign=OWNER.sign)
    effects: list[Effect] = [*node.start(0.0), *node.submit(make_spec(7), 1.0)]
    assert any(isinstance(e, Persist) for e in effects)
    with Store(tmp_path / "node" / "state.db") as store:
        store.apply(effects)
    with Store(tmp_path / "node" / "state.db") as store:
        durable = store.load()
    pid = make_spec(7).pid
    assert durable[SUBMISSIONS][pid] == node.client.pending[pid]
    assert durable[RECORDS][pid] == node.record(pid)
    again = ColonyNode(OWNER.member_id, membership, params, durable=durable, sign=OWNER.sign)
    assert again.client.pending == node.client.pending
    assert again.record(pid) == node.record(pid)


def _steps(record: KeeperRecord) -> list[KeeperRecord]:
    """The record as a keeper rewrites it: stored, promised, accepted, decided."""
    stored = dataclasses.replace(record, promised=0, holder="", accepted=None, decided=None)
    promised = dataclasses.replace(stored, promised=3, holder=MEMBER_IDS[1])
    accepted = dataclasses.replace(promised, accepted_epoch=3, accepted=record.accepted)
    return [stored, promised, accepted, record]


def _rows(path: Path) -> list[tuple[str, str, bytes]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT tbl, key, value FROM state ORDER BY tbl, key").fetchall()
    finally:
        db.close()


def test_a_records_spec_is_written_once_for_all_its_steps(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record = make_record(1)
    steps = _steps(record)
    with Store(path) as store:
        for step in steps[:2]:
            store.apply([Persist(RECORDS, record.pid, step)])
    first = _rows(path)
    with Store(path) as store:  # a restart in between: the spec's row is known again
        assert store.load()[RECORDS] == {record.pid: steps[1]}
        for step in steps[2:]:
            store.apply([Persist(RECORDS, record.pid, step)])
        assert store.load()[RECORDS] == {record.pid: record}
    rows = _rows(path)
    assert [(t, k) for t, k, _ in rows] == [("record-specs", record.pid), (RECORDS, record.pid)]
    assert rows[0] == first[0]  # written once, at the first step
    signature = record.spec.signature
    assert signature in rows[0][2] and signature not in rows[1][2]


def test_a_new_spec_under_the_same_key_replaces_the_old(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.apply([Persist(RECORDS, "k", make_record(1))])
        store.apply([Persist(RECORDS, "k", make_record(2))])
        assert store.load()[RECORDS] == {"k": make_record(2)}
        store.apply([Persist(RECORDS, "k", None)])
    assert _rows(path) == []


def test_records_written_with_their_spec_inside_still_load(tmp_path: Path) -> None:
    # rows from before specs had rows of their own: canonical CBOR of the whole record
    path = tmp_path / "s.db"
    record = make_record(1)
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO state VALUES (?, ?, ?)", (RECORDS, record.pid, codec.canonical_bytes(record))
    )
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.load()[RECORDS] == {record.pid: record}
        store.apply([Persist(RECORDS, record.pid, dataclasses.replace(record, promised=4))])
    with Store(path) as store:
        assert store.load()[RECORDS][record.pid].promised == 4


def test_a_record_whose_spec_row_is_gone_is_refused_on_load(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    record = make_record(1)
    with Store(path) as store:
        store.apply([Persist(RECORDS, record.pid, record)])
    db = sqlite3.connect(path)
    db.execute("DELETE FROM state WHERE tbl = 'record-specs'")
    db.commit()
    db.close()
    with Store(path) as store, pytest.raises(StoreError, match="unreadable: its spec is missing"):
        store.load()


# --- atomicity ------------------------------------------------------------------------------


def _unloadable_record() -> KeeperRecord:
    # encodes to CBOR, but the codec refuses to decode NaN: it would break every restart
    return KeeperRecord(
        spec=make_spec(9),
        pid=make_spec(9).pid,
        keepers=(MEMBER_IDS[0],),
        config_version=1,
        decided=Outcome("successful", output=(float("nan"),)),
    )


@pytest.mark.parametrize(
    "bad",
    [
        Persist("leases", "x", make_record(1)),  # unknown table
        Persist(RECORDS, "x", make_store_spec(1)),  # wrong type for the table
        Persist(RECORDS, "x", _unloadable_record()),
        Persist(SUBMISSIONS, "x", StoreSpec(make_spec(1), (MEMBER_IDS[0],), 1, ({},))),  # type: ignore[arg-type]
        Persist(RECORDS, "x", KeeperRecord(make_spec(1), "p", (), 1, attributes={"x": object()})),
    ],
    ids=["unknown-table", "wrong-type", "nan-output", "map-for-parent-ref", "unencodable"],
)
def test_a_batch_that_fails_at_its_last_effect_writes_nothing(tmp_path: Path, bad: Persist) -> None:
    with Store(tmp_path / "s.db") as store:
        store.apply(
            [
                Persist(RECORDS, "old", make_record(1)),
                Persist(SUBMISSIONS, "gone", make_store_spec(2)),
            ]
        )
        before = store.load()
        batch = [
            Persist(RECORDS, "old", make_record(3)),  # overwrite
            Persist(SUBMISSIONS, "gone", None),  # delete
            Persist(MEMBERSHIP, "current", GENESIS),  # insert
            bad,
        ]
        with pytest.raises(StoreError) as info:
            store.apply(batch)
        assert info.value.code == "store"
        assert store.load() == before
    with Store(tmp_path / "s.db") as store:
        assert store.load() == before


def test_a_batch_that_sqlite_refuses_midway_is_rolled_back(tmp_path: Path) -> None:
    # SQLite rolls a whole transaction back by itself on a full disk, but only the failed
    # statement on "too big": the store must roll back the rest.
    with Store(tmp_path / "s.db") as store:
        store.apply([Persist(RECORDS, "old", make_record(1))])
        before = store.load()
        store._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 20_000)
        batch = [
            Persist(RECORDS, "old", None),
            Persist(RECORDS, "new", make_record(2)),
            Persist(SUBMISSIONS, "huge", make_store_spec(3, ("x" * 50_000,))),
        ]
        with pytest.raises(StoreError, match="too big") as info:
            store.apply(batch)
        assert not isinstance(info.value, StoreFull)
        assert store.load() == before
        store.apply(batch[:2])  # the store is still usable
        assert set(store.load()[RECORDS]) == {"new"}


def test_effects_without_persists_write_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.apply([Observe("x"), SetTimer(1.0, ("t",))])
        store.apply([])
        assert store.load() == {table: {} for table in TABLES}


# --- durability -------------------------------------------------------------------------------


def kill_batch() -> list[Effect]:
    """What the SIGKILLed child writes (also built by the parent, to compare)."""
    return [
        Persist(MEMBERSHIP, "current", GENESIS),
        *(Persist(SUBMISSIONS, f"s{n}", make_store_spec(n)) for n in range(3)),
        Persist(RECORDS, "r1", make_record(1)),
        Persist(RECORDS, "gone", None),
        Observe("committed"),
    ]


CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from test_store import kill_batch
from colonyp2p.node.store import Store
store = Store({path!r})
store.apply(kill_batch())
print("committed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
print("still alive", flush=True)
"""


def test_a_committed_batch_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path) as store:
        store.apply([Persist(RECORDS, "gone", make_record(5))])
    script = CHILD.format(tests=str(Path(__file__).parent), path=str(path))
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout == "committed\n"
    expected: dict[str, dict[str, Any]] = {table: {} for table in TABLES}
    replay(expected, kill_batch())
    with Store(path) as store:
        assert store.load() == expected


# --- a full disk ---------------------------------------------------------------------------


def test_a_full_disk_raises_store_full_and_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store(path) as store:
        store.apply([Persist(SUBMISSIONS, "kept", make_store_spec(1))])
        store.set_meta("name", b"pi-1")
        before = store.load()
    # 64 pages of 4 KiB; the batch needs about 1 MiB, and fails after its first rows
    with Store(path, max_pages=64) as store:
        big = [Persist(RECORDS, "first", make_record(2))]
        big += [
            Persist(SUBMISSIONS, f"big{n}", make_store_spec(n, ("x" * 100_000,))) for n in range(10)
        ]
        with pytest.raises(StoreFull) as info:
            store.apply(big)
        assert isinstance(info.value, ColonyError)
        assert info.value.code == "store_full"
        assert "full" in str(info.value)
        assert store.load() == before
        # the failed batch took no space: small writes still fit
        store.apply([Persist(SUBMISSIONS, "after", make_store_spec(3))])
        store.set_meta("name", b"pi-2")
        # and space freed by a delete can be used again
        store.apply(big[1:3])
        with pytest.raises(StoreFull):
            store.apply(big[3:6])
        store.apply([Persist(SUBMISSIONS, "big1", None)])
        store.apply(big[3:4])
    with Store(path) as store:
        loaded = store.load()
        assert store.get_meta("name") == b"pi-2"
    assert set(loaded[SUBMISSIONS]) == {"kept", "after", "big0", "big2"}
    assert loaded[RECORDS] == {}


def test_no_space_to_create_the_store_is_store_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StoreFull):
        Store(tmp_path / "s.db")


# --- files, schema and corruption ----------------------------------------------------------


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "home" / "colonyp2p" / "state.db"
    old = os.umask(0)
    try:
        with Store(path) as store:
            store.apply([Persist(RECORDS, "r", make_record(1))])
            wal = Path(f"{path}-wal")
            assert wal.exists()
            assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_the_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        db.close()
    with Store(path) as store:
        assert store._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        store.apply([Persist(RECORDS, "r", make_record(1))])
    db = sqlite3.connect(path)
    rows = db.execute("SELECT * FROM state ORDER BY tbl, key").fetchall()
    assert rows
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match=r"schema version 2, newer .* upgrade"):
        Store(path)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert db.execute("SELECT * FROM state ORDER BY tbl, key").fetchall() == rows
    finally:
        db.close()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not SQLite at all\n" * 200)
    with pytest.raises(StoreError, match="not a readable colonyp2p store") as info:
        Store(path)
    assert not isinstance(info.value, StoreFull)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE songs (title TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="not a colonyp2p store"):
        Store(path)


def test_a_directory_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s.db").mkdir()
    with pytest.raises(StoreError, match="cannot open"):
        Store(tmp_path / "s.db")


@pytest.mark.parametrize(
    ("table", "raw", "error"),
    [
        (RECORDS, b"\xff\x00", "records/bad is unreadable"),
        (SUBMISSIONS, codec.canonical_bytes(make_record(1)), "submissions/bad is unreadable"),
        ("leases", codec.canonical_bytes(make_record(1)), "unknown to this colonyp2p"),
    ],
    ids=["not-cbor", "wrong-type", "unknown-table"],
)
def test_an_unreadable_row_is_refused_on_load(
    tmp_path: Path, table: str, raw: bytes, error: str
) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO state VALUES (?, 'bad', ?)", (table, raw))
    db.commit()
    db.close()
    with Store(path) as store, pytest.raises(StoreError, match=error):
        store.load()


# --- meta and life cycle -------------------------------------------------------------------


def test_meta_settings_persist(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Store(path) as store:
        assert store.get_meta("listen") is None
        store.set_meta("listen", b"/ip4/0.0.0.0/tcp/4001")
        store.set_meta("listen", b"/ip4/0.0.0.0/tcp/4002")
        store.set_meta("", b"")
    with Store(path) as store:
        assert store.get_meta("listen") == b"/ip4/0.0.0.0/tcp/4002"
        assert store.get_meta("") == b""
        assert store.load() == {table: {} for table in TABLES}


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.close()
    store.close()  # closing twice is fine
    with pytest.raises(StoreError, match="closed"):
        store.load()
    with pytest.raises(StoreError, match="closed"):
        store.apply([Persist(RECORDS, "r", make_record(1))])
