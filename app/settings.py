"""Service settings: environment variables with the prefix FACEGATE_, or a `.env` file.

The defaults serve a laptop: SQLite under ./var, the offline dlib-resnet embedder, CPU or
CUDA chosen automatically, bound to 127.0.0.1:8000.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.detector import DetectorConfig
from models.embedders import EMBEDDERS
from models.pipeline import PipelineConfig
from models.quality import QualityPolicy

logger = logging.getLogger(__name__)

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGATE_", env_file=".env", extra="ignore")

    # server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Comma-separated keys; when any is set, every route but /healthz and /readyz needs
    # the header X-API-Key with one of them.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # storage
    data_dir: Path = Path("var")
    store: Literal["sqlite"] = "sqlite"
    sqlite_path: Path | None = None  # default: <data_dir>/gallery.sqlite3
    store_crops: bool = False  # keep each enrolled face's aligned crop as PNG under <data_dir>/crops

    # models
    embedder: str = "dlib-resnet"
    embedder_weights: Path | None = None  # default: the embedder's own file
    models_dir: Path = Path("var") / "models"  # where `facegate models download` puts weights
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    num_threads: int | None = Field(None, ge=1)  # torch CPU threads; unset keeps torch's default
    # Average the embeddings of the embedder's test-time views per face (4 for dlib-resnet).
    # The calibrated threshold assumes it. Off embeds one crop per face, about 10 ms faster.
    test_time_augmentation: bool = True
    # Concurrent requests whose images run through the models as one batch.
    max_batch_size: int = Field(8, ge=1, le=64)
    min_face_size_px: int = Field(20, ge=12)  # smallest face the detector looks for
    detection_max_side_px: int = Field(1280, ge=64)  # larger photos are downscaled for detection

    # matching
    threshold: float | None = Field(None, ge=-1.0, le=1.0)  # default: the embedder's calibrated one
    default_top_k: int = Field(5, ge=1, le=100)

    # enrollment quality gates
    enroll_min_face_px: float = Field(40.0, ge=0)
    enroll_min_detection_score: float = Field(0.95, ge=0, le=1)
    enroll_min_sharpness: float = Field(12.0, ge=0)
    enroll_max_abs_yaw_deg: float = Field(45.0, ge=0, le=90)

    # request limits
    max_request_bytes: int = Field(64 * MiB, ge=1024)
    max_image_bytes: int = Field(20 * MiB, ge=1024)
    max_image_pixels: int = Field(60_000_000, ge=1)
    max_images_per_request: int = Field(10, ge=1)
    max_faces_per_image: int = Field(100, ge=1)

    @field_validator("api_keys", mode="before")
    @classmethod
    def split_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("embedder")
    @classmethod
    def check_embedder(cls, value: str) -> str:
        if value not in EMBEDDERS:
            raise ValueError(f"unknown embedder {value!r}; use one of: {', '.join(EMBEDDERS)}")
        return value

    @model_validator(mode="after")
    def warn_open_without_keys(self) -> Settings:
        if self.host not in ("127.0.0.1", "localhost", "::1") and not self.api_keys:
            logger.warning(
                "Listening on %s without API keys: anyone who reaches this port can enroll and "
                "identify faces. Set FACEGATE_API_KEYS.",
                self.host,
            )
        return self

    @property
    def gallery_path(self) -> Path:
        return self.sqlite_path or self.data_dir / "gallery.sqlite3"

    @property
    def crops_dir(self) -> Path | None:
        return self.data_dir / "crops" if self.store_crops else None

    def pipeline_config(self) -> PipelineConfig:
        weights = self.embedder_weights
        if weights is None and self.embedder == "facenet-vggface2":
            from models.facenet import WEIGHTS_FILENAME

            weights = self.models_dir / WEIGHTS_FILENAME
        return PipelineConfig(
            embedder=self.embedder,
            device=self.device,
            embedder_weights=weights,
            detector=DetectorConfig(min_face_size_px=self.min_face_size_px, max_side_px=self.detection_max_side_px),
            quality=QualityPolicy(
                min_face_size_px=self.enroll_min_face_px,
                min_detection_score=self.enroll_min_detection_score,
                min_sharpness=self.enroll_min_sharpness,
                max_abs_yaw_deg=self.enroll_max_abs_yaw_deg,
            ),
            num_threads=self.num_threads,
            test_time_augmentation=self.test_time_augmentation,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
