"""Builders of hostile upload archives (tar metadata bombs, oversized members) and a way to measure what
unpacking one costs in a fresh interpreter.

The bombs are built in well under a second however much they inflate to: every 1 MiB block of filler is
compressed once after a full flush (which resets the compressor), so the block's compressed bytes can be
repeated, and the gzip trailer's CRC is computed over the repeated block.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MiB = 1 << 20
BLOCK = 512


def tar_header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def record_bomb_targz(filler_mib: int, kind: bytes = tarfile.XHDTYPE) -> bytes:
    """A .tar.gz whose first header (pax ``x``/``g`` or GNU long name ``L``) announces ``filler_mib`` MiB
    of records, followed by one small image. 600 MiB of pax header: a 0.6 MB file (issue 11: 683 KB)."""
    size = filler_mib * MiB
    if kind == tarfile.GNUTYPE_LONGNAME:
        head, tail_text = b"", b"\0"
    else:  # one pax record "<length> path=AAAA...\n", its length counting itself
        head, tail_text = f"{size} path=".encode(), b"\n"
    parts = [tar_header("././@Header", size, kind) + head]
    filler = size - len(head) - len(tail_text)
    whole_blocks, rest = divmod(filler, MiB)
    tail = b"A" * rest + tail_text + _padding(size) + tar_header("a.jpg", 3) + b"abc" + _padding(3)
    return _gzip_repeated(parts[0], b"A" * MiB, whole_blocks, tail + bytes(2 * BLOCK))


def big_member_targz(member_mib: int) -> bytes:
    """One regular member of ``member_mib`` MiB of zeros: a gzip bomb inside an honest tar header."""
    size = member_mib * MiB
    tail = _padding(size) + bytes(2 * BLOCK)
    return _gzip_repeated(tar_header("big.jpg", size), bytes(MiB), member_mib, tail)


def sparse_member_tar() -> bytes:
    """An old-GNU sparse member (type ``S``): its map could be continued in extension blocks without end."""
    return tar_header("sparse.jpg", 0, tarfile.GNUTYPE_SPARSE) + bytes(2 * BLOCK)


def big_member_zip(path: Path, member_mib: int) -> bytes:
    """A zip with one deflated member of ``member_mib`` MiB of zeros (its header tells the truth)."""
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("big.jpg", "w", force_zip64=True) as member,
    ):
        for _ in range(member_mib):
            member.write(bytes(MiB))
    return path.read_bytes()


def _gzip_repeated(head: bytes, block: bytes, repeats: int, tail: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = [compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)]
    compressed_block = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream += [compressed_block * repeats, compressor.compress(tail) + compressor.flush()]
    crc = zlib.crc32(head)
    for _ in range(repeats):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(tail, crc)
    total = len(head) + len(block) * repeats + len(tail)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + b"".join(stream) + struct.pack("<II", crc, total & 0xFFFFFFFF)


_MEASURE = """
import json, resource, sys, time
from service.archives import UploadLimits, unpack_archive
from service.errors import ServiceError
name, data = sys.argv[1], open(sys.argv[2], "rb").read()
limits = UploadLimits(max_bytes=len(data), max_files=2000, max_archive_bytes=1 << 30)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    members = unpack_archive(name, data, limits)
    outcome, error = f"{len(members)} members", ""
except ServiceError as exc:
    outcome, error = f"{exc.status_code} {exc.code}", exc.message
print(json.dumps({"outcome": outcome, "error": error, "seconds": time.perf_counter() - started,
                  "grown_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def unpack_in_subprocess(path: Path, name: str, timeout: float = 300) -> dict[str, Any]:
    """Unpack ``path`` (uploaded as ``name``) with the default limits in a fresh interpreter: outcome
    (member count, or status and error code), message, seconds, and peak RSS growth in MB."""
    done = subprocess.run([sys.executable, "-c", _MEASURE, name, str(path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"unpacking crashed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
