"""Image decoding shared by fitting, scoring and evaluation.

`decode_image` turns encoded bytes into an HxWx3 uint8 RGB array, and every caller
uses it, so a given file always yields the same pixels. The steps are:

1. Identify the format from the file header. PNG, JPEG, BMP, TIFF and WebP are
   accepted. Other formats that Pillow reads (GIF, ICO, ...) are rejected.
2. Reject the image from its header size alone, before any pixel data is decoded,
   when width x height is zero or above `max_pixels`.
3. Decode all pixel data. A file that ends early is an error. This relies on
   `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` keeping its default, False, because when
   it is True Pillow returns a partly decoded image instead.
4. Apply the EXIF orientation tag.
5. Convert to RGB with these rules:

   - Grayscale (L, 1): the gray level is copied to all three channels.
   - Palette (P, including a transparent colour): expanded to RGBA, then the
     alpha rule below.
   - RGBA, LA, PA: composited onto a black background, so each channel becomes
     round(channel * alpha / 255).
   - CMYK, YCbCr, LAB, HSV, RGBX: converted by Pillow's `Image.convert("RGB")`.
   - 16-bit and 32-bit integer grayscale (I;16, I;16B, I;16L, I): clipped to
     0..65535, then scaled to round(value * 255 / 65535). Values are never clipped
     at 255, so 1000 becomes 4 and 65535 becomes 255.
   - 32-bit float grayscale (F): clipped to 0..1, then scaled to
     round(value * 255). Float images are taken to be normalised to 0..1.
   - 16 bits per channel colour (48-bit RGB and 64-bit RGBA PNG, 16-bit RGB TIFF):
     Pillow 13 reads these as 8-bit RGB or RGBA by keeping the high byte of each
     sample, which is value >> 8. That maps 0..65535 onto the full 0..255 range
     and is at most one level below round(value * 255 / 65535).

Multi-frame files (multi-page TIFF, animated WebP, JPEG with the Multi-Picture
extension) yield their first frame.

Every failure raises `ImageDecodeError`, whose `reason` is a short machine code.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DecodeFailure = Literal[
    "empty",
    "not_an_image",
    "unsupported_format",
    "truncated",
    "corrupt",
    "zero_size",
    "too_many_pixels",
]

# 40 megapixels: room for high-resolution inspection cameras, while the decoded
# uint8 RGB array stays at 120 MB or less per request.
DEFAULT_MAX_PIXELS = 40_000_000

# Pillow format names. MPO is Pillow's name for a JPEG with the Multi-Picture
# extension, which many cameras write, so it is accepted as a JPEG.
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "TIFF", "WEBP"})

# File signatures of the supported formats, used to describe files that Pillow
# cannot identify.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

_GRAY_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_ALPHA_MODES = frozenset({"P", "PA", "LA", "La", "RGBA", "RGBa"})
_UINT16_MAX = 65535


class ImageDecodeError(ValueError):
    """Error for bytes that cannot be decoded into an RGB image.

    `reason` is one of the `DecodeFailure` codes. The message names the problem
    and what to do about it.
    """

    def __init__(self, reason: DecodeFailure, message: str) -> None:
        super().__init__(message)
        self.reason: DecodeFailure = reason


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an encoded image into a new C-contiguous HxWx3 uint8 RGB array.

    The module docstring lists the accepted formats and the conversion rules.
    Pillow's own decompression bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`,
    89,478,485 pixels by default) also applies, so a `max_pixels` above it
    has no effect.

    Raises:
        ImageDecodeError: the data is not a supported, complete image of at most
            `max_pixels` pixels.
        ValueError: `max_pixels` is below 1.
    """
    if max_pixels < 1:
        msg = f"max_pixels must be at least 1, got {max_pixels}"
        raise ValueError(msg)
    if len(data) == 0:
        raise ImageDecodeError(
            "empty",
            "image data is empty; send the bytes of a PNG, JPEG, BMP, "
            "TIFF or WebP file",
        )

    image = _open_image(data)
    _check_format(image)
    _check_size(image, max_pixels)
    image = _load_pixels(image, data)
    return _to_rgb_array(image)


def decode_image_file(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read an image file and decode it with `decode_image`.

    Raises:
        ImageDecodeError: as `decode_image`, with the path in the message.
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        raise ImageDecodeError(exc.reason, f"{path}: {exc}") from exc


def _open_image(data: bytes) -> Image.Image:
    """Open the image lazily, which reads the header but no pixel data."""
    try:
        # Pillow warns above MAX_IMAGE_PIXELS and raises only above twice that.
        # The filter turns the warning into an exception.
        # NOTE: catch_warnings swaps the process-wide filter list, so it is not
        # thread-safe. With concurrent decodes the warning can escape as a plain
        # warning, but _check_size still rejects the image whenever max_pixels is
        # below Pillow's limit, as it is by default.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(
            "too_many_pixels",
            f"image exceeds Pillow's decompression bomb limit of "
            f"{Image.MAX_IMAGE_PIXELS} pixels ({exc}); resize it",
        ) from exc
    except UnidentifiedImageError as exc:
        raise _describe_unidentified(data) from exc
    # Pillow plugins raise many exception types on malformed headers.
    except Exception as exc:
        raise _describe_decode_failure(exc, data) from exc


def _check_format(image: Image.Image) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(
            "unsupported_format",
            f"image format {image.format} is not supported; convert it to PNG, "
            "JPEG, BMP, TIFF or WebP",
        )


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width == 0 or height == 0:
        raise ImageDecodeError(
            "zero_size",
            f"image size is {width}x{height} pixels; send an image with at least "
            "one pixel",
        )
    pixels = width * height
    if pixels > max_pixels:
        raise ImageDecodeError(
            "too_many_pixels",
            f"image has {pixels} pixels ({width}x{height}), more than the limit "
            f"of {max_pixels}; resize it or raise STRUCTCORE_MAX_IMAGE_PIXELS",
        )


def _load_pixels(image: Image.Image, data: bytes) -> Image.Image:
    """Decode all pixel data and return the image in its EXIF orientation."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    # Pillow decoders raise OSError, ValueError, SyntaxError and others.
    except Exception as exc:
        raise _describe_decode_failure(exc, data) from exc
    return image


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode == "RGB":
        rgb = np.array(image, dtype=np.uint8)
    elif mode in _GRAY_INTEGER_MODES:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, _UINT16_MAX)
        # value * 255 / 65535 is never exactly halfway between two integers
        # because 65535 / 255 = 257 is odd, so adding half and flooring rounds.
        gray = (values * 255 + _UINT16_MAX // 2) // _UINT16_MAX
        rgb = _gray_to_rgb(gray.astype(np.uint8))
    elif mode == "F":
        values = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        rgb = _gray_to_rgb(np.rint(values * 255.0).astype(np.uint8))
    elif mode in _ALPHA_MODES:
        rgb = _composite_on_black(np.asarray(image.convert("RGBA")))
    else:
        # 1, L, CMYK, YCbCr, LAB, HSV and RGBX.
        rgb = np.array(image.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, np.newaxis], 3, axis=2)


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """Return round(channel * alpha / 255) for each RGB channel."""
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    # channel * alpha / 255 is never exactly halfway because 255 is odd.
    blended = (rgba[:, :, :3].astype(np.uint16) * alpha + 127) // 255
    return blended.astype(np.uint8)


def _describe_unidentified(data: bytes) -> ImageDecodeError:
    """Build the error for data that no Pillow plugin identified."""
    file_format = _sniff_format(data)
    if file_format is None:
        return ImageDecodeError(
            "not_an_image",
            "data is not an image in any format Pillow reads; send a PNG, JPEG, "
            "BMP, TIFF or WebP file",
        )

    size = _header_size(data, file_format)
    if size is not None and 0 in size:
        width, height = size
        return ImageDecodeError(
            "zero_size",
            f"{file_format} header gives a size of {width}x{height} pixels; send "
            "an image with at least one pixel",
        )
    return ImageDecodeError(
        "corrupt",
        f"data starts like a {file_format} file but Pillow cannot read its header; "
        "the file is damaged or incomplete, so export or upload it again",
    )


def _describe_decode_failure(exc: Exception, data: bytes) -> ImageDecodeError:
    """Build the error for a Pillow failure while reading a recognised file."""
    detail = str(exc) or type(exc).__name__
    if "truncated" in detail.lower() or _is_short_webp(data):
        return ImageDecodeError(
            "truncated",
            f"image data ends before the image is complete ({detail}); upload the "
            "whole file",
        )
    return ImageDecodeError(
        "corrupt",
        f"image data is corrupt ({detail}); export or upload the file again",
    )


def _sniff_format(data: bytes) -> str | None:
    for signature, file_format in _SIGNATURES:
        if data.startswith(signature):
            return file_format
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _header_size(data: bytes, file_format: str) -> tuple[int, int] | None:
    """Read width and height from a PNG or BMP header, or None if unavailable.

    Pillow rejects a header with zero width or height as unidentified, so this
    lets the error name the real problem.
    """
    try:
        if file_format == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack_from(">II", data, 16)
        if file_format == "BMP":
            (header_size,) = struct.unpack_from("<I", data, 14)
            # A 12-byte BITMAPCOREHEADER stores 16-bit sizes, later headers
            # store 32-bit signed sizes where a negative height means top-down.
            if header_size == 12:
                return struct.unpack_from("<HH", data, 18)
            width, height = struct.unpack_from("<ii", data, 18)
            return abs(width), abs(height)
    except struct.error:
        return None
    return None


def _is_short_webp(data: bytes) -> bool:
    """Return whether a WebP file is shorter than the size in its RIFF header.

    Pillow's WebP decoder reports a cut file only as "could not create decoder
    object", so the RIFF chunk size is the way to tell truncation apart.
    """
    if not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return False
    (riff_size,) = struct.unpack_from("<I", data, 4)
    return len(data) < riff_size + 8
