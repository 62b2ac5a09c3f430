#!/usr/bin/env bash
# The one install path of SmartCash: both Docker images and CI (tests/docker) run this script.
#
# Usage: docker/install.sh VENV_DIR [PROJECT_DIR]
#   VENV_DIR     virtual environment to install into; created when missing.
#   PROJECT_DIR  project source (pyproject.toml); default: the directory above this script.
#
# Environment (all optional):
#   PYTHON           interpreter that creates the venv (default: python3)
#   TORCH_VERSION    torch release to install (default: 2.13.0, the version the project is tested with)
#   TORCH_INDEX_URL  index that serves the torch wheel, e.g. https://download.pytorch.org/whl/cpu or
#                    .../whl/cu128. Empty (default): pip's own configuration decides, which on a machine
#                    with local wheels (find-links) needs no network at all.
#   EXTRAS           project extras, e.g. "dev" or "dev,plots" (default: none)
#
# Why torch goes first, on its own: the project only asks for torch>=2.6, and plain PyPI resolves that to
# the multi-GB CUDA build. Installing the pinned wheel from the chosen index first makes the project install
# see torch as already satisfied. A venv that already holds the pinned version keeps it (nothing is fetched).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 VENV_DIR [PROJECT_DIR]" >&2
    exit 64
fi

venv_dir=$1
project_dir=${2:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"}
python_bin=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}
torch_index_url=${TORCH_INDEX_URL:-}
extras=${EXTRAS:-}

if [[ ! -f "$project_dir/pyproject.toml" ]]; then
    echo "install.sh: no pyproject.toml in $project_dir" >&2
    exit 66
fi

if [[ ! -x "$venv_dir/bin/python" ]]; then
    echo "install.sh: creating venv $venv_dir with $python_bin"
    "$python_bin" -m venv "$venv_dir"
fi
venv_python="$venv_dir/bin/python"

# True when the venv already holds torch at the pinned version (any local tag: +cpu, +cu128, ...).
torch_is_pinned() {
    "$venv_python" - "$torch_version" <<'PY'
import importlib.metadata as metadata
import sys

try:
    installed = metadata.version("torch")
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if installed.split("+")[0] == sys.argv[1] else 1)
PY
}

if torch_is_pinned; then
    echo "install.sh: torch $torch_version already installed, keeping it"
else
    torch_args=("torch==$torch_version")
    if [[ -n "$torch_index_url" ]]; then
        torch_args+=(--index-url "$torch_index_url")
    fi
    echo "install.sh: installing ${torch_args[*]}"
    "$venv_python" -m pip install --disable-pip-version-check "${torch_args[@]}"
fi

target="$project_dir"
if [[ -n "$extras" ]]; then
    target="$project_dir[$extras]"
fi
# A regular (non-editable) install: the package is built into a wheel and copied into site-packages, as in
# the images, so nothing at run time depends on the source tree.
echo "install.sh: installing the project from $target"
"$venv_python" -m pip install --disable-pip-version-check "$target"

"$venv_dir/bin/smartcash" --help >/dev/null
echo "install.sh: done; $("$venv_python" -c 'import torch; print("torch", torch.__version__)')"
