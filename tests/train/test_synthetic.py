"""The synthetic banknote generator: determinism, class coverage, label sanity, domains."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from smartcash_core.classes import default_class_table
from smartcash_core.cli import main as cli_main
from smartcash_core.data.dataset import load_yolo_dataset
from smartcash_core.errors import DatasetError
from smartcash_core.training.synthetic import (
    DOMAIN_CONFIGS,
    NUM_DENOMINATIONS,
    _render_note,
    _rotate_note,
    generate_dataset,
    render_scene,
)


def _digest_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _read_labels(root: Path, split: str = "val") -> list[np.ndarray]:
    arrays = []
    for path in sorted((root / "labels" / split).glob("*.txt")):
        rows = [list(map(float, line.split())) for line in path.read_text().splitlines()]
        arrays.append(np.asarray(rows, dtype=np.float64).reshape(-1, 5))
    return arrays


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    generate_dataset(first, images=6, seed=11, width=200, height=160)
    generate_dataset(second, images=6, seed=11, width=200, height=160)
    assert _digest_tree(first) == _digest_tree(second)
    assert len(_digest_tree(first)) == 6 * 2 + 1  # images, labels, data.yaml


def test_different_seeds_give_different_images(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "a", images=2, seed=1, width=160, height=120)
    generate_dataset(tmp_path / "b", images=2, seed=2, width=160, height=120)
    image = Path("images/val/synth_00000.jpg")
    assert (tmp_path / "a" / image).read_bytes() != (tmp_path / "b" / image).read_bytes()


def test_sixty_images_seed_3_cover_all_17_classes(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=60, seed=3, width=320, height=240)
    labels = _read_labels(tmp_path)
    assert len(labels) == 60
    classes = np.concatenate([rows[:, 0] for rows in labels]).astype(int)
    assert set(classes.tolist()) == set(range(17))
    assert any(len(rows) == 0 for rows in labels), "some scenes must be background images"


def test_labels_are_normalized_and_features_are_not_tiny(synthetic_dataset: Path) -> None:
    for rows in _read_labels(synthetic_dataset):
        if len(rows) == 0:
            continue
        classes, boxes = rows[:, 0], rows[:, 1:]
        assert np.all(classes == np.round(classes)) and classes.min() >= 0 and classes.max() <= 16
        assert np.all(boxes[:, 2:] > 0)
        assert np.all(boxes[:, :2] - boxes[:, 2:] / 2 >= -1e-6)
        assert np.all(boxes[:, :2] + boxes[:, 2:] / 2 <= 1 + 1e-6)
        # The smallest side of the fixture's 320x240 boxes: features must stay learnable at 320 px.
        sides = np.minimum(boxes[:, 2] * 320, boxes[:, 3] * 240)
        assert sides.min() >= 9.0


def test_every_note_has_its_nominal_feature_inside_it(synthetic_dataset: Path) -> None:
    for rows in _read_labels(synthetic_dataset):
        wholes = rows[rows[:, 0] < NUM_DENOMINATIONS]
        nominals = rows[(rows[:, 0] >= 7) & (rows[:, 0] < 14)]
        assert len(wholes) == len(nominals)
        for nominal in nominals:
            cx, cy = nominal[1], nominal[2]
            inside = [
                note
                for note in wholes
                if abs(cx - note[1]) <= note[3] / 2 and abs(cy - note[2]) <= note[4] / 2
            ]
            assert len(inside) == 1 and inside[0][0] == nominal[0] - 7  # same denomination


def test_data_yaml_names_the_class_table(synthetic_dataset: Path) -> None:
    data = yaml.safe_load((synthetic_dataset / "data.yaml").read_text())
    assert data["names"] == list(default_class_table().fine_names)
    assert data["val"] == "images/val" and data["nc"] == 17


def test_data_yaml_keeps_earlier_splits(tmp_path: Path) -> None:
    generate_dataset(tmp_path, images=1, seed=0, width=128, height=96, split="train")
    generate_dataset(tmp_path, images=1, seed=1, width=128, height=96, split="val")
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("images/train", "images/val")


@pytest.mark.parametrize("angle", [0.0, 5.0, -9.0])
def test_rotated_note_boxes_are_tight_around_the_drawn_note(angle: float) -> None:
    rng = np.random.default_rng(5)
    note, labels = _render_note(rng, 3, 240, 116, DOMAIN_CONFIGS["standard"])
    # A probe label covering the full note maps through the corner transform used for features.
    probe = (14, 0.0, 0.0, 240.0, 116.0)
    rotated, boxes = _rotate_note(note, [*labels, probe], angle)
    alpha = np.asarray(rotated.getchannel("A")) >= 128
    ys, xs = np.nonzero(alpha)
    exact = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    whole, mapped_probe = boxes[0], boxes[-1]
    assert whole == (3, *exact)
    assert np.allclose(mapped_probe[1:], exact, atol=1.0)
    for _, x0, y0, x1, y1 in boxes[1:]:
        assert whole[1] - 1 <= x0 < x1 <= whole[3] + 1 and whole[2] - 1 <= y0 < y1 <= whole[4] + 1


def test_shifted_domain_is_busier_than_standard() -> None:
    def busyness(domain: str) -> float:
        image, _ = render_scene(np.random.default_rng(7), 320, 240, domain)
        pixels = np.asarray(image, dtype=np.float32)
        return float(np.abs(np.diff(pixels, axis=1)).mean())

    assert busyness("shifted") > 1.5 * busyness("standard")


def test_bad_requests_raise_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="domain"):
        generate_dataset(tmp_path, images=1, seed=0, domain="nope")
    with pytest.raises(DatasetError, match="images"):
        generate_dataset(tmp_path, images=0, seed=0)
    with pytest.raises(DatasetError, match="split"):
        generate_dataset(tmp_path, images=1, seed=0, split="../x")
    assert not (tmp_path / "images").exists()


def test_cli_synth_writes_and_summarizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth", "--out", str(tmp_path), "--images", "3", "--seed", "4", "--width", "160",
            "--height", "120", "--split", "test"]
    assert cli_main(argv) == 0
    summary = capsys.readouterr().out
    assert summary.startswith("wrote 3 images (160x120") and summary.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "images" / "test").iterdir()) == [
        "synth_00000.jpg",
        "synth_00001.jpg",
        "synth_00002.jpg",
    ]
    with Image.open(tmp_path / "images" / "test" / "synth_00000.jpg") as image:
        assert image.size == (160, 120) and image.format == "JPEG"


# Before the badge fix, seed 7 crashed at all of these sizes (2 to 90 of the first 150 images); the
# nominal badge of a small note had no room for its tick marks and PIL got an inverted rectangle.
@pytest.mark.parametrize(("width", "height"), [(64, 64), (96, 64), (64, 200), (160, 120)])
def test_small_image_sizes_render_and_read_cleanly(tmp_path: Path, width: int, height: int) -> None:
    generate_dataset(tmp_path, images=150, seed=7, width=width, height=height)
    index = load_yolo_dataset(tmp_path)
    assert len(index.samples) == 150 and index.report == []
    assert all(sample.shape == (height, width) for sample in index.samples)
    nominal = {int(cls) for s in index.samples for cls in s.labels[:, 0] if 7 <= cls < 14}
    assert nominal, "small notes still carry their nominal badge labels"


@pytest.mark.parametrize(("width", "height"), [(63, 64), (64, 48), (32, 32)])
def test_sizes_under_the_minimum_name_it(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(DatasetError, match="at least 64x64"):
        generate_dataset(tmp_path, images=1, seed=0, width=width, height=height)
    assert not (tmp_path / "images").exists()
