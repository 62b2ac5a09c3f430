"""Issue 11 item 10: archive metadata bombs are refused before ``tarfile`` reads what a header announces,
and each member's uncompressed size is capped before it is read.

Before: a 683 KB tar.gz with a 600 MB pax header cost 25 s and +2.4 GB while under the 1 GiB archive cap.
Each bomb here is unpacked in a fresh interpreter that reports its peak RSS growth, so the bound is on
what unpacking really allocated; one is also uploaded to the real server.
"""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest

from service.archives import MAX_TAR_HEADER_BYTES, UploadLimits, unpack_archive
from service.errors import BadUpload, PayloadTooLarge
from tests.security.conftest import server_pid
from tests.security.hostile_archives import (
    big_member_targz,
    big_member_zip,
    record_bomb_targz,
    sparse_member_tar,
    tar_header,
    unpack_in_subprocess,
)
from tests.security.procstat import PeakGrowth
from tests.service.servers import ServerProcess

BOMB_MIB = 200  # inflates to 200 MiB: before the fix, +800 MB and ~8 s to unpack
MAX_GROWTH_MB = 50
LIMITS = UploadLimits(max_bytes=8 << 20, max_files=100, max_archive_bytes=1 << 30, max_member_bytes=16 << 20)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME],
                         ids=["pax", "pax-global", "gnu-longname"])
def test_an_extended_header_bomb_is_refused_unread(tmp_path: Path, kind: bytes) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(record_bomb_targz(BOMB_MIB, kind))
    assert bomb.stat().st_size < 300_000
    result = unpack_in_subprocess(bomb, "bomb.tar.gz")
    assert result["outcome"] == "413 payload_too_large", result
    assert f"{BOMB_MIB << 20}-byte extended (pax or long-name) header" in result["error"]
    assert result["grown_mb"] < MAX_GROWTH_MB and result["seconds"] < 2, result


def test_a_member_over_the_member_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    for name, data in (("big.tar.gz", big_member_targz(BOMB_MIB)),
                       ("big.zip", big_member_zip(tmp_path / "big.zip", BOMB_MIB))):
        path = tmp_path / f"upload-{name}"
        path.write_bytes(data)
        result = unpack_in_subprocess(path, name)
        assert result["outcome"] == "413 payload_too_large", (name, result)
        assert "over the 67108864-byte limit of one member" in result["error"], result
        assert result["grown_mb"] < MAX_GROWTH_MB, (name, result)


def test_headers_under_the_cap_still_unpack() -> None:
    long_name = "d/" + "n" * 300 + ".jpg"  # needs a pax (or GNU) long-name record
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(long_name)
        info.size, info.pax_headers = 3, {"comment": "c" * (MAX_TAR_HEADER_BYTES // 2)}
        archive.addfile(info, io.BytesIO(b"abc"))
    assert unpack_archive("ok.tar.gz", buffer.getvalue(), LIMITS) == [(long_name, b"abc")]


def test_sparse_members_are_refused() -> None:
    with pytest.raises(BadUpload, match="sparse member"):
        unpack_archive("sparse.tar", sparse_member_tar(), LIMITS)


def test_the_member_cap_is_a_setting() -> None:
    data = tar_header("a.jpg", 2 << 20) + bytes(2 << 20) + bytes(1024)
    with pytest.raises(PayloadTooLarge, match="over the 1048576-byte limit of one member"):
        unpack_archive("a.tar", data, UploadLimits(8 << 20, 10, 1 << 30, max_member_bytes=1 << 20))


def test_the_server_answers_a_pax_bomb_upload_with_413_fast(hardened_server: ServerProcess) -> None:
    bomb = record_bomb_targz(600)  # the bomb: 600 MB of pax header in ~0.6 MB
    with PeakGrowth(server_pid(hardened_server)) as growth, hardened_server.client() as client:
        started = time.perf_counter()
        response = client.post("/v1/validations/upload", data={"model": "tiny"},
                               files=[("files", ("bomb.tar.gz", bomb, "application/gzip"))])
        seconds = time.perf_counter() - started
    assert response.status_code == 413, response.text
    assert "extended (pax or long-name) header" in response.json()["error"]["message"]
    assert seconds < 3 and growth.mb < MAX_GROWTH_MB, (seconds, growth.mb)  # before: 25 s, +2.4 GB
