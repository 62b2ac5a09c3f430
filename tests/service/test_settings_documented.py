"""Every setting is in docs/API.md's settings table (and named in the README's configuration section)."""

from __future__ import annotations

from pathlib import Path

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented() -> None:
    api, readme = (ROOT / "docs" / "API.md").read_text(), (ROOT / "README.md").read_text()
    table = api.split("## Settings", 1)[1].split("\n## ", 1)[0]
    names = [name.upper() for name in Settings.model_fields]
    assert [name for name in names if f"`{name}`" not in table] == []
    assert [name for name in names if name not in readme] == []
