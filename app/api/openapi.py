"""OpenAPI request bodies for routes that take multipart files or JSON with base64 images.

These routes read the body themselves (to accept both encodings), so FastAPI cannot infer
their request schema; these helpers describe it for /docs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def image_request_body(
    image_field: str, *, repeated: bool, options: type[BaseModel] | None = None, embeddings: bool = False
) -> dict[str, Any]:
    """Describe a body of image files (multipart) or base64 strings (JSON) plus option fields.

    With `embeddings`, the JSON body may carry two embeddings instead of the images.
    """
    option_properties: dict[str, Any] = {}
    if options is not None:
        schema = options.model_json_schema()
        option_properties = schema.get("properties", {})
    binary = {"type": "string", "format": "binary"}
    base64_string = {"type": "string", "description": "Base64 (standard or URL-safe), data: URI prefix allowed."}
    multipart_image = {"type": "array", "items": binary} if repeated else binary
    json_image = {"type": "array", "items": base64_string} if repeated else base64_string
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [image_field],
                        "properties": {image_field: multipart_image, **_as_form_fields(option_properties)},
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [] if embeddings else [image_field],
                        "properties": {
                            image_field: json_image,
                            **(_EMBEDDINGS_PROPERTY if embeddings else {}),
                            **option_properties,
                        },
                    }
                },
            },
        }
    }


_EMBEDDINGS_PROPERTY = {
    "embeddings": {
        "type": "array",
        "items": {"type": "array", "items": {"type": "number"}},
        "minItems": 2,
        "maxItems": 2,
        "description": "Two embeddings from /embed, instead of images.",
    }
}


def _as_form_fields(properties: dict[str, Any]) -> dict[str, Any]:
    # Objects travel as JSON text in a multipart field.
    fields = {}
    for name, schema in properties.items():
        if schema.get("type") == "object" or "additionalProperties" in str(schema):
            fields[name] = {"type": "string", "description": (schema.get("description") or "") + " (JSON text)"}
        else:
            fields[name] = schema
    return fields
