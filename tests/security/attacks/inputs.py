"""The hostile files the attacks need: checkpoints under the checkpoint root, datasets under the data root,
and bombs built in memory (each in well under a second, however much it inflates to)."""

from __future__ import annotations

import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import torch

from smartcash_core.checkpoint.native import save_checkpoint
from smartcash_core.classes import default_class_table
from smartcash_core.model import build_model
from smartcash_core.training.synthetic import generate_dataset
from tests.checkpoint.conftest import write_torch_zip
from tests.checkpoint.test_metadata_bounds import rewrite_metadata, set_field
from tests.security.hostile import POISON_PICKLE, deflate_zeros, raw_zip, rezipped_fixture, stored

# issue 11 item 1: metadata that gave 500s or huge allocations
BAD_METADATA = {
    "imgsz_abc": ("imgsz", "abc"),
    "imgsz_negative": ("imgsz", -5),
    "width_1000": ("yaml.width_multiple", 1000),
    "width_4": ("yaml.width_multiple", 4),
}
# issue 11 item 9: nested aliases, 9 ** 8 leaves once expanded
YAML_ALIAS_BOMB = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(7)]
    + ["path: .", "val: images/val", "names: *h", ""]
)


def prepare(root: Path, big_model: str) -> None:
    """Write ``root/checkpoints`` and ``root/data`` (the server's roots)."""
    checkpoints, data = root / "checkpoints", root / "data"
    checkpoints.mkdir(parents=True)
    torch.manual_seed(0)
    tiny = checkpoints / "tiny.safetensors"
    save_checkpoint(tiny, build_model("yolov5n", num_classes=17).eval(), class_table=default_class_table(),
                    imgsz=64)
    for name, (key, value) in BAD_METADATA.items():
        rewrite_metadata(tiny, checkpoints / f"{name}.safetensors", set_field(key, value))
    write_torch_zip(checkpoints / "poison.pt", POISON_PICKLE)
    rezipped_fixture(checkpoints / "yolov5n_rezipped.pt")
    pickle_bomb = ("archive/data.pkl", deflate_zeros(300), zipfile.ZIP_DEFLATED, 300 << 20, 0)
    raw_zip(checkpoints / "bomb.pt", [pickle_bomb, stored("archive/byteorder", b"little")])
    big = build_model(big_model)
    save_checkpoint(checkpoints / "big.safetensors", big, class_table=default_class_table(), imgsz=640)
    generate_dataset(data / "ds", images=24, seed=3, width=320, height=240, split="val")
    generate_dataset(data / "slow", images=48, seed=4, width=320, height=240, split="val")
    shutil.copytree(data / "ds" / "images", data / "nolabels" / "images")  # no labels/ at all
    (data / "empty" / "images" / "val").mkdir(parents=True)
    (data / "yamlbomb" / "images" / "val").mkdir(parents=True)
    shutil.copy(next((data / "ds" / "images" / "val").iterdir()), data / "yamlbomb" / "images" / "val")
    (data / "yamlbomb" / "data.yaml").write_text(YAML_ALIAS_BOMB)


def png_bomb(side: int = 19999) -> bytes:
    """A 1-bit grayscale PNG of ``side`` x ``side`` pixels, all black: ~50 KB on disk, 1.2 GB as RGB."""
    row = b"\x00" + bytes((side + 7) // 8)  # filter byte + packed pixels
    compressor = zlib.compressobj(9)
    block = row * 256
    idat = b"".join(compressor.compress(block) for _ in range(side // 256))
    idat += compressor.compress(row * (side % 256)) + compressor.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        checksum = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + checksum

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
