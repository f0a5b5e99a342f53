"""SQLite gallery store: one database file per gallery, exact search from an in-memory index.

The file is the source of truth. At open, all embeddings are loaded into a CosineIndex, and
every write updates the index only after its transaction commits, so a search never returns
a face whose row is not stored.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.gallery.base import (
    EmbedderMismatchError,
    FaceNotFoundError,
    FaceRecord,
    GalleryFileError,
    GalleryStore,
    GalleryUnavailableError,
    Identity,
    IdentityNotFoundError,
    Match,
    NewFace,
    encode_metadata,
    validate_name,
    validate_new_face,
    validate_page,
    validate_queries,
)
from app.gallery.index import CosineIndex

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

# Timestamps are ISO 8601 text in UTC with microseconds, so text order is time order.
_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE identities (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        metadata TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    "CREATE INDEX identities_created_at_id ON identities (created_at, id)",
    """CREATE TABLE faces (
        id TEXT PRIMARY KEY,
        identity_id TEXT NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
        embedder_id TEXT NOT NULL,
        embedding BLOB NOT NULL,
        quality TEXT NOT NULL,
        image_sha256 TEXT NOT NULL,
        crop_path TEXT,
        created_at TEXT NOT NULL
    )""",
    "CREATE INDEX faces_identity_id ON faces (identity_id)",
)

_IDENTITY_COLUMNS = """
    i.id, i.name, i.metadata, i.created_at, i.updated_at,
    (SELECT count(*) FROM faces AS f WHERE f.identity_id = i.id)
"""
_FACE_COLUMNS = (
    "id, identity_id, embedder_id, embedding, quality, image_sha256, created_at, crop_path"
)


class SqliteGalleryStore(GalleryStore):
    """Gallery in one SQLite file (WAL mode), with optional PNG crops under `crops_dir`.

    One connection, guarded by a lock, serves all threads. Searches take no lock: they read
    the in-memory index and a name map.

    NOTE: the index lives in this process. Two processes writing the same file (for example
    several server workers) would each miss the other's writes in their searches.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        embedder_id: str,
        dimension: int,
        crops_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """Open the gallery file at `path`, or create it for `embedder_id` and `dimension`.

        Raises EmbedderMismatchError when the file was created for another embedder or
        dimension, and GalleryFileError when it is not a gallery file of this schema version.
        Neither case modifies the file.
        """
        if not embedder_id:
            raise ValueError("embedder_id must be a non-empty string.")
        if dimension < 1:
            raise ValueError(f"dimension must be >= 1, got {dimension}.")
        self.path = Path(path)
        self.embedder_id = embedder_id
        self.dimension = dimension
        self.crops_dir = Path(crops_dir).resolve() if crops_dir is not None else None

        self._lock = threading.RLock()
        self._closed = False
        self._index = CosineIndex(dimension)
        # identity id -> name, read by searches without the lock.
        self._names: dict[str, str] = {}

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None turns off the module's implicit transactions, so each write
        # opens its own with BEGIN IMMEDIATE.
        self._connection = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None
        )
        try:
            self._connection.create_function("casefold", 1, _casefold, deterministic=True)
            self._open_schema()
            self._connection.execute("PRAGMA foreign_keys = ON")
            self._load()
        except BaseException:
            self._connection.close()
            raise
        logger.info(
            "Opened gallery %s (embedder %s, dimension %d): %d identities, %d faces",
            self.path,
            self.embedder_id,
            self.dimension,
            len(self._names),
            len(self._index),
        )

    # writes

    def enroll(
        self,
        faces: Sequence[NewFace],
        *,
        identity_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Identity, list[FaceRecord]]:
        if (identity_id is None) == (name is None):
            raise ValueError("Give exactly one of identity_id and name.")
        if identity_id is not None and metadata is not None:
            raise ValueError("metadata is accepted only with name; use update_identity.")
        if identity_id is not None and not faces:
            raise ValueError("faces must not be empty when adding to an existing identity.")

        # Checks and PNG encoding run before taking the lock.
        new_name = validate_name(name) if name is not None else None
        metadata_json = None
        if new_name is not None:
            metadata_json = encode_metadata({} if metadata is None else metadata)
        checked = [validate_new_face(face, self.dimension) for face in faces]
        pngs = [
            _encode_png(face.crop) if self.crops_dir is not None and face.crop is not None else None
            for face in faces
        ]

        written: list[Path] = []
        with self._lock:
            self._check_open()
            now = datetime.now(UTC)
            try:
                with self._transaction() as connection:
                    if identity_id is None:
                        identity_id = str(uuid.uuid4())
                        connection.execute(
                            "INSERT INTO identities (id, name, metadata, created_at, updated_at)"
                            " VALUES (?, ?, ?, ?, ?)",
                            (identity_id, new_name, metadata_json, _format(now), _format(now)),
                        )
                    else:
                        self._touch(connection, identity_id, now)
                    records = self._insert_faces(
                        connection, identity_id, faces, checked, pngs, now, written
                    )
                    identity = self._read_identity(connection, identity_id)
            except BaseException:
                for path in written:
                    _remove_crop(path)
                raise

            if new_name is not None:
                self._names[identity_id] = new_name
            if records:
                self._index.add(
                    np.stack([embedding for embedding, _ in checked]),  # (K, D)
                    [record.id for record in records],
                    [identity_id] * len(records),
                )

        logger.info("Enrolled %d faces into identity %s", len(records), identity_id)
        return identity, records

    def update_identity(
        self,
        identity_id: str,
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Identity:
        if name is None and metadata is None:
            return self.get_identity(identity_id)
        new_name = validate_name(name) if name is not None else None
        metadata_json = encode_metadata(metadata) if metadata is not None else None
        now = datetime.now(UTC)

        with self._lock:
            self._check_open()
            with self._transaction() as connection:
                self._touch(connection, identity_id, now)
                connection.execute(
                    "UPDATE identities SET name = coalesce(?, name),"
                    " metadata = coalesce(?, metadata) WHERE id = ?",
                    (new_name, metadata_json, identity_id),
                )
                identity = self._read_identity(connection, identity_id)
            if new_name is not None:
                self._names[identity_id] = new_name
        return identity

    def delete_identity(self, identity_id: str) -> int:
        with self._lock:
            self._check_open()
            with self._transaction() as connection:
                if not _identity_exists(connection, identity_id):
                    raise IdentityNotFoundError(identity_id)
                rows = connection.execute(
                    "SELECT crop_path FROM faces WHERE identity_id = ?", (identity_id,)
                ).fetchall()
                # ON DELETE CASCADE removes the faces.
                connection.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
            self._index.remove_identity(identity_id)
            self._names.pop(identity_id, None)
            # Under the lock, so that an enroll cannot write into a folder being removed.
            for (crop_path,) in rows:
                if crop_path is not None:
                    _remove_crop(Path(crop_path))

        logger.info("Deleted identity %s with %d faces", identity_id, len(rows))
        return len(rows)

    def delete_face(self, identity_id: str, face_id: str) -> None:
        with self._lock:
            self._check_open()
            with self._transaction() as connection:
                self._touch(connection, identity_id, datetime.now(UTC))
                row = connection.execute(
                    "SELECT crop_path FROM faces WHERE id = ? AND identity_id = ?",
                    (face_id, identity_id),
                ).fetchone()
                if row is None:
                    raise FaceNotFoundError(identity_id, face_id)
                connection.execute("DELETE FROM faces WHERE id = ?", (face_id,))
            self._index.remove_faces([face_id])
            if row[0] is not None:
                _remove_crop(Path(row[0]))

        logger.info("Deleted face %s of identity %s", face_id, identity_id)

    # reads

    def get_identity(self, identity_id: str) -> Identity:
        with self._lock:
            self._check_open()
            return self._read_identity(self._connection, identity_id)

    def list_identities(
        self, *, offset: int = 0, limit: int = 50, name: str | None = None
    ) -> tuple[list[Identity], int]:
        validate_page(offset, limit)
        where = ""
        parameters: tuple[Any, ...] = ()
        if name is not None:
            # SQLite's LIKE and lower() fold ASCII only, so a Python function folds the case.
            where = "WHERE instr(casefold(i.name), ?) > 0"
            parameters = (name.casefold(),)

        with self._lock:
            self._check_open()
            (total,) = self._connection.execute(
                f"SELECT count(*) FROM identities AS i {where}", parameters
            ).fetchone()
            rows = self._connection.execute(
                f"SELECT {_IDENTITY_COLUMNS} FROM identities AS i {where}"
                " ORDER BY i.created_at, i.id LIMIT ? OFFSET ?",
                (*parameters, limit, offset),
            ).fetchall()
        return [_identity_from_row(row) for row in rows], total

    def list_faces(self, identity_id: str) -> list[FaceRecord]:
        with self._lock:
            self._check_open()
            if not _identity_exists(self._connection, identity_id):
                raise IdentityNotFoundError(identity_id)
            rows = self._connection.execute(
                f"SELECT {_FACE_COLUMNS} FROM faces WHERE identity_id = ?"
                " ORDER BY created_at, id",
                (identity_id,),
            ).fetchall()
        return [self._face_from_row(row) for row in rows]

    def search(self, embeddings: np.ndarray, *, top_k: int) -> list[list[Match]]:
        self._check_open()
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        queries = validate_queries(embeddings, self.dimension)  # (Q, D)
        hits = self._index.search(queries, top_k)

        results: list[list[Match]] = []
        for query_hits in hits:
            matches = []
            for hit in query_hits:
                # None only when the identity was deleted while this search ran.
                name = self._names.get(hit.identity_id)
                if name is not None:
                    matches.append(Match(hit.identity_id, name, hit.face_id, hit.similarity))
            results.append(matches)
        return results

    def count_identities(self) -> int:
        self._check_open()
        return len(self._names)

    def count_faces(self) -> int:
        self._check_open()
        return len(self._index)

    def ping(self) -> None:
        with self._lock:
            self._check_open()
            if not self.path.exists():
                raise GalleryUnavailableError(
                    f"Gallery file {self.path} no longer exists.",
                    value=str(self.path),
                    hint="Restore the file from a backup, or restart to create a new gallery.",
                )
            try:
                self._connection.execute("SELECT count(*) FROM meta").fetchone()
            except sqlite3.Error as exc:
                raise GalleryUnavailableError(
                    f"Gallery file {self.path} cannot be read: {exc}.",
                    value=str(self.path),
                    hint="Check the disk and the file permissions.",
                ) from exc

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._connection.close()
            self._closed = True
        logger.info("Closed gallery %s", self.path)

    # helpers

    def _open_schema(self) -> None:
        """Create the schema in an empty file, or check the meta table of an existing gallery."""
        connection = self._connection
        try:
            tables = {
                row[0]
                for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise GalleryFileError(
                f"{self.path} is not an SQLite database: {exc}.",
                value=str(self.path),
                hint="Point the gallery path at a facegate gallery file, or at a new path.",
            ) from exc

        if not tables:
            self._create_schema()
            return
        if "meta" not in tables:
            raise GalleryFileError(
                f"{self.path} is an SQLite database but not a facegate gallery (no meta table).",
                value=str(self.path),
                hint="Point the gallery path at a facegate gallery file, or at a new path.",
            )

        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        version = meta.get("schema_version")
        if version != str(SCHEMA_VERSION):
            raise GalleryFileError(
                f"Gallery {self.path} has schema version {version}, but this code reads "
                f"version {SCHEMA_VERSION}.",
                value=version,
                hint="Open it with the facegate version that created it, or use a new file.",
            )
        stored_embedder = meta.get("embedder_id")
        stored_dimension = meta.get("dimension")
        if stored_embedder != self.embedder_id or stored_dimension != str(self.dimension):
            raise EmbedderMismatchError(
                f"Gallery {self.path} was created with embedder {stored_embedder!r} "
                f"(dimension {stored_dimension}), but this store uses {self.embedder_id!r} "
                f"(dimension {self.dimension}).",
                value=self.embedder_id,
                hint=f"Set FACEGATE_EMBEDDER={stored_embedder} as when the gallery was created, "
                "or use a new gallery file for this embedder.",
            )

    def _create_schema(self) -> None:
        (journal_mode,) = self._connection.execute("PRAGMA journal_mode = WAL").fetchone()
        if journal_mode != "wal":
            # WAL needs shared memory, which some network file systems lack.
            logger.warning(
                "Gallery %s uses journal mode %s because WAL is not available here",
                self.path,
                journal_mode,
            )
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "embedder_id": self.embedder_id,
            "dimension": str(self.dimension),
            "created_at": _format(datetime.now(UTC)),
        }
        with self._transaction() as connection:
            for statement in _SCHEMA:
                connection.execute(statement)
            connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        logger.info("Created gallery %s", self.path)

    def _load(self) -> None:
        """Fill the name map and the index from the file."""
        connection = self._connection
        self._names = dict(connection.execute("SELECT id, name FROM identities").fetchall())

        (other_embedder,) = connection.execute(
            "SELECT count(*) FROM faces WHERE embedder_id != ?", (self.embedder_id,)
        ).fetchone()
        if other_embedder:
            raise EmbedderMismatchError(
                f"Gallery {self.path} contains {other_embedder} faces from an embedder other "
                f"than {self.embedder_id!r}.",
                value=self.embedder_id,
                hint="Use a new gallery file and enroll the identities again.",
            )

        rows = connection.execute(
            "SELECT id, identity_id, embedding FROM faces ORDER BY rowid"
        ).fetchall()
        blob_size = 4 * self.dimension  # float32
        if any(len(blob) != blob_size for _, _, blob in rows):
            raise GalleryFileError(
                f"Gallery {self.path} contains embeddings that are not {self.dimension} "
                "float32 values.",
                value=str(self.path),
                hint="Restore the file from a backup.",
            )
        embeddings = np.frombuffer(b"".join(blob for _, _, blob in rows), dtype="<f4")
        self._index.add(
            embeddings.reshape(len(rows), self.dimension).astype(np.float32),  # (N, D)
            [face_id for face_id, _, _ in rows],
            [identity_id for _, identity_id, _ in rows],
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; roll back on any exception."""
        connection = self._connection
        # IMMEDIATE takes the write lock at the start, so a database busy in another process
        # fails here (after the connection's 5 s timeout) rather than halfway through the writes.
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise GalleryUnavailableError(
                f"Gallery store {self.path} is closed.",
                value=str(self.path),
                hint="Open a new store for the file.",
            )

    def _touch(self, connection: sqlite3.Connection, identity_id: str, now: datetime) -> None:
        """Advance updated_at of an identity; raise IdentityNotFoundError when it is missing."""
        row = connection.execute(
            "SELECT updated_at FROM identities WHERE id = ?", (identity_id,)
        ).fetchone()
        if row is None:
            raise IdentityNotFoundError(identity_id)
        # Strictly later than the stored value even when the clock has not moved since.
        updated_at = max(now, _parse(row[0]) + timedelta(microseconds=1))
        connection.execute(
            "UPDATE identities SET updated_at = ? WHERE id = ?", (_format(updated_at), identity_id)
        )

    def _insert_faces(
        self,
        connection: sqlite3.Connection,
        identity_id: str,
        faces: Sequence[NewFace],
        checked: list[tuple[np.ndarray, str]],
        pngs: list[bytes | None],
        now: datetime,
        written: list[Path],
    ) -> list[FaceRecord]:
        """Insert checked faces and write their crops, appending each crop path to `written`."""
        records = []
        rows = []
        for face, (embedding, quality_json), png in zip(faces, checked, pngs, strict=True):
            face_id = str(uuid.uuid4())
            crop_path = None
            if png is not None:
                crop_path = self._write_crop(identity_id, face_id, png, written)
            records.append(
                FaceRecord(
                    id=face_id,
                    identity_id=identity_id,
                    embedder_id=self.embedder_id,
                    embedding=_read_only(embedding),
                    quality=json.loads(quality_json),
                    image_sha256=face.image_sha256,
                    created_at=now,
                    crop_path=crop_path,
                )
            )
            rows.append(
                (
                    face_id,
                    identity_id,
                    self.embedder_id,
                    embedding.astype("<f4").tobytes(),
                    quality_json,
                    face.image_sha256,
                    _format(now),
                    crop_path,
                )
            )
        connection.executemany(
            f"INSERT INTO faces ({_FACE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        return records

    def _read_identity(self, connection: sqlite3.Connection, identity_id: str) -> Identity:
        row = connection.execute(
            f"SELECT {_IDENTITY_COLUMNS} FROM identities AS i WHERE i.id = ?", (identity_id,)
        ).fetchone()
        if row is None:
            raise IdentityNotFoundError(identity_id)
        return _identity_from_row(row)

    def _write_crop(
        self, identity_id: str, face_id: str, png: bytes, written: list[Path]
    ) -> str:
        """Write a PNG crop and append its path to `written`; return the path."""
        assert self.crops_dir is not None
        directory = self.crops_dir / identity_id
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{face_id}.png"
        # Nothing reads a crop before the transaction commits, so no temporary file is needed.
        with path.open("xb") as file:
            written.append(path)
            file.write(png)
        return str(path)

    def _face_from_row(self, row: tuple[Any, ...]) -> FaceRecord:
        face_id, identity_id, embedder_id, blob, quality, image_sha256, created_at, crop_path = row
        embedding = np.frombuffer(blob, dtype="<f4").astype(np.float32)  # (D,)
        return FaceRecord(
            id=face_id,
            identity_id=identity_id,
            embedder_id=embedder_id,
            embedding=_read_only(embedding),
            quality=json.loads(quality),
            image_sha256=image_sha256,
            created_at=_parse(created_at),
            crop_path=crop_path,
        )


def _identity_exists(connection: sqlite3.Connection, identity_id: str) -> bool:
    row = connection.execute("SELECT 1 FROM identities WHERE id = ?", (identity_id,)).fetchone()
    return row is not None


def _identity_from_row(row: tuple[Any, ...]) -> Identity:
    identity_id, name, metadata, created_at, updated_at, face_count = row
    return Identity(
        id=identity_id,
        name=name,
        metadata=json.loads(metadata),
        created_at=_parse(created_at),
        updated_at=_parse(updated_at),
        face_count=face_count,
    )


def _format(timestamp: datetime) -> str:
    return timestamp.astimezone(UTC).isoformat(timespec="microseconds")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _casefold(text: str | None) -> str | None:
    return None if text is None else text.casefold()


def _read_only(array: np.ndarray) -> np.ndarray:
    copy = array.copy()
    copy.flags.writeable = False
    return copy


def _encode_png(crop: np.ndarray) -> bytes:
    """Encode a uint8 (H, W, 3) RGB crop as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop)).save(buffer, format="PNG")
    return buffer.getvalue()


def _remove_crop(path: Path) -> None:
    """Delete a crop file, then its identity folder if that is now empty; log failures."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        logger.warning("Could not delete crop file %s: %s", path, exc)
        return
    try:
        path.parent.rmdir()
    except OSError:
        pass  # the folder still contains other crops of the identity, or was already removed
