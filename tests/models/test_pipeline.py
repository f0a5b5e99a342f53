"""The whole pipeline on real photos: embeddings, matching, crops, huge and tiny images, CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.errors import ImagePixelLimitError
from models.imaging import decode_image, load_image
from models.pipeline import FacePipeline, resolve_device

REPO_ROOT = Path(__file__).resolve().parents[2]


def lfw_photo(faces_dir: Path, name: str, number: int) -> Path:
    return faces_dir / "lfw" / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"


def test_pipeline_embeddings_unit_norm(pipeline: FacePipeline, faces_dir: Path) -> None:
    analysis = pipeline.analyze(load_image(lfw_photo(faces_dir, "Colin_Powell", 1)))
    embedding = analysis.faces[0].embedding
    assert embedding.shape == (128,)
    assert embedding.dtype == np.float32
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-5


def test_pipeline_same_person_more_similar(pipeline: FacePipeline, faces_dir: Path) -> None:
    def embed(name: str, number: int) -> np.ndarray:
        return pipeline.analyze(load_image(lfw_photo(faces_dir, name, number))).faces[0].embedding

    anchor = embed("Colin_Powell", 1)
    same = float(anchor @ embed("Colin_Powell", 2))
    other = float(anchor @ embed("Tony_Blair", 1))
    assert same >= pipeline.embedder.threshold
    assert other < pipeline.embedder.threshold


def test_pipeline_same_image_same_embedding(pipeline: FacePipeline, faces_dir: Path) -> None:
    image = load_image(lfw_photo(faces_dir, "Tony_Blair", 3))
    first = pipeline.analyze(image).faces[0].embedding
    second = pipeline.analyze(image).faces[0].embedding
    assert float(first @ second) > 0.99999


def test_pipeline_keeps_crops_on_request(pipeline: FacePipeline, faces_dir: Path) -> None:
    image = load_image(lfw_photo(faces_dir, "Tony_Blair", 3))
    assert pipeline.analyze(image).faces[0].crop is None
    crop = pipeline.analyze(image, keep_crops=True).faces[0].crop
    assert crop.shape == (150, 150, 3)
    assert crop.dtype == np.uint8


def test_pipeline_multiface_largest_first(pipeline: FacePipeline, faces_dir: Path) -> None:
    analysis = pipeline.analyze(load_image(faces_dir / "facenet_pytorch_test" / "multiface.jpg"))
    areas = [face.detection.area_px for face in analysis.faces]
    assert len(areas) == 6
    assert areas == sorted(areas, reverse=True)


def test_pipeline_max_faces(pipeline: FacePipeline, faces_dir: Path) -> None:
    analysis = pipeline.analyze(load_image(faces_dir / "facenet_pytorch_test" / "multiface.jpg"), max_faces=2)
    assert len(analysis.faces) == 2


def test_pipeline_no_face_photo(pipeline: FacePipeline, faces_dir: Path) -> None:
    analysis = pipeline.analyze(load_image(faces_dir / "no_face_and_misc" / "flower.jpg"))
    assert analysis.faces == []


def test_pipeline_one_pixel_image(pipeline: FacePipeline) -> None:
    assert pipeline.analyze(np.zeros((1, 1, 3), np.uint8)).faces == []


def test_pipeline_tiny_face_crop(pipeline: FacePipeline, faces_dir: Path) -> None:
    # 25x25 grey LFW crops: smaller than most detectors' minimum; must not raise.
    for path in sorted((faces_dir / "no_face_and_misc" / "skimage_lfw_subset" / "face").glob("*.png"))[:5]:
        analysis = pipeline.analyze(load_image(path))
        for face in analysis.faces:
            assert face.embedding.shape == (128,)


def test_pipeline_quality_flags_blur(pipeline: FacePipeline, faces_dir: Path) -> None:
    from PIL import ImageFilter

    photo = Image.open(lfw_photo(faces_dir, "Colin_Powell", 1)).convert("RGB")
    blurred = np.asarray(photo.filter(ImageFilter.GaussianBlur(3)))
    faces = pipeline.analyze(blurred).faces
    assert faces, "the blurred face should still be detected"
    assert any("blurred" in reason for reason in faces[0].quality.reasons)


@pytest.fixture(scope="module")
def huge_photo(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 10000x10000 JPEG: one LFW photo enlarged 40x."""
    photo = Image.open(lfw_photo(faces_dir, "Colin_Powell", 1)).convert("RGB")
    path = tmp_path_factory.mktemp("huge") / "huge.jpg"
    photo.resize((10_000, 10_000), Image.Resampling.BILINEAR).save(path, quality=85)
    return path.read_bytes()


def test_pipeline_huge_photo_over_pixel_limit_rejected(huge_photo: bytes) -> None:
    with pytest.raises(ImagePixelLimitError):
        decode_image(huge_photo, max_pixels=60_000_000)


def test_pipeline_huge_photo_processed_when_allowed(
    pipeline: FacePipeline, huge_photo: bytes, faces_dir: Path
) -> None:
    image = decode_image(huge_photo, max_bytes=len(huge_photo), max_pixels=100_000_000)
    analysis = pipeline.analyze(image)
    reference = pipeline.analyze(load_image(lfw_photo(faces_dir, "Colin_Powell", 1))).faces[0].embedding
    assert len(analysis.faces) == 1
    assert float(analysis.faces[0].embedding @ reference) > 0.95


def test_pipeline_rejects_non_rgb_array(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        pipeline.analyze(np.zeros((10, 10), np.uint8))


def test_resolve_device_cuda_unavailable() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available on this machine")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )


def test_cli_embed_prints_json(faces_dir: Path) -> None:
    completed = run_cli("embed", "--device", "cpu", str(lfw_photo(faces_dir, "Colin_Powell", 1)))
    assert completed.returncode == 0, completed.stderr
    output = json.loads(completed.stdout)
    assert output["embedder"] == "dlib-resnet"
    assert len(output["images"][0]["faces"][0]["embedding"]) == 128


def test_cli_detect_reports_bad_file(faces_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    completed = run_cli("detect", "--device", "cpu", str(faces_dir / "facenet_pytorch_test" / "multiface.jpg"), str(broken))
    output = json.loads(completed.stdout)
    assert completed.returncode == 1
    assert len(output["images"][0]["faces"]) == 6
    assert output["images"][1]["error"]["code"] == "unsupported-image-format"


def test_pipeline_test_time_views_close_to_single_crop(pipeline: FacePipeline, faces_dir: Path) -> None:
    from models.pipeline import PipelineConfig

    single_crop = FacePipeline(PipelineConfig(device="cpu", test_time_augmentation=False))
    image = load_image(lfw_photo(faces_dir, "Tony_Blair", 3))
    averaged = pipeline.analyze(image).faces[0].embedding
    plain = single_crop.analyze(image).faces[0].embedding
    assert len(pipeline.embedder.views) == 4
    assert abs(float(np.linalg.norm(averaged)) - 1.0) < 1e-5
    assert 0.98 < float(averaged @ plain) < 0.99999


def test_embed_views_rejects_wrong_shape(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="views of shape"):
        pipeline.embedder.embed_views(np.zeros((2, 150, 150, 3), np.uint8))


def test_embed_views_single_view_equals_embed(pipeline: FacePipeline) -> None:
    crops = np.random.default_rng(1).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    direct = pipeline.embedder.embed(crops)
    through_views = pipeline.embedder.embed_views(crops[:, None])
    assert np.allclose(direct, through_views, atol=1e-5)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_pipeline_exif_orientation_same_face(
    pipeline: FacePipeline, faces_dir: Path, orientation: int
) -> None:
    from tests.models.test_imaging import STORED_FOR_ORIENTATION

    upright = load_image(lfw_photo(faces_dir, "Colin_Powell", 1))
    reference = pipeline.analyze(upright).faces[0]
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif.tobytes())

    # JPEG re-encoding of the turned pixels moves the box by a few px on a ~90 px face.
    [face] = pipeline.analyze(decode_image(buffer.getvalue())).faces
    assert np.allclose(face.bbox, reference.bbox, atol=6.0)
    assert float(face.embedding @ reference.embedding) > 0.99
