"""Command line of the library: ``python -m smartcash_core.cli <command>`` (also under ``torchrun``).

One module a command (``synth``, ``validate``, ``compare``, ``convert``, ``train_demo``), each with
``add_parser`` and a handler; argparse and printing live only in this package, the work in typed library
functions. The ``smartcash`` console script (``service.cli``) adds ``serve`` and ``demo`` on top of this
parser, so the library itself never imports the service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from smartcash_core.cli import compare, convert, synth, train_demo, validate
from smartcash_core.errors import SmartCashError

CommandHandler = Callable[[argparse.Namespace], int]
COMMANDS = (synth, validate, compare, convert, train_demo)


def build_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="smartcash", description="SmartCash validation tools")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
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
