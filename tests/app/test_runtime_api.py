"""Start-up, readiness, restarts on the same gallery file, failed start-ups and /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.gallery.sqlite import SqliteGalleryStore
from app.main import create_app
from models.pipeline import FacePipeline
from tests.app.support import (
    PROBE_PHOTOS,
    READY_TIMEOUT_S,
    AppStarter,
    Gallery,
    assert_problem,
    enroll,
    enroll_people,
    identify,
    lfw_bytes,
    make_settings,
    multipart_images,
    running_app,
)


def wait_for_failed_start(client: TestClient) -> dict:
    """Poll /readyz until the start-up has finished failing; return its last body."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        response = client.get("/readyz")
        assert response.status_code == 503, f"start-up should fail: {response.text}"
        body = response.json()
        if body["detail"] != "models are loading":
            return body
        assert time.monotonic() < deadline, "start-up neither finished nor failed"
        time.sleep(0.05)


def metric_samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """Parse /metrics into {(sample name, labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


# start-up and readiness


def test_fresh_app_live_before_ready(tmp_path: Path, photo_dir: Path) -> None:
    # No shared pipeline: this app loads its own models from disk, which takes seconds.
    app = create_app(make_settings(tmp_path / "data"))

    with TestClient(app) as client:
        health = client.get("/healthz")
        loading = client.get("/readyz")
        too_early = client.post("/identify", files=multipart_images("image", lfw_bytes(photo_dir, "Colin_Powell", 1)))
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready = client.get("/readyz")
        while ready.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            ready = client.get("/readyz")
        after = client.post("/identify", files=multipart_images("image", lfw_bytes(photo_dir, "Colin_Powell", 1)))

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    # Loading the models takes seconds, so the first probe comes before the end of it.
    assert loading.status_code == 503
    assert loading.json() == {"ready": False, "embedder": "dlib-resnet", "detail": "models are loading"}
    body = assert_problem(too_early, 503, "model-not-ready")
    assert too_early.headers["retry-after"] == "5"
    assert "GET /readyz" in body["hint"]
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "embedder": "dlib-resnet", "gallery_faces": 0}
    assert after.status_code == 200


def test_readyz_reports_embedder_and_faces(gallery: Gallery) -> None:
    response = gallery.client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "embedder": gallery.client.app.state.runtime.service.pipeline.embedder_id,
        "gallery_faces": 10,
    }


def test_gallery_of_other_embedder_not_ready(tmp_path: Path, pipeline: FacePipeline, photo_dir: Path) -> None:
    data_dir = tmp_path / "data"
    gallery_file = data_dir / "gallery.sqlite3"
    SqliteGalleryStore(gallery_file, embedder_id="facenet-vggface2", dimension=512).close()
    before = gallery_file.read_bytes()

    with TestClient(create_app(make_settings(data_dir), pipeline=pipeline)) as client:
        readiness = wait_for_failed_start(client)
        health = client.get("/healthz")
        identified = client.post("/identify", files=multipart_images("image", lfw_bytes(photo_dir, "Colin_Powell", 1)))
        listed = client.get("/identities")

    assert readiness["ready"] is False
    assert "facenet-vggface2" in readiness["detail"]
    assert "dlib-resnet" in readiness["detail"]
    assert health.status_code == 200
    assert_problem(identified, 503, "startup-failed")
    assert_problem(listed, 503, "startup-failed")
    assert identified.json()["value"] == "embedder-mismatch"
    assert gallery_file.read_bytes() == before


def test_gallery_not_sqlite_not_ready(tmp_path: Path, pipeline: FacePipeline) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "gallery.sqlite3").write_bytes(b"these are not the bytes of an SQLite database\n" * 100)

    with TestClient(create_app(make_settings(data_dir), pipeline=pipeline)) as client:
        readiness = wait_for_failed_start(client)
        listed = client.get("/identities")

    assert "not an SQLite database" in readiness["detail"]
    assert_problem(listed, 503, "startup-failed")
    assert listed.json()["value"] == "invalid-gallery-file"


def test_restart_same_answers(pipeline: FacePipeline, photo_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    probes = {person: lfw_bytes(photo_dir, person, number) for person, number in PROBE_PHOTOS.items()}
    with running_app(settings, pipeline) as client:
        identity_ids = enroll_people(client, photo_dir)
        before = {person: identify(client, image)["faces"][0] for person, image in probes.items()}
        listed_before = client.get("/identities").json()

    with running_app(settings, pipeline) as client:
        readiness = client.get("/readyz").json()
        after = {person: identify(client, image)["faces"][0] for person, image in probes.items()}
        listed_after = client.get("/identities").json()

    assert readiness["gallery_faces"] == 10
    assert listed_after == listed_before
    for person, face in after.items():
        assert face["identity"]["id"] == identity_ids[person]
        assert face["identity"] == before[person]["identity"]
        assert face["matches"] == before[person]["matches"]


def test_restart_after_delete_keeps_deletion(pipeline: FacePipeline, photo_dir: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    probe = lfw_bytes(photo_dir, "George_W_Bush", PROBE_PHOTOS["George_W_Bush"])
    with running_app(settings, pipeline) as client:
        identity_ids = enroll_people(client, photo_dir)
        client.delete(f"/identities/{identity_ids['George_W_Bush']}")

    with running_app(settings, pipeline) as client:
        face = identify(client, probe)["faces"][0]

    assert identity_ids["George_W_Bush"] not in {match["identity_id"] for match in face["matches"]}
    assert face["identity"] is None


# /metrics


def test_metrics_count_requests_by_route(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    identity_id = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))["identity"]["id"]
    identify(client, lfw_bytes(photo_dir, "Colin_Powell", PROBE_PHOTOS["Colin_Powell"]))
    identify(client, lfw_bytes(photo_dir, "George_W_Bush", 1))
    client.get(f"/identities/{identity_id}")
    client.get("/identities/00000000-0000-0000-0000-000000000000")
    client.get("/no-such-route")

    samples = metric_samples(client)

    def requests(method: str, route: str, status: str) -> float:
        labels = frozenset({"method": method, "route": route, "status": status}.items())
        return samples.get(("facegate_http_requests_total", labels), 0.0)

    assert requests("POST", "/enroll", "201") == 1
    assert requests("POST", "/identify", "200") == 2
    # Route templates, not raw paths, so that ids do not multiply the label values.
    assert requests("GET", "/identities/{identity_id}", "200") == 1
    assert requests("GET", "/identities/{identity_id}", "404") == 1
    assert requests("GET", "unmatched", "404") == 1
    assert requests("GET", "/readyz", "200") >= 1
    assert not any(identity_id in str(labels) for _, labels in samples)
    known = samples[("facegate_identifications_total", frozenset({"decision": "known"}.items()))]
    unknown = samples[("facegate_identifications_total", frozenset({"decision": "unknown"}.items()))]
    assert (known, unknown) == (1, 1)


def test_metrics_gallery_gauges_follow_enrollments(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()

    def gallery_gauges() -> tuple[float, float]:
        samples = metric_samples(client)
        return samples[("facegate_gallery_faces", frozenset())], samples[("facegate_gallery_identities", frozenset())]

    empty = gallery_gauges()
    identity_ids = enroll_people(client, photo_dir)
    enrolled = gallery_gauges()
    client.delete(f"/identities/{identity_ids['Colin_Powell']}")
    deleted = gallery_gauges()

    assert empty == (0, 0)
    assert enrolled == (10, 5)
    assert deleted == (8, 4)


def test_metrics_size_limit_rejection_counted(start_app: AppStarter) -> None:
    client = start_app(max_request_bytes=2048)

    response = client.post("/identify", content=b"{}" + b" " * 4096, headers={"content-type": "application/json"})
    samples = metric_samples(client)

    assert_problem(response, 413, "request-too-large")
    statuses = {dict(labels)["status"] for name, labels in samples if name == "facegate_http_requests_total"}
    assert "413" in statuses


def test_openapi_lists_routes(client: TestClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ["/enroll", "/identify", "/verify", "/embed", "/detect", "/identities", "/identities/{identity_id}"]:
        assert path in paths, path
    assert "multipart/form-data" in paths["/enroll"]["post"]["requestBody"]["content"]


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probe_responses_json(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_docs_served_without_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    script = client.get("/docs-static/swagger-ui-bundle.js")
    assert page.status_code == 200
    assert "/docs-static/swagger-ui-bundle.js" in page.text
    assert "cdn." not in page.text
    assert script.status_code == 200
