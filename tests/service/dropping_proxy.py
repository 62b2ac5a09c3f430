"""A loopback TCP proxy that cuts the first event stream it carries after its first event, as a load
balancer's idle timeout or a restarted proxy would. It records the request head of every connection."""

from __future__ import annotations

import contextlib
import socket
import threading


class DroppingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.requests: list[bytes] = []  # the first bytes each client sent (request line and headers)
        self.dropped = 0
        self._lock = threading.Lock()
        self._stopping = False
        self.thread = threading.Thread(target=self._accept, name="dropping-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def __enter__(self) -> DroppingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        head = client.recv(65536)
        with self._lock:
            self.requests.append(head)
            drop = b"/events" in head.split(b"\r\n", 1)[0] and self.dropped == 0
            if drop:
                self.dropped += 1
        upstream.sendall(head)
        threading.Thread(target=_pump, args=(client, upstream, False), daemon=True).start()
        _pump(upstream, client, drop)

    def event_requests(self) -> list[bytes]:
        with self._lock:
            return [head for head in self.requests if b"/events" in head.split(b"\r\n", 1)[0]]


def _pump(source: socket.socket, target: socket.socket, drop_after_first_event: bool) -> None:
    seen = b""
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            target.sendall(chunk)
            seen += chunk
            if drop_after_first_event and b"\nid: " in seen and b"\n\n" in seen.split(b"\nid: ", 1)[1]:
                break  # one whole event went through: cut the connection mid-stream
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
