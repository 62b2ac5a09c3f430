"""``.pt`` archives that declare or inflate to far more than they hold are refused fast, in bounded memory.

Each load runs in a fresh interpreter that reports its peak RSS growth (``ru_maxrss``), so the bound is
on what the loader really allocated, torch included.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import pytest

from smartcash_core.checkpoint.torch_zip import open_torch_zip
from smartcash_core.errors import CheckpointError, CheckpointTooLargeError
from tests.security.hostile import (
    deflate_zeros,
    inflated_size,
    load_in_subprocess,
    raw_zip,
    storage_pickle,
    stored,
)

BOMB_MIB = 300
MAX_GROWTH_MB = 50  # the bombs inflate to 300 MB; the old loader read them whole (+594 MB)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    stream = deflate_zeros(BOMB_MIB)
    assert len(stream) < 320_000 and inflated_size(stream) == BOMB_MIB << 20  # a real 306 KB bomb
    return stream


def test_pickle_member_bomb(tmp_path: Path, bomb: bytes) -> None:
    path = raw_zip(tmp_path / "bomb.pt", [("archive/data.pkl", bomb, zipfile.ZIP_DEFLATED, BOMB_MIB << 20, 0),
                                          stored("archive/byteorder", b"little")])
    assert path.stat().st_size < 320_000
    result = load_in_subprocess(path)
    assert result["outcome"] == "CheckpointTooLargeError", result
    assert "data.pkl declares 314572800 bytes, over the cap" in result["error"]
    assert result["grown_mb"] < MAX_GROWTH_MB, result


def test_storage_member_bomb_is_refused_while_the_pickle_is_read(tmp_path: Path, bomb: bytes) -> None:
    """The pickle honestly declares a 300 MB storage; the member would inflate 1000x: refused unread."""
    members = [stored("archive/data.pkl", storage_pickle((BOMB_MIB << 20) // 4)),
               stored("archive/byteorder", b"little"),
               ("archive/data/0", bomb, zipfile.ZIP_DEFLATED, BOMB_MIB << 20, 0)]
    result = load_in_subprocess(raw_zip(tmp_path / "storage.pt", members))
    assert result["outcome"] == "CheckpointTooLargeError", result
    assert "would inflate 1011x" in result["error"] and "a zip bomb?" in result["error"]
    assert result["grown_mb"] < MAX_GROWTH_MB, result


def test_member_whose_header_lies_about_its_size(tmp_path: Path, bomb: bytes) -> None:
    """Declares 100 bytes, inflates to 300 MB: reading stops at 100 bytes (then the pickle is garbage)."""
    members = [("archive/data.pkl", bomb, zipfile.ZIP_DEFLATED, 100, zlib.crc32(bytes(100))),
               stored("archive/byteorder", b"little")]
    result = load_in_subprocess(raw_zip(tmp_path / "liar.pt", members))
    assert result["outcome"] == "CheckpointError" and "not a pickle opcode" in result["error"], result
    assert result["grown_mb"] < MAX_GROWTH_MB, result


def test_stream_read_stops_at_the_declared_size(tmp_path: Path, bomb: bytes) -> None:
    """Reading a storage whose header under-declares: at most the declared bytes, then a typed error."""
    members = [stored("archive/data.pkl", storage_pickle(4)), stored("archive/byteorder", b"little"),
               ("archive/data/0", bomb, zipfile.ZIP_DEFLATED, 16, 0)]
    path = raw_zip(tmp_path / "crc.pt", members)
    with pytest.raises(CheckpointError, match="corrupt checkpoint archive"), open_torch_zip(path) as archive:
        archive.read_tensors({"t": _only_ref(archive)}, budget_bytes=1 << 20)


def _only_ref(archive: object) -> object:
    from smartcash_core.checkpoint.unpickler import unpickle

    return unpickle(archive.read_pickle(), archive.check_storage)  # type: ignore[attr-defined]


def test_too_many_members_are_refused_before_zipfile_parses_them(tmp_path: Path) -> None:
    """An end record claiming 10^6 members (zip64): refused from the 98-byte tail alone."""
    count = (10**6).to_bytes(8, "little")
    zip64_end = b"PK\x06\x06" + (44).to_bytes(8, "little") + bytes(4) + bytes(8) + count * 2
    zip64_end += (50 << 20).to_bytes(8, "little") + bytes(8)
    locator = b"PK\x06\x07" + bytes(4) + (0).to_bytes(8, "little") + (1).to_bytes(4, "little")
    end = b"PK\x05\x06" + bytes(4) + b"\xff\xff" * 2 + b"\xff" * 8 + bytes(2)
    path = tmp_path / "many.pt"
    path.write_bytes(zip64_end + locator + end)
    with pytest.raises(CheckpointTooLargeError, match="lists 1000000 members"), open_torch_zip(path):
        pass


def test_other_compression_methods_and_encryption_are_refused(tmp_path: Path) -> None:
    members = [stored("archive/data.pkl", storage_pickle(4)),
               ("archive/data/0", bytes(16), zipfile.ZIP_LZMA, 16, zlib.crc32(bytes(16)))]
    path = raw_zip(tmp_path / "lzma.pt", members)
    refused = pytest.raises(CheckpointError, match="unsupported compression method")
    with refused, open_torch_zip(path) as archive:
        _only_ref(archive)
