"""The library CLI package: one parser for every command, ``python -m smartcash_core.cli``, the validate
command choosing the single-process or the torchrun pass from torchrun's variables, and train-demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smartcash_core.cli import main

COMMANDS = ("synth", "validate", "convert", "train-demo")


def test_module_entry_point_lists_every_command() -> None:
    done = subprocess.run([sys.executable, "-m", "smartcash_core.cli", "--help"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert all(command in done.stdout for command in COMMANDS)


def test_validate_refuses_inconsistent_torchrun_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "0")
    code = main(["validate", "--weights", str(tmp_path / "w.pt"), "--data", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["error: inconsistent torchrun variables RANK=5 WORLD_SIZE=2 LOCAL_RANK=0"]


def test_validate_under_a_one_process_torchrun_is_the_plain_pass(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
    mixed_aspect_dataset: Path, trained_weights: Path,
) -> None:
    argv = ["validate", "--weights", str(trained_weights), "--data", str(mixed_aspect_dataset),
            "--imgsz", "160", "--batch", "4", "--device", "cpu", "--workers", "0"]
    assert main([*argv, "--json", str(tmp_path / "plain.json")]) == 0
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert main([*argv, "--json", str(tmp_path / "one.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("Mapped classes") == 2 and "Distributed" not in out
    plain, one = (json.loads((tmp_path / name).read_text()) for name in ("plain.json", "one.json"))
    assert "distributed" not in one and one["dataset"]["images"] == 9
    assert one["metrics"] == plain["metrics"] and one["per_image"] == plain["per_image"]


@pytest.mark.slow
def test_train_demo_writes_a_checkpoint_from_its_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from smartcash_core.checkpoint import load_model
    from smartcash_core.training.synthetic import generate_dataset

    # The run generates its val set only when missing: a 4-image one in its place keeps this test short.
    generate_dataset(tmp_path / "work" / "val-s1005-n100", images=4, seed=1005, width=160, height=120)
    out = tmp_path / "demo.safetensors"
    argv = ["train-demo", "--out", str(out), "--workdir", str(tmp_path / "work"), "--images", "16",
            "--imgsz", "64", "--epochs-head", "0", "--epochs-full", "1", "--seed", "5", "--lr", "0.001"]
    assert main(argv) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    metrics = load_model(out, "cpu").metadata["metrics"]
    assert metrics["train_images"] == 16 and metrics["imgsz"] == 64 and metrics["seed"] == 5
    assert metrics["epochs_head"] == 0 and metrics["epochs_full"] == 1
