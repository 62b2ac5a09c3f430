"""The restricted unpickler refuses every global outside its allow-list; nothing a file asks for runs."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import pytest

from smartcash_core.checkpoint import load_model
from smartcash_core.errors import CheckpointError, UnsafePickleError
from tests.checkpoint.conftest import YOLOV5_PT, write_torch_zip


class _Shell:
    """Unpickling this calls ``os.system(command)`` in a naive loader."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (self.code,))


def _marker_command(marker: Path) -> str:
    return f"touch {marker}"


def test_os_system_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"model": _Shell(_marker_command(marker))}, protocol=2)
    # Sanity: the payload really is armed (plain pickle would run it).
    assert b"system" in payload
    path = write_torch_zip(tmp_path / "evil.pt", payload)
    with pytest.raises(UnsafePickleError, match=r"refused pickle global (posix|os|nt)\.system") as error:
        load_model(path, "cpu")
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_builtins_eval_is_refused_and_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned-eval"
    code = f"open({str(marker)!r}, 'w').close()"
    path = write_torch_zip(tmp_path / "eval.pt", pickle.dumps([_Eval(code)], protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
        load_model(path, "cpu")
    assert not marker.exists()


def test_payload_hidden_inside_a_real_checkpoint_is_refused(tmp_path: Path) -> None:
    """A genuine YOLOv5 file with a malicious global swapped in deep inside the model tree."""
    with zipfile.ZipFile(YOLOV5_PT) as src:
        entries = {info.filename: src.read(info.filename) for info in src.infolist()}
    name = next(n for n in entries if n.endswith("data.pkl"))
    # GLOBAL opcodes are text lines, so swapping the first SiLU class for os.system leaves the stream valid.
    armed = entries[name].replace(b"ctorch.nn.modules.activation\nSiLU\n", b"cos\nsystem\n", 1)
    assert armed != entries[name]
    entries[name] = armed
    path = tmp_path / "deep.pt"
    with zipfile.ZipFile(path, "w") as dst:
        for entry, data in entries.items():
            dst.writestr(entry, data)
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_model(path, "cpu")


@pytest.mark.parametrize(
    "global_line",
    [b"cbuiltins\nexec\n", b"csubprocess\nPopen\n", b"ctorch\nload\n", b"cnumpy\nload\n",
     b"cyolov5.utils.general\ncheck_requirements\n", b"ccopyreg\n_reconstructor\n"],
)
def test_any_other_global_is_refused(tmp_path: Path, global_line: bytes) -> None:
    payload = b"\x80\x02" + global_line + b"q\x00."
    path = write_torch_zip(tmp_path / "g.pt", payload)
    module, name = global_line[1:-1].decode().split("\n")
    with pytest.raises(UnsafePickleError, match=rf"{module}\.{name}"):
        load_model(path, "cpu")


def test_codecs_encode_only_accepts_byte_codecs(tmp_path: Path) -> None:
    # _codecs.encode('x', 'zlib') would run an arbitrary registered codec: refused.
    payload = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R."
    path = write_torch_zip(tmp_path / "codec.pt", payload)
    with pytest.raises(CheckpointError, match=r"_codecs\.encode"):
        load_model(path, "cpu")


def test_storage_views_out_of_bounds_are_refused(tmp_path: Path) -> None:
    """A tensor whose size/stride reaches past its storage must not read foreign memory."""
    # _rebuild_tensor_v2(storage, offset=0, size=(100,), stride=(1,), False, OrderedDict())
    payload = (
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
        b"K\x00Kd\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtR."
    )
    path = write_torch_zip(tmp_path / "oob.pt", payload, {"0": b"\x00" * 16})
    with pytest.raises(CheckpointError, match="reads past its storage"):
        load_model(path, "cpu")
