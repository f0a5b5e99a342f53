"""Behaviour specific to SqliteGalleryStore: the file format, file checks and rollbacks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.gallery import (
    EmbedderMismatchError,
    GalleryFileError,
    GalleryUnavailableError,
    SqliteGalleryStore,
)
from app.gallery.sqlite import SCHEMA_VERSION
from tests.app.gallery.conftest import DIMENSION, EMBEDDER_ID, FaceMaker, UnitVectors

# Faces with this image hash are rejected by the trigger that test_enroll_failed_insert_* adds.
POISONED_SHA256 = "f" * 64


def _open(path: Path, crops_dir: Path | None = None) -> SqliteGalleryStore:
    return SqliteGalleryStore(
        path, embedder_id=EMBEDDER_ID, dimension=DIMENSION, crops_dir=crops_dir
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sqlite_store_creates_parent_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "gallery.sqlite3"

    with _open(path):
        pass

    assert path.is_file()


def test_sqlite_file_has_wal_meta_and_schema(
    tmp_path: Path, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    path = tmp_path / "gallery.sqlite3"
    embeddings = unit_vectors(2)
    with _open(path) as store:
        identity, records = store.enroll(make_faces(embeddings), name="Stored", metadata={"k": 1})

    connection = sqlite3.connect(path)
    try:
        (journal_mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        faces = connection.execute(
            "SELECT id, identity_id, embedder_id, embedding, quality FROM faces ORDER BY rowid"
        ).fetchall()
        (metadata,) = connection.execute(
            "SELECT metadata FROM identities WHERE id = ?", (identity.id,)
        ).fetchone()
        indexes = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
    finally:
        connection.close()

    assert journal_mode == "wal"
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["embedder_id"] == EMBEDDER_ID
    assert meta["dimension"] == str(DIMENSION)
    assert [row[0] for row in faces] == [record.id for record in records]
    assert {row[1] for row in faces} == {identity.id}
    assert {row[2] for row in faces} == {EMBEDDER_ID}
    np.testing.assert_allclose(
        np.frombuffer(faces[0][3], dtype="<f4"), embeddings[0], atol=1e-6
    )
    assert json.loads(faces[0][4]) == records[0].quality
    assert json.loads(metadata) == {"k": 1}
    assert "faces_identity_id" in indexes


def test_sqlite_foreign_keys_cascade_on_identity_delete(
    tmp_path: Path, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    path = tmp_path / "gallery.sqlite3"
    with _open(path) as store:
        identity, _ = store.enroll(make_faces(unit_vectors(2)), name="Cascade")
        (foreign_keys,) = store._connection.execute("PRAGMA foreign_keys").fetchone()
        store.delete_identity(identity.id)

    connection = sqlite3.connect(path)
    try:
        (face_rows,) = connection.execute("SELECT count(*) FROM faces").fetchone()
    finally:
        connection.close()
    assert foreign_keys == 1
    assert face_rows == 0


def test_sqlite_mismatched_open_leaves_file_unchanged(
    tmp_path: Path, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    path = tmp_path / "gallery.sqlite3"
    with _open(path) as store:
        store.enroll(make_faces(unit_vectors(2)), name="Someone")
    digest = _sha256(path)

    with pytest.raises(EmbedderMismatchError):
        SqliteGalleryStore(path, embedder_id="another-embedder", dimension=DIMENSION)
    with pytest.raises(EmbedderMismatchError):
        SqliteGalleryStore(path, embedder_id=EMBEDDER_ID, dimension=512)

    assert _sha256(path) == digest


def test_sqlite_open_rejects_non_database_file(tmp_path: Path) -> None:
    path = tmp_path / "gallery.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just some text " * 20)

    with pytest.raises(GalleryFileError, match="not an SQLite database"):
        _open(path)


def test_sqlite_open_rejects_other_database(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE notes (text TEXT)")
    connection.commit()
    connection.close()
    digest = _sha256(path)

    with pytest.raises(GalleryFileError, match="not a facegate gallery"):
        _open(path)

    assert _sha256(path) == digest


def test_sqlite_open_rejects_other_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "gallery.sqlite3"
    _open(path).close()
    connection = sqlite3.connect(path)
    connection.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()

    with pytest.raises(GalleryFileError, match="schema version 999"):
        _open(path)


def test_enroll_failed_insert_rolls_back_and_removes_crops(
    tmp_path: Path, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    path = tmp_path / "gallery.sqlite3"
    crops_dir = tmp_path / "crops"
    store = _open(path, crops_dir)
    existing, _ = store.enroll(make_faces(unit_vectors(1), crop=True), name="Existing")
    # A trigger makes the INSERT of the second face fail after both crops were written.
    store._connection.execute(
        "CREATE TRIGGER reject_poisoned BEFORE INSERT ON faces "
        f"WHEN NEW.image_sha256 = '{POISONED_SHA256}' "
        "BEGIN SELECT RAISE(ABORT, 'poisoned face'); END"
    )
    good, poisoned = make_faces(unit_vectors(2), crop=True)
    poisoned = dataclasses.replace(poisoned, image_sha256=POISONED_SHA256)

    with pytest.raises(sqlite3.IntegrityError, match="poisoned face"):
        store.enroll([good, poisoned], name="Never Stored")
    with pytest.raises(sqlite3.IntegrityError, match="poisoned face"):
        store.enroll([good, poisoned], identity_id=existing.id)

    assert store.count_identities() == 1
    assert store.count_faces() == 1
    assert store.get_identity(existing.id).face_count == 1
    assert store.get_identity(existing.id).updated_at == existing.updated_at
    assert [p.parent.name for p in crops_dir.rglob("*.png")] == [existing.id]
    assert [p.name for p in crops_dir.iterdir()] == [existing.id]
    store.close()
    with _open(path) as reopened:
        assert reopened.count_identities() == 1
        assert reopened.count_faces() == 1


def test_enroll_crop_write_failure_rolls_back(
    tmp_path: Path, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    crops_dir = tmp_path / "crops"
    crops_dir.write_bytes(b"a file where the crops folder should be")

    with _open(tmp_path / "gallery.sqlite3", crops_dir) as store:
        with pytest.raises(OSError):
            store.enroll(make_faces(unit_vectors(2), crop=True), name="Crop Fails")

        assert store.count_identities() == 0
        assert store.list_identities() == ([], 0)


def test_sqlite_name_filter_folds_non_ascii_case(tmp_path: Path) -> None:
    with _open(tmp_path / "gallery.sqlite3") as store:
        store.enroll([], name="ÉLODIE Straße")
        store.enroll([], name="Elodie")

        accented, accented_total = store.list_identities(name="élodie")
        sharp_s, _ = store.list_identities(name="STRASSE")

    assert accented_total == 1
    assert [identity.name for identity in accented] == ["ÉLODIE Straße"]
    assert [identity.name for identity in sharp_s] == ["ÉLODIE Straße"]


def test_sqlite_ping_raises_when_file_removed(tmp_path: Path) -> None:
    path = tmp_path / "gallery.sqlite3"
    with _open(path) as store:
        store.ping()
        path.unlink()

        with pytest.raises(GalleryUnavailableError, match="no longer exists"):
            store.ping()


def test_sqlite_store_searches_many_faces_exactly(
    tmp_path: Path, rng: np.random.Generator, make_faces: FaceMaker
) -> None:
    # 3000 faces over 1000 identities, beyond the index's initial capacity of 1024 rows.
    embeddings = rng.standard_normal((3000, DIMENSION)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    queries = embeddings[rng.choice(3000, size=8, replace=False)] + 0.05 * rng.standard_normal(
        (8, DIMENSION)
    ).astype(np.float32)

    with _open(tmp_path / "gallery.sqlite3") as store:
        owners = []
        for start in range(0, 3000, 3):
            identity, _ = store.enroll(make_faces(embeddings[start : start + 3]), name=str(start))
            owners += [identity.id] * 3
        results = store.search(queries, top_k=10)

    # Brute force: per identity the maximum cosine over its faces.
    normalised = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    per_identity = (normalised @ embeddings.T).reshape(8, 1000, 3).max(axis=2)  # (8, 1000)
    for matches, scores in zip(results, per_identity, strict=True):
        expected = np.argsort(-scores)[:10]
        assert [match.identity_id for match in matches] == [owners[3 * i] for i in expected]
        np.testing.assert_allclose(
            [match.similarity for match in matches], scores[expected], atol=1e-5
        )
