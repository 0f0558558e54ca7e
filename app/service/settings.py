"""Service settings, read from STRUCTCORE_* environment variables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, SecretStr, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.engine.imageio import DEFAULT_MAX_PIXELS

logger = logging.getLogger(__name__)

_MEGABYTE = 1024 * 1024
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is valid on its own but cannot be used on this machine."""


class Settings(BaseSettings):
    """Every tunable of the service. Each field reads STRUCTCORE_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="STRUCTCORE_", extra="ignore")

    store_dir: Path = Field(
        Path("models_store"),
        description="Folder of the model registry: products, samples, versions.",
    )
    host: str = Field("0.0.0.0", description="Address uvicorn binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port uvicorn binds to.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Torch device for fits and scoring; auto picks CUDA when present.",
    )
    max_upload_bytes: int = Field(
        50 * _MEGABYTE, gt=0, description="Maximum request body size in bytes."
    )
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS,
        gt=0,
        description="Maximum decoded image size in pixels (width x height).",
    )
    max_zip_members: int = Field(
        2000,
        gt=0,
        description="Maximum number of files in one sample upload: multipart parts, "
        "and members of each zip.",
    )
    max_zip_bytes: int = Field(
        1024 * _MEGABYTE,
        gt=0,
        description="Maximum total uncompressed size of one uploaded zip, in bytes.",
    )
    max_batch_images: int = Field(
        64, gt=0, description="Maximum number of images in one batch scoring request."
    )
    api_key: SecretStr | None = Field(
        None,
        description="When set, every route except /healthz, /readyz, /metrics and "
        "the API documentation requires this value in the X-API-Key header.",
    )
    torch_threads: int | None = Field(
        None, gt=0, description="Number of CPU threads torch may use (torch default)."
    )
    fit_workers: int = Field(
        1, gt=0, description="Maximum number of fits running at once."
    )
    concurrent_scores: int = Field(
        1,
        gt=0,
        description="Maximum number of requests whose images the engine scores "
        "at once; the others wait. One engine call already uses every CPU core "
        "through torch and faiss, so more only share the cores and add memory.",
    )
    log_level: str = Field(
        "INFO",
        description="Level of the root logger: DEBUG, INFO, WARNING, ERROR or "
        "CRITICAL, in any case.",
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        """Treat STRUCTCORE_API_KEY="" as unset rather than as an empty key."""
        return None if value == "" else value

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LOG_LEVELS:
            msg = f"unknown log level {value!r}; use one of {', '.join(_LOG_LEVELS)}"
            raise PydanticCustomError("log_level", msg)
        return level


def resolve_device(requested: str) -> str:
    """Return the torch device for a DEVICE setting, logging the choice.

    Raises:
        ConfigError: "cuda" was requested but torch finds no CUDA device.
    """
    cuda_available = torch.cuda.is_available()
    if requested == "auto":
        device = "cuda" if cuda_available else "cpu"
        logger.info(
            "device auto-selected: %s (torch.cuda.is_available()=%s)",
            device,
            cuda_available,
        )
        return device

    if requested == "cuda" and not cuda_available:
        msg = (
            "STRUCTCORE_DEVICE=cuda but torch finds no CUDA device; "
            "set STRUCTCORE_DEVICE=cpu or auto"
        )
        raise ConfigError(msg)
    logger.info("device set by STRUCTCORE_DEVICE: %s", requested)
    return requested
