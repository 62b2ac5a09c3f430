"""The ``validate`` options, generated from :class:`ValidationParams` and its :class:`ParamSpec` fields.

One declaration (the dataclass) gives the flags, their defaults, help and choices; :func:`check_params`
gives the bounds. A parameter without a ``flag`` keeps its default on the command line.
"""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, fields
from typing import Any

from smartcash_core.validation.params import ParamSpec, ValidationParams, check_params


def add_param_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per flagged parameter; ``dest`` is the field name, so the namespace maps back 1:1."""
    hints = typing.get_type_hints(ValidationParams)
    for item in fields(ValidationParams):
        spec: ParamSpec = item.metadata["spec"]
        if spec.flag is None or item.default is MISSING:
            continue
        if hints[item.name] is bool:
            _add_switch(parser, item.name, spec, bool(item.default))
            continue
        parser.add_argument(
            f"--{spec.flag}",
            dest=item.name,
            type=str if spec.choices else _value_type(hints[item.name]),
            default=item.default,
            choices=spec.choices,
            metavar=None if spec.choices else spec.flag.upper().replace("-", "_"),
            help=spec.help if spec.default_help is None else f"{spec.help} (default: {spec.default_help})",
        )


def _value_type(hint: Any) -> Any:
    """``int`` for ``int | None``: a flag given on the command line always has a value."""
    members = [member for member in typing.get_args(hint) if member is not type(None)]
    return members[0] if len(members) == 1 else hint


def _add_switch(parser: argparse.ArgumentParser, name: str, spec: ParamSpec, default: bool) -> None:
    """A bool that is off by default is switched on by ``--flag``; one that is on, off by ``--no-flag``."""
    if default:
        off = f"turn off {spec.help}"
        parser.add_argument(f"--no-{spec.flag}", dest=name, action="store_false", help=off)
    else:
        parser.add_argument(f"--{spec.flag}", dest=name, action="store_true", help=spec.help)


def params_from_args(args: argparse.Namespace) -> ValidationParams:
    """The pass's parameters from parsed options (parameters without a flag keep their defaults), checked
    before anything is loaded: :class:`InvalidParamsError` names the option that is out of bounds."""
    names = [item.name for item in fields(ValidationParams)]
    params = ValidationParams(**{name: getattr(args, name) for name in names if hasattr(args, name)})
    check_params(params)
    return params


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except for switches (their flag already says what changes)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)
