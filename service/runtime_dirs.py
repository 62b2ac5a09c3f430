"""Caches that libraries would write under ``$HOME`` or the temp dir go under the state dir instead.

A service writes where its operator said (the state dir), not into the home directory of whatever user
runs it nor as stray folders in ``/tmp``. Found by running the server with ``HOME`` and ``TMPDIR`` set to
empty directories (tests/security/test_runtime_dirs.py):

- matplotlib builds its font cache in ``~/.cache/matplotlib`` and creates ``~/.config/matplotlib`` on
  first import (plots of a finished job): ``MPLCONFIGDIR`` moves both;
- building a model probes its strides on the ``meta`` device, where BatchNorm runs a decomposition that
  imports ``torch._dynamo``, which creates ``$TMPDIR/torchinductor_<user>``: ``TORCHINDUCTOR_CACHE_DIR``
  moves it (and ``TRITON_CACHE_DIR`` the GPU kernel cache next to it, should anything ever compile).

Variables the operator already set are kept. Set before the first model load and the first plot, i.e.
when the app is built.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_VARIABLES = {
    "MPLCONFIGDIR": "matplotlib",
    "TORCHINDUCTOR_CACHE_DIR": "torchinductor",
    "TRITON_CACHE_DIR": "triton",
}


def keep_caches_under(state_dir: Path) -> dict[str, str]:
    """Point each library cache at ``<state_dir>/cache/<name>`` unless already set; returns the values."""
    chosen: dict[str, str] = {}
    for variable, name in CACHE_VARIABLES.items():
        if not os.environ.get(variable):
            directory = (state_dir / "cache" / name).absolute()
            directory.mkdir(parents=True, exist_ok=True)
            os.environ[variable] = str(directory)
        chosen[variable] = os.environ[variable]
    return chosen
