"""Shared fixtures: the YOLOv5 reference checkpoint and helpers that write torch-style zip archives."""

from __future__ import annotations

import pickle
import types
import zipfile
from pathlib import Path

import pytest
import torch

from smartcash_core.checkpoint import LoadedModel, load_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "yolov5"
YOLOV5_PT = FIXTURES / "yolov5n_banknotes.pt"


@pytest.fixture(scope="session")
def imported() -> LoadedModel:
    """The reference YOLOv5n imported once for the whole session (read-only use)."""
    return load_model(YOLOV5_PT, "cpu")


def write_torch_zip(path: Path, pickle_bytes: bytes, storages: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like torch.save's: ``<prefix>/data.pkl`` plus ``<prefix>/data/<key>`` storages."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/byteorder", "little")
        for key, raw in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", raw)
    return path


def rewrite_pickle(source: Path, target: Path, old: bytes, new: bytes) -> Path:
    """Copy a torch zip, replacing bytes in its data.pkl (GLOBAL opcodes are plain text lines)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                data = data.replace(old, new)
            dst.writestr(info.filename, data)
    return target


class _RenamingPickler(pickle._Pickler):  # type: ignore[name-defined,misc]
    """Pickles this project's model classes under YOLOv5's module names (``models.common`` / ``models.yolo``).

    With ``torch.save(..., pickle_module=yolov5_pickle_module())`` this writes real YOLOv5-layout ``.pt``
    files (mid-training style, with numpy values) without having YOLOv5 installed.
    """

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "")
        if module in ("smartcash_core.model.yolo", "smartcash_core.model.modules"):
            qualname = obj.__qualname__  # type: ignore[attr-defined]
            target = "models.yolo" if qualname in {"DetectionModel", "Detect"} else "models.common"
            self.write(pickle.GLOBAL + f"{target}\n{qualname}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def yolov5_pickle_module() -> types.ModuleType:
    module = types.ModuleType("yolov5_style_pickle")
    module.Pickler = _RenamingPickler  # type: ignore[attr-defined]
    module.Unpickler = pickle.Unpickler  # type: ignore[attr-defined]
    module.dump = pickle.dump  # type: ignore[attr-defined]
    module.load = pickle.load  # type: ignore[attr-defined]
    return module


def save_yolov5_style(path: Path, checkpoint: dict) -> Path:
    torch.save(checkpoint, path, pickle_module=yolov5_pickle_module(), pickle_protocol=2)
    return path
