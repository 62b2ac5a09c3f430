"""A serving process freezes what start-up made, so no full garbage collection (~120 ms with the GIL held
over the imports' 225k objects) stalls the event loop during a job or a model unload."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import service.main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import gc, sys, tempfile
from pathlib import Path
from service.main import create_app, freeze_startup_objects
from service.settings import Settings
create_app(Settings(state_dir=Path(tempfile.mkdtemp()), preload=""))
before = len(gc.get_objects())
freeze_startup_objects()
print(before, len(gc.get_objects()), gc.get_freeze_count())
"""


def test_freezing_leaves_the_collector_almost_nothing_to_walk() -> None:
    command = [sys.executable, "-c", SCRIPT]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, frozen = (int(value) for value in done.stdout.split())
    assert before > 100_000 and frozen >= before * 0.9  # what a full collection walked before
    assert after < before / 50  # what it walks now


def test_serve_freezes_after_building_the_app_and_before_serving(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[str] = []
    monkeypatch.setenv("SMARTCASH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SMARTCASH_PRELOAD", "")
    monkeypatch.setattr(service.main, "create_app", lambda settings: calls.append("app") or object())
    monkeypatch.setattr(service.main, "freeze_startup_objects", lambda: calls.append("freeze"))
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: calls.append("serve"))
    args: Any = argparse.Namespace(host=None, port=None)
    assert service.main.cli_serve(args) == 0
    assert calls == ["app", "freeze", "serve"]
