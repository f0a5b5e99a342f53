"""RFC 9457 problem details for every error the service returns.

Domain errors (subclasses of models.errors.FacegateError) map to a status by class. The
problem `type` is a stable URN built from the error's code, so clients can branch on it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.gallery.base import (
    EmbedderMismatchError,
    FaceNotFoundError,
    GalleryError,
    GalleryFileError,
    GalleryUnavailableError,
    IdentityNotFoundError,
)
from models import errors as model_errors

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:facegate:problem:"


# service-level errors


class NoFaceError(model_errors.FacegateError):
    code = "no-face"


class MultipleFacesError(model_errors.FacegateError):
    code = "multiple-faces"


class LowQualityError(model_errors.FacegateError):
    """The face fails the enrollment quality gates; `reasons` lists each failed gate."""

    code = "low-quality"

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(
            "Face quality too low: " + "; ".join(reasons) + ".",
            hint="Send a sharper, more frontal photo where the face is larger.",
        )
        self.reasons = reasons


class DuplicateImageError(model_errors.FacegateError):
    """The same photo (by SHA-256) is already enrolled for the identity."""

    code = "duplicate-image"


class EnrollmentRejectedError(model_errors.FacegateError):
    """Every image of an enrollment was rejected; `rejected` lists each image's reasons."""

    code = "enrollment-rejected"

    def __init__(self, message: str, *, rejected: list[dict[str, Any]], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.rejected = rejected


class InvalidInputError(model_errors.FacegateError):
    """A request field is malformed (bad base64, a URL instead of an image, wrong count)."""

    code = "invalid-input"

    def __init__(self, message: str, *, field: str, value: Any = None, hint: str | None = None) -> None:
        super().__init__(message, value=value, hint=hint)
        self.field = field


class RequestTooLargeError(model_errors.FacegateError):
    code = "request-too-large"


class UnsupportedMediaTypeError(model_errors.FacegateError):
    code = "unsupported-media-type"


class ModelNotReadyError(model_errors.FacegateError):
    code = "model-not-ready"


class StartupFailedError(ModelNotReadyError):
    """The models or the gallery failed to load; `value` is the underlying problem's code."""

    code = "startup-failed"


class AuthenticationError(model_errors.FacegateError):
    code = "missing-api-key"


class ForbiddenError(model_errors.FacegateError):
    code = "invalid-api-key"


# Most specific class first: the first isinstance match decides the status.
STATUS_BY_ERROR: list[tuple[type[Exception], int]] = [
    (model_errors.UnsupportedImageFormatError, 415),
    (UnsupportedMediaTypeError, 415),
    (model_errors.ImageTooLargeError, 413),
    (model_errors.ImagePixelLimitError, 413),
    (RequestTooLargeError, 413),
    (model_errors.ImageError, 400),
    (InvalidInputError, 400),
    (IdentityNotFoundError, 404),
    (FaceNotFoundError, 404),
    (EmbedderMismatchError, 409),
    (GalleryUnavailableError, 503),
    (GalleryFileError, 503),
    (GalleryError, 422),
    (NoFaceError, 422),
    (MultipleFacesError, 422),
    (LowQualityError, 422),
    (EnrollmentRejectedError, 422),
    (DuplicateImageError, 409),
    (AuthenticationError, 401),
    (ForbiddenError, 403),
    (ModelNotReadyError, 503),
    (model_errors.ModelWeightsNotFoundError, 503),
    (model_errors.ModelWeightsChecksumError, 503),
    (model_errors.UnknownEmbedderError, 503),
]

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


def status_for(error: Exception) -> int:
    for error_class, status in STATUS_BY_ERROR:
        if isinstance(error, error_class):
            return status
    return 400


def problem_response(
    status: int,
    problem_code: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem_code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({key: value for key, value in extensions.items() if value is not None})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_from_error(error: model_errors.FacegateError, instance: str | None = None) -> JSONResponse:
    status = status_for(error)
    extensions: dict[str, Any] = {"code": error.code, "hint": error.hint}
    if error.value is not None:
        extensions["value"] = _json_safe(error.value)
    if isinstance(error, InvalidInputError):
        extensions["field"] = error.field
    if isinstance(error, EnrollmentRejectedError):
        extensions["rejected"] = error.rejected
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if status == 401 else None
    if status == 503:
        headers = {"Retry-After": "5"}
    return problem_response(status, error.code, error.message, instance=instance, headers=headers, **extensions)


def _json_safe(value: Any) -> Any:
    """Shorten a value for a problem body; bytes show only their first 16 as hex."""
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes starting {bytes(value[:16]).hex(' ')}"
    if isinstance(value, str):
        return value[:200]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity, so the response could not be rendered
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)[:200]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(model_errors.FacegateError)
    async def handle_facegate_error(request: Request, error: model_errors.FacegateError) -> JSONResponse:
        if status_for(error) >= 500:
            logger.error("%s %s failed: %s", request.method, request.url.path, error)
        return problem_from_error(error, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "field": ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path")),
                "message": item.get("msg", ""),
                "value": _json_safe(item.get("input")) if not isinstance(item.get("input"), (dict, list)) else None,
            }
            for item in error.errors()
        ]
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        if error.errors() and error.errors()[0].get("type") == "extra_forbidden":
            detail = f"Unknown field {first['field']!r}: {first['message']}."
        else:
            detail = f"Invalid value for {first['field'] or 'the request'}: {first['message']}."
        return problem_response(
            422,
            "validation-error",
            detail,
            instance=request.url.path,
            code="validation-error",
            errors=errors,
            hint="Fix the listed fields; the OpenAPI description at /docs gives every field's range.",
        )

    @app.exception_handler(StarletteHTTPException)
    async def handle_http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any error raised while it reads a route's body into a 400; a domain
        # error from the body stream (the size limit's RequestTooLargeError) keeps its own status.
        if isinstance(error.__cause__, model_errors.FacegateError):
            return problem_from_error(error.__cause__, instance=request.url.path)
        code = {404: "not-found", 405: "method-not-allowed"}.get(error.status_code, "http-error")
        hint = {
            404: "Check the path; the OpenAPI description at /docs lists every route.",
            405: "Use a method that the Allow header lists for this path.",
        }.get(error.status_code, "Check the request against the OpenAPI description at /docs.")
        return problem_response(
            error.status_code,
            code,
            str(error.detail),
            instance=request.url.path,
            code=code,
            hint=hint,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
        # The traceback goes to the log; the client gets no internals.
        logger.exception("Unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            "The server failed to process the request.",
            instance=request.url.path,
            code="internal-error",
            hint="Retry later; if it persists, report it with the time of the request.",
        )
