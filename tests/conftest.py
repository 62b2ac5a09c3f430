"""Shared pytest fixtures for the whole suite."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcash_core.training.synthetic import generate_dataset
from tests.postgres_server import PostgresCluster, PostgresUnavailable, start_cluster

SYNTHETIC_IMAGES = 24
SYNTHETIC_SEED = 3
SYNTHETIC_SIZE = (320, 240)  # (width, height)
TRAINED_WEIGHTS = Path(__file__).resolve().parent / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"
# (width, height, images, seed): landscape, portrait and square images, so rectangular batching reorders
# them and gives batches different shapes; 9 images in all.
MIXED_ASPECT_PARTS = ((320, 240, 4, 10), (240, 320, 3, 11), (300, 300, 2, 12))


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


@pytest.fixture(scope="session")
def mixed_aspect_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-image YOLO dataset (``images/val``, ``labels/val``) mixing three aspect ratios. Read-only."""
    scratch = tmp_path_factory.mktemp("mixed_parts")
    root = tmp_path_factory.mktemp("mixed_aspect")
    for part, (width, height, images, seed) in enumerate(MIXED_ASPECT_PARTS):
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
    return TRAINED_WEIGHTS


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the whole session; tests that need it skip (with the reason) when
    no server can be started here. Started on first use only, so runs without such tests never pay for it."""
    try:
        cluster = start_cluster()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture()
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database on the session's cluster (dropped afterwards)."""
    url = postgres_cluster.database()
    yield url
    postgres_cluster.drop(url)
