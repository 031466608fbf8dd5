"""Local meta-filesystem measurements: many small files, and chunker dedup on an edit.

1. add_path of N small files (default 10,000 files of 1 KiB in 100 directories):
   files per second, and how many bytes the manifests (file manifests + directory
   snapshots) take next to the data; then export of the same snapshot.
2. For each chunker, a 32 MiB random file is stored, a few bytes are inserted near
   its start, and the edited file is stored again: how many new blocks and bytes
   the edit cost (what a re-upload would send), the chunking speed alone and the
   add_path speed (chunking, hashing, writing, fsync).

Run: .venv/bin/python bench/bench_mfs_local.py [--files N] [--size BYTES]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import tempfile
import time
from pathlib import Path

from colonyp2p.mfs import cid as cids
from colonyp2p.mfs.blockstore import BlockStore
from colonyp2p.mfs.chunking import CdcChunker, Chunker, FixedChunker
from colonyp2p.mfs.importer import add_path, export


def small_files(files: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-mfs-") as tmp:
        src = Path(tmp) / "src"
        per_dir = 100
        for i in range(files):
            d = src / f"d{i // per_dir:04d}"
            if i % per_dir == 0:
                d.mkdir(parents=True)
            (d / f"f{i:06d}.dat").write_bytes(rng.randbytes(size))
        with BlockStore(Path(tmp) / "store") as store:
            start, cpu = time.perf_counter(), time.process_time()
            root = add_path(store, src)
            took, cpu = time.perf_counter() - start, time.process_time() - cpu
            manifests = blocks = 0
            manifest_bytes = data_bytes = 0
            for cid, _ in store.walk(root):
                n = len(store.get(cid))
                if cids.parse(cid).codec == cids.DAG_CBOR:
                    manifests += 1
                    manifest_bytes += n
                else:
                    blocks += 1
                    data_bytes += n
            start = time.perf_counter()
            export(store, root, Path(tmp) / "out")
            export_took = time.perf_counter() - start
        print(f"add_path: {files} files of {size} B in {files // per_dir} directories")
        # fsync latency on a shared disk swings widely; CPU time says what the code costs
        print(
            f"  {took:.2f} s, {files / took:,.0f} files/s "
            f"(CPU {cpu:.2f} s: {files / cpu:,.0f} files/s of CPU)"
        )
        print(f"  {blocks} data blocks ({data_bytes:,} B), {manifests} manifests")
        print(
            f"  manifests: {manifest_bytes:,} B in total, {manifest_bytes / files:.0f} B per "
            f"file ({100 * manifest_bytes / data_bytes:.1f}% of the data)"
        )
        print(f"export: {export_took:.2f} s, {files / export_took:,.0f} files/s")


def dedup(size: int, insert: int, seed: int) -> None:
    """Store a file, insert bytes near its start, store it again: what is new?"""
    rng = random.Random(seed)
    original = rng.randbytes(size)
    at = 1000
    edited = original[:at] + rng.randbytes(insert) + original[at:]
    chunkers: list[Chunker] = [FixedChunker(), CdcChunker()]
    print(f"dedup: {size >> 20} MiB random file, {insert} bytes inserted at offset {at}")
    for chunker in chunkers:
        # CPU time, not wall time: on a busy machine the wall clock measures the neighbours
        start = time.process_time()
        cut = sum(1 for _ in chunker.chunks(io.BytesIO(original)))
        cut_speed = size / (time.process_time() - start) / 2**20
        with tempfile.TemporaryDirectory(prefix="bench-mfs-") as tmp:
            data = Path(tmp) / "data.bin"
            data.write_bytes(original)
            with BlockStore(Path(tmp) / "store") as store:
                start = time.perf_counter()
                add_path(store, data, chunker=chunker)
                add_speed = size / (time.perf_counter() - start) / 2**20
                before = store.du()
                data.write_bytes(edited)
                add_path(store, data, chunker=chunker)
                after = store.du()
        new_bytes = after.bytes - before.bytes
        print(
            f"  {chunker.name:31} {cut:3} blocks; the edit stored {after.blocks - before.blocks}"
            f" new blocks, {new_bytes / 2**20:5.2f} MiB ({100 * new_bytes / len(edited):5.1f}%"
            f" of the file); cutting {cut_speed:5.0f} MiB/s of CPU, add_path {add_speed:4.0f} MiB/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"(cpu count {os.cpu_count()}, load {os.getloadavg()[0]:.1f})")
    small_files(args.files, args.size, args.seed)
    dedup(32 << 20, 5, args.seed)


if __name__ == "__main__":
    main()
