"""Storing uploaded good images of a product."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile

from app.engine.imageio import ImageDecodeError, decode_image
from app.service.settings import Settings
from app.service.store import ModelStore
from app.service.uploads import (
    Rejection,
    Upload,
    base_name,
    is_zip,
    iter_zip,
    read_part_head,
    sniff_format,
)

logger = logging.getLogger(__name__)


@dataclass
class IngestReport:
    """Outcome of one upload: stored samples and rejected files."""

    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, rejection: Rejection) -> None:
        self.rejected.append(
            {
                "filename": rejection.filename,
                "archive": rejection.archive,
                "reason": rejection.reason,
                "detail": rejection.detail,
            }
        )


def ingest_samples(
    store: ModelStore, product: str, parts: list[UploadFile], settings: Settings
) -> IngestReport:
    """Decode and store each uploaded image, expanding zip parts.

    Runs blocking file reads and decoding, so call it off the event loop.
    """
    report = IngestReport()
    for part in parts:
        filename = base_name(part.filename)
        if is_zip(read_part_head(part)):
            members = iter_zip(
                part.file,
                filename,
                max_members=settings.max_zip_members,
                max_bytes=settings.max_zip_bytes,
            )
            for item in members:
                if isinstance(item, Rejection):
                    report.reject(item)
                else:
                    _ingest_one(store, product, item, settings, report, filename)
        else:
            upload = Upload(filename, part.file.read())
            _ingest_one(store, product, upload, settings, report, None)

    logger.info(
        "product %s: %d samples accepted, %d rejected",
        product,
        len(report.accepted),
        len(report.rejected),
    )
    return report


def _ingest_one(
    store: ModelStore,
    product: str,
    upload: Upload,
    settings: Settings,
    report: IngestReport,
    archive: str | None,
) -> None:
    if is_zip(upload.data):
        detail = "zip archives inside a zip are not supported; upload them one by one"
        report.reject(Rejection(upload.filename, "nested_zip", detail, archive))
        return
    try:
        image = decode_image(upload.data, max_pixels=settings.max_image_pixels)
    except ImageDecodeError as exc:
        report.reject(Rejection(upload.filename, exc.reason, str(exc), archive))
        return

    height, width = image.shape[:2]
    sha256 = hashlib.sha256(upload.data).hexdigest()
    sample, duplicate = store.add_sample(
        product,
        upload.data,
        sha256,
        filename=upload.filename,
        image_format=sniff_format(upload.data) or "img",
        width=width,
        height=height,
    )
    report.accepted.append(
        {
            "id": sample.id,
            "sha256": sample.sha256,
            "filename": upload.filename,
            "archive": archive,
            "duplicate": duplicate,
            "width": width,
            "height": height,
        }
    )
