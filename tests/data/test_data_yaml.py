"""``data.yaml`` is untrusted: a YAML alias bomb, deep nesting, an oversized file or values that are not
paths are refused fast, with small messages, through the one discovery the library and the service use."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from smartcash_core.data.data_yaml import parse_dataset_yaml
from smartcash_core.data.dataset import load_yolo_dataset
from smartcash_core.data.discovery import DatasetDiscovery
from smartcash_core.data.limits import MAX_DATA_YAML_BYTES, MAX_ECHO_CHARS, shorten
from smartcash_core.errors import DatasetError, UnsafeDatasetFile
from tests.security.hostile_data import yaml_alias_bomb


def _write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images" / "val").mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(text)
    return root


def test_the_alias_bomb_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    """Before: 9.5 s, ~1 GB and a 122 MB error message. Now: refused without expanding anything."""
    root = _write(tmp_path / "bomb", yaml_alias_bomb())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(UnsafeDatasetFile) as caught:
        load_yolo_dataset(root)
    elapsed = time.perf_counter() - started
    assert caught.value.why == "YAML alias *a0 on line 2: aliases are not allowed in a dataset file"
    assert caught.value.file == str(root / "data.yaml") and len(str(caught.value)) < 400
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: nothing expanded
    assert elapsed < 5.0  # before: 9.5 s; now a few ms (generous for a loaded machine)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("base: &b {val: images}\n<<: *b\n", "YAML alias *b on line 2"),  # a merge key needs an alias
        ("val: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 16 levels (line 1)"),
        ("".join("  " * i + f"k{i}:\n" for i in range(40)), "nested deeper than 16 levels (line 17)"),
        ("names: [" + ",".join(["x"] * 40000) + "]\n", f"larger than {MAX_DATA_YAML_BYTES // 1024} KiB"),
    ],
    ids=["merge_key", "deep_flow", "deep_block", "oversized"],
)
def test_unsafe_shapes_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    root = _write(tmp_path / "set", text)
    with pytest.raises(UnsafeDatasetFile) as caught:
        list(DatasetDiscovery(root, "val"))
    assert caught.value.why.startswith(reason), caught.value.why


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("val: " + "9" * 5000 + "\n", "Exceeds the limit (4300 digits)"),
        ("path: [a, b]\nval: images/val\n", "'path' must name a path (text), got a list: ['a', 'b']"),
        ("val: {a: 1}\n", "'val' must name a path (text), got a dict"),
        ("val: [images/val, [nested]]\n", "'val' must name a path (text), got a list"),
        ("val: true\n", "'val' must name a path (text), got a bool"),
    ],
)
def test_values_that_are_not_paths_are_dataset_errors(tmp_path: Path, text: str, message: str) -> None:
    root = _write(tmp_path / "set", text)
    with pytest.raises(DatasetError) as caught:
        list(DatasetDiscovery(root, "val"))
    assert message in str(caught.value) and not isinstance(caught.value, UnsafeDatasetFile)


def test_long_values_are_echoed_short(tmp_path: Path) -> None:
    name = "/".join(["a" * 250] * 14)  # 3.5 kB of path, within the OS limits (255 a name, 4096 a path)
    root = _write(tmp_path / "set", f"val: {name}\n")
    with pytest.raises(DatasetError) as caught:
        list(DatasetDiscovery(root, "val"))
    message = str(caught.value)
    assert "does not exist" in message and f"({len(name)} characters)" in message
    assert len(message) < 2 * MAX_ECHO_CHARS + 2 * len(str(root)) + 200


def test_anchors_without_aliases_and_ordinary_files_still_read(tmp_path: Path) -> None:
    text = "path: .\nval: &split images/val\nnames: {0: a, 1: b}\n"
    root = _write(tmp_path / "set", text)
    discovery = DatasetDiscovery(root, "val")
    list(discovery)
    assert discovery.config == {"path": ".", "val": "images/val", "names": {0: "a", 1: "b"}}
    body = "val: images/val\nnames: [" + "x," * 30_000 + "x]\n"
    at_cap = "#" * (MAX_DATA_YAML_BYTES - len(body) - 1) + "\n" + body
    (root / "data.yaml").write_text(at_cap)
    assert (root / "data.yaml").stat().st_size == MAX_DATA_YAML_BYTES
    at_cap_discovery = DatasetDiscovery(root, "val")
    list(at_cap_discovery)
    assert len(at_cap_discovery.config["names"]) == 30_001
    assert parse_dataset_yaml("a: &x 1\nb: 2\n", "anchored.yaml") == {"a": 1, "b": 2}


def test_shorten_marks_what_it_cut() -> None:
    assert shorten("abc") == "abc"
    assert shorten("x" * 300) == "x" * MAX_ECHO_CHARS + "... (300 characters)"
