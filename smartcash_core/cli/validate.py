"""``smartcash validate``: progress bar, report tables, ``--json`` and ``--plots``; one process, or one rank
of a ``torchrun`` job (this command reads torchrun's variables and picks the distributed pass itself).

Library errors (missing weights, empty dataset, a failed rank) reach ``cli.run_parsed``, which prints one
``error: ...`` line and exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartcash_core.cli.params import DefaultsHelpFormatter, add_param_arguments, params_from_args
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.validation.params import ProgressCallback, ValidationParams, ValidationResult
from smartcash_core.validation.report import format_distributed, format_report, write_json

if TYPE_CHECKING:  # the pass itself (torch) is imported when a command runs, not when the parser is built
    from smartcash_core.checkpoint import LoadedModel
    from smartcash_core.validation.distributed import DistContext
    from smartcash_core.validation.params import ValidationParams


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "validate",
        help="validate a checkpoint on a YOLO dataset",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--weights", required=True, help="checkpoint (.safetensors native or YOLOv5 .pt)")
    parser.add_argument("--data", required=True, help="YOLO dataset directory or data.yaml")
    add_param_arguments(parser)
    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        metavar="PIXELS",
        help="skip (and report) images whose header declares more pixels than this, before decoding them "
        "(decompression bombs)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the full result as JSON here")
    parser.add_argument(
        "--state",
        default=None,
        help="write what `smartcash compare` needs (evaluator state, image names) here, e.g. out.state.npz",
    )
    parser.add_argument("--plots", default=None, help="write PR/F1/confusion PNGs here (needs matplotlib)")
    parser.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    """Under torchrun (``WORLD_SIZE`` > 1): this rank's shard, rank 0 reports; otherwise one process."""
    from smartcash_core.validation.distributed import init_from_env, shutdown

    ctx = init_from_env(args.device, env=os.environ)
    if ctx is None:
        return validate_single(args)
    try:
        return validate_rank(args, ctx)
    finally:
        shutdown(ctx)


def validate_single(args: argparse.Namespace) -> int:
    """Load the checkpoint, validate with a progress bar, print the report; 0 on success, 2 on bad input."""
    from smartcash_core.checkpoint import load_model
    from smartcash_core.validation.runner import run_validation

    params = params_from_args(args)
    check_data_path(args.data)  # before the (slow) model load: a typo fails at once, with near matches
    model = load_model(args.weights, params.device)
    warn_if_over_memory_budget(model, params)
    print(header_line(args, params, model), flush=True)
    try:
        with progress_bar("validate") as on_progress:
            result = run_validation(
                model, args.data, params, on_progress=on_progress, max_image_pixels=args.max_image_pixels
            )
    except ValueError as exc:  # parameter errors from the pass (library errors go to cli.run_parsed)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(format_report(result))
    _write_outputs(result, args)
    if args.plots:
        from smartcash_core.validation.plots import write_plots

        for written in write_plots(result, Path(args.plots)):
            print(f"plot: {written}")
    return 0


def validate_rank(args: argparse.Namespace, ctx: DistContext) -> int:
    """``smartcash validate`` on one rank: rank 0 prints the merged report and writes ``--json``."""
    from smartcash_core.checkpoint import load_model
    from smartcash_core.validation.distributed_pass import run_distributed_validation

    params = replace(params_from_args(args), device=str(ctx.device))
    check_data_path(args.data)
    model = load_model(args.weights, ctx.device)
    if ctx.is_main:
        print(header_line(args, params, model), flush=True)
    label = f"validate (rank 0 of {ctx.world_size})"
    with progress_bar(label, enabled=ctx.is_main) as on_progress:  # other ranks stay quiet
        result = run_distributed_validation(
            model, args.data, params, ctx, on_progress=on_progress, max_image_pixels=args.max_image_pixels
        )
    if result is None:
        return 0
    sys.stdout.write(format_report(result))
    print(format_distributed(result.distributed))
    _write_outputs(result, args)
    return 0


def _write_outputs(result: ValidationResult, args: argparse.Namespace) -> None:
    """``--json`` and ``--state`` (the state of the same result, so they always belong together)."""
    if args.json_out:
        write_json(result, Path(args.json_out))
    if args.state:
        from smartcash_core.validation.comparison_state import comparison_state, save_state

        print(f"state: {save_state(comparison_state(result), Path(args.state))}")


def warn_if_over_memory_budget(model: LoadedModel, params: ValidationParams) -> None:
    """Print a warning (and go on: the machine is the user's, the estimate conservative) when the pass's
    estimated peak exceeds the service's default budget for the device (half the RAM, 80% of a GPU)."""
    import torch

    from smartcash_core.errors import MemoryBudgetError
    from smartcash_core.validation.memory import check_pass_memory, default_memory_budget

    budget = default_memory_budget(torch.device(model.device))
    if budget is None:
        return
    try:
        check_pass_memory(model, params, budget)
    except MemoryBudgetError as exc:
        print(f"warning: {exc} (the service would refuse this job; validating anyway)", file=sys.stderr)


def check_data_path(data: str) -> None:
    """``DatasetError`` naming near matches when ``--data`` does not exist."""
    from smartcash_core.data.suggest import did_you_mean
    from smartcash_core.errors import DatasetError

    path = Path(data).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset path {data} does not exist{did_you_mean(path)}", "not_found")


def header_line(args: argparse.Namespace, params: ValidationParams, model: LoadedModel) -> str:
    """What is validated, on what, at which image size (the checkpoint's when ``--imgsz`` is not given)."""
    from smartcash_core.validation.imgsz import choose_imgsz, describe_imgsz

    chosen = choose_imgsz(params.imgsz, model.imgsz, model.stride)
    return (
        f"Validating {Path(args.weights).name} on {args.data} (split {params.split}) at imgsz "
        f"{describe_imgsz(chosen, params.imgsz)}, {params.protocol} protocol, device {model.device}"
    )


@contextmanager
def progress_bar(label: str, enabled: bool = True) -> Iterator[ProgressCallback | None]:
    """A tqdm bar on stderr fed by the pass's progress callback (``None`` when not ``enabled``).

    The bar appears with the first finished batch, so an error while the dataset is indexed (a missing
    split, no images) prints only its own line.
    """
    if not enabled:
        yield None
        return
    holder: list[Any] = []
    try:
        yield _progress_updater(label, holder)
    finally:
        for bar in holder:
            bar.close()


def _progress_updater(label: str, holder: list[Any]) -> ProgressCallback:
    def on_progress(done: int, total: int, stage: str) -> None:
        if not holder:
            from tqdm import tqdm

            holder.append(tqdm(desc=label, total=total, unit="img", file=sys.stderr, dynamic_ncols=True))
        bar = holder[0]
        if bar.total != total:
            bar.reset(total=total)
        bar.update(done - bar.n)

    return on_progress
