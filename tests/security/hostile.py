"""Builders of hostile checkpoints (zip bombs, lying zip headers, poisoning pickles) and a way to measure
what loading one costs in a fresh interpreter."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_PT = ROOT / "tests" / "fixtures" / "yolov5" / "yolov5n_banknotes.pt"

# The pickle from issue 11: BUILD writes dtype="poison" into the allow-listed torch.FloatStorage stand-in.
POISON_PICKLE = b"\x80\x02ctorch\nFloatStorage\n}X\x05\x00\x00\x00dtypeX\x06\x00\x00\x00poisonsb."


def deflate_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of ``mebibytes`` MiB of zeros, about 1/1000 of that (300 MiB: 306 KB).

    A full flush resets the compressor, so every 1 MiB block compresses to the same bytes: one block,
    repeated, then the final empty block. Built in milliseconds instead of deflating 300 MB.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + compressor.flush()


def inflated_size(stream: bytes) -> int:
    """Bytes a raw deflate stream inflates to, counted in bounded steps (nothing big is kept)."""
    inflater, total, pending = zlib.decompressobj(-15), 0, stream
    while pending or not inflater.eof:
        total += len(inflater.decompress(pending, 1 << 22))
        pending = inflater.unconsumed_tail
        if not pending and not inflater.eof:
            total += len(inflater.flush())
            break
    return total


def raw_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> Path:
    """A zip written byte by byte: ``(name, stored bytes, method, declared size, declared crc32)`` each.

    Lets a test declare sizes and checksums the data does not have (``zipfile`` always tells the truth).
    """
    body, directory = bytearray(), bytearray()
    for name, data, method, size, crc in members:
        encoded = name.encode()
        offset = len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 33, crc, len(data), size,
                            len(encoded), 0) + encoded + data
        directory += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 20, 20, 0, method, 0, 33, crc, len(data),
                                 size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory),
                      len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def stored(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data)


def storage_pickle(numel: int) -> bytes:
    """``_rebuild_tensor_v2(storage '0' of numel floats, 0, (numel,), (1,))``: one tensor, one storage."""
    count = b"J" + struct.pack("<i", numel)
    return (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu" + count
        + b"tQK\x00" + count + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR."
    )


def rezipped_fixture(target: Path) -> Path:
    """The reference YOLOv5 .pt re-zipped (deflated): other bytes, so no model cache hit; same model."""
    with zipfile.ZipFile(FIXTURE_PT) as source, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info.filename))
    return target


def copied_fixture(target: Path) -> Path:
    shutil.copyfile(FIXTURE_PT, target)
    return target


_MEASURE = """
import json, resource, sys, time
import torch  # imported before the baseline: its own memory is not the file's
from smartcash_core.checkpoint import load_model
from smartcash_core.errors import CheckpointError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    load_model(sys.argv[1], "cpu")
    outcome, error = "loaded", ""
except CheckpointError as exc:
    outcome, error = type(exc).__name__, str(exc)
print(json.dumps({"outcome": outcome, "error": error, "seconds": time.perf_counter() - started,
                  "grown_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def load_in_subprocess(path: Path, timeout: float = 300) -> dict[str, Any]:
    """Load ``path`` in a fresh interpreter: outcome (``loaded`` or the error class), message, seconds and
    peak RSS growth in MB (``ru_maxrss`` after minus before the load)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"the loader crashed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
