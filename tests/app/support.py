"""Helpers shared by the HTTP tests: photo choices, app start-up, problem checks, image builders.

Every derived image (re-encoded, rotated, padded, crafted) is built in memory at test time
from the shared photos. Nothing made from them is written into the repository.
"""

from __future__ import annotations

import base64
import io
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.settings import Settings
from models.pipeline import FacePipeline


class HttpResponse(Protocol):
    """The part of a response that the checks read: TestClient (httpx2) and httpx both fit."""

    status_code: int
    headers: Any
    text: str

    def json(self) -> Any: ...


class AppStarter(Protocol):
    """Starts an app on `data_dir` (default: a fresh folder) and returns a ready client."""

    def __call__(self, data_dir: Path | None = None, **settings: Any) -> TestClient: ...


@dataclass(frozen=True)
class Gallery:
    """A running app with the five people of ENROLLED_PHOTOS enrolled."""

    client: TestClient
    identity_ids: dict[str, str]  # LFW person -> identity id
    data_dir: Path


# The helpers below run on the in-process TestClient and on httpx against a real server alike.
HttpClient = TestClient | httpx.Client

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:facegate:problem:"
READY_TIMEOUT_S = 120.0

LFW_SUBDIR = Path("lfw") / "lfw-deepfunneled"
MULTIFACE_PHOTO = Path("facenet_pytorch_test") / "multiface.jpg"  # 6 people
NO_FACE_PHOTO = Path("no_face_and_misc") / "flower.jpg"

# Five people enrolled with two LFW photos each and identified from a third. Each photo contains
# one face that passes the enrollment quality gates. With dlib-resnet, each probe's cosine
# similarity to its own identity is 0.957 to 0.975 and to each of the other four at most 0.90.
# The unknown person's similarity to all five is at most 0.88. So the identification tests
# hold for any default threshold from 0.90 to 0.957; they read the threshold from responses.
ENROLLED_PHOTOS: dict[str, tuple[int, int]] = {
    "Colin_Powell": (1, 2),
    "George_W_Bush": (1, 2),
    "Jean_Chretien": (2, 3),
    "John_Ashcroft": (1, 4),
    "Junichiro_Koizumi": (2, 3),
}
PROBE_PHOTOS: dict[str, int] = {
    "Colin_Powell": 3,
    "George_W_Bush": 12,
    "Jean_Chretien": 12,
    "John_Ashcroft": 10,
    "Junichiro_Koizumi": 8,
}
# Never enrolled anywhere in these tests.
UNKNOWN_PERSON = ("Serena_Williams", 1)


def display_name(person: str) -> str:
    """Return the name the tests enroll an LFW person under, e.g. "Colin Powell"."""
    return person.replace("_", " ")


def lfw_photo(faces_dir: Path, person: str, number: int) -> Path:
    return faces_dir / LFW_SUBDIR / person / f"{person}_{number:04d}.jpg"


def lfw_bytes(faces_dir: Path, person: str, number: int) -> bytes:
    return lfw_photo(faces_dir, person, number).read_bytes()


# starting the service


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app; `_env_file=None` keeps a developer's .env out of the tests."""
    return Settings(_env_file=None, data_dir=data_dir, **overrides)


def wait_until_ready(client: HttpClient, timeout_s: float = READY_TIMEOUT_S) -> dict[str, Any]:
    """Poll GET /readyz until it returns 200; fail at once when start-up has failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get("/readyz")
        body = response.json()
        if response.status_code == 200:
            return body
        if body.get("detail") != "models are loading":
            raise AssertionError(f"start-up failed: {body}")
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz still {response.status_code} after {timeout_s} s: {body}")
        time.sleep(0.05)


@contextmanager
def running_app(settings: Settings, pipeline: FacePipeline | None) -> Iterator[TestClient]:
    """Start the app (lifespan included) and yield a client once /readyz returns 200."""
    app = create_app(settings, pipeline=pipeline)
    with TestClient(app) as client:
        wait_until_ready(client)
        yield client


@contextmanager
def running_uvicorn(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yield the base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # log_config=None leaves the logging set-up to pytest; ws="none" skips the websockets import.
    config = uvicorn.Config(app, log_config=None, access_log=False, ws="none", http="h11", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


# requests


def multipart_images(field: str, *images: bytes, filename: str = "photo.jpg") -> list[tuple[str, tuple[str, bytes]]]:
    return [(field, (filename, data)) for data in images]


def enroll(client: HttpClient, name: str, *images: bytes, **fields: str) -> dict[str, Any]:
    """Enroll a new identity from multipart photos and return the 201 body."""
    response = client.post("/enroll", files=multipart_images("images", *images), data={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def identify(client: HttpClient, image: bytes, **fields: str) -> dict[str, Any]:
    response = client.post("/identify", files=multipart_images("image", image), data=fields)
    assert response.status_code == 200, response.text
    return response.json()


def enroll_people(client: HttpClient, faces_dir: Path) -> dict[str, str]:
    """Enroll the five people of ENROLLED_PHOTOS; return person -> identity id."""
    identity_ids = {}
    for person, numbers in ENROLLED_PHOTOS.items():
        photos = [lfw_bytes(faces_dir, person, number) for number in numbers]
        identity_ids[person] = enroll(client, display_name(person), *photos)["identity"]["id"]
    return identity_ids


def assert_problem(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    """Check an RFC 9457 problem response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body = response.json()
    assert body["type"] == PROBLEM_TYPE_PREFIX + code
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["detail"], str) and body["detail"].strip()
    assert isinstance(body["hint"], str) and body["hint"].strip()
    return body


# image builders


def encode(image: Image.Image, image_format: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def base64_text(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """Build a valid all-black 1-bit PNG of width x height that compresses to about 50 KB.

    The rows are compressed 1000 at a time, so at most 2.5 MB of raw rows sit in memory.
    Decoded as 8-bit, the image would take width * height bytes (400 MB by default).
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter type 0, then 8 pixels per byte
    rows_per_block = 1000
    compressor = zlib.compressobj(9)
    compressed = []
    for start in range(0, height, rows_per_block):
        compressed.append(compressor.compress(row * min(rows_per_block, height - start)))
    compressed.append(compressor.flush())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(compressed)) + chunk(b"IEND", b"")


def unit_norm(vector: list[float]) -> float:
    return float(np.linalg.norm(np.asarray(vector, dtype=np.float64)))
