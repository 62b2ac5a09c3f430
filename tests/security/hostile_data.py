"""Hostile data files for the data-path tests: decompression bombs and YAML alias bombs, built in memory."""

from __future__ import annotations

import struct
import zlib

BOMB_SIDE = 19999  # the bomb: 19999 x 19999 = 400 MP declared in a ~48 KB file
ROW_CHUNK = 512  # rows compressed at a time: building the bomb never holds its raw pixels


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def png_bomb(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of ``width x height`` black pixels. 19999 x 19999 compresses to ~48 KB
    (50 MB of zero rows, deflate's ~1000:1); decoding it to RGB costs 1.2 GB and tens of seconds."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    compressed = []
    for start in range(0, height, ROW_CHUNK):
        compressed.append(packer.compress(row * min(ROW_CHUNK, height - start)))
    compressed.append(packer.flush())
    idat = b"".join(compressed)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def yaml_alias_bomb(levels: int = 9, fan_out: int = 9) -> str:
    """The billion-laughs shape in ~450 bytes: each level is a list of ``fan_out`` aliases of the one
    before, so ``levels`` levels expand to ``fan_out ** levels`` strings (9 ** 9: 387 million)."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*a{level - 1}"] * fan_out)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    lines += [f"path: *a{levels}", f"val: *a{levels}", "names: ['x']"]
    return "\n".join(lines) + "\n"
