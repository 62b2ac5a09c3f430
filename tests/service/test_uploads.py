"""Upload unpacking: pairing, and archive members checked before anything is read."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile

import pytest

from service.errors import BadUpload, PayloadTooLarge
from service.uploads import UploadLimits, samples_from_files

LIMITS = UploadLimits(max_bytes=1 << 20, max_files=10, max_archive_bytes=10_000)


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def _tar(members: dict[str, bytes], gz: bool = False, link: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(info)
    return buffer.getvalue()


def test_images_pair_with_same_stem_labels_and_unlabelled_images_are_background() -> None:
    files = [("b.jpg", b"B"), ("a.png", b"A"), ("a.txt", b"0 0.5 0.5 0.2 0.2\n"), ("notes.md", b"x")]
    samples = samples_from_files(files, LIMITS)
    assert [(s.name, s.image, s.labels) for s in samples] == [
        ("a.png", b"A", "0 0.5 0.5 0.2 0.2\n"),
        ("b.jpg", b"B", None),
    ]


def test_yolo_layout_zip_is_unpacked_and_paired() -> None:
    data = _zip({"ds/images/val/x.jpg": b"X", "ds/labels/val/x.txt": b"3 0.1 0.1 0.1 0.1\n"})
    samples = samples_from_files([("batch.zip", data)], LIMITS)
    assert [(s.name, s.image, s.labels) for s in samples] == [("x.jpg", b"X", "3 0.1 0.1 0.1 0.1\n")]


def test_tar_gz_is_unpacked() -> None:
    data = _tar({"images/y.jpg": b"Y", "labels/y.txt": b"1 0.5 0.5 0.5 0.5\n"}, gz=True)
    samples = samples_from_files([("batch.tar.gz", data)], LIMITS)
    assert [(s.name, s.labels) for s in samples] == [("y.jpg", "1 0.5 0.5 0.5 0.5\n")]


@pytest.mark.parametrize("name", ["../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg", "C:\\evil.jpg"])
def test_zip_slip_names_are_refused(name: str) -> None:
    with pytest.raises(BadUpload, match=r"absolute|climbs"):
        samples_from_files([("x.zip", _zip({name: b"E"}))], LIMITS)


def test_links_in_archives_are_refused() -> None:
    with pytest.raises(BadUpload, match="symlink"):
        samples_from_files([("x.zip", _zip({"a.jpg": b"A"}, symlink="link.jpg"))], LIMITS)
    with pytest.raises(BadUpload, match="link"):
        samples_from_files([("x.tar", _tar({"a.jpg": b"A"}, link="link.jpg"))], LIMITS)


def test_zip_bomb_is_refused_by_declared_uncompressed_size() -> None:
    bomb = _zip({"big.jpg": b"\0" * 50_000})  # compresses to ~100 bytes, inflates past the 10 kB cap
    assert len(bomb) < 1_000
    with pytest.raises(PayloadTooLarge, match="unpacks to more than"):
        samples_from_files([("bomb.zip", bomb)], LIMITS)
    with pytest.raises(PayloadTooLarge, match="unpacks to more than"):
        samples_from_files([("bomb.tar.gz", _tar({"big.jpg": b"\0" * 50_000}, gz=True))], LIMITS)


def test_too_many_archive_members_are_refused() -> None:
    members = {f"i{index}.jpg": b"x" for index in range(LIMITS.max_files + 1)}
    with pytest.raises(PayloadTooLarge, match="more than 10 files"):
        samples_from_files([("many.zip", _zip(members))], LIMITS)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([("a.txt", b"0 0.5 0.5 0.1 0.1")], "no image files"),
        ([("x/a.jpg", b"1"), ("y/a.jpg", b"2")], "two images"),
        ([("broken.zip", b"PK not a zip")], "not a readable zip"),
        ([("broken.tar.gz", b"\x1f\x8b garbage")], "not a readable tar"),
    ],
)
def test_unusable_uploads_name_the_problem(files: list[tuple[str, bytes]], message: str) -> None:
    with pytest.raises(BadUpload, match=message) as caught:
        samples_from_files(files, LIMITS)
    assert caught.value.status_code == 400 and caught.value.fix
