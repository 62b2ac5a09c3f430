"""Fixtures of the distributed tests: a dataset whose images have different aspect ratios, and a model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from smartcash_core.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[2]
TRAINED_WEIGHTS = REPO / "tests" / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"
# (width, height, images, seed): landscape, portrait and square images, so rectangular batching reorders
# them and gives batches different shapes; 9 images in all.
PARTS = ((320, 240, 4, 10), (240, 320, 3, 11), (300, 300, 2, 12))


@pytest.fixture(scope="session")
def mixed_aspect_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-image YOLO dataset (``images/val``, ``labels/val``) mixing three aspect ratios. Read-only."""
    scratch = tmp_path_factory.mktemp("mixed_parts")
    root = tmp_path_factory.mktemp("mixed_aspect")
    for part, (width, height, images, seed) in enumerate(PARTS):
        generate_dataset(scratch / str(part), images=images, seed=seed, width=width, height=height)
        for kind in ("images", "labels"):
            target = root / kind / "val"
            target.mkdir(parents=True, exist_ok=True)
            for file in sorted((scratch / str(part) / kind / "val").iterdir()):
                shutil.copy(file, target / f"p{part}_{file.name}")
    return root


@pytest.fixture(scope="session")
def trained_weights() -> Path:
    """A trained YOLOv5n (the YOLOv5 fixture): it finds banknotes, so AP, ties and matches are non-trivial."""
    if not TRAINED_WEIGHTS.is_file():
        pytest.skip(f"{TRAINED_WEIGHTS} is missing")
    return TRAINED_WEIGHTS
