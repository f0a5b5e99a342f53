"""Per-face quality: size, detection score, sharpness and head pose estimated from landmarks,
with the reasons a face is not good enough to enroll."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from models.detector import Detection


@dataclass(frozen=True)
class QualityPolicy:
    """Limits a face must meet to be enrolled. Identification reports quality but never gates."""

    min_face_size_px: float = 40.0  # shorter side of the bbox, original image px
    min_detection_score: float = 0.95
    # Variance of the Laplacian on the aligned luma crop (0..255 scale). On 120 LFW photos the
    # 1st percentile is 16, and after a Gaussian blur of radius 2 px the 99th is 12.
    min_sharpness: float = 12.0
    max_abs_yaw_deg: float = 45.0


@dataclass(frozen=True)
class FaceQuality:
    face_size_px: float  # shorter side of the bbox
    detection_score: float
    sharpness: float  # variance of the 3x3 Laplacian of the aligned crop's luma
    yaw_deg: float  # rough estimate from the landmarks, positive = face turned to image right
    roll_deg: float  # angle of the eye line, positive = clockwise in the image
    reasons: list[str] = field(default_factory=list)  # why the face fails the policy; empty = passes

    @property
    def acceptable(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return asdict(self)


def laplacian_variance(crop: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of an (H, W, 3) uint8 crop's luma (ITU-R BT.601)."""
    luma = crop[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
    laplacian = (
        luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    )  # (H-2, W-2)
    return float(laplacian.var())


def estimate_pose(landmarks: np.ndarray) -> tuple[float, float]:
    """Estimate (yaw, roll) in degrees from the 5 MTCNN landmarks.

    Roll is the angle of the line through the eyes. Yaw comes from how far the nose tip sits
    from the midpoint of the eyes along the eye line, relative to half the eye distance:
    0 for a frontal face, near +-90 when the nose reaches an eye. It is a coarse estimate
    (about +-15 degrees), enough to reject profile views.
    """
    left_eye, right_eye, nose = landmarks[0], landmarks[1], landmarks[2]
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector))
    if eye_distance < 1e-6:
        return 90.0, 0.0
    roll = math.degrees(math.atan2(float(eye_vector[1]), float(eye_vector[0])))

    eye_axis = eye_vector / eye_distance
    offset = float(np.dot(nose - (left_eye + right_eye) / 2.0, eye_axis))  # px along the eye line
    ratio = max(-1.0, min(1.0, offset / (eye_distance / 2.0)))
    yaw = math.degrees(math.asin(ratio))
    return yaw, roll


def assess_quality(detection: Detection, crop: np.ndarray, policy: QualityPolicy | None = None) -> FaceQuality:
    """Measure one face and list what fails `policy` (the defaults when None)."""
    policy = policy or QualityPolicy()
    face_size = min(detection.width_px, detection.height_px)
    sharpness = laplacian_variance(crop)
    yaw, roll = estimate_pose(detection.landmarks)

    reasons = []
    if face_size < policy.min_face_size_px:
        reasons.append(f"face too small: {face_size:.0f} px, minimum {policy.min_face_size_px:.0f} px")
    if detection.score < policy.min_detection_score:
        reasons.append(
            f"low detection confidence: {detection.score:.3f}, minimum {policy.min_detection_score:.3f}"
        )
    if sharpness < policy.min_sharpness:
        reasons.append(f"face blurred: sharpness {sharpness:.1f}, minimum {policy.min_sharpness:.1f}")
    if abs(yaw) > policy.max_abs_yaw_deg:
        reasons.append(f"head turned too far: yaw {yaw:.0f} deg, maximum {policy.max_abs_yaw_deg:.0f} deg")

    return FaceQuality(
        face_size_px=round(face_size, 1),
        detection_score=round(detection.score, 4),
        sharpness=round(sharpness, 1),
        yaw_deg=round(yaw, 1),
        roll_deg=round(roll, 1),
        reasons=reasons,
    )
