"""One server per state directory when the job store is the SQLite file in it.

A server that starts on an unshared (SQLite) store marks every active job in it ``interrupted``: they can
only belong to a dead process. Two servers on one state dir would mark each other's live jobs that way
(issue 11), so the first takes an exclusive ``flock`` on ``<state_dir>/service.lock`` and a second refuses
to start, naming the holder's pid. The kernel drops the lock when its process dies, kill -9 included, so a
crashed server never blocks its successor. PostgreSQL replicas share a database, not a state dir, and take
no lock.

Apps in one process (tests build several over one state dir to simulate restarts) share the process's
lock: it is released when the last of them closes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from service.store.errors import StoreConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; the service targets Linux and macOS (containers)
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "service.lock"


class StateDirInUse(StoreConfigError):
    """Another server process holds this state directory's lock."""

    code = "state_dir_in_use"


@dataclass
class _Held:
    fd: int
    users: int


_held: dict[Path, _Held] = {}
_held_lock = threading.Lock()


class StateDirLock:
    """This process's claim on a state directory; ``release()`` once (further calls do nothing)."""

    def __init__(self, path: Path) -> None:
        self.path, self._released = path, False

    def release(self) -> None:
        with _held_lock:
            if self._released:
                return
            self._released = True
            held = _held.get(self.path)
            if held is None:
                return
            held.users -= 1
            if held.users == 0:
                del _held[self.path]
                os.close(held.fd)  # closing the descriptor drops the flock


def lock_state_dir(state_dir: Path) -> StateDirLock:
    """Take (or share, within this process) the state dir's lock; ``StateDirInUse`` when another process
    holds it."""
    path = (state_dir / LOCK_FILE).resolve()
    with _held_lock:
        held = _held.get(path)
        if held is not None:
            held.users += 1
            return StateDirLock(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _flock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[path] = _Held(fd, 1)
        return StateDirLock(path)


def _flock(fd: int, path: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        raise StateDirInUse(
            f"the state dir {path.parent} is in use by another SmartCash server (pid {holder}); two "
            "servers on one SQLite job store would mark each other's jobs interrupted",
            "stop the other server, or give this one its own SMARTCASH_STATE_DIR (replicas that share "
            "jobs need SMARTCASH_DATABASE_URL=postgresql://...)",
        ) from None
