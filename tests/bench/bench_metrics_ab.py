"""A/B benchmark: the metrics engine of this working tree against the one of a git ref, in one process.

A restructuring must not make the engine slower. Timing two trees one after the other on a shared machine
mostly measures the neighbours (and two processes differ in memory layout), so this imports both engines
into one process (the ref's ``smartcash_core`` extracted with ``git archive`` and renamed
``smartcash_ref``) and alternates them call by call on the same workload (``bench_metrics.make_workload``),
timing process CPU seconds of ``update_batch`` and ``compute`` separately: waiting for a core does not
count. It prints min and median per engine and the ratio of the medians (this tree / ref; < 1 is faster).

    .venv/bin/python tests/bench/bench_metrics_ab.py --ref 0220c8d [--images 2000] [--runs 30]
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROTOCOLS = ("yolo", "coco")
REF_PACKAGE = "smartcash_ref"
sys.path.insert(0, str(ROOT))

from tests.bench.bench_metrics import make_workload  # noqa: E402 (needs the repository root on the path)


def export_ref(ref: str, target: Path) -> Path:
    """The ref's ``smartcash_core`` under ``target`` as package ``smartcash_ref`` (local git only)."""
    archive = subprocess.run(
        ["git", "archive", ref, "smartcash_core"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    package = target / REF_PACKAGE
    (target / "smartcash_core").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(path.read_text(encoding="utf-8").replace("smartcash_core", REF_PACKAGE), "utf-8")
    return target


def timed(evaluator_type: Callable[..., Any], protocol: str, columns: list[Any]) -> tuple[float, float]:
    """CPU seconds of ``update_batch`` and of ``compute`` for one fresh evaluator."""
    gc.collect()
    evaluator = evaluator_type(8, protocol)
    start = time.process_time()
    evaluator.update_batch(*columns)
    updated = time.process_time()
    evaluator.compute()
    return updated - start, time.process_time() - updated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="git ref of the baseline (a commit before the change)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per engine and protocol")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        sys.path.insert(0, str(export_ref(args.ref, Path(temporary))))
        engines = {
            "ref": importlib.import_module(f"{REF_PACKAGE}.metrics").DetectionEvaluator,
            "this": importlib.import_module("smartcash_core.metrics").DetectionEvaluator,
        }
        work = make_workload(args.images)
        columns = [work[k] for k in ("pred_boxes", "pred_scores", "pred_classes", "gt_boxes", "gt_classes")]
        print(f"workload: {args.images} images, {sum(len(s) for s in work['pred_scores'])} predictions")
        for protocol in PROTOCOLS:
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
            for run in range(args.runs):
                order = list(engines) if run % 2 else list(engines)[::-1]  # neither always goes first
                for name in order:
                    times[name].append(timed(engines[name], protocol, columns))
            report(protocol, times)


def report(protocol: str, times: dict[str, list[tuple[float, float]]]) -> None:
    medians = {}
    for name, runs in times.items():
        for stage, values in zip(("update", "compute"), zip(*runs, strict=True), strict=True):
            median = medians[name, stage] = statistics.median(values)
            print(f"{protocol} {name:>4} {stage:>7}: min {min(values):.4f} s  median {median:.4f} s")
    for stage in ("update", "compute"):
        print(f"{protocol} {stage}: ratio this/ref {medians['this', stage] / medians['ref', stage]:.3f}")


if __name__ == "__main__":
    main()
