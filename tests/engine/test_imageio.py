"""Tests for app.engine.imageio.

Every fixture is generated here with Pillow, numpy or hand-built PNG, BMP and TIFF
bytes. The tests that take the `datasets_dir` fixture also decode real files from
the folder in STRUCTCORE_DATASETS, and skip when it is unset.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.imageio import (
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    ImageDecodeError,
    decode_image,
    decode_image_file,
)

# Values of a 16-bit sample and their 8-bit result under round(v * 255 / 65535).
GRAY16_VALUES = [0, 1000, 32768, 65535]
GRAY16_EXPECTED = [0, 4, 128, 255]


# Fixture builders


def encode(image: Image.Image, file_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **params)
    return buffer.getvalue()


def noise_rgb(height: int = 24, width: int = 40, seed: int = 0) -> np.ndarray:
    """Random RGB pixels, which reveal any channel swap, transposition or loss."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def gradient_rgb(height: int = 48, width: int = 64) -> np.ndarray:
    """Smooth RGB gradients, which JPEG compresses with small errors."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4, y * 5, (x + y) * 2], axis=2).astype(np.uint8)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_from_parts(
    width: int, height: int, bit_depth: int, color_type: int, scanlines: bytes
) -> bytes:
    """Build a PNG from an IHDR and already filtered scanline bytes."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(scanlines))
        + png_chunk(b"IEND", b"")
    )


def png_16bit(samples: np.ndarray, color_type: int) -> bytes:
    """Build a 16-bit per sample PNG (color type 2 is RGB, 6 is RGBA)."""
    height, width = samples.shape[:2]
    # Filter type 0 (none) at the start of each row, then big-endian samples.
    scanlines = b"".join(
        b"\x00" + samples[row].astype(">u2").tobytes() for row in range(height)
    )
    return png_from_parts(width, height, 16, color_type, scanlines)


def tiff_rgb_16bit(samples: np.ndarray) -> bytes:
    """Build an uncompressed little-endian TIFF with 16 bits per RGB sample.

    Pillow cannot write this layout, so the header and one IFD are built by hand.
    """
    height, width, _ = samples.shape
    pixel_data = samples.astype("<u2").tobytes()
    data_offset = 8
    bits_offset = data_offset + len(pixel_data)
    ifd_offset = bits_offset + 6
    short, long = 3, 4
    entries = [
        (256, short, 1, width),  # ImageWidth
        (257, short, 1, height),  # ImageLength
        (258, short, 3, bits_offset),  # BitsPerSample, stored at bits_offset
        (259, short, 1, 1),  # Compression: none
        (262, short, 1, 2),  # PhotometricInterpretation: RGB
        (273, long, 1, data_offset),  # StripOffsets
        (277, short, 1, 3),  # SamplesPerPixel
        (278, short, 1, height),  # RowsPerStrip
        (279, long, 1, len(pixel_data)),  # StripByteCounts
        (284, short, 1, 1),  # PlanarConfiguration: chunky
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, field_type, count, value in entries:
        if field_type == short and count == 1:
            ifd += struct.pack("<HHIHH", tag, field_type, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, field_type, count, value)
    ifd += struct.pack("<I", 0)
    return (
        b"II*\x00"
        + struct.pack("<I", ifd_offset)
        + pixel_data
        + struct.pack("<HHH", 16, 16, 16)
        + ifd
    )


def decode_error(data: bytes, **params: int) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, **params)
    return info.value


def gray_row_image(mode: str, values: list[float]) -> Image.Image:
    image = Image.new(mode, (len(values), 1))
    image.putdata(values)
    return image


# Module constants and output contract


def test_supported_formats_include_required():
    for name in ("PNG", "JPEG", "BMP", "TIFF", "WEBP"):
        assert name in SUPPORTED_FORMATS


def test_default_max_pixels_positive():
    assert DEFAULT_MAX_PIXELS > 0


def test_decode_error_is_value_error():
    error = ImageDecodeError("corrupt", "image data is corrupt")
    assert isinstance(error, ValueError)
    assert error.reason == "corrupt"
    assert str(error) == "image data is corrupt"


def test_output_array_contract():
    result = decode_image(encode(Image.fromarray(noise_rgb()), "PNG"))
    assert result.dtype == np.uint8
    assert result.shape == (24, 40, 3)
    assert result.flags.c_contiguous
    assert result.flags.writeable


def test_max_pixels_below_one_rejected():
    data = encode(Image.fromarray(noise_rgb()), "PNG")
    with pytest.raises(ValueError) as info:
        decode_image(data, max_pixels=0)
    assert not isinstance(info.value, ImageDecodeError)


# Accepted formats


@pytest.mark.parametrize(
    ("file_format", "params"),
    [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_lossless_formats_round_trip_exactly(file_format, params):
    pixels = noise_rgb()
    result = decode_image(encode(Image.fromarray(pixels), file_format, **params))
    assert result.shape == pixels.shape
    np.testing.assert_array_equal(result, pixels)


def test_jpeg_round_trip_close():
    pixels = gradient_rgb()
    result = decode_image(encode(Image.fromarray(pixels), "JPEG", quality=95))
    assert result.shape == pixels.shape
    error = np.abs(result.astype(np.int16) - pixels.astype(np.int16))
    assert error.mean() < 2.0
    assert error.max() < 24


def test_mpo_jpeg_decodes_first_frame():
    first = Image.new("RGB", (16, 8), (250, 0, 0))
    second = Image.new("RGB", (16, 8), (0, 0, 250))
    data = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    result = decode_image(data)
    assert result.shape == (8, 16, 3)
    assert result[4, 8, 0] > 200
    assert result[4, 8, 2] < 50


def test_multipage_tiff_decodes_first_page():
    first = Image.fromarray(noise_rgb(seed=1))
    second = Image.fromarray(noise_rgb(seed=2))
    data = encode(first, "TIFF", save_all=True, append_images=[second])
    np.testing.assert_array_equal(decode_image(data), noise_rgb(seed=1))


# EXIF orientation


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation tag
    return exif


def test_png_exif_orientation_6_rotates_clockwise():
    pixels = noise_rgb(height=16, width=32)
    image = Image.fromarray(pixels)
    data = encode(image, "PNG", exif=exif_with_orientation(6))
    result = decode_image(data)
    # Orientation 6 means the stored image is shown turned 90 degrees clockwise.
    np.testing.assert_array_equal(result, np.rot90(pixels, k=-1))


def test_jpeg_exif_orientation_6_rotates_clockwise():
    # Stored 32 wide and 16 high: the left half red, the right half blue.
    pixels = np.zeros((16, 32, 3), dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)
    pixels[:, 16:] = (0, 0, 255)
    data = encode(
        Image.fromarray(pixels), "JPEG", quality=95, exif=exif_with_orientation(6)
    )
    result = decode_image(data)
    assert result.shape == (32, 16, 3)
    # Turned clockwise, the stored left half is on top.
    top, bottom = result[4, 8].astype(int), result[28, 8].astype(int)
    assert top[0] > 200
    assert top[2] < 60
    assert bottom[2] > 200
    assert bottom[0] < 60


# Conversion rules


def test_grayscale_replicated_to_rgb():
    gray = noise_rgb()[:, :, 0]
    result = decode_image(encode(Image.fromarray(gray), "PNG"))
    for channel in range(3):
        np.testing.assert_array_equal(result[:, :, channel], gray)


def test_bilevel_becomes_black_and_white():
    mask = np.zeros((8, 8), dtype=bool)
    mask[:, 4:] = True
    image = Image.fromarray(mask)
    assert image.mode == "1"
    result = decode_image(encode(image, "PNG"))
    assert set(np.unique(result).tolist()) == {0, 255}
    np.testing.assert_array_equal(result[:, :, 1], mask.astype(np.uint8) * 255)


def palette_image() -> Image.Image:
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
    image.putdata([0, 1, 2])
    return image


def test_palette_expands_to_colours():
    result = decode_image(encode(palette_image(), "PNG"))
    expected = np.array([[[10, 20, 30], [200, 100, 50], [0, 255, 0]]], np.uint8)
    np.testing.assert_array_equal(result, expected)


def test_palette_transparency_becomes_black():
    data = encode(palette_image(), "PNG", transparency=1)
    result = decode_image(data)
    expected = np.array([[[10, 20, 30], [0, 0, 0], [0, 255, 0]]], np.uint8)
    np.testing.assert_array_equal(result, expected)


def test_rgba_composited_on_black():
    rgba = np.array(
        [[[200, 100, 50, 255], [200, 100, 50, 128], [200, 100, 50, 0]]], np.uint8
    )
    result = decode_image(encode(Image.fromarray(rgba), "PNG"))
    # round(200 * 128 / 255) = 100, round(100 * 128 / 255) = 50, ...
    expected = np.array([[[200, 100, 50], [100, 50, 25], [0, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(result, expected)


def test_gray_alpha_composited_on_black():
    image = Image.new("LA", (3, 1))
    image.putdata([(200, 255), (200, 128), (200, 0)])
    result = decode_image(encode(image, "PNG"))
    expected = np.array([[[200] * 3, [100] * 3, [0] * 3]], np.uint8)
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    ("mode", "file_format"),
    [("I;16", "PNG"), ("I;16", "TIFF"), ("I;16B", "TIFF")],
)
def test_gray_16bit_scaled_not_clipped(mode, file_format):
    data = encode(gray_row_image(mode, GRAY16_VALUES), file_format)
    result = decode_image(data)
    assert result[0, :, 0].tolist() == GRAY16_EXPECTED
    assert result[0, 1, 0] != 255, "1000 of 65535 must not saturate"
    np.testing.assert_array_equal(result[:, :, 0], result[:, :, 2])


def test_gray_32bit_integer_clipped_to_16bit_range():
    image = gray_row_image("I", [-5, 1000, 65535, 70000])
    result = decode_image(encode(image, "TIFF"))
    assert result[0, :, 0].tolist() == [0, 4, 255, 255]


def test_gray_float_clipped_to_unit_range():
    image = gray_row_image("F", [-0.5, 0.0, 0.5, 1.0, 2.0])
    result = decode_image(encode(image, "TIFF"))
    # 0.5 * 255 = 127.5 rounds half to even, to 128.
    assert result[0, :, 0].tolist() == [0, 0, 128, 255, 255]


RGB16_SAMPLES = np.array(
    [[[65535, 32768, 1000], [0, 257, 65280]]],
    dtype=np.uint16,
)


def test_png_48bit_keeps_full_range():
    result = decode_image(png_16bit(RGB16_SAMPLES, color_type=2))
    # Pillow keeps the high byte of each 16-bit sample.
    expected = (RGB16_SAMPLES >> 8).astype(np.uint8)
    np.testing.assert_array_equal(result, expected)
    assert result[0, 0, 0] == 255
    assert result[0, 0, 2] == 3, "1000 of 65535 must not saturate"


def test_tiff_rgb_16bit_keeps_full_range():
    result = decode_image(tiff_rgb_16bit(RGB16_SAMPLES))
    expected = (RGB16_SAMPLES >> 8).astype(np.uint8)
    np.testing.assert_array_equal(result, expected)


def test_cmyk_converted_to_rgb():
    image = Image.new("CMYK", (3, 1))
    image.putdata([(0, 0, 0, 0), (0, 0, 0, 255), (255, 0, 0, 0)])
    result = decode_image(encode(image, "TIFF"))
    expected = np.array([[[255, 255, 255], [0, 0, 0], [0, 255, 255]]], np.uint8)
    np.testing.assert_array_equal(result, expected)


def test_cmyk_jpeg_converted_to_rgb():
    image = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    result = decode_image(encode(image, "JPEG", quality=95))
    assert result.shape == (16, 16, 3)
    assert result.min() > 245, "CMYK (0, 0, 0, 0) is white"


def test_lab_white_converted_to_neutral_rgb():
    # Pillow's LAB mode stores L* scaled to 0..255 and a*, b* offset by 128.
    image = Image.new("LAB", (2, 2), (255, 128, 128))
    result = decode_image(encode(image, "TIFF"))
    assert result.min() >= 250
    assert int(result.max()) - int(result.min()) <= 2


# Rejected data


def test_empty_bytes_rejected():
    assert decode_error(b"").reason == "empty"


def test_text_rejected_as_not_an_image():
    assert decode_error(b"part,score\n17,0.42\n").reason == "not_an_image"


@pytest.mark.parametrize("file_format", ["GIF", "ICO", "PPM"])
def test_other_pillow_formats_unsupported(file_format):
    data = encode(Image.fromarray(noise_rgb()), file_format)
    error = decode_error(data)
    assert error.reason == "unsupported_format"
    assert file_format in str(error)


@pytest.mark.parametrize(
    ("file_format", "params"),
    [
        ("JPEG", {"quality": 95}),
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
    ],
)
def test_half_file_rejected_as_truncated(file_format, params):
    data = encode(Image.fromarray(noise_rgb(64, 64)), file_format, **params)
    assert decode_error(data[: len(data) // 2]).reason == "truncated"


def test_png_cut_inside_header_truncated():
    data = encode(Image.fromarray(noise_rgb()), "PNG")
    assert decode_error(data[:20]).reason == "truncated"


def test_png_flipped_idat_bytes_corrupt():
    data = bytearray(encode(Image.fromarray(noise_rgb(64, 64)), "PNG"))
    start = data.index(b"IDAT") + 10
    for index in range(start, start + 32):
        data[index] ^= 0xFF
    assert decode_error(bytes(data)).reason == "corrupt"


def test_png_signature_with_garbage_corrupt():
    data = b"\x89PNG\r\n\x1a\n" + b"this is not a PNG chunk stream" * 4
    error = decode_error(data)
    assert error.reason == "corrupt"
    assert "PNG" in str(error)


def test_png_zero_width_rejected():
    data = png_from_parts(0, 10, 8, 2, b"\x00")
    error = decode_error(data)
    assert error.reason == "zero_size"
    assert "0x10" in str(error)


def test_bmp_zero_width_rejected():
    data = bytearray(encode(Image.fromarray(noise_rgb()), "BMP"))
    struct.pack_into("<i", data, 18, 0)  # biWidth in BITMAPINFOHEADER
    assert decode_error(bytes(data)).reason == "zero_size"


def test_size_limit_checked_before_decoding():
    # The IDAT contains one byte, so decoding would fail as truncated or corrupt.
    # The header alone must be enough to reject the image.
    data = png_from_parts(5000, 5000, 8, 2, b"\x00")
    error = decode_error(data, max_pixels=1_000_000)
    assert error.reason == "too_many_pixels"
    assert "25000000" in str(error)
    assert "1000000" in str(error)


def test_size_limit_default_applies():
    data = png_from_parts(8000, 8000, 8, 2, b"\x00")
    error = decode_error(data)
    assert error.reason == "too_many_pixels"
    assert str(DEFAULT_MAX_PIXELS) in str(error)


def test_size_at_limit_accepted():
    data = encode(Image.fromarray(noise_rgb(10, 20)), "PNG")
    assert decode_image(data, max_pixels=200).shape == (10, 20, 3)
    assert decode_error(data, max_pixels=199).reason == "too_many_pixels"


def test_pillow_bomb_error_mapped():
    # 400 million pixels is above twice Pillow's default limit, so Image.open
    # itself raises DecompressionBombError.
    data = png_from_parts(20000, 20000, 8, 2, b"\x00")
    assert decode_error(data, max_pixels=10**10).reason == "too_many_pixels"


def test_pillow_bomb_warning_becomes_error():
    # 100 million pixels is between Pillow's warning and error limits.
    data = png_from_parts(10000, 10000, 8, 2, b"\x00")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        error = decode_error(data, max_pixels=10**10)
    assert error.reason == "too_many_pixels"
    bomb_warnings = [
        w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)
    ]
    assert bomb_warnings == []


# Files


def test_decode_file_matches_bytes(tmp_path):
    pixels = noise_rgb()
    path = tmp_path / "part.png"
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(decode_image_file(path), pixels)
    np.testing.assert_array_equal(decode_image_file(str(path)), pixels)


def test_decode_file_error_names_path(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ImageDecodeError) as info:
        decode_image_file(path)
    assert info.value.reason == "not_an_image"
    assert str(path) in str(info.value)


def test_decode_file_missing_raises_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_image_file(tmp_path / "missing.png")


# Real dataset images


@pytest.fixture
def datasets_dir() -> Path:
    root = os.environ.get("STRUCTCORE_DATASETS")
    if not root:
        pytest.skip("STRUCTCORE_DATASETS is not set; point it at the datasets folder")
    path = Path(root)
    if not path.is_dir():
        pytest.skip(f"STRUCTCORE_DATASETS={root} is not a directory")
    return path


def test_mvtec_bottle_png_decodes(datasets_dir):
    path = datasets_dir / "mvtec_ad_512" / "bottle" / "train" / "good" / "000.png"
    if not path.is_file():
        pytest.skip(f"dataset image {path} not found")
    result = decode_image_file(path)
    with Image.open(path) as image:
        expected = np.array(image.convert("RGB"))
    assert result.shape == (512, 512, 3)
    np.testing.assert_array_equal(result, expected)


def test_magnetic_tile_jpeg_decodes(datasets_dir):
    paths = sorted((datasets_dir / "magnetic_tile" / "train" / "good").glob("*.jpg"))
    if not paths:
        pytest.skip("no magnetic_tile/train/good/*.jpg images found")
    path = paths[0]
    result = decode_image_file(path)
    with Image.open(path) as image:
        assert image.mode == "L", "magnetic tile JPEGs are grayscale"
        gray = np.array(image)
    assert result.shape == (*gray.shape, 3)
    for channel in range(3):
        np.testing.assert_array_equal(result[:, :, channel], gray)
