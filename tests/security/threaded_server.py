"""A real uvicorn server on loopback, in a thread of the test process, over an app the test built.

Unlike ``ServerProcess`` (a subprocess), the app may have an injected runner, so a job can be held at a
batch boundary (``GatedRunner``) while the test drives real HTTP connections against it: streams that stay
open, uploads racing a running job. Starts in well under a second (torch is already imported).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn

from service.main import create_app
from service.settings import Settings
from tests.service.servers import HEADERS


class ThreadedServer:
    def __init__(self, settings: Settings, runner: Any = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        app = create_app(settings, runner=runner)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("the threaded server did not start")
            time.sleep(0.02)
        return self

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=HEADERS, timeout=30.0, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
