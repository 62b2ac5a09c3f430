#!/usr/bin/env bash
# GPU check of issue 14: the validation benchmark on CUDA (pinned host batches, non_blocking copies, fp16,
# NMS on the device), printing pass wall / forward-only wall (goal there: <= 1.05).
#
#   bash tests/bench/gpu_check.sh [--dry-run] [--venv DIR] [--images N] [--workdir DIR]
#
# On a fresh CUDA machine it makes a venv (default /tmp/smartcash-gpu-venv, with the system's site
# packages visible, so a preinstalled CUDA torch is reused), installs torch from PyPI when no CUDA torch
# imports (PyPI's default Linux x86_64 wheel is the CUDA build; TORCH_SPEC overrides the requirement), then
# the project with `pip install -e .`, prints nvidia-smi and torch's view of the GPU, and runs
# tests/bench/bench_validation.py with --device cuda in fp16 and in fp32.
# --dry-run: no venv, no install, no GPU: the CPU path of the same Python entry point on a few small images,
# with the project's own .venv (or python3), to check the script end to end on any machine.
# Record what it prints in docs/BENCHMARKS.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="/tmp/smartcash-gpu-venv"
IMAGES=200
WORKDIR=""
DRY_RUN=0
TORCH_SPEC="${TORCH_SPEC:-torch}"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --venv) VENV="$2"; shift ;;
        --images) IMAGES="$2"; shift ;;
        --workdir) WORKDIR="$2"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

cd "$ROOT"
WORKDIR="${WORKDIR:-$(mktemp -d /tmp/smartcash-gpu-data.XXXXXX)}"
BENCH=(tests/bench/bench_validation.py --stream-images 0 --workdir "$WORKDIR")

if [ "$DRY_RUN" = 1 ]; then
    PY="$ROOT/.venv/bin/python"
    [ -x "$PY" ] || PY="$(command -v python3)"
    echo "gpu_check --dry-run: CPU path with $PY (no install, no GPU)"
    PYTHONPATH="$ROOT" "$PY" "${BENCH[@]}" --dry-run --device cpu --precision fp32
    echo "gpu_check --dry-run: OK"
    exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
else
    echo "gpu_check: nvidia-smi not found; continuing (torch decides whether CUDA is usable)" >&2
fi

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
has_cuda_torch() { "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }

if ! has_cuda_torch; then
    echo "gpu_check: installing $TORCH_SPEC (CUDA build from PyPI)"
    "$PY" -m pip install --quiet "$TORCH_SPEC" || {
        echo "gpu_check: could not install $TORCH_SPEC (no registry reachable?); preinstall a CUDA torch" >&2
        exit 1
    }
fi
if ! has_cuda_torch; then
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda build:", torch.version.cuda)' || true
    echo "gpu_check: torch cannot see a CUDA device here" >&2
    exit 1
fi
if ! "$PY" -c 'import smartcash_core' 2>/dev/null; then
    # offline machines: the dependencies may already be there, so fall back to installing the project alone
    "$PY" -m pip install --quiet -e "$ROOT" || "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT"
fi

"$PY" - <<'EOF'
import torch
props = torch.cuda.get_device_properties(0)
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), {props.name}, {props.total_memory / 2**30:.0f} GiB, "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF

for precision in fp16 fp32; do
    echo "== CUDA, precision $precision, $IMAGES images =="
    "$PY" "${BENCH[@]}" --device cuda --precision "$precision" --images "$IMAGES"
done
echo "gpu_check: done (data in $WORKDIR)"
