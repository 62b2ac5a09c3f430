"""``smartcash remote ...``: drive a running service from a shell, through ``smartcash_client``.

    smartcash remote validate --server http://validator:8000 --checkpoint exp7/epoch3.safetensors \\
        --dataset banknotes --tag run=exp7 --tag epoch=3
    smartcash remote jobs --tag run=exp7
    smartcash remote run exp7
    smartcash remote compare <baseline job id> <candidate job id>

The server comes from ``--server`` (or ``SMARTCASH_SERVER``, default http://127.0.0.1:8000) and the key
from ``SMARTCASH_API_KEY`` (or ``--api-key``; an environment variable keeps it out of ``ps``). A finished
validation prints the same report as ``smartcash validate``; ``--json`` prints the service's JSON instead.
Exit codes: 0 done, 1 the job did not succeed, 2 the call failed (the service's code, message and fix).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from smartcash_client import ApiError, Client, JobFailed, SmartCashClientError
from smartcash_client.models import Job, RunHistory
from smartcash_core.validation.params import ValidationResult
from smartcash_core.validation.report import format_report

DEFAULT_SERVER = "http://127.0.0.1:8000"
Handler = Callable[[Client, argparse.Namespace], int]


def add_remote_parser(commands: argparse._SubParsersAction) -> None:
    remote = commands.add_parser("remote", help="talk to a running validation service (HTTP client)")
    sub = remote.add_subparsers(dest="remote_command", required=True)
    common = _common_options()
    _validate_parser(sub, common)
    one = sub.add_parser("job", parents=[common], help="one job's status (and report)")
    one.add_argument("job_id")
    one.set_defaults(remote_handler=_job)
    many = sub.add_parser("jobs", parents=[common], help="jobs, newest first, filtered by tags")
    many.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="all must match")
    many.add_argument("--status", default=None)
    many.add_argument("--limit", type=int, default=20)
    many.set_defaults(remote_handler=_jobs)
    run = sub.add_parser("run", parents=[common], help="a run's jobs by epoch and the best (by mAP50-95)")
    run.add_argument("name")
    run.set_defaults(remote_handler=_run)
    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job_id")
    cancel.set_defaults(remote_handler=_cancel)
    compare = sub.add_parser("compare", parents=[common], help="is the candidate job really better?")
    compare.add_argument("baseline", help="job id")
    compare.add_argument("candidate", help="job id")
    compare.add_argument("--resamples", type=int, default=1000)
    compare.add_argument("--seed", type=int, default=0)
    compare.add_argument("--confidence", type=float, default=0.95)
    compare.set_defaults(remote_handler=_compare)
    remote.set_defaults(handler=run_remote)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", default=None, help=f"default $SMARTCASH_SERVER or {DEFAULT_SERVER}")
    common.add_argument("--api-key", default=None, help="default $SMARTCASH_API_KEY")
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call")
    common.add_argument("--json", action="store_true", help="print the service's JSON")
    return common


def _validate_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    validate = sub.add_parser("validate", parents=[common], help="validate, wait, print the report")
    which = validate.add_mutually_exclusive_group(required=True)
    which.add_argument("--checkpoint", help="a checkpoint file under the service's checkpoint root")
    which.add_argument("--model", help="a model loaded on the service")
    data = validate.add_mutually_exclusive_group(required=True)
    data.add_argument("--dataset", help="a dataset under the service's data root")
    data.add_argument("--files", nargs="+", help="local images and labels (or one archive) to upload")
    validate.add_argument("--split", default="val")
    validate.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    validate.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="e.g. imgsz=320")
    validate.add_argument("--callback-url", default=None, help="webhook called when the job ends")
    validate.add_argument("--no-wait", action="store_true", help="print the queued job and return")
    validate.set_defaults(remote_handler=_validate)


def run_remote(args: argparse.Namespace) -> int:
    server = args.server or os.environ.get("SMARTCASH_SERVER") or DEFAULT_SERVER
    api_key = args.api_key or os.environ.get("SMARTCASH_API_KEY") or None
    handler: Handler = args.remote_handler
    try:
        with Client(server, api_key=api_key, timeout=args.timeout) as client:
            return handler(client, args)
    except JobFailed as exc:
        print(f"job {exc.job_id} {exc.status}: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        if exc.fix:
            print(f"fix: {exc.fix}", file=sys.stderr)
        return 2
    except (SmartCashClientError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _validate(client: Client, args: argparse.Namespace) -> int:
    job = client.validate(
        dataset=args.dataset,
        files=args.files,
        model=args.model,
        checkpoint=args.checkpoint,
        split=args.split,
        params=_pairs(args.param, parse_values=True),
        tags=_pairs(args.tag),
        callback_url=args.callback_url,
        wait=False,
    )
    print(f"job {job.id} {job.status}", file=sys.stderr)
    if args.no_wait:
        _print_json(job.raw) if args.json else print(job.id)
        return 0
    result = client.wait(job.id, on_progress=_progress_printer())
    print(file=sys.stderr)
    if args.json:
        _print_json(result.raw)
    else:
        sys.stdout.write(format_report(as_library_result(result.raw["result"])))
    return 0


def as_library_result(result: dict[str, Any]) -> ValidationResult:
    """The service's result JSON as the library's ``ValidationResult`` (what ``format_report`` prints)."""
    known = {item.name for item in fields(ValidationResult)} - {"evaluator"}
    return ValidationResult(**{name: value for name, value in result.items() if name in known})


def _progress_printer() -> Callable[[int, int, str], None]:
    def show(done: int, total: int, stage: str) -> None:
        print(f"\r{done}/{total} images {stage}", end="", file=sys.stderr, flush=True)

    return show


def _job(client: Client, args: argparse.Namespace) -> int:
    job = client.job(args.job_id)
    if args.json:
        _print_json(job.raw)
    elif job.status == "succeeded" and job.raw.get("result"):
        sys.stdout.write(format_report(as_library_result(job.raw["result"])))
    else:
        print(format_jobs([job]))
    return 0 if job.status in ("succeeded", "queued", "running", "cancelling") else 1


def _jobs(client: Client, args: argparse.Namespace) -> int:
    jobs = client.jobs(tags=_pairs(args.tag), status=args.status, limit=args.limit)
    _print_json([job.raw for job in jobs]) if args.json else print(format_jobs(jobs))
    return 0


def _run(client: Client, args: argparse.Namespace) -> int:
    history = client.run(args.name)
    _print_json(history.raw) if args.json else print(format_run(history))
    return 0


def _cancel(client: Client, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id)
    _print_json(job.raw) if args.json else print(f"job {job.id} {job.status}")
    return 0


def _compare(client: Client, args: argparse.Namespace) -> int:
    comparison = client.compare(args.baseline, args.candidate, args.resamples, args.seed, args.confidence)
    if args.json:
        _print_json(comparison.raw)
        return 0
    for view in ("mapped", "fine"):
        for metric in ("map50", "map50_95"):
            item = comparison.estimate(metric, view)
            if item is not None:
                ci = item.get("ci") or [None, None]
                print(f"{view:>7} {metric:<9} delta {_number(item.get('delta'))} "
                      f"[{_number(ci[0])}, {_number(ci[1])}]  {item.get('verdict')}")
    print(f"verdict: {comparison.verdict}")
    return 0


def format_jobs(jobs: Sequence[Job]) -> str:
    header = f"{'id':<32}  {'status':<11} {'mAP50':>7} {'mAP50-95':>9}  model / checkpoint  tags"
    rows = [
        f"{job.id:<32}  {job.status:<11} {_number(job.map50):>7} {_number(job.map50_95):>9}  "
        f"{job.model or job.checkpoint or '-'}  {_tags(job.tags)}"
        for job in jobs
    ]
    return "\n".join([header, *rows])


def format_run(history: RunHistory) -> str:
    lines = [f"run {history.run}: {history.total} job(s)" + (" (newest listed)" if history.truncated else "")]
    lines.append(f"{'epoch':>7}  {'id':<32}  {'status':<11} {'mAP50':>7} {'mAP50-95':>9}")
    best = history.best.id if history.best else None
    for entry in history.jobs:
        marker = "  <- best" if entry.id == best else ""
        lines.append(
            f"{entry.epoch or '-':>7}  {entry.id:<32}  {entry.status:<11} {_number(entry.map50):>7} "
            f"{_number(entry.map50_95):>9}{marker}"
        )
    lines.append(f"best by {history.best_by}: {best or 'none yet'}")
    return "\n".join(lines)


def _pairs(items: Sequence[str], parse_values: bool = False) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not KEY=VALUE")
        pairs[key] = _value(value) if parse_values else value
    return pairs


def _value(text: str) -> Any:
    """``320`` -> 320, ``0.5`` -> 0.5, ``true`` -> True, anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _tags(tags: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(tags.items())) or "-"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=1))
