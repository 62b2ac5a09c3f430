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


def test_the_image_size_comes_from_the_checkpoint_and_the_header_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    argv = ["validate", "--weights", str(WEIGHTS), "--data", str(FIXTURES / "val"), "--json", str(out)]
    assert main([*argv, "--workers", "1"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "at imgsz 320 (the checkpoint's)" in header and "yolov5n_banknotes.pt" in header  # opt.imgsz
    assert json.loads(out.read_text())["params"]["imgsz"] == 320


def test_an_image_size_off_the_stride_is_rounded_up_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    argv = ["validate", "--weights", str(WEIGHTS), "--data", str(FIXTURES / "val"), "--imgsz", "33"]
    assert main([*argv, "--json", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "at imgsz 64 (asked 33, rounded up to the stride)" in text.splitlines()[0]
    assert "Warning (imgsz_rounded): imgsz 33 is not a multiple of the model's stride 32" in text
    result = json.loads(out.read_text())
    assert result["params"]["imgsz"] == 64 and [w["code"] for w in result["warnings"]] == ["imgsz_rounded"]


def test_a_mistyped_dataset_suggests_near_names_and_prints_no_progress_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["validate", "--weights", str(WEIGHTS), "--data", str(FIXTURES / "vall")])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"error: dataset path {FIXTURES / 'vall'} does not exist; did you mean {FIXTURES / 'val'}?"
    ]


def test_a_missing_split_is_one_line_without_a_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", "--weights", str(WEIGHTS), "--data", str(FIXTURES / "val"), "--split", "test"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().splitlines() == [
        f"error: {FIXTURES / 'val' / 'data.yaml'} has no 'test' split (it names ['train', 'val'])"
    ]
