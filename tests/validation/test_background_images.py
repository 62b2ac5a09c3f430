"""Background images (no label file) through the whole pass, the CLI and the distributed merge: a set
without any labels succeeds with null metrics and a ``no_labels`` warning; a mixed set gives YOLOv5's
numbers, its background images' predictions counted as false positives."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from smartcash_core.checkpoint import LoadedModel, load_model
from smartcash_core.cli import main
from smartcash_core.validation.accumulators.base import ArrayAccumulator, MergeRule, ResultDraft, StateArrays
from smartcash_core.validation.detections import ProcessedBatch
from smartcash_core.validation.params import UploadedSample, ValidationParams
from smartcash_core.validation.runner import build_result, collect_validation_state, run_validation
from tests.metrics.reference import yolo_reference

FIXTURE_VAL = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"
IMAGES = sorted((FIXTURE_VAL / "images" / "val").glob("*.jpg"))[:10]
PARAMS = ValidationParams(imgsz=192, batch_size=4, device="cpu", workers=0)
NULL_FIELDS = ("map50", "map50_95", "precision", "recall")


@pytest.fixture(scope="module")
def model(trained_weights: Path) -> LoadedModel:
    return load_model(trained_weights, "cpu")


def _dataset(root: Path, labelled: int) -> Path:
    """``images/val`` with the first 10 fixture images; label files for the first ``labelled`` only."""
    (root / "images" / "val").mkdir(parents=True)
    for position, image in enumerate(IMAGES):
        shutil.copyfile(image, root / "images" / "val" / image.name)
        if position < labelled:
            label = FIXTURE_VAL / "labels" / "val" / f"{image.stem}.txt"
            (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(label, root / "labels" / "val" / label.name)
    return root


def _assert_no_label_result(result_dict: dict[str, object], images: int, where: str) -> None:
    metrics = result_dict["metrics"]
    assert isinstance(metrics, dict)
    for view in (metrics, metrics["fine"]):
        assert all(view[name] is None for name in NULL_FIELDS), view
        assert view["per_class"] == []
    rows = result_dict["per_image"]
    assert isinstance(rows, list) and len(rows) == images
    assert all(row["instances"] == 0 and row["tp"] == 0 and row["fn"] == 0 for row in rows)
    assert all(row["fp"] == row["predictions"] for row in rows)
    assert sum(row["predictions"] for row in rows) > 0  # the trained model does find banknotes
    assert result_dict["dataset"]["instances"] == 0  # type: ignore[index]
    warnings = result_dict["warnings"]
    assert isinstance(warnings, list) and [w["code"] for w in warnings] == ["no_labels"]
    assert where in warnings[0]["message"]


@pytest.mark.parametrize("protocol", ["yolo", "coco"])
def test_dataset_without_labels_succeeds_with_null_metrics(
    model: LoadedModel, tmp_path: Path, protocol: str
) -> None:
    root = _dataset(tmp_path / "no_labels", labelled=0)
    params = ValidationParams(**{**PARAMS.to_dict(), "protocol": protocol})
    result = run_validation(model, root, params).to_dict()
    _assert_no_label_result(result, len(IMAGES), "in labels/val/ ")
    assert str(tmp_path) not in result["warnings"][0]["message"]  # relative paths only
    if protocol == "coco":
        assert result["metrics"]["coco_stats"] is None and result["metrics"]["fine"]["coco_stats"] is None
    assert result["metrics"]["classification"]["images"] == len(IMAGES)


def test_upload_without_labels_succeeds_with_null_metrics(model: LoadedModel) -> None:
    samples = [UploadedSample(image.name, image.read_bytes(), None) for image in IMAGES[:4]]
    result = run_validation(model, samples, PARAMS).to_dict()
    _assert_no_label_result(result, 4, "same-stem .txt files in the upload")


def test_cli_without_labels_prints_the_warning_and_exits_0(
    tmp_path: Path, trained_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset(tmp_path / "cli", labelled=0)
    argv = ["validate", "--weights", str(trained_weights), "--data", str(root), "--imgsz", "192",
            "--device", "cpu", "--workers", "0", "--json", str(tmp_path / "out.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Warning (no_labels): no labels found in the 10 validated image(s)" in out
    assert "labels/val/" in out
    all_row = next(line for line in out.splitlines() if line.strip().startswith("all"))
    assert all_row.split()[-4:] == ["-", "-", "-", "-"]  # P, R, mAP50, mAP50-95 undefined


class CapturedDetections(ArrayAccumulator):
    """Every image's predictions and ground truth as the pass hands them to the metrics, in processing
    order: the input of YOLOv5's val.py statistics."""

    name = "captured"

    def __init__(self) -> None:
        self.images: dict[int, dict[str, object]] = {}

    def update(self, batch: ProcessedBatch) -> None:
        for image in batch.images:
            gt = zip(image.gt_boxes.tolist(), image.gt_classes.tolist(), strict=True)
            pred = zip(image.boxes.tolist(), image.scores.tolist(), image.classes.tolist(), strict=True)
            self.images[image.order] = {
                "width": 1,
                "height": 1,
                "gt": [[*box, int(cls)] for box, cls in gt],
                "pred": [[*box, score, int(cls)] for box, score, cls in pred],
            }

    def state(self) -> StateArrays:
        return {}

    def load_state(self, state: Mapping[str, np.ndarray]) -> None:
        raise NotImplementedError

    def merge_rules(self) -> Mapping[str, MergeRule]:
        return {}

    def result(self, into: ResultDraft) -> None:
        raise NotImplementedError


def test_mixed_set_gives_yolov5_numbers(model: LoadedModel, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "mixed", labelled=6)
    result = run_validation(model, root, PARAMS)
    capture = CapturedDetections()
    collect_validation_state(model, root, PARAMS, accumulators=[capture])
    images = [capture.images[order] for order in sorted(capture.images)]
    expected = yolo_reference(images)
    fine = result.metrics["fine"]
    assert fine["map50"] == pytest.approx(expected["map50"], abs=1e-12)
    assert fine["map50_95"] == pytest.approx(expected["map50_95"], abs=1e-12)
    assert [row["id"] for row in fine["per_class"]] == expected["classes"]
    unlabelled = {f"images/val/{image.name}" for image in IMAGES[6:]}
    background = [row for row in result.per_image if row["file"] in unlabelled]
    assert len(background) == 4
    assert all(row["instances"] == 0 and row["fp"] == row["predictions"] for row in background)
    assert sum(row["predictions"] for row in background) > 0
    assert result.warnings == []
    label_files = (root / "labels" / "val" / f"{image.stem}.txt" for image in IMAGES[:6])
    labels = sum(len(file.read_text().splitlines()) for file in label_files)
    assert 0 < result.dataset["instances"] <= labels


def test_shards_merge_to_one_warning_and_null_metrics(model: LoadedModel, tmp_path: Path) -> None:
    """Two shards of a set without labels, merged as ranks are: one ``no_labels`` warning, with the label
    folders the shards looked in, and the single-process result's per-image rows."""
    root = _dataset(tmp_path / "sharded", labelled=0)
    whole = run_validation(model, root, PARAMS)
    first = collect_validation_state(model, root, PARAMS, shard=range(0, 4))
    second = collect_validation_state(model, root, PARAMS, shard=range(4, len(IMAGES)))
    first.merge(second)
    merged = build_result(first, model, PARAMS, wall_s=0.0)
    assert merged.warnings == whole.warnings and len(merged.warnings) == 1
    assert merged.metrics["map50"] is None and merged.per_image == whole.per_image
