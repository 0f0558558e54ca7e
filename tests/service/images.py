"""Encoded test images in the formats and modes clients send."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def rgb_array(path_bytes: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path_bytes)).convert("RGB"))


def variants(png: bytes) -> dict[str, bytes]:
    """Return the image re-encoded as RGBA, palette, 16-bit and gray PNGs."""
    rgb = Image.open(io.BytesIO(png)).convert("RGB")
    rgba = rgb.copy()
    rgba.putalpha(255)
    gray = rgb.convert("L")
    gray16 = Image.fromarray(np.asarray(gray).astype(np.uint16) * 257)
    return {
        "rgba": encode(rgba, "PNG"),
        "palette": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "gray16": encode(gray16, "PNG"),
        "gray": encode(gray, "PNG"),
        "jpeg": encode(rgb, "JPEG", quality=95),
    }


def truncated_jpeg(png: bytes) -> bytes:
    jpeg = encode(Image.open(io.BytesIO(png)).convert("RGB"), "JPEG", quality=95)
    return jpeg[: len(jpeg) // 2]


def gif(side: int = 32) -> bytes:
    return encode(Image.new("P", (side, side), 3), "GIF")


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """Return a random RGB PNG, so that each seed gives different bytes."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
