"""``smartcash validate`` through the library CLI: tables, --json contract, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from smartcash_core.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5"
WEIGHTS = FIXTURES / "yolov5n_banknotes.pt"


def test_missing_weights_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--weights", str(tmp_path / "nope.pt"), "--data", str(FIXTURES / "val")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "nope.pt" in err[0] and err[0].startswith("error:")


def test_empty_dataset_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images" / "val").mkdir(parents=True)
    code = main(["validate", "--weights", str(WEIGHTS), "--data", str(tmp_path), "--imgsz", "160"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and err[-1].startswith("error:") and "no images" in err[-1]


def test_tables_and_json_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "result.json"
    argv = [
        "validate",
        "--weights",
        str(WEIGHTS),
        "--data",
        str(FIXTURES / "val" / "data.yaml"),
        "--imgsz",
        "160",
        "--batch",
        "16",
        "--json",
        str(out),
        "--loss",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "mAP50-95" in text and "Speed:" in text and "Cache: image" in text and "Loss: box" in text
    assert "100000_whole" in text and "feature" in text
    data = json.loads(out.read_text())
    assert {"metrics", "dataset", "speed_ms_per_image", "cache", "per_image", "params", "model"} <= set(data)
    assert {"map50", "map50_95", "precision", "recall", "per_class", "fine", "classification"} <= set(
        data["metrics"]
    )
    assert data["dataset"]["images"] == 40 and data["params"]["imgsz"] == 160
    assert data["params"]["compute_loss"] and data["metrics"]["loss"]["total"] > 0
