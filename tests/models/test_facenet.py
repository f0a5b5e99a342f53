"""FaceNet weights: load a locally saved state_dict, download from file:// with SHA-256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from facenet_pytorch import InceptionResnetV1

from models.embedders import FaceNetEmbedder, create_embedder
from models.errors import ModelWeightsChecksumError, ModelWeightsNotFoundError, UnknownEmbedderError
from models.facenet import download_weights, load_facenet

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight InceptionResnetV1 state_dict with the 8631-class head, like the release."""
    torch.manual_seed(0)
    network = InceptionResnetV1(pretrained=None, classify=True, num_classes=8631)
    path = tmp_path_factory.mktemp("facenet") / "facenet-test.pt"
    torch.save(network.state_dict(), path)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_facenet_local_state_dict(weights_file: Path) -> None:
    network = load_facenet(weights_file)
    output = network(torch.zeros(2, 3, 160, 160))
    assert output.shape == (2, 512)


def test_load_facenet_missing_file_hint(tmp_path: Path) -> None:
    with pytest.raises(ModelWeightsNotFoundError) as raised:
        load_facenet(tmp_path / "absent.pt")
    assert "facegate models download facenet-vggface2" in raised.value.hint


def test_load_facenet_rejects_other_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), path)
    with pytest.raises(ModelWeightsNotFoundError, match="not an InceptionResnetV1 state_dict"):
        load_facenet(path)


def test_load_facenet_rejects_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelWeightsNotFoundError, match="Cannot read"):
        load_facenet(path)


def test_facenet_embedder_unit_norm(weights_file: Path) -> None:
    embedder = create_embedder("facenet-vggface2", weights=weights_file)
    crops = np.random.default_rng(0).integers(0, 256, (3, 160, 160, 3), dtype=np.uint8)
    embeddings = embedder.embed(crops)
    assert isinstance(embedder, FaceNetEmbedder)
    assert embeddings.shape == (3, 512)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_create_embedder_unknown_name() -> None:
    with pytest.raises(UnknownEmbedderError, match="dlib-resnet"):
        create_embedder("arcface")


def test_download_weights_file_url(weights_file: Path, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "facenet.pt"
    result = download_weights(weights_file.as_uri(), destination, sha256=sha256_of(weights_file))
    assert result == destination
    assert sha256_of(destination) == sha256_of(weights_file)


def test_download_weights_checksum_mismatch_installs_nothing(weights_file: Path, tmp_path: Path) -> None:
    destination = tmp_path / "models" / "facenet.pt"
    with pytest.raises(ModelWeightsChecksumError):
        download_weights(weights_file.as_uri(), destination, sha256="0" * 64)
    assert not destination.exists()
    assert list(destination.parent.iterdir()) == []


def test_download_weights_unreachable_source(tmp_path: Path) -> None:
    with pytest.raises(ModelWeightsNotFoundError, match="failed"):
        download_weights((tmp_path / "absent.pt").as_uri(), tmp_path / "out.pt", sha256="0" * 64)


def run_download_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "models", "download", "facenet-vggface2", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_cli_models_download_file_url(weights_file: Path, tmp_path: Path) -> None:
    destination = tmp_path / "cli" / "facenet.pt"
    completed = run_download_cli(
        "--url", weights_file.as_uri(), "--sha256", sha256_of(weights_file), "--dest", str(destination)
    )
    assert completed.returncode == 0, completed.stderr
    assert destination.is_file()
    assert "verified" in completed.stdout


def test_cli_models_download_bad_checksum_exit_code(weights_file: Path, tmp_path: Path) -> None:
    completed = run_download_cli("--url", weights_file.as_uri(), "--dest", str(tmp_path / "facenet.pt"))
    assert completed.returncode == 2
    assert "SHA-256" in completed.stderr
