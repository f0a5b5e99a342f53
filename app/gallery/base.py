"""Gallery records, errors and the store interface that every backend implements.

The gallery stores enrolled identities and their face embeddings. All embeddings in one gallery
come from one embedder (`embedder_id`) and have one dimension, because similarities between
embeddings of different models mean nothing. The input checks shared by all backends live
here too, so that every backend accepts and rejects the same values.
"""

from __future__ import annotations

import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import numpy as np

from models.errors import FacegateError

MAX_NAME_LENGTH = 200  # characters, after stripping surrounding whitespace
MAX_METADATA_BYTES = 16 * 1024  # UTF-8 bytes of the compact JSON text
# Nested objects and lists, counting the metadata object itself. Pydantic 2 stops serializing
# at about 255 levels, so much deeper metadata would make every response that returns it fail.
MAX_METADATA_DEPTH = 32
# Tolerated |norm - 1| of an enrolled embedding: float32 normalisation leaves about 1e-7.
UNIT_NORM_TOLERANCE = 1e-3

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# records


@dataclass(frozen=True, slots=True)
class Identity:
    """An enrolled person.

    `metadata` is the stored JSON object, decoded. `updated_at` moves on every change to the
    name, the metadata or the faces. Both timestamps are timezone-aware UTC.
    """

    id: str
    name: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    face_count: int


@dataclass(frozen=True, slots=True, eq=False)
class FaceRecord:
    """One stored face of an identity.

    `embedding` is a read-only float32 array of shape (D,) with unit L2 norm. `crop_path` is
    the absolute path of the PNG crop, or None when no crop was stored.
    """

    id: str
    identity_id: str
    embedder_id: str
    embedding: np.ndarray
    quality: dict[str, Any]
    image_sha256: str
    created_at: datetime
    crop_path: str | None


@dataclass(frozen=True, slots=True, eq=False)
class NewFace:
    """A face to enroll.

    `embedding`: float32 (D,), L2-normalised by the caller. `image_sha256`: lowercase hex
    SHA-256 of the uploaded image bytes. `crop`: the aligned face as uint8 (H, W, 3) RGB, or
    None to store no image.
    """

    embedding: np.ndarray
    quality: dict[str, Any]
    image_sha256: str
    crop: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """One identity returned by a search: its best face and that face's cosine similarity."""

    identity_id: str
    name: str
    face_id: str
    similarity: float


# errors


class GalleryError(FacegateError):
    """Base class of the errors raised by a gallery store."""

    code = "gallery-error"


class IdentityNotFoundError(GalleryError):
    code = "identity-not-found"

    def __init__(self, identity_id: str) -> None:
        super().__init__(
            f"Identity {identity_id!r} not found.",
            value=identity_id,
            hint="List the identities to get a valid id.",
        )


class FaceNotFoundError(GalleryError):
    code = "face-not-found"

    def __init__(self, identity_id: str, face_id: str) -> None:
        super().__init__(
            f"Face {face_id!r} not found in identity {identity_id!r}.",
            value=face_id,
            hint="List the faces of the identity to get a valid face id.",
        )


class EmbedderMismatchError(GalleryError):
    """The gallery was created for another embedder or embedding dimension."""

    code = "embedder-mismatch"


class InvalidEmbeddingError(GalleryError):
    """An embedding is not finite, has zero norm or, when enrolled, is not L2-normalised."""

    code = "invalid-embedding"


class EmbeddingDimensionError(InvalidEmbeddingError):
    """An embedding does not have the shape (D,), or a query batch the shape (Q, D)."""

    code = "embedding-dimension-mismatch"


class InvalidIdentityError(GalleryError):
    """The name or metadata of an identity is not valid."""

    code = "invalid-identity"


class InvalidFaceError(GalleryError):
    """A face to enroll has an invalid quality record, image hash or crop."""

    code = "invalid-face"


class GalleryFileError(GalleryError):
    """The gallery storage exists but is not a gallery this code can read."""

    code = "invalid-gallery-file"


class GalleryUnavailableError(GalleryError):
    """The store is closed or its storage cannot be reached."""

    code = "gallery-unavailable"


# input checks shared by the backends


def validate_name(name: object) -> str:
    """Check an identity name and return it without surrounding whitespace."""
    if not isinstance(name, str):
        raise InvalidIdentityError(
            f"Identity name must be a string, not {type(name).__name__}.",
            value=name,
            hint="Send the name as a JSON string.",
        )
    stripped = name.strip()
    if not stripped:
        raise InvalidIdentityError(
            "Identity name is empty.",
            value=name,
            hint="Give a name with at least one visible character.",
        )
    if len(stripped) > MAX_NAME_LENGTH:
        raise InvalidIdentityError(
            f"Identity name has {len(stripped)} characters, more than the maximum of "
            f"{MAX_NAME_LENGTH}.",
            value=name,
            hint=f"Shorten the name to at most {MAX_NAME_LENGTH} characters.",
        )
    if any(unicodedata.category(character) == "Cc" for character in stripped):
        raise InvalidIdentityError(
            "Identity name contains control characters (such as a newline or a tab).",
            value=name,
            hint="Remove the control characters from the name.",
        )
    # Category Cs: an unpaired surrogate (a JSON escape such as \ud800) has no UTF-8 encoding.
    if any(unicodedata.category(character) == "Cs" for character in stripped):
        raise InvalidIdentityError(
            "Identity name contains an unpaired UTF-16 surrogate, which is not valid Unicode text.",
            value=name.encode("utf-8", "backslashreplace").decode("ascii"),
            hint="Escape characters outside the Basic Multilingual Plane as a complete surrogate pair.",
        )
    return stripped


def encode_metadata(metadata: object) -> str:
    """Check identity metadata and return it as compact JSON text."""
    depth = _nesting_depth(metadata)
    if depth > MAX_METADATA_DEPTH:
        raise InvalidIdentityError(
            f"Identity metadata is nested {depth} levels deep, more than the maximum of "
            f"{MAX_METADATA_DEPTH}.",
            value=depth,
            hint="Flatten the metadata object.",
        )
    text = _encode_json_object(metadata, "Identity metadata", InvalidIdentityError)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidIdentityError(
            "Identity metadata contains an unpaired UTF-16 surrogate, which is not valid Unicode text.",
            hint="Escape characters outside the Basic Multilingual Plane as a complete surrogate pair.",
        ) from exc
    if size > MAX_METADATA_BYTES:
        raise InvalidIdentityError(
            f"Identity metadata takes {size} bytes as JSON, more than the maximum of "
            f"{MAX_METADATA_BYTES}.",
            value=size,
            hint="Store large data elsewhere and keep a reference to it in the metadata.",
        )
    return text


def validate_embedding(embedding: object, dimension: int) -> np.ndarray:
    """Check an embedding to enroll and return it as float32 (D,) with unit norm."""
    array = np.asarray(embedding)
    if array.shape != (dimension,):
        raise EmbeddingDimensionError(
            f"Embedding has shape {array.shape}, but this gallery stores shape ({dimension},).",
            value=array.shape,
            hint="Use the embedder that the gallery was created with.",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidEmbeddingError(
            f"Embedding has dtype {array.dtype}, but a floating-point dtype is required.",
            value=str(array.dtype),
            hint="Pass the float32 output of the embedder.",
        )
    vector = array.astype(np.float32)
    if not np.all(np.isfinite(vector)):
        raise InvalidEmbeddingError(
            "Embedding contains NaN or infinite values.",
            hint="Check the embedder output for this face.",
        )
    norm = float(np.linalg.norm(vector))
    if abs(norm - 1.0) > UNIT_NORM_TOLERANCE:
        raise InvalidEmbeddingError(
            f"Embedding has L2 norm {norm:.6g}, but enrolled embeddings must be L2-normalised.",
            value=norm,
            hint="Divide the embedding by its L2 norm before enrolling it.",
        )
    # Re-normalise so that a dot product is exactly the cosine similarity.
    return vector / np.float32(norm)


def validate_new_face(face: NewFace, dimension: int) -> tuple[np.ndarray, str]:
    """Check a face to enroll and return its embedding, float32 (D,), and quality as JSON."""
    if not isinstance(face, NewFace):
        raise TypeError(f"Expected a NewFace, got {type(face).__name__}.")
    embedding = validate_embedding(face.embedding, dimension)
    quality = _encode_json_object(face.quality, "Face quality", InvalidFaceError)
    if not isinstance(face.image_sha256, str) or not _SHA256_HEX.fullmatch(face.image_sha256):
        raise InvalidFaceError(
            "Image SHA-256 must be 64 lowercase hexadecimal characters.",
            value=face.image_sha256,
            hint="Pass hashlib.sha256(image_bytes).hexdigest().",
        )
    if face.crop is not None:
        validate_crop(face.crop)
    return embedding, quality


def validate_crop(crop: object) -> None:
    """Check that a face crop is a non-empty uint8 (H, W, 3) RGB array."""
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8:
        raise InvalidFaceError(
            "Face crop must be a numpy array of dtype uint8.",
            value=getattr(crop, "dtype", type(crop).__name__),
            hint="Pass the aligned face as uint8 (H, W, 3) RGB.",
        )
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
        raise InvalidFaceError(
            f"Face crop has shape {crop.shape}, but (H, W, 3) with H, W > 0 is required.",
            value=crop.shape,
            hint="Pass the aligned face as uint8 (H, W, 3) RGB.",
        )


def validate_queries(embeddings: object, dimension: int) -> np.ndarray:
    """Check a batch of query embeddings and return it as float32 (Q, D) with unit rows.

    Queries need not be normalised, since cosine similarity ignores the norm.
    """
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[1] != dimension:
        raise EmbeddingDimensionError(
            f"Query embeddings have shape {array.shape}, but this gallery needs "
            f"(Q, {dimension}).",
            value=array.shape,
            hint="Stack the queries into one (Q, D) array from the gallery's embedder.",
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise InvalidEmbeddingError(
            f"Query embeddings have dtype {array.dtype}, but a floating-point dtype is required.",
            value=str(array.dtype),
            hint="Pass the float32 output of the embedder.",
        )
    queries = array.astype(np.float32)
    if not np.all(np.isfinite(queries)):
        raise InvalidEmbeddingError(
            "Query embeddings contain NaN or infinite values.",
            hint="Check the embedder output for these faces.",
        )
    norms = np.linalg.norm(queries, axis=1, keepdims=True)  # (Q, 1)
    if np.any(norms == 0):
        raise InvalidEmbeddingError(
            "A query embedding has zero norm, so it has no cosine similarity.",
            hint="Check the embedder output for these faces.",
        )
    return queries / norms


def validate_page(offset: int, limit: int) -> None:
    """Reject a negative offset or limit."""
    if offset < 0 or limit < 0:
        raise ValueError(f"offset and limit must be >= 0, got offset={offset}, limit={limit}.")


def _nesting_depth(value: object) -> int:
    """Return how many dicts and lists are nested in `value` at its deepest point."""
    deepest = 0
    pending = [(value, 1)]  # iterative, so that deep input cannot exhaust the Python stack
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, (list, tuple)):
            children = list(item)
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def _encode_json_object(value: object, what: str, error: type[GalleryError]) -> str:
    if not isinstance(value, dict):
        raise error(
            f"{what} must be a JSON object, not {type(value).__name__}.",
            value=value,
            hint="Send a JSON object such as {\"key\": \"value\"}.",
        )
    try:
        # allow_nan=False because NaN and Infinity are not valid JSON.
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise error(
            f"{what} cannot be stored as JSON: {exc}.",
            hint="Use only strings, finite numbers, booleans, null, lists and objects.",
        ) from exc


# the store interface


class GalleryStore(ABC):
    """Storage and exact search of enrolled identities and their face embeddings.

    Implementations are thread-safe: the service calls one store from a thread pool. Every
    write is one transaction, so a failed call leaves the gallery as it was.
    """

    embedder_id: str
    dimension: int

    @abstractmethod
    def enroll(
        self,
        faces: Sequence[NewFace],
        *,
        identity_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[Identity, list[FaceRecord]]:
        """Add faces to an existing identity, or create an identity from `name` with them.

        Give exactly one of `identity_id` and `name`; `metadata` only with `name`. `faces`
        may be empty only when an identity is created. The identity and all faces are written
        in one transaction: on any error nothing is stored.

        Raises IdentityNotFoundError, InvalidIdentityError, EmbeddingDimensionError,
        InvalidEmbeddingError, InvalidFaceError; ValueError for an invalid combination of
        arguments.
        """

    @abstractmethod
    def get_identity(self, identity_id: str) -> Identity:
        """Return one identity. Raises IdentityNotFoundError."""

    @abstractmethod
    def list_identities(
        self, *, offset: int = 0, limit: int = 50, name: str | None = None
    ) -> tuple[list[Identity], int]:
        """Return one page of identities ordered by (created_at, id) and the total that match.

        `name` keeps only the identities whose name contains it, ignoring case.
        """

    @abstractmethod
    def update_identity(
        self,
        identity_id: str,
        *,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Identity:
        """Replace the name and/or the whole metadata object of an identity.

        With neither given, return the identity unchanged. Raises IdentityNotFoundError,
        InvalidIdentityError.
        """

    @abstractmethod
    def delete_identity(self, identity_id: str) -> int:
        """Delete an identity with all its faces and crop files; return the number of faces.

        Raises IdentityNotFoundError.
        """

    @abstractmethod
    def list_faces(self, identity_id: str) -> list[FaceRecord]:
        """Return the faces of an identity ordered by (created_at, id).

        Raises IdentityNotFoundError.
        """

    @abstractmethod
    def delete_face(self, identity_id: str, face_id: str) -> None:
        """Delete one face of an identity and its crop file.

        The identity stays, even with no faces left. Raises IdentityNotFoundError,
        FaceNotFoundError.
        """

    @abstractmethod
    def search(self, embeddings: np.ndarray, *, top_k: int) -> list[list[Match]]:
        """Find the closest identities for each query: (Q, D) -> Q lists of up to top_k.

        Each identity appears at most once per list, with the maximum cosine similarity over
        its faces, best first. Raises EmbeddingDimensionError, InvalidEmbeddingError;
        ValueError when top_k < 1.
        """

    @abstractmethod
    def count_identities(self) -> int:
        """Return the number of identities."""

    @abstractmethod
    def count_faces(self) -> int:
        """Return the number of faces."""

    @abstractmethod
    def ping(self) -> None:
        """Check that the storage is reachable. Raises GalleryUnavailableError."""

    @abstractmethod
    def close(self) -> None:
        """Release the storage. Closing twice is allowed.

        Later calls raise GalleryUnavailableError.
        """

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
