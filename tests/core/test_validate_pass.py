"""run_validation end to end: val.py parity, synthetic set, uploads, progress, cancel, shards, cache."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from smartcash_core.cache import clear_data_caches, get_cache_info
from smartcash_core.errors import Cancelled, DatasetError
from smartcash_core.validation.params import UploadedSample, ValidationParams
from smartcash_core.validation.runner import run_validation
from smartcash_core.validation.source import plan_batches

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5"
WEIGHTS = FIXTURES / "yolov5n_banknotes.pt"
VAL = FIXTURES / "val"
PARITY_TOLERANCE = 0.005


@pytest.fixture(scope="module")
def yolo_model():  # type: ignore[no-untyped-def]
    from smartcash_core.checkpoint import load_model

    return load_model(WEIGHTS, "cpu")


def decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("smartcash-decode")]


def test_reproduces_yolov5_val_py_on_the_fixture(yolo_model) -> None:  # type: ignore[no-untyped-def]
    expected = json.loads((FIXTURES / "expected.json").read_text())["val"]
    result = run_validation(yolo_model, VAL, ValidationParams(imgsz=320, batch_size=32, protocol="yolo"))
    fine = result.metrics["fine"]
    for ours, theirs in (
        ("precision", "precision"),
        ("recall", "recall"),
        ("map50", "map50"),
        ("map50_95", "map50_95"),
    ):
        assert abs(fine[ours] - expected[theirs]) <= PARITY_TOLERANCE, (ours, fine[ours], expected[theirs])
    per_class = {entry["id"]: entry for entry in fine["per_class"]}
    assert len(per_class) == len(expected["per_class_map50"]) == 17
    for class_id, want in enumerate(expected["per_class_map50"]):
        assert abs(per_class[class_id]["ap50"] - want) <= 0.02
    assert result.dataset["images"] == 40 and result.dataset["skipped"] == []


def test_synthetic_set_result_contract_and_warm_cache(yolo_model, synthetic_dataset: Path) -> None:  # type: ignore[no-untyped-def]
    clear_data_caches()
    params = ValidationParams(imgsz=160, batch_size=8, protocol="yolo")
    cold = run_validation(yolo_model, synthetic_dataset, params)
    hits_before = get_cache_info()["image"]["hits"]
    warm = run_validation(yolo_model, synthetic_dataset, params)
    assert get_cache_info()["image"]["hits"] - hits_before == 24  # second pass decodes nothing
    assert warm.metrics["map50"] == cold.metrics["map50"]
    data = cold.to_dict()
    json.dumps(data)  # the contract is JSON-serializable
    metrics = data["metrics"]
    assert {"map50", "map50_95", "precision", "recall", "per_class", "fine", "classification"} <= set(metrics)
    assert all(0 <= entry["id"] < 8 for entry in metrics["per_class"])
    assert {"id", "name", "ap50", "ap50_95", "precision", "recall", "instances"} <= set(
        metrics["per_class"][0]
    )
    label_rows = sum(
        1
        for path in (synthetic_dataset / "labels" / "val").glob("*.txt")
        for line in path.read_text().splitlines()
        if line.strip()
    )
    assert data["dataset"]["images"] == 24 and data["dataset"]["instances"] == label_rows
    assert sum(entry["instances"] for entry in metrics["fine"]["per_class"]) == label_rows
    assert len(data["per_image"]) == 24 and metrics["classification"]["images"] == 24
    assert set(data["speed_ms_per_image"]) >= {"decode", "preprocess", "inference", "nms", "metrics"}
    assert set(data["cache"]) == {"image", "label", "model", "tensor"}


def test_uploads_report_bad_files(yolo_model) -> None:  # type: ignore[no-untyped-def]
    images = sorted((VAL / "images" / "val").glob("*.jpg"))[:5]
    samples = [
        UploadedSample(
            path.name, path.read_bytes(), (VAL / "labels" / "val" / f"{path.stem}.txt").read_text()
        )
        for path in images
    ]
    samples.append(UploadedSample("broken.jpg", b"\xff\xd8 not really a jpeg", None))
    result = run_validation(yolo_model, samples, ValidationParams(imgsz=160, batch_size=4))
    assert result.dataset["images"] == 5
    assert [entry["file"] for entry in result.dataset["skipped"]] == ["broken.jpg"]
    with pytest.raises(DatasetError):
        run_validation(yolo_model, [], ValidationParams(imgsz=160))


def test_progress_then_cancel_leaves_no_threads(yolo_model) -> None:  # type: ignore[no-untyped-def]
    calls: list[tuple[int, int, str]] = []
    cancel = threading.Event()

    def on_progress(done: int, total: int, stage: str) -> None:
        calls.append((done, total, stage))
        cancel.set()

    with pytest.raises(Cancelled):
        run_validation(yolo_model, VAL, ValidationParams(imgsz=160, batch_size=8), on_progress, cancel)
    assert calls == [(8, 40, "validate")]
    assert decode_threads() == []
    progress: list[int] = []
    run_validation(
        yolo_model, VAL, ValidationParams(imgsz=160, batch_size=16), lambda d, t, s: progress.append(d)
    )
    assert progress == [16, 32, 40] and decode_threads() == []


def test_shards_of_whole_batches_cover_the_pass(yolo_model) -> None:  # type: ignore[no-untyped-def]
    from smartcash_core.data.dataset import load_yolo_dataset

    params = ValidationParams(imgsz=160, batch_size=8)
    plans = plan_batches(load_yolo_dataset(VAL), params, yolo_model.stride)
    first = [ref.index for plan in plans[:2] for ref in plan.refs]
    result = run_validation(yolo_model, VAL, params, shard=first)
    assert sorted(row["index"] for row in result.per_image) == sorted(first)
    with pytest.raises(ValueError, match="outside the dataset"):
        run_validation(yolo_model, VAL, params, shard=[400])
