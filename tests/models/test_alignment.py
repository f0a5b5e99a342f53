"""Similarity fitting and warping: known transforms are recovered, landmarks land on the template."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.alignment import (
    DLIB_CHIP_150,
    FACENET_160,
    View,
    align_face,
    align_face_views,
    estimate_similarity,
    invert_affine,
    perturb_alignment,
    transform_points,
    warp_face,
)


def similarity_matrix(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    angle = math.radians(angle_deg)
    return np.array(
        [
            [scale * math.cos(angle), -scale * math.sin(angle), tx],
            [scale * math.sin(angle), scale * math.cos(angle), ty],
        ]
    )


@pytest.mark.parametrize("scale, angle_deg", [(1.0, 0.0), (0.5, 30.0), (2.5, -75.0), (0.1, 179.0)])
def test_estimate_similarity_recovers_transform(scale: float, angle_deg: float) -> None:
    source = np.array([[10, 20], [50, 22], [30, 45], [15, 70], [48, 68]], dtype=np.float64)
    expected = similarity_matrix(scale, angle_deg, 12.0, -7.0)
    fitted = estimate_similarity(source, transform_points(expected, source))
    assert np.allclose(fitted, expected, atol=1e-9)


def test_estimate_similarity_weights_ignore_outlier() -> None:
    source = np.array([[10, 20], [50, 22], [30, 45], [15, 70], [48, 68]], dtype=np.float64)
    expected = similarity_matrix(1.2, 10.0, 3.0, 4.0)
    target = transform_points(expected, source)
    target[4] += (25.0, -40.0)  # a badly placed landmark
    fitted = estimate_similarity(source, target, np.array([1.0, 1.0, 1.0, 1.0, 0.0]))
    assert np.allclose(fitted, expected, atol=1e-9)


def test_estimate_similarity_never_mirrors() -> None:
    source = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float64)
    mirrored = source * np.array([-1, 1])
    fitted = estimate_similarity(source, mirrored)
    assert np.linalg.det(fitted[:, :2]) > 0


def test_estimate_similarity_coincident_points_raise() -> None:
    with pytest.raises(ValueError, match="coincide"):
        estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))


def test_invert_affine_round_trip() -> None:
    matrix = similarity_matrix(1.7, 23.0, 4.0, 9.0)
    points = np.array([[3.0, 4.0], [100.0, -2.0]])
    back = transform_points(invert_affine(matrix), transform_points(matrix, points))
    assert np.allclose(back, points)


def dotted_image(points: np.ndarray, size: tuple[int, int] = (400, 300)) -> np.ndarray:
    """A black image with a 3x3 white dot centred on each point (pixel centres at integers)."""
    image = np.zeros((size[1], size[0], 3), np.uint8)
    for x, y in np.round(points).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


def dot_centroid(crop: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    x, y = np.round(near).astype(int)
    window = crop[y - radius : y + radius + 1, x - radius : x + radius + 1, 0].astype(np.float64)
    ys, xs = np.mgrid[y - radius : y + radius + 1, x - radius : x + radius + 1]
    return np.array([(xs * window).sum() / window.sum(), (ys * window).sum() / window.sum()])


@pytest.mark.parametrize("template", [DLIB_CHIP_150, FACENET_160], ids=lambda t: t.name)
@pytest.mark.parametrize("scale, angle_deg", [(1.0, 0.0), (1.3, 20.0), (0.8, -35.0)])
def test_align_face_puts_landmarks_on_template(template, scale: float, angle_deg: float) -> None:
    # Place the template's points in a larger image under a known similarity, then align back.
    to_image = similarity_matrix(scale, angle_deg, 120.0, 60.0)
    landmarks = np.round(transform_points(to_image, template.points))
    crop = align_face(dotted_image(landmarks), landmarks, template)
    assert crop.shape == (template.size, template.size, 3)
    expected = transform_points(estimate_similarity(landmarks, template.points, template.weights), landmarks)
    for point in expected:
        assert np.allclose(dot_centroid(crop, point), point, atol=0.35), f"dot not at {point}"


def test_warp_face_large_face_is_reduced_without_shift() -> None:
    # A 6x downscale goes through the integer box reduction; the dot must stay in place.
    landmarks = np.array([[600.0, 600.0], [900.0, 600.0], [750.0, 780.0], [630.0, 930.0], [870.0, 930.0]])
    image = np.zeros((1500, 1500, 3), np.uint8)
    for x, y in landmarks.astype(int):
        image[y - 6 : y + 7, x - 6 : x + 7] = 255
    matrix = estimate_similarity(landmarks, DLIB_CHIP_150.points)
    crop = warp_face(image, matrix, 150)
    for point in transform_points(matrix, landmarks):
        assert np.allclose(dot_centroid(crop, point, radius=4), point, atol=0.4)


def test_warp_face_outside_image_is_black() -> None:
    image = np.full((50, 50, 3), 200, np.uint8)
    matrix = similarity_matrix(1.0, 0.0, -5000.0, -5000.0)
    assert not warp_face(image, matrix, 150).any()


def test_perturb_alignment_identity_view_unchanged() -> None:
    matrix = similarity_matrix(1.3, 12.0, 5.0, -3.0)
    assert np.allclose(perturb_alignment(matrix, View(), 150), matrix)


def test_perturb_alignment_rotates_about_centre() -> None:
    identity = similarity_matrix(1.0, 0.0, 0.0, 0.0)
    rotated = perturb_alignment(identity, View(rotation_deg=90.0), 151)
    centre = np.array([[75.0, 75.0]])
    assert np.allclose(transform_points(rotated, centre), centre)
    assert np.allclose(transform_points(rotated, np.array([[85.0, 75.0]])), [[75.0, 85.0]])


def test_perturb_alignment_shift_and_scale() -> None:
    identity = similarity_matrix(1.0, 0.0, 0.0, 0.0)
    moved = perturb_alignment(identity, View(shift_px=(2.0, -1.0), scale=2.0), 101)
    assert np.allclose(transform_points(moved, np.array([[50.0, 50.0]])), [[52.0, 49.0]])
    assert np.allclose(transform_points(moved, np.array([[60.0, 50.0]])), [[72.0, 49.0]])


def test_align_face_views_flip_mirrors_crop() -> None:
    landmarks = np.round(transform_points(similarity_matrix(1.0, 0.0, 120.0, 60.0), DLIB_CHIP_150.points))
    image = dotted_image(landmarks)
    views = align_face_views(image, landmarks, DLIB_CHIP_150, (View(), View(flip=True)))
    assert views.shape == (2, 150, 150, 3)
    assert np.array_equal(views[1], views[0][:, ::-1])
