"""Decode image bytes into 8-bit RGB arrays, shared by the service and training.

`decode_image` takes the encoded bytes and returns an (H, W, 3) uint8 array:

1. check the byte count (`max_bytes`),
2. sniff the format from the magic bytes, never from a file name or a declared MIME type,
3. parse only the header with that format's Pillow plugin and check width * height
   (`max_pixels`) before any pixel data is decoded,
4. decode the first frame (GIF, WebP, TIFF, HEIF may hold more),
5. apply the EXIF orientation,
6. convert any Pillow mode to 8-bit RGB, compositing transparency on white.

Every problem with the content raises a subclass of `models.errors.ImageError`. Exceptions
raised inside Pillow or pillow-heif are re-raised as `CorruptImageError` or
`ImagePixelLimitError`, with the original as `__cause__`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import pillow_heif
from PIL import (
    BmpImagePlugin,
    ExifTags,
    GifImagePlugin,
    Image,
    ImageFile,
    JpegImagePlugin,
    PngImagePlugin,
    PpmImagePlugin,
    TiffImagePlugin,
    WebPImagePlugin,
)

from models.errors import (
    CorruptImageError,
    EmptyImageError,
    ImagePixelLimitError,
    ImageTooLargeError,
    UnsupportedImageFormatError,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES: int = 20 * 1024 * 1024  # 20 MiB of encoded data
DEFAULT_MAX_PIXELS: int = 60_000_000  # 60 MP decoded (width * height)

# Format names as they appear in error messages. PNM covers the Netpbm PBM, PGM and PPM files,
# which the ORL face data set uses.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "HEIF", "PNM")

# Registers HEIF with Pillow's Image.open and Image.save for the rest of the process as well;
# registering again only rewrites the same registry entries.
pillow_heif.register_heif_opener()

# The plugin class that parses each sniffed format. Instantiating it reads only the header,
# unlike Image.open, which also runs Pillow's decompression-bomb check before the caller can
# see the size (see _open_header). JpegImageFile reads an MPO (multi-picture JPEG) as its
# first picture.
_PLUGIN_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "JPEG": JpegImagePlugin.JpegImageFile,
    "PNG": PngImagePlugin.PngImageFile,
    "WEBP": WebPImagePlugin.WebPImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
    "GIF": GifImagePlugin.GifImageFile,
    "HEIF": pillow_heif.HeifImageFile,
    "PNM": PpmImagePlugin.PpmImageFile,
}

# Exceptions that Pillow and pillow-heif raise on damaged or truncated content. Pillow turns
# parser errors (IndexError, KeyError, struct.error, ...) into SyntaxError while reading the
# header and into OSError while decoding. pillow-heif raises ValueError, EOFError and, for
# libheif errors such as its security limits, RuntimeError. Fuzzing all plugins above with
# truncated and byte-flipped files (Pillow 13, pillow-heif 1.9, about 100,000 cases) produced
# no other types.
_PILLOW_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    RuntimeError,
)

# DIB header sizes after the 14-byte BMP file header that Pillow's BMP plugin reads.
_BMP_INFO_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# ISO-BMFF brands of HEVC-coded HEIF (as pillow-heif accepts them) and of AVIF, which shares
# the generic 'mif1' and 'msf1' brands but contains AV1 data that is not a supported format here.
_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
_HEVC_BRANDS = _HEIF_BRANDS - {b"mif1", b"msf1"}
_AVIF_BRANDS = frozenset({b"avif", b"avis"})

# The transpose that turns the stored pixels upright for each value of the EXIF orientation
# tag (0x0112); 1 means upright already. The table is the one in Pillow's
# ImageOps.exif_transpose, which is not called because after transposing it re-serializes the
# EXIF block without the tag, and that raises struct.error or TypeError on damaged tag values
# (found by fuzzing Pillow 13). The array output needs no metadata.
_ORIENTATION_TRANSPOSES: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Serializes warnings.catch_warnings below: it swaps the process-wide filter list, so on
# Python < 3.14 two threads inside it at once can restore each other's lists and leave a
# filter behind. NOTE: the lock covers only this module; another thread that enters
# catch_warnings elsewhere at the same time can still race with it.
_WARNINGS_LOCK = threading.Lock()


def sniff_format(data: bytes) -> str | None:
    """Return the format name from SUPPORTED_FORMATS that the magic bytes show, or None."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[0:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[0:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    # Classic TIFF (42) and BigTIFF (43), little- and big-endian.
    if head[0:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    # "BM" alone starts plenty of text, so the DIB header size must be valid too.
    if head[0:2] == b"BM" and len(head) >= 18:
        if int.from_bytes(head[14:18], "little") in _BMP_INFO_HEADER_SIZES:
            return "BMP"
    if head[4:8] == b"ftyp" and _is_heif_file_type(data):
        return "HEIF"
    # Netpbm: "P1" to "P6" followed by whitespace.
    if head[0:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6") and head[2:3].isspace():
        return "PNM"
    return None


def _is_heif_file_type(data: bytes) -> bool:
    """Check the ISO-BMFF 'ftyp' box: a HEIF major brand, and no AVIF-only brand set."""
    box_size = int.from_bytes(data[0:4], "big")
    major_brand = bytes(data[8:12])
    if major_brand not in _HEIF_BRANDS:
        return False
    # Compatible brands follow the major brand and the 4-byte minor version.
    box_end = min(box_size, len(data), 4096)
    brands = {major_brand} | {bytes(data[i : i + 4]) for i in range(16, box_end - 3, 4)}
    return not (brands & _AVIF_BRANDS) or bool(brands & _HEVC_BRANDS)


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode encoded image bytes into an upright 8-bit RGB array.

    Args:
        data: the encoded file content (bytes, bytearray or memoryview).
        max_bytes: the maximum accepted len(data).
        max_pixels: the maximum width * height, checked on the header before decoding.

    Returns:
        A writable, C-contiguous (H, W, 3) uint8 array in RGB order, with the EXIF
        orientation applied and transparent pixels composited on white.

    Raises:
        EmptyImageError: data is empty.
        ImageTooLargeError: len(data) > max_bytes.
        UnsupportedImageFormatError: the content matches none of SUPPORTED_FORMATS.
        ImagePixelLimitError: width * height > max_pixels.
        CorruptImageError: the content is truncated or damaged.
        TypeError: data is not bytes-like.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise EmptyImageError(
            "Image is empty (0 bytes).",
            value=0,
            hint=f"Send the content of an image file ({', '.join(SUPPORTED_FORMATS)}).",
        )
    if len(data) > max_bytes:
        raise ImageTooLargeError(
            f"Image is {len(data):,} bytes, more than the limit of {max_bytes:,} bytes.",
            value=len(data),
            hint=f"Send at most {max_bytes:,} bytes ({max_bytes / 2**20:g} MiB), for example "
            "by downscaling the image or re-encoding it as JPEG, or raise the limit with the "
            "setting FACEGATE_MAX_IMAGE_BYTES.",
        )

    image_format = sniff_format(data)
    if image_format is None:
        raise _unsupported_format_error(data)

    image = _open_header(data, image_format)
    try:
        _check_pixel_limit(image.size, max_pixels)
        _load_pixels(image, image_format, max_pixels)
        # pillow-heif takes the size from the decoded data, which can differ from the header.
        _check_pixel_limit(image.size, max_pixels)
        upright = _apply_exif_orientation(image, image_format)
        return _to_rgb_array(upright)
    finally:
        image.close()


def load_image(
    path: str | os.PathLike[str],
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read an image file and decode it with decode_image; the file name plays no part.

    Raises the errors of decode_image, and OSError (for example FileNotFoundError) when
    the file cannot be read.
    """
    with open(path, "rb") as file:
        # Reading one byte past the limit bounds memory for huge files; the error reports
        # the real file size.
        data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            file_size = os.fstat(file.fileno()).st_size
            raise ImageTooLargeError(
                f"Image file {os.fspath(path)!r} is {file_size:,} bytes, "
                f"more than the limit of {max_bytes:,} bytes.",
                value=file_size,
                hint=f"Use a file of at most {max_bytes:,} bytes ({max_bytes / 2**20:g} MiB), "
                "for example by downscaling the image or re-encoding it as JPEG.",
            )
    return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels)


# decoding steps


def _unsupported_format_error(data: bytes) -> UnsupportedImageFormatError:
    head = bytes(data[:16])
    if head.lower().startswith((b"http://", b"https://")):
        hint = "The content is a URL; send the image file content, not its address."
    else:
        hint = f"Send a {', '.join(SUPPORTED_FORMATS[:-1])} or {SUPPORTED_FORMATS[-1]} file."
    return UnsupportedImageFormatError(
        f"Unsupported image format: the content is not {', '.join(SUPPORTED_FORMATS[:-1])} "
        f"or {SUPPORTED_FORMATS[-1]}.",
        value=f"first bytes: {head.hex(' ')}",
        hint=hint,
    )


@contextlib.contextmanager
def _pillow_bomb_warning_ignored() -> Iterator[None]:
    """Ignore Pillow's DecompressionBombWarning inside the block, one thread at a time."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def _open_header(data: bytes, image_format: str) -> ImageFile.ImageFile:
    """Parse the header of `data` with the plugin for `image_format`; no pixel data is decoded."""
    plugin_class = _PLUGIN_CLASSES[image_format]
    # Pillow's own decompression-bomb check (Image.MAX_IMAGE_PIXELS, about 89 MP: a warning
    # above it, DecompressionBombError above twice that) runs inside Image.open before the
    # size is known to the caller. The plugin class skips that check, so that the
    # ImagePixelLimitError below reports the header size. Image.MAX_IMAGE_PIXELS stays as it
    # is because it is process-wide and other code relies on it. The GIF plugin still runs the
    # check while parsing a first frame that is larger than the logical screen, hence the
    # warnings filter here.
    try:
        with _pillow_bomb_warning_ignored():
            return plugin_class(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb_error(exc) from exc
    except _PILLOW_ERRORS as exc:
        raise CorruptImageError(
            f"Cannot read the {image_format} header: {_sentence(exc)}",
            value=image_format,
            hint="The file is truncated or damaged, or its header gives an invalid size "
            "(such as zero width or height); send an intact file.",
        ) from exc


def _sentence(exc: BaseException) -> str:
    """Return the exception message as one sentence ending with a period."""
    return str(exc).strip().rstrip(".") + "."


def _check_pixel_limit(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImagePixelLimitError(
            f"Image is {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} pixels.",
            value=f"{width}x{height}",
            hint=f"Downscale the image to at most {max_pixels:,} pixels (width x height), "
            "or raise the limit with the setting FACEGATE_MAX_IMAGE_PIXELS.",
        )


def _pillow_bomb_error(exc: Image.DecompressionBombError) -> ImagePixelLimitError:
    return ImagePixelLimitError(
        f"Image is larger than Pillow's decompression-bomb limit: {_sentence(exc)}",
        value=None,
        hint="Downscale the image. Pillow rejects images above twice PIL.Image.MAX_IMAGE_PIXELS, "
        "whatever FACEGATE_MAX_IMAGE_PIXELS allows.",
    )


def _load_pixels(image: ImageFile.ImageFile, image_format: str, max_pixels: int) -> None:
    """Decode the pixel data of the first frame."""
    # The TIFF plugin runs Pillow's bomb check again on load. It cannot fire for an image that
    # passed _check_pixel_limit unless max_pixels is above Image.MAX_IMAGE_PIXELS, and only
    # then is the warning ignored (under the lock, so such decodes run one at a time).
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and max_pixels > pillow_limit:
        scope: contextlib.AbstractContextManager[None] = _pillow_bomb_warning_ignored()
    else:
        scope = contextlib.nullcontext()
    try:
        with scope:
            image.load()
    except Image.DecompressionBombError as exc:
        raise _pillow_bomb_error(exc) from exc
    except _PILLOW_ERRORS as exc:
        raise CorruptImageError(
            f"Cannot decode the {image_format} pixel data: {_sentence(exc)}",
            value=image_format,
            hint="The file is truncated or damaged; send the complete file.",
        ) from exc


def _apply_exif_orientation(image: Image.Image, image_format: str) -> Image.Image:
    """Return the image rotated and flipped as given by its EXIF orientation tag."""
    # pillow-heif applies the HEIF transforms (irot, imir) itself and reports orientation 1.
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except _PILLOW_ERRORS as exc:
        # Damaged EXIF data should not cost the picture, so it is decoded as stored.
        logger.warning("Ignoring unreadable EXIF data of a %s image: %r", image_format, exc)
        return image
    # A damaged tag can hold any type, and unknown values mean "as stored".
    transpose = _ORIENTATION_TRANSPOSES.get(orientation) if isinstance(orientation, int) else None
    if transpose is None:
        return image
    return image.transpose(transpose)


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert any Pillow mode to an (H, W, 3) uint8 RGB array."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        grey = _grey_to_uint8(np.asarray(image), image.mode)  # (H, W)
        return np.repeat(grey[:, :, np.newaxis], 3, axis=2)  # (H, W, 3), C-contiguous

    if image.has_transparency_data:
        # Alpha channels (LA, La, PA, RGBA, RGBa), palettes with alpha, and the PNG/GIF
        # 'transparency' key are composited on white, the usual page and viewer background.
        if image.mode == "La":
            image = image.convert("LA")  # Pillow converts premultiplied La only to LA
        rgba = image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))
        rgb.paste(rgba, mask=rgba.getchannel("A"))
    else:
        # 1, L, P, RGB, RGBX, CMYK, YCbCr, LAB and HSV.
        rgb = image.convert("RGB")
    # np.asarray of a PIL image is read-only; np.array gives callers a writable copy.
    return np.array(rgb, dtype=np.uint8)


def _grey_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit integer or float grey values to 0..255.

    I;16*: the full 16-bit range, v / 257 rounded (0 -> 0, 257 -> 1, 65535 -> 255).
    I: 32-bit signed. Pillow also stores 16-bit data (PGM with maxval above 255, TIFF) as I,
       so values up to 65535 use the 16-bit range and larger ones the int32 range
       0..2**31 - 1. Negative values become 0.
    F: floats in 0..1 are scaled to 0..255; any other range is read as 0..255 (the way
       Pillow's own F -> L conversion does) and clipped. NaN becomes 0.
    """
    if mode == "F":
        finite = values[np.isfinite(values)]
        # A float image whose values all lie in 0..1 would be black on a 0..255 scale, so
        # reading it as normalized costs nothing for real 0..255 data.
        full_scale = 1.0 if finite.size == 0 or float(finite.max()) <= 1.0 else 255.0
        values = np.nan_to_num(values, nan=0.0, posinf=full_scale, neginf=0.0)
    elif mode == "I":
        full_scale = 65535.0 if int(values.max()) <= 65535 else float(2**31 - 1)
    else:
        full_scale = 65535.0
    # float32 keeps the rounding exact for 16-bit data: v / 257 is never within 1e-3 of .5.
    scaled = values.astype(np.float32) * np.float32(255.0 / full_scale)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
