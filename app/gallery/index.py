"""In-memory exact cosine index over unit-norm face embeddings, with identity-level top-k.

A search reads an immutable snapshot (arrays plus a row count) and takes no lock, so it never
waits for a write. Writes are serialised by a lock. An append fills rows past the snapshot's
row count, which no published snapshot reads, and a removal builds new arrays. Either write
then publishes a new snapshot with one attribute assignment.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

_MIN_CAPACITY = 1024  # rows
# Upper bound on one (queries, N) similarity block: 2**24 float32 values = 64 MiB.
_MAX_BLOCK_ELEMENTS = 2**24


class IndexHit(NamedTuple):
    identity_id: str
    face_id: str
    similarity: float


@dataclass(frozen=True, slots=True)
class _Snapshot:
    embeddings: np.ndarray  # (capacity, D) float32; rows [:size] are valid
    face_ids: np.ndarray  # (capacity,) object (str)
    identity_codes: np.ndarray  # (capacity,) int64, positions in CosineIndex._identity_ids
    size: int


class CosineIndex:
    """Exact cosine search over face embeddings that each belong to one identity.

    Embeddings must be L2-normalised, so the dot product is the cosine similarity.
    """

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._write_lock = threading.Lock()
        self._snapshot = _Snapshot(
            embeddings=np.empty((0, dimension), dtype=np.float32),
            face_ids=np.empty(0, dtype=object),
            identity_codes=np.empty(0, dtype=np.int64),
            size=0,
        )
        # Identity ids are stored once per identity and referenced by integer code per row.
        # The list only grows, so a search holding an old snapshot can always resolve a code.
        self._identity_ids: list[str] = []
        self._code_by_identity: dict[str, int] = {}

    def __len__(self) -> int:
        return self._snapshot.size

    def add(
        self, embeddings: np.ndarray, face_ids: Sequence[str], identity_ids: Sequence[str]
    ) -> None:
        """Append faces: embeddings (K, D) float32 with unit rows, and K face and identity ids."""
        count = len(face_ids)
        assert embeddings.shape == (count, self.dimension), embeddings.shape
        assert len(identity_ids) == count, (len(identity_ids), count)
        if count == 0:
            return

        with self._write_lock:
            codes = np.array([self._code_for(i) for i in identity_ids], dtype=np.int64)  # (K,)
            snapshot = self._snapshot
            start = snapshot.size
            end = start + count
            if end > snapshot.embeddings.shape[0]:
                snapshot = _copy_rows(snapshot, np.arange(start), max(end, 2 * start))

            # No published snapshot reads rows from `start` on, so they can be written in place.
            snapshot.embeddings[start:end] = embeddings
            snapshot.face_ids[start:end] = np.array(face_ids, dtype=object)
            snapshot.identity_codes[start:end] = codes
            self._snapshot = replace(snapshot, size=end)

    def remove_faces(self, face_ids: Collection[str]) -> int:
        """Remove faces by id; return how many were found."""
        if not face_ids:
            return 0
        with self._write_lock:
            snapshot = self._snapshot
            rows = snapshot.face_ids[: snapshot.size]
            remove = np.isin(rows, np.array(list(face_ids), dtype=object))  # (N,) bool
            return self._remove_rows(snapshot, remove)

    def remove_identity(self, identity_id: str) -> int:
        """Remove every face of an identity; return how many there were."""
        with self._write_lock:
            code = self._code_by_identity.get(identity_id)
            if code is None:
                return 0
            snapshot = self._snapshot
            remove = snapshot.identity_codes[: snapshot.size] == code  # (N,) bool
            return self._remove_rows(snapshot, remove)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[IndexHit]]:
        """Return per query the top_k identities by their best face: (Q, D) -> Q lists.

        `queries` must be float32 (Q, D) with unit rows.
        """
        assert queries.ndim == 2, queries.shape
        assert queries.shape[1] == self.dimension, queries.shape
        assert top_k >= 1, top_k
        snapshot = self._snapshot  # one read, so a concurrent write cannot mix two states
        size = snapshot.size
        if size == 0:
            return [[] for _ in range(queries.shape[0])]

        embeddings = snapshot.embeddings[:size]  # (N, D)
        codes = snapshot.identity_codes[:size]  # (N,)
        face_ids = snapshot.face_ids
        identity_ids = self._identity_ids
        block_queries = max(1, _MAX_BLOCK_ELEMENTS // size)

        results: list[list[IndexHit]] = []
        for block_start in range(0, queries.shape[0], block_queries):
            block = queries[block_start : block_start + block_queries]  # (B, D)
            similarities = block @ embeddings.T  # (B, N)
            # float32 rounding can give 1.0000001 for identical vectors.
            np.clip(similarities, -1.0, 1.0, out=similarities)
            for row in similarities:
                best_rows = _best_row_per_identity(row, codes, top_k)
                results.append(
                    [
                        IndexHit(identity_ids[codes[r]], face_ids[r], float(row[r]))
                        for r in best_rows
                    ]
                )
        return results

    def _code_for(self, identity_id: str) -> int:
        code = self._code_by_identity.get(identity_id)
        if code is None:
            code = len(self._identity_ids)
            self._identity_ids.append(identity_id)
            self._code_by_identity[identity_id] = code
        return code

    def _remove_rows(self, snapshot: _Snapshot, remove: np.ndarray) -> int:
        removed = int(np.count_nonzero(remove))
        if removed:
            keep = np.flatnonzero(~remove)
            # New arrays, because searches may still be reading the old ones.
            self._snapshot = _copy_rows(snapshot, keep, keep.size + keep.size // 4)
        return removed


def _copy_rows(snapshot: _Snapshot, rows: np.ndarray, capacity: int) -> _Snapshot:
    """Copy the given rows of `snapshot` into new arrays of at least `capacity` rows."""
    capacity = max(capacity, rows.size, _MIN_CAPACITY)
    dimension = snapshot.embeddings.shape[1]
    embeddings = np.empty((capacity, dimension), dtype=np.float32)
    face_ids = np.empty(capacity, dtype=object)
    identity_codes = np.empty(capacity, dtype=np.int64)
    embeddings[: rows.size] = snapshot.embeddings[rows]
    face_ids[: rows.size] = snapshot.face_ids[rows]
    identity_codes[: rows.size] = snapshot.identity_codes[rows]
    return _Snapshot(embeddings, face_ids, identity_codes, int(rows.size))


def _best_row_per_identity(similarities: np.ndarray, codes: np.ndarray, top_k: int) -> np.ndarray:
    """Return the rows of the best face of the top_k identities, best first: (N,) -> (<= top_k,).

    The first occurrence of each identity in the faces sorted by similarity is its best face.
    Sorting only the highest `candidates` faces gives the same result whenever they already
    contain top_k distinct identities, so the full sort runs only when identities have many
    faces each near the top.
    """
    size = similarities.shape[0]
    candidates = min(size, 4 * top_k)
    while True:
        if candidates < size:
            top = np.argpartition(similarities, size - candidates)[size - candidates :]
        else:
            top = np.arange(size)
        order = top[np.argsort(-similarities[top], kind="stable")]  # (C,) best first
        _, first = np.unique(codes[order], return_index=True)  # first position per identity
        if first.size >= top_k or candidates == size:
            break
        candidates = min(size, 4 * candidates)
    return order[np.sort(first)[:top_k]]
