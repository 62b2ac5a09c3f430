"""Dataset discovery: roles, the order paths are named in, laziness, resolving, problems and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smartcash_core.data.discovery import DatasetDiscovery, DatasetFile, FileRole, is_file, label_path_for
from smartcash_core.errors import DatasetError
from tests.file_reads import recorded_reads


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """``data.yaml`` naming a folder split and a list file; one image without a label."""
    root = tmp_path / "ds"
    for name in ("a", "b"):
        _touch(root / "images" / "val" / f"{name}.jpg")
    _touch(root / "labels" / "val" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    _touch(root / "extra" / "images" / "c.png")
    _touch(root / "extra" / "labels" / "c.txt")
    _touch(root / "val.txt", "extra/images/c.png\n\nextra/notes.md\nextra/images/gone.jpg\n")
    _touch(root / "data.yaml", "path: .\nval: [images/val, val.txt]\nnames: [a]\n")
    return root


def _summary(files: list[DatasetFile], base: Path) -> list[tuple[str, str]]:
    return [(found.role.name, found.path.relative_to(base).as_posix()) for found in files]


def test_roles_in_the_order_the_job_meets_them(dataset: Path) -> None:
    discovery = DatasetDiscovery(dataset, "val")
    files = list(discovery)
    summary = _summary(files, dataset)
    assert summary[:4] == [
        ("DATA_YAML", "data.yaml"),
        ("DATASET_ROOT", "."),
        ("SPLIT_ENTRY", "images/val"),  # every entry is named before any is walked
        ("SPLIT_ENTRY", "val.txt"),
    ]
    walked = summary[4:7]  # the folder walk, in the file system's order
    assert sorted(walked) == [
        ("IMAGE", "images/val/a.jpg"),
        ("IMAGE", "images/val/b.jpg"),
        ("LABEL", "labels/val/a.txt"),
    ]
    assert walked[walked.index(("IMAGE", "images/val/a.jpg")) + 1] == ("LABEL", "labels/val/a.txt")
    assert summary[7:] == [  # b.jpg has no label file: no LABEL, a background image
        ("IMAGE", "extra/images/c.png"),
        ("LABEL", "extra/labels/c.txt"),
        ("NOT_AN_IMAGE", "extra/notes.md"),
        ("IMAGE", "extra/images/gone.jpg"),
    ]
    assert discovery.yaml_path == dataset / "data.yaml" and discovery.root == dataset
    assert discovery.config["names"] == ["a"]
    entries = [found for found in files if found.role is FileRole.SPLIT_ENTRY]
    assert [(entry.named, entry.listed_in) for entry in entries] == [
        ("images/val", dataset / "data.yaml"),
        ("val.txt", dataset / "data.yaml"),
    ]
    listed = {found.named: found for found in files if found.line is not None}
    assert listed["extra/images/c.png"].line == 1 and listed["extra/images/c.png"].problem is None
    assert listed["extra/notes.md"].problem == "not an image path: 'extra/notes.md'"
    assert not listed["extra/notes.md"].touched
    assert listed["extra/images/gone.jpg"].problem == "listed image 'extra/images/gone.jpg' does not exist"
    images = [found for found in files if found.role is FileRole.IMAGE and found.problem is None]
    assert len(images) == 3 and all(found.label == label_path_for(found.path) for found in images)
    assert all(found.resolved is None for found in files)  # not asked to resolve


def test_a_directory_without_yaml_is_its_own_root(tmp_path: Path) -> None:
    _touch(tmp_path / "images" / "train" / "t.jpg")
    _touch(tmp_path / "images" / "val" / "sub" / "v.jpg")
    files = list(DatasetDiscovery(tmp_path, "val"))
    assert _summary(files, tmp_path) == [("DATASET_ROOT", "."), ("IMAGE", "images/val/sub/v.jpg")]


def test_the_walk_is_lazy_a_refused_path_is_never_read(dataset: Path) -> None:
    with recorded_reads(dataset) as reads:
        walk: Iterator[DatasetFile] = iter(DatasetDiscovery(dataset, "val"))
        assert next(walk).role is FileRole.DATA_YAML
    assert reads == set()  # data.yaml is named before it is read
    with recorded_reads(dataset) as reads:
        walk = iter(DatasetDiscovery(dataset, "val"))
        while next(walk).role is not FileRole.SPLIT_ENTRY:
            pass
        assert next(walk).path == dataset / "val.txt"
    assert reads == {(dataset / "data.yaml").resolve()}  # the list file is named before it is read


def test_resolving_follows_symlinks_and_resolves_each_folder_once(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    _touch(tmp_path / "elsewhere" / "z.jpg")
    (dataset / "images" / "val" / "z.jpg").symlink_to(tmp_path / "elsewhere" / "z.jpg")
    calls: list[Path] = []

    def resolve(path: Path) -> Path:
        calls.append(path)
        return path.resolve()

    files = list(DatasetDiscovery(dataset, "val", resolve=resolve))
    resolved = {found.path.name: found.resolved for found in files if found.touched}
    assert resolved["z.jpg"] == (tmp_path / "elsewhere" / "z.jpg").resolve()
    assert resolved["a.jpg"] == (dataset / "images" / "val" / "a.jpg").resolve()
    assert all(found.resolved is None for found in files if not found.touched)
    assert calls.count(dataset / "images" / "val") == 1  # a.jpg and b.jpg share their folder's resolve
    assert dataset / "images" / "val" / "z.jpg" in calls  # a symlink is resolved in full


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("val: nowhere\n", "split entry 'nowhere' of .* does not exist"),
        ("train: images/val\n", "no 'val' split"),
        ("- just a list\n", "YAML mapping"),
        ("val: [unclosed\n", "cannot read dataset file"),
    ],
)
def test_where_the_reader_cannot_go_on_the_walk_stops(dataset: Path, yaml_text: str, message: str) -> None:
    (dataset / "data.yaml").write_text(yaml_text)
    with pytest.raises(DatasetError, match=message):
        list(DatasetDiscovery(dataset, "val"))


def test_a_missing_source_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        list(DatasetDiscovery(tmp_path / "nothing", "val"))


def test_hostile_list_lines_nul_byte_and_over_long_name(dataset: Path) -> None:
    (dataset / "val.txt").write_text("extra/images/c.png\nextra/images/b\x00d.jpg\n")
    files = list(DatasetDiscovery(dataset, "val"))
    nul = next(found for found in files if found.named and "\x00" in found.named)
    assert nul.problem is not None and "does not exist" in nul.problem
    (dataset / "val.txt").write_text("n" * 300 + ".jpg\n")
    with pytest.raises(OSError):  # ENAMETOOLONG: the reader fails on it as well (see the service's 400)
        list(DatasetDiscovery(dataset, "val"))


def test_is_file_answers_as_path_is_file_with_one_lstat_for_plain_files(tmp_path: Path) -> None:
    plain = _touch(tmp_path / "plain.jpg")
    (tmp_path / "folder").mkdir()
    (tmp_path / "to_file.jpg").symlink_to(plain)
    (tmp_path / "to_folder").symlink_to(tmp_path / "folder")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    names = ["plain.jpg", "folder", "to_file.jpg", "to_folder", "dangling.jpg", "loop.jpg", "gone.jpg"]
    names += ["plain.jpg/below.jpg", "loop.jpg/below.jpg", "bad\x00name.jpg"]
    for name in names:
        path = tmp_path / name
        exists, info = is_file(path)
        assert exists == path.is_file(), name
        assert (info is not None) == (name in ("plain.jpg", "folder")), name  # plain entries: lstat kept
    with pytest.raises(OSError):  # ENAMETOOLONG is not one of the errors Path.is_file ignores (3.11)
        is_file(tmp_path / ("n" * 300))
