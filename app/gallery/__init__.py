"""Storage and search of enrolled identities and their face embeddings."""

from app.gallery.base import (
    EmbedderMismatchError,
    EmbeddingDimensionError,
    FaceNotFoundError,
    FaceRecord,
    GalleryError,
    GalleryFileError,
    GalleryStore,
    GalleryUnavailableError,
    Identity,
    IdentityNotFoundError,
    InvalidEmbeddingError,
    InvalidFaceError,
    InvalidIdentityError,
    Match,
    NewFace,
)
from app.gallery.sqlite import SqliteGalleryStore

__all__ = [
    "EmbedderMismatchError",
    "EmbeddingDimensionError",
    "FaceNotFoundError",
    "FaceRecord",
    "GalleryError",
    "GalleryFileError",
    "GalleryStore",
    "GalleryUnavailableError",
    "Identity",
    "IdentityNotFoundError",
    "InvalidEmbeddingError",
    "InvalidFaceError",
    "InvalidIdentityError",
    "Match",
    "NewFace",
    "SqliteGalleryStore",
]
