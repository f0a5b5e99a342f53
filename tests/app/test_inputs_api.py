"""Request inputs: hard but valid photos, and every kind of bad input with its 4xx problem.

Hard photos (other formats, colour modes, EXIF rotations) must be identified like the plain
JPEG of the same picture. Bad inputs must each get their own status and problem code; the
table covers all of them, so a 500 anywhere fails one named case.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from models.pipeline import FacePipeline
from tests.app.support import (
    MULTIFACE_PHOTO,
    NO_FACE_PHOTO,
    PROBE_PHOTOS,
    Gallery,
    HttpResponse,
    assert_problem,
    base64_text,
    encode,
    identify,
    lfw_bytes,
    lfw_photo,
    make_settings,
    multipart_images,
    png_bomb,
    running_app,
)

# hard but valid photos

HARD_PHOTO_PERSON = "Jean_Chretien"
# The canvas is not square and the photo sits near its top-left corner, so that a missed
# rotation swaps the image size and a missed flip moves the face box by 40 px or more.
CANVAS_SIZE = (420, 340)
PHOTO_OFFSET = (25, 25)  # where the 250x250 LFW photo sits on the canvas
TRANSPARENT_BORDER_PX = 20
# Allowed change of the similarity to the enrolled identity, against the plain JPEG. Measured
# with dlib-resnet: at most 0.014 (grey-scale), most formats below 0.003.
SIMILARITY_TOLERANCE = 0.05
# Grey-scale photos move the detected box by up to about 6 px.
BOX_TOLERANCE_PX = 12.0

# The transpose that, applied to an upright picture, gives the stored picture whose EXIF
# orientation tag (0x0112) makes a viewer show it upright again.
STORED_TRANSPOSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # tag 6 means "rotate 90 degrees clockwise to view"
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
EXIF_ORIENTATION_TAG = 0x0112


def upright_canvas(faces_dir: Path) -> Image.Image:
    """An LFW photo on a larger grey canvas: the upright picture every hard photo shows."""
    photo = Image.open(lfw_photo(faces_dir, HARD_PHOTO_PERSON, PROBE_PHOTOS[HARD_PHOTO_PERSON])).convert("RGB")
    canvas = Image.new("RGB", CANVAS_SIZE, (150, 150, 150))
    canvas.paste(photo, PHOTO_OFFSET)
    return canvas


def with_transparent_border(canvas: Image.Image) -> Image.Image:
    """RGBA copy whose outer border is fully transparent black (composited, it turns white)."""
    rgba = canvas.convert("RGBA")
    pixels = np.array(rgba)
    border = TRANSPARENT_BORDER_PX
    frame = np.ones(pixels.shape[:2], dtype=bool)
    frame[border:-border, border:-border] = False
    pixels[frame] = (0, 0, 0, 0)
    return Image.fromarray(pixels, "RGBA")


def sixteen_bit_grey(canvas: Image.Image) -> Image.Image:
    grey = np.asarray(canvas.convert("L")).astype(np.uint16) * 257  # 0..255 -> 0..65535
    image = Image.fromarray(grey)
    assert image.mode == "I;16"
    return image


def with_exif_orientation(canvas: Image.Image, orientation: int) -> bytes:
    transpose = STORED_TRANSPOSE[orientation]
    stored = canvas if transpose is None else canvas.transpose(transpose)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


HARD_PHOTOS: dict[str, Callable[[Image.Image], tuple[str, bytes]]] = {
    # name -> (upload file name, content)
    "webp-named-jpg": lambda canvas: ("photo.jpg", encode(canvas, "WEBP", quality=90)),
    "png-rgba-transparent-border": lambda canvas: ("photo.png", encode(with_transparent_border(canvas), "PNG")),
    "png-grey": lambda canvas: ("photo.png", encode(canvas.convert("L"), "PNG")),
    "jpeg-cmyk": lambda canvas: ("photo.jpg", encode(canvas.convert("CMYK"), "JPEG", quality=95)),
    "png-16-bit-grey": lambda canvas: ("photo.png", encode(sixteen_bit_grey(canvas), "PNG")),
    "heic": lambda canvas: ("photo.heic", encode(canvas, "HEIF", quality=90)),
    **{
        f"jpeg-exif-orientation-{orientation}": (
            lambda canvas, orientation=orientation: ("photo.jpg", with_exif_orientation(canvas, orientation))
        )
        for orientation in STORED_TRANSPOSE
    },
}


@pytest.fixture(scope="module")
def canvas(photo_dir: Path) -> Image.Image:
    return upright_canvas(photo_dir)


@pytest.fixture(scope="module")
def plain_jpeg_face(gallery: Gallery, canvas: Image.Image) -> dict[str, Any]:
    """The /identify result for the plain JPEG of the canvas, which the hard photos must match."""
    body = identify(gallery.client, encode(canvas, "JPEG", quality=95))
    assert len(body["faces"]) == 1
    assert body["faces"][0]["identity"]["id"] == gallery.identity_ids[HARD_PHOTO_PERSON]
    return body["faces"][0]


def test_hard_photo_decoded_as_pillow_mode(canvas: Image.Image) -> None:
    # Guards the builders: each test photo really is in the mode it is named after.
    modes = {
        "png-grey": "L",
        "jpeg-cmyk": "CMYK",
        "png-16-bit-grey": "I;16",
        "png-rgba-transparent-border": "RGBA",
    }
    for name, mode in modes.items():
        _, data = HARD_PHOTOS[name](canvas)
        assert Image.open(io.BytesIO(data)).mode == mode, name


@pytest.mark.parametrize("name", sorted(HARD_PHOTOS))
def test_identify_hard_photo_like_plain_jpeg(
    gallery: Gallery, canvas: Image.Image, plain_jpeg_face: dict[str, Any], name: str
) -> None:
    filename, data = HARD_PHOTOS[name](canvas)

    response = gallery.client.post("/identify", files=[("image", (filename, data))])

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["image"] == {"width": CANVAS_SIZE[0], "height": CANVAS_SIZE[1]}
    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["identity"] is not None, f"not recognised: {face['matches']}"
    assert face["identity"]["id"] == plain_jpeg_face["identity"]["id"]
    assert face["identity"]["similarity"] == pytest.approx(
        plain_jpeg_face["identity"]["similarity"], abs=SIMILARITY_TOLERANCE
    )
    for corner in ("x1", "y1", "x2", "y2"):
        assert face["box"][corner] == pytest.approx(plain_jpeg_face["box"][corner], abs=BOX_TOLERANCE_PX), corner


# bad inputs

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
JSON = {"content-type": "application/json"}
# Limits of the small-limits app: a 250x250 RGB BMP (187,554 bytes) is over the image limit,
# three of them over the request limit.
SMALL_MAX_IMAGE_BYTES = 100_000
SMALL_MAX_REQUEST_BYTES = 400_000


@dataclass(frozen=True)
class Samples:
    jpeg: bytes  # a plain LFW photo, well under every limit
    bmp: bytes  # the same photo as BMP: over the small image limit
    no_face: bytes
    multiface: bytes
    bomb: bytes


@dataclass(frozen=True)
class BadInput:
    name: str
    status: int
    code: str
    send: Callable[[TestClient, Samples], HttpResponse]
    small_limits: bool = False  # send to the app with SMALL_MAX_* limits


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield the body in pieces, so that the client streams it without a Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def too_deep_metadata(depth: int) -> dict[str, Any]:
    metadata: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        metadata = {"child": metadata}
    return metadata


def post_file(path: str, field: str = "image", **fields: str) -> Callable[[TestClient, Samples], HttpResponse]:
    """A sender that uploads the sample JPEG as multipart with extra form fields."""
    return lambda client, samples: client.post(path, files=multipart_images(field, samples.jpeg), data=fields)


def post_json(path: str, payload: dict[str, Any]) -> Callable[[TestClient, Samples], HttpResponse]:
    return lambda client, samples: client.post(path, json=payload)


def post_raw(path: str, content: bytes, content_type: str | None) -> Callable[[TestClient, Samples], HttpResponse]:
    headers = {"content-type": content_type} if content_type else {}
    return lambda client, samples: client.post(path, content=content, headers=headers)


BAD_INPUTS = [
    # empty and missing bodies
    BadInput("empty-body-json", 400, "invalid-input", post_raw("/identify", b"", "application/json")),
    BadInput("empty-body-no-content-type", 415, "unsupported-media-type", post_raw("/identify", b"", None)),
    BadInput(
        "empty-body-multipart",
        400,
        "invalid-input",
        post_raw("/identify", b"", "multipart/form-data; boundary=x"),
    ),
    BadInput("json-array-body", 400, "invalid-input", post_raw("/identify", b"[1, 2]", "application/json")),
    BadInput("json-syntax-error", 400, "invalid-input", post_raw("/identify", b'{"image": ', "application/json")),
    BadInput(
        "json-nested-too-deep",
        400,
        "invalid-input",
        post_raw("/identify", b"[" * 100_000 + b"]" * 100_000, "application/json"),
    ),
    BadInput("json-not-utf8", 400, "invalid-input", post_raw("/identify", b'{"image": "\xff"}', "application/json")),
    BadInput("missing-image-field", 400, "invalid-input", post_json("/identify", {"top_k": 2})),
    BadInput(
        "multipart-without-boundary",
        400,
        "invalid-input",
        post_raw("/identify", b"--x\r\n", "multipart/form-data"),
    ),
    # content types
    BadInput("content-type-text", 415, "unsupported-media-type", post_raw("/identify", b"hello", "text/plain")),
    BadInput(
        "content-type-form-urlencoded",
        415,
        "unsupported-media-type",
        lambda client, samples: client.post("/identify", data={"image": "abc"}),
    ),
    BadInput(
        "content-type-image-jpeg", 415, "unsupported-media-type", post_raw("/identify", b"\xff\xd8\xff", "image/jpeg")
    ),
    # image content
    BadInput(
        "empty-file",
        400,
        "empty-image",
        lambda client, samples: client.post("/identify", files=multipart_images("image", b"")),
    ),
    BadInput(
        "text-file",
        415,
        "unsupported-image-format",
        lambda client, samples: client.post("/identify", files=multipart_images("image", b"just some text\n" * 20)),
    ),
    BadInput(
        "truncated-jpeg",
        400,
        "corrupt-image",
        lambda client, samples: client.post(
            "/identify", files=multipart_images("image", samples.jpeg[: len(samples.jpeg) // 2])
        ),
    ),
    BadInput(
        "jpeg-header-only",
        400,
        "corrupt-image",
        lambda client, samples: client.post("/detect", files=multipart_images("image", samples.jpeg[:200])),
    ),
    BadInput(
        "png-bomb-20000x20000",
        413,
        "image-too-many-pixels",
        lambda client, samples: client.post(
            "/identify", files=multipart_images("image", samples.bomb, filename="bomb.png")
        ),
    ),
    BadInput(
        "png-bomb-enroll",
        422,
        "enrollment-rejected",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", samples.bomb, filename="bomb.png"), data={"name": "x"}
        ),
    ),
    # base64 and URLs
    BadInput("url-in-json", 400, "invalid-input", post_json("/identify", {"image": "https://example.com/face.jpg"})),
    BadInput(
        "url-in-multipart-text-field",
        400,
        "invalid-input",
        lambda client, samples: client.post("/identify", files={"image": (None, "http://example.com/face.jpg")}),
    ),
    BadInput("protocol-relative-url", 400, "invalid-input", post_json("/identify", {"image": "//example.com/a.jpg"})),
    BadInput("bad-base64", 400, "invalid-input", post_json("/identify", {"image": "this is not base64!"})),
    BadInput("base64-bad-length", 400, "invalid-input", post_json("/identify", {"image": "QUJDR"})),
    BadInput("base64-empty-data-uri", 400, "empty-image", post_json("/identify", {"image": "data:image/png;base64,"})),
    BadInput("base64-of-text", 415, "unsupported-image-format", post_json("/identify", {"image": "aGVsbG8gd29ybGQ="})),
    BadInput("image-not-a-string", 400, "invalid-input", post_json("/identify", {"image": 12345})),
    BadInput(
        "unexpected-file-field",
        400,
        "invalid-input",
        lambda client, samples: client.post("/identify", files=multipart_images("photo", samples.jpeg)),
    ),
    # options
    BadInput("top-k-negative", 422, "validation-error", post_file("/identify", top_k="-1")),
    BadInput("top-k-zero", 422, "validation-error", post_file("/identify", top_k="0")),
    BadInput("top-k-huge", 422, "validation-error", post_file("/identify", top_k="1000")),
    BadInput("top-k-not-integer", 422, "validation-error", post_file("/identify", top_k="2.5")),
    BadInput(
        "top-k-negative-query",
        422,
        "validation-error",
        lambda client, samples: client.post("/identify?top_k=-3", files=multipart_images("image", samples.jpeg)),
    ),
    BadInput("threshold-above-1", 422, "validation-error", post_file("/identify", threshold="1.5")),
    BadInput("threshold-below-minus-1", 422, "validation-error", post_file("/identify", threshold="-1.01")),
    BadInput("threshold-not-a-number", 422, "validation-error", post_file("/identify", threshold="high")),
    BadInput(
        "threshold-nan-json",
        422,
        "validation-error",
        lambda client, samples: client.post(
            "/identify", content=f'{{"image": "{base64_text(samples.jpeg)}", "threshold": NaN}}', headers=JSON
        ),
    ),
    BadInput("max-faces-zero", 422, "validation-error", post_file("/identify", max_faces="0")),
    BadInput("unknown-option", 422, "validation-error", post_file("/identify", colour="blue")),
    BadInput("detect-takes-no-options", 422, "validation-error", post_file("/detect", top_k="2")),
    BadInput("face-mode-unknown", 422, "validation-error", post_file("/enroll", "images", name="x", face="all")),
    # enrollment
    BadInput("enroll-no-name-no-id", 400, "invalid-input", post_file("/enroll", "images")),
    BadInput(
        "enroll-name-and-id", 400, "invalid-input", post_file("/enroll", "images", name="x", identity_id=UNKNOWN_ID)
    ),
    BadInput(
        "enroll-unknown-identity", 404, "identity-not-found", post_file("/enroll", "images", identity_id=UNKNOWN_ID)
    ),
    BadInput("enroll-empty-name", 422, "invalid-identity", post_file("/enroll", "images", name="  ")),
    BadInput("enroll-name-control-character", 422, "invalid-identity", post_file("/enroll", "images", name="a\tb")),
    BadInput("enroll-name-too-long", 422, "invalid-identity", post_file("/enroll", "images", name="x" * 201)),
    BadInput(
        "enroll-metadata-not-json", 400, "invalid-input", post_file("/enroll", "images", name="x", metadata="{team")
    ),
    BadInput(
        "enroll-metadata-not-object", 422, "validation-error", post_file("/enroll", "images", name="x", metadata="[1]")
    ),
    BadInput(
        "enroll-metadata-too-large",
        422,
        "invalid-identity",
        post_file("/enroll", "images", name="x", metadata=json.dumps({"notes": "x" * 20_000})),
    ),
    BadInput(
        "enroll-metadata-nested-too-deep",
        422,
        "invalid-identity",
        post_file("/enroll", "images", name="x", metadata=json.dumps(too_deep_metadata(300))),
    ),
    BadInput(
        "enroll-metadata-with-identity-id",
        400,
        "invalid-input",
        post_file("/enroll", "images", identity_id=UNKNOWN_ID, metadata='{"a": 1}'),
    ),
    BadInput(
        "enroll-name-lone-surrogate",
        400,
        "invalid-input",
        lambda client, samples: client.post(
            "/enroll", content=f'{{"images": ["{base64_text(samples.jpeg)}"], "name": "\\ud800"}}', headers=JSON
        ),
    ),
    BadInput(
        "enroll-identity-id-lone-surrogate",
        400,
        "invalid-input",
        lambda client, samples: client.post(
            "/enroll", content=f'{{"images": ["{base64_text(samples.jpeg)}"], "identity_id": "\\udc00"}}', headers=JSON
        ),
    ),
    BadInput(
        "enroll-no-face",
        422,
        "enrollment-rejected",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", samples.no_face), data={"name": "x"}
        ),
    ),
    BadInput(
        "enroll-several-faces-single",
        422,
        "enrollment-rejected",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", samples.multiface), data={"name": "x", "face": "single"}
        ),
    ),
    BadInput(
        "enroll-11-images",
        400,
        "invalid-input",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", *[samples.jpeg] * 11), data={"name": "x"}
        ),
    ),
    BadInput(
        "enroll-12-images",
        400,
        "invalid-input",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", *[samples.jpeg] * 12), data={"name": "x"}
        ),
    ),
    BadInput(
        "enroll-11-images-json",
        400,
        "invalid-input",
        lambda client, samples: client.post("/enroll", json={"name": "x", "images": [base64_text(samples.jpeg)] * 11}),
    ),
    BadInput(
        "identify-two-images",
        400,
        "invalid-input",
        lambda client, samples: client.post("/identify", files=multipart_images("image", samples.jpeg, samples.jpeg)),
    ),
    # /verify
    BadInput("verify-one-image", 400, "invalid-input", post_file("/verify", "images")),
    BadInput(
        "verify-three-images",
        400,
        "invalid-input",
        lambda client, samples: client.post("/verify", files=multipart_images("images", *[samples.jpeg] * 3)),
    ),
    BadInput("verify-nothing", 400, "invalid-input", post_json("/verify", {})),
    BadInput(
        "verify-embedding-shape", 400, "invalid-input", post_json("/verify", {"embeddings": [[0.5] * 64, [0.5] * 64]})
    ),
    BadInput(
        "verify-no-face",
        422,
        "no-face",
        lambda client, samples: client.post("/verify", files=multipart_images("images", samples.jpeg, samples.no_face)),
    ),
    # identities
    BadInput(
        "get-unknown-identity",
        404,
        "identity-not-found",
        lambda client, samples: client.get(f"/identities/{UNKNOWN_ID}"),
    ),
    BadInput(
        "patch-unknown-identity",
        404,
        "identity-not-found",
        lambda client, samples: client.patch(f"/identities/{UNKNOWN_ID}", json={"name": "y"}),
    ),
    BadInput(
        "delete-unknown-identity",
        404,
        "identity-not-found",
        lambda client, samples: client.delete(f"/identities/{UNKNOWN_ID}"),
    ),
    BadInput(
        "delete-face-unknown-identity",
        404,
        "identity-not-found",
        lambda client, samples: client.delete(f"/identities/{UNKNOWN_ID}/faces/{UNKNOWN_ID}"),
    ),
    BadInput(
        "patch-body-not-json",
        422,
        "validation-error",
        lambda client, samples: client.patch(f"/identities/{UNKNOWN_ID}", content=b"name=x", headers=JSON),
    ),
    BadInput(
        "patch-name-lone-surrogate",
        422,
        "invalid-identity",
        lambda client, samples: client.patch(f"/identities/{UNKNOWN_ID}", content=b'{"name": "\\ud800"}', headers=JSON),
    ),
    BadInput(
        "patch-metadata-lone-surrogate",
        422,
        "invalid-identity",
        lambda client, samples: client.patch(
            f"/identities/{UNKNOWN_ID}", content=b'{"metadata": {"k": "\\udfff"}}', headers=JSON
        ),
    ),
    BadInput(
        "patch-metadata-nested-too-deep",
        422,
        "invalid-identity",
        lambda client, samples: client.patch(f"/identities/{UNKNOWN_ID}", json={"metadata": too_deep_metadata(100)}),
    ),
    BadInput(
        "list-name-too-long",
        422,
        "validation-error",
        lambda client, samples: client.get("/identities", params={"name": "x" * 201}),
    ),
    BadInput(
        "list-offset-beyond-int64",
        422,
        "validation-error",
        lambda client, samples: client.get("/identities", params={"offset": 2**64}),
    ),
    BadInput(
        "too-many-form-fields",
        400,
        "invalid-input",
        lambda client, samples: client.post(
            "/identify", files=[*multipart_images("image", samples.jpeg), *[(f"f{i}", (None, "x")) for i in range(150)]]
        ),
    ),
    # routes and methods
    BadInput("unknown-route", 404, "not-found", lambda client, samples: client.get("/faces")),
    BadInput("wrong-method", 405, "method-not-allowed", lambda client, samples: client.get("/identify")),
    # size limits (app with SMALL_MAX_IMAGE_BYTES and SMALL_MAX_REQUEST_BYTES)
    BadInput(
        "image-over-limit-multipart",
        413,
        "image-too-large",
        lambda client, samples: client.post(
            "/identify", files=multipart_images("image", samples.bmp, filename="photo.bmp")
        ),
        small_limits=True,
    ),
    BadInput(
        "image-over-limit-base64",
        413,
        "image-too-large",
        lambda client, samples: client.post("/identify", json={"image": base64_text(samples.bmp)}),
        small_limits=True,
    ),
    BadInput(
        "request-over-limit",
        413,
        "request-too-large",
        lambda client, samples: client.post(
            "/enroll", files=multipart_images("images", *[samples.bmp] * 3), data={"name": "x"}
        ),
        small_limits=True,
    ),
    BadInput(
        "request-over-limit-streamed",
        413,
        "request-too-large",
        lambda client, samples: client.post(
            "/identify", content=chunks(json.dumps({"image": base64_text(samples.bmp * 3)}).encode()), headers=JSON
        ),
        small_limits=True,
    ),
    BadInput(
        "request-over-limit-streamed-patch",
        413,
        "request-too-large",
        lambda client, samples: client.patch(
            f"/identities/{UNKNOWN_ID}",
            content=chunks(json.dumps({"metadata": {"x": "y" * 500_000}}).encode()),
            headers=JSON,
        ),
        small_limits=True,
    ),
]


@pytest.fixture(scope="module")
def samples(photo_dir: Path) -> Samples:
    jpeg = lfw_bytes(photo_dir, "Colin_Powell", 1)
    bmp = encode(Image.open(lfw_photo(photo_dir, "Colin_Powell", 1)).convert("RGB"), "BMP")
    assert len(bmp) > SMALL_MAX_IMAGE_BYTES
    assert 2 * len(bmp) < SMALL_MAX_REQUEST_BYTES < 3 * len(bmp)
    return Samples(
        jpeg=jpeg,
        bmp=bmp,
        no_face=(photo_dir / NO_FACE_PHOTO).read_bytes(),
        multiface=(photo_dir / MULTIFACE_PHOTO).read_bytes(),
        bomb=png_bomb(),
    )


@pytest.fixture(scope="module")
def small_limits_client(pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("small"),
        max_image_bytes=SMALL_MAX_IMAGE_BYTES,
        max_request_bytes=SMALL_MAX_REQUEST_BYTES,
    )
    with running_app(settings, pipeline) as ready_client:
        yield ready_client


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case.name for case in BAD_INPUTS])
def test_bad_input_problem(
    client: TestClient, small_limits_client: TestClient, samples: Samples, case: BadInput
) -> None:
    response = case.send(small_limits_client if case.small_limits else client, samples)

    assert response.status_code < 500, f"server error: {response.text}"
    assert_problem(response, case.status, case.code)


def test_bad_inputs_leave_gallery_empty(client: TestClient, samples: Samples) -> None:
    for case in BAD_INPUTS:
        if not case.small_limits:
            case.send(client, samples)

    assert client.get("/identities").json()["total"] == 0
    assert client.get("/readyz").json()["gallery_faces"] == 0


def test_bad_input_names_field(client: TestClient) -> None:
    response = client.post("/identify", json={"image": "https://example.com/face.jpg"})

    body = assert_problem(response, 400, "invalid-input")
    assert body["field"] == "image"
    assert body["value"] == "https://example.com/face.jpg"


def test_validation_problem_lists_errors(client: TestClient, samples: Samples) -> None:
    response = client.post(
        "/identify", files=multipart_images("image", samples.jpeg), data={"top_k": "-1", "threshold": "2"}
    )

    body = assert_problem(response, 422, "validation-error")
    assert {error["field"] for error in body["errors"]} == {"top_k", "threshold"}
    for error in body["errors"]:
        assert error["message"]


def test_png_bomb_problem_gives_size(client: TestClient, samples: Samples) -> None:
    response = client.post("/identify", files=multipart_images("image", samples.bomb, filename="bomb.png"))

    body = assert_problem(response, 413, "image-too-many-pixels")
    assert body["value"] == "20000x20000"


def test_enroll_rejection_lists_reason_per_image(client: TestClient, samples: Samples) -> None:
    response = client.post(
        "/enroll",
        files=[
            ("images", ("flower.jpg", samples.no_face)),
            ("images", ("group.jpg", samples.multiface)),
            ("images", ("broken.jpg", samples.jpeg[:300])),
        ],
        data={"name": "x"},
    )

    body = assert_problem(response, 422, "enrollment-rejected")
    assert [(item["image_index"], item["filename"], item["code"]) for item in body["rejected"]] == [
        (0, "flower.jpg", "no-face"),
        (1, "group.jpg", "multiple-faces"),
        (2, "broken.jpg", "corrupt-image"),
    ]
    for item in body["rejected"]:
        assert item["reasons"] and all(reason.strip() for reason in item["reasons"])


def test_unauthenticated_probe_unaffected_by_size_limit(small_limits_client: TestClient) -> None:
    assert small_limits_client.get("/healthz").status_code == 200


def test_misspelt_option_suggests_name(client: TestClient, photo_dir: Path) -> None:
    response = client.post("/identify?topk=3", files=multipart_images("image", lfw_bytes(photo_dir, "Colin_Powell", 1)))
    body = assert_problem(response, 422, "validation-error")
    assert "'topk'" in body["detail"]
    assert "did you mean 'top_k'" in body["detail"]
