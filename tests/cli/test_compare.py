"""``smartcash validate --json X.json --state X.state.npz`` then ``smartcash compare A.json B.json``: the
table, its JSON, and the clear errors (missing state, a state of another run, other images, bad options,
hostile state files)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from smartcash_core.cli import main
from smartcash_core.validation.comparison_state import load_state, state_bytes, state_from_bytes
from tests.service.comparison_helpers import demo_checkpoints


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory, synthetic_dataset: Path, mixed_aspect_dataset: Path
) -> Path:
    """demo.json / degraded.json on the synthetic dataset, other.json on another dataset, each with its
    ``.state.npz``; again.json is a copy of demo's (the pass is deterministic: a second run is the same)."""
    folder = tmp_path_factory.mktemp("compare_cli")
    demo, degraded = demo_checkpoints(folder / "checkpoints")
    plan = (
        ("demo", demo, synthetic_dataset),
        ("degraded", degraded, synthetic_dataset),
        ("other", demo, mixed_aspect_dataset),
    )
    for name, checkpoint, data in plan:
        argv = ["validate", "--weights", str(folder / "checkpoints" / checkpoint), "--data", str(data)]
        argv += ["--imgsz", "320", "--batch", "8", "--device", "cpu", "--workers", "0"]
        argv += ["--json", str(folder / f"{name}.json"), "--state", str(folder / f"{name}.state.npz")]
        assert main(argv) == 0
    for suffix in (".json", ".state.npz"):
        (folder / f"again{suffix}").write_bytes((folder / f"demo{suffix}").read_bytes())
    return folder


def test_validate_writes_a_state_beside_the_json(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = load_state(runs / "demo.state.npz")
    report = json.loads((runs / "demo.json").read_text())
    assert sorted(state.image_keys) == sorted(row["file"] for row in report["per_image"])
    assert state.protocol == "yolo" and state.class_table.num_mapped == 8
    size = (runs / "demo.state.npz").stat().st_size
    assert 0 < size < 200 * 1024


def test_compare_prints_the_table(runs: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_json = tmp_path / "comparison.json"
    argv = ["compare", str(runs / "demo.json"), str(runs / "degraded.json"), "--resamples", "300"]
    assert main([*argv, "--per-class", "--json", str(out_json)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["View", "Metric", "Baseline", "Candidate", "Delta", "CI", "Verdict"]
    headline = next(line for line in lines if line.startswith("mapped") and "mAP50-95" in line)
    assert headline.endswith("worse")
    assert any(" AP50 " in line for line in lines)  # per-class rows
    assert lines[-1].startswith(
        "paired bootstrap over images (percentile interval): 300 resamples of 24 images"
    )
    saved = json.loads(out_json.read_text())
    report = json.loads((runs / "demo.json").read_text())
    assert saved["mapped"]["map50_95"]["baseline"] == pytest.approx(report["metrics"]["map50_95"], abs=1e-12)
    assert saved["mapped"]["map50_95"]["verdict"] == "worse"


def test_compare_the_same_checkpoint_twice(runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs / "demo.json"), str(runs / "again.json"), "--resamples", "200"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("mapped", "fine"))]
    assert len(rows) == 4
    assert all("+0.0000  [+0.0000, +0.0000]  no significant difference" in row for row in rows)


def test_compare_errors(runs: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    demo, degraded = str(runs / "demo.json"), str(runs / "degraded.json")
    cases = [
        (["compare", demo, str(runs / "other.json")], "different images"),  # another dataset
        (["compare", demo, degraded, "--state-b", str(runs / "demo.state.npz")], "belongs to another run"),
        (["compare", demo, degraded, "--state-b", str(tmp_path / "none.state.npz")], "no saved state"),
        (["compare", demo, str(tmp_path / "missing.json")], "missing.json"),
        (["compare", demo, degraded, "--resamples", "0"], "--resamples"),
        (["compare", demo, degraded, "--confidence", "1.5"], "--confidence"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err, (argv, err)


def test_hostile_state_files_are_refused(runs: Path, tmp_path: Path) -> None:
    good = (runs / "demo.state.npz").read_bytes()
    bad_inputs = [b"", b"not a zip", good[: len(good) // 2]]
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, meta=np.array([{"format": 1}], dtype=object))  # needs pickle to read: refused
    bad_inputs.append(pickled.read_bytes())
    state = state_from_bytes(good)
    tampered = dict(state.state)
    tampered["pred_class"] = np.full_like(tampered["pred_class"], 99)
    bad_inputs.append(state_bytes(type(state)(tampered, state.image_keys, state.protocol, state.class_table)))
    short = dict(state.state)
    short["fine_hit_bits"] = short["fine_hit_bits"][:-1]
    bad_inputs.append(state_bytes(type(state)(short, state.image_keys, state.protocol, state.class_table)))
    bad_inputs.append(
        state_bytes(type(state)(state.state, state.image_keys[:-1], state.protocol, state.class_table))
    )
    bad_inputs.append(state_bytes(type(state)(state.state, state.image_keys, "voc", state.class_table)))
    for data in bad_inputs:
        with pytest.raises(Exception) as error:
            state_from_bytes(data, "upload")
        assert getattr(error.value, "code", None) == "comparison_state_invalid", error.value
    members = zipfile.ZipFile(runs / "demo.state.npz").namelist()
    assert "meta.npy" in members and "image_keys.npy" in members
