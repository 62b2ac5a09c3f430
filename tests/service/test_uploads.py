"""Upload unpacking: pairing, and archive members checked before anything is read."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from service import archives
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


def test_zip_directory_too_big_for_the_member_cap_is_refused_before_zipfile_parses_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flood = _zip({f"d{index}/": b"" for index in range(5 * LIMITS.max_files)} | {"a.jpg": b"A"})

    def parse_nothing(*args: object, **kwargs: object) -> None:
        raise AssertionError("ZipFile parsed a central directory that the member cap refuses")

    monkeypatch.setattr(archives.zipfile, "ZipFile", parse_nothing)
    with pytest.raises(PayloadTooLarge, match="members"):
        samples_from_files([("flood.zip", flood)], LIMITS)


def test_folder_entries_count_against_the_member_cap() -> None:
    folders = {f"d{index}/": b"" for index in range(2 * LIMITS.max_files + 1)}
    zipped = _zip(folders | {"a.jpg": b"A"})
    with pytest.raises(PayloadTooLarge, match="members"):
        samples_from_files([("flood.zip", zipped)], LIMITS)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for index in range(2 * LIMITS.max_files + 1):
            info = tarfile.TarInfo(f"d{index}")
            info.type = tarfile.DIRTYPE
            archive.addfile(info)
    with pytest.raises(PayloadTooLarge, match="members"):
        samples_from_files([("flood.tar", buffer.getvalue())], LIMITS)


def test_bomb_hidden_in_a_tar_pax_header_is_refused() -> None:
    # tarfile reads a pax header whole into memory: 1 MB of header from a ~1 kB .tar.gz
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo("a.jpg")
        info.size, info.pax_headers = 1, {"comment": "A" * 1_000_000}
        archive.addfile(info, io.BytesIO(b"A"))
    bomb = gzip.compress(buffer.getvalue())
    assert len(bomb) < 5_000
    with pytest.raises(PayloadTooLarge, match=r"1000\d+-byte extended \(pax or long-name\) header"):
        samples_from_files([("bomb.tar.gz", bomb)], LIMITS)


def _corrupt(data: bytes, start: int) -> bytes:
    damaged = bytearray(data)
    for index in range(start, min(start + 40, len(damaged) - 30)):
        damaged[index] ^= 0x55
    return bytes(damaged)


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA])
def test_corrupt_compressed_zip_member_is_a_bad_upload(compression: int) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("a.jpg", bytes(range(256)) * 20)
    data = buffer.getvalue()
    with pytest.raises(BadUpload, match="cannot be read"):  # zlib.error / LZMAError were 500s
        samples_from_files([("x.zip", _corrupt(data, data.find(b"a.jpg") + 15))], LIMITS)


def test_corrupt_tar_gz_body_is_a_bad_upload() -> None:
    data = _tar({"a.jpg": bytes(range(256)) * 20}, gz=True)
    with pytest.raises(BadUpload, match="not a readable tar"):
        samples_from_files([("x.tar.gz", _corrupt(data, 20))], LIMITS)


def test_two_label_files_with_one_stem_are_refused_not_silently_replaced() -> None:
    files = [("a.jpg", b"A"), ("x/a.txt", b"0 0.5 0.5 0.1 0.1\n"), ("y/a.txt", b"1 0.5 0.5 0.1 0.1\n")]
    with pytest.raises(BadUpload, match="two label files"):
        samples_from_files(files, LIMITS)


@pytest.mark.parametrize("members", [1, 5 * LIMITS.max_files])
def test_zip_end_record_is_found_behind_an_archive_comment(
    monkeypatch: pytest.MonkeyPatch, members: int
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index in range(members):
            archive.writestr(f"d{index}/", b"")
        archive.writestr("a.jpg", b"A")
        archive.comment = b"a comment moves the end record" * 20
    if members == 1:
        assert [s.name for s in samples_from_files([("c.zip", buffer.getvalue())], LIMITS)] == ["a.jpg"]
        return
    monkeypatch.setattr(archives.zipfile, "ZipFile", None)  # must be refused before ZipFile is called
    with pytest.raises(PayloadTooLarge, match="members"):
        samples_from_files([("c.zip", buffer.getvalue())], LIMITS)


def test_uploads_received_at_once_are_capped_before_the_body_is_read(
    client_for: Callable[..., TestClient],
) -> None:
    # each upload may buffer SMARTCASH_MAX_UPLOAD_BYTES; without a cap, concurrency multiplies that
    client = client_for(max_concurrent_uploads=1)
    files = [("files", ("a.jpg", b"A", "image/jpeg"))]
    with client.app.state.smartcash.upload_slots.slot():  # type: ignore[attr-defined]
        busy = client.post("/v1/validations/upload", data={"model": "ghost"}, files=files)
    assert busy.status_code == 429 and busy.headers["Retry-After"], busy.text
    assert busy.json()["error"]["code"] == "queue_full"
    freed = client.post("/v1/validations/upload", data={"model": "ghost"}, files=files)
    assert freed.status_code == 404  # the slot was released: the body was read and the model looked up
