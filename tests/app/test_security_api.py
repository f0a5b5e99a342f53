"""API keys (X-API-Key) and what the service writes to its logs."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from models.pipeline import FacePipeline
from tests.app.support import AppStarter, assert_problem, lfw_bytes, make_settings, multipart_images, running_app

API_KEYS = ["k1-7f3a9c2e", "k2-d41b8e60"]
OPEN_ROUTES = ["/healthz", "/readyz"]
PROTECTED_GETS = ["/identities", "/metrics", "/identities/00000000-0000-0000-0000-000000000000"]


@pytest.fixture(scope="module")
def keyed_client(pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("keyed"), api_keys=API_KEYS)
    with running_app(settings, pipeline) as ready_client:
        yield ready_client


def test_api_key_missing_401(keyed_client: TestClient) -> None:
    for path in PROTECTED_GETS:
        response = keyed_client.get(path)
        assert_problem(response, 401, "missing-api-key")
        assert response.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'


def test_api_key_missing_on_post_401(keyed_client: TestClient, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "Colin_Powell", 1)

    for path in ["/identify", "/detect", "/embed"]:
        assert_problem(keyed_client.post(path, files=multipart_images("image", image)), 401, "missing-api-key")
    response = keyed_client.post("/enroll", files=multipart_images("images", image), data={"name": "x"})
    assert_problem(response, 401, "missing-api-key")
    assert keyed_client.get("/identities", headers={"X-API-Key": API_KEYS[0]}).json()["total"] == 0


def test_api_key_wrong_403(keyed_client: TestClient) -> None:
    for wrong in ["k3", API_KEYS[0] + "x", API_KEYS[0][:-1], API_KEYS[0].upper(), "k1-7f3a9c2e,k2-d41b8e60"]:
        response = keyed_client.get("/identities", headers={"X-API-Key": wrong})
        assert_problem(response, 403, "invalid-api-key")


def test_api_key_right_200(keyed_client: TestClient, photo_dir: Path) -> None:
    for key in API_KEYS:
        headers = {"X-API-Key": key}
        assert keyed_client.get("/identities", headers=headers).status_code == 200
        assert keyed_client.get("/metrics", headers=headers).status_code == 200
        response = keyed_client.post(
            "/detect", files=multipart_images("image", lfw_bytes(photo_dir, "Colin_Powell", 1)), headers=headers
        )
        assert response.status_code == 200


def test_api_key_header_name_case_insensitive(keyed_client: TestClient) -> None:
    response = keyed_client.get("/identities", headers={"x-api-key": API_KEYS[1]})

    assert response.status_code == 200


def test_probes_open_with_keys(keyed_client: TestClient) -> None:
    for path in OPEN_ROUTES:
        assert keyed_client.get(path).status_code == 200


def test_no_keys_routes_open(client: TestClient) -> None:
    for path in [*OPEN_ROUTES, "/identities", "/metrics"]:
        assert client.get(path).status_code == 200, path
    # A key sent to a server without keys is ignored.
    assert client.get("/identities", headers={"X-API-Key": "anything"}).status_code == 200


def test_api_keys_setting_splits_comma_list(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, api_keys=" k1 , k2,,")

    assert settings.api_keys == ["k1", "k2"]


def test_logs_omit_api_key_and_image_data(
    start_app: AppStarter, photo_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = start_app(api_keys=API_KEYS)
    photos = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 2)]
    encoded = [base64.b64encode(photo).decode() for photo in photos]
    wrong_key = "wrong-key-5e9d0b7a"
    caplog.set_level(logging.DEBUG)

    enrolled = client.post(
        "/enroll", json={"name": "Colin Powell", "images": encoded}, headers={"X-API-Key": API_KEYS[0]}
    )
    identified = client.post("/identify", json={"image": encoded[0]}, headers={"X-API-Key": API_KEYS[1]})
    rejected = client.post("/identify", json={"image": encoded[0] + "!"}, headers={"X-API-Key": API_KEYS[1]})
    forbidden = client.get("/identities", headers={"X-API-Key": wrong_key})

    assert enrolled.status_code == 201
    assert identified.status_code == 200
    assert rejected.status_code == 400
    assert forbidden.status_code == 403
    assert "Enrolled 2 faces" in caplog.text, "the enrollment should be logged, so the capture works"
    for secret in [*API_KEYS, wrong_key]:
        assert secret not in caplog.text
    for text in encoded:
        assert text[:40] not in caplog.text
    assert "/9j/" not in caplog.text  # base64 of a JPEG's first bytes
