"""Routes that score images with a product's active model."""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.service.context import ServicesDep, require_api_key
from app.service.problems import problem_responses
from app.service.routes.params import ProductName
from app.service.schemas import BatchOut, ScoreOut
from app.service.scoring import MapKind, score_upload, score_uploads
from app.service.uploads import (
    MULTIPART,
    RAW_IMAGE_TYPES,
    Upload,
    base_name,
    read_file_parts,
    read_single_image,
)

router = APIRouter(
    prefix="/products/{product}",
    tags=["scoring"],
    dependencies=[Depends(require_api_key)],
    responses=problem_responses(401, 404, 409, 413, 415, 422),
)

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_SCORE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The image, as multipart part `file` or as the raw body.",
        "content": {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            **{media: _BINARY for media in sorted(RAW_IMAGE_TYPES)},
        },
    }
}
_BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        }
                    },
                    "required": ["files"],
                }
            }
        },
    }
}
_PNG_RESPONSE = {
    200: {
        "description": "Scores as JSON, or the anomaly map PNG when the request "
        "sends `Accept: image/png`.",
        "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        "headers": {
            "X-Image-Score": {"schema": {"type": "number"}},
            "X-Is-Anomalous": {"schema": {"type": "boolean"}},
            "X-Model-Version": {"schema": {"type": "string"}},
        },
    }
}

IncludeMap = Annotated[
    bool, Query(description="Add the grayscale anomaly map as base64 PNG.")
]
MapQuery = Annotated[
    MapKind | None,
    Query(
        alias="map",
        description="Anomaly map to return: `gray` (map on the model's fixed "
        "scale) or `overlay` (colour map over the image).",
    ),
]


def prefers_png(accept: str | None) -> bool:
    """Return whether an Accept header ranks image/png above JSON."""
    if not accept:
        return False
    quality: dict[str, float] = {}
    for entry in accept.split(","):
        media, *params = (token.strip() for token in entry.split(";"))
        value = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    value = float(param[2:])
                except ValueError:
                    value = 0.0
        media = media.lower()
        quality[media] = max(quality.get(media, 0.0), value)
    png = max(quality.get("image/png", 0.0), quality.get("image/*", 0.0))
    json = max(quality.get("application/json", 0.0), quality.get("application/*", 0.0))
    return png > 0.0 and png > json


def _png_response(body: dict[str, Any], png: bytes) -> Response:
    headers = {
        "X-Image-Score": repr(body["image_score"]),
        "X-Is-Anomalous": "true" if body["is_anomalous"] else "false",
        "X-Model-Version": body["model_version"],
    }
    return Response(png, media_type="image/png", headers=headers)


@router.post(
    "/score",
    response_model=ScoreOut,
    responses=_PNG_RESPONSE,
    openapi_extra=_SCORE_BODY,
)
async def score(
    product: ProductName,
    request: Request,
    services: ServicesDep,
    include_map: IncludeMap = False,
    map_kind: MapQuery = None,
) -> Any:
    """Score one image: image score, decision, and optionally the anomaly map.

    Send the image as multipart part `file` or as the raw body with its image
    Content-Type. With `Accept: image/png` the body is the anomaly map PNG at
    the input's size and the scores are in X-* headers.
    """
    await run_in_threadpool(services.models.get, product)
    upload = await read_single_image(request)
    wants_png = prefers_png(request.headers.get("accept"))
    kind = map_kind or ("gray" if include_map or wants_png else None)

    outcome = await run_in_threadpool(
        score_upload,
        services.models,
        services.metrics,
        product,
        upload,
        max_pixels=services.settings.max_image_pixels,
        map_kind=kind,
        slots=services.scoring_slots,
    )
    request.state.model_version = outcome.body["model_version"]
    if wants_png and outcome.png is not None:
        return _png_response(outcome.body, outcome.png)
    if outcome.png is not None:
        outcome.body["anomaly_map_png"] = base64.b64encode(outcome.png).decode()
    return outcome.body


@router.post("/score/batch", response_model=BatchOut, openapi_extra=_BATCH_BODY)
async def score_batch(
    product: ProductName,
    request: Request,
    services: ServicesDep,
    include_map: IncludeMap = False,
    map_kind: MapQuery = None,
) -> dict[str, Any]:
    """Score several images (multipart parts `files`), returning results in order.

    An image that cannot be decoded gets an `error` problem object and the
    other images are still scored.
    """
    await run_in_threadpool(services.models.get, product)
    parts = await read_file_parts(request, services.settings.max_batch_images)
    uploads = [Upload(base_name(part.filename), await part.read()) for part in parts]
    kind = map_kind or ("gray" if include_map else None)

    version, items = await run_in_threadpool(
        score_uploads,
        services.models,
        services.metrics,
        product,
        uploads,
        max_pixels=services.settings.max_image_pixels,
        map_kind=kind,
        slots=services.scoring_slots,
    )
    request.state.model_version = version
    return {"product": product, "model_version": version, "results": items}
