"""``smartcash convert --weights IN --out OUT``: a checkpoint (typically YOLOv5 ``.pt``) in the native
format."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("convert", help="convert a YOLOv5 .pt checkpoint to the native format")
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    parser.set_defaults(handler=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    """Convert and print one summary line."""
    from smartcash_core.checkpoint.convert import convert_checkpoint, is_fp16

    loaded, written = convert_checkpoint(args.weights, args.out)
    dtype = "fp16" if is_fp16(loaded) else "fp32"
    source_format = loaded.metadata.get("format", "?")
    print(
        f"converted {args.weights} ({source_format}, {loaded.class_table.num_fine} classes, "
        f"{loaded.num_params / 1e6:.2f}M params, imgsz {loaded.imgsz}) -> {written} "
        f"({written.stat().st_size / 1e6:.1f} MB, {dtype}, native)"
    )
    return 0
