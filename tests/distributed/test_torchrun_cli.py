"""The user-facing path: ``torchrun --nproc-per-node 2 -m smartcash_core.cli validate ...`` writes
the same ``--json`` result as ``smartcash validate`` (plus its ``distributed`` section)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

VOLATILE_KEYS = ("wall_s", "speed_ms_per_image", "cache", "cache_job", "distributed")


def validate_args(weights: Path, data: Path, json_out: Path) -> list[str]:
    return ["validate", "--weights", str(weights), "--data", str(data), "--imgsz", "320", "--batch", "2",
            "--device", "cpu", "--workers", "0", "--json", str(json_out)]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    # One thread per process in both runs: CPU convolutions differ in the last bits between thread counts.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)


@pytest.mark.slow
def test_torchrun_result_equals_the_single_process_cli(
    tmp_path: Path, mixed_aspect_dataset: Path, trained_weights: Path
) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this interpreter")
    single_json, merged_json = tmp_path / "single.json", tmp_path / "merged.json"
    single = run([sys.executable, "-m", "smartcash_core.cli",
                  *validate_args(trained_weights, mixed_aspect_dataset, single_json)])
    assert single.returncode == 0, single.stderr[-3000:]
    merged = run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "smartcash_core.cli",
                  *validate_args(trained_weights, mixed_aspect_dataset, merged_json)])
    assert merged.returncode == 0, merged.stderr[-3000:]

    expected: dict[str, Any] = json.loads(single_json.read_text())
    got: dict[str, Any] = json.loads(merged_json.read_text())
    assert {k: v for k, v in got.items() if k not in VOLATILE_KEYS} == {
        k: v for k, v in expected.items() if k not in VOLATILE_KEYS
    }
    assert [rank["images"] for rank in got["distributed"]["ranks"]] == [4, 5]
    # Rank 0 alone prints: one report, with the distributed lines under it.
    assert merged.stdout.count("Mapped classes") == 1
    assert "Distributed: 2 ranks (gloo)" in merged.stdout
    assert "rank 1: 5 images" in merged.stdout
