"""Request and response bodies of the HTTP API, with OpenAPI examples."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import timm
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from app.service.store import (
    PRODUCT_NAME_PATTERN,
    PRODUCT_NAME_RULE,
    is_valid_product_name,
    is_valid_version,
)

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def check_backbone(name: str) -> str:
    """Check that a backbone name is a timm model, so a typo fails before a fit."""
    if not timm.is_model(name):
        msg = (
            f"backbone {name!r} is not a timm model name; use one such as "
            "tf_efficientnet_lite0 or wide_resnet50_2"
        )
        raise PydanticCustomError("unknown_backbone", msg)
    return name


def check_product_name(name: str) -> str:
    """Check a product name, raising an error that names it and the rule."""
    if not is_valid_product_name(name):
        # No context is passed, so braces in the name are not template fields.
        msg = f"product name {name!r} is invalid; {PRODUCT_NAME_RULE}"
        raise PydanticCustomError("invalid_product_name", msg)
    return name


def check_version(version: str) -> str:
    """Check a model version name, raising an error that names it."""
    if not is_valid_version(version):
        msg = (
            f"model version {version!r} is invalid; use 'v' and a number, such "
            "as v1, as listed by GET /products/{product}/models"
        )
        raise PydanticCustomError("invalid_version", msg)
    return version


# Names checked by a validator, for its message, in place of `pattern=`. The
# pattern goes into the OpenAPI schema through json_schema_extra at each use.
ProductNameStr = Annotated[str, AfterValidator(check_product_name)]
VersionStr = Annotated[str, AfterValidator(check_version)]


class ProductSettings(BaseModel):
    """Engine settings a client may choose; omitted ones keep engine defaults."""

    model_config = ConfigDict(extra="forbid")

    backbone: Annotated[str, AfterValidator(check_backbone)] | None = Field(
        None, examples=["tf_efficientnet_lite0"]
    )
    image_size: int | tuple[int, int] | Literal["auto"] | None = Field(
        None,
        description="Working resolution in pixels, 32 to 2048 a side: one side "
        "for a square, or [height, width]. It takes precedence over short_side. "
        "'auto' (the engine default) sets it at each fit from the samples: the "
        "shorter side is short_side and the longer one follows their median "
        "aspect ratio, rounded to a multiple of 16 and at most 4 times the "
        "shorter. 'auto' also undoes an image_size set earlier.",
        examples=["auto"],
    )
    short_side: int | None = Field(
        None,
        ge=32,
        le=2048,
        description="Shorter side in pixels of the working resolution that a "
        "fit sets when image_size is 'auto'.",
        examples=[256],
    )
    center_crop: int | None = Field(None, gt=0, description="Crop side in pixels.")
    coreset_ratio: float | None = Field(None, gt=0, le=1, examples=[0.1])
    num_neighbors: int | None = Field(None, gt=0, examples=[1])
    index_type: Literal["flat", "ivfflat", "ivfpq"] | None = Field(
        None,
        description="Bank search: 'flat' is exact; 'ivfflat' probes inverted "
        "lists and is several times faster with near-exact scores; 'ivfpq' "
        "compresses the bank and loses accuracy.",
        examples=["ivfflat"],
    )
    target_false_reject_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Share of good parts the calibrated threshold may reject.",
        examples=[0.01],
    )

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        """Name the unknown keys and list the valid ones."""
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in set(data) - set(cls.model_fields))
            if unknown:
                noun = "setting" if len(unknown) == 1 else "settings"
                names = ", ".join(repr(key) for key in unknown)
                valid = ", ".join(cls.model_fields)
                msg = f"unknown product {noun} {names}; valid settings are {valid}"
                raise PydanticCustomError("unknown_setting", msg)
        return data

    def changes(self) -> dict[str, Any]:
        """Return the set fields as EngineConfig.replace keyword arguments."""
        changes = self.model_dump(exclude_none=True)
        size = changes.get("image_size")
        if isinstance(size, int):
            changes["image_size"] = (size, size)
        elif size == "auto":
            changes["image_size"] = None  # EngineConfig sets it at fit
        return changes


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProductNameStr = Field(
        description="1 to 64 lowercase letters, digits, '-' or '_', starting with "
        "a letter or digit.",
        examples=["bottle"],
        json_schema_extra={"pattern": PRODUCT_NAME_PATTERN},
    )
    settings: ProductSettings | None = None


class ProductOut(BaseModel):
    name: str = Field(examples=["bottle"])
    created: str = Field(examples=["2026-02-20T09:30:00.000+00:00"])
    settings: dict[str, Any] = Field(description="Full EngineConfig of the next fit.")
    num_samples: int = Field(examples=[200])
    active_version: str | None = Field(examples=["v2"])
    fit_job: str | None = Field(None, description="Id of the unfinished fit job.")


class SampleOut(BaseModel):
    id: str = Field(examples=["3f2a9c0d51e7b8a4"])
    sha256: str
    filename: str = Field(examples=["000.png"])
    format: str = Field(examples=["png"])
    width: int = Field(examples=[512])
    height: int = Field(examples=[512])
    size_bytes: int
    added: str


class AcceptedSample(BaseModel):
    id: str = Field(examples=["3f2a9c0d51e7b8a4"])
    sha256: str
    filename: str = Field(examples=["000.png"])
    archive: str | None = Field(None, description="Zip the image came from.")
    duplicate: bool = Field(description="True when these bytes were stored already.")
    width: int
    height: int


class RejectedFile(BaseModel):
    filename: str = Field(examples=["notes.txt"])
    archive: str | None = None
    reason: str = Field(examples=["not_an_image"])
    detail: str


class SamplesUploadOut(BaseModel):
    accepted: list[AcceptedSample]
    rejected: list[RejectedFile]
    num_samples: int = Field(description="Good samples of the product after upload.")


class FitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settings: ProductSettings | None = Field(
        None, description="Overrides of the product's settings for this fit only."
    )
    activate: bool = Field(True, description="Serve the new version once fitted.")


class JobOut(BaseModel):
    id: str = Field(examples=["6b1f0e9a2c4d4e7f8a9b0c1d2e3f4a5b"])
    product: str = Field(examples=["bottle"])
    state: JobState
    progress: float = Field(ge=0, le=1, examples=[0.42])
    stage: str | None = Field(examples=["coreset"])
    error: str | None = None
    model_version: str | None = Field(examples=["v3"])
    activate: bool
    settings: dict[str, Any]
    created: str
    started: str | None
    finished: str | None


class VersionOut(BaseModel):
    version: str = Field(examples=["v2"])
    active: bool
    created: str
    job_id: str | None
    num_samples: int | None
    threshold: float = Field(description="Decision threshold on the image score.")
    threshold_override: dict[str, Any] | None = Field(
        None, description="Threshold set with PATCH, if any."
    )
    summary: dict[str, Any] = Field(description="StructCoreModel.summary() at fit.")


class ThresholdPatch(BaseModel):
    """Exactly one of `threshold` and `target_false_reject_rate`."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"threshold": 1.5}]}
    )

    threshold: float | None = Field(None, description="Image score threshold.")
    target_false_reject_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Recalibrate the threshold to reject this share of good parts.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ThresholdPatch:
        if (self.threshold is None) == (self.target_false_reject_rate is None):
            msg = "send exactly one of 'threshold' and 'target_false_reject_rate'"
            raise ValueError(msg)
        return self


class ScoreOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    product: str = Field(examples=["bottle"])
    model_version: str = Field(examples=["v2"])
    image_score: float = Field(description="Structure-aware image score.")
    max_score: float = Field(description="Largest value of the anomaly map.")
    structural_distance: float
    descriptor: dict[str, float] = Field(
        examples=[{"std": 0.31, "top1_mean": 2.4, "total_variation": 0.05}]
    )
    z_scores: dict[str, float]
    threshold: float
    is_anomalous: bool
    normality: float = Field(
        ge=0,
        le=1,
        description="Share of good calibration images that scored lower.",
    )
    width: int = Field(examples=[512])
    height: int = Field(examples=[512])
    timings_ms: dict[str, float]
    anomaly_map_png: str | None = Field(
        None, description="Base64 PNG of the anomaly map, when requested."
    )


class BatchScored(ScoreOut):
    index: int = Field(description="Position of the file in the request.")
    filename: str


class BatchFailed(BaseModel):
    index: int = Field(description="Position of the file in the request.")
    filename: str
    error: dict[str, Any] = Field(description="Problem object (RFC 9457).")


class BatchOut(BaseModel):
    product: str
    model_version: str
    results: list[BatchScored | BatchFailed]


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    detail: str | None = None
