"""A TCP proxy the test controls: it adds latency to every chunk and can cut every open connection.

It stands between the edge and the broker to play a bad uplink (3G at a gate, a flapping switch)
with real sockets, so paho sees what it would see in the field: slow PUBACKs and resets.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time

from tests.conftest import free_port


class TcpProxy:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.host, self.target_port, self.port = host, target_port, free_port()
        self.latency_s = 0.0
        self.cuts = 0
        self.accepted = 0  # connections forwarded so far: a test waits for a reconnect before the next cut
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, self.port))
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def cut(self) -> None:
        """Reset every open connection, both sides, as a dropped link does."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            with contextlib.suppress(OSError):  # wakes the pump blocked in recv(); close() alone would not
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.cuts += 1

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection((self.host, self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._connections += [client, upstream]
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if self.latency_s:
                    time.sleep(self.latency_s)
                sink.sendall(chunk)
        except OSError:
            pass
        for conn in (source, sink):  # one side ended: end the other, like a real middlebox
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
