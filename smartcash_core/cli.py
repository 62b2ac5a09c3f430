"""Command line of the library: ``python -m smartcash_core.cli <command>``.

The ``smartcash`` console script (``service.cli``) adds ``serve`` and ``demo`` on top of this parser,
so the library itself never imports the service. Each command lives in the module that owns the work;
this file only parses arguments and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from smartcash_core.errors import SmartCashError

CommandHandler = Callable[[argparse.Namespace], int]


def _run_synth(args: argparse.Namespace) -> int:
    from smartcash_core.data.synthetic import cli_synth

    return cli_synth(args)


def _run_validate(args: argparse.Namespace) -> int:
    from smartcash_core.validate_cli import cli_validate

    return cli_validate(args)


def _run_convert(args: argparse.Namespace) -> int:
    from smartcash_core.checkpoint.convert import cli_convert

    return cli_convert(args)


def _run_train_demo(args: argparse.Namespace) -> int:
    from smartcash_core.train import cli_train_demo

    return cli_train_demo(args)


def add_synth_parser(commands: argparse._SubParsersAction) -> None:
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
    parser.set_defaults(handler=_run_synth)


def add_validate_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("validate", help="validate a checkpoint on a YOLO dataset")
    parser.add_argument("--weights", required=True, help="checkpoint (.safetensors native or YOLOv5 .pt)")
    parser.add_argument("--data", required=True, help="YOLO dataset directory or data.yaml")
    parser.add_argument("--split", default="val")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--conf", type=float, default=0.001)
    parser.add_argument("--iou", type=float, default=0.6)
    parser.add_argument("--max-det", type=int, default=300)
    parser.add_argument("--protocol", choices=("yolo", "coco"), default="yolo")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-rect", action="store_true", help="square batches instead of rectangular")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--loss", action="store_true", help="also report YOLOv5's validation loss")
    parser.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode JPEGs >= 2x the target DCT-scaled: faster first pass, not bit-exact with YOLOv5",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON here")
    parser.add_argument("--plots", default=None, help="write PR/F1/confusion PNGs here (needs matplotlib)")
    parser.set_defaults(handler=_run_validate)


def add_convert_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("convert", help="convert a YOLOv5 .pt checkpoint to the native format")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    parser.set_defaults(handler=_run_convert)


def add_train_demo_parser(commands: argparse._SubParsersAction) -> None:
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
    parser.set_defaults(handler=_run_train_demo)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="smartcash", description="SmartCash validation tools")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (add_synth_parser, add_validate_parser, add_convert_parser, add_train_demo_parser):
        add(commands)
    return parser, commands


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, dispatch, and turn library errors into one clear line and a non-zero exit."""
    args = parser.parse_args(argv)
    handler: CommandHandler = args.handler
    try:
        return handler(args)
    except SmartCashError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser, _ = build_parser()
    return run_parsed(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
