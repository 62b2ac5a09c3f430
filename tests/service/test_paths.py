"""Client paths stay inside their root: absolute, '..' and escaping symlinks are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import NotFound, PathRejected
from service.paths import resolve_under


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "sets" / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("x")
    return tmp_path / "root"


def test_relative_path_inside_root_resolves(root: Path) -> None:
    assert resolve_under(root, "sets/a", "dataset") == (root / "sets" / "a").resolve()


@pytest.mark.parametrize(
    "bad",
    ["/etc/passwd", "\\\\server\\share", "C:\\data", "../outside", "sets/../../outside", "a\\..\\..\\x", ""],
)
def test_unsafe_paths_are_refused_before_touching_disk(root: Path, bad: str) -> None:
    with pytest.raises(PathRejected) as caught:
        resolve_under(root, bad, "dataset")
    assert caught.value.status_code == 400
    assert caught.value.fix  # every refusal says how to fix the call


def test_symlink_escaping_the_root_is_refused(root: Path) -> None:
    (root / "escape").symlink_to(root.parent / "outside")
    with pytest.raises(PathRejected, match="resolves outside"):
        resolve_under(root, "escape/secret.txt", "dataset")


def test_symlink_within_the_root_is_allowed(root: Path) -> None:
    (root / "alias").symlink_to(root / "sets" / "a")
    assert resolve_under(root, "alias", "dataset") == (root / "sets" / "a").resolve()


def test_missing_path_is_not_found(root: Path) -> None:
    with pytest.raises(NotFound) as caught:
        resolve_under(root, "sets/nope", "dataset")
    assert caught.value.status_code == 404


def test_symlink_loop_is_refused_not_a_crash(root: Path) -> None:
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(PathRejected, match="cannot be resolved"):
        resolve_under(root, "loop/data.yaml", "dataset")


def test_over_long_names_are_refused_not_a_crash(root: Path) -> None:
    with pytest.raises(PathRejected, match="cannot be read"):
        resolve_under(root, "n" * 300, "dataset")
