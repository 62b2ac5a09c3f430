"""The class table: the shipped SmartCash table and validation of other tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smartcash_core.classes import ClassTable, default_class_table, load_class_table
from smartcash_core.errors import ClassTableError

DENOMINATIONS = ["1000", "2000", "5000", "10000", "20000", "50000", "100000"]


def test_default_table_matches_design() -> None:
    table = default_class_table()
    assert table.num_fine == 17
    assert table.num_mapped == 8
    assert list(table.fine_names[:7]) == [f"{d}_whole" for d in DENOMINATIONS]
    assert list(table.fine_names[7:14]) == [f"{d}_nominal_feature" for d in DENOMINATIONS]
    assert list(table.fine_names[14:]) == ["security_thread", "watermark", "special_sign"]
    assert list(table.mapped_names) == [*DENOMINATIONS, "feature"]
    expected_map = [*range(7), *range(7), 7, 7, 7]
    assert list(table.fine_to_mapped) == expected_map
    np.testing.assert_array_equal(table.map_array(), np.array(expected_map))


def test_round_trip_through_json_file(tmp_path: Path) -> None:
    path = tmp_path / "loss.json"
    path.write_text(json.dumps(default_class_table().to_dict()))
    assert load_class_table(path) == default_class_table()


def test_map_may_be_an_object_keyed_by_fine_id() -> None:
    table = load_class_table(
        {
            "fine_names": ["a", "b", "c"],
            "mapped_names": ["x", "y"],
            "fine_to_mapped": {"0": 0, "1": 1, "2": 1},
        }
    )
    assert table.fine_to_mapped == (0, 1, 1)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"fine_names": ["a", "b"], "mapped_names": ["x"], "fine_to_mapped": [0, 3]}, "not a mapped"),
        ({"fine_names": ["a", "b"], "mapped_names": ["x"], "fine_to_mapped": [0]}, "every fine class needs"),
        ({"fine_names": ["a", "b"], "mapped_names": ["x"], "fine_to_mapped": {"0": 0}}, "misses fine"),
        ({"fine_names": ["a", "b"], "mapped_names": ["x"], "fine_to_mapped": {"0": 0, "1": 0, "5": 0}},
         "unknown fine class ids"),
        ({"fine_names": ["a", "a"], "mapped_names": ["x"], "fine_to_mapped": [0, 0]}, "duplicate names"),
        ({"fine_names": ["a"], "mapped_names": ["x", "x"], "fine_to_mapped": [0]}, "duplicate names"),
        ({"fine_names": ["a"], "mapped_names": ["x", "y"], "fine_to_mapped": [0]}, "receive no fine class"),
        ({"fine_names": ["a"], "mapped_names": ["x"]}, "missing keys"),
        ({"fine_names": [""], "mapped_names": ["x"], "fine_to_mapped": [0]}, "non-empty string"),
        ({"fine_names": ["a"], "mapped_names": ["x"], "fine_to_mapped": ["0"]}, "must be an integer"),
    ],
)
def test_bad_tables_are_refused_with_a_reason(table: dict[str, object], message: str) -> None:
    with pytest.raises(ClassTableError, match=message):
        load_class_table(table)


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ClassTableError, match=r"broken\.json"):
        load_class_table(broken)
    with pytest.raises(ClassTableError, match="does not exist"):
        load_class_table(tmp_path / "missing.json")


def test_table_is_immutable_and_hashable() -> None:
    table = default_class_table()
    assert hash(table) == hash(ClassTable.from_dict(table.to_dict()))
