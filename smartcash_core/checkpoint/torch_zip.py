"""Reading torch's zip checkpoint format with every size checked before anything is read.

A ``.pt`` is a zip: ``<prefix>/data.pkl`` plus one ``<prefix>/data/<key>`` member per tensor storage.
A zip declares sizes it may not honour, so: the central directory's entry count and size are read from
its end record and capped before ``zipfile`` parses it; every member we read must declare the size we
expect (the pickle says how many elements a storage holds), use no compression or deflate within
``MAX_COMPRESSION_RATIO``; and reads stop at the expected size however much the data would inflate to.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import torch

from smartcash_core.checkpoint import limits
from smartcash_core.checkpoint.pickled import StorageRef, TensorRef
from smartcash_core.errors import CheckpointError, CheckpointTooLargeError

__all__ = ["TorchZip", "open_torch_zip"]

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_MAX_COMMENT = 0xFFFF
_CHUNK = 1 << 20
# What zipfile and zlib raise on damaged archives (encrypted members: RuntimeError; unknown methods:
# NotImplementedError).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, ValueError,
               OSError, EOFError, zlib.error, struct.error, UnicodeDecodeError)


@contextmanager
def open_torch_zip(path: Path) -> Iterator[TorchZip]:
    """Open ``path`` as a torch zip; damaged archives become ``CheckpointError`` naming the file."""
    try:
        with path.open("rb") as handle:
            _check_central_directory(path, handle)
            with zipfile.ZipFile(handle) as archive:
                yield TorchZip(path, archive)
    except CheckpointError as exc:
        if str(path) not in str(exc):
            exc.args = (f"{path}: {exc}", *exc.args[1:])
        raise
    except _ZIP_ERRORS as exc:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint archive ({exc})") from exc


def _check_central_directory(path: Path, handle: BinaryIO) -> None:
    """Refuse archives whose central directory alone would cost more than any real checkpoint."""
    entries, size = _central_directory_size(handle)
    if entries > limits.MAX_ARCHIVE_MEMBERS or size > limits.MAX_CENTRAL_DIRECTORY_BYTES:
        raise CheckpointTooLargeError(
            f"{path}: archive lists {entries} members in {size} bytes, over the caps of "
            f"{limits.MAX_ARCHIVE_MEMBERS} members / {limits.MAX_CENTRAL_DIRECTORY_BYTES} bytes"
        )


def _central_directory_size(handle: BinaryIO) -> tuple[int, int]:
    """(member count, central directory bytes) from the end record (zip64 when the archive needs it)."""
    end = handle.seek(0, 2)
    tail_start = max(0, end - _EOCD.size - _MAX_COMMENT)
    handle.seek(tail_start)
    tail = handle.read()
    found = tail.rfind(b"PK\x05\x06")
    if found < 0 or len(tail) - found < _EOCD.size:
        raise zipfile.BadZipFile("no end of central directory record")
    fields = _EOCD.unpack_from(tail, found)
    entries, size = fields[4], fields[5]
    record = tail_start + found
    if (entries == 0xFFFF or size == 0xFFFFFFFF) and record >= _ZIP64_LOCATOR.size:
        handle.seek(record - _ZIP64_LOCATOR.size)
        locator = _ZIP64_LOCATOR.unpack(handle.read(_ZIP64_LOCATOR.size))
        if locator[0] == b"PK\x06\x07":
            handle.seek(locator[2])
            zip64 = _ZIP64_EOCD.unpack(handle.read(_ZIP64_EOCD.size))
            if zip64[0] != b"PK\x06\x06":
                raise zipfile.BadZipFile("corrupt zip64 end of central directory")
            entries, size = zip64[7], zip64[8]
    return entries, size


class TorchZip:
    """The members of one torch checkpoint archive, each read at most once and never past its size."""

    def __init__(self, path: Path, archive: zipfile.ZipFile) -> None:
        self.path = path
        self.archive = archive
        self.members = {info.filename: info for info in archive.infolist()}
        pickles = [name for name in self.members if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: not a torch checkpoint (zip without a single data.pkl)")
        self.prefix = pickles[0][: -len("data.pkl")]
        self.bytes_read = 0
        byteorder = self.prefix + "byteorder"
        if byteorder in self.members and self._read(self.members[byteorder], 16) != b"little":
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")

    def read_pickle(self) -> bytes:
        info = self.members[self.prefix + "data.pkl"]
        if info.file_size > limits.MAX_PICKLE_BYTES:
            raise CheckpointTooLargeError(
                f"{self.path}: data.pkl declares {info.file_size} bytes, over the cap of "
                f"{limits.MAX_PICKLE_BYTES} bytes"
            )
        return self._read(info, info.file_size)

    def check_storage(self, key: str, dtype: torch.dtype, numel: int) -> None:
        """The member of a storage exists and declares exactly the bytes the pickle says (nothing read)."""
        self._storage_member(StorageRef(key, dtype, numel))

    def read_tensors(self, refs: dict[str, TensorRef], budget_bytes: int) -> dict[str, torch.Tensor]:
        """Copies of the views in ``refs``; refused before reading when their storages exceed the budget."""
        storages = {ref.storage.key: ref.storage for ref in refs.values()}
        needed = sum(storage.nbytes for storage in storages.values())
        if needed > budget_bytes:
            raise CheckpointTooLargeError(
                f"{self.path}: the model's tensors need {needed} bytes of storage, more than its "
                f"architecture allows ({budget_bytes} bytes)"
            )
        flat = {key: self._read_storage(storage) for key, storage in storages.items()}
        return {
            name: torch.as_strided(flat[ref.storage.key], ref.size, ref.stride, ref.offset).clone()
            for name, ref in refs.items()
        }

    def _storage_member(self, storage: StorageRef) -> zipfile.ZipInfo:
        info = self.members.get(f"{self.prefix}data/{storage.key}")
        if info is None:
            raise CheckpointError(f"{self.path}: storage {storage.key} is missing from the archive")
        if info.file_size != storage.nbytes:
            raise CheckpointError(
                f"{self.path}: storage {storage.key} holds {info.file_size} bytes, expected {storage.nbytes}"
            )
        _check_member(self.path, info)
        return info

    def _read_storage(self, storage: StorageRef) -> torch.Tensor:
        raw = self._read(self._storage_member(storage), storage.nbytes)
        if not raw:
            return torch.empty(0, dtype=storage.dtype)
        return torch.frombuffer(raw, dtype=storage.dtype)

    def _read(self, info: zipfile.ZipInfo, limit: int) -> bytearray:
        """At most ``limit`` bytes of a member whose declared size and compression were checked first."""
        _check_member(self.path, info)
        if info.file_size > limit:
            raise CheckpointTooLargeError(f"{self.path}: {info.filename} declares {info.file_size} bytes, "
                                          f"more than the {limit} expected")
        buffer = bytearray(info.file_size)
        view = memoryview(buffer)
        filled = 0
        with self.archive.open(info) as member:
            while filled < info.file_size:
                count = member.readinto(view[filled : filled + _CHUNK])
                if not count:
                    break
                filled += count
            if filled != info.file_size or member.read(1):  # the header lied about the size
                raise CheckpointError(f"{self.path}: {info.filename} does not hold its declared "
                                      f"{info.file_size} bytes")
        self.bytes_read += filled
        return buffer


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{path}: {info.filename} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise CheckpointError(f"{path}: {info.filename} uses an unsupported compression method "
                              f"({info.compress_type}); torch writes stored or deflated members")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.RATIO_CHECK_MIN_BYTES and ratio > limits.MAX_COMPRESSION_RATIO:
        raise CheckpointTooLargeError(
            f"{path}: {info.filename} would inflate {ratio:.0f}x ({info.compress_size} -> {info.file_size} "
            f"bytes), over the cap of {limits.MAX_COMPRESSION_RATIO}x (a zip bomb?)"
        )
