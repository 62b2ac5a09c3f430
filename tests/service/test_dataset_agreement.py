"""The service's containment check and the library's reader agree on which files a dataset job reads.

For each tricky tree (symlinks into and out of the data root, list files with relative, absolute and
``../`` entries, ``path:`` absolute and relative, nested folders, missing splits) the test

1. runs the library's reader (``load_yolo_dataset``) and records, through the ``open`` audit event, every
   file it really opens;
2. runs the discovery both share, resolving paths, and checks the reader opened exactly the files it
   names (data.yaml, list files, images, existing labels);
3. runs the service's check and checks its verdict: it refuses every tree where the reader opens a file
   outside the root, accepts every tree where it does not (except the few where it is knowingly
   stricter, marked ``strict``), and never opens a file outside the root itself while checking.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from service.datasets import check_dataset_contained
from service.errors import PathRejected
from smartcash_core.cache import clear_data_caches
from smartcash_core.data.dataset import load_yolo_dataset
from smartcash_core.data.discovery import DatasetDiscovery, FileRole, label_path_for
from smartcash_core.errors import DatasetError
from tests.file_reads import recorded_reads

LABEL = "0 0.5 0.5 0.5 0.5\n"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (30, 60, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png()


@dataclass(frozen=True)
class World:
    """``root`` is the data root; ``outside`` lies next to it. Both hold YOLO trees of real images."""

    root: Path
    outside: Path

    def image(self, path: Path, label: bool = True) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(PNG)
        if label:
            label_path = label_path_for(path)
            label_path.parent.mkdir(parents=True, exist_ok=True)
            label_path.write_text(LABEL)

    def yaml(self, text: str, name: str = "data.yaml") -> Path:
        path = self.root / "ds" / name
        path.write_text(text.format(root=self.root, outside=self.outside))
        return self.root / "ds"


@pytest.fixture()
def world(tmp_path: Path) -> World:
    world = World(tmp_path / "root", tmp_path / "outside")
    for name in ("a", "b"):
        world.image(world.root / "ds" / "images" / "val" / f"{name}.png")
        world.image(world.outside / "images" / "val" / f"{name}.png")
    world.image(world.root / "other" / "images" / "c.png")
    return world


# Each case builds its tree and returns the dataset path the client names (a directory or a data.yaml).
Setup = Callable[[World], Path]


def plain_split_layout(w: World) -> Path:
    return w.root / "ds"


def inner_symlinks_and_alternate_yaml_name(w: World) -> Path:
    (w.root / "alias").symlink_to(w.root / "ds" / "images" / "val")
    return w.yaml("path: .\nval: [images/val, ../alias]\n", name="data.yml")


def absolute_path_inside(w: World) -> Path:
    return w.yaml("path: {root}/ds\nval: images/val\n")


def absolute_path_outside(w: World) -> Path:
    return w.yaml("path: {outside}\nval: images/val\n")


def relative_path_climbing_out(w: World) -> Path:
    return w.yaml("path: ../../outside\nval: images/val\n")


def list_file_relative_absolute_and_dotdot_inside(w: World) -> Path:
    absolute = f"{w.root}/ds/images/val/b.png"
    lines = ["images/val/a.png", "./images/val/a.png", absolute, "../other/images/c.png"]
    (w.root / "ds" / "val.txt").write_text("\n".join(lines) + "\n")
    return w.yaml("val: val.txt\n")


def list_file_dotdot_escape(w: World) -> Path:
    (w.root / "ds" / "val.txt").write_text("images/val/a.png\n../../outside/images/val/b.png\n")
    return w.yaml("val: val.txt\n")


def list_file_absolute_escape(w: World) -> Path:
    (w.root / "ds" / "lists").mkdir()
    (w.root / "ds" / "lists" / "val.txt").write_text(f"../images/val/a.png\n{w.outside}/images/val/a.png\n")
    return w.yaml("val: lists/val.txt\n")


def list_file_lines_the_reader_never_touches(w: World) -> Path:
    lines = ["images/val/a.png", f"{w.outside}/labels/val/a.txt", "images/val/gone.png"]
    (w.root / "ds" / "val.txt").write_text("\n".join(lines) + "\n")
    return w.yaml("val: val.txt\n")


def list_file_missing_image_linked_outside(w: World) -> Path:
    (w.root / "ds" / "images" / "val" / "gone.png").symlink_to(w.outside / "images" / "val" / "gone.png")
    (w.root / "ds" / "val.txt").write_text("images/val/a.png\nimages/val/gone.png\n")
    return w.yaml("val: val.txt\n")


def image_symlinked_out(w: World) -> Path:
    (w.root / "ds" / "images" / "val" / "c.png").symlink_to(w.outside / "images" / "val" / "a.png")
    return w.root / "ds"


def label_symlinked_out(w: World) -> Path:
    label = w.root / "ds" / "labels" / "val" / "a.txt"
    label.unlink()
    label.symlink_to(w.outside / "labels" / "val" / "a.txt")
    return w.root / "ds"


def label_folder_symlinked_out(w: World) -> Path:
    folder = w.root / "ds" / "labels"
    for path in sorted(folder.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    folder.rmdir()
    folder.symlink_to(w.outside / "labels")
    return w.root / "ds"


def image_folder_symlinked_out_without_yaml(w: World) -> Path:
    (w.root / "flat").mkdir()
    (w.root / "flat" / "images").symlink_to(w.outside / "images" / "val")
    return w.root / "flat"


def nested_folders_and_a_linked_subfolder_rglob_skips(w: World) -> Path:
    w.image(w.root / "ds" / "images" / "val" / "sub" / "deeper" / "d.png")
    (w.root / "ds" / "images" / "val" / "linked").symlink_to(w.outside / "images" / "val")
    return w.root / "ds"


def missing_split(w: World) -> Path:
    return w.yaml("train: images/val\n")


def data_yaml_symlinked_out(w: World) -> Path:
    (w.outside / "data.yaml").write_text("path: .\nval: images/val\n")
    (w.root / "ds" / "data.yaml").symlink_to(w.outside / "data.yaml")
    return w.root / "ds"


def split_entry_is_one_image_and_one_outside_folder(w: World) -> Path:
    (w.outside / "empty").mkdir()
    return w.yaml("val: [images/val/a.png, {outside}/empty]\n")


def split_entry_missing(w: World) -> Path:
    return w.yaml("val: [images/val, nowhere]\n")


CASES: dict[str, tuple[Setup, str]] = {
    # expectation: "inside" (accepted, reads stay inside), "escape" (refused: the reader would read
    # outside), "strict" (refused although the reader opens nothing outside: it names or lists it)
    "plain split layout": (plain_split_layout, "inside"),
    "symlinks inside the root, data.yml": (inner_symlinks_and_alternate_yaml_name, "inside"),
    "path: absolute inside": (absolute_path_inside, "inside"),
    "path: absolute outside": (absolute_path_outside, "escape"),
    "path: relative climbing out": (relative_path_climbing_out, "escape"),
    "list: relative, ./, absolute, ../ inside": (list_file_relative_absolute_and_dotdot_inside, "inside"),
    "list: ../ escape": (list_file_dotdot_escape, "escape"),
    "list in a subfolder: absolute escape": (list_file_absolute_escape, "escape"),
    "list: non-image and missing lines": (list_file_lines_the_reader_never_touches, "inside"),
    "list: missing image linked outside": (list_file_missing_image_linked_outside, "strict"),
    "image symlinked out": (image_symlinked_out, "escape"),
    "label symlinked out": (label_symlinked_out, "escape"),
    "label folder symlinked out": (label_folder_symlinked_out, "escape"),
    "images folder symlinked out, no yaml": (image_folder_symlinked_out_without_yaml, "escape"),
    "nested folders, linked subfolder": (nested_folders_and_a_linked_subfolder_rglob_skips, "inside"),
    "missing split": (missing_split, "inside"),
    "data.yaml symlinked out": (data_yaml_symlinked_out, "escape"),
    "split entries: an image, an outside folder": (split_entry_is_one_image_and_one_outside_folder, "strict"),
    "split entry missing": (split_entry_missing, "inside"),
}

def library_reads(dataset: Path, under: Path) -> set[Path]:
    clear_data_caches()  # a cached index would skip reading labels and probing images
    # what it read before giving up with a DatasetError still counts
    with recorded_reads(under) as reads, contextlib.suppress(DatasetError):
        load_yolo_dataset(dataset, "val")
    return reads


def discovered_reads(dataset: Path) -> set[Path]:
    """The real paths of the files the discovery says the reader opens.

    The reader opens data.yaml and list files as the walk meets them, images and labels only once the
    walk is complete (where it stops with an error, it never indexes).
    """
    walked: set[Path] = set()
    indexed: set[Path] = set()
    try:
        for found in DatasetDiscovery(dataset, "val", resolve=Path.resolve):
            assert found.resolved is not None or not found.touched
            if found.role is FileRole.DATA_YAML or _is_list_file(found.role, found.path):
                walked.add(found.path.resolve())
            elif found.role in (FileRole.IMAGE, FileRole.LABEL) and found.problem is None:
                indexed.add(found.path.resolve())
    except DatasetError:
        return walked
    return walked | indexed


def _is_list_file(role: FileRole, path: Path) -> bool:
    return role is FileRole.SPLIT_ENTRY and path.suffix == ".txt" and path.is_file()


def service_verdict(world: World, dataset: Path) -> tuple[bool, set[Path]]:
    with recorded_reads(world.root.parent) as reads:
        try:
            check_dataset_contained(world.root, dataset, "val", dataset.name)
        except PathRejected:
            return False, reads
    return True, reads


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_service_check_and_the_reader_agree_on_the_files_read(world: World, case: str) -> None:
    setup, expectation = CASES[case]
    dataset = setup(world)
    root = world.root.resolve()
    read = library_reads(dataset, world.root.parent)
    assert read, "every case reads at least its data.yaml or an image"
    assert read == discovered_reads(dataset)
    reads_outside = {path for path in read if not path.is_relative_to(root)}
    accepted, checker_reads = service_verdict(world, dataset)
    assert all(path.is_relative_to(root) for path in checker_reads), "the check itself read outside"
    assert accepted == (expectation == "inside"), (case, reads_outside)
    assert bool(reads_outside) == (expectation == "escape"), reads_outside


def test_every_case_is_checked_in_both_directions() -> None:
    expectations = [expectation for _, expectation in CASES.values()]
    assert {"inside", "escape", "strict"} == set(expectations)
    assert os.name == "posix"  # symlinks are part of every escape here
