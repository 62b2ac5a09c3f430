"""The text report of a result (YOLOv5-style tables for mapped and fine classes, skipped files, loss, speed
and cache lines, the distributed section) and its ``--json`` file. Text only: the CLI prints it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from smartcash_core.validation.params import ValidationResult

TABLE_HEADER = ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
MiB = 1024 * 1024
MAX_SKIPPED_LINES = 20


def write_json(result: ValidationResult, path: Path) -> None:
    """The full result (the ``--json`` contract) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")


def format_report(result: ValidationResult) -> str:
    """Mapped table, fine table, skipped files, loss, speed line and cache line (newline-terminated)."""
    metrics, images = result.metrics, result.dataset["images"]
    instances = result.dataset["instances"]
    lines = [
        f"Mapped classes ({metrics['protocol']} protocol)",
        format_table(metrics, images, instances),
        "Fine classes",
        format_table(metrics["fine"], images, instances),
    ]
    skipped = result.dataset["skipped"]
    if skipped:
        lines.append(f"Skipped {len(skipped)} file(s)/line(s):")
        for entry in skipped[:MAX_SKIPPED_LINES]:
            where = f":{entry['line']}" if entry.get("line") else ""
            lines.append(f"  {entry['file']}{where}: {entry['reason']}")
    lines += [f"Warning ({warning['code']}): {warning['message']}" for warning in result.warnings]
    if "loss" in metrics:
        loss = metrics["loss"]
        lines.append(f"Loss: box {loss['box']:.5f}  obj {loss['obj']:.5f}  cls {loss['cls']:.5f}")
    lines += [format_speed(result), format_cache(result.cache)]
    return "\n".join(lines) + "\n"


def format_table(view: dict[str, Any], images: int, instances: int) -> str:
    """YOLOv5 val.py's table: an ``all`` row, then one row per class with ground truth."""
    overall = (view["precision"], view["recall"], view["map50"], view["map50_95"])
    rows = [_row("all", images, instances, *overall)]
    for entry in view["per_class"]:
        rows.append(
            _row(
                entry["name"],
                entry.get("images", images),
                entry["instances"],
                entry["precision"],
                entry["recall"],
                entry["ap50"],
                entry["ap50_95"],
            )
        )
    header = f"{TABLE_HEADER[0]:>22}" + "".join(f"{title:>11}" for title in TABLE_HEADER[1:])
    return "\n".join([header, *rows])


def _row(name: str, images: int, instances: int, *scores: float | None) -> str:
    """One table row; a missing score (P and R under the coco protocol) prints as ``-``."""
    cells = "".join(f"{'-':>11}" if score is None else f"{score:>11.3g}" for score in scores)
    return f"{name:>22}{images:>11}{instances:>11}{cells}"


def format_speed(result: ValidationResult) -> str:
    speed = result.speed_ms_per_image
    return (
        f"Speed: {speed['decode']:.1f}ms decode (background), {speed['preprocess']:.1f}ms pre-process, "
        f"{speed['inference']:.1f}ms inference, {speed['nms']:.1f}ms NMS, {speed['metrics']:.1f}ms metrics "
        f"per image at imgsz {result.params.get('imgsz')} in {result.model.get('precision', 'fp32')}; "
        f"waited {speed.get('loader_wait', 0.0):.1f}ms/img "
        f"on loading; wall {result.wall_s:.2f}s"
    )


def format_cache(cache: dict[str, dict[str, int]], names: Sequence[str] | None = None) -> str:
    parts = []
    for name in names or list(cache):
        info = cache[name]
        parts.append(
            f"{name} {info['entries']} entries {info['bytes'] / MiB:.1f}/{info['max_bytes'] / MiB:.0f} MiB "
            f"(hits {info['hits']}, misses {info['misses']}, evictions {info['evictions']})"
        )
    return "Cache: " + " | ".join(parts)


def format_distributed(section: Mapping[str, Any]) -> str:
    """Lines for the report: the merge costs, then each rank's shard and speed."""
    lines = [
        f"Distributed: {section['world_size']} ranks ({section['backend']}), "
        f"wait {section['wait_s'] * 1000:.1f} ms, gather {section['gather_s'] * 1000:.1f} ms, "
        f"merge {section['merge_s'] * 1000:.1f} ms"
    ]
    for rank in section["ranks"]:
        lines.append(
            f"  rank {rank['rank']}: {rank['images']} images in {rank['wall_s']:.2f} s "
            f"({rank['images_per_s']:.1f} img/s)"
        )
    return "\n".join(lines)
