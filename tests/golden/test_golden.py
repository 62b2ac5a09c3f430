"""Restructurings leave every number where it was: each golden case's whole JSON result and metric state
equal what ``make_golden.py`` recorded.

Exact on a machine like the one that recorded them (same CPU model, torch CPU capability and library
versions): the forward pass, NMS and argsort ties are then the same bits. Elsewhere float32 noise of the
forward differs in the last bits, so floats are compared to 1e-6 relative and everything else exactly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from tests.golden.cases import CASES, GOLDEN
from tests.golden.fingerprint import machine_fingerprint

RECORDED_ON = json.loads((GOLDEN / "machine.json").read_text())
SAME_MACHINE = machine_fingerprint() == RECORDED_ON
FLOAT_REL = 0.0 if SAME_MACHINE else 1e-6


def assert_same(actual: Any, expected: Any, where: str = "result") -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for position, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_same(got, want, f"{where}[{position}]")
    elif isinstance(expected, float) and isinstance(actual, float):
        assert math.isclose(actual, expected, rel_tol=FLOAT_REL, abs_tol=FLOAT_REL * 1e-3), (
            where, actual, expected
        )
    else:
        assert actual == expected and type(actual) is type(expected), (where, actual, expected)


@pytest.mark.parametrize("name", sorted(CASES))
def test_pass_output_is_unchanged(name: str) -> None:
    result, state = CASES[name]()
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    assert_same(json.loads(json.dumps(result)), expected)
    recorded = np.load(GOLDEN / f"{name}_state.npz")
    assert sorted(state) == sorted(recorded.files)
    for key in recorded.files:
        got, want = np.asarray(state[key]), recorded[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if SAME_MACHINE or not np.issubdtype(want.dtype, np.floating):
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=key)


def test_golden_cases_are_not_trivial() -> None:
    for name in CASES:
        expected = json.loads((GOLDEN / f"{name}.json").read_text())
        assert expected["metrics"]["map50"] > 0.1, name
        assert len(expected["per_image"]) >= 8, name
