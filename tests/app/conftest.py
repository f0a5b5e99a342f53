"""Fixtures for the HTTP tests: apps started on the shared session pipeline, and the photos.

Every app runs its real lifespan (background model warm-up, gallery open and close) behind a
TestClient. Tests that depend on real sockets start uvicorn instead (support.running_uvicorn).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.pipeline import FacePipeline
from tests.app.support import LFW_SUBDIR, AppStarter, Gallery, enroll_people, make_settings, running_app


@pytest.fixture(scope="session")
def photo_dir(faces_dir: Path) -> Path:
    """The shared face folder; skips the test when its LFW photos are absent."""
    if not (faces_dir / LFW_SUBDIR).is_dir():
        pytest.skip(f"LFW photos not found at {faces_dir / LFW_SUBDIR}")
    return faces_dir


@pytest.fixture(scope="module")
def client(pipeline: FacePipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app with an empty gallery and default settings, shared by one module's stateless tests."""
    settings = make_settings(tmp_path_factory.mktemp("data"))
    with running_app(settings, pipeline) as ready_client:
        yield ready_client


@pytest.fixture(scope="module")
def gallery(pipeline: FacePipeline, photo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gallery]:
    """An app with the five people of ENROLLED_PHOTOS enrolled; tests must not change it."""
    data_dir = tmp_path_factory.mktemp("gallery")
    with running_app(make_settings(data_dir), pipeline) as ready_client:
        yield Gallery(ready_client, enroll_people(ready_client, photo_dir), data_dir)


@pytest.fixture
def start_app(pipeline: FacePipeline, tmp_path: Path) -> Iterator[AppStarter]:
    """Start apps for one test; all of them stop (and close their galleries) at its end."""
    with ExitStack() as stack:

        def start(data_dir: Path | None = None, **settings: Any) -> TestClient:
            settings_object = make_settings(data_dir or tmp_path / "data", **settings)
            return stack.enter_context(running_app(settings_object, pipeline))

        yield start
