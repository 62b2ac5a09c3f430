"""YOLO dataset reading: layouts, pairing, and a report entry (never a crash) for every bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from smartcash_core.data.dataset import (
    COORDINATE_TOLERANCE,
    ReportEntry,
    load_uploaded_samples,
    load_yolo_dataset,
    parse_label_text,
)
from smartcash_core.data.discovery import label_path_for
from smartcash_core.data.images import probe_image
from smartcash_core.errors import DatasetError
from smartcash_core.validation.params import UploadedSample

GOOD_LINE = "3 0.5 0.5 0.2 0.4"


def _image_bytes(
    width: int = 40, height: int = 30, fmt: str = "JPEG", exif: Image.Exif | None = None
) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", (width, height), (90, 140, 200))
    image.save(buffer, format=fmt, **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def _truncated_jpeg() -> bytes:
    """A noisy JPEG whose scan data is cut short: the header is fine, the end-of-image marker is gone."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()[:-2000]


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------- label lines


def test_good_lines_parse_to_float32_rows() -> None:
    labels, report = parse_label_text(f"{GOOD_LINE}\n\n16 0.25 0.75 0.1 0.1\n", "a.txt", 17)
    assert report == []
    assert labels.dtype == np.float32 and labels.shape == (2, 5)
    np.testing.assert_allclose(labels, [[3, 0.5, 0.5, 0.2, 0.4], [16, 0.25, 0.75, 0.1, 0.1]], rtol=1e-6)


@pytest.mark.parametrize(
    ("bad_line", "reason_part"),
    [
        ("3 0.5 0.5 0.2", "expected 5 columns"),
        ("3 0.5 0.5 0.2 0.4 0.9", "expected 5 columns"),
        ("3 0.5 abc 0.2 0.4", "non-numeric"),
        ("3 nan 0.5 0.2 0.4", "NaN or infinite"),
        ("3 0.5 inf 0.2 0.4", "NaN or infinite"),
        ("17 0.5 0.5 0.2 0.4", "outside the class table"),
        ("-1 0.5 0.5 0.2 0.4", "outside the class table"),
        ("2.5 0.5 0.5 0.2 0.4", "not an integer"),
        ("3 0.95 0.5 0.2 0.4", "outside the normalized image"),
        ("3 50 40 20 10", "outside the normalized image"),
        ("3 0.5 0.5 0 0.4", "zero or negative box size"),
        ("3 0.5 0.5 0.2 -0.1", "zero or negative box size"),
    ],
)
def test_each_bad_line_is_reported_and_skipped(bad_line: str, reason_part: str) -> None:
    text = f"{GOOD_LINE}\n{bad_line}\n1 0.3 0.3 0.1 0.1\n"
    labels, report = parse_label_text(text, "labels/x.txt", 17)
    assert labels[:, 0].tolist() == [3.0, 1.0]  # both good lines survive, in file order
    assert len(report) == 1
    assert report[0].file == "labels/x.txt" and report[0].line == 2
    assert reason_part in report[0].reason


def test_coordinates_within_tolerance_are_clipped_into_the_image() -> None:
    nudge = COORDINATE_TOLERANCE / 2
    labels, report = parse_label_text(f"0 {0.1 - nudge / 2} 0.5 0.2 0.2\n", "t.txt", 17)
    assert report == []
    cx, _, w, _ = labels[0, 1:]
    assert cx - w / 2 == pytest.approx(0.0, abs=1e-7) and cx + w / 2 == pytest.approx(
        0.2 - nudge / 2, abs=1e-6
    )


def test_class_ids_written_as_floats_are_accepted() -> None:
    labels, report = parse_label_text("5.0 0.5 0.5 0.2 0.2\n", "t.txt", 17)
    assert report == [] and labels[0, 0] == 5


def test_duplicate_rows_are_removed_and_reported() -> None:
    labels, report = parse_label_text(f"{GOOD_LINE}\n{GOOD_LINE}\n0 0.5 0.5 0.1 0.1\n", "d.txt", 17)
    assert labels.shape == (2, 5)
    assert report == [ReportEntry("d.txt", None, "1 duplicate label row(s) removed")]


def test_smaller_class_table_rejects_ids_beyond_it() -> None:
    labels, report = parse_label_text("8 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n", "t.txt", num_classes=8)
    assert labels[:, 0].tolist() == [2.0] and "0..7" in report[0].reason


# ---------------------------------------------------------------------------------------------- images


def test_probe_reads_size_without_decoding_and_applies_exif_rotation() -> None:
    assert probe_image(_image_bytes(40, 30)) == ((30, 40), "")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: width and height swap
    assert probe_image(_image_bytes(40, 30, exif=exif)) == ((40, 30), "")


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "TIFF"])
def test_probe_accepts_other_formats(fmt: str) -> None:
    assert probe_image(_image_bytes(24, 16, fmt=fmt)) == ((16, 24), "")


@pytest.mark.parametrize(
    ("data", "reason_part"),
    [
        (b"definitely not an image", "unreadable or corrupt image"),
        (_truncated_jpeg(), "no end-of-image marker"),
        (_image_bytes(8, 30), "smaller than 10 px"),
        (_image_bytes(fmt="PNG")[:60], "unreadable or corrupt image"),
    ],
)
def test_probe_reports_bad_images(data: bytes, reason_part: str) -> None:
    shape, reason = probe_image(data)
    assert shape is None and reason_part in reason


def test_label_path_follows_the_yolov5_rule() -> None:
    path = Path("/d/images/x/images/val/a.b.jpg")
    assert label_path_for(path) == Path("/d/images/x/labels/val/a.b.txt")
    assert label_path_for(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


# ---------------------------------------------------------------------------------------------- layouts


def _split_dataset(root: Path) -> Path:
    _write(root / "images/val/b.jpg", _image_bytes())
    _write(root / "labels/val/b.txt", f"{GOOD_LINE}\n")
    _write(root / "images/val/a.png", _image_bytes(fmt="PNG"))
    _write(root / "labels/val/a.txt", "1 0.5 0.5 0.5 0.5\nbad line\n")
    _write(root / "images/val/c.jpg", _image_bytes())  # no label file: background
    _write(root / "images/val/notes.md", "not an image suffix, ignored")
    _write(root / "images/train/t.jpg", _image_bytes())
    return root


def test_split_layout_pairs_images_and_labels_in_sorted_order(tmp_path: Path) -> None:
    index = load_yolo_dataset(_split_dataset(tmp_path), split="val")
    assert [s.name for s in index.samples] == ["images/val/a.png", "images/val/b.jpg", "images/val/c.jpg"]
    assert [s.num_instances for s in index.samples] == [1, 1, 0]
    assert index.samples[2].labels.shape == (0, 5)
    assert all(s.shape == (30, 40) for s in index.samples)
    assert index.report == [ReportEntry("labels/val/a.txt", 2, "expected 5 columns 'cls cx cy w h', got 2")]
    assert index.root == tmp_path and index.num_instances == 2
    np.testing.assert_array_equal(index.shapes_wh(), [[40, 30]] * 3)


def test_split_layout_other_split(tmp_path: Path) -> None:
    index = load_yolo_dataset(_split_dataset(tmp_path), split="train")
    assert [s.name for s in index.samples] == ["images/train/t.jpg"]


def test_flat_layout(tmp_path: Path) -> None:
    _write(tmp_path / "images/x.jpg", _image_bytes())
    _write(tmp_path / "labels/x.txt", f"{GOOD_LINE}\n")
    index = load_yolo_dataset(tmp_path)
    assert [(s.name, s.num_instances) for s in index.samples] == [("images/x.jpg", 1)]


def test_missing_split_does_not_fall_back_to_other_splits(tmp_path: Path) -> None:
    _write(tmp_path / "images/train/t.jpg", _image_bytes())
    with pytest.raises(DatasetError, match="images/val"):
        load_yolo_dataset(tmp_path, split="val")


def test_bad_files_are_reported_and_skipped_while_good_ones_survive(tmp_path: Path) -> None:
    _write(tmp_path / "images/val/good.jpg", _image_bytes())
    _write(tmp_path / "images/val/corrupt.jpg", b"\x00\x01garbage")
    _write(tmp_path / "images/val/truncated.jpg", _truncated_jpeg())
    _write(tmp_path / "images/val/badlabel.jpg", _image_bytes())
    _write(tmp_path / "labels/val/badlabel.txt", b"\xff\xfe\x00 not utf-8")
    index = load_yolo_dataset(tmp_path)
    assert [s.name for s in index.samples] == ["images/val/good.jpg"]
    reasons = {entry.file: entry.reason for entry in index.report}
    assert set(reasons) == {"images/val/corrupt.jpg", "images/val/truncated.jpg", "labels/val/badlabel.txt"}
    assert "unreadable label file" in reasons["labels/val/badlabel.txt"]
    assert all(entry.line is None for entry in index.report)


def test_data_yaml_with_directory_split_and_relative_path(tmp_path: Path) -> None:
    _split_dataset(tmp_path / "sets/one")
    config = {"path": "sets/one", "train": "images/train", "val": "images/val", "names": {0: "a", 1: "b"}}
    _write(tmp_path / "my.yaml", yaml.safe_dump(config))
    index = load_yolo_dataset(tmp_path / "my.yaml", split="val")
    assert len(index.samples) == 3 and index.names == ["a", "b"]
    assert index.root == tmp_path / "sets/one"


def test_data_yaml_with_list_file_split(tmp_path: Path) -> None:
    _split_dataset(tmp_path)
    _write(
        tmp_path / "val.txt", "./images/val/b.jpg\nimages/val/c.jpg\n\nimages/val/missing.jpg\nreadme.md\n"
    )
    _write(tmp_path / "data.yaml", yaml.safe_dump({"val": "val.txt", "names": ["x"] * 17}))
    index = load_yolo_dataset(tmp_path)  # a directory holding data.yaml uses it
    assert [s.name for s in index.samples] == ["images/val/b.jpg", "images/val/c.jpg"]
    assert [(e.line, "does not exist" in e.reason or "not an image" in e.reason) for e in index.report] == [
        (4, True),
        (5, True),
    ]
    assert index.names == ["x"] * 17


def test_data_yaml_with_a_list_of_split_entries(tmp_path: Path) -> None:
    _split_dataset(tmp_path)
    _write(tmp_path / "data.yaml", yaml.safe_dump({"path": ".", "val": ["images/val", "images/train"]}))
    assert len(load_yolo_dataset(tmp_path / "data.yaml").samples) == 4


def test_data_yaml_errors_name_the_file(tmp_path: Path) -> None:
    _split_dataset(tmp_path)
    _write(tmp_path / "data.yaml", yaml.safe_dump({"train": "images/train"}))
    with pytest.raises(DatasetError, match="no 'val' split"):
        load_yolo_dataset(tmp_path / "data.yaml")
    _write(tmp_path / "data.yaml", yaml.safe_dump({"val": "nowhere"}))
    with pytest.raises(DatasetError, match="does not exist"):
        load_yolo_dataset(tmp_path)
    _write(tmp_path / "data.yaml", "- just\n- a list\n")
    with pytest.raises(DatasetError, match="YAML mapping"):
        load_yolo_dataset(tmp_path)


def test_missing_or_empty_dataset_raises_dataset_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match=str(missing)):
        load_yolo_dataset(missing)
    with pytest.raises(DatasetError, match="has no images"):
        load_yolo_dataset(tmp_path)
    _write(tmp_path / "images/val/bad.jpg", b"junk")
    with pytest.raises(DatasetError, match="no usable images"):
        load_yolo_dataset(tmp_path)


def test_synthetic_fixture_reads_cleanly(synthetic_dataset: Path) -> None:
    index = load_yolo_dataset(synthetic_dataset)
    assert index.report == [] and len(index.samples) == 24
    assert all(s.shape == (240, 320) for s in index.samples)
    label_lines = sum(
        len(p.read_text().splitlines()) for p in (synthetic_dataset / "labels/val").glob("*.txt")
    )
    assert index.num_instances == label_lines > 24


# ---------------------------------------------------------------------------------------------- uploads


def test_uploaded_samples_keep_bytes_and_report_problems() -> None:
    good = _image_bytes()
    uploads = [
        UploadedSample("one.jpg", good, f"{GOOD_LINE}\n3 0.5 0.5 0.2\n"),
        UploadedSample("two.png", _image_bytes(fmt="PNG"), None),
        UploadedSample("one.jpg", good, None),
        UploadedSample("three.jpg", b"broken", "0 0.5 0.5 0.1 0.1"),
    ]
    index = load_uploaded_samples(uploads, num_classes=17)
    assert [(s.name, s.num_instances, s.image_path) for s in index.samples] == [
        ("one.jpg", 1, None),
        ("two.png", 0, None),
    ]
    assert index.samples[0].data == good and index.samples[0].shape == (30, 40)
    assert [(e.file, e.line) for e in index.report] == [
        ("one.txt", 2),
        ("one.jpg", None),
        ("three.jpg", None),
    ]
    assert index.root is None


def test_upload_with_nothing_usable_raises() -> None:
    with pytest.raises(DatasetError, match="no usable images"):
        load_uploaded_samples([UploadedSample("x.jpg", b"nope", None)])
