"""Routes for products and their good samples."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from app.service import products
from app.service.context import ServicesDep, require_api_key
from app.service.problems import problem_responses
from app.service.routes.params import ProductName
from app.service.samples import ingest_samples
from app.service.schemas import (
    ProductCreate,
    ProductOut,
    SampleOut,
    SamplesUploadOut,
)
from app.service.uploads import read_file_parts

router = APIRouter(
    prefix="/products",
    tags=["products"],
    dependencies=[Depends(require_api_key)],
    responses=problem_responses(401),
)

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "Good images (PNG, JPEG, BMP, TIFF, "
                            "WebP) or zip archives of them.",
                        }
                    },
                    "required": ["files"],
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=ProductOut,
    responses=problem_responses(409, 422),
)
def create_product(body: ProductCreate, services: ServicesDep) -> dict[str, Any]:
    """Create a product with optional engine settings."""
    return products.create_product(services, body.name, body.settings)


@router.get("", response_model=list[ProductOut])
def list_products(services: ServicesDep) -> list[dict[str, Any]]:
    """List every product."""
    return [products.describe(services, p) for p in services.store.list_products()]


@router.get(
    "/{product}", response_model=ProductOut, responses=problem_responses(404, 422)
)
def get_product(product: ProductName, services: ServicesDep) -> dict[str, Any]:
    """Describe one product: settings, sample count, active version."""
    return products.describe(services, services.store.get_product(product))


@router.delete(
    "/{product}", status_code=204, responses=problem_responses(404, 409, 422)
)
def delete_product(product: ProductName, services: ServicesDep) -> Response:
    """Delete a product with all its samples and model versions."""
    products.delete_product(services, product)
    return Response(status_code=204)


@router.post(
    "/{product}/samples",
    response_model=SamplesUploadOut,
    responses=problem_responses(404, 413, 415, 422),
    openapi_extra=_UPLOAD_BODY,
)
async def upload_samples(
    product: ProductName, request: Request, services: ServicesDep
) -> dict[str, Any]:
    """Store good images, sent as multipart parts `files` (images or zips).

    Each image is decoded on arrival and stored once, keyed by the sha256 of
    its bytes. Files that are not images are listed under `rejected`.
    """
    await run_in_threadpool(services.store.get_product, product)
    parts = await read_file_parts(request, services.settings.max_zip_members)
    report = await run_in_threadpool(
        ingest_samples, services.store, product, parts, services.settings
    )
    return {
        "accepted": report.accepted,
        "rejected": report.rejected,
        "num_samples": await run_in_threadpool(services.store.count_samples, product),
    }


@router.get(
    "/{product}/samples",
    response_model=list[SampleOut],
    responses=problem_responses(404, 422),
)
def list_samples(product: ProductName, services: ServicesDep) -> list[Any]:
    """List the product's good samples, oldest first."""
    return services.store.list_samples(product)


@router.delete(
    "/{product}/samples/{sample_id}",
    status_code=204,
    responses=problem_responses(404, 422),
)
def delete_sample(
    product: ProductName, sample_id: str, services: ServicesDep
) -> Response:
    """Delete one good sample; fitted versions keep what they learned from it."""
    services.store.delete_sample(product, sample_id)
    return Response(status_code=204)
