"""``smartcash compare A.json B.json``: is validation B (candidate) really better than A (baseline)?

Reads the evaluator states saved beside the two ``validate --json`` outputs (``A.state.npz``, written by
``validate --json A.json --state A.state.npz``; or ``--state-a`` / ``--state-b``), runs the paired bootstrap
over images and prints one row per number: both values, candidate - baseline, its interval and the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from smartcash_core.cli.params import DefaultsHelpFormatter
from smartcash_core.errors import ComparisonError

_CHECK_TOLERANCE = 1e-9  # a state's own mAP must be its JSON's: otherwise it belongs to another run


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="compare two validations (paired bootstrap interval of the mAP differences)",
        formatter_class=DefaultsHelpFormatter,
        description="Baseline A, candidate B: both `smartcash validate --json X.json --state X.state.npz` "
        "outputs of the same images. Deltas are B - A.",
    )
    parser.add_argument("baseline", type=Path, help="the baseline's validate --json output")
    parser.add_argument("candidate", type=Path, help="the candidate's validate --json output")
    parser.add_argument("--state-a", type=Path, default=None, help="baseline state (default: A.state.npz)")
    parser.add_argument("--state-b", type=Path, default=None, help="candidate state (default: B.state.npz)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (1..100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image draws")
    parser.add_argument("--confidence", type=float, default=0.95, help="interval level (0.5..0.999)")
    parser.add_argument("--per-class", action="store_true", help="also print per-class AP rows")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="write the comparison here")
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from smartcash_core.metrics.bootstrap import compare_states
    from smartcash_core.validation.comparison_report import format_comparison
    from smartcash_core.validation.comparison_state import load_state, state_path_for

    problem = _check_options(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    reports = [_read_json(path) for path in (args.baseline, args.candidate)]
    states = [
        load_state(given or state_path_for(path))
        for given, path in ((args.state_a, args.baseline), (args.state_b, args.candidate))
    ]
    result = compare_states(*states, resamples=args.resamples, seed=args.seed, confidence=args.confidence)
    answer = result.to_dict()
    for side, report, path in zip(
        ("baseline", "candidate"), reports, (args.baseline, args.candidate), strict=True
    ):
        _check_belongs(report, answer["mapped"]["map50_95"][side], path)
    sys.stdout.write(format_comparison(answer, per_class=args.per_class))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(answer, indent=1) + "\n", encoding="utf-8")
    return 0


def _check_options(args: argparse.Namespace) -> str | None:
    if not 1 <= args.resamples <= 100_000:
        return f"--resamples must be 1..100000, got {args.resamples}"
    if not 0.5 <= args.confidence <= 0.999:
        return f"--confidence must be 0.5..0.999, got {args.confidence}"
    if not 0 <= args.seed < 2**63:
        return f"--seed must be a non-negative integer, got {args.seed}"
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComparisonError(
            "comparison_state_invalid", f"{path}: not a validate --json output ({exc})"
        ) from exc
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise ComparisonError(
            "comparison_state_invalid", f"{path}: not a validate --json output (no metrics)"
        )
    return report


def _check_belongs(report: dict[str, Any], state_value: float, path: Path) -> None:
    """The state must reproduce its JSON's headline mAP50-95: a state of another run is refused."""
    reported = report["metrics"].get("map50_95")
    if not isinstance(reported, int | float) or abs(float(reported) - state_value) > _CHECK_TOLERANCE:
        raise ComparisonError(
            "comparison_state_invalid",
            f"{path}: its saved state gives mAP50-95 {state_value:.6f} but the JSON says {reported}: the "
            "state belongs to another run (validate again with --json and --state together)",
        )
