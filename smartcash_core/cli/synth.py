"""``smartcash synth``: write a synthetic banknote dataset in YOLO layout and print a one-line summary."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("synth", help="write a synthetic banknote dataset in YOLO layout")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--images", type=int, default=60, help="number of images")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--split", default="val", help="split name under images/ and labels/")
    parser.add_argument(
        "--domain",
        choices=("standard", "shifted"),
        default="standard",
        help="'shifted': busy backgrounds and colour jitter, unlike the demo model's training data",
    )
    parser.set_defaults(handler=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from smartcash_core.training.synthetic import generate_dataset

    started = time.perf_counter()
    data_yaml = generate_dataset(
        args.out, args.images, args.seed, args.width, args.height, args.split, args.domain
    )
    elapsed = time.perf_counter() - started
    label_dir = Path(args.out) / "labels" / args.split
    label_files = (label_dir / f"synth_{index:05d}.txt" for index in range(args.images))  # generate_dataset's
    instances = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in label_files)
    print(
        f"wrote {args.images} images ({args.width}x{args.height}, {instances} boxes, seed {args.seed}, "
        f"domain {args.domain}) to {Path(args.out) / 'images' / args.split} in {elapsed:.2f}s; "
        f"data: {data_yaml}"
    )
    return 0
