"""Face alignment: a least-squares similarity transform from the 5 MTCNN landmarks to an
embedder's template, then a warp to the embedder's input size.

Coordinates follow one convention throughout: pixel (i, j) has its centre at x = i, y = j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class AlignmentTemplate:
    """Target positions of the 5 landmarks (MTCNN order) in a size x size px output crop."""

    name: str
    size: int  # output side in px
    points: np.ndarray  # (5, 2) float32 x, y in output px
    weights: np.ndarray  # (5,) weight of each landmark in the least-squares fit

    def __post_init__(self) -> None:
        assert self.points.shape == (5, 2), f"template needs (5, 2) points, got {self.points.shape}"
        assert self.weights.shape == (5,), f"template needs 5 weights, got {self.weights.shape}"


# Mean MTCNN landmark positions inside the chip that dlib.get_face_chip(img, shape5, size=150,
# padding=0.25) cuts for dlib's face recognition ResNet, over 996 LFW DevTrain photos
# (`python -m bench.derive_templates`), each mapped through the exact similarity dlib used.
# dlib places the chip from eye corners and the nose base, and MTCNN's mouth corners move with
# expression, so the fit trusts the eyes most. On 50 held-out photos these weights cut the
# mean displacement from dlib's chip from 4.8 to 2.7 px, and the descriptor cosine to dlib's
# own chip is 0.9966 on average (min 0.9885). The small mouth weight keeps a fallback when
# the eyes are poorly found.
DLIB_CHIP_150 = AlignmentTemplate(
    name="dlib-chip-150",
    size=150,
    points=np.array(
        [
            [47.86, 46.06],  # left eye
            [102.23, 46.10],  # right eye
            [75.06, 78.10],  # nose tip
            [50.87, 106.07],  # left mouth corner
            [98.60, 106.22],  # right mouth corner
        ],
        dtype=np.float32,
    ),
    weights=np.array([1.0, 1.0, 0.4, 0.05, 0.05], dtype=np.float32),
)

# Mean MTCNN landmark positions inside facenet-pytorch's own crop for these weights (the MTCNN
# box with a 14 px margin, resized to 160x160), over 999 LFW DevTrain photos.
# NOTE: that crop squashes faces vertically (MTCNN boxes are 1.34x taller than wide), which a
# similarity warp cannot do. The effect on FaceNet accuracy is unmeasured, because the
# weights cannot be fetched on the development machines.
FACENET_160 = AlignmentTemplate(
    name="facenet-160",
    size=160,
    points=np.array(
        [
            [50.85, 64.47],
            [116.38, 63.36],
            [84.52, 92.64],
            [56.12, 118.52],
            [113.67, 117.65],
        ],
        dtype=np.float32,
    ),
    weights=np.ones(5, dtype=np.float32),
)


def estimate_similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Fit the similarity transform (rotation, uniform scale, translation) that maps
    `source` points onto `target` points in the (weighted) least-squares sense (Umeyama,
    "Least-squares estimation of transformation parameters between two point patterns", 1991).

    Args:
        source: (N, 2) points, N >= 2.
        target: (N, 2) points.
        weights: (N,) non-negative weights; None weighs every point equally.

    Returns:
        (2, 3) float64 matrix M with target ~= M[:, :2] @ source + M[:, 2].
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    assert source.shape == target.shape, f"point sets differ in shape: {source.shape} vs {target.shape}"
    assert source.shape[0] >= 2, f"need at least 2 points, got {source.shape[0]}"
    weights = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = weights / weights.sum()  # (N,)

    source_mean = weights @ source  # (2,)
    target_mean = weights @ target
    source_centered = source - source_mean
    target_centered = target - target_mean

    # Weighted cross-covariance (2, 2); its SVD gives the optimal rotation.
    covariance = (target_centered * weights[:, None]).T @ source_centered
    u, singular_values, vt = np.linalg.svd(covariance)
    reflection = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        reflection[1, 1] = -1.0  # keep a proper rotation, never a mirror image
    rotation = u @ reflection @ vt

    source_variance = float(weights @ (source_centered**2).sum(axis=1))
    if source_variance <= 1e-12:
        raise ValueError("landmarks coincide: cannot fit a similarity transform")
    scale = float(np.trace(np.diag(singular_values) @ reflection)) / source_variance

    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - matrix[:, :2] @ source_mean
    return matrix


@dataclass(frozen=True)
class View:
    """A small perturbation of an aligned crop, for test-time augmentation.

    The crop is rotated by `rotation_deg` and scaled by `scale` about its centre, shifted by
    `shift_px` (x, y) and, when `flip` is set, mirrored left to right.
    """

    rotation_deg: float = 0.0
    shift_px: tuple[float, float] = (0.0, 0.0)
    scale: float = 1.0
    flip: bool = False


def perturb_alignment(matrix: np.ndarray, view: View, size: int) -> np.ndarray:
    """Compose a (2, 3) image-to-crop matrix with the view's rotation, scale and shift."""
    angle = np.deg2rad(view.rotation_deg)
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    linear = view.scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = centre + np.asarray(view.shift_px, np.float64) - linear @ centre
    return np.hstack([linear @ matrix[:, :2], (linear @ matrix[:, 2] + offset)[:, None]])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    return np.asarray(points, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Invert a (2, 3) affine matrix."""
    linear_inverse = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear_inverse, (-linear_inverse @ matrix[:, 2])[:, None]])


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp an (H, W, 3) uint8 image with `matrix` (image px -> crop px) to a (size, size, 3) crop.

    Large faces are first shrunk by an integer factor with box filtering, so the bilinear
    warp never skips source pixels (which would alias).
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # crop px per image px
    inverse = invert_affine(matrix)  # crop px -> image px

    # The region of the image the crop covers, with a margin for bilinear sampling.
    corners = transform_points(inverse, np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]]))
    height, width = image.shape[:2]
    x0 = int(max(0, np.floor(corners[:, 0].min()) - 2))
    y0 = int(max(0, np.floor(corners[:, 1].min()) - 2))
    x1 = int(min(width, np.ceil(corners[:, 0].max()) + 3))
    y1 = int(min(height, np.ceil(corners[:, 1].max()) + 3))
    if x1 <= x0 or y1 <= y0:
        return np.zeros((size, size, 3), np.uint8)  # the crop lies wholly outside the image

    region = Image.fromarray(np.ascontiguousarray(image[y0:y1, x0:x1]))
    inverse = inverse.copy()
    inverse[:, 2] -= (x0, y0)  # now crop px -> region px

    reduce_factor = int(np.floor(1.0 / scale)) if scale < 0.5 else 1
    if reduce_factor > 1:
        region = region.reduce(reduce_factor)
        # Pixel k of the reduced image averages source pixels k*f .. k*f+f-1, centred at
        # k*f + (f-1)/2, so x_reduced = (x - (f-1)/2) / f.
        inverse = inverse / reduce_factor
        inverse[:, 2] -= (reduce_factor - 1) / (2 * reduce_factor)

    # PIL samples output pixel i at (i + 0.5) in a frame where pixel centres sit at k + 0.5,
    # so shift the translation to keep centres at integer coordinates.
    a, b, c = inverse[0]
    d, e, f = inverse[1]
    coefficients = (a, b, c + 0.5 - 0.5 * (a + b), d, e, f + 0.5 - 0.5 * (d + e))
    crop = region.transform((size, size), Image.Transform.AFFINE, coefficients, resample=Image.Resampling.BILINEAR)
    return np.asarray(crop)


def align_face(image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate) -> np.ndarray:
    """Cut the aligned (size, size, 3) uint8 crop of one face from its 5 landmarks."""
    matrix = estimate_similarity(landmarks, template.points, template.weights)
    return warp_face(image, matrix, template.size)


def align_face_views(
    image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate, views: tuple[View, ...]
) -> np.ndarray:
    """Cut one crop per view of one face: (K, size, size, 3) uint8."""
    matrix = estimate_similarity(landmarks, template.points, template.weights)
    crops = []
    for view in views:
        crop = warp_face(image, perturb_alignment(matrix, view, template.size), template.size)
        crops.append(crop[:, ::-1] if view.flip else crop)
    return np.ascontiguousarray(np.stack(crops))
