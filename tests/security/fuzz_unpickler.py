"""Fuzz the ``.pt`` importer with random mutations of the reference YOLOv5 pickle.

Every mutated file must either import or raise a ``CheckpointError`` (typed, naming the file); anything
else is a crash. Peak RSS growth over the whole run shows no mutation made the loader allocate without
bound. Run: ``.venv/bin/python tests/security/fuzz_unpickler.py [--count 1000] [--seed 0]``; prints JSON
(outcome counts, crashes with tracebacks, peak RSS growth in MB) and exits 1 on a crash.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import traceback
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from smartcash_core.checkpoint import load_model  # noqa: E402
from smartcash_core.checkpoint.yolov5_import import read_yolov5_checkpoint  # noqa: E402
from smartcash_core.errors import CheckpointError  # noqa: E402
from tests.security.hostile import FIXTURE_PT  # noqa: E402

# Opcode bytes and hostile globals worth splicing in: they reach the interesting refusals faster.
_OPCODES = b"().0NKJMX}]bcqhjrstuae\x80\x81\x85\x86\x87\x88\x89\x8a\x8c\x8e\x90\x93\x94\x95QR"
_GLOBALS = [b"cos\nsystem\n", b"cbuiltins\neval\n", b"ctorch\nFloatStorage\n", b"ccollections\nOrderedDict\n",
            b"cnumpy\ndtype\n", b"cyolov5.models.common\nConv\n", b"c__builtin__\nbytearray\n"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: bit flips, opcode bytes, truncation, a duplicated or deleted slice, a spliced global."""
    out = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(out))
            out[position] ^= 1 << rng.randrange(8)
    elif kind == 1:
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.choice(_OPCODES)
    elif kind == 2:
        del out[rng.randrange(len(out)) :]
    elif kind in (3, 4):
        start = rng.randrange(len(out))
        end = min(len(out), start + rng.randint(1, 2000))
        if kind == 3:
            out[start:start] = out[start:end] * rng.randint(1, 3)
        else:
            del out[start:end]
    else:
        position = rng.randrange(len(out))
        out[position:position] = rng.choice(_GLOBALS) + bytes([rng.choice(_OPCODES)])
    return bytes(out)


def _fixture_members() -> tuple[str, dict[str, bytes]]:
    with zipfile.ZipFile(FIXTURE_PT) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    return next(name for name in members if name.endswith("data.pkl")), members


def run(count: int, seed: int, full_loads: int = 3) -> dict[str, Any]:
    """Import ``count`` mutations; the first ``full_loads`` that survive also build the model."""
    pickle_name, members = _fixture_members()
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    crashes: list[str] = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as folder:
        for index in range(count):
            path = Path(folder) / f"mutant{index}.pt"
            with zipfile.ZipFile(path, "w") as archive:
                for name, data in members.items():
                    archive.writestr(name, mutate(data, rng) if name == pickle_name else data)
            try:
                read_yolov5_checkpoint(path)
                if outcomes["imported"] < full_loads:
                    load_model(path, "cpu")
                outcomes["imported"] += 1
            except CheckpointError as exc:
                outcomes[type(exc).__name__] += 1
                if str(path) not in str(exc):
                    crashes.append(f"mutant {index}: error does not name the file: {exc}")
            except Exception:  # anything untyped is the bug this script looks for
                crashes.append(f"mutant {index}: {traceback.format_exc()}")
            path.unlink()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"count": count, "seed": seed, "outcomes": dict(outcomes), "crashes": crashes, "grown_mb": grown}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = run(args.count, args.seed)
    print(json.dumps(report, indent=1))
    return 1 if report["crashes"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
