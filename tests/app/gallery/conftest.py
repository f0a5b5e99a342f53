"""Fixtures for the gallery store tests.

Contract tests take `store_factory`, which is parametrised over every store backend, so each
backend must pass the same tests. Add the PostgreSQL store to STORE_KINDS when it exists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest

from app.gallery import GalleryStore, NewFace, SqliteGalleryStore

STORE_KINDS = ["sqlite"]
EMBEDDER_ID = "test-embedder"
DIMENSION = 128


class StoreFactory(Protocol):
    """Opens the store under test; every call in one test opens the same gallery again."""

    def __call__(
        self,
        *,
        embedder_id: str = EMBEDDER_ID,
        dimension: int = DIMENSION,
        crops_dir: Path | None = None,
    ) -> GalleryStore: ...


class UnitVectors(Protocol):
    def __call__(self, count: int, dimension: int = DIMENSION) -> np.ndarray: ...


class FaceMaker(Protocol):
    def __call__(
        self, embeddings: np.ndarray, *, crop: bool = False, quality: dict | None = None
    ) -> list[NewFace]: ...


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def gallery_path(tmp_path: Path) -> Path:
    return tmp_path / "gallery" / "gallery.sqlite3"


@pytest.fixture
def store_factory(store_kind: str, gallery_path: Path) -> Iterator[StoreFactory]:
    opened: list[GalleryStore] = []

    def open_store(
        *,
        embedder_id: str = EMBEDDER_ID,
        dimension: int = DIMENSION,
        crops_dir: Path | None = None,
    ) -> GalleryStore:
        assert store_kind == "sqlite", f"no factory for store kind {store_kind!r}"
        store = SqliteGalleryStore(
            gallery_path, embedder_id=embedder_id, dimension=dimension, crops_dir=crops_dir
        )
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def crops_dir(tmp_path: Path) -> Path:
    return tmp_path / "crops"


@pytest.fixture
def store(store_factory: StoreFactory, crops_dir: Path) -> GalleryStore:
    """A new, empty gallery that stores crops under `crops_dir`."""
    return store_factory(crops_dir=crops_dir)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture
def unit_vectors(rng: np.random.Generator) -> UnitVectors:
    """Random L2-normalised float32 vectors: (count, dimension)."""

    def make(count: int, dimension: int = DIMENSION) -> np.ndarray:
        vectors = rng.standard_normal((count, dimension)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    return make


@pytest.fixture
def make_faces(rng: np.random.Generator) -> FaceMaker:
    """NewFace objects for given embeddings (K, D), with random 16x12 crops when `crop`."""

    def make(
        embeddings: np.ndarray, *, crop: bool = False, quality: dict | None = None
    ) -> list[NewFace]:
        faces = []
        for index, embedding in enumerate(embeddings):
            faces.append(
                NewFace(
                    embedding=embedding,
                    quality={"blur": 0.1, "index": index} if quality is None else quality,
                    image_sha256=hashlib.sha256(embedding.tobytes()).hexdigest(),
                    crop=rng.integers(0, 256, (16, 12, 3), dtype=np.uint8) if crop else None,
                )
            )
        return faces

    return make
