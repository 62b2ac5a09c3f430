"""Container health probe: exit 0 when the service answers 200 on its liveness route, 1 otherwise.

Runs with the image's own Python (slim images ship no curl). Standard library only, so it works even
when the project's imports are broken, which is exactly when a health check must still report.
Usage: ``python healthcheck.py [PATH]``; the port comes from ``SMARTCASH_PORT`` (default 8000).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PATH = "/v2/health/live"
TIMEOUT_S = 4.0


def probe_url(path: str) -> str:
    """The URL to probe: the service listens on all interfaces inside the container, loopback included."""
    port = os.environ.get("SMARTCASH_PORT", "8000")
    return f"http://127.0.0.1:{port}{path}"


def is_healthy(url: str, timeout_s: float = TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_PATH
    url = probe_url(path)
    if is_healthy(url):
        return 0
    print(f"unhealthy: {url} did not answer 200", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
