"""``smartcash train-demo``: train the embedded demo model on synthetic data and write its checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("train-demo", help="train the embedded demo model on synthetic data")
    parser.add_argument("--out", required=True, help="native checkpoint to write")
    parser.add_argument("--workdir", default="runs/train-demo")
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--epochs-head", type=int, default=1)
    parser.add_argument("--epochs-full", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-budget-min", type=float, default=None,
        help="stop both phases within this many minutes (the cosine schedule follows the clock)",
    )
    parser.add_argument("--lr", type=float, default=0.002, help="peak AdamW learning rate")
    parser.add_argument("--init", default=None, help="continue from this native checkpoint (phase 2 only "
                        "with --epochs-head 0); the epochs it records are added to this run's")
    parser.set_defaults(handler=run_train_demo)


def run_train_demo(args: argparse.Namespace) -> int:
    """Train with the log lines on stdout as they come."""
    from smartcash_core.training.train import TrainConfig, train_demo

    config = TrainConfig(
        out=Path(args.out), workdir=Path(args.workdir), images=args.images, imgsz=args.imgsz,
        epochs_head=args.epochs_head, epochs_full=args.epochs_full, seed=args.seed,
        time_budget_min=args.time_budget_min, init=Path(args.init) if args.init else None, lr=args.lr,
    )
    train_demo(config, log=lambda line: print(line, flush=True))
    return 0
