"""Tests for the dlib `.dat` reader and the PyTorch rebuild of dlib's face recognition ResNet.

The parity tests compare against dlib itself (the dlib-bin wheel from the dev extra) on real
LFW photos, aligned by dlib's own detector, 5-point shape predictor and get_face_chip.
"""

from __future__ import annotations

import math
import pathlib
from collections import Counter

import numpy as np
import pytest
import torch

from models import dlib_resnet
from models.dlib_format import DlibFormatError, LayerRecord, read_dlib_net
from models.dlib_resnet import (
    EMBEDDING_DIM,
    MEAN_RGB,
    DlibResNet,
    default_weights_path,
    load_dlib_resnet,
    preprocess,
)
from models.errors import FacegateError, ModelWeightsNotFoundError

LFW_DIR = (
    pathlib.Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "data"
    / "faces"
    / "lfw"
    / "lfw-deepfunneled"
)
# Several identities, varied in pose, lighting, age and skin tone; the first photos of each.
PARITY_IDENTITIES = (
    "George_W_Bush",
    "Colin_Powell",
    "Serena_Williams",
    "Gerhard_Schroeder",
    "Jennifer_Lopez",
    "Junichiro_Koizumi",
    "Ariel_Sharon",
)
PHOTOS_PER_IDENTITY = 4
MIN_PARITY_CHIPS = 20


@pytest.fixture(scope="module")
def weights_path() -> pathlib.Path:
    return default_weights_path()


@pytest.fixture(scope="module")
def records(weights_path: pathlib.Path) -> list[LayerRecord]:
    return read_dlib_net(weights_path)


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    return load_dlib_resnet()


# reader


def test_reader_parameter_count(records: list[LayerRecord]) -> None:
    assert sum(record.num_params for record in records) == 5_614_592


def test_reader_layer_counts(records: list[LayerRecord]) -> None:
    counts = Counter(record.kind for record in records)

    assert counts["con"] == 29
    assert counts["affine"] == 29
    assert counts["relu"] == 29
    assert counts["fc"] == 1
    assert counts["add_prev"] == 14
    assert counts["avg_pool"] == 5
    assert counts["max_pool"] == 1
    assert counts["tag_or_skip"] == 22


def test_reader_order_input_to_output(records: list[LayerRecord]) -> None:
    assert records[0].kind == "input"
    assert records[1].kind == "con"
    assert records[1].params["weight"].shape == (32, 3, 7, 7)
    assert records[-2].kind == "fc"
    assert records[-1].kind == "loss_metric"


def test_reader_input_means(records: list[LayerRecord]) -> None:
    hyper = records[0].hyper

    assert hyper["avg_red"] == pytest.approx(122.782, abs=1e-4)
    assert hyper["avg_green"] == pytest.approx(117.001, abs=1e-4)
    assert hyper["avg_blue"] == pytest.approx(104.298, abs=1e-4)
    assert (hyper["nr"], hyper["nc"]) == (150, 150)


def test_reader_loss_and_fc_hyper_parameters(records: list[LayerRecord]) -> None:
    fc, loss = records[-2], records[-1]

    assert fc.params["weight"].shape == (256, 128)
    assert "bias" not in fc.params
    assert loss.hyper["margin"] == pytest.approx(0.04)
    assert loss.hyper["distance_threshold"] == pytest.approx(0.6)


@pytest.mark.parametrize("keep_fraction", [0.0, 1e-5, 0.5, 0.999999])
def test_reader_truncated_file_raises(
    weights_path: pathlib.Path, tmp_path: pathlib.Path, keep_fraction: float
) -> None:
    data = weights_path.read_bytes()
    kept = int(len(data) * keep_fraction)
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[:kept])

    with pytest.raises(DlibFormatError, match=r"at byte offset \d+: expected .*truncated") as caught:
        read_dlib_net(truncated)
    assert caught.value.offset <= kept
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, FacegateError)


def test_reader_trailing_bytes_raise(weights_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    padded = tmp_path / "padded.dat"
    padded.write_bytes(weights_path.read_bytes() + b"\x00")

    with pytest.raises(DlibFormatError, match="expected the end of the file"):
        read_dlib_net(padded)


def test_reader_invalid_layer_name_raises(
    weights_path: pathlib.Path, tmp_path: pathlib.Path, records: list[LayerRecord]
) -> None:
    # Overwrite the first relu's version string ("relu_", 5 bytes after its length).
    relu = next(record for record in records if record.kind == "relu")
    data = bytearray(weights_path.read_bytes())
    data[relu.offset + 2 : relu.offset + 7] = b"relX_"
    broken = tmp_path / "broken.dat"
    broken.write_bytes(bytes(data))

    with pytest.raises(
        DlibFormatError, match=f"at byte offset {relu.offset}: expected one of the layer versions"
    ):
        read_dlib_net(broken)


# A minimal encoder of dlib's primitive encodings, to build a bn_con2 record in a test.


def _encode_int(value: int) -> bytes:
    magnitude = abs(value)
    count = max(1, (magnitude.bit_length() + 7) // 8)
    control = count | (0x80 if value < 0 else 0)
    return bytes([control]) + magnitude.to_bytes(count, "little")


def _encode_real(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    # 53 mantissa bits represent any double exactly.
    return _encode_int(int(mantissa * 2**53)) + _encode_int(exponent - 53)


def _encode_string(value: str) -> bytes:
    return _encode_int(len(value)) + value.encode("latin-1")


def _encode_tensor(array: np.ndarray) -> bytes:
    shape = (array.size, 1, 1, 1)
    header = _encode_int(2) + b"".join(_encode_int(dim) for dim in shape)
    return header + array.astype("<f4").tobytes()


def _encode_alias(shape: tuple[int, int, int, int]) -> bytes:
    return _encode_int(1) + b"".join(_encode_int(dim) for dim in shape)


def _encode_affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    channels = gamma.size
    params = _encode_tensor(np.concatenate([gamma, beta]))
    return _encode_string("affine_") + params + _encode_alias((1, channels, 1, 1)) * 2 + _encode_int(0)


def _encode_bn_con2(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, variance: np.ndarray, eps: float
) -> bytes:
    channels = gamma.size
    empty = _encode_int(2) + _encode_int(0) * 4
    return (
        _encode_string("bn_con2")
        + _encode_tensor(np.concatenate([gamma, beta]))
        + _encode_alias((1, channels, 1, 1)) * 2
        + empty * 2  # means, invstds: batch statistics, unused at inference
        + _encode_tensor(mean)
        + _encode_tensor(variance)
        + _encode_int(1000)  # num_updates
        + _encode_int(1000)  # running_stats_window_size
        + _encode_real(1.0) * 2
        + _encode_real(1.0)
        + _encode_real(0.0)
        + _encode_real(eps)
    )


def test_reader_bn_con2_folds_to_affine(
    weights_path: pathlib.Path, tmp_path: pathlib.Path, records: list[LayerRecord]
) -> None:
    # Replace the stem's affine record by batch norm statistics that fold back to it.
    affine = records[2]
    gamma, beta = affine.params["gamma"], affine.params["beta"]
    encoded = _encode_affine(gamma, beta)
    data = weights_path.read_bytes()
    assert data[affine.offset : affine.offset + len(encoded)] == encoded, "test encoder differs from dlib's"

    rng = np.random.default_rng(0)
    mean = rng.normal(0.0, 1.0, gamma.size).astype(np.float32)
    variance = rng.uniform(0.5, 2.0, gamma.size).astype(np.float32)
    eps = 1e-5
    std = np.sqrt(variance.astype(np.float64) + eps)
    bn_gamma = (gamma * std).astype(np.float32)
    bn_beta = (beta + gamma * mean).astype(np.float32)
    record = _encode_bn_con2(bn_gamma, bn_beta, mean, variance, eps)
    converted = tmp_path / "bn.dat"
    converted.write_bytes(data[: affine.offset] + record + data[affine.offset + len(encoded) :])

    read_back = read_dlib_net(converted)[2]

    assert read_back.kind == "affine"
    assert read_back.name == "bn_con2"
    np.testing.assert_allclose(read_back.params["gamma"], gamma, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(read_back.params["beta"], beta, rtol=1e-5, atol=1e-6)


# weights location


def test_default_weights_path_exists() -> None:
    path = default_weights_path()

    assert path.is_file()
    assert path.stat().st_size == 22_466_066


def test_default_weights_path_missing_package_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlib_resnet, "WEIGHTS_PACKAGE", "facegate_no_such_weights_package")

    with pytest.raises(ModelWeightsNotFoundError, match="pip install face-recognition-models==0.3.0"):
        default_weights_path()


# network


def test_mean_rgb_matches_file(records: list[LayerRecord]) -> None:
    file_means = [records[0].hyper[key] for key in ("avg_red", "avg_green", "avg_blue")]

    assert np.array_equal(np.float32(file_means), np.float32(MEAN_RGB))


def test_preprocess_shape_and_values() -> None:
    chips = np.zeros((2, 150, 150, 3), dtype=np.uint8)
    chips[1] = 255

    tensor = preprocess(chips)

    assert tensor.shape == (2, 3, 150, 150)
    assert tensor.dtype == torch.float32
    assert tensor[0, 0, 0, 0].item() == pytest.approx(-122.782 / 256, abs=1e-6)
    assert tensor[1, 2, 149, 149].item() == pytest.approx((255 - 104.298) / 256, abs=1e-6)


def test_preprocess_rejects_float_input() -> None:
    with pytest.raises(TypeError, match="uint8"):
        preprocess(np.zeros((1, 150, 150, 3), dtype=np.float32))


def test_preprocess_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"\(B, 150, 150, 3\)"):
        preprocess(np.zeros((150, 150, 3), dtype=np.uint8))


def test_forward_shape_and_dtype(model: DlibResNet) -> None:
    x = torch.randn(3, 3, 150, 150, generator=torch.Generator().manual_seed(0))

    with torch.inference_mode():
        out = model(x)

    assert out.shape == (3, EMBEDDING_DIM)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_forward_deterministic(model: DlibResNet) -> None:
    chips = np.random.default_rng(1).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)
    x = preprocess(chips)

    with torch.inference_mode():
        first = model(x)
        second = model(x)

    assert torch.equal(first, second)


def test_forward_batch_matches_single(model: DlibResNet) -> None:
    chips = np.random.default_rng(2).integers(0, 256, (4, 150, 150, 3), dtype=np.uint8)

    with torch.inference_mode():
        batched = model(preprocess(chips))
        singles = torch.cat([model(preprocess(chips[i : i + 1])) for i in range(len(chips))])

    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-5)


def test_load_rejects_truncated_file(weights_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(weights_path.read_bytes()[:1000])

    with pytest.raises(DlibFormatError):
        load_dlib_resnet(truncated)


# parity with dlib


@pytest.fixture(scope="module")
def dlib_chips_and_descriptors() -> tuple[np.ndarray, np.ndarray]:
    """(N, 150, 150, 3) uint8 chips cut by dlib and dlib's (N, 128) descriptors of them."""
    dlib = pytest.importorskip("dlib", reason="dlib (the dlib-bin wheel of the dev extra) is not installed")
    if not LFW_DIR.is_dir():
        pytest.skip(f"LFW photos not found at {LFW_DIR}")

    models_dir = default_weights_path().parent
    detector = dlib.get_frontal_face_detector()
    shape_predictor = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))
    recognizer = dlib.face_recognition_model_v1(str(default_weights_path()))

    chips, descriptors = [], []
    for identity in PARITY_IDENTITIES:
        for photo in sorted((LFW_DIR / identity).glob("*.jpg"))[:PHOTOS_PER_IDENTITY]:
            image = dlib.load_rgb_image(str(photo))
            rects = detector(image, 1)
            if not rects:
                continue
            shape = shape_predictor(image, rects[0])
            chips.append(np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25)))
            # dlib's end-to-end call, which cuts the same chip internally.
            descriptors.append(np.asarray(recognizer.compute_face_descriptor(image, shape)))
    return np.stack(chips), np.stack(descriptors)


def test_parity_with_dlib_on_lfw(
    model: DlibResNet, dlib_chips_and_descriptors: tuple[np.ndarray, np.ndarray]
) -> None:
    chips, expected = dlib_chips_and_descriptors

    with torch.inference_mode():
        ours = model(preprocess(chips)).double().numpy()
    cosine = (ours * expected).sum(axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(expected, axis=1))

    assert len(chips) >= MIN_PARITY_CHIPS
    assert cosine.min() >= 0.9999
    assert np.abs(ours - expected).max() < 1e-4
    # Raw descriptors, like dlib's: not L2-normalised.
    assert np.linalg.norm(ours, axis=1).min() > 1.1
