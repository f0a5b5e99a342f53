"""Pydantic schemas of every request option and response body."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# shared pieces


class Box(BaseModel):
    """Face bounding box in pixels of the uploaded image (after EXIF rotation)."""

    x1: float
    y1: float
    x2: float
    y2: float


class Landmarks(BaseModel):
    """Five facial landmarks as [x, y] in image pixels; left/right as seen in the image."""

    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    nose: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]


class Quality(BaseModel):
    face_size_px: float = Field(description="Shorter side of the box, px.")
    detection_score: float
    sharpness: float = Field(description="Variance of the Laplacian on the aligned crop.")
    yaw_deg: float = Field(description="Head turn estimated from the landmarks (coarse).")
    roll_deg: float
    reasons: list[str] = Field(description="Why the face would be rejected at enrollment; empty when it passes.")


class DetectedFace(BaseModel):
    box: Box
    landmarks: Landmarks
    detection_score: float
    quality: Quality


class ModelInfo(BaseModel):
    detector: str = "mtcnn"
    embedder: str


class ImageInfo(BaseModel):
    width: int
    height: int


# /detect and /embed


class NoOptions(BaseModel):
    """Routes without options reject unknown fields instead of ignoring them."""

    model_config = ConfigDict(extra="forbid")


class DetectResponse(BaseModel):
    faces: list[DetectedFace]
    image: ImageInfo
    model: ModelInfo
    timings_ms: dict[str, float]


class EmbeddedFace(DetectedFace):
    embedding: list[float] = Field(description="L2-normalised embedding.")


class EmbedResponse(BaseModel):
    faces: list[EmbeddedFace]
    dimension: int
    image: ImageInfo
    model: ModelInfo
    timings_ms: dict[str, float]


# /identify


class IdentifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(5, ge=1, le=100, description="Matches returned per face.")
    threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="Cosine similarity a match needs; default: the embedder's calibrated one."
    )
    max_faces: int = Field(10, ge=1, le=100, description="Largest faces identified per photo.")


class MatchOut(BaseModel):
    identity_id: str
    name: str
    similarity: float
    face_id: str


class IdentityRef(BaseModel):
    id: str
    name: str
    similarity: float


class IdentifiedFace(DetectedFace):
    matches: list[MatchOut]
    identity: IdentityRef | None = Field(description="The best match when it passes the threshold, else null.")


class IdentifyResponse(BaseModel):
    faces: list[IdentifiedFace]
    threshold: float
    image: ImageInfo
    model: ModelInfo
    timings_ms: dict[str, float]


# /verify


class VerifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(None, ge=-1.0, le=1.0)


class VerifyResponse(BaseModel):
    same_person: bool
    similarity: float
    threshold: float
    faces: list[DetectedFace] | None = Field(
        None, description="The face compared in each image (the largest); null when embeddings were sent."
    )
    model: ModelInfo


# /enroll


class EnrollOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Creates a new identity with this name.")
    identity_id: str | None = Field(None, description="Adds the faces to this existing identity.")
    metadata: dict[str, Any] | None = Field(None, description="JSON object stored with a new identity.")
    face: Literal["single", "largest"] = Field(
        "single", description="single: reject photos with several faces; largest: enroll the largest face."
    )


class EnrolledFace(BaseModel):
    id: str
    image_index: int
    box: Box
    quality: Quality


class RejectedImage(BaseModel):
    image_index: int
    filename: str | None
    code: str
    reasons: list[str]
    hint: str | None = None


# identities


class IdentityOut(BaseModel):
    id: str
    name: str
    metadata: dict[str, Any]
    face_count: int
    created_at: datetime
    updated_at: datetime


class FaceOut(BaseModel):
    id: str
    embedder: str
    quality: dict[str, Any]
    image_sha256: str
    created_at: datetime
    has_crop: bool


class IdentityDetail(IdentityOut):
    faces: list[FaceOut]


class EnrollResponse(BaseModel):
    identity: IdentityOut
    created: bool
    faces_added: list[EnrolledFace]
    rejected: list[RejectedImage]


class IdentityPage(BaseModel):
    items: list[IdentityOut]
    total: int
    offset: int
    limit: int


class IdentityUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    metadata: dict[str, Any] | None = None


class IdentityDeleted(BaseModel):
    id: str
    faces_removed: int


# health


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    embedder: str
    gallery_faces: int | None = None
    detail: str | None = None
