"""Typed errors raised by the face pipeline.

Each error carries a stable `code` (used as the problem type by the service), the value at
fault and a hint with the fix. The service maps error classes to HTTP statuses, so
callers never see an exception from inside Pillow or torch.
"""

from __future__ import annotations

from typing import Any


class FacegateError(Exception):
    """Base class: a message, the offending value and the fix."""

    code = "facegate-error"

    def __init__(self, message: str, *, value: Any = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.value = value
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


# image decoding


class ImageError(FacegateError):
    """The bytes given as an image cannot be used."""

    code = "invalid-image"


class EmptyImageError(ImageError):
    code = "empty-image"


class ImageTooLargeError(ImageError):
    """The encoded image has more bytes than the configured limit."""

    code = "image-too-large"


class ImagePixelLimitError(ImageError):
    """The decoded image would have more pixels than the configured limit."""

    code = "image-too-many-pixels"


class UnsupportedImageFormatError(ImageError):
    """The content is not an image format that the decoder reads."""

    code = "unsupported-image-format"


class CorruptImageError(ImageError):
    """The content looks like a supported format but cannot be decoded (truncated, damaged)."""

    code = "corrupt-image"


# models and weights


class ModelWeightsNotFoundError(FacegateError):
    """A weights file is missing and nothing may be downloaded implicitly."""

    code = "model-weights-not-found"


class ModelWeightsChecksumError(FacegateError):
    """A weights file does not have the expected SHA-256."""

    code = "model-weights-checksum-mismatch"


class UnknownEmbedderError(FacegateError):
    code = "unknown-embedder"
