"""The label cache: a second indexing of an unchanged dataset skips probing and parsing, edits are seen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from smartcash_core.cache import clear_data_caches, get_cache_info, label_cache
from smartcash_core.data.dataset import DatasetIndex, load_yolo_dataset

Snapshot = tuple[list[tuple[str, list[list[float]], tuple[int, int] | None]], list[dict[str, object]]]


def _snapshot(index: DatasetIndex) -> Snapshot:
    samples = [(s.name, s.labels.tolist(), s.shape) for s in index.samples]
    return samples, [entry.to_dict() for entry in index.report]


def _label_stats() -> dict[str, int]:
    return get_cache_info()["label"]


@pytest.fixture
def dataset(synthetic_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic set with one bad label line, so reports are non-empty."""
    root = tmp_path / "set"
    shutil.copytree(synthetic_dataset, root)
    first_label = sorted((root / "labels" / "val").glob("*.txt"))[0]
    with first_label.open("a", encoding="utf-8") as handle:
        handle.write("99 0.5 0.5 0.1 0.1\n")
    clear_data_caches()
    return root


def test_second_load_hits_the_cache_and_gives_identical_results(dataset: Path) -> None:
    before = _label_stats()
    cold = load_yolo_dataset(dataset)
    middle = _label_stats()
    warm = load_yolo_dataset(dataset)
    after = _label_stats()
    images = len(cold.samples)
    assert images == 24 and any("outside the class table" in e.reason for e in cold.report)
    assert middle["misses"] - before["misses"] == images and middle["hits"] == before["hits"]
    assert after["hits"] - middle["hits"] == images and after["misses"] == middle["misses"]
    assert middle["entries"] == images and middle["bytes"] > 0
    assert _snapshot(warm) == _snapshot(cold)


def test_a_modified_label_file_misses_and_is_reparsed(dataset: Path) -> None:
    load_yolo_dataset(dataset)
    label = sorted((dataset / "labels" / "val").glob("*.txt"))[1]
    label.write_text("0 0.5 0.5 0.25 0.25\n", encoding="utf-8")
    stat = label.stat()
    os.utime(label, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # a distinct mtime for sure
    before = _label_stats()
    index = load_yolo_dataset(dataset)
    after = _label_stats()
    assert after["misses"] - before["misses"] == 1 and after["hits"] - before["hits"] == 23
    edited = next(s for s in index.samples if s.label_path == label)
    assert edited.labels.tolist() == [[0.0, 0.5, 0.5, 0.25, 0.25]]


def test_the_class_count_is_part_of_the_key(dataset: Path) -> None:
    full = load_yolo_dataset(dataset, num_classes=17)
    before = _label_stats()
    narrow = load_yolo_dataset(dataset, num_classes=8)
    assert _label_stats()["misses"] - before["misses"] == 24
    assert len(narrow.report) > len(full.report)  # ids 8..16 are now rejected lines


def test_report_names_follow_the_root_even_on_a_hit(dataset: Path) -> None:
    """Cached entries hold no file names: loading through data.yaml or the directory names files alike."""
    by_dir = load_yolo_dataset(dataset)
    by_yaml = load_yolo_dataset(dataset / "data.yaml")
    assert [e.file for e in by_yaml.report] == [e.file for e in by_dir.report]
    assert all(not Path(e.file).is_absolute() for e in by_dir.report)


def test_cached_arrays_are_not_shared_with_samples(dataset: Path) -> None:
    first = load_yolo_dataset(dataset)
    first.samples[0].labels[:] = -1  # a consumer editing its labels must not poison the next epoch
    second = load_yolo_dataset(dataset)
    assert (second.samples[0].labels >= 0).all()
    assert len(label_cache()) == 24
