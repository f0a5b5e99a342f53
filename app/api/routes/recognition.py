"""POST /enroll, /identify, /verify, /embed, /detect."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep
from app.api.openapi import image_request_body
from app.errors import InvalidInputError
from app.inputs import ParsedRequest, parse_options, parse_request
from app.schemas import (
    DetectResponse,
    EmbedResponse,
    EnrollOptions,
    EnrollResponse,
    IdentifyOptions,
    IdentifyResponse,
    NoOptions,
    VerifyOptions,
    VerifyResponse,
)

router = APIRouter(tags=["recognition"])

PROBLEM_RESPONSES = {
    400: {"description": "Undecodable image, bad base64, a URL instead of an image"},
    401: {"description": "API keys are configured and X-API-Key is missing"},
    403: {"description": "X-API-Key does not match any configured key"},
    413: {"description": "Image or request too large"},
    415: {"description": "Unsupported image format or content type"},
    422: {"description": "Invalid option, no face, several faces or low quality"},
    503: {"description": "Models not loaded yet"},
}


async def _single_image(request: Request, service: ServiceDep) -> ParsedRequest:
    return await parse_request(
        request,
        image_fields=("image", "images"),
        max_images=1,
        max_image_bytes=service.settings.max_image_bytes,
    )


@router.post(
    "/enroll",
    response_model=EnrollResponse,
    responses={
        201: {"model": EnrollResponse, "description": "A new identity was created with the faces"},
        404: {"description": "identity_id does not exist"},
        **PROBLEM_RESPONSES,
    },
    openapi_extra=image_request_body("images", repeated=True, options=EnrollOptions),
)
async def enroll(request: Request, response: Response, service: ServiceDep) -> dict:
    """Enroll a new person (`name`) or add photos to one (`identity_id`); one face per photo."""
    parsed = await parse_request(
        request,
        image_fields=("images", "image"),
        max_images=service.settings.max_images_per_request,
        max_image_bytes=service.settings.max_image_bytes,
    )
    options = parse_options(EnrollOptions, parsed.fields)
    result = await run_in_threadpool(service.enroll, parsed.images, options)
    response.status_code = 201 if result["created"] else 200
    return result


@router.post(
    "/identify",
    response_model=IdentifyResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra=image_request_body("image", repeated=False, options=IdentifyOptions),
)
async def identify(request: Request, service: ServiceDep) -> dict:
    """Find every face in the photo and match each against the gallery."""
    parsed = await _single_image(request, service)
    options = parse_options(IdentifyOptions, {"top_k": service.settings.default_top_k, **parsed.fields})
    return await run_in_threadpool(service.identify, parsed.images[0], options)


@router.post(
    "/verify",
    response_model=VerifyResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra=image_request_body("images", repeated=True, options=VerifyOptions, embeddings=True),
)
async def verify(request: Request, service: ServiceDep) -> dict:
    """Tell whether two photos (largest face of each), or two embeddings, show the same person."""
    parsed = await parse_request(
        request,
        image_fields=("images",),
        max_images=2,
        max_image_bytes=service.settings.max_image_bytes,
        allow_no_images=True,
    )
    embeddings = parsed.fields.pop("embeddings", None)
    options = parse_options(VerifyOptions, parsed.fields)
    if embeddings is not None and parsed.images:
        raise InvalidInputError(
            "Send either 'images' or 'embeddings' to /verify, not both.",
            field="embeddings",
            hint="Drop one of the two fields.",
        )
    if embeddings is not None:
        return await run_in_threadpool(service.verify_embeddings, embeddings, options.threshold)
    return await run_in_threadpool(service.verify_images, parsed.images, options.threshold)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra=image_request_body("image", repeated=False),
)
async def embed(request: Request, service: ServiceDep) -> dict:
    """Return the embedding of every face in the photo."""
    parsed = await _single_image(request, service)
    parse_options(NoOptions, parsed.fields)
    return await run_in_threadpool(service.embed, parsed.images[0])


@router.post(
    "/detect",
    response_model=DetectResponse,
    responses=PROBLEM_RESPONSES,
    openapi_extra=image_request_body("image", repeated=False),
)
async def detect(request: Request, service: ServiceDep) -> dict:
    """Return box, landmarks, score and quality of every face in the photo."""
    parsed = await _single_image(request, service)
    parse_options(NoOptions, parsed.fields)
    return await run_in_threadpool(service.detect, parsed.images[0])
