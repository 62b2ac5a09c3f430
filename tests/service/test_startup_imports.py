"""The app imports what a model load and a pass need before it serves, so no first request imports on a
worker thread (an import holds the import lock, a C extension's initialisation the GIL too)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from service.main import _PASS_MODULES

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
from pathlib import Path
before = set(sys.modules)
from service.main import _PASS_MODULES, create_app
from service.settings import Settings
assert not {"cv2", "smartcash_core.validation.runner"} & before
create_app(Settings(state_dir=Path(sys.argv[1]), preload=""))
print(",".join(name for name in _PASS_MODULES if name not in sys.modules))
"""


def test_create_app_imports_the_pass_modules_before_serving(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "state")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"not imported at start-up: {done.stdout}"
    assert "cv2" in _PASS_MODULES and "smartcash_core.validation.runner" in _PASS_MODULES
