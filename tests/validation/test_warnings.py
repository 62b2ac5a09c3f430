"""Warnings of a pass: recorded once, merged across shards, carried into the result and the report."""

from __future__ import annotations

from smartcash_core.validation.params import ValidationResult, ValidationWarning
from smartcash_core.validation.report import format_report
from smartcash_core.validation.runner import PassLog


def test_warnings_are_kept_once_and_merge_across_shards() -> None:
    first, second = PassLog(), PassLog()
    first.warn("no_labels", "no label files were found")
    first.warn("no_labels", "no label files were found")
    second.warn("no_labels", "no label files were found")
    second.warn("imgsz_rounded", "imgsz 300 rounded up to 320")
    first.merge(second)
    assert first.warnings == [
        ValidationWarning("no_labels", "no label files were found"),
        ValidationWarning("imgsz_rounded", "imgsz 300 rounded up to 320"),
    ]


def test_report_prints_each_warning_with_its_code() -> None:
    view = {"precision": 0.5, "recall": 0.5, "map50": 0.5, "map50_95": 0.3, "per_class": []}
    result = ValidationResult(
        metrics={"protocol": "yolo", **view, "fine": view},
        dataset={"images": 1, "instances": 0, "skipped": []},
        speed_ms_per_image=dict.fromkeys(("decode", "preprocess", "inference", "nms", "metrics"), 0.0),
        wall_s=0.1,
        cache={},
        params={"imgsz": 320},
        warnings=[ValidationWarning("imgsz_rounded", "imgsz 300 rounded up to 320").to_dict()],
    )
    assert "Warning (imgsz_rounded): imgsz 300 rounded up to 320" in format_report(result)
    expected = [{"code": "imgsz_rounded", "message": "imgsz 300 rounded up to 320"}]
    assert result.to_dict()["warnings"] == expected
