"""Read: the source of a pass as a checked dataset index, its batches and the order they are processed in.

Decoding and letterboxing happen in :class:`smartcash_core.data.loader.BatchLoader`, which the runner feeds
with the plans made here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.data.dataset import DatasetIndex, load_uploaded_samples, load_yolo_dataset
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.data.loader import BatchPlan, ImageRef, rect_batch_plans
from smartcash_core.errors import DatasetError
from smartcash_core.validation.params import ValidationParams, ValidationSource


def load_source(
    source: ValidationSource, split: str, num_classes: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
) -> DatasetIndex:
    """A dataset directory / ``data.yaml`` path, or uploaded samples, as a checked ``DatasetIndex``; images
    over ``max_pixels`` are reported and skipped."""
    if isinstance(source, (str, Path)):
        return load_yolo_dataset(source, split=split, num_classes=num_classes, max_pixels=max_pixels)
    if not source:
        raise DatasetError("the upload holds no samples")
    return load_uploaded_samples(list(source), num_classes=num_classes, max_pixels=max_pixels)


def plan_batches(index: DatasetIndex, params: ValidationParams, stride: int) -> list[BatchPlan]:
    """The batches of a full single-process pass, in processing order (YOLOv5 rectangular order).

    ``[ref.index for ref in plan.refs]`` gives each batch's global sample indices: a distributed runner
    hands each rank a contiguous run of whole batches as its ``shard``, so every rank's batches (images,
    shapes, padding) are those of the single-process run.
    """
    refs = []
    for position, sample in enumerate(index.samples):
        height, width = sample.shape or (0, 0)
        refs.append(ImageRef(position, sample.name, sample.image_path, sample.data, width, height))
    return rect_batch_plans(refs, params.imgsz, params.batch_size, stride, params.rect)


def processing_order(plans: Sequence[BatchPlan]) -> dict[int, int]:
    """Sample index -> position in the full pass's processing order (the metric state's image id).

    YOLOv5's val.py concatenates predictions in the order its (rectangular) loader yields images, and its
    non-stable ``argsort`` decides score ties by that order; keying images by this position reproduces it,
    and shards of contiguous batches keep the same global ids.
    """
    refs = (ref for plan in plans for ref in plan.refs)
    return {ref.index: position for position, ref in enumerate(refs)}


def shard_plans(plans: list[BatchPlan], shard: Sequence[int] | None, count: int) -> list[BatchPlan]:
    """Keep only the shard's images; each keeps its batch shape from the full pass."""
    if shard is None:
        return plans
    wanted = set(shard)
    bad = sorted(position for position in wanted if not 0 <= position < count)
    if bad:
        raise ValueError(f"shard indices {bad[:5]} are outside the dataset (0..{count - 1})")
    kept = [replace(plan, refs=tuple(ref for ref in plan.refs if ref.index in wanted)) for plan in plans]
    return [plan for plan in kept if plan.refs]


@dataclass(frozen=True)
class PassPlan:
    """What one pass (or one shard of it) reads, and how each image is known to the accumulators.

    ``labels``/``names`` are keyed by sample index; ``order`` maps a sample index to its position in the
    full pass's processing order (see :func:`processing_order`). ``label_locations`` says where the labels
    were looked for (``DatasetIndex.label_locations``), for the warning of a pass that finds none.
    """

    plans: list[BatchPlan]
    labels: Mapping[int, np.ndarray]
    names: Mapping[int, str]
    order: Mapping[int, int]
    skipped: list[dict[str, Any]]
    label_locations: str = ""

    @property
    def total_images(self) -> int:
        return len(self.names)


def plan_pass(
    source: ValidationSource, params: ValidationParams, num_classes: int, stride: int,
    shard: Sequence[int] | None = None, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> PassPlan:
    """Index ``source``, plan the full pass's batches, and keep the ``shard``'s (all when ``None``)."""
    index = load_source(source, params.split, num_classes, max_pixels)
    full_plans = plan_batches(index, params, stride)
    plans = shard_plans(full_plans, shard, len(index.samples))
    samples = [(ref.index, index.samples[ref.index]) for plan in plans for ref in plan.refs]
    return PassPlan(
        plans=plans,
        labels={position: sample.labels for position, sample in samples},
        names={position: sample.name for position, sample in samples},
        order=processing_order(full_plans),
        skipped=[entry.to_dict() for entry in index.report],
        label_locations=index.label_locations(),
    )
