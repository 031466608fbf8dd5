"""py-libp2p 0.8.1's Bitswap against the colony's block protocol, on the same footing.

    .venv/bin/python bench/bench_bitswap.py [--mib 64]

Two hosts in this one process (TCP + Noise + Yamux on 127.0.0.1, one connection per
peer, as the daemon's transport sets them up). The same random data is moved from host
A to host B twice: by Bitswap (``BitswapClient.add_block`` on A, a session's
``get_blocks_batch`` on B, in 256 KiB blocks, since Bitswap refuses blocks over
512 KiB) and by ``mfs.exchange`` (BlockServer on A, Fetcher on B, each with a block
store on disk, blocks of 1 MiB, verified and written durably on B). Prints MB/s of
each and appends the figures to bench/results/MFS.md's sibling BITSWAP.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.bitswap import BitswapClient
from libp2p.bitswap.cid import compute_cid_v1
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as Noise
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.chunking import FixedChunker
from colonyp2p.mfs.exchange import BLOCKS_PROTOCOL, BlockServer, Fetcher
from colonyp2p.mfs.importer import add_path

RESULTS = Path(__file__).resolve().parent / "results"
MiB = 1024 * 1024


def _host() -> Any:
    kp = create_new_key_pair()
    from libp2p.crypto.x25519 import create_new_key_pair as x25519

    return new_host(
        key_pair=kp,
        sec_opt={NOISE_ID: Noise(kp, noise_privkey=x25519().private_key)},
        muxer_opt={TProtocol(YAMUX_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


@asynccontextmanager
async def _pair() -> AsyncIterator[tuple[Any, Any]]:
    a, b = _host(), _host()
    addr = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
    async with a.run(addr), b.run(addr):
        await b.connect(info_from_p2p_addr(a.get_addrs()[0]))
        try:
            yield a, b
        finally:
            with trio.CancelScope(shield=True):
                await a.close()
                await b.close()


async def bitswap(data: Sequence[bytes]) -> float:
    async with _pair() as (a, b), trio.open_nursery() as nursery:
        sa, sb = BitswapClient(a), BitswapClient(b)
        for client in (sa, sb):
            client.set_nursery(nursery)
            await client.start()
        cids: list[Any] = []
        for block in data:
            cid = compute_cid_v1(block, codec=0x55)
            await sa.add_block(cid, block)
            cids.append(cid)
        t = time.perf_counter()
        got = await sb.new_session().get_blocks_batch(cids, peer_id=a.get_id(), timeout=300)
        seconds = time.perf_counter() - t
        assert len(got) == len(cids), f"bitswap fetched {len(got)} of {len(cids)} blocks"
        nursery.cancel_scope.cancel()
    return seconds


class _NoLabels:
    def label_ids(self) -> list[str]:
        return []

    def labels_raw(self, ids: Any) -> list[bytes]:
        return []

    async def receive_labels(self, sender: str, raws: Any) -> int:
        return 0


async def exchange(src: Path, tmp: Path) -> float:
    with BlockStore(tmp / "a") as store_a, BlockStore(tmp / "b") as store_b:
        root = add_path(store_a, src, chunker=FixedChunker(MiB))
        async with _pair() as (a, b):
            BlockServer(store_a, _NoLabels(), lambda m: True).install(a)
            peer = a.get_id()

            async def open_stream(member: str) -> Any:
                return await b.new_stream(peer, [BLOCKS_PROTOCOL])

            async def providers() -> list[str]:
                return [str(peer)]

            t = time.perf_counter()
            await Fetcher(store_b, open_stream).fetch(root, providers)
            return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    size = args.mib * MiB
    block = 256 * 1024
    raw = os.urandom(size)
    out: dict[str, Any] = {"mib": args.mib, "loadavg": Path("/proc/loadavg").read_text().strip()}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "data.bin").write_bytes(raw)
        out["exchange_seconds"] = trio.run(exchange, src, Path(tmp))
    out["exchange_MBps"] = round(size / out["exchange_seconds"] / 1e6, 1)
    print(f"mfs.exchange: {out['exchange_MBps']} MB/s", flush=True)
    blocks = [raw[i : i + block] for i in range(0, size, block)]
    out["bitswap_seconds"] = trio.run(bitswap, blocks)
    out["bitswap_MBps"] = round(size / out["bitswap_seconds"] / 1e6, 1)
    print(f"bitswap: {out['bitswap_MBps']} MB/s", flush=True)
    out["command"] = "python bench/bench_bitswap.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "BITSWAP.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
