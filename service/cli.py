"""The ``smartcash`` console script: the library's commands plus ``serve`` and ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from service.remote_cli import add_remote_parser
from smartcash_core.cli import build_parser, run_parsed


def _run_serve(args: argparse.Namespace) -> int:
    from service.main import cli_serve

    return cli_serve(args)


def _run_demo(args: argparse.Namespace) -> int:
    from service.demo import cli_demo

    return cli_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    serve = commands.add_parser("serve", help="run the HTTP validation service")
    serve.add_argument("--host", default=None, help="bind address (default SMARTCASH_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default SMARTCASH_PORT or 8000)")
    serve.set_defaults(handler=_run_serve)
    demo = commands.add_parser("demo", help="serve the demo model, validate demo data, keep serving")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--state-dir", default="demo_state")
    demo.add_argument("--no-serve", action="store_true", help="exit after printing the demo result")
    demo.set_defaults(handler=_run_demo)
    add_remote_parser(commands)
    return run_parsed(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
