"""Shared pytest fixtures for the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from smartcash_core.data.synthetic import generate_dataset

SYNTHETIC_IMAGES = 24
SYNTHETIC_SEED = 3
SYNTHETIC_SIZE = (320, 240)  # (width, height)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a small synthetic YOLO dataset, written once per session.

    Layout: ``images/val/synth_00000.jpg`` ... (24 images, 320x240, seed 3), ``labels/val/*.txt`` and a
    ``data.yaml`` naming the 17 fine classes. Treat it as read-only: other tests share it.
    """
    root = tmp_path_factory.mktemp("synthetic")
    width, height = SYNTHETIC_SIZE
    generate_dataset(
        root, images=SYNTHETIC_IMAGES, seed=SYNTHETIC_SEED, width=width, height=height, split="val"
    )
    return root
