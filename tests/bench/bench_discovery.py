"""Cost of the service's containment check on a big dataset (issue 10: one dataset discovery).

    .venv/bin/python tests/bench/bench_discovery.py [--images 20000] [--repeats 5]

Builds a YOLO tree of ``--images`` empty ``.jpg`` files (the check never decodes) with a label each, half
listed through ``images/val`` and half through a ``.txt`` list file named by ``data.yaml``, and times
(best of ``--repeats``, warm page cache):

- ``baseline``: the walk no checker can avoid: ``rglob`` plus one ``is_file`` per image and one ``lstat``
  per label, no resolving;
- ``service_check``: ``check_dataset_contained`` (what a submit runs on the executor thread);
- ``discovery``: the library's discovery alone, without resolving (what ``load_yolo_dataset`` walks),
  when the module exists.

Prints one JSON object with seconds and ratios to the baseline. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from service.datasets import check_dataset_contained


def build_tree(root: Path, images: int) -> Path:
    dataset = root / "ds"
    listed = dataset / "listed"
    folders = (dataset / "images" / "val", dataset / "labels" / "val", listed / "images", listed / "labels")
    for folder in folders:
        folder.mkdir(parents=True)
    half = images // 2
    for number in range(images):
        base = dataset if number < half else listed
        sub = "images/val" if number < half else "images"
        (base / sub / f"{number:06d}.jpg").touch()
        (base / sub.replace("images", "labels") / f"{number:06d}.txt").touch()
    lines = [f"listed/images/{number:06d}.jpg" for number in range(half, images)]
    (dataset / "val.txt").write_text("\n".join(lines) + "\n")
    (dataset / "data.yaml").write_text("path: .\nval: [images/val, val.txt]\nnames: [a]\n")
    return dataset


def baseline_walk(dataset: Path) -> int:
    count = 0
    for path in (dataset / "images" / "val").rglob("*"):
        count += path.is_file()
        os.path.lexists(path.with_suffix(".txt"))
    for line in (dataset / "val.txt").read_text().splitlines():
        path = dataset / line
        count += path.is_file()
        os.path.lexists(path.with_suffix(".txt"))
    return count


def best_of(repeats: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def discovery_runner(dataset: Path) -> Callable[[], object] | None:
    try:
        from smartcash_core.data.discovery import DatasetDiscovery
    except ImportError:  # the tree before the discovery module existed
        return None
    return lambda: sum(1 for _ in DatasetDiscovery(dataset, "val"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        dataset = build_tree(root, args.images)
        baseline = best_of(args.repeats, lambda: baseline_walk(dataset))
        check = best_of(args.repeats, lambda: check_dataset_contained(root, dataset, "val", "ds"))
        report: dict[str, object] = {
            "images": args.images,
            "baseline_s": round(baseline, 4),
            "service_check_s": round(check, 4),
            "service_check_vs_baseline": round(check / baseline, 2),
        }
        discover = discovery_runner(dataset)
        if discover is not None:
            walk = best_of(args.repeats, discover)
            report.update(discovery_s=round(walk, 4), discovery_vs_baseline=round(walk / baseline, 2))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
