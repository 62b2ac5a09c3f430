"""docker/install.sh is the images' install path; here it runs into a fresh venv, as in the image build.

No Docker engine runs in CI, so this is how the container install is tested: the same script, the same
non-editable install, a fresh interpreter environment. ``torch==2.13.0`` resolves from the local wheel
directory that pip is configured with, so the run needs no network (about 30 s on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO / "docker" / "install.sh"
# Exactly what the Dockerfiles COPY into the build stage.
BUILD_CONTEXT = (
    "pyproject.toml", "README.md", "smartcash_core", "service", "smartcash_client", "docker/install.sh"
)
PINNED_TORCH = "2.13.0"


def copy_build_context(destination: Path) -> Path:
    """Copy what the image build sees, so the install cannot lean on anything else in the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for relative in BUILD_CONTEXT:
        source = REPO / relative
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    return destination


def run_install(venv: Path, project: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    # Empty index URL: pip's configured indexes and local wheels, as on a CI runner without internet.
    env.update(PYTHON=sys.executable, TORCH_VERSION=PINNED_TORCH, TORCH_INDEX_URL="", EXTRAS="")
    return subprocess.run(
        ["bash", str(project / "docker" / "install.sh"), str(venv), str(project)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )


class Installed(NamedTuple):
    venv: Path
    project: Path
    first_run: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    root = tmp_path_factory.mktemp("install")
    project = copy_build_context(root / "src")
    venv = root / "venv"
    result = run_install(venv, project)
    assert result.returncode == 0, f"install.sh failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return Installed(venv, project, result)


@pytest.mark.slow
def test_console_script_works_from_the_fresh_venv(installed: Installed) -> None:
    venv, _, _ = installed
    result = subprocess.run(
        [str(venv / "bin" / "smartcash"), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("validate", "serve", "synth"):
        assert command in result.stdout


@pytest.mark.slow
def test_install_is_a_regular_package_with_the_pinned_torch(installed: Installed) -> None:
    venv, project, _ = installed
    probe = (
        "import smartcash_core, service, torch; "
        "print(smartcash_core.__file__); print(service.__file__); print(torch.__version__)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=120,
        check=False, cwd=venv,
    )
    assert result.returncode == 0, result.stderr
    core_file, service_file, torch_version = result.stdout.split()
    site_packages = next((venv / "lib").glob("python3*/site-packages"))
    # Not editable: the modules live in the venv, not in the source copy.
    assert Path(core_file).is_relative_to(site_packages)
    assert Path(service_file).is_relative_to(site_packages)
    assert not Path(core_file).is_relative_to(project)
    assert torch_version.split("+")[0] == PINNED_TORCH


@pytest.mark.slow
def test_rerun_keeps_the_installed_torch(installed: Installed) -> None:
    venv, project, first = installed
    assert f"installing torch=={PINNED_TORCH}" in first.stdout
    second = run_install(venv, project)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"torch {PINNED_TORCH} already installed, keeping it" in second.stdout


@pytest.mark.slow
def test_the_installed_package_ships_its_migrations_and_the_postgres_driver(installed: Installed) -> None:
    venv, _, _ = installed
    probe = (
        "import psycopg, psycopg_pool; from service.store.migrations import BACKENDS, load_migrations; "
        "print(*[len(load_migrations(backend)) for backend in BACKENDS])"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=120,
        check=False, cwd=venv,
    )
    assert result.returncode == 0, result.stderr
    sqlite_count, postgres_count = map(int, result.stdout.split())
    packaged = len(list((REPO / "service" / "store" / "migrations" / "sqlite").glob("*.sql")))
    assert sqlite_count == postgres_count == packaged >= 1


def test_usage_error_without_a_venv_argument() -> None:
    result = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, check=False)
    assert result.returncode == 64
    assert "usage:" in result.stderr


def test_refuses_a_directory_without_pyproject(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(INSTALL_SCRIPT), str(tmp_path / "venv"), str(tmp_path)],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 66
    assert "no pyproject.toml" in result.stderr
    assert not (tmp_path / "venv").exists()
