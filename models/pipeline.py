"""The face pipeline: detect -> assess quality -> align -> embed, over decoded RGB images.

    from models.pipeline import FacePipeline, PipelineConfig
    from models.imaging import load_image

    pipeline = FacePipeline(PipelineConfig())          # dlib-resnet on CPU, or CUDA if present
    analysis = pipeline.analyze(load_image("photo.jpg"))
    for face in analysis.faces:                        # largest face first
        print(face.bbox, face.score, face.quality.reasons, face.embedding.shape)
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from models.alignment import View, align_face, align_face_views
from models.detector import Detection, DetectorConfig, FaceDetector
from models.embedders import Embedder, create_embedder
from models.quality import FaceQuality, QualityPolicy, assess_quality


@dataclass(frozen=True)
class PipelineConfig:
    embedder: str = "dlib-resnet"
    device: str = "auto"  # "auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:N"
    embedder_weights: str | os.PathLike | None = None  # None: the embedder's default file
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    num_threads: int | None = None  # torch intra-op threads on CPU; None keeps torch's default
    # Average the embeddings of the embedder's test-time views (see Embedder.views); off
    # embeds one crop per face: faster, and slightly less accurate.
    test_time_augmentation: bool = True


@dataclass
class Face:
    """One face found in an image."""

    detection: Detection
    quality: FaceQuality
    embedding: np.ndarray | None  # (D,) float32, unit L2 norm; None when not requested
    crop: np.ndarray | None  # (S, S, 3) uint8 aligned crop; None unless requested

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return self.detection.bbox

    @property
    def landmarks(self) -> np.ndarray:
        return self.detection.landmarks

    @property
    def score(self) -> float:
        return self.detection.score


@dataclass
class Analysis:
    """Every face of one image, largest first, with stage timings."""

    faces: list[Face]
    width: int
    height: int
    timings_ms: dict[str, float]


def resolve_device(device: str) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a torch device; raise ValueError otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return resolved


class FacePipeline:
    """Face pipeline whose models are loaded once, in the constructor.

    A lock serialises calls, because the detector and torch's intra-op thread pool are shared.
    Concurrent callers get the best throughput by batching their images (see
    app.services.batching).
    """

    def __init__(self, config: PipelineConfig | None = None) -> None:
        self.config = config or PipelineConfig()
        self.device = resolve_device(self.config.device)
        if self.config.num_threads and self.device.type == "cpu":
            torch.set_num_threads(self.config.num_threads)
        self.detector = FaceDetector(self.config.detector, device=self.device)
        self.embedder: Embedder = create_embedder(
            self.config.embedder, device=self.device, weights=self.config.embedder_weights
        )
        self._lock = threading.Lock()

    @property
    def embedder_id(self) -> str:
        return self.embedder.id

    def analyze(
        self, image: np.ndarray, *, embed: bool = True, keep_crops: bool = False, max_faces: int | None = None
    ) -> Analysis:
        """Find, assess and (optionally) embed every face of one (H, W, 3) uint8 RGB image."""
        return self.analyze_batch([image], embed=embed, keep_crops=keep_crops, max_faces=max_faces)[0]

    def analyze_batch(
        self,
        images: Sequence[np.ndarray],
        *,
        embed: bool = True,
        keep_crops: bool = False,
        max_faces: int | None | Sequence[int | None] = None,
    ) -> list[Analysis]:
        """Like `analyze` over several images; equal-size images share one detector batch and
        all crops share embedder batches. `max_faces` is one limit for all images or one per image."""
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")

        with self._lock:
            start = time.perf_counter()
            detections = self.detector.detect_batch(images)
            detect_ms = (time.perf_counter() - start) * 1000

            # Largest face first; keep at most max_faces per image.
            limits = max_faces if isinstance(max_faces, Sequence) else [max_faces] * len(images)
            for index, (image_detections, limit) in enumerate(zip(detections, limits)):
                image_detections.sort(key=lambda d: d.area_px, reverse=True)
                if limit is not None:
                    detections[index] = image_detections[:limit]

            start = time.perf_counter()
            crops = [
                [align_face(image, detection.landmarks, self.embedder.template) for detection in image_detections]
                for image, image_detections in zip(images, detections)
            ]
            qualities = [
                [assess_quality(d, crop, self.config.quality) for d, crop in zip(image_detections, image_crops)]
                for image_detections, image_crops in zip(detections, crops)
            ]
            align_ms = (time.perf_counter() - start) * 1000

            start = time.perf_counter()
            flat_crops = [crop for image_crops in crops for crop in image_crops]
            embeddings: list[np.ndarray | None] = [None] * len(flat_crops)
            if embed and flat_crops:
                embeddings = list(self._embed(images, detections, flat_crops))  # F x (D,)
            embed_ms = (time.perf_counter() - start) * 1000

        analyses = []
        position = 0
        for image, image_detections, image_crops, image_qualities in zip(images, detections, crops, qualities):
            faces = []
            for detection, crop, quality in zip(image_detections, image_crops, image_qualities):
                faces.append(
                    Face(
                        detection=detection,
                        quality=quality,
                        embedding=embeddings[position],
                        crop=crop if keep_crops else None,
                    )
                )
                position += 1
            analyses.append(
                Analysis(
                    faces=faces,
                    width=image.shape[1],
                    height=image.shape[0],
                    timings_ms={
                        "detect": round(detect_ms, 2),
                        "align": round(align_ms, 2),
                        "embed": round(embed_ms, 2),
                    },
                )
            )
        return analyses

    def _embed(
        self, images: Sequence[np.ndarray], detections: list[list[Detection]], crops: list[np.ndarray]
    ) -> np.ndarray:
        """Embed every detected face, from its test-time views when enabled: (F, D)."""
        views = self.embedder.views
        if not self.config.test_time_augmentation or len(views) == 1 and views[0] == View():
            return self.embedder.embed(np.stack(crops))  # (F, S, S, 3) -> (F, D)
        view_crops = [
            align_face_views(image, detection.landmarks, self.embedder.template, views)
            for image, image_detections in zip(images, detections)
            for detection in image_detections
        ]
        return self.embedder.embed_views(np.stack(view_crops))  # (F, K, S, S, 3) -> (F, D)

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        """Embed already aligned crops: (B, S, S, 3) uint8 -> (B, D) float32."""
        with self._lock:
            return self.embedder.embed(crops)
