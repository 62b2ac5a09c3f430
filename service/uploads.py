"""Uploaded batches: a multipart body of image + label files, or one ``.zip``/``.tar``/``.tar.gz``.

Limits are enforced before and while the body streams in, never after it has all been buffered:
``Content-Length`` is checked first, bytes are counted chunk by chunk, and the multipart parser stops at
the file-count cap. Archives are unpacked, every member checked first, by ``service.archives``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import PurePosixPath

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from service.archives import UploadLimits, is_archive, unpack_archive
from service.errors import BadUpload, PayloadTooLarge, QueueFull, UnsupportedMedia
from service.slots import BoundedSlots
from smartcash_core.validation.params import UploadedSample

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LABEL_SUFFIX = ".txt"
_MAX_FIELDS = 16
_MAX_FIELD_BYTES = 64 * 1024
__all__ = ["IMAGE_SUFFIXES", "ParsedUpload", "UploadLimits", "UploadSlots", "parse_multipart",
           "samples_from_files"]


class UploadSlots(BoundedSlots):
    """Bounds the uploads being received at once: a slot is held while the body is read and becomes a job.

    Each upload is buffered in memory up to ``max_upload_bytes`` and the queue is only checked after the
    body is read, so without this bound memory grows with the number of clients sending at once.
    """

    def refusal(self) -> QueueFull:
        return QueueFull(
            f"{self.limit} uploads are already being received",
            f"retry after {self.retry_after_s} s, or raise SMARTCASH_MAX_CONCURRENT_UPLOADS",
            headers=self.retry_headers,
        )


@dataclass
class ParsedUpload:
    """Form fields and files of a multipart body, limits already enforced."""

    fields: dict[str, str]
    files: list[tuple[str, bytes]]


async def parse_multipart(request: Request, limits: UploadLimits) -> ParsedUpload:
    """Stream and parse the multipart body, refusing it (413) as soon as a limit is crossed."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise UnsupportedMedia(
            f"upload needs Content-Type multipart/form-data, got {content_type or 'none'!r}",
            "send the files as multipart form fields (curl -F files=@image.jpg ...)",
        )
    _check_declared_length(request, limits.max_bytes)
    parser = MultiPartParser(
        request.headers,
        _counted(request.stream(), limits.max_bytes),
        max_files=limits.max_files,
        max_fields=_MAX_FIELDS,
        max_part_size=_MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        if exc.message.startswith("Too many files"):
            raise PayloadTooLarge(
                f"upload has more than {limits.max_files} files",
                "split the batch or raise SMARTCASH_MAX_UPLOAD_FILES",
            ) from exc
        raise BadUpload(
            f"malformed multipart body: {exc.message}", "let your HTTP client build the body"
        ) from exc
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            files.append((value.filename or key, await value.read()))
            await value.close()
        else:
            fields[key] = value
    return ParsedUpload(fields, files)


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return  # chunked: counted while streaming
    if not (declared.isascii() and declared.isdigit()):  # "²".isdigit() is True; int() fails
        raise BadUpload(f"Content-Length {declared!r} is not a number", "let your HTTP client set it")
    if int(declared) > max_bytes:
        raise PayloadTooLarge(
            f"upload of {int(declared)} bytes exceeds the {max_bytes}-byte limit",
            "send fewer or smaller images per request, or raise SMARTCASH_MAX_UPLOAD_BYTES",
        )


async def _counted(stream: AsyncGenerator[bytes, None], max_bytes: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(
                f"upload exceeds the {max_bytes}-byte limit (stopped reading at {received} bytes)",
                "send fewer or smaller images per request, or raise SMARTCASH_MAX_UPLOAD_BYTES",
            )
        yield chunk


# -- turning files into samples (blocking: run in a worker thread) -----------------------------------------
def samples_from_files(files: list[tuple[str, bytes]], limits: UploadLimits) -> list[UploadedSample]:
    """Pair images with same-stem ``.txt`` labels; one archive file is unpacked (checked) first."""
    if len(files) == 1 and is_archive(files[0][0]):
        files = unpack_archive(files[0][0], files[0][1], limits)
    images: dict[str, tuple[str, bytes]] = {}
    labels: dict[str, bytes] = {}
    for name, data in files:
        path = PurePosixPath(name.replace("\\", "/"))
        suffix, stem = path.suffix.lower(), path.stem
        if suffix in IMAGE_SUFFIXES:
            if stem in images:
                raise BadUpload(f"two images are named {stem!r}", "give every image a distinct file stem")
            images[stem] = (path.name, data)
        elif suffix == LABEL_SUFFIX:
            if stem in labels:  # pairing is by stem: a second label would silently replace the first
                raise BadUpload(f"two label files are named {stem!r}", "give every label a distinct stem")
            labels[stem] = data
    if not images:
        raise BadUpload(
            "the upload holds no image files",
            f"send images ({', '.join(sorted(IMAGE_SUFFIXES))}) with labels",
        )
    return [_sample(name, data, labels.get(stem)) for stem, (name, data) in sorted(images.items())]


def _sample(name: str, image: bytes, label: bytes | None) -> UploadedSample:
    text = None if label is None else label.decode("utf-8", errors="replace")
    return UploadedSample(name=name, image=image, labels=text)


