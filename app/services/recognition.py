"""Recognition service: turns decoded requests into pipeline calls and gallery operations.

Every public method is synchronous and CPU-bound; the routes run them in a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import (
    DuplicateImageError,
    EnrollmentRejectedError,
    InvalidInputError,
    LowQualityError,
    MultipleFacesError,
    NoFaceError,
)
from app.gallery.base import GalleryStore, Identity, NewFace
from app.inputs import ImageInput
from app.metrics import Metrics
from app.schemas import EnrollOptions, IdentifyOptions
from app.services.batching import BatchingAnalyzer
from app.settings import Settings
from models.detector import LANDMARK_NAMES
from models.errors import FacegateError
from models.imaging import decode_image
from models.pipeline import Analysis, Face, FacePipeline

logger = logging.getLogger(__name__)


def face_summary(face: Face) -> dict[str, Any]:
    """Box, landmarks, detection score and quality of one face, as the API returns them."""
    x1, y1, x2, y2 = face.bbox
    return {
        "box": {"x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1), "y2": round(y2, 1)},
        "landmarks": {
            name: (round(float(point[0]), 1), round(float(point[1]), 1))
            for name, point in zip(LANDMARK_NAMES, face.landmarks)
        },
        "detection_score": round(face.score, 4),
        "quality": face.quality.to_dict(),
    }


def identity_summary(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.id,
        "name": identity.name,
        "metadata": identity.metadata,
        "face_count": identity.face_count,
        "created_at": identity.created_at,
        "updated_at": identity.updated_at,
    }


@dataclass
class RecognitionService:
    settings: Settings
    pipeline: FacePipeline
    store: GalleryStore
    metrics: Metrics
    analyzer: BatchingAnalyzer

    @property
    def default_threshold(self) -> float:
        if self.settings.threshold is not None:
            return self.settings.threshold
        return self.pipeline.embedder.threshold

    @property
    def model_info(self) -> dict[str, str]:
        return {"detector": "mtcnn", "embedder": self.pipeline.embedder_id}

    # shared steps

    def decode(self, image: ImageInput) -> np.ndarray:
        return decode_image(
            image.data, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels
        )

    def analyze(
        self, image: ImageInput, route: str, *, embed: bool, keep_crops: bool = False, max_faces: int | None = None
    ) -> Analysis:
        pixels = self.decode(image)
        analysis = self.analyzer.analyze(
            pixels,
            embed=embed,
            keep_crops=keep_crops,
            max_faces=max_faces or self.settings.max_faces_per_image,
        )
        self.metrics.observe_analysis(route, analysis)
        return analysis

    def _response_meta(self, analysis: Analysis, started: float) -> dict[str, Any]:
        timings = dict(analysis.timings_ms)
        timings["total"] = round((time.perf_counter() - started) * 1000, 2)
        return {
            "image": {"width": analysis.width, "height": analysis.height},
            "model": self.model_info,
            "timings_ms": timings,
        }

    # routes

    def detect(self, image: ImageInput) -> dict[str, Any]:
        started = time.perf_counter()
        analysis = self.analyze(image, "/detect", embed=False)
        return {"faces": [face_summary(face) for face in analysis.faces], **self._response_meta(analysis, started)}

    def embed(self, image: ImageInput) -> dict[str, Any]:
        started = time.perf_counter()
        analysis = self.analyze(image, "/embed", embed=True)
        faces = [{**face_summary(face), "embedding": face.embedding.tolist()} for face in analysis.faces]
        return {
            "faces": faces,
            "dimension": self.pipeline.embedder.dimension,
            **self._response_meta(analysis, started),
        }

    def identify(self, image: ImageInput, options: IdentifyOptions) -> dict[str, Any]:
        started = time.perf_counter()
        threshold = options.threshold if options.threshold is not None else self.default_threshold
        analysis = self.analyze(image, "/identify", embed=True, max_faces=options.max_faces)

        faces = []
        if analysis.faces:
            queries = np.stack([face.embedding for face in analysis.faces])  # (F, D)
            search_started = time.perf_counter()
            results = self.store.search(queries, top_k=options.top_k)
            analysis.timings_ms["search"] = round((time.perf_counter() - search_started) * 1000, 2)
            for face, matches in zip(analysis.faces, results):
                best = matches[0] if matches else None
                identity = None
                if best is not None and best.similarity >= threshold:
                    identity = {"id": best.identity_id, "name": best.name, "similarity": round(best.similarity, 4)}
                faces.append(
                    {
                        **face_summary(face),
                        "matches": [
                            {
                                "identity_id": match.identity_id,
                                "name": match.name,
                                "similarity": round(match.similarity, 4),
                                "face_id": match.face_id,
                            }
                            for match in matches
                        ],
                        "identity": identity,
                    }
                )
        self.metrics.observe_identifications(faces)
        return {"faces": faces, "threshold": threshold, **self._response_meta(analysis, started)}

    def verify_images(self, images: list[ImageInput], threshold: float | None) -> dict[str, Any]:
        if len(images) != 2:
            raise InvalidInputError(
                f"/verify compares exactly 2 images, got {len(images)}.",
                field="images",
                value=len(images),
                hint="Send two images in the field 'images' (or two embeddings in 'embeddings').",
            )
        faces = []
        for image in images:
            analysis = self.analyze(image, "/verify", embed=True, max_faces=1)
            if not analysis.faces:
                raise NoFaceError(f"No face found in the image sent as {image.field!r}.", value=image.field, hint=_NO_FACE_HINT)
            faces.append(analysis.faces[0])
        similarity = float(np.dot(faces[0].embedding, faces[1].embedding))
        return self._verdict(similarity, threshold, [face_summary(face) for face in faces])

    def verify_embeddings(self, embeddings: Any, threshold: float | None) -> dict[str, Any]:
        dimension = self.pipeline.embedder.dimension
        try:
            # float64, so that finite JSON numbers beyond the float32 range (about 3.4e38) are
            # rejected below as values rather than overflowing here.
            array = np.asarray(embeddings, dtype=np.float64)
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: an integer beyond float64
            raise InvalidInputError(
                "Invalid embeddings: expected two lists of numbers.",
                field="embeddings",
                hint=f"Send [[{dimension} floats], [{dimension} floats]].",
            ) from exc
        if array.shape != (2, dimension):
            raise InvalidInputError(
                f"embeddings has shape {array.shape}; expected (2, {dimension}) for {self.pipeline.embedder_id}.",
                field="embeddings",
                value=str(array.shape),
                hint="Send two embeddings returned by /embed from this service.",
            )
        if not np.all(np.isfinite(array)) or np.any(np.all(array == 0, axis=1)):
            raise InvalidInputError(
                "embeddings must be finite and non-zero.", field="embeddings", hint="Send embeddings returned by /embed."
            )
        # Dividing by the largest magnitude first keeps the squares in the norm from
        # overflowing or underflowing; cosine similarity ignores the scale.
        scaled = array / np.abs(array).max(axis=1, keepdims=True)  # (2, D)
        unit = scaled / np.linalg.norm(scaled, axis=1, keepdims=True)  # (2, D)
        return self._verdict(float(np.dot(unit[0], unit[1])), threshold, None)

    def _verdict(self, similarity: float, threshold: float | None, faces: list | None) -> dict[str, Any]:
        threshold = threshold if threshold is not None else self.default_threshold
        return {
            "same_person": similarity >= threshold,
            "similarity": round(similarity, 4),
            "threshold": threshold,
            "faces": faces,
            "model": self.model_info,
        }

    def enroll(self, images: list[ImageInput], options: EnrollOptions) -> dict[str, Any]:
        if (options.name is None) == (options.identity_id is None):
            raise InvalidInputError(
                "Give exactly one of 'name' (new identity) or 'identity_id' (existing identity).",
                field="name" if options.name is None else "identity_id",
                hint="Send name=... to create a person, or identity_id=... to add photos to one.",
            )
        if options.identity_id is not None and options.metadata is not None:
            raise InvalidInputError(
                "metadata can only be set when creating an identity with 'name'.",
                field="metadata",
                hint="Change an existing identity's metadata with PATCH /identities/{id}.",
            )
        # Photos already enrolled for this identity, or repeated in this request, would only
        # add a copy of the same embedding, so they are rejected by their SHA-256.
        seen_sha256: set[str] = set()
        if options.identity_id is not None:
            self.store.get_identity(options.identity_id)  # 404 before any model work
            seen_sha256 = {face.image_sha256 for face in self.store.list_faces(options.identity_id)}

        new_faces: list[NewFace] = []
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for index, image in enumerate(images):
            image_sha256 = hashlib.sha256(image.data).hexdigest()
            try:
                if image_sha256 in seen_sha256:
                    raise DuplicateImageError(
                        f"The image sent as {image.field!r} is already enrolled for this identity.",
                        value=image_sha256,
                        hint="Send a different photo of the person.",
                    )
                face = self._enrollable_face(image, options)
            except FacegateError as error:
                rejected.append(
                    {
                        "image_index": index,
                        "filename": image.filename,
                        "code": error.code,
                        "reasons": getattr(error, "reasons", None) or [str(error.message)],
                        "hint": error.hint,
                    }
                )
                continue
            seen_sha256.add(image_sha256)
            new_faces.append(
                NewFace(
                    embedding=face.embedding,
                    quality=face.quality.to_dict(),
                    image_sha256=image_sha256,
                    crop=face.crop if self.settings.store_crops else None,
                )
            )
            accepted.append({"image_index": index, "box": face_summary(face)["box"], "quality": face.quality.to_dict()})

        if not new_faces:
            raise EnrollmentRejectedError(
                f"All {len(images)} image(s) were rejected; nothing was enrolled.",
                rejected=rejected,
                hint="Send a sharp, frontal photo with one face at least "
                f"{self.settings.enroll_min_face_px:.0f} px wide.",
            )

        identity, records = self.store.enroll(
            new_faces, identity_id=options.identity_id, name=options.name, metadata=options.metadata
        )
        for item, record in zip(accepted, records):
            item["id"] = record.id
        if rejected:
            # The store logs the enrollment itself; this line adds the rejected images.
            logger.info("Rejected %d of %d image(s) for identity %s", len(rejected), len(images), identity.id)
        return {
            "identity": identity_summary(identity),
            "created": options.identity_id is None,
            "faces_added": accepted,
            "rejected": rejected,
        }

    def _enrollable_face(self, image: ImageInput, options: EnrollOptions) -> Face:
        analysis = self.analyze(image, "/enroll", embed=True, keep_crops=True)
        if not analysis.faces:
            raise NoFaceError(f"No face found in the image sent as {image.field!r}.", value=image.field, hint=_NO_FACE_HINT)
        if len(analysis.faces) > 1 and options.face == "single":
            raise MultipleFacesError(
                f"{len(analysis.faces)} faces found in the image sent as {image.field!r}; enrollment needs exactly one.",
                value=len(analysis.faces),
                hint="Crop the photo to the person, or send face=largest to enroll the largest face.",
            )
        face = analysis.faces[0]  # largest first
        if not face.quality.acceptable:
            raise LowQualityError(face.quality.reasons)
        return face


_NO_FACE_HINT = "Send a photo where the face is visible, lit and not turned away from the camera."
