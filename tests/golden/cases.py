"""The validation passes whose whole output the golden test pins (see ``test_golden.py``).

Each case runs the pass on the repository's fixtures and returns ``(result_json, metric_state)``:
the JSON contract with the run-dependent fields reduced to their keys (timings, process-wide cache totals,
absolute paths) and the evaluator's state arrays before ``compute()``. ``make_golden.py`` writes them to
``tests/fixtures/golden/``; the test recomputes them and compares.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.validation.accumulators.standard import standard_accumulators
from smartcash_core.validation.distributed import DistContext
from smartcash_core.validation.distributed_pass import ShardState, merge_shards, rank_shard
from smartcash_core.validation.params import UploadedSample, ValidationParams
from smartcash_core.validation.runner import build_result, collect_validation_state, run_validation
from smartcash_core.validation.source import load_source, plan_batches

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
YOLOV5_WEIGHTS = FIXTURES / "yolov5" / "yolov5n_banknotes.pt"
DEMO_WEIGHTS = Path(__file__).resolve().parents[2] / "smartcash_core" / "assets" / "demo_yolov5n.safetensors"
VAL = FIXTURES / "yolov5" / "val"
GOLDEN = FIXTURES / "golden"
RUN_DEPENDENT = ("wall_s", "speed_ms_per_image", "cache", "cache_job")

CaseOutput = tuple[dict[str, Any], dict[str, np.ndarray]]
Case = Callable[[], CaseOutput]


@dataclass(frozen=True)
class Models:
    yolov5: LoadedModel
    demo: LoadedModel


_MODELS: list[Models] = []


def models() -> Models:
    if not _MODELS:
        _MODELS.append(Models(load_model(YOLOV5_WEIGHTS, "cpu"), load_model(DEMO_WEIGHTS, "cpu")))
    return _MODELS[0]


def stable_json(result_dict: dict[str, Any]) -> dict[str, Any]:
    """The result with timings, process-wide cache numbers and absolute paths reduced to what is stable."""
    stable = dict(result_dict)
    for key in RUN_DEPENDENT:  # present, but their values depend on the run: keep their shape only
        value = stable[key]
        stable[key] = sorted(value) if isinstance(value, dict) else type(value).__name__
    stable["model"] = {**stable["model"], "source": Path(stable["model"]["source"]).name}
    # Object addresses that a library may put into a message ("<_io.BytesIO object at 0x7f...>").
    return json.loads(re.sub(r"0x[0-9a-f]{6,}", "0x?", json.dumps(stable)))


def _fixture_pass(model: LoadedModel, params: ValidationParams) -> CaseOutput:
    result = run_validation(model, VAL, params)
    return stable_json(result.to_dict()), result.evaluator.state_arrays()


def yolo_with_loss() -> CaseOutput:
    params = ValidationParams(imgsz=320, batch_size=32, protocol="yolo", compute_loss=True)
    return _fixture_pass(models().yolov5, params)


def coco_square() -> CaseOutput:
    params = ValidationParams(imgsz=320, batch_size=8, protocol="coco", rect=False)
    return _fixture_pass(models().yolov5, params)


def demo_native() -> CaseOutput:
    params = ValidationParams(imgsz=256, batch_size=16, protocol="yolo", compute_loss=True)
    return _fixture_pass(models().demo, params)


def uploaded_batch() -> CaseOutput:
    """Six fixture images with labels, one background image, one broken image and one bad label line."""
    images = sorted((VAL / "images" / "val").glob("*.jpg"))[:8]
    samples = [
        UploadedSample(path.name, path.read_bytes(), _label_text(path)) for path in images[:6]
    ]
    samples.append(UploadedSample(images[6].name, images[6].read_bytes(), None))
    samples.append(UploadedSample("broken.jpg", b"not an image", "0 0.5 0.5 0.1 0.1"))
    bad_line = _label_text(images[7]) + "99 1 2\n"
    samples.append(UploadedSample(images[7].name, images[7].read_bytes(), bad_line))
    params = ValidationParams(imgsz=320, batch_size=4, protocol="yolo")
    result = run_validation(models().yolov5, samples, params)
    return stable_json(result.to_dict()), result.evaluator.state_arrays()


def two_rank_merge() -> CaseOutput:
    """Two simulated ranks (whole batches each), merged on 'rank 0' as the distributed runner does."""
    model = models().yolov5
    params = ValidationParams(imgsz=320, batch_size=8, protocol="coco", compute_loss=True)
    plans = plan_batches(load_source(VAL, params.split, model.class_table.num_fine), params, model.stride)
    shards = []
    for rank in range(2):
        ctx = DistContext(rank, 2, rank, "gloo", model.model.model[0].conv.weight.device)
        state = collect_validation_state(model, VAL, params, shard=rank_shard(plans, ctx))
        shards.append(ShardState.from_state(state))
    merged = merge_shards(shards, standard_accumulators(model, params))
    result = build_result(merged, model, params, wall_s=0.0)
    return stable_json(result.to_dict()), result.evaluator.state_arrays()


def _label_text(image: Path) -> str:
    return (VAL / "labels" / "val" / f"{image.stem}.txt").read_text()


CASES: dict[str, Case] = {
    "yolo_with_loss": yolo_with_loss,
    "coco_square": coco_square,
    "demo_native": demo_native,
    "uploaded_batch": uploaded_batch,
    "two_rank_merge": two_rank_merge,
}
