"""Fixtures shared by all test packages."""

from __future__ import annotations

import pathlib

import pytest

# The real face photos live next to the repository, never inside it; a fresh clone lacks them.
FACES_DIR = pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces"


@pytest.fixture(scope="session")
def faces_dir() -> pathlib.Path:
    """Return the shared face photo folder, or skip the test when it is absent."""
    if not FACES_DIR.is_dir():
        pytest.skip(f"shared face photos not found at {FACES_DIR.resolve()}")
    return FACES_DIR.resolve()


@pytest.fixture(scope="session")
def pipeline():
    """One FacePipeline (dlib-resnet on CPU) shared by the whole session: models load once."""
    from models.pipeline import FacePipeline, PipelineConfig

    return FacePipeline(PipelineConfig(device="cpu"))
