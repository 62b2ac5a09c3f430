"""Uploaded archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, bzip2 and xz tars), unpacked in memory.

Every member is checked before anything is read from it: no absolute or ``..`` names, no links, devices or
sparse members; the member count, each member's size and the total uncompressed size are capped (zip and
gzip bombs), and so are the tar headers ``tarfile`` would read whole (pax and GNU long-name records).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath

from service.errors import BadUpload, PayloadTooLarge

# Decompression and archive-structure errors the stdlib raises outside OSError/ValueError.
_ARCHIVE_ERRORS = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError, RuntimeError, struct.error)
# Central directory bytes allowed per member: 46 fixed + name, extra and comment of a sane archive.
_ZIP_DIRECTORY_ENTRY_BYTES = 1200
# Tar stream bytes per member beyond its data: 512 header, up to 511 padding, pax/long-name records.
_TAR_MEMBER_OVERHEAD = 3072
_TAR_TRAILER = 20 * 512  # end-of-archive blocks and record padding
# A pax or GNU long-name record is read whole into memory (and parsed) by tarfile: a 600 MB pax header cost
# 25 s and +2.4 GB (issue 11). Real ones hold a long path and a few attributes.
MAX_TAR_HEADER_BYTES = 64 * 1024
_PAX_HEADERS = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_EXTENDED_HEADERS = frozenset({*_PAX_HEADERS, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_files: int
    max_archive_bytes: int
    max_member_bytes: int = 64 << 20  # one archive member, uncompressed


def is_archive(name: str) -> bool:
    lowered = name.lower()
    return lowered.endswith((".zip", ".tar", ".tar.gz", ".tgz"))


def unpack_archive(name: str, data: bytes, limits: UploadLimits) -> list[tuple[str, bytes]]:
    """Members of a zip or tar archive as ``(name, bytes)``, every member checked first."""
    if name.lower().endswith(".zip"):
        return list(_zip_members(data, limits))
    return _tar_members(data, limits)


def _check_member_name(name: str) -> None:
    normalized = name.replace("\\", "/")
    if not normalized or normalized.startswith("/") or PureWindowsPath(name).drive:
        raise BadUpload(f"archive member {name!r} has an absolute name", "archive files with relative names")
    if ".." in PurePosixPath(normalized).parts:
        raise BadUpload(
            f"archive member {name!r} climbs out with '..'", "archive files without '..' in names"
        )


def member_cap(limits: UploadLimits) -> int:
    """Most archive members of any kind: the file cap plus as many folder entries."""
    return 2 * limits.max_files


class _Budget:
    """Counts members and uncompressed bytes against the limits, before each member is read."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits, self.files, self.members, self.bytes = limits, 0, 0, 0

    def take_member(self, name: str) -> None:
        # folders count too: a flood of empty entries costs memory and time like files do
        self.members += 1
        if self.members > member_cap(self.limits):
            raise PayloadTooLarge(
                f"archive has more than {member_cap(self.limits)} members (at {name!r})",
                "split the archive into several uploads",
            )

    def take(self, name: str, size: int) -> None:
        if size > self.limits.max_member_bytes:
            raise PayloadTooLarge(
                f"archive member {name!r} unpacks to {size} bytes, over the "
                f"{self.limits.max_member_bytes}-byte limit of one member",
                "leave such files out, or raise SMARTCASH_MAX_ARCHIVE_MEMBER_BYTES",
            )
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise PayloadTooLarge(
                f"archive has more than {self.limits.max_files} files",
                "split the archive into several uploads",
            )
        if self.bytes > self.limits.max_archive_bytes:
            raise PayloadTooLarge(
                f"archive unpacks to more than {self.limits.max_archive_bytes} bytes (at member {name!r})",
                "split the archive, or raise SMARTCASH_MAX_ARCHIVE_BYTES",
            )


def _zip_members(data: bytes, limits: UploadLimits) -> Iterator[tuple[str, bytes]]:
    _check_zip_directory(data, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, *_ARCHIVE_ERRORS) as exc:
        raise BadUpload(f"not a readable zip archive: {exc}", "upload a valid .zip file") from exc
    budget = _Budget(limits)
    with archive:
        infos = archive.infolist()
        for info in infos:  # check every name and size before reading any member
            budget.take_member(info.filename)
            _check_member_name(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise BadUpload(f"archive member {info.filename!r} is a symlink", "archive plain files only")
            if not info.is_dir():
                budget.take(info.filename, info.file_size)
        for info in infos:
            if not info.is_dir():
                yield info.filename, _read_zip_member(archive, info)


def _check_zip_directory(data: bytes, limits: UploadLimits) -> None:
    """Refuse a central directory too big for the member cap before ``ZipFile`` parses all of it.

    ``ZipFile()`` turns every directory record into an object up front: a 256 MiB upload of minimal
    records is millions of them (gigabytes) before any per-member check could run. The end record says
    how many entries and bytes the directory has; it is found where ``zipfile`` looks for it.
    """
    found = _zip_directory_size(data)
    if found is None:
        return  # no end record: ZipFile refuses the data itself
    entries, size = found
    cap = member_cap(limits)
    if entries > cap or size > cap * _ZIP_DIRECTORY_ENTRY_BYTES:
        raise PayloadTooLarge(
            f"zip archive declares {entries} members in a {size}-byte directory (at most {cap} members)",
            "split the archive into several uploads",
        )


def _zip_directory_size(data: bytes) -> tuple[int, int] | None:
    """``(entries, directory bytes)`` from the (zip64) end record, found where ``zipfile`` finds it."""
    end_size, locator_size, end64_size = 22, 20, 56
    position = len(data) - end_size
    if data[position : position + 4] != b"PK\x05\x06":
        position = data.rfind(b"PK\x05\x06", max(0, len(data) - end_size - 0xFFFF))
    if position < 0 or len(data) - position < end_size:
        return None
    entries, size = struct.unpack_from("<HI", data, position + 10)
    locator = position - locator_size
    if locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":  # zip64: zipfile reads these
        record = locator - end64_size
        if record < 0 or data[record : record + 4] != b"PK\x06\x06":
            return None
        entries, size = struct.unpack_from("<QQ", data, record + 32)
    return entries, size


def _read_zip_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(info) as member:
            content = member.read(info.file_size + 1)  # never more than declared, even if the header lies
    except (zipfile.BadZipFile, NotImplementedError, *_ARCHIVE_ERRORS) as exc:
        raise BadUpload(
            f"archive member {info.filename!r} cannot be read: {exc}", "re-create the zip"
        ) from exc
    if len(content) != info.file_size:
        raise BadUpload(
            f"archive member {info.filename!r} is not the size its header says", "re-create the zip"
        )
    return content


def _tar_members(data: bytes, limits: UploadLimits) -> list[tuple[str, bytes]]:
    budget = _Budget(limits)
    members: list[tuple[str, bytes]] = []
    try:
        # Stream mode over a capped, decompressed stream: tarfile reads a pax or GNU long-name header
        # whole into memory, so only a cap on the decompressed bytes stops a bomb hidden in a header.
        with (
            _decompressed(data, limits) as stream,
            tarfile.open(fileobj=stream, mode="r|", tarinfo=_CheckedTarInfo) as archive,
        ):
            for member in archive:
                budget.take_member(member.name)
                _check_tar_member(member)
                if member.isfile():
                    budget.take(member.name, member.size)
                    members.append((member.name, _read_tar_member(archive, member)))
    except (tarfile.TarError, *_ARCHIVE_ERRORS) as exc:
        raise BadUpload(f"not a readable tar archive: {exc}", "upload a valid .tar or .tar.gz file") from exc
    return members


class _CheckedTarInfo(tarfile.TarInfo):
    """Tar headers checked before ``tarfile`` reads what they announce: pax and GNU long-name records over
    ``MAX_TAR_HEADER_BYTES`` and sparse members (whose maps can be read from the data without bound) are
    refused. Hooks ``tarfile``'s per-header dispatch, the one place every header passes through."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADERS and self.size > MAX_TAR_HEADER_BYTES:
            raise PayloadTooLarge(
                f"archive has a {self.size}-byte extended (pax or long-name) header; at most "
                f"{MAX_TAR_HEADER_BYTES} bytes are read",
                "re-create the archive with shorter names and fewer attributes (tar --format=ustar)",
            )
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _sparse_refused()
        return super()._proc_member(archive)  # type: ignore[misc]

    def _proc_gnusparse_00(self, *args: object) -> None:
        raise _sparse_refused()

    def _proc_gnusparse_01(self, *args: object) -> None:
        raise _sparse_refused()

    def _proc_gnusparse_10(self, *args: object) -> None:
        raise _sparse_refused()


def _sparse_refused() -> BadUpload:
    return BadUpload("archive has a sparse member", "archive plain files (tar without --sparse)")


class _CappedReader(io.RawIOBase):
    """A readable stream that refuses (413) to yield more than ``cap`` bytes in total."""

    def __init__(self, inner: io.BufferedIOBase | io.BytesIO, cap: int) -> None:
        super().__init__()
        self._inner, self._cap, self._total = inner, cap, 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._inner.close()
        super().close()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = self._inner.readinto(buffer)
        self._total += count
        if self._total > self._cap:
            raise PayloadTooLarge(
                f"archive unpacks to more than {self._cap} bytes (member data plus headers)",
                "split the archive, or raise SMARTCASH_MAX_ARCHIVE_BYTES",
            )
        return count


def _decompressed(data: bytes, limits: UploadLimits) -> _CappedReader:
    """The tar stream inside ``data`` (plain, gzip, bzip2 or xz), capped at what the limits allow."""
    raw = io.BytesIO(data)
    inner: io.BufferedIOBase | io.BytesIO = raw
    if data.startswith(b"\x1f\x8b"):
        inner = gzip.GzipFile(fileobj=raw)
    elif data.startswith(b"BZh"):
        inner = bz2.BZ2File(raw)
    elif data.startswith(b"\xfd7zXZ\x00"):
        inner = lzma.LZMAFile(raw)  # noqa: SIM115 - closed with the _CappedReader that owns it
    cap = limits.max_archive_bytes + member_cap(limits) * _TAR_MEMBER_OVERHEAD + _TAR_TRAILER
    return _CappedReader(inner, cap)


def _check_tar_member(member: tarfile.TarInfo) -> None:
    _check_member_name(member.name)
    if member.issym() or member.islnk():
        raise BadUpload(f"archive member {member.name!r} is a link", "archive plain files only")
    if not (member.isfile() or member.isdir()):
        raise BadUpload(f"archive member {member.name!r} is a device or fifo", "archive plain files only")


def _read_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise BadUpload(f"archive member {member.name!r} cannot be read", "re-create the archive")
    content = handle.read(member.size)
    if len(content) != member.size:
        raise BadUpload(f"archive member {member.name!r} is truncated", "re-create the archive")
    return content
