"""Path parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from app.service.store import PRODUCT_NAME_PATTERN, VERSION_PATTERN

ProductName = Annotated[
    str,
    Path(
        pattern=PRODUCT_NAME_PATTERN,
        description="Product name: lowercase letters, digits, '-' and '_'.",
        examples=["bottle"],
    ),
]
Version = Annotated[
    str,
    Path(pattern=VERSION_PATTERN, description="Model version.", examples=["v1"]),
]
