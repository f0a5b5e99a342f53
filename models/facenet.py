"""FaceNet weights: locate, verify, load and (only on explicit request) download them.

facenet-pytorch's InceptionResnetV1 (Szegedy et al., "Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning", 2016; trained on VGGFace2 with the FaceNet
recipe, Schroff et al. 2015). Its wheel does not ship these weights, and facenet-pytorch's
own `pretrained=` option downloads them silently at run time, so facegate never uses it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch
from facenet_pytorch import InceptionResnetV1

from models.errors import ModelWeightsChecksumError, ModelWeightsNotFoundError

WEIGHTS_FILENAME = "20180402-114759-vggface2.pt"
WEIGHTS_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{WEIGHTS_FILENAME}"
# SHA-256 of the released file (111,898,327 bytes), as several independent projects pin it.
# NOTE: not recomputed here, because the file cannot be fetched from the development machines.
WEIGHTS_SHA256 = "281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b"
# Folder that `facegate models download` writes to and the embedder reads from by default.
ENV_MODELS_DIR = "FACEGATE_MODELS_DIR"
DEFAULT_MODELS_DIR = Path("var") / "models"


def models_dir() -> Path:
    return Path(os.environ.get(ENV_MODELS_DIR) or DEFAULT_MODELS_DIR)


def default_weights_path() -> Path:
    return models_dir() / WEIGHTS_FILENAME


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_facenet(weights: str | os.PathLike | None = None) -> InceptionResnetV1:
    """Build InceptionResnetV1 and load a state_dict from `weights` (default path when None).

    The released file also holds the 8631-class VGGFace2 classifier (`logits.*`); those keys
    are dropped because only the 512-d embedding is used.
    """
    path = Path(weights) if weights is not None else default_weights_path()
    if not path.is_file():
        raise ModelWeightsNotFoundError(
            f"FaceNet weights not found at {path}.",
            value=str(path),
            hint=(
                "Run `facegate models download facenet-vggface2` (add --url file:///path/to/"
                f"{WEIGHTS_FILENAME} or an internal mirror on air-gapped sites), "
                "or point FACEGATE_EMBEDDER_WEIGHTS (the CLI's --weights) at the file."
            ),
        )
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types (pickle, zip, runtime) for bad files
        raise ModelWeightsNotFoundError(
            f"Cannot read FaceNet weights from {path}: {exc}",
            value=str(path),
            hint="The file is not a PyTorch state_dict; download it again.",
        ) from exc
    if not isinstance(state_dict, dict):
        raise ModelWeightsNotFoundError(
            f"{path} does not hold a state_dict.", value=str(path), hint="Download the weights again."
        )

    state_dict = {key: value for key, value in state_dict.items() if not key.startswith("logits.")}
    network = InceptionResnetV1(pretrained=None, classify=False)
    result = network.load_state_dict(state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelWeightsNotFoundError(
            f"{path} is not an InceptionResnetV1 state_dict: "
            f"{len(result.missing_keys)} missing and {len(result.unexpected_keys)} unexpected keys "
            f"(first missing: {result.missing_keys[:3]}, first unexpected: {result.unexpected_keys[:3]}).",
            value=str(path),
            hint="Use the facenet-pytorch VGGFace2 release file.",
        )
    return network.eval()


def download_weights(
    url: str = WEIGHTS_URL,
    destination: Path | None = None,
    *,
    sha256: str = WEIGHTS_SHA256,
    progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float = 60.0,
) -> Path:
    """Fetch the weights from `url` (http, https or file), check SHA-256, then move them into
    place atomically. A file already present with the right checksum is kept as it is."""
    destination = destination or default_weights_path()
    if destination.is_file() and sha256_file(destination) == sha256:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.NamedTemporaryFile(dir=destination.parent, prefix=".download-", delete=False) as partial:
        partial_path = Path(partial.name)
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                declared = response.headers.get("Content-Length")
                total = int(declared) if declared and declared.isdigit() else None
                received = 0
                while chunk := response.read(1 << 20):
                    partial.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    if progress:
                        progress(received, total)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            partial_path.unlink(missing_ok=True)
            raise ModelWeightsNotFoundError(
                f"Download of {url} failed: {exc}",
                value=url,
                hint="Check the address, or pass --url file:///path/to/the/file on machines without internet.",
            ) from exc

    actual = digest.hexdigest()
    if actual != sha256:
        partial_path.unlink(missing_ok=True)
        raise ModelWeightsChecksumError(
            f"SHA-256 of {url} is {actual}, expected {sha256}.",
            value=actual,
            hint="The file is damaged or not the FaceNet VGGFace2 release; nothing was installed.",
        )
    shutil.move(partial_path, destination)
    return destination


def print_progress(received: int, total: int | None) -> None:
    """Write a one-line download progress to stderr."""
    if total:
        sys.stderr.write(f"\r{received / 1e6:7.1f} / {total / 1e6:.1f} MB")
    else:
        sys.stderr.write(f"\r{received / 1e6:7.1f} MB")
    sys.stderr.flush()
