"""The meta-filesystem across real daemons: block exchange, labels between members, faults.

Every daemon is a process of its own on 127.0.0.1 (tests/cluster.py). Files are small
(a few MiB, blocks of 256 KiB to 4 MiB); where a test needs a transfer to be under way
when something happens, the providers' upload is capped (config ``mfs.serve_rate``) so
that it lasts seconds, and the test waits on the fetch's own progress, never on a sleep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio
from cluster import Node, cluster, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from colonyp2p.identity import Identity
from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.exchange import (
    BLOCKS_PROTOCOL,
    BadExchangeMessage,
    BlockServer,
    GetLabels,
    ListLabels,
    PushLabels,
    Request,
    Want,
    decode_ids,
    decode_raws,
    decode_request,
    encode_reply,
    encode_request,
)
from colonyp2p.mfs.importer import add_path
from colonyp2p.mfs.labels import Label
from colonyp2p.node.framing import frame, read_frame
from colonyp2p.node.transport import Transport

MiB = 1024 * 1024

# --- the protocol's messages -----------------------------------------------------------

_cid = st.binary(min_size=0, max_size=64).map(cids.block_cid)
_label_id = st.text("0123456789abcdef", min_size=64, max_size=64)
requests = st.one_of(
    st.lists(_cid, max_size=64).map(lambda c: Want(tuple(c))),
    st.just(ListLabels()),
    st.lists(_label_id, max_size=50).map(lambda i: GetLabels(tuple(i))),
    st.lists(st.binary(max_size=300), max_size=20).map(lambda r: PushLabels(tuple(r))),
)


@given(requests)
def test_a_request_decodes_to_itself(request: Request) -> None:
    assert decode_request(encode_request(request)) == request


def _cut_short(raw: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(raw) - 1).map(lambda n: raw[:n])


# Inputs that are never a request: random bytes (a request needs a map with a known op
# spelt out, which random bytes do not hold) and requests cut short (CBOR items are
# self-delimiting, so no proper prefix of one is a whole item).
garbage = st.one_of(
    st.binary(max_size=512),
    requests.map(encode_request).flatmap(_cut_short),
)


@given(garbage)
def test_garbage_is_refused_as_a_bad_message_and_nothing_else(raw: bytes) -> None:
    with pytest.raises(BadExchangeMessage):
        decode_request(raw)


def test_bytes_after_a_request_are_refused() -> None:
    # cbor2.loads stops after the first item; codec.loads refuses what follows it
    with pytest.raises(BadExchangeMessage, match="1 bytes after the CBOR item"):
        decode_request(encode_request(ListLabels()) + b"\x00")


class _Stream:
    """An in-memory stream from a member, as BlockServer.handle sees one."""

    def __init__(self, incoming: bytes) -> None:
        self.incoming = bytearray(incoming)
        self.written = bytearray()
        self.muxed_conn = SimpleNamespace(peer_id="member")
        self.ended: str | None = None  # "closed" or "reset"

    async def read(self, n: int) -> bytes:
        chunk = bytes(self.incoming[:n])
        del self.incoming[:n]
        return chunk

    async def write(self, data: bytes) -> None:
        self.written += data

    async def close(self) -> None:
        self.ended = "closed"

    async def reset(self) -> None:
        self.ended = "reset"


class _OneLabel:
    def label_ids(self) -> list[str]:
        return ["ab" * 32]

    def labels_raw(self, ids: Any) -> list[bytes]:
        return []

    async def receive_labels(self, sender: str, raws: Any) -> int:
        return 0


@settings(max_examples=50, deadline=None)
@given(garbage)
def test_a_server_sent_garbage_refuses_it_and_still_serves(raw: bytes) -> None:
    refused: list[Exception] = []
    server = BlockServer(
        None,  # type: ignore[arg-type]  # no request here reaches the store
        _OneLabel(),
        lambda m: m == "member",
        refuse=lambda peer, exc: refused.append(exc),
    )
    bad, control = _Stream(frame(raw)), _Stream(frame(encode_request(ListLabels())))
    trio.run(server.handle, bad)
    assert [type(e) for e in refused] == [BadExchangeMessage]
    assert (bad.ended, bytes(bad.written)) == ("reset", b"")  # dropped, nothing answered
    assert server.stats["refused_malformed"] == 1
    # the control request on a new stream is answered: the server still serves
    trio.run(server.handle, control)
    assert bytes(control.written) == frame(encode_reply(["ab" * 32]))
    assert control.ended == "closed" and len(refused) == 1


@given(st.lists(_label_id, max_size=30), st.lists(st.binary(max_size=100), max_size=30))
def test_replies_decode_to_themselves(ids: list[str], raws: list[bytes]) -> None:
    assert decode_ids(encode_reply(ids)) == tuple(ids)
    assert decode_raws(encode_reply(raws)) == tuple(raws)


def test_requests_with_wrong_fields_or_foreign_cids_are_refused() -> None:
    import cbor2

    for body in (
        {"op": "want", "cids": ["QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"]},
        {"op": "want", "cids": [cids.block_cid(b"x")] * 65},
        {"op": "want", "cids": "b"},
        {"op": "want"},
        {"op": "list_labels", "extra": 1},
        {"op": "get_labels", "ids": ["../../etc"]},
        {"op": "push_labels", "labels": ["text"]},
        {"op": "delete"},
        ["want"],
    ):
        with pytest.raises(BadExchangeMessage):
            decode_request(cbor2.dumps(body))


# --- helpers -----------------------------------------------------------------------------


def fs_job(node: Node, op: str, timeout: float = 60.0, **args: Any) -> dict[str, Any]:
    """Run an fs operation to its end; the finished job (state done or failed)."""
    with node.api() as api:
        job_id = api.fs(op, **args)["job"]
    return wait_for(lambda: _ended(node, job_id), timeout, f"fs {op} on {node.name}")


def _ended(node: Node, job_id: str) -> dict[str, Any] | None:
    with node.api() as api:
        job = api.fs_job(job_id)
    return job if job["state"] != "running" else None


def start_job(node: Node, op: str, **args: Any) -> str:
    with node.api() as api:
        return str(api.fs(op, **args)["job"])


def job_state(node: Node, job_id: str) -> dict[str, Any]:
    with node.api() as api:
        return dict(api.fs_job(job_id))


def fs(node: Node, op: str, **args: Any) -> dict[str, Any]:
    with node.api() as api:
        return dict(api.fs(op, **args))


def has_label(node: Node, path: str, version: int = 1) -> bool:
    return any(lb["path"] == path and lb["version"] >= version for lb in fs(node, "ls")["labels"])


def random_tree(root: Path, size: int) -> Path:
    root.mkdir(parents=True)
    (root / "data.bin").write_bytes(os.urandom(size))
    (root / "notes.txt").write_text("small file\n")
    return root


def same_tree(a: Path, b: Path) -> bool:
    return all((b / p.relative_to(a)).read_bytes() == p.read_bytes() for p in a.rglob("*.*"))


def block_files(node: Node) -> list[Path]:
    return [p for p in (node.home.root / "mfs" / "blocks").rglob("bafk*") if p.is_file()]


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# --- between daemons ---------------------------------------------------------------------

# Tests that do not disturb each other share a cluster (one per module and worker: each
# group runs in one xdist worker, in the order of this file). A test that changes what a
# later one needs comes last in its group (the corrupt stores, the killed provider).


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """An owner and another member, default settings."""
    with cluster(tmp_path_factory.mktemp("pair")) as c:
        owner = c.found()
        yield SimpleNamespace(c=c, owner=owner, other=c.join("other", owner))


@pytest.fixture(scope="module")
def shell_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """An owner and a shell executor of type "worker"."""
    with cluster(tmp_path_factory.mktemp("worker")) as c:
        owner = c.found()
        yield owner, c.join("worker", owner, executortype="worker", kind="shell")


SLOW = {"serve_rate": 2 * MiB}  # bytes per second each provider sends


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """An owner and a member b that upload slowly, and a fetcher."""
    with cluster(tmp_path_factory.mktemp("slow")) as c:
        owner = c.found(mfs=SLOW)
        b = c.join("b", owner, mfs=SLOW)
        yield SimpleNamespace(owner=owner, b=b, fetcher=c.join("fetcher", owner))


PAIR = pytest.mark.xdist_group("mfs-pair")
SLOW_GROUP = pytest.mark.xdist_group("mfs-slow")
WORKER = pytest.mark.xdist_group("mfs-worker")


@PAIR
def test_a_put_on_one_member_is_listed_and_fetched_on_another_with_the_cli(
    tmp_path: Path, pair: SimpleNamespace
) -> None:
    owner, other = pair.owner, pair.other
    src = random_tree(tmp_path / "src", 3 * MiB)
    put = owner.cli("fs", "put", str(src), "/sat/images", "--quiet")
    assert "/sat/images v1" in put.stdout
    # the label reaches the other member (pushed, or pulled within seconds)
    wait_for(lambda: has_label(other, "/sat/images"), 20, "the label on the other member")
    listing = other.cli("fs", "ls", "/sat/images").stdout
    assert "data.bin" in listing and "notes.txt" in listing
    assert fs(other, "du")["bytes"] < MiB  # listing fetched the manifests only
    out = tmp_path / "out"
    got = other.cli("fs", "get", "/sat/images", str(out), "--quiet")
    assert "fetched" in got.stdout
    assert same_tree(src, out)
    assert fs(owner, "du")["served_bytes"] >= 3 * MiB
    # one file out of the label
    one = tmp_path / "one"
    other.cli("fs", "get", "/sat/images/notes.txt", str(one), "--quiet")
    assert (one / "notes.txt").read_text() == "small file\n"
    # a new version without it, seen by the owner
    other.cli("fs", "rm", "/sat/images/notes.txt")
    wait_for(lambda: has_label(owner, "/sat/images", 2), 20, "version 2 on the owner")
    names = {e["name"] for e in fs(owner, "ls", ref="/sat/images")["entries"]}
    assert names == {"data.bin"}
    # a second label for the first version's snapshot, and the first one's history
    first = fs(other, "history", label="/sat/images")["versions"][0]["snapshot"]
    moved = other.cli("fs", "label", "/sat/copy", first, "--quiet").stdout
    assert f"/sat/copy v1 -> {first}" in moved
    assert "head" in other.cli("fs", "label", "/sat/images").stdout
    # fs sync both ways, with the onstart conflict rule
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    mine.mkdir()
    (mine / "x.txt").write_text("owner's\n")
    assert "/s v1 (uploaded)" in owner.cli("fs", "sync", "/s", str(mine), "--quiet").stdout
    wait_for(lambda: has_label(other, "/s"), 20, "/s on the other member")
    theirs.mkdir()
    (theirs / "x.txt").write_text("other's\n")
    (theirs / "y.txt").write_text("new\n")
    synced = other.cli("fs", "sync", "/s", str(theirs), "--keeplocal", "--quiet").stdout
    assert "/s v2 (uploaded)" in synced
    assert (theirs / "x.txt").read_text() == "other's\n"  # kept: --keeplocal
    wait_for(lambda: has_label(owner, "/s", 2), 20, "/s v2 on the owner")
    synced = owner.cli("fs", "sync", "/s", str(mine), "--quiet").stdout
    assert "uploaded" not in synced  # nothing new here after the download
    assert (mine / "x.txt").read_text() == "other's\n"  # the label's replaced ours
    assert (mine / "y.txt").read_text() == "new\n"


@PAIR
def test_a_block_corrupted_in_transfer_is_refused_and_fetched_from_another_member(
    tmp_path: Path, pair: SimpleNamespace
) -> None:
    owner, honest = pair.owner, pair.other
    liar = pair.c.join("liar", owner, start=False)  # a member whose host runs in this test
    src = random_tree(tmp_path / "src", 2 * MiB)
    # the honest member holds the same files in another tree (so it is no provider
    # of the liar's snapshot, and is asked only once the liar's blocks are refused)
    more = tmp_path / "more"
    more.mkdir()
    for path in src.iterdir():
        (more / path.name).write_bytes(path.read_bytes())
    (more / "extra.txt").write_text("more\n")
    assert fs_job(honest, "put", src=str(more), label="/honest")["state"] == "done"
    # the liar writes its own label for the files and serves their blocks corrupted
    store = BlockStore(tmp_path / "liar-store")
    snapshot = add_path(store, src)
    liar_id = liar.home.identity()
    label = Label.create(liar_id, owner.status()["colony_id"], "/lies", 1, snapshot, (), 0.0)
    served = _fetch_from_liar(liar_id, store, owner, label, tmp_path / "out")
    job = served["job"]
    assert job["state"] == "done", job["error"]
    assert same_tree(src, tmp_path / "out")
    assert job["fetch"]["bad_blocks"] >= 1  # the liar's blocks were refused
    assert served["liar_served"] >= 1
    assert job["fetch"]["by_provider"].get(honest.member_id, 0) >= 2 * MiB
    store.close()


def _open_host(identity: Identity, colony_id: str) -> Transport:
    """A host of this process's own that would talk to anyone (it plays a peer)."""
    return Transport(
        identity,
        colony_id,
        is_member=lambda m: True,
        on_message=lambda s, m: None,
        on_announcement=lambda s, m: None,
    )


def _fetch_from_liar(
    identity: Identity, store: BlockStore, target: Node, label: Label, dest: Path
) -> dict[str, Any]:
    """Run the liar's host in this process (a member that serves every block with a
    flipped byte), push its label to ``target``, have ``target`` fetch it, and serve
    until that fetch ended."""

    class Lying:
        def get(self, cid: str) -> bytes:
            data = bytearray(store.get(cid))
            if cids.parse(cid).codec == cids.RAW:  # manifests intact, file blocks not
                data[len(data) // 2] ^= 0x01
            return bytes(data)

    class Labels:
        def label_ids(self) -> list[str]:
            return [label.label_id]

        def labels_raw(self, ids: Any) -> list[bytes]:
            return [label.encode()] if label.label_id in ids else []

        async def receive_labels(self, sender: str, raws: Any) -> int:
            return 0

    status = target.status()
    server = BlockServer(Lying(), Labels(), lambda m: True)  # type: ignore[arg-type]
    out: dict[str, Any] = {}

    async def run() -> None:
        transport = _open_host(identity, status["colony_id"])
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            server.install(transport.host)
            member = await transport.connect(status["addrs"][0])
            stream = await transport.open_stream(member, BLOCKS_PROTOCOL)
            await stream.write(frame(encode_request(PushLabels((label.encode(),)))))
            assert await read_frame(stream, 1024) == encode_reply(1)
            job_id = await trio.to_thread.run_sync(
                lambda: start_job(target, "get", ref=label.path, dest=str(dest))
            )
            with trio.fail_after(60):
                while (job := await trio.to_thread.run_sync(job_state, target, job_id))[
                    "state"
                ] == "running":
                    await trio.sleep(0.1)
            out["job"] = job
            nursery.cancel_scope.cancel()

    trio.run(run)
    out["liar_served"] = server.stats["served_blocks"]
    return out


@PAIR  # last in its group: both stores end corrupt
def test_a_corrupt_block_is_detected_on_either_side_and_never_used(
    tmp_path: Path, pair: SimpleNamespace
) -> None:
    owner, other = pair.owner, pair.other
    src = random_tree(tmp_path / "src", 2 * MiB)
    assert fs_job(owner, "put", src=str(src), label="/in")["state"] == "done"
    wait_for(lambda: has_label(other, "/in"), 20, "the label")
    first = fs_job(other, "get", ref="/in", dest=str(tmp_path / "a"))
    assert first["state"] == "done"
    # in the fetcher's own store: every file block flipped, found on reading, fetched again
    for path in block_files(other):
        flip_a_byte(path)
    again = fs_job(other, "get", ref="/in", dest=str(tmp_path / "b"))
    assert again["state"] == "done", again["error"]
    assert same_tree(src, tmp_path / "b")
    assert again["fetch"]["fetched_blocks"] >= 1  # re-fetched, not used corrupt
    # in the only provider's store: never served; the fetch fails, writing nothing
    src2 = random_tree(tmp_path / "src2", 2 * MiB)
    assert fs_job(owner, "put", src=str(src2), label="/in2")["state"] == "done"
    wait_for(lambda: has_label(other, "/in2"), 20, "the second label")
    for path in block_files(owner):
        flip_a_byte(path)
    failed = fs_job(other, "get", ref="/in2", dest=str(tmp_path / "c2"))
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "block_not_found"
    assert not (tmp_path / "c2" / "data.bin").exists()
    assert fs(owner, "du")["corrupt_found"] >= 1
    # the owner adds the same files again: the quarantined blocks are restored
    assert fs_job(owner, "put", src=str(src2), label="/in2")["state"] == "done"
    done = fs_job(other, "get", ref="/in2", dest=str(tmp_path / "d"))
    assert done["state"] == "done", done["error"]
    assert same_tree(src2, tmp_path / "d")


def test_a_non_member_can_fetch_nothing(tmp_path: Path) -> None:
    with cluster(tmp_path / "c") as c:
        owner = c.found()
        src = random_tree(tmp_path / "src", MiB)
        assert fs_job(owner, "put", src=str(src), label="/secret")["state"] == "done"
        snapshot = fs(owner, "ls")["labels"][0]["snapshot"]
        stranger = Identity.generate()
        status = owner.status()
        answers: list[object] = []

        async def run() -> None:
            transport = _open_host(stranger, status["colony_id"])
            async with trio.open_nursery() as nursery:
                await nursery.start(transport.run)
                member = await transport.connect(status["addrs"][0])
                for request in (Want((snapshot,)), ListLabels()):
                    # the daemon will not even negotiate the protocol with a stranger
                    # (node/gate.py): no stream, so no request of its is ever parsed
                    stream = await transport.open_stream(member, BLOCKS_PROTOCOL)
                    if stream is None:
                        answers.append("refused")
                        continue
                    await stream.write(frame(encode_request(request)))
                    answers.append(await read_frame(stream, 64 * MiB))
                nursery.cancel_scope.cancel()

        trio.run(run)
        assert answers == ["refused", "refused"]
        assert owner.status()["refused"]["blocks"]["not_member"] >= 2
        assert fs(owner, "du")["served_blocks"] == 0


def _fetching(node: Node, job_id: str, enough: Callable[[dict[str, Any]], bool]) -> Any:
    def check() -> dict[str, Any] | None:
        job = job_state(node, job_id)
        assert job["state"] == "running", f"the fetch ended too soon: {job}"
        f = job["fetch"]
        return f if f is not None and enough(f) else None

    return check


@SLOW_GROUP
def test_a_download_resumes_after_a_restart_without_fetching_again(
    tmp_path: Path, slow: SimpleNamespace
) -> None:
    owner, fetcher = slow.owner, slow.fetcher
    src = random_tree(tmp_path / "src", 8 * MiB)
    assert fs_job(owner, "put", src=str(src), label="/resume")["state"] == "done"
    wait_for(lambda: has_label(fetcher, "/resume"), 20, "the label")
    job_id = start_job(fetcher, "get", ref="/resume", dest=str(tmp_path / "out"))
    partial = wait_for(
        _fetching(fetcher, job_id, lambda f: f["stored_blocks"] >= 3),
        30,
        "some blocks durable on the fetcher",
    )
    fetcher.kill9()
    fetcher.start()
    job = fs_job(fetcher, "get", ref="/resume", dest=str(tmp_path / "out"), timeout=60)
    assert job["state"] == "done", job["error"]
    assert same_tree(src, tmp_path / "out")
    f = job["fetch"]
    # what was durable before the kill was not asked for again
    assert f["had_blocks"] >= partial["stored_blocks"]
    total = f["had_blocks"] + f["fetched_blocks"]
    assert f["fetched_blocks"] <= total - partial["stored_blocks"]


# last in its group: b stays dead
@SLOW_GROUP
def test_a_provider_that_dies_mid_transfer_is_replaced(
    tmp_path: Path, slow: SimpleNamespace
) -> None:
    owner, b, fetcher = slow.owner, slow.b, slow.fetcher
    src = random_tree(tmp_path / "src", 8 * MiB)
    assert fs_job(owner, "put", src=str(src), label="/big")["state"] == "done"
    wait_for(lambda: has_label(b, "/big"), 20, "the label on b")
    assert fs_job(b, "pin", ref="/big", timeout=120)["state"] == "done"
    wait_for(lambda: has_label(fetcher, "/big"), 20, "the label on the fetcher")
    # both named: b's announcement in the DHT may still be on its way
    providers = [owner.member_id, b.member_id]
    job_id = start_job(fetcher, "get", ref="/big", dest=str(tmp_path / "out"), providers=providers)
    # both providers are sending when b dies
    wait_for(
        _fetching(fetcher, job_id, lambda f: len(f["by_provider"]) == 2),
        30,
        "blocks from both providers",
    )
    b.kill9()
    job = wait_for(lambda: _ended(fetcher, job_id), 60, "the fetch to end")
    assert job["state"] == "done", job["error"]
    assert same_tree(src, tmp_path / "out")
    assert job["fetch"]["provider_failures"] >= 1


def test_a_full_store_fails_the_put_cleanly_and_writes_no_label(tmp_path: Path) -> None:
    with cluster(tmp_path / "c") as c:
        owner = c.found(mfs={"quota": MiB})
        src = random_tree(tmp_path / "src", 3 * MiB)
        done = owner.cli("fs", "put", str(src), "/too/big", "--quiet", check=False)
        assert done.returncode != 0
        assert "quota" in done.stderr
        assert fs(owner, "ls")["labels"] == []
        usage = fs(owner, "du")
        assert usage["bytes"] <= MiB and usage["labels"] == 0
        small = random_tree(tmp_path / "small", 1000)
        assert "/fits v1" in owner.cli("fs", "put", str(small), "/fits", "--quiet").stdout


def _shell_worker_and(
    nodes: tuple[Node, Node], src: Path, label: str, name: str, text: str
) -> tuple[Node, Node]:
    """The owner and the shell executor of type "worker", once both know ``label``,
    which holds one file ``name`` with the line ``text`` (kept in ``src``)."""
    owner, worker = nodes
    src.mkdir()
    (src / name).write_text(text + "\n")
    assert fs_job(owner, "put", src=str(src), label=label)["state"] == "done"
    wait_for(lambda: has_label(worker, label), 20, f"{label} on the worker")
    return owner, worker


@WORKER
def test_sync_directives_download_before_and_upload_after_a_run(
    tmp_path: Path, shell_worker: tuple[Node, Node]
) -> None:
    owner, worker = _shell_worker_and(
        shell_worker, tmp_path / "src", "/job/in", "words.txt", "hello colony"
    )
    pid = owner.submit(
        {
            "funcname": "sh",
            "args": ["-c", "mkdir -p out && tr a-z A-Z < in/words.txt > out/upper.txt"],
            "conditions": {"executortype": "worker"},
            "fs": {
                "snapshots": [{"label": "/job/in", "dir": "/in"}],
                "dirs": [
                    {
                        "label": "/job/out",
                        "dir": "/out",
                        "keepfiles": False,
                        "onconflicts": {
                            "onstart": {"keeplocal": False},
                            "onclose": {"keeplocal": True},
                        },
                    }
                ],
            },
        }
    )["pid"]
    process = wait_for(lambda: owner.finished(pid), 60, "the run")
    assert process["state"] == "successful", process
    wait_for(lambda: has_label(owner, "/job/out"), 20, "the output label on the owner")
    out = tmp_path / "result"
    assert fs_job(owner, "get", ref="/job/out", dest=str(out))["state"] == "done"
    assert (out / "upper.txt").read_text() == "HELLO COLONY\n"
    # keepfiles false: the worker's copies are gone
    assert not list((worker.home.root / "work").rglob("upper.txt"))


@WORKER
def test_a_label_moved_during_a_run_is_merged_by_the_onclose_rule(
    tmp_path: Path, shell_worker: tuple[Node, Node]
) -> None:
    base = tmp_path / "base"
    owner, worker = _shell_worker_and(shell_worker, base, "/shared", "x.txt", "base")
    go = tmp_path / "go"
    script = f"while [ ! -e {go} ]; do sleep 0.05; done; echo worker > out/x.txt"
    pid = owner.submit(
        {
            "funcname": "sh",
            "args": ["-c", script],
            "conditions": {"executortype": "worker"},
            "fs": {
                "dirs": [
                    {
                        "label": "/shared",
                        "dir": "/out",
                        "onconflicts": {"onclose": {"keeplocal": False}},
                    }
                ]
            },
        }
    )["pid"]

    def downloaded() -> bool:
        return any(line.startswith("[fs] synced /shared") for line in owner.process(pid)["logs"])

    wait_for(downloaded, 30, "the run to have downloaded /shared")
    # meanwhile the owner writes version 2
    (base / "x.txt").write_text("owner\n")
    assert fs_job(owner, "put", src=str(base), label="/shared")["state"] == "done"
    wait_for(lambda: has_label(worker, "/shared", 2), 20, "version 2 on the worker")
    go.touch()
    process = wait_for(lambda: owner.finished(pid), 60, "the run")
    assert process["state"] == "successful", process["errors"]
    wait_for(lambda: has_label(owner, "/shared", 3), 20, "the merged version 3")
    out = tmp_path / "merged"
    assert fs_job(owner, "get", ref="/shared", dest=str(out))["state"] == "done"
    # onclose keeplocal false: the label's file keeps its name, the run's is beside it
    assert (out / "x.txt").read_text() == "owner\n"
    assert (out / "x.txt.conflict-local").read_text() == "worker\n"
