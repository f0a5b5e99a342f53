"""Detection on real photos: recall on annotated faces, no-face photos, tiny and huge images."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.detector import DetectorConfig, FaceDetector


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


def annotated_faces(faces_dir: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """Hand-labelled boxes of the nine PASCAL VOC photos, as x1, y1, x2, y2."""
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for xml_name in ("training.xml", "testing.xml"):
        root = ElementTree.parse(faces_dir / "dlib_faces" / xml_name).getroot()
        for image in root.iter("image"):
            for box in image.iter("box"):
                if box.get("ignore") == "1":
                    continue
                left, top = float(box.get("left")), float(box.get("top"))
                width, height = float(box.get("width")), float(box.get("height"))
                boxes.setdefault(image.get("file"), []).append((left, top, left + width, top + height))
    return boxes


def test_detector_finds_annotated_faces(detector: FaceDetector, faces_dir: Path) -> None:
    labelled = annotated_faces(faces_dir)
    found = 0
    total = 0
    for file_name, truth in labelled.items():
        detections = detector.detect(load_rgb(faces_dir / "dlib_faces" / file_name))
        for box in truth:
            total += 1
            if any(iou(box, detection.bbox) >= 0.4 for detection in detections):
                found += 1
    assert total == 43
    assert found >= 41, f"found {found} of {total} labelled faces at IoU >= 0.4"


@pytest.mark.parametrize(
    "relative_path",
    [
        "no_face_and_misc/china.jpg",
        "no_face_and_misc/flower.jpg",
        "no_face_and_misc/coffee.png",
        "no_face_and_misc/rocket.jpg",
        "no_face_and_misc/chelsea.png",
        "dlib_faces/dogs.jpg",
    ],
)
def test_detector_no_face_photo(detector: FaceDetector, faces_dir: Path, relative_path: str) -> None:
    detections = detector.detect(load_rgb(faces_dir / relative_path))
    assert detections == [], f"{relative_path}: unexpected faces {[d.bbox for d in detections]}"


def test_detector_multiface_photo(detector: FaceDetector, faces_dir: Path) -> None:
    detections = detector.detect(load_rgb(faces_dir / "facenet_pytorch_test" / "multiface.jpg"))
    assert len(detections) == 6


def test_detector_landmarks_inside_box(detector: FaceDetector, faces_dir: Path) -> None:
    image = load_rgb(faces_dir / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    [detection] = detector.detect(image)
    x1, y1, x2, y2 = detection.bbox
    assert detection.landmarks.shape == (5, 2)
    assert np.all((detection.landmarks[:, 0] > x1) & (detection.landmarks[:, 0] < x2))
    assert np.all((detection.landmarks[:, 1] > y1) & (detection.landmarks[:, 1] < y2))
    assert detection.landmarks[0, 0] < detection.landmarks[1, 0], "left eye must be left of right eye"


def test_detector_one_pixel_image(detector: FaceDetector) -> None:
    assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []


def test_detector_tiny_face_crop(detector: FaceDetector, faces_dir: Path) -> None:
    crops = sorted((faces_dir / "no_face_and_misc" / "skimage_lfw_subset" / "face").glob("*.png"))[:10]
    for path in crops:
        detections = detector.detect(load_rgb(path))  # 25x25: must not raise
        assert isinstance(detections, list)


def test_detector_batch_matches_single(detector: FaceDetector, faces_dir: Path) -> None:
    lfw = faces_dir / "lfw" / "lfw-deepfunneled"
    images = [load_rgb(lfw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"), load_rgb(lfw / "AJ_Cook" / "AJ_Cook_0001.jpg")]
    batched = detector.detect_batch(images)
    for image, batch_result in zip(images, batched):
        single = detector.detect(image)
        assert len(single) == len(batch_result)
        assert np.allclose(single[0].bbox, batch_result[0].bbox, atol=1.0)


def test_detector_downscales_large_photo(detector: FaceDetector, faces_dir: Path) -> None:
    # A 250x250 LFW photo blown up 40x: detection runs on a downscaled copy, boxes come back
    # in the original 10000x10000 frame.
    small = Image.open(faces_dir / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    [reference] = detector.detect(np.asarray(small.convert("RGB")))
    large = np.asarray(small.convert("RGB").resize((10_000, 10_000), Image.Resampling.BILINEAR))
    detections = detector.detect(large)
    assert len(detections) == 1
    expected = tuple(value * 40 for value in reference.bbox)
    assert iou(detections[0].bbox, expected) >= 0.6


def test_detector_boxes_clipped_to_image(faces_dir: Path) -> None:
    # Crop a face in half: MTCNN's box extends past the edge and must be clipped.
    image = load_rgb(faces_dir / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    half = np.ascontiguousarray(image[:, :125])
    detector = FaceDetector(DetectorConfig())
    for detection in detector.detect(half):
        x1, y1, x2, y2 = detection.bbox
        assert 0 <= x1 < x2 <= half.shape[1]
        assert 0 <= y1 < y2 <= half.shape[0]
