"""Every case of ``metric_cases.json`` (pycocotools and YOLOv5 7.0 outputs) reproduced within 1e-9.

YOLOv5 orders predictions with numpy's unstable ``np.argsort(-conf)``; with score ties the order (and the
AP) depends on which sort kernel numpy dispatches to. The fixture was produced on a CPU where numpy used
its AVX2 kernel, so on an AVX-512 machine the tie cases are replayed in a subprocess with the AVX-512
kernels disabled (``NPY_DISABLE_CPU_FEATURES``): same numpy, same kernel as the producer. In-process they
are compared with the literal YOLOv5 procedure (``reference.py``), which uses this machine's kernel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.metrics.helpers import coco_differences, evaluate_images, fixture_cases, yolo_differences
from tests.metrics.reference import yolo_reference

TOLERANCE = 1e-9
CASES = fixture_cases()
TIE_CASES = [index for index, case in enumerate(CASES) if case["kind"] == "ties"]
ROOT = Path(__file__).resolve().parents[2]


def test_fixture_has_the_expected_layout() -> None:
    assert len(CASES) == 40
    assert {"yolo", "coco"} <= set(CASES[0]["expected"])
    assert TIE_CASES, "the fixture should exercise score ties"


@pytest.mark.parametrize("index", range(len(CASES)))
def test_coco_protocol_matches_pycocotools(index: int) -> None:
    case = CASES[index]
    result = evaluate_images(case["images"], case["n_classes"], "coco")
    assert coco_differences(result, case["expected"]["coco"], case["n_classes"]) <= TOLERANCE


@pytest.mark.parametrize("index", [i for i in range(len(CASES)) if i not in TIE_CASES])
def test_yolo_protocol_matches_yolov5(index: int) -> None:
    case = CASES[index]
    result = evaluate_images(case["images"], case["n_classes"], "yolo")
    assert yolo_differences(result, case["expected"]["yolo"]) <= TOLERANCE


@pytest.mark.parametrize("index", TIE_CASES)
def test_yolo_score_ties_match_literal_yolov5_on_this_machine(index: int) -> None:
    case = CASES[index]
    result = evaluate_images(case["images"], case["n_classes"], "yolo")
    reference = yolo_reference(case["images"])
    assert yolo_differences(result, reference) <= TOLERANCE


def _avx512_features() -> list[str]:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [
        name
        for name in __cpu_dispatch__
        if (name.startswith("AVX512") or name == "X86_V4") and __cpu_features__.get(name)
    ]


def test_yolo_score_ties_match_the_fixture_with_the_producers_sort_kernel() -> None:
    env = dict(os.environ)
    disabled = _avx512_features()
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(disabled)
    script = (
        "import json, sys\n"
        "from tests.metrics.helpers import evaluate_images, fixture_cases, yolo_differences\n"
        "cases = fixture_cases()\n"
        "out = {i: yolo_differences(evaluate_images(cases[i]['images'], cases[i]['n_classes'], 'yolo'),\n"
        "                           cases[i]['expected']['yolo']) for i in json.loads(sys.argv[1])}\n"
        "print(json.dumps(out))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, json.dumps(TIE_CASES)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    differences = json.loads(completed.stdout.strip().splitlines()[-1])
    assert max(differences.values()) <= TOLERANCE, differences


def test_yolo_thresholds_are_yolov5s_float32_linspace() -> None:
    import torch

    from smartcash_core.metrics import YOLO_IOU_THRESHOLDS

    assert np.array_equal(torch.linspace(0.5, 0.95, 10).numpy(), YOLO_IOU_THRESHOLDS)
