"""Reading uploaded images from requests: raw bodies, multipart parts, zips."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

import numpy as np
from fastapi import Request
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.engine.imageio import ImageDecodeError, decode_image
from app.service.problems import ProblemError

# Content types accepted for a raw image body, with common aliases.
RAW_IMAGE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/jpg",
        "image/bmp",
        "image/x-ms-bmp",
        "image/tiff",
        "image/webp",
    }
)
MULTIPART = "multipart/form-data"

_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_FORMAT_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
# Status code of each ImageDecodeError reason that is not a plain 422.
_DECODE_STATUS = {"unsupported_format": 415, "too_many_pixels": 413}
# Errors that zipfile raises on a damaged archive or member.
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    zlib.error,
)


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its client-side base name and bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class Rejection:
    """An uploaded file that was not stored, with the reason."""

    filename: str
    reason: str
    detail: str
    archive: str | None = None


def media_type(request: Request) -> str:
    """Return the request's media type, lowercase and without parameters."""
    header = request.headers.get("content-type", "")
    return header.split(";", 1)[0].strip().lower()


def base_name(filename: str | None) -> str:
    """Return the last path component of a client file name."""
    if not filename:
        return ""
    return PurePosixPath(filename.replace("\\", "/")).name


def sniff_format(data: bytes) -> str | None:
    """Return the file extension for a supported image's header, else None."""
    for signature, extension in _FORMAT_SIGNATURES:
        if data.startswith(signature):
            return extension
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def is_zip(data: bytes) -> bool:
    return data[:4] in _ZIP_SIGNATURES


def decode_or_raise(data: bytes, max_pixels: int, filename: str = "") -> np.ndarray:
    """Decode an image, raising a ProblemError with the decoder's reason."""
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as exc:
        subject = f"{filename}: " if filename else ""
        raise ProblemError(
            _DECODE_STATUS.get(exc.reason, 422),
            exc.reason,
            f"{subject}{exc}",
            filename=filename or None,
        ) from exc


def _unsupported_media_type(media: str, expected: str) -> ProblemError:
    shown = media or "(none)"
    return ProblemError(
        415,
        "unsupported_media_type",
        f"Content-Type {shown} is not supported; send {expected}",
        content_type=media or None,
    )


def _require_data(upload: Upload) -> Upload:
    if not upload.data:
        raise ProblemError(
            422,
            "empty",
            "request has no image data; send the bytes of a PNG, JPEG, BMP, TIFF "
            "or WebP file",
        )
    return upload


async def _read_form(request: Request, max_files: int) -> FormData:
    """Parse a multipart body, turning Starlette's 400 errors into problems."""
    try:
        return await request.form(max_files=max_files, max_fields=16)
    except StarletteHTTPException as exc:
        if isinstance(exc, ProblemError):
            raise
        if "Too many files" in str(exc.detail):
            raise ProblemError(
                413,
                "too_many_files",
                f"multipart body has more than {max_files} files; send at most "
                f"{max_files} per request",
                limit=max_files,
            ) from exc
        raise ProblemError(
            400,
            "invalid_multipart",
            f"multipart body is invalid ({exc.detail}); send multipart/form-data "
            "with a boundary, as curl -F does",
        ) from exc


async def read_single_image(request: Request) -> Upload:
    """Read one image sent as multipart part `file` or as a raw image body."""
    media = media_type(request)
    if media == MULTIPART:
        form = await _read_form(request, max_files=1)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise ProblemError(
                422,
                "missing_file",
                "multipart body has no file part named 'file'; "
                "send the image as -F file=@image.png",
            )
        data = await part.read()
        return _require_data(Upload(base_name(part.filename), data))

    if media in RAW_IMAGE_TYPES:
        return _require_data(Upload("", await request.body()))
    if media.startswith("image/"):
        # The same reason and advice as a GIF sent in a multipart part.
        raise ProblemError(
            415,
            "unsupported_format",
            f"Content-Type {media} is not a supported image format; convert the "
            "image to PNG, JPEG, BMP, TIFF or WebP",
            content_type=media,
        )

    expected = (
        "an image body (" + ", ".join(sorted(RAW_IMAGE_TYPES)) + ") or "
        "multipart/form-data with a part named 'file'"
    )
    raise _unsupported_media_type(media, expected)


async def read_file_parts(request: Request, max_files: int) -> list[UploadFile]:
    """Return the multipart parts named `files`, at most `max_files` of them."""
    media = media_type(request)
    if media != MULTIPART:
        raise _unsupported_media_type(
            media, "multipart/form-data with one or more parts named 'files'"
        )
    form = await _read_form(request, max_files)
    parts = [part for part in form.getlist("files") if isinstance(part, UploadFile)]
    if not parts:
        raise ProblemError(
            422,
            "missing_file",
            "multipart body has no file part named 'files'; "
            "send images as -F files=@a.png -F files=@b.png",
        )
    return parts


def read_part_head(part: UploadFile, size: int = 8) -> bytes:
    """Return the first bytes of a spooled part and rewind it."""
    part.file.seek(0)
    head = part.file.read(size)
    part.file.seek(0)
    return head


def iter_zip(
    file: BinaryIO, archive: str, *, max_members: int, max_bytes: int
) -> Iterator[Upload | Rejection]:
    """Yield the files of a zip archive, or a Rejection for each bad one.

    The member count and the total uncompressed size are checked against the
    central directory before anything is extracted, and the size again while
    reading, so a zip bomb stops at `max_bytes`. Only a member's base name is
    reported, and folders and macOS resource forks are skipped.
    """
    try:
        archive_file = zipfile.ZipFile(file)
        members = [
            info
            for info in archive_file.infolist()
            if not info.is_dir() and not info.filename.startswith("__MACOSX/")
        ]
    except _ZIP_ERRORS as exc:
        yield Rejection(archive, "corrupt_zip", f"zip archive is unreadable ({exc})")
        return

    if len(members) > max_members:
        detail = (
            f"zip has {len(members)} files, more than the limit of {max_members}; "
            "split it or raise STRUCTCORE_MAX_ZIP_MEMBERS"
        )
        yield Rejection(archive, "too_many_members", detail)
        return

    declared = sum(info.file_size for info in members)
    if declared > max_bytes:
        yield Rejection(archive, "zip_too_large", _zip_size_detail(declared, max_bytes))
        return

    remaining = max_bytes
    for info in members:
        name = base_name(info.filename)
        if info.flag_bits & 0x1:
            detail = "zip member is encrypted; zip the images without a password"
            yield Rejection(name, "encrypted", detail, archive)
            continue
        try:
            with archive_file.open(info) as member:
                data = member.read(remaining + 1)
        except _ZIP_ERRORS as exc:
            detail = f"zip member is unreadable ({exc})"
            yield Rejection(name, "corrupt_member", detail, archive)
            continue

        if len(data) > remaining:
            detail = _zip_size_detail(None, max_bytes)
            yield Rejection(name, "zip_too_large", detail, archive)
            return
        remaining -= len(data)
        yield Upload(name, data)


def _zip_size_detail(size: int | None, max_bytes: int) -> str:
    expands = f"{size} bytes, more than" if size is not None else "more than"
    return (
        f"zip expands to {expands} the limit of {max_bytes} bytes; "
        "split it or raise STRUCTCORE_MAX_ZIP_BYTES"
    )
