"""tests/bench/gpu_check.sh (issue 14): valid bash, usage on --help, refuses unknown options. Its --dry-run
(the CPU path of the same benchmark) takes a minute, so it is run by hand, not here; no GPU runs in CI."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent / "bench" / "gpu_check.sh"


def test_gpu_check_is_valid_bash_with_usage() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    shown = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--dry-run" in shown.stdout and "wall / forward-only" in shown.stdout
    assert "set -euo" not in shown.stdout


def test_gpu_check_refuses_unknown_options() -> None:
    refused = subprocess.run(["bash", str(SCRIPT), "--gpu", "7"], capture_output=True, text=True)
    assert refused.returncode == 2 and "unknown option --gpu" in refused.stderr
