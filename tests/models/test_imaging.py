"""Tests for models.imaging: formats, modes, EXIF orientation, limits and broken inputs.

The sources are real photos from the shared face folder. Every derived file (re-encoded,
rotated, truncated, crafted headers) is built in memory or in tmp_path at test time.
"""

from __future__ import annotations

import io
import pathlib
import random
import struct
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image, ImageOps

from models.errors import (
    CorruptImageError,
    EmptyImageError,
    FacegateError,
    ImageError,
    ImagePixelLimitError,
    ImageTooLargeError,
    UnsupportedImageFormatError,
)
from models.imaging import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    decode_image,
    load_image,
    sniff_format,
)

LFW_PHOTO = pathlib.Path("lfw/lfw-deepfunneled/Aaron_Eckhart/Aaron_Eckhart_0001.jpg")
ORL_PHOTO = pathlib.Path("orl/s1/1.pgm")
ASTRONAUT_PHOTO = pathlib.Path("no_face_and_misc/astronaut.png")

# Pillow's save format name for each decoder format name.
PILLOW_SAVE_FORMATS = {
    "JPEG": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "BMP": "BMP",
    "TIFF": "TIFF",
    "GIF": "GIF",
    "HEIF": "HEIF",
    "PNM": "PPM",
}
LOSSLESS_FORMATS = ("PNG", "BMP", "TIFF", "PNM")
# Mean absolute error (0..255 scale) allowed for lossy formats on a 96x80 crop with sharp
# edges. The measured errors were 2.7 to 3.5 (JPEG and WebP at quality 95, GIF, HEIF).
LOSSY_MEAN_ABS_ERROR = 6.0


# helpers


def encode(image: Image.Image, pillow_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **options)
    return buffer.getvalue()


def mean_abs_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual.astype(np.int32) - expected.astype(np.int32)).mean())


def png_chunk(chunk_type: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(chunk_type + payload)
    return struct.pack(">I", len(payload)) + chunk_type + payload + struct.pack(">I", crc)


def png_header(width: int, height: int, bit_depth: int) -> bytes:
    """PNG signature and IHDR chunk of a grey image (color type 0, no interlace)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)


def png_black_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG, compressed row by row so that building it needs little memory."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then width bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return png_header(width, height, 1) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG with a valid IHDR and a 2-byte IDAT: decoding its pixel data fails."""
    return png_header(width, height, 8) + png_chunk(b"IDAT", b"\x78\x9c")


def grey_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[:, :, np.newaxis], 3, axis=2)


# fixtures


@pytest.fixture(scope="module")
def photo(faces_dir: pathlib.Path) -> Image.Image:
    """A 96x80 RGB face crop of an LFW photo; sides are multiples of 16 to match JPEG blocks."""
    with Image.open(faces_dir / LFW_PHOTO) as image:
        return image.convert("RGB").crop((77, 85, 173, 165))


@pytest.fixture(scope="module")
def photo_rgb(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo)  # (80, 96, 3)


@pytest.fixture(scope="module")
def photo_grey(photo: Image.Image) -> np.ndarray:
    return np.asarray(photo.convert("L"))  # (80, 96)


@pytest.fixture(scope="module")
def encoded(photo: Image.Image) -> dict[str, bytes]:
    """The photo crop encoded in every supported format."""
    options: dict[str, dict[str, object]] = {
        "JPEG": {"quality": 95},
        "WEBP": {"quality": 95},
        "HEIF": {"quality": 95},
    }
    return {
        name: encode(photo, PILLOW_SAVE_FORMATS[name], **options.get(name, {}))
        for name in SUPPORTED_FORMATS
    }


# sniff_format


@pytest.mark.parametrize("image_format", SUPPORTED_FORMATS)
def test_sniff_format_magic_bytes(encoded: dict[str, bytes], image_format: str) -> None:
    assert sniff_format(encoded[image_format]) == image_format


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is not an image\n",
        b"https://example.com/a.jpg",
        b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n",
        b"BMW is a car maker",
        b"P5",
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        # AVIF shares the ISO-BMFF container and the 'mif1' brand with HEIF.
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
        b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf",
    ],
)
def test_sniff_format_non_images(data: bytes) -> None:
    assert sniff_format(data) is None


# decode_image and load_image on real photos and every format


def test_load_image_real_jpeg(faces_dir: pathlib.Path) -> None:
    array = load_image(faces_dir / LFW_PHOTO)
    with Image.open(faces_dir / LFW_PHOTO) as image:
        expected = np.asarray(image.convert("RGB"))

    assert array.shape == (250, 250, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    assert array.flags.writeable
    assert np.array_equal(array, expected)


def test_load_image_real_png(faces_dir: pathlib.Path) -> None:
    array = load_image(faces_dir / ASTRONAUT_PHOTO)

    assert array.shape == (512, 512, 3)
    assert array.dtype == np.uint8


def test_load_image_orl_pgm(faces_dir: pathlib.Path) -> None:
    array = load_image(faces_dir / ORL_PHOTO)
    with Image.open(faces_dir / ORL_PHOTO) as image:
        expected = np.asarray(image)

    assert array.shape == (112, 92, 3)
    assert np.array_equal(array, grey_rgb(expected))


@pytest.mark.parametrize("image_format", SUPPORTED_FORMATS)
def test_decode_image_every_format(
    encoded: dict[str, bytes], photo_rgb: np.ndarray, image_format: str
) -> None:
    array = decode_image(encoded[image_format])

    assert array.shape == (80, 96, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    if image_format in LOSSLESS_FORMATS:
        assert np.array_equal(array, photo_rgb)
    else:
        assert mean_abs_error(array, photo_rgb) < LOSSY_MEAN_ABS_ERROR


def test_decode_image_lossless_webp(photo: Image.Image, photo_rgb: np.ndarray) -> None:
    array = decode_image(encode(photo, "WEBP", lossless=True))

    assert np.array_equal(array, photo_rgb)


def test_load_image_webp_named_jpg(
    encoded: dict[str, bytes], photo_rgb: np.ndarray, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "portrait.jpg"
    path.write_bytes(encoded["WEBP"])

    array = load_image(path)

    assert array.shape == (80, 96, 3)
    assert mean_abs_error(array, photo_rgb) < LOSSY_MEAN_ABS_ERROR


def test_load_image_accepts_str_path(encoded: dict[str, bytes], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "portrait.png"
    path.write_bytes(encoded["PNG"])

    assert load_image(str(path)).shape == (80, 96, 3)


def test_load_image_missing_file(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")


def test_decode_image_bytes_like_input(encoded: dict[str, bytes]) -> None:
    expected = decode_image(encoded["PNG"])

    assert np.array_equal(decode_image(bytearray(encoded["PNG"])), expected)
    assert np.array_equal(decode_image(memoryview(encoded["PNG"])), expected)


def test_decode_image_rejects_str() -> None:
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        decode_image("portrait.jpg")  # type: ignore[arg-type]


@pytest.mark.parametrize("pillow_format", ["GIF", "WEBP", "TIFF"])
def test_decode_image_first_frame_only(photo: Image.Image, pillow_format: str) -> None:
    red = Image.new("RGB", photo.size, (255, 0, 0))
    blue = Image.new("RGB", photo.size, (0, 0, 255))
    data = encode(red, pillow_format, save_all=True, append_images=[blue, photo], lossless=True)
    with Image.open(io.BytesIO(data)) as image:
        assert getattr(image, "n_frames", 1) == 3  # the file really has three frames

    array = decode_image(data)

    assert array.shape == (80, 96, 3)
    assert np.array_equal(array[0, 0], [255, 0, 0])
    assert np.array_equal(array[-1, -1], [255, 0, 0])


# modes


def _mode_case_image(photo: Image.Image, mode: str) -> Image.Image:
    """The photo crop in Pillow `mode`, with an opaque alpha channel where the mode has one."""
    grey = np.asarray(photo.convert("L"))
    if mode in ("1", "L", "P", "CMYK", "YCbCr", "LAB"):
        return photo.convert(mode) if mode != "P" else photo.quantize(64)
    if mode == "LA":
        return photo.convert("LA")
    if mode == "PA":
        return photo.quantize(64).convert("PA")
    if mode == "RGBA":
        return photo.convert("RGBA")
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257)
    if mode == "I;16B":
        return Image.fromarray((grey.astype(np.uint16) * 257).astype(">u2"))
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257)
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255)
    raise AssertionError(f"no test image for mode {mode}")


# (Pillow mode, Pillow save format, expected result): "grey" is the photo's L channel in all
# three channels, "rgb" the photo, "self" Pillow's own convert("RGB") of the saved image.
MODE_CASES = [
    ("1", "PNG", "self"),
    ("L", "PNG", "grey"),
    ("LA", "PNG", "grey"),
    ("LA", "TIFF", "grey"),
    ("P", "PNG", "self"),
    ("P", "GIF", "self"),
    ("PA", "TIFF", "self"),
    ("RGBA", "PNG", "rgb"),
    ("CMYK", "TIFF", "rgb"),
    ("CMYK", "JPEG", "rgb"),
    ("YCbCr", "TIFF", "rgb"),
    ("LAB", "TIFF", "rgb"),
    ("I;16", "PNG", "grey"),
    ("I;16", "TIFF", "grey"),
    ("I;16B", "TIFF", "grey"),
    ("I", "TIFF", "grey"),
    ("F", "TIFF", "grey"),
]


@pytest.mark.parametrize(("mode", "pillow_format", "expected_kind"), MODE_CASES)
def test_decode_image_mode_to_rgb(
    photo: Image.Image,
    photo_rgb: np.ndarray,
    photo_grey: np.ndarray,
    mode: str,
    pillow_format: str,
    expected_kind: str,
) -> None:
    data = encode(_mode_case_image(photo, mode), pillow_format)
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == mode  # precondition: Pillow opens the saved file in this mode
        self_rgb = np.asarray(reopened.convert("RGB"))

    array = decode_image(data)

    assert array.shape == (80, 96, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    if expected_kind == "grey":
        assert np.array_equal(array, grey_rgb(photo_grey))
    elif expected_kind == "self":
        assert np.array_equal(array, self_rgb)
    elif pillow_format == "JPEG" or mode in ("YCbCr", "LAB"):
        # Lossy coding or a colour-space round trip with 8-bit rounding.
        assert mean_abs_error(array, photo_rgb) < LOSSY_MEAN_ABS_ERROR
    else:
        assert np.array_equal(array, photo_rgb)


def test_decode_image_1bit_black_white(photo: Image.Image) -> None:
    array = decode_image(encode(photo.convert("1"), "PNG"))

    assert set(np.unique(array).tolist()) == {0, 255}


def test_decode_image_16bit_pgm_mode_i(photo: Image.Image, photo_grey: np.ndarray) -> None:
    # Pillow reads a PGM with maxval 65535 as mode I.
    data = encode(_mode_case_image(photo, "I;16"), "PPM")
    with Image.open(io.BytesIO(data)) as reopened:
        assert reopened.mode == "I"

    assert np.array_equal(decode_image(data), grey_rgb(photo_grey))


def test_decode_image_float_0_to_255_range(photo_grey: np.ndarray) -> None:
    data = encode(Image.fromarray(photo_grey.astype(np.float32)), "TIFF")

    assert np.array_equal(decode_image(data), grey_rgb(photo_grey))


# 16-bit and 32-bit scaling on known values


@pytest.mark.parametrize(
    ("dtype", "pillow_format"), [("<u2", "PNG"), ("<u2", "TIFF"), (">u2", "TIFF")]
)
def test_decode_image_16bit_scaling(dtype: str, pillow_format: str) -> None:
    values = np.array([[0, 128, 129, 257, 1000, 32896, 65278, 65535]], dtype=dtype)
    expected = np.array([[0, 0, 1, 1, 4, 128, 254, 255]], dtype=np.uint8)  # round(v / 257)

    array = decode_image(encode(Image.fromarray(values), pillow_format))

    assert np.array_equal(array, grey_rgb(expected))


def test_decode_image_int32_scaling() -> None:
    # Values above 65535 select the int32 range 0..2**31 - 1; negative values become 0.
    values = np.array([[-5, 0, 2**23, 2**29, 2**31 - 1]], dtype=np.int32)
    expected = np.array([[0, 0, 1, 64, 255]], dtype=np.uint8)

    array = decode_image(encode(Image.fromarray(values), "TIFF"))

    assert np.array_equal(array, grey_rgb(expected))


def test_decode_image_float_scaling() -> None:
    normalized = np.array([[0.0, 0.25, 1.0, np.nan]], dtype=np.float32)
    wide = np.array([[-3.0, 100.4, 300.0, np.nan]], dtype=np.float32)

    normalized_array = decode_image(encode(Image.fromarray(normalized), "TIFF"))
    wide_array = decode_image(encode(Image.fromarray(wide), "TIFF"))

    assert np.array_equal(normalized_array, grey_rgb(np.array([[0, 64, 255, 0]], dtype=np.uint8)))
    assert np.array_equal(wide_array, grey_rgb(np.array([[0, 100, 255, 0]], dtype=np.uint8)))


# transparency


def test_decode_image_rgba_transparent_becomes_white(
    photo: Image.Image, photo_rgb: np.ndarray
) -> None:
    rgba = photo.convert("RGBA")
    alpha = np.full((80, 96), 255, dtype=np.uint8)
    alpha[:, :48] = 0
    rgba.putalpha(Image.fromarray(alpha))

    array = decode_image(encode(rgba, "PNG"))

    assert np.all(array[:, :48] == 255)
    assert np.array_equal(array[:, 48:], photo_rgb[:, 48:])


def test_decode_image_rgba_half_alpha_blends_with_white() -> None:
    black_half_alpha = Image.new("RGBA", (8, 8), (0, 0, 0, 128))

    array = decode_image(encode(black_half_alpha, "PNG"))

    assert np.all(np.abs(array.astype(np.int32) - 127) <= 1)  # 255 * (1 - 128 / 255)


@pytest.mark.parametrize(
    ("mode", "pillow_format"), [("LA", "PNG"), ("PA", "TIFF"), ("RGBA", "WEBP"), ("RGBA", "TIFF")]
)
def test_decode_image_alpha_modes_become_white(mode: str, pillow_format: str) -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0)).convert(mode)
    options = {"lossless": True} if pillow_format == "WEBP" else {}

    array = decode_image(encode(transparent, pillow_format, **options))

    assert np.all(array == 255)


@pytest.mark.parametrize("pillow_format", ["PNG", "GIF"])
def test_decode_image_palette_transparency(pillow_format: str) -> None:
    # Palette index 0 is black and transparent, index 1 is opaque red.
    palette_image = Image.new("P", (8, 8), 0)
    palette_image.putpalette([0, 0, 0, 255, 0, 0])
    palette_image.paste(1, (4, 0, 8, 8))

    array = decode_image(encode(palette_image, pillow_format, transparency=0))

    assert np.all(array[:, :4] == 255)
    assert np.all(array[:, 4:] == [255, 0, 0])


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_decode_image_png_transparency_key(mode: str) -> None:
    black = Image.new(mode, (8, 8), 0)
    key: int | tuple[int, int, int] = 0 if mode == "L" else (0, 0, 0)

    array = decode_image(encode(black, "PNG", transparency=key))

    assert np.all(array == 255)


# EXIF orientation


# What a camera stores for each EXIF orientation value, given the upright (H, W, 3) picture;
# the decoder must undo it. Values 5 to 8 swap width and height.
STORED_FOR_ORIENTATION: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda upright: upright,
    2: lambda upright: upright[:, ::-1],  # mirrored left-right
    3: lambda upright: upright[::-1, ::-1],  # rotated 180 degrees
    4: lambda upright: upright[::-1, :],  # mirrored top-bottom
    5: lambda upright: upright.transpose(1, 0, 2),  # mirrored along the main diagonal
    6: lambda upright: np.rot90(upright, k=1),  # stored turned 90 degrees counter-clockwise
    7: lambda upright: upright[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the anti-diagonal
    8: lambda upright: np.rot90(upright, k=-1),  # stored turned 90 degrees clockwise
}


@pytest.mark.parametrize("orientation", sorted(STORED_FOR_ORIENTATION))
def test_decode_image_exif_orientation(photo_rgb: np.ndarray, orientation: int) -> None:
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[orientation](photo_rgb))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes())

    with Image.open(io.BytesIO(data)) as stored_image:
        pillow_upright = np.asarray(ImageOps.exif_transpose(stored_image).convert("RGB"))

    array = decode_image(data)

    assert array.shape == (80, 96, 3)
    assert mean_abs_error(array, photo_rgb) < LOSSY_MEAN_ABS_ERROR
    assert np.array_equal(array, pillow_upright)


def test_decode_image_exif_orientation_not_ignored(photo_rgb: np.ndarray) -> None:
    # Guards the test above: the stored pixels of orientation 3 are far from upright.
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[3](photo_rgb))
    data = encode(Image.fromarray(stored), "JPEG", quality=95)

    assert mean_abs_error(decode_image(data), photo_rgb) > 4 * LOSSY_MEAN_ABS_ERROR


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_decode_image_invalid_orientation_as_stored(
    photo_rgb: np.ndarray, orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(photo_rgb), "PNG", exif=exif.tobytes())

    assert np.array_equal(decode_image(data), photo_rgb)


def test_decode_image_damaged_exif_still_oriented(photo_rgb: np.ndarray) -> None:
    # Tag 0x013D (Predictor, a SHORT) holding the ASCII string "Camera": re-serializing such
    # EXIF raises inside Pillow, which ImageOps.exif_transpose does after transposing.
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x010F] = "Camera"
    damaged_exif = exif.tobytes().replace(b"\x01\x0f\x00\x02", b"\x01\x3d\x00\x02")
    assert damaged_exif != exif.tobytes()
    stored = np.ascontiguousarray(STORED_FOR_ORIENTATION[8](photo_rgb))
    data = encode(Image.fromarray(stored), "PNG", exif=damaged_exif)

    assert np.array_equal(decode_image(data), photo_rgb)


def test_decode_image_unreadable_exif_as_stored(
    photo_rgb: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    data = encode(Image.fromarray(photo_rgb), "PNG", exif=b"Exif\x00\x00not a TIFF header")

    array = decode_image(data)

    assert np.array_equal(array, photo_rgb)
    assert "Ignoring unreadable EXIF data of a PNG image" in caplog.text


# limits


def test_decode_image_byte_limit(encoded: dict[str, bytes]) -> None:
    data = encoded["JPEG"]

    with pytest.raises(ImageTooLargeError) as error:
        decode_image(data, max_bytes=len(data) - 1)

    assert error.value.value == len(data)
    assert f"{len(data) - 1:,} bytes" in str(error.value.hint)
    assert "FACEGATE_MAX_IMAGE_BYTES" in str(error.value.hint)


def test_decode_image_byte_limit_inclusive(encoded: dict[str, bytes]) -> None:
    data = encoded["JPEG"]

    assert decode_image(data, max_bytes=len(data)).shape == (80, 96, 3)


def test_decode_image_default_byte_limit() -> None:
    data = b"\xff\xd8\xff" + bytes(DEFAULT_MAX_BYTES - 2)

    with pytest.raises(ImageTooLargeError) as error:
        decode_image(data)

    assert error.value.value == DEFAULT_MAX_BYTES + 1
    assert "20 MiB" in str(error.value.hint)


def test_load_image_byte_limit(encoded: dict[str, bytes], tmp_path: pathlib.Path) -> None:
    path = tmp_path / "portrait.jpg"
    path.write_bytes(encoded["JPEG"])

    with pytest.raises(ImageTooLargeError) as error:
        load_image(path, max_bytes=100)

    assert error.value.value == len(encoded["JPEG"])


def test_decode_image_pixel_limit(encoded: dict[str, bytes]) -> None:
    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(encoded["JPEG"], max_pixels=96 * 80 - 1)

    assert error.value.value == "96x80"
    assert "7,679 pixels" in str(error.value.hint)
    assert "FACEGATE_MAX_IMAGE_PIXELS" in str(error.value.hint)


def test_decode_image_pixel_limit_inclusive(encoded: dict[str, bytes]) -> None:
    assert decode_image(encoded["JPEG"], max_pixels=96 * 80).shape == (80, 96, 3)


@pytest.mark.parametrize("image_format", SUPPORTED_FORMATS)
def test_decode_image_pixel_limit_every_format(
    encoded: dict[str, bytes], image_format: str
) -> None:
    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(encoded[image_format], max_pixels=1000)

    assert error.value.value == "96x80"


def test_decode_image_png_bomb() -> None:
    # 400 MP of black, about 50 KB compressed: decoding it would need 400 MB as mode 1 -> L.
    bomb = png_black_bomb(20_000, 20_000)
    assert len(bomb) < 100_000

    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(bomb)

    assert error.value.value == "20000x20000"


def test_decode_image_limit_before_decoding() -> None:
    # Only the header is valid; decoding would fail with CorruptImageError, so the pixel
    # limit error shows that no pixel data was read.
    header_only = png_header_only(20_000, 20_000)

    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(header_only)

    assert error.value.value == "20000x20000"


def test_decode_image_bomb_between_pillow_limits() -> None:
    # 100 MP lies between Image.MAX_IMAGE_PIXELS (about 89 MP) and twice that, where
    # Image.open would emit DecompressionBombWarning (an error under this test suite).
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 100_000_000 < 2 * Image.MAX_IMAGE_PIXELS

    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(png_black_bomb(10_000, 10_000))

    assert error.value.value == "10000x10000"


def test_decode_image_limit_above_pillow_limit(
    photo: Image.Image, photo_rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The TIFF loader runs Pillow's bomb check again; with max_pixels above
    # Image.MAX_IMAGE_PIXELS its warning must not escape.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 96 * 80 - 1)

    array = decode_image(encode(photo, "TIFF"), max_pixels=96 * 80)

    assert np.array_equal(array, photo_rgb)


def test_decode_image_pillow_bomb_error_typed(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow raises above 2000 pixels

    with pytest.raises(ImagePixelLimitError) as error:
        decode_image(encode(photo, "TIFF"), max_pixels=10_000)

    assert isinstance(error.value.__cause__, Image.DecompressionBombError)


def test_decode_image_gif_frame_beyond_screen(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The GIF plugin runs Pillow's bomb check while parsing a first frame that is larger
    # than the logical screen (here 1x1 for a 96x80 frame).
    data = bytearray(encode(photo, "GIF"))
    data[6:10] = struct.pack("<HH", 1, 1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)

    with pytest.raises(ImagePixelLimitError):
        decode_image(bytes(data))


def test_decode_image_default_limits() -> None:
    assert DEFAULT_MAX_BYTES == 20 * 1024 * 1024
    assert DEFAULT_MAX_PIXELS == 60_000_000


# broken inputs


def _truncated(image_format: str) -> Callable[[dict[str, bytes]], bytes]:
    return lambda encoded: encoded[image_format][: len(encoded[image_format]) // 2]


def _png_zero_width(encoded: dict[str, bytes]) -> bytes:
    return png_header(0, 80, 8) + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")


def _bmp_zero_height(encoded: dict[str, bytes]) -> bytes:
    data = bytearray(encoded["BMP"])
    data[22:26] = struct.pack("<i", 0)  # biHeight in the BITMAPINFOHEADER
    return bytes(data)


def _gif_zero_screen(encoded: dict[str, bytes]) -> bytes:
    return b"GIF89a" + struct.pack("<HHBBB", 0, 0, 0, 0, 0) + b";"


def _random_bytes(encoded: dict[str, bytes]) -> bytes:
    return random.Random(0).randbytes(4096)


def _default_limit_plus_one(encoded: dict[str, bytes]) -> bytes:
    return encoded["PNG"] + bytes(DEFAULT_MAX_BYTES + 1 - len(encoded["PNG"]))


# (case name, bytes builder, the exact error type)
BROKEN_INPUTS: list[tuple[str, Callable[[dict[str, bytes]], bytes], type[ImageError]]] = [
    ("empty", lambda encoded: b"", EmptyImageError),
    ("text", lambda encoded: b"hello, this is not an image\n", UnsupportedImageFormatError),
    ("random_bytes", _random_bytes, UnsupportedImageFormatError),
    ("url", lambda encoded: b"https://example.com/a.jpg", UnsupportedImageFormatError),
    ("pdf", lambda encoded: b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n", UnsupportedImageFormatError),
    ("html", lambda encoded: b"<!DOCTYPE html><html></html>", UnsupportedImageFormatError),
    ("jpeg_magic_only", lambda encoded: b"\xff\xd8\xff", CorruptImageError),
    ("png_signature_only", lambda encoded: b"\x89PNG\r\n\x1a\n", CorruptImageError),
    ("gif_signature_only", lambda encoded: b"GIF89a", CorruptImageError),
    ("tiff_header_only", lambda encoded: b"II*\x00\x08\x00\x00\x00", CorruptImageError),
    ("png_zero_width", _png_zero_width, CorruptImageError),
    ("bmp_zero_height", _bmp_zero_height, CorruptImageError),
    ("gif_zero_screen", _gif_zero_screen, CorruptImageError),
    *(
        (f"{name.lower()}_truncated_half", _truncated(name), CorruptImageError)
        for name in SUPPORTED_FORMATS
    ),
    ("png_bomb_20000", lambda encoded: png_black_bomb(20_000, 20_000), ImagePixelLimitError),
    (
        "png_header_only_20000",
        lambda encoded: png_header_only(20_000, 20_000),
        ImagePixelLimitError,
    ),
    ("default_byte_limit_plus_one", _default_limit_plus_one, ImageTooLargeError),
]


# Pillow warns (UserWarning) about damaged TIFF tags and EXIF blocks and then reads on; such
# warnings are not errors of decode_image.
PILLOW_METADATA_WARNINGS = "ignore::UserWarning:PIL.*"


@pytest.mark.filterwarnings(PILLOW_METADATA_WARNINGS)
@pytest.mark.parametrize(
    ("builder", "error_type"),
    [(builder, error_type) for _, builder, error_type in BROKEN_INPUTS],
    ids=[name for name, _, _ in BROKEN_INPUTS],
)
def test_decode_image_broken_input(
    encoded: dict[str, bytes],
    builder: Callable[[dict[str, bytes]], bytes],
    error_type: type[ImageError],
) -> None:
    with pytest.raises(error_type) as error:
        decode_image(builder(encoded))

    assert type(error.value) is error_type
    assert error.value.hint


def test_decode_image_unsupported_lists_formats() -> None:
    with pytest.raises(UnsupportedImageFormatError) as error:
        decode_image(b"hello, this is not an image\n")

    for name in SUPPORTED_FORMATS:
        assert name in error.value.message
        assert name in str(error.value.hint)


def test_decode_image_url_hint() -> None:
    with pytest.raises(UnsupportedImageFormatError) as error:
        decode_image(b"https://example.com/a.jpg")

    assert "not its address" in str(error.value.hint)
    assert error.value.value == "first bytes: " + b"https://example.".hex(" ")  # the first 16


def test_decode_image_corrupt_keeps_cause(encoded: dict[str, bytes]) -> None:
    with pytest.raises(CorruptImageError) as error:
        decode_image(encoded["JPEG"][: len(encoded["JPEG"]) // 2])

    assert isinstance(error.value.__cause__, OSError)
    assert error.value.value == "JPEG"


def _mutations(data: bytes, rng: random.Random, count: int) -> list[bytes]:
    """Truncated, byte-flipped and header-damaged copies of `data`."""
    mutated = []
    for _ in range(count):
        copy = bytearray(data)
        operation = rng.choice(("truncate", "flip", "header"))
        if operation == "truncate":
            copy = copy[: rng.randrange(1, len(copy))]
        elif operation == "flip":
            for _ in range(rng.randint(1, 8)):
                copy[rng.randrange(len(copy))] = rng.randrange(256)
        else:
            for _ in range(rng.randint(1, 4)):
                copy[rng.randrange(min(64, len(copy)))] = rng.randrange(256)
        mutated.append(bytes(copy))
    return mutated


@pytest.mark.filterwarnings(PILLOW_METADATA_WARNINGS)
def test_decode_image_raises_only_facegate_errors(encoded: dict[str, bytes]) -> None:
    rng = random.Random(1234)
    cases = [(name, builder(encoded)) for name, builder, _ in BROKEN_INPUTS]
    for image_format, data in encoded.items():
        for i, mutated in enumerate(_mutations(data, rng, 40)):
            cases.append((f"{image_format}_mutation_{i}", mutated))

    escaped = []
    for name, data in cases:
        try:
            array = decode_image(data, max_pixels=1_000_000)
        except FacegateError:
            continue
        except Exception as exc:  # noqa: BLE001 - collects every escape to report them all
            escaped.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        assert array.dtype == np.uint8
        assert array.ndim == 3
        assert array.shape[2] == 3

    assert escaped == []
