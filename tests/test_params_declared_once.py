"""Validation parameters are declared once (``ValidationParams`` + ``ParamSpec``): the CLI options, the
service's request schema and the one bounds check all follow that declaration."""

from __future__ import annotations

import argparse
import typing
from dataclasses import fields, replace

import pydantic
import pytest

from service.schemas import ValidationParamsIn
from smartcash_core.cli.params import add_param_arguments, params_from_args
from smartcash_core.errors import InvalidParamsError
from smartcash_core.validation.params import ParamSpec, ValidationParams, check_params, param_specs

FIELD_NAMES = [item.name for item in fields(ValidationParams)]


def cli_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_param_arguments(parser)
    return parser


def test_every_field_declares_its_spec() -> None:
    assert list(param_specs()) == FIELD_NAMES
    assert all(isinstance(spec, ParamSpec) and spec.help for spec in param_specs().values())


def test_cli_offers_exactly_the_flagged_fields_with_their_defaults() -> None:
    parser = cli_parser()
    dests = {action.dest for action in parser._actions if action.dest != "help"}
    assert dests == {name for name, spec in param_specs().items() if spec.flag is not None}
    assert params_from_args(parser.parse_args([])) == ValidationParams()


def test_cli_flags_set_their_fields() -> None:
    args = cli_parser().parse_args(
        ["--imgsz", "320", "--batch", "4", "--conf", "0.2", "--iou", "0.5", "--max-det", "10", "--no-rect",
         "--protocol", "coco", "--device", "cpu", "--half", "--workers", "0", "--split", "test", "--loss",
         "--fast-decode"]
    )
    expected = ValidationParams(
        imgsz=320, batch_size=4, conf_thres=0.2, iou_thres=0.5, max_det=10, rect=False, protocol="coco",
        device="cpu", half=True, workers=0, split="test", compute_loss=True, fast_decode=True,
    )
    assert params_from_args(args) == expected


def test_request_schema_offers_exactly_the_request_fields_with_the_same_defaults() -> None:
    offered = {name for name, spec in param_specs().items() if spec.in_request}
    assert set(ValidationParamsIn.model_fields) == offered
    assert ValidationParamsIn().to_params(device="auto", split="val") == ValidationParams()
    sent = ValidationParamsIn(imgsz=320, protocol="coco", compute_loss=True)
    assert sent.to_params("cpu", "test") == replace(
        ValidationParams(), imgsz=320, protocol="coco", compute_loss=True, device="cpu", split="test"
    )


def value_type(name: str) -> type:
    """The field's value type (``int`` for ``int | None``: a ``None`` default is resolved by the pass)."""
    hint = typing.get_type_hints(ValidationParams)[name]
    members = [member for member in typing.get_args(hint) if member is not type(None)] or [hint]
    return members[0]


def out_of_bounds_values() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for name, spec in param_specs().items():
        if spec.ge is not None:
            cases.append((name, value_type(name)(spec.ge - 1)))
        if spec.le is not None:
            cases.append((name, value_type(name)(spec.le + 1)))
        if spec.choices is not None:
            cases.append((name, "nonsense"))
    return cases


@pytest.mark.parametrize(("name", "value"), out_of_bounds_values())
def test_one_bound_refuses_in_the_library_the_cli_and_the_api(name: str, value: object) -> None:
    with pytest.raises(InvalidParamsError, match=name):
        check_params(replace(ValidationParams(), **{name: value}))
    spec = param_specs()[name]
    if spec.flag is not None:
        with pytest.raises((InvalidParamsError, SystemExit)):
            params_from_args(cli_parser().parse_args([f"--{spec.flag}", str(value)]))
    if spec.in_request:
        with pytest.raises(pydantic.ValidationError, match=name):
            ValidationParamsIn(**{name: value})


@pytest.mark.parametrize("name", [name for name, spec in param_specs().items() if spec.ge is not None])
def test_bounds_themselves_are_accepted(name: str) -> None:
    spec = param_specs()[name]
    kind = value_type(name)
    for edge in (spec.ge, spec.le):
        check_params(replace(ValidationParams(), **{name: kind(edge)}))
        if spec.in_request:
            ValidationParamsIn(**{name: kind(edge)})


def test_a_default_resolved_by_the_pass_is_said_so_in_the_cli_and_the_schema() -> None:
    """``imgsz`` defaults to the checkpoint's size: help and schema say so instead of showing ``None``."""
    spec = param_specs()["imgsz"]
    assert ValidationParams().imgsz is None and spec.default_help
    check_params(ValidationParams())  # None is the documented default, not out of bounds
    from smartcash_core.cli import build_parser

    parser, _ = build_parser()
    help_text = " ".join(parser._subparsers._group_actions[0].choices["validate"].format_help().split())
    assert f"(default: {spec.default_help})" in help_text and "default: None" not in help_text
    schema = ValidationParamsIn.model_json_schema()["properties"]["imgsz"]
    assert schema["default"] is None and spec.default_help in schema["description"]
    assert params_from_args(cli_parser().parse_args(["--imgsz", "300"])).imgsz == 300
