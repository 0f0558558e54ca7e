"""Scoring uploaded images with a product's active model."""

from __future__ import annotations

import base64
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.engine import render
from app.engine.model import ScoreResult, StructCoreModel
from app.service.active_models import ActiveModels
from app.service.metrics import ServiceMetrics
from app.service.problems import ProblemError
from app.service.uploads import Upload, decode_or_raise

MapKind = Literal["gray", "overlay"]


@dataclass(frozen=True)
class ScoreOutcome:
    """JSON response body for one image and, when requested, its anomaly map PNG."""

    body: dict[str, Any]
    png: bytes | None


def _elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _render_map(
    model: StructCoreModel, image: np.ndarray, result: ScoreResult, kind: MapKind
) -> bytes:
    if kind == "overlay":
        return render.overlay_png(image, result.anomaly_map, model.map_range)
    return render.anomaly_map_png(result.anomaly_map, model.map_range)


def _build_outcome(
    product: str,
    version: str,
    model: StructCoreModel,
    image: np.ndarray,
    result: ScoreResult,
    *,
    map_kind: MapKind | None,
    timings_ms: dict[str, float],
) -> ScoreOutcome:
    """Render the map if requested and build the JSON response body."""
    encode_start = time.perf_counter()
    png = _render_map(model, image, result, map_kind) if map_kind else None
    timings_ms["encode"] = _elapsed_ms(encode_start)

    fields = result.to_dict()
    engine_timings = fields.pop("timings_ms", {})
    height, width = image.shape[:2]
    body = {
        "product": product,
        "model_version": version,
        **fields,
        "width": width,
        "height": height,
        "timings_ms": {
            "decode": timings_ms["decode"],
            **{f"engine_{stage}": round(ms, 3) for stage, ms in engine_timings.items()},
            "encode": timings_ms["encode"],
        },
    }
    return ScoreOutcome(body, png)


def _count(metrics: ServiceMetrics, product: str, result: ScoreResult) -> None:
    metrics.images_scored.labels(product).inc()
    if result.is_anomalous:
        metrics.anomalies.labels(product).inc()


def score_upload(
    models: ActiveModels,
    metrics: ServiceMetrics,
    product: str,
    upload: Upload,
    *,
    max_pixels: int,
    map_kind: MapKind | None,
    slots: AbstractContextManager,
) -> ScoreOutcome:
    """Decode and score one image. Blocks, so call it off the event loop.

    `slots` is held around the engine call only, so decoding and PNG
    encoding of other requests go on while one image is scored.
    """
    start = time.perf_counter()
    version, model = models.get(product)

    decode_start = time.perf_counter()
    image = decode_or_raise(upload.data, max_pixels, upload.filename)
    timings = {"decode": _elapsed_ms(decode_start)}

    with slots:
        result = model.score(image)
    _count(metrics, product, result)
    outcome = _build_outcome(
        product, version, model, image, result, map_kind=map_kind, timings_ms=timings
    )
    outcome.body["timings_ms"]["total"] = _elapsed_ms(start)
    return outcome


def score_uploads(
    models: ActiveModels,
    metrics: ServiceMetrics,
    product: str,
    uploads: list[Upload],
    *,
    max_pixels: int,
    map_kind: MapKind | None,
    slots: AbstractContextManager,
) -> tuple[str, list[dict[str, Any]]]:
    """Score several images in one engine batch, in order.

    Returns the model version and one item per upload: the score fields, or
    `error` with a problem object for an image that could not be decoded.
    """
    version, model = models.get(product)
    images: list[np.ndarray] = []
    decode_ms: list[float] = []
    items: list[dict[str, Any]] = []
    for index, upload in enumerate(uploads):
        decode_start = time.perf_counter()
        try:
            images.append(decode_or_raise(upload.data, max_pixels, upload.filename))
        except ProblemError as exc:
            error = exc.to_body(f"/products/{product}/score/batch#{index}")
            items.append({"index": index, "filename": upload.filename, "error": error})
            continue
        decode_ms.append(_elapsed_ms(decode_start))
        items.append({"index": index, "filename": upload.filename})

    results = []
    if images:
        with slots:
            results = model.score_batch(images)
    scored = (item for item in items if "error" not in item)
    for item, image, result, ms in zip(scored, images, results, decode_ms, strict=True):
        _count(metrics, product, result)
        outcome = _build_outcome(
            product,
            version,
            model,
            image,
            result,
            map_kind=map_kind,
            timings_ms={"decode": ms},
        )
        item.update(outcome.body)
        if outcome.png is not None:
            item["anomaly_map_png"] = base64.b64encode(outcome.png).decode()
    return version, items
