"""Concurrent requests against a real uvicorn server on loopback.

The TestClient calls the app through an in-process transport. Uvicorn serves it as in
production: one event loop accepts all connections, and the routes hand the model and
gallery work to the worker thread pool.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.main import create_app
from models.pipeline import FacePipeline
from tests.app.support import (
    ENROLLED_PHOTOS,
    MULTIFACE_PHOTO,
    NO_FACE_PHOTO,
    PROBE_PHOTOS,
    display_name,
    encode,
    enroll_people,
    lfw_bytes,
    make_settings,
    multipart_images,
    running_uvicorn,
    wait_until_ready,
)

REQUEST_TIMEOUT_S = 120.0
# New people enrolled concurrently, two photos each (single faces that pass the quality gates).
NEW_PEOPLE = {
    "Tony_Blair": (1, 2),
    "Donald_Rumsfeld": (1, 2),
    "Ariel_Sharon": (1, 3),
    "Gerhard_Schroeder": (1, 2),
    "Hugo_Chavez": (2, 4),
}
# One more photo added concurrently to each enrolled person.
EXTRA_PHOTOS = {
    "Colin_Powell": 5,
    "George_W_Bush": 5,
    "Jean_Chretien": 7,
    "John_Ashcroft": 5,
    "Junichiro_Koizumi": 4,
}


def test_concurrent_identify_and_enroll_consistent(pipeline: FacePipeline, photo_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = create_app(make_settings(data_dir), pipeline=pipeline)

    with running_uvicorn(app) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as setup:
        wait_until_ready(setup)
        identity_ids = enroll_people(setup, photo_dir)

        requests: list[tuple[str, dict[str, Any]]] = []
        for person, number in PROBE_PHOTOS.items():
            image = lfw_bytes(photo_dir, person, number)
            for _ in range(2):
                requests.append(("identify", {"files": multipart_images("image", image), "expected": person}))
        for person, numbers in NEW_PEOPLE.items():
            photos = [lfw_bytes(photo_dir, person, number) for number in numbers]
            requests.append(
                ("enroll", {"files": multipart_images("images", *photos), "data": {"name": display_name(person)}})
            )
        for person, number in EXTRA_PHOTOS.items():
            photo = lfw_bytes(photo_dir, person, number)
            data = {"identity_id": identity_ids[person]}
            requests.append(("enroll", {"files": multipart_images("images", photo), "data": data}))
        assert len(requests) == 20

        def send(request: tuple[str, dict[str, Any]]) -> httpx.Response:
            route, arguments = request
            # One client per request: each opens its own connection, so all 20 are in flight at once.
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
                return client.post(f"/{route}", files=arguments["files"], data=arguments.get("data"))

        with ThreadPoolExecutor(max_workers=len(requests)) as executor:
            responses = list(executor.map(send, requests))

        for (route, arguments), response in zip(requests, responses, strict=True):
            assert response.status_code in (200, 201), f"{route}: {response.status_code} {response.text}"
            if route == "identify":
                identity = response.json()["faces"][0]["identity"]
                assert identity is not None and identity["id"] == identity_ids[arguments["expected"]]

        faces_added = sum(
            len(response.json()["faces_added"])
            for (route, _), response in zip(requests, responses, strict=True)
            if route == "enroll"
        )
        listed = setup.get("/identities", params={"limit": 500}).json()
        readiness = setup.get("/readyz").json()

    initial_faces = 2 * len(ENROLLED_PHOTOS)
    assert faces_added == 2 * len(NEW_PEOPLE) + len(EXTRA_PHOTOS)
    assert readiness["gallery_faces"] == initial_faces + faces_added
    assert listed["total"] == len(ENROLLED_PHOTOS) + len(NEW_PEOPLE)
    assert sum(item["face_count"] for item in listed["items"]) == initial_faces + faces_added
    face_counts = {item["id"]: item["face_count"] for item in listed["items"]}
    for person in EXTRA_PHOTOS:
        assert face_counts[identity_ids[person]] == 3, person
    names = sorted(item["name"] for item in listed["items"])
    assert names == sorted(display_name(person) for person in [*ENROLLED_PHOTOS, *NEW_PEOPLE])
    # The file agrees with the API once the server has closed it.
    connection = sqlite3.connect(data_dir / "gallery.sqlite3")
    try:
        assert connection.execute("SELECT count(*) FROM faces").fetchone()[0] == initial_faces + faces_added
        assert connection.execute("SELECT count(*) FROM identities").fetchone()[0] == listed["total"]
    finally:
        connection.close()


def test_concurrent_mixed_photos_answered_separately(pipeline: FacePipeline, photo_dir: Path, tmp_path: Path) -> None:
    # Concurrent images run through the models together. Each request must still get the
    # faces of its own image, whatever else shares the batch: LFW photos and a blank image
    # of the same size, a 1 px image, a group photo, a photo without faces, a broken file.
    photos = {
        "Colin_Powell": lfw_bytes(photo_dir, "Colin_Powell", 1),
        "George_W_Bush": lfw_bytes(photo_dir, "George_W_Bush", 1),
        "blank-250": encode(Image.new("RGB", (250, 250), (90, 90, 90)), "PNG"),
        "one-pixel": encode(Image.new("RGB", (1, 1)), "PNG"),
        "group": (photo_dir / MULTIFACE_PHOTO).read_bytes(),
        "flower": (photo_dir / NO_FACE_PHOTO).read_bytes(),
        "truncated": lfw_bytes(photo_dir, "Colin_Powell", 1)[:3000],
    }
    app = create_app(make_settings(tmp_path / "data"), pipeline=pipeline)

    with running_uvicorn(app) as base_url, httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
        wait_until_ready(client)
        alone = {name: client.post("/detect", files=multipart_images("image", data)) for name, data in photos.items()}

        def send(name: str) -> tuple[str, httpx.Response]:
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as own_client:
                return name, own_client.post("/detect", files=multipart_images("image", photos[name]))

        names = list(photos) * 3
        with ThreadPoolExecutor(max_workers=len(names)) as executor:
            together = list(executor.map(send, names))

    assert [len(alone[name].json()["faces"]) for name in ("Colin_Powell", "blank-250", "group")] == [1, 0, 6]
    assert alone["truncated"].status_code == 400
    for name, response in together:
        assert response.status_code == alone[name].status_code, name
        if response.status_code != 200:
            continue
        faces = response.json()["faces"]
        expected = alone[name].json()["faces"]
        assert len(faces) == len(expected), name
        for face, expected_face in zip(faces, expected, strict=True):
            for corner in ("x1", "y1", "x2", "y2"):
                assert face["box"][corner] == pytest.approx(expected_face["box"][corner], abs=1.0), name
