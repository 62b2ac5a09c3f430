"""``smartcash validate``: progress bar, YOLOv5-style tables (mapped and fine classes), speed and cache lines.

Arguments are parsed in ``smartcash_core.cli``; library errors (missing weights, empty dataset, ...) reach
``cli.run_parsed``, which prints one ``error: ...`` line and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from smartcash_core.validate import ValidationParams, ValidationResult, run_validation

TABLE_HEADER = ("Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95")
MiB = 1024 * 1024


class InvalidArguments(ValueError):
    """Command-line values the pass refuses (printed as one line, exit code 2)."""


def params_from_args(args: argparse.Namespace) -> ValidationParams:
    """The pass's parameters from parsed ``validate`` arguments."""
    return ValidationParams(
        imgsz=args.imgsz,
        batch_size=args.batch,
        conf_thres=args.conf,
        iou_thres=args.iou,
        max_det=args.max_det,
        multi_label=True,
        rect=not args.no_rect,
        protocol=args.protocol,
        device=args.device,
        half=args.half,
        workers=args.workers,
        split=args.split,
        compute_loss=args.loss,
        fast_decode=args.fast_decode,
    )


def cli_validate(args: argparse.Namespace) -> int:
    """Load the checkpoint, validate with a progress bar, print the report; 0 on success, 2 on bad input."""
    from smartcash_core.checkpoint import load_model
    from smartcash_core.distributed import run_cli_if_distributed

    distributed_exit_code = run_cli_if_distributed(args)  # under torchrun: shard, merge, rank 0 reports
    if distributed_exit_code is not None:
        return distributed_exit_code
    params = params_from_args(args)
    model = load_model(args.weights, params.device)
    try:
        result = _run_with_progress_bar(model, args.data, params)
    except ValueError as exc:  # parameter errors from the pass (library errors go to cli.run_parsed)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(result, sys.stdout)
    if args.json_out:
        write_json(result, Path(args.json_out))
    if args.plots:
        _write_plots(result, Path(args.plots))
    return 0


def _run_with_progress_bar(model: Any, data: str, params: ValidationParams) -> ValidationResult:
    from tqdm import tqdm

    with tqdm(desc="validate", unit="img", file=sys.stderr, dynamic_ncols=True) as bar:

        def on_progress(done: int, total: int, stage: str) -> None:
            if bar.total != total:
                bar.reset(total=total)
            bar.update(done - bar.n)

        return run_validation(model, data, params, on_progress=on_progress)


def write_json(result: ValidationResult, path: Path) -> None:
    """The full result (the ``--json`` contract) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1) + "\n", encoding="utf-8")


def _write_plots(result: ValidationResult, directory: Path) -> None:
    from smartcash_core.plots import write_plots

    for written in write_plots(result, directory):
        print(f"plot: {written}")


# ----------------------------------------------------------------------------------------------------------
# Report text
# ----------------------------------------------------------------------------------------------------------


def print_report(result: ValidationResult, out: TextIO) -> None:
    """Mapped table, fine table, skipped files, speed line and cache line."""
    metrics, images = result.metrics, result.dataset["images"]
    instances = result.dataset["instances"]
    out.write(f"Mapped classes ({metrics['protocol']} protocol)\n")
    out.write(format_table(metrics, images, instances) + "\n")
    out.write("Fine classes\n")
    out.write(format_table(metrics["fine"], images, instances) + "\n")
    skipped = result.dataset["skipped"]
    if skipped:
        out.write(f"Skipped {len(skipped)} file(s)/line(s):\n")
        for entry in skipped[:20]:
            where = f":{entry['line']}" if entry.get("line") else ""
            out.write(f"  {entry['file']}{where}: {entry['reason']}\n")
    if "loss" in metrics:
        loss = metrics["loss"]
        out.write(f"Loss: box {loss['box']:.5f}  obj {loss['obj']:.5f}  cls {loss['cls']:.5f}\n")
    out.write(format_speed(result) + "\n")
    out.write(format_cache(result.cache) + "\n")


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
        f"per image at imgsz {result.params.get('imgsz')}; waited {speed.get('loader_wait', 0.0):.1f}ms/img "
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
