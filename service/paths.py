"""Client-supplied paths, kept inside their root directory.

A client names a dataset or a checkpoint relative to a root the operator chose. Absolute paths, ``..``
components and anything that resolves (through symlinks) outside the root are refused, so the service
never reads a file the operator did not put under a root.
"""

from __future__ import annotations

import errno
from pathlib import Path, PurePosixPath, PureWindowsPath

from service.errors import NotFound, PathRejected


def check_relative(relative: str, what: str) -> PurePosixPath:
    """Refuse empty, absolute (POSIX or Windows style) and ``..``-climbing paths before touching disk."""
    if not relative or not relative.strip() or "\x00" in relative:
        raise PathRejected(
            f"{what} path is empty or contains a NUL byte", f"give the {what} path relative to its root"
        )
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or relative.startswith(("/", "\\")):
        raise PathRejected(
            f"{what} path {relative!r} is absolute", f"give the {what} path relative to the {what} root"
        )
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        raise PathRejected(
            f"{what} path {relative!r} contains '..'", f"name a {what} inside the {what} root, without '..'"
        )
    return posix


def resolve_under(root: Path, relative: str, what: str, must_exist: bool = True) -> Path:
    """``root / relative`` fully resolved, guaranteed to stay inside ``root``.

    Raises ``PathRejected`` (400) for unsafe paths and ``NotFound`` (404) when nothing is there.
    """
    safe = check_relative(relative, what)
    resolved_root = root.resolve()
    candidate = resolve_path(resolved_root / safe, what, relative)
    if not candidate.is_relative_to(resolved_root):
        raise PathRejected(
            f"{what} path {relative!r} resolves outside the {what} root (a symlink points elsewhere)",
            f"copy the {what} under the {what} root instead of linking to it",
        )
    if must_exist and not _exists(candidate, what, relative):
        raise NotFound(
            f"{what} {relative!r} does not exist under the {what} root",
            f"list the {what} root and use one of its entries (paths are relative to it)",
        )
    return candidate


def resolve_path(path: Path, what: str, shown: str) -> Path:
    """``path.resolve()``, with symlink loops and over-long names as ``PathRejected`` (400), not a 500.

    Python 3.11 raises ``RuntimeError`` for a symlink loop; an over-long component is an ``OSError``; a NUL
    byte (possible in names a data.yaml or list file gives) is a ``ValueError``.
    """
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise PathRejected(
            f"{what} path {shown!r} cannot be resolved: {_reason(exc)}",
            f"name an existing {what} without symlink loops or over-long names",
        ) from exc


def _exists(path: Path, what: str, shown: str) -> bool:
    # Path.exists() only swallows ENOENT-like errors; ENAMETOOLONG or EACCES would escape as a 500.
    try:
        path.stat()
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise PathRejected(
            f"{what} path {shown!r} cannot be read: {_reason(exc)}",
            f"name a readable {what} with names of at most 255 bytes per component",
        ) from exc
    return True


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
