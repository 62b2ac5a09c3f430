"""``.ci/run``: the CI entry point installs PostgreSQL (job-store tests) and Chromium (browser test) where
they are missing, before the README's test command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


@pytest.fixture()
def bash() -> str:
    found = shutil.which("bash")
    if found is None:
        pytest.skip("bash is not available")
    return found


def _have_postgres(bash: str, path: str) -> bool:
    """Run the script's own ``have_postgres`` with ``PATH=path`` (nothing else of the script runs)."""
    text = CI_RUN.read_text()
    function = text[text.index("have_postgres() {") : text.index("}\n", text.index("have_postgres() {")) + 2]
    result = subprocess.run(
        [bash, "-c", f"{function}\nhave_postgres"], env={"PATH": path}, capture_output=True, check=False
    )
    return result.returncode == 0


def test_the_script_parses_and_installs_postgresql_before_make_test(bash: str) -> None:
    assert subprocess.run([bash, "-n", str(CI_RUN)], check=False).returncode == 0
    text = CI_RUN.read_text()
    assert "missing+=(postgresql)" in text and "missing+=(chromium)" in text
    assert text.index('apt-get install -y -qq "${missing[@]}"') < text.index("make test")


def test_have_postgres_finds_binaries_on_path(bash: str, tmp_path: Path) -> None:
    for name in ("initdb", "pg_ctl"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    assert _have_postgres(bash, f"{tmp_path}:/usr/bin:/bin")
    (tmp_path / "pg_ctl").unlink()
    versioned = any(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    assert _have_postgres(bash, f"{tmp_path}:/usr/bin:/bin") is versioned  # only initdb: look further
