"""Gallery search latency at 10k, 100k and 1M faces, and SQLite enroll and reopen times.

Run from the repository root:

    .venv/bin/python -m bench.gallery                      # readable table
    .venv/bin/python -m bench.gallery --json               # one JSON object on stdout
    .venv/bin/python -m bench.gallery --sizes 10000 100000 --sqlite-faces 20000

Search: random unit 128-d embeddings, 2 faces per identity, in app.gallery.index.CosineIndex
(the exact in-memory search the SQLite store uses). After --warmup untimed queries, it times
single queries and batches of 16 at top_k 5 (median and p95 ms). The embeddings are random,
not faces; exact search costs the same for any values.

SQLite: enrolls --sqlite-faces faces (one identity with 2 faces per call, each call one
transaction, as /enroll does) into a new file, then times reopening it, which rebuilds the
index from the file.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from app.gallery.base import NewFace
from app.gallery.index import CosineIndex
from app.gallery.sqlite import SqliteGalleryStore
from bench.common import emit

DIMENSION = 128
FACES_PER_IDENTITY = 2
TOP_K = 5
EMPTY_SHA256 = "0" * 64


def random_unit_rows(rng: np.random.Generator, count: int) -> np.ndarray:
    rows = rng.standard_normal((count, DIMENSION)).astype(np.float32)  # (N, D)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def time_ms(call, repeats: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(samples), 3), "p95_ms": round(float(np.percentile(samples, 95)), 3)}


def bench_search(size: int, rng: np.random.Generator, repeats: int, warmup: int) -> dict[str, Any]:
    index = CosineIndex(DIMENSION)
    chunk = 100_000  # rows per add call, to bound the temporary arrays
    for start in range(0, size, chunk):
        count = min(chunk, size - start)
        face_ids = [f"f{start + row}" for row in range(count)]
        identity_ids = [f"i{(start + row) // FACES_PER_IDENTITY}" for row in range(count)]
        index.add(random_unit_rows(rng, count), face_ids, identity_ids)
    one = random_unit_rows(rng, 1)
    sixteen = random_unit_rows(rng, 16)
    return {
        "faces": size,
        "query_1": time_ms(lambda: index.search(one, TOP_K), repeats, warmup),
        "queries_16": time_ms(lambda: index.search(sixteen, TOP_K), repeats, warmup),
        "memory_mb": round(size * DIMENSION * 4 / 1e6, 1),
    }


def bench_sqlite(faces: int, rng: np.random.Generator) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gallery.sqlite3"
        store = SqliteGalleryStore(path, embedder_id="bench", dimension=DIMENSION)
        embeddings = random_unit_rows(rng, faces)
        started = time.perf_counter()
        for start in range(0, faces, FACES_PER_IDENTITY):
            new_faces = [
                NewFace(embedding=row, quality={}, image_sha256=EMPTY_SHA256)
                for row in embeddings[start : start + FACES_PER_IDENTITY]
            ]
            store.enroll(new_faces, name=f"person {uuid.uuid4().hex[:8]}")
        enroll_s = time.perf_counter() - started
        store.close()

        started = time.perf_counter()
        reopened = SqliteGalleryStore(path, embedder_id="bench", dimension=DIMENSION)
        reopen_s = time.perf_counter() - started
        count = reopened.count_faces()
        reopened.close()
        return {
            "faces": count,
            "enroll_ms_per_identity": round(enroll_s * 1000 / (faces / FACES_PER_IDENTITY), 3),
            "reopen_s": round(reopen_s, 3),
            "file_mb": round(os.path.getsize(path) / 1e6, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="faces in the index")
    parser.add_argument("--sqlite-faces", type=int, default=20_000, help="faces enrolled into SQLite (0 skips it)")
    parser.add_argument("--repeats", type=int, default=50, help="timed searches per case (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed searches first (default: 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    search = [bench_search(size, rng, args.repeats, args.warmup) for size in args.sizes]
    sqlite = bench_sqlite(args.sqlite_faces, rng) if args.sqlite_faces else None
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__},
        "dimension": DIMENSION,
        "top_k": TOP_K,
        "search": search,
        "sqlite": sqlite,
    }

    lines = [f"{'faces':>10}{'1 query p50 ms':>16}{'p95 ms':>9}{'16 queries p50 ms':>19}{'p95 ms':>9}{'matrix MB':>11}"]
    for row in search:
        lines.append(
            f"{row['faces']:>10}{row['query_1']['p50_ms']:>16}{row['query_1']['p95_ms']:>9}"
            f"{row['queries_16']['p50_ms']:>19}{row['queries_16']['p95_ms']:>9}{row['memory_mb']:>11}"
        )
    if sqlite:
        lines.append(
            f"SQLite: {sqlite['faces']} faces, enroll {sqlite['enroll_ms_per_identity']} ms per identity "
            f"(2 faces), reopen {sqlite['reopen_s']} s, file {sqlite['file_mb']} MB"
        )
    emit(report, "\n".join(lines), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
