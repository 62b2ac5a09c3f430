"""``smartcash demo --no-serve``: the README's main job, end to end through the real HTTP service."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

MAPPED_NAMES = ("1000", "2000", "5000", "10000", "20000", "50000", "100000", "feature")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_demo_serves_the_embedded_model_and_prints_a_good_ap_table(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo_state"
    command = [sys.executable, "-m", "service.cli", "demo", "--no-serve", "--state-dir", str(state_dir)]
    done = subprocess.run(
        [*command, "--port", str(_free_port())], capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert all(name in rows for name in MAPPED_NAMES), done.stdout
    headline = re.search(r"mAP@0\.5 = ([0-9.]+)\s+mAP@0\.5:0\.95 = ([0-9.]+)", done.stdout)
    assert headline is not None, done.stdout
    # the embedded demo model is trained: on its own kind of data it must really detect banknotes
    assert float(headline.group(1)) >= 0.6 and float(headline.group(2)) > 0.3
    assert (state_dir / "jobs.sqlite3").is_file() and (state_dir / "data" / "demo" / "data.yaml").is_file()
