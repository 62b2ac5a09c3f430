"""Wire schemas of ``POST /v1/comparisons`` (kept apart from ``schemas``: one resource, one module)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from service.schemas import JOB_ID_PATTERN

Verdict = Literal["better", "worse", "no significant difference"]


class ComparisonRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "baseline": "0f5c2a9e8b7d4c3a9e1f0a2b3c4d5e6f",
                    "candidate": "9a8b7c6d5e4f30211f2e3d4c5b6a7988",
                    "resamples": 1000,
                    "seed": 0,
                    "confidence": 0.95,
                }
            ]
        },
    )
    baseline: str = Field(pattern=JOB_ID_PATTERN, description="id of the baseline validation (succeeded)")
    candidate: str = Field(pattern=JOB_ID_PATTERN, description="id of the candidate validation (succeeded)")
    resamples: int = Field(
        1000, ge=1, le=100_000, description="bootstrap resamples (at most SMARTCASH_COMPARISON_MAX_RESAMPLES)"
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the image draws: same seed, same answer")
    confidence: float = Field(0.95, ge=0.5, le=0.999, description="level of the intervals")


class DeltaOut(BaseModel):
    baseline: float = Field(description="the baseline's value on all images")
    candidate: float = Field(description="the candidate's value on all images")
    delta: float = Field(description="candidate - baseline")
    ci: list[float] | None = Field(
        description="[low, high] interval of the difference (null: no resample defined it)",
        examples=[[-0.02, -0.01]],
    )
    verdict: Verdict = Field(
        description="better / worse: the interval excludes 0; else no significant difference"
    )
    resamples: int = Field(description="resamples that defined the number (a class can be absent from some)")


class ClassDeltaOut(BaseModel):
    id: int
    name: str
    ap50: DeltaOut
    ap50_95: DeltaOut


class ViewDeltaOut(BaseModel):
    map50: DeltaOut
    map50_95: DeltaOut
    per_class: list[ClassDeltaOut] = Field(description="classes with ground truth in the images")


class ComparisonModels(BaseModel):
    baseline: str
    candidate: str


class ComparisonResponse(BaseModel):
    baseline: str = Field(description="baseline job id")
    candidate: str = Field(description="candidate job id")
    models: ComparisonModels = Field(description="model names the two jobs ran with")
    protocol: Literal["yolo", "coco"]
    method: str = Field(examples=["paired bootstrap over images (percentile interval)"])
    interval: Literal["percentile", "basic", "bc"]
    resamples: int
    seed: int
    confidence: float
    images: int = Field(description="images both jobs validated (the resampled unit)")
    mapped: ViewDeltaOut = Field(description="the 8 mapped classes (headline)")
    fine: ViewDeltaOut = Field(description="the 17 fine classes")
