"""Issue 11 item 12a, with real server processes: a second server on the same state dir (SQLite job store)
refuses to start, naming the first one's pid, instead of marking its running jobs ``interrupted``. A killed
holder's lock goes with it. PostgreSQL replicas share a database, not a state dir: they take no lock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from service.state_lock import lock_state_dir
from tests.service.servers import ServerProcess


def _refused(second: ServerProcess) -> str:
    second.launch()
    assert second.process is not None
    code = second.process.wait(120)
    assert code == 2, code
    return second.log_path.read_text()


def test_a_second_server_on_one_state_dir_refuses_to_start(
    tmp_path: Path, checkpoint_root: Path, data_root: Path
) -> None:
    state = tmp_path / "state"
    first = ServerProcess(state, checkpoint_root, data_root).start()
    try:
        assert first.process is not None
        log = _refused(ServerProcess(state, checkpoint_root, data_root))
        assert f"is in use by another SmartCash server (pid {first.process.pid})" in log, log[-2000:]
        assert "give this one its own SMARTCASH_STATE_DIR" in log and "Traceback" not in log
        with first.client() as client:
            assert client.get("/v1/models").status_code == 200  # the first one never noticed
    finally:
        first.stop()


def test_postgres_replicas_may_share_a_state_dir(
    tmp_path: Path, checkpoint_root: Path, data_root: Path, postgres_url: str
) -> None:
    env = {"SMARTCASH_DATABASE_URL": postgres_url, "SMARTCASH_LEASE_S": "2"}
    replicas = [ServerProcess(tmp_path / "shared", checkpoint_root, data_root, **env) for _ in range(2)]
    try:
        for replica in replicas:
            replica.launch()
        for replica in replicas:
            replica.wait_ready()
    finally:
        for replica in replicas:
            replica.stop()


_PROBE = """
import sys, time
from pathlib import Path
from service.state_lock import StateDirInUse, lock_state_dir
try:
    lock_state_dir(Path(sys.argv[1]))
except StateDirInUse:
    sys.exit(7)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _other_process_locks(state: Path) -> int:
    return subprocess.run([sys.executable, "-c", _PROBE, str(state), "0"], check=False).returncode


def test_apps_of_one_process_share_its_lock(tmp_path: Path) -> None:
    first, second = lock_state_dir(tmp_path), lock_state_dir(tmp_path)
    first.release()
    first.release()  # idempotent: the second app still holds the process's lock
    assert _other_process_locks(tmp_path) == 7
    second.release()
    assert _other_process_locks(tmp_path) == 0


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _PROBE, str(tmp_path), "60"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
        assert _other_process_locks(tmp_path) == 7
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert _other_process_locks(tmp_path) == 0  # kill -9: the kernel dropped the flock
    finally:
        holder.kill()
        holder.wait(10)
