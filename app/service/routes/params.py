"""Path parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from app.service.schemas import ProductNameStr, VersionStr
from app.service.store import PRODUCT_NAME_PATTERN, VERSION_PATTERN

ProductName = Annotated[
    ProductNameStr,
    Path(
        description="Product name: 1 to 64 lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit.",
        examples=["bottle"],
        json_schema_extra={"pattern": PRODUCT_NAME_PATTERN},
    ),
]
Version = Annotated[
    VersionStr,
    Path(
        description="Model version.",
        examples=["v1"],
        json_schema_extra={"pattern": VERSION_PATTERN},
    ),
]
