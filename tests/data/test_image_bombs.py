"""Decompression bombs: an image whose header declares more than the pixel cap is skipped (reported like any
bad image) before any decoder runs, in the probe, the decode workers, the pass and the CLI; PIL's own
bomb check no longer decides (no warning, no error that depends on process-wide state)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from smartcash_core.cli import main
from smartcash_core.data.images import ImageTooLarge, decode_image, probe_image
from smartcash_core.data.limits import DEFAULT_MAX_IMAGE_PIXELS
from smartcash_core.data.loader import BatchLoader, BatchPlan, ImageRef
from tests.security.hostile_data import png_bomb

FIXTURE_VAL = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5" / "val"
SAMPLE = sorted((FIXTURE_VAL / "images" / "val").glob("*.jpg"))[0]  # 640 x 480
SAMPLE_PIXELS = 640 * 480


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return png_bomb()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_bomb_is_small_and_declares_400_megapixels(bomb: bytes) -> None:
    assert len(bomb) < 64 * 1024
    assert Image.open(io.BytesIO(bomb)).size == (19999, 19999)  # PIL's own check is off: no error


@pytest.mark.parametrize("as_file", [True, False])
def test_probe_refuses_the_bomb_from_its_header(bomb: bytes, tmp_path: Path, as_file: bool) -> None:
    source: Path | bytes = bomb
    if as_file:
        source = tmp_path / "bomb.png"
        source.write_bytes(bomb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would fail here
        shape, reason = probe_image(source)
    assert shape is None
    assert reason == "image is 19999x19999 = 400.0 MP, over the cap of 40 MP (max_image_pixels); not decoded"


def test_decode_refuses_before_decoding(bomb: bytes) -> None:
    with pytest.raises(ImageTooLarge, match="over the cap of 40 MP"):
        decode_image(bomb, 320)


def test_the_cap_is_inclusive_and_adjustable() -> None:
    image = _png(100, 50)
    assert probe_image(image, max_pixels=5000) == ((50, 100), "")
    assert probe_image(image, max_pixels=4999)[0] is None
    assert decode_image(image, max_pixels=5000).shape == (50, 100, 3)
    with pytest.raises(ImageTooLarge):
        decode_image(image, max_pixels=4999)


def test_a_raised_cap_lets_an_image_over_pils_own_limit_through_without_warnings() -> None:
    big = png_bomb(12000, 12000)  # 144 MP: PIL's default limit (89 MP) would warn, at 179 MP refuse
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert probe_image(big, max_pixels=200_000_000) == ((12000, 12000), "")
    assert DEFAULT_MAX_IMAGE_PIXELS == 40_000_000 and Image.MAX_IMAGE_PIXELS is None


def test_decode_workers_skip_an_image_that_grew_after_the_probe(bomb: bytes, tmp_path: Path) -> None:
    """The index probed a small file; by decode time it is a bomb: the worker refuses it from the header."""
    path = tmp_path / "swapped.png"
    path.write_bytes(bomb)
    plan = BatchPlan((ImageRef(0, "swapped.png", path, None, 64, 64),), (64, 64))
    with BatchLoader([plan], imgsz=64, workers=1) as loader:
        (batch,) = list(loader)
    assert batch.metas == [] and len(batch.failures) == 1
    assert "over the cap of 40 MP" in batch.failures[0][1]


def _dataset_with_bomb(root: Path, bomb: bytes) -> Path:
    images = root / "images" / "val"
    images.mkdir(parents=True)
    shutil.copyfile(SAMPLE, images / SAMPLE.name)
    (images / "bomb.png").write_bytes(bomb)
    return root


def test_cli_reports_the_bomb_as_skipped(
    bomb: bytes, tmp_path: Path, trained_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset_with_bomb(tmp_path / "set", bomb)
    argv = ["validate", "--weights", str(trained_weights), "--data", str(root), "--imgsz", "128",
            "--device", "cpu", "--workers", "0", "--json", str(tmp_path / "out.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "images/val/bomb.png: image is 19999x19999 = 400.0 MP, over the cap of 40 MP" in out
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["dataset"]["images"] == 1
    assert [entry["file"] for entry in result["dataset"]["skipped"]] == ["images/val/bomb.png"]


def test_cli_max_image_pixels_option(
    bomb: bytes, tmp_path: Path, trained_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset_with_bomb(tmp_path / "set", bomb)
    (root / "images" / "val" / "small.png").write_bytes(_png(320, 240))
    argv = ["validate", "--weights", str(trained_weights), "--data", str(root), "--imgsz", "128",
            "--device", "cpu", "--workers", "0", "--max-image-pixels", str(SAMPLE_PIXELS - 1)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{SAMPLE.name}: image is 640x480 = 0.3 MP, over the cap of 0.307199 MP" in out
    assert "small.png" not in out.split("Skipped")[1].split("Warning")[0]


RSS_PROBE = """
import json, resource, sys, time
from smartcash_core.checkpoint import load_model
from smartcash_core.validation.params import ValidationParams
from smartcash_core.validation.runner import run_validation

model = load_model(sys.argv[1], "cpu")
params = ValidationParams(imgsz=128, device="cpu", workers=2)
run_validation(model, sys.argv[3], params)  # warm up: allocator pools, lazy imports
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
result = run_validation(model, sys.argv[2], params)
print(json.dumps({
    "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    "seconds": time.perf_counter() - started,
    "skipped": result.dataset["skipped"],
}))
"""


def test_the_pass_skips_the_bomb_with_bounded_memory(
    bomb: bytes, tmp_path: Path, trained_weights: Path
) -> None:
    """Before the cap, this pass decoded the bomb: +4.2 GB peak RSS and 40 s here (the issue measured 52 s).
    Peak RSS of a fresh process (after a warm-up pass without the bomb) now grows by less than 200 MB."""
    with_bomb = _dataset_with_bomb(tmp_path / "bomb", bomb)
    plain = tmp_path / "plain" / "images" / "val"
    plain.mkdir(parents=True)
    shutil.copyfile(SAMPLE, plain / "other.jpg")
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(trained_weights), str(with_bomb), str(plain.parents[1])],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert [entry["file"] for entry in measured["skipped"]] == ["images/val/bomb.png"]
    assert measured["grown_kib"] < 200 * 1024, measured
