"""Reading images and options from a request: multipart files or JSON with base64 strings.

The same route takes either body. Images come in the field `images` (repeated) or `image`;
other fields are options. URLs are rejected: the service never fetches anything.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from app.errors import InvalidInputError, RequestTooLargeError, UnsupportedMediaTypeError
from models.errors import EmptyImageError, ImageTooLargeError

OptionsModel = TypeVar("OptionsModel", bound=BaseModel)

_URL_PATTERN = re.compile(r"^\s*([a-zA-Z][a-zA-Z0-9+.-]*://|//|www\.)")
_DATA_URI_PATTERN = re.compile(r"^\s*data:([\w/+.-]*)(;[\w=.-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageInput:
    field: str  # e.g. "images[1]", names the input in errors
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class ParsedRequest:
    images: list[ImageInput]
    fields: dict[str, Any]  # every non-image field, merged over the query parameters


async def parse_request(
    request: Request,
    *,
    image_fields: tuple[str, ...],
    max_images: int,
    max_image_bytes: int,
    allow_no_images: bool = False,
) -> ParsedRequest:
    """Read the images under any of `image_fields` and the remaining fields of the body."""
    try:
        return await _parse_request(
            request,
            image_fields=image_fields,
            max_images=max_images,
            max_image_bytes=max_image_bytes,
            allow_no_images=allow_no_images,
        )
    finally:
        # Nothing else closes the files of a form that the route reads itself. Starlette
        # spools them to disk above 1 MiB, and their bytes are copied by now.
        await request.close()


async def _parse_request(
    request: Request,
    *,
    image_fields: tuple[str, ...],
    max_images: int,
    max_image_bytes: int,
    allow_no_images: bool,
) -> ParsedRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, Any] = dict(request.query_params)
    raw_images: list[tuple[str, Any]] = []

    if content_type == "multipart/form-data":
        try:
            form = await request.form(max_files=max_images + 1, max_fields=100)
        except (MultiPartException, HTTPException) as exc:
            # Starlette turns a MultiPartException into HTTPException(400) when it parses the form.
            reason = exc.message if isinstance(exc, MultiPartException) else exc.detail
            raise InvalidInputError(
                f"Invalid multipart body: {reason}",
                field="body",
                hint=f"Send multipart/form-data with a boundary and at most {max_images} file(s) "
                f"in the field {image_fields[0]!r}.",
            ) from exc
        for key, value in form.multi_items():
            if key in image_fields:
                raw_images.append((key, value))
            elif isinstance(value, UploadFile):
                raise InvalidInputError(
                    f"Unexpected file in field {key!r}.",
                    field=key,
                    hint=f"Send images in the field {image_fields[0]!r}.",
                )
            else:
                fields[key] = value
    elif content_type == "application/json":
        body = await request.body()
        if not body.strip():
            raise InvalidInputError("The request body is empty.", field="body", hint="Send a JSON object.")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(
                f"The body is not valid JSON: {exc}", field="body", hint="Send a JSON object."
            ) from exc
        except RecursionError as exc:
            raise InvalidInputError(
                "The JSON body is nested too deeply to parse.", field="body", hint="Send a flatter JSON object."
            ) from exc
        if not isinstance(payload, dict):
            raise InvalidInputError(
                f"The JSON body must be an object, got {type(payload).__name__}.",
                field="body",
                hint=f'Send a JSON object such as {{"{image_fields[0]}": "<base64>"}}.',
            )
        for key, value in payload.items():
            if key in image_fields:
                values = value if isinstance(value, list) else [value]
                raw_images.extend((key, item) for item in values)
            else:
                _reject_lone_surrogates(key, value)
                fields[key] = value
    elif not content_type and not allow_no_images:
        raise UnsupportedMediaTypeError(
            "The request has no Content-Type.",
            hint="Send multipart/form-data with image files, or application/json with base64 images.",
        )
    elif content_type:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type!r} is not supported.",
            value=content_type,
            hint="Send multipart/form-data with image files, or application/json with base64 images.",
        )

    if len(raw_images) > max_images:
        raise InvalidInputError(
            f"{len(raw_images)} images sent; at most {max_images} are allowed per request.",
            field=image_fields[0],
            value=len(raw_images),
            hint=(
                "Split the images over several requests, or raise FACEGATE_MAX_IMAGES_PER_REQUEST."
                if max_images > 2
                else f"This route takes at most {max_images} image(s) in the field {image_fields[0]!r}."
            ),
        )
    if not raw_images and not allow_no_images:
        raise InvalidInputError(
            f"No image in the request: the field {image_fields[0]!r} is missing.",
            field=image_fields[0],
            hint=f"Send the image as a file in the multipart field {image_fields[0]!r}, "
            "or as a base64 string in the JSON field of that name.",
        )

    images = []
    for index, (key, value) in enumerate(raw_images):
        label = f"{key}[{index}]" if len(raw_images) > 1 else key
        images.append(await _read_image(label, value, max_image_bytes))
    return ParsedRequest(images=images, fields=fields)


def _reject_lone_surrogates(field: str, value: Any) -> None:
    """Reject strings holding an unpaired UTF-16 surrogate escape such as "\\ud800".

    JSON allows such escapes, but the text is not valid Unicode: it cannot be encoded as
    UTF-8, so storing or logging it would fail later.
    """
    pending = [value]  # iterative, because the JSON may be nested as deeply as json.loads allows
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and not item.isascii():
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInputError(
                    f"Field {field!r} contains an unpaired UTF-16 surrogate, which is not valid Unicode text.",
                    field=field,
                    hint="Escape characters outside the Basic Multilingual Plane as a complete surrogate pair.",
                ) from exc


async def _read_image(label: str, value: Any, max_image_bytes: int) -> ImageInput:
    if isinstance(value, UploadFile):
        data = await value.read(max_image_bytes + 1)
        if len(data) > max_image_bytes:
            raise ImageTooLargeError(
                f"Image {label!r} is larger than {max_image_bytes} bytes.",
                value=f">{max_image_bytes} bytes",
                hint="Downscale or recompress the photo, or raise FACEGATE_MAX_IMAGE_BYTES.",
            )
        if not data:
            raise EmptyImageError(f"Image {label!r} is empty (0 bytes).", value=0, hint="Send the image's content.")
        return ImageInput(field=label, filename=value.filename, data=data)
    if isinstance(value, str):
        return ImageInput(field=label, filename=None, data=decode_base64_image(label, value, max_image_bytes))
    raise InvalidInputError(
        f"Image {label!r} must be a base64 string, got {type(value).__name__}.",
        field=label,
        hint="Encode the image bytes as base64 (a data: URI prefix is accepted).",
    )


def decode_base64_image(label: str, text: str, max_image_bytes: int) -> bytes:
    """Decode standard or URL-safe base64, with or without a data-URI prefix or whitespace."""
    if _URL_PATTERN.match(text):
        raise InvalidInputError(
            f"Image {label!r} is a URL; facegate never fetches images from URLs.",
            field=label,
            value=text[:100],
            hint="Download the image yourself and send its bytes (multipart file or base64).",
        )

    prefix = _DATA_URI_PATTERN.match(text)
    if prefix:
        text = text[prefix.end() :]
    compact = re.sub(r"\s+", "", text)
    if not compact:
        raise EmptyImageError(f"Image {label!r} is an empty string.", value="", hint="Send the base64 of the image.")
    # 4 base64 characters carry 3 bytes.
    if len(compact) * 3 // 4 > max_image_bytes + 3:
        raise ImageTooLargeError(
            f"Image {label!r} is larger than {max_image_bytes} bytes.",
            value=f"{len(compact)} base64 characters",
            hint="Downscale or recompress the photo, or raise FACEGATE_MAX_IMAGE_BYTES.",
        )

    # URL-safe alphabet to standard, and the padding that some encoders leave out.
    compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError(
            f"Image {label!r} is not valid base64: {exc}.",
            field=label,
            value=f"{len(text)} characters",
            hint="Send standard or URL-safe base64 of the image bytes.",
        ) from exc

    if not data:
        raise EmptyImageError(f"Image {label!r} decodes to 0 bytes.", value=0, hint="Send the base64 of the image.")
    if len(data) > max_image_bytes:
        raise ImageTooLargeError(
            f"Image {label!r} is larger than {max_image_bytes} bytes.",
            value=f"{len(data)} bytes",
            hint="Downscale or recompress the photo, or raise FACEGATE_MAX_IMAGE_BYTES.",
        )
    return data


def parse_options(model: type[OptionsModel], fields: dict[str, Any]) -> OptionsModel:
    """Validate option fields (strings from multipart and query, typed values from JSON);
    errors become the service's 422 validation problem."""
    values = dict(fields)
    for key, value in values.items():
        # Multipart sends JSON objects as text.
        if key == "metadata" and isinstance(value, str):
            try:
                values[key] = json.loads(value) if value.strip() else None
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    f"metadata is not valid JSON: {exc}.", field="metadata", hint='Send a JSON object, e.g. {"team": "A"}.'
                ) from exc
        elif isinstance(value, str) and value == "" and key != "name":
            values[key] = None
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            if error["type"] == "extra_forbidden":
                # A misspelt option: name the closest real one.
                known = list(model.model_fields)
                close = difflib.get_close_matches(str(error["loc"][-1]), known, n=1)
                suggestion = f"did you mean {close[0]!r}? " if close else ""
                error = {**error, "msg": f"unknown option; {suggestion}valid options: {', '.join(known) or 'none'}"}
            errors.append({**error, "loc": ("body", *error["loc"])})
        raise RequestValidationError(errors) from exc


class RequestSizeLimitMiddleware:
    """Reject bodies over `max_bytes` with 413, by Content-Length and while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send, int(declared))
            return

        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLargeError(
                        f"The request body is larger than {self.max_bytes} bytes.",
                        value=f">{self.max_bytes} bytes",
                        hint="Send fewer or smaller images, or raise FACEGATE_MAX_REQUEST_BYTES.",
                    )
            return message

        await self.app(scope, limited_receive, send)

    async def _reject(self, scope: dict, send: Any, size: int) -> None:
        from app.errors import problem_from_error

        error = RequestTooLargeError(
            f"The request body ({size} bytes) is larger than {self.max_bytes} bytes.",
            value=size,
            hint="Send fewer or smaller images, or raise FACEGATE_MAX_REQUEST_BYTES.",
        )
        response = problem_from_error(error, instance=scope.get("path"))
        await response(scope, self._drain, send)

    @staticmethod
    async def _drain() -> dict:
        return {"type": "http.disconnect"}
