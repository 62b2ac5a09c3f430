"""Every attack of issue 11 against a real server, with ``/v2/health/live`` latency and peak RSS growth.

Run: ``.venv/bin/python tests/bench/bench_attacks.py [--only 4,10] [--skip 8] [--big-model yolov5m]``.
Starts ``smartcash serve`` (uvicorn on loopback) with ``HOME`` and ``TMPDIR`` set to empty folders and small
limits (below), then runs each attack of ``tests/security/attacks`` in issue order while a probe process polls
``/live`` back to back over a keep-alive connection and another samples the server's RSS. Per attack it
prints what the server answered, the time to that answer, the ``/live`` p99 and max during the attack,
and the server's peak RSS growth (``VmHWM`` after the attack, reset before it via ``clear_refs``, minus
``VmRSS`` before). Targets (issue 11): ``/live`` max < 100 ms and RSS growth < 500 MB during every attack,
and the answer the attack expects (a clean refusal, a skipped item). A server that grows past
``--kill-mb`` is killed (and restarted for the next attack) so an unfixed bomb cannot take the machine
down. Adding an attack: see ``tests/security/attacks/registry.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.security.attacks.catalog import ATTACKS  # noqa: E402
from tests.security.attacks.inputs import prepare  # noqa: E402
from tests.security.attacks.registry import Attack, Outcome, Target  # noqa: E402
from tests.security.procstat import peak_mb, reset_peak, rss_mb  # noqa: E402
from tests.service.servers import ServerProcess  # noqa: E402

SERVER_ENV = {
    "SMARTCASH_MAX_QUEUE": "2",
    "SMARTCASH_BODY_TIMEOUT_S": "2",
    "SMARTCASH_MAX_CONCURRENT_UPLOADS": "2",
    "SMARTCASH_MAX_SSE_CONNECTIONS": "4",
    "SMARTCASH_RETRY_AFTER_S": "2",
}
LIVE_TARGET_MS, RSS_TARGET_MB = 100.0, 500.0
_LIBRARY_CACHE_VARIABLES = ("MPLCONFIGDIR", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME")


@dataclass
class Row:
    item: str
    attack: str
    answer: str
    seconds: float
    live_p99_ms: float
    live_max_ms: float
    live_failures: int
    rss_growth_mb: float
    handled: bool

    @property
    def within_targets(self) -> bool:
        live_ok = not self.live_max_ms >= LIVE_TARGET_MS and not self.live_failures  # nan: no probe needed
        return live_ok and self.rss_growth_mb < RSS_TARGET_MB


PROBE_SCRIPT = """
import http.client, sys, time
host, port = sys.argv[1], int(sys.argv[2])
connection = http.client.HTTPConnection(host, port, timeout=30)
while True:
    started = time.perf_counter()
    try:
        connection.request("GET", "/v2/health/live")
        response = connection.getresponse()
        response.read()
        ok = response.status == 200
    except (OSError, http.client.HTTPException):
        ok = False
        connection.close()
        connection = http.client.HTTPConnection(host, port, timeout=30)
    print(int(ok), (time.perf_counter() - started) * 1000, flush=True)
    time.sleep(0.005 if ok else 0.2)
"""


class Watch:
    """Probes ``/live`` and samples the server's RSS while an attack runs; kills a runaway server."""

    def __init__(self, url: str, pid: int, kill_mb: float) -> None:
        self.url, self.pid, self.kill_mb = url, pid, kill_mb
        self.samples: list[float] = []
        self.failures, self.killed_at_mb, self.max_rss = 0, 0.0, 0.0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - read and closed in __exit__
        self._prober: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Watch:
        self.before = reset_peak(self.pid)
        self.max_rss = self.before
        # the prober is a process of its own: a thread here would wait for this process's GIL while the
        # attack's client side works, and count that wait as the server's latency
        host, port = self.url.split("//", 1)[1].rsplit(":", 1)
        command = [sys.executable, "-c", PROBE_SCRIPT, host, port]
        self._prober = subprocess.Popen(command, stdout=self._log)
        self._sampler.start()
        deadline = time.monotonic() + 10
        while self._log.tell() == 0 and time.monotonic() < deadline:  # the prober answers before the attack
            time.sleep(0.01)
            self._log.seek(0, os.SEEK_END)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join(60)
        if self._prober is not None:
            self._prober.terminate()
            self._prober.wait(10)
        self._log.seek(0)
        for line in self._log.read().decode().splitlines():
            ok, _, millis = line.partition(" ")
            if millis:
                self.samples.append(float(millis))
                self.failures += ok != "1"
        self._log.close()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                current = rss_mb(self.pid)
            except (OSError, AssertionError):
                return  # the server is gone
            self.max_rss = max(self.max_rss, current)
            if current - self.before > self.kill_mb:
                os.kill(self.pid, signal.SIGKILL)
                self.killed_at_mb = current - self.before
                return
            time.sleep(0.01)

    def growth_mb(self) -> float:
        try:
            peak = max(peak_mb(self.pid), self.max_rss)
        except (OSError, AssertionError):
            peak = self.max_rss
        return max(0.0, peak - self.before, self.killed_at_mb)


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def start_server(root: Path) -> ServerProcess:
    env = {**SERVER_ENV, "HOME": str(root / "home"), "TMPDIR": str(root / "tmp")}
    server = ServerProcess(root / "state", root / "checkpoints", root / "data", **env)
    for variable in _LIBRARY_CACHE_VARIABLES:  # the defaults (under $HOME) are what item 13 is about
        server.env.pop(variable, None)
    return server.start(timeout=300)


def run_attack(attack: Attack, target: Target, kill_mb: float) -> Row:
    assert target.server.process is not None
    with Watch(target.url, target.server.process.pid, kill_mb) as watch:
        try:
            outcome = attack.run(target)
        except Exception as exc:  # a crashed or killed server shows up here: report it, go on
            outcome = Outcome(f"error: {type(exc).__name__}: {str(exc)[:60]}", math.nan)
    if watch.killed_at_mb:
        outcome.answer = f"KILLED at +{watch.killed_at_mb:.0f} MB ({outcome.answer})"
    return Row(attack.item, attack.name, outcome.answer, outcome.seconds, percentile(watch.samples, 99),
               max(watch.samples, default=math.nan), watch.failures, watch.growth_mb(),
               attack.handled(outcome) and not watch.killed_at_mb)


def print_row(row: Row) -> None:
    verdict = ("ok" if row.within_targets else "OVER") + ("" if row.handled else " UNEXPECTED")
    failures = f" ({row.live_failures} failed)" if row.live_failures else ""
    print(f"{row.item:>4} {row.attack[:52]:<52} {row.answer[:58]:<58} {row.seconds:7.2f} "
          f"{row.live_p99_ms:8.1f} {row.live_max_ms:8.1f}{failures} {row.rss_growth_mb:8.0f}  {verdict}",
          flush=True)


def selected(only: str, skip: str) -> list[Attack]:
    wanted, unwanted = set(filter(None, only.split(","))), set(filter(None, skip.split(",")))
    return [a for a in ATTACKS if (not wanted or a.item in wanted) and a.item not in unwanted]


def describe_machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name"))
    except StopIteration:
        cpu = platform.processor() or "unknown CPU"
    return f"{cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated issue items to run (e.g. 4,10,12b)")
    parser.add_argument("--skip", default="", help="comma-separated issue items to leave out")
    parser.add_argument("--big-model", default="yolov5m", help="model of the item 3 load (yolov5x: slower)")
    parser.add_argument("--kill-mb", type=float, default=3000, help="kill the server past this RSS growth")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    print(describe_machine())
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for name in ("home", "tmp"):
            (root / name).mkdir()
        prepare(root, args.big_model)
        target = Target(start_server(root), root, SERVER_ENV)
        print(f"{'item':>4} {'attack':<52} {'answer':<58} {'answer s':>7} {'live p99':>8} {'live max':>8} "
              f"{'RSS +MB':>8}  targets")
        rows = []
        try:
            for attack in selected(args.only, args.skip):
                rows.append(run_attack(attack, target, args.kill_mb))
                print_row(rows[-1])
                if target.server.process is None or target.server.process.poll() is not None:
                    target.server.stop()
                    target.server = start_server(root)
        finally:
            target.server.stop()
    met = sum(row.within_targets and row.handled for row in rows)
    print(f"{met}/{len(rows)} attacks answered as expected within the targets (/live max < "
          f"{LIVE_TARGET_MS:.0f} ms, RSS growth < {RSS_TARGET_MB:.0f} MB)")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=1))
    return 0 if met == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
