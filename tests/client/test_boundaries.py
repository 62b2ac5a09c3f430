"""The client package stands alone: importable with torch blocked, and it imports neither the library nor
the service (a pipeline installs it next to its own torch, or without any)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.test_import_graph import ROOT, external_imports, module_files

BLOCKED = ("torch", "numpy", "fastapi", "smartcash_core", "service")


def test_the_client_imports_with_torch_and_the_service_blocked() -> None:
    script = (
        "import sys\n"
        f"for name in {BLOCKED!r}:\n"
        "    sys.modules[name] = None  # any import of it raises ImportError\n"
        "import smartcash_client\n"
        "from smartcash_client import AsyncClient, Client, ValidationResult, verify_signature\n"
        "client = Client('http://127.0.0.1:9', api_key='k')\n"
        "client.close()\n"
        "print(sorted(smartcash_client.__all__)[:3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "ApiError" in done.stdout


def test_the_client_source_imports_only_the_standard_library_and_httpx() -> None:
    imports = external_imports(module_files(ROOT, ("smartcash_client",)), "smartcash_client")
    assert "smartcash_client.client" in imports and "smartcash_client.aio" in imports
    used = set().union(*imports.values()) - {"smartcash_client", "__future__"}
    stdlib = set(sys.stdlib_module_names)
    assert used - stdlib == {"httpx"}, used - stdlib


def test_the_package_ships_in_the_distribution() -> None:
    pyproject = (Path(ROOT) / "pyproject.toml").read_text()
    assert '"smartcash_client*"' in pyproject and '"httpx>=' in pyproject.split("[project.optional")[0]
