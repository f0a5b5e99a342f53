"""Face embedders: aligned crops in, L2-normalised float32 embeddings out.

Each embedder has an id (stored with every gallery embedding), a dimension, the alignment
template its crops are cut with, and a cosine-similarity threshold calibrated for it.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod

import numpy as np
import torch
import torch.nn.functional as F

from models.alignment import DLIB_CHIP_150, FACENET_160, AlignmentTemplate, View
from models.errors import UnknownEmbedderError

# Crops per forward pass: bounds peak memory on large group photos.
MAX_BATCH = 32


class Embedder(ABC):
    id: str
    dimension: int
    template: AlignmentTemplate
    # Cosine similarity at which two faces count as the same person.
    threshold: float
    # Crops per face whose raw embeddings are averaged (test-time augmentation). The
    # threshold is calibrated with these views.
    views: tuple[View, ...] = (View(),)

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    @property
    def input_size(self) -> int:
        return self.template.size

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops: (B, S, S, 3) uint8 RGB -> (B, D) float32, unit L2 norm."""
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"{self.id} expects crops of shape (B, {self.input_size}, {self.input_size}, 3), got {crops.shape}"
            )
        if len(crops) == 0:
            return np.zeros((0, self.dimension), np.float32)
        outputs = []
        for start in range(0, len(crops), MAX_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + MAX_BATCH])).to(self.device)
            embeddings = self._forward(batch)  # (b, D)
            outputs.append(F.normalize(embeddings.float(), dim=1).cpu())
        return torch.cat(outputs).numpy()

    @torch.inference_mode()
    def embed_views(self, crops: np.ndarray) -> np.ndarray:
        """Embed K views per face: (B, K, S, S, 3) uint8 -> (B, D) float32, unit L2 norm.

        The raw embeddings of a face's views are averaged before normalising.
        """
        if crops.ndim != 5 or crops.shape[2:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"{self.id} expects views of shape (B, K, {self.input_size}, {self.input_size}, 3), got {crops.shape}"
            )
        batch_size, view_count = crops.shape[:2]
        if batch_size == 0:
            return np.zeros((0, self.dimension), np.float32)
        flat = crops.reshape(batch_size * view_count, *crops.shape[2:])  # (B*K, S, S, 3)
        outputs = []
        # Whole faces per forward pass, so no face's views are split across batches.
        faces_per_pass = max(1, MAX_BATCH // view_count)
        for start in range(0, batch_size, faces_per_pass):
            chunk = flat[start * view_count : (start + faces_per_pass) * view_count]
            raw = self._forward(torch.from_numpy(np.ascontiguousarray(chunk)).to(self.device)).float()  # (b*K, D)
            outputs.append(F.normalize(raw.reshape(-1, view_count, raw.shape[1]).mean(dim=1), dim=1).cpu())
        return torch.cat(outputs).numpy()

    @abstractmethod
    def _forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 on self.device -> (B, D) unnormalised embeddings."""


class DlibResNetEmbedder(Embedder):
    """dlib's face recognition ResNet (dlib_face_recognition_resnet_model_v1), rebuilt in
    PyTorch and loaded from the `.dat` file in the face-recognition-models wheel."""

    id = "dlib-resnet"
    dimension = 128
    template = DLIB_CHIP_150
    # FAR 1e-3 on 22,128,754 impostor pairs of the LFW DevTrain identities (6,685 photos),
    # with the views below. TAR there is 0.969 on 205,832 genuine pairs. Reproduce with
    # `python -m bench.lfw --calibrate`.
    threshold = 0.930
    # dlib trained this network on jittered crops (small rotations, shifts, scales, mirror
    # images), so averaging a few such views smooths out landmark noise. On LFW View 2 these
    # four lift accuracy from 98.92% to 99.12% (`python -m bench.lfw` with and without --no-tta).
    views = (
        View(),
        View(flip=True),
        View(rotation_deg=3.0, shift_px=(2.0, 2.0), scale=1.01),
        View(rotation_deg=-3.0, shift_px=(-2.0, -2.0), scale=0.99, flip=True),
    )

    def __init__(self, device: torch.device | str = "cpu", weights: str | os.PathLike | None = None) -> None:
        super().__init__(device)
        from models.dlib_resnet import load_dlib_resnet

        self.network = load_dlib_resnet(weights).to(self.device).eval()

    def _forward(self, crops: torch.Tensor) -> torch.Tensor:
        from models.dlib_resnet import preprocess

        return self.network(preprocess(crops))  # (B, 150, 150, 3) -> (B, 3, 150, 150) -> (B, 128)


class FaceNetEmbedder(Embedder):
    """facenet-pytorch's InceptionResnetV1 with the VGGFace2 weights, 512-d."""

    id = "facenet-vggface2"
    dimension = 512
    template = FACENET_160
    # NOTE: not calibrated here: the weights cannot be fetched on the development machines.
    # 0.40 is cosine = 1 - d^2 / 2 for the unit-norm Euclidean distance 1.1 that facenet
    # users commonly apply; run `python -m bench.lfw --embedder facenet-vggface2 --calibrate`.
    threshold = 0.40

    def __init__(self, device: torch.device | str = "cpu", weights: str | os.PathLike | None = None) -> None:
        super().__init__(device)
        from models.facenet import load_facenet

        self.network = load_facenet(weights).to(self.device).eval()

    def _forward(self, crops: torch.Tensor) -> torch.Tensor:
        # facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128.
        batch = (crops.permute(0, 3, 1, 2).float() - 127.5) / 128.0  # (B, 3, 160, 160)
        return self.network(batch)  # (B, 512)


EMBEDDERS: dict[str, type[Embedder]] = {
    DlibResNetEmbedder.id: DlibResNetEmbedder,
    FaceNetEmbedder.id: FaceNetEmbedder,
}


def create_embedder(
    name: str, *, device: torch.device | str = "cpu", weights: str | os.PathLike | None = None
) -> Embedder:
    """Build the embedder `name`; `weights` overrides its default weights file."""
    try:
        embedder_class = EMBEDDERS[name]
    except KeyError:
        raise UnknownEmbedderError(
            f"Unknown embedder {name!r}.", value=name, hint=f"Use one of: {', '.join(EMBEDDERS)}."
        ) from None
    return embedder_class(device=device, weights=weights)
