"""A dataset under the data root may not make the library read files outside it."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.datasets import check_dataset_contained, contained_runner
from service.errors import PathRejected
from smartcash_core.errors import DatasetError
from smartcash_core.validation.params import ValidationParams
from tests.service.conftest import FAST_PARAMS, load_tiny


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """``root/ds`` (one image + label) and ``outside/`` (an image, a label, a folder of images)."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for base in (root / "ds", outside):
        (base / "images" / "val").mkdir(parents=True)
        (base / "labels" / "val").mkdir(parents=True)
        (base / "images" / "val" / "a.jpg").write_bytes(b"jpg")
        (base / "labels" / "val" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    return root, outside


def _check(root: Path, dataset: Path) -> None:
    check_dataset_contained(root, dataset, "val", dataset.name)


def test_a_dataset_inside_the_root_passes_also_through_inner_symlinks(roots: tuple[Path, Path]) -> None:
    root, _ = roots
    (root / "alias").symlink_to(root / "ds" / "images" / "val")
    (root / "ds" / "data.yaml").write_text("path: .\nval: [images/val, ../alias]\n")
    _check(root, root / "ds")
    _check(root, root / "ds" / "data.yaml")


@pytest.mark.parametrize(
    "yaml_text",
    [
        "path: {outside}\nval: images/val\n",  # path: absolute, outside
        "path: ../../outside\nval: images/val\n",  # path: climbing out
        "val: {outside}/images/val\n",  # split entry absolute
        "val: [images/val, ../../outside/images/val/a.jpg]\n",  # one image of a split list
    ],
)
def test_data_yaml_pointing_outside_is_refused(roots: tuple[Path, Path], yaml_text: str) -> None:
    root, outside = roots
    (root / "ds" / "data.yaml").write_text(yaml_text.format(outside=outside))
    with pytest.raises(PathRejected, match="outside the data root"):
        _check(root, root / "ds")


def test_list_file_naming_outside_images_is_refused(roots: tuple[Path, Path]) -> None:
    root, outside = roots
    (root / "ds" / "val.txt").write_text(f"images/val/a.jpg\n{outside}/images/val/a.jpg\n")
    (root / "ds" / "data.yaml").write_text("val: val.txt\n")
    with pytest.raises(PathRejected, match="image"):
        _check(root, root / "ds")


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("images/val/b.jpg", "images/val/a.jpg"),  # an image symlinked out
        ("labels/val/a.txt", "labels/val/a.txt"),  # a label symlinked out
        ("labels/val", "labels/val"),  # the label folder symlinked out
        ("images", "images"),  # the image folder symlinked out
    ],
)
def test_symlinked_images_labels_and_folders_leading_out_are_refused(
    roots: tuple[Path, Path], link: str, target: str
) -> None:
    root, outside = roots
    replaced = root / "ds" / link
    shutil.rmtree(replaced) if replaced.is_dir() else replaced.unlink(missing_ok=True)
    (root / "ds" / link).symlink_to(outside / target)
    with pytest.raises(PathRejected, match="outside the data root"):
        _check(root, root / "ds")


def test_the_runner_re_checks_just_before_the_library_reads(roots: tuple[Path, Path]) -> None:
    root, outside = roots
    calls: list[Any] = []
    run = contained_runner(lambda *args: calls.append(args), root)  # type: ignore[arg-type,return-value]
    params = ValidationParams(split="val")
    run(None, str(root / "ds"), params, None, threading.Event())  # type: ignore[arg-type]
    (root / "ds" / "images" / "val" / "late.jpg").symlink_to(outside / "images" / "val" / "a.jpg")
    with pytest.raises(DatasetError, match="outside the data root"):
        run(None, str(root / "ds"), params, None, threading.Event())  # type: ignore[arg-type]
    assert len(calls) == 1
    run(None, [], params, None, None)  # type: ignore[arg-type]  # uploads are not paths: not checked
    assert len(calls) == 2


def test_api_refuses_a_data_yaml_pointing_outside_with_400(
    client_for: Callable[..., TestClient], roots: tuple[Path, Path]
) -> None:
    root, outside = roots
    (root / "ds" / "data.yaml").write_text(f"path: {outside}\nval: images/val\n")
    client = client_for(data_root=root)
    load_tiny(client)
    body = {"model": "tiny", "dataset": "ds", "params": FAST_PARAMS}
    response = client.post("/v1/validations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "path_rejected" and "outside the data root" in error["message"] and error["fix"]


@pytest.mark.parametrize(
    ("list_text", "message"),
    [
        ("images/val/a.jpg\nimages/val/b\x00c.jpg\n", "cannot be resolved"),  # was a ValueError (500)
        ("images/val/a.jpg\n" + "n" * 300 + ".jpg\n", "cannot be read"),  # ENAMETOOLONG: the job would crash
    ],
)
def test_hostile_list_lines_are_a_400_not_a_crash(
    roots: tuple[Path, Path], list_text: str, message: str
) -> None:
    root, _ = roots
    (root / "ds" / "val.txt").write_text(list_text)
    (root / "ds" / "data.yaml").write_text("val: val.txt\n")
    with pytest.raises(PathRejected, match=message):
        _check(root, root / "ds")


def test_an_unreadable_data_yaml_is_refused_and_broken_ones_are_left_to_the_job(
    roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = roots
    data_yaml = root / "ds" / "data.yaml"
    for left_to_the_job in ("train: images/val\n", "val: [unclosed\n", "val: [images/val, nowhere]\n"):
        data_yaml.write_text(left_to_the_job)
        _check(root, root / "ds")  # the job fails with the library's own message
    (root / "ds" / "val.txt").write_bytes(b"\xff\xfe not text")
    data_yaml.write_text("val: val.txt\n")
    _check(root, root / "ds")
    open_file = Path.open

    def denied(path: Path, *args: Any, **kwargs: Any) -> Any:
        if path == data_yaml:
            raise PermissionError(13, "Permission denied", str(path))
        return open_file(path, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(PathRejected, match=r"names a file that cannot be read: .*Permission denied"):
        _check(root, root / "ds")
