"""A TCP proxy in front of PostgreSQL that a test can cut and restore (a database outage on cue).

Threads, not greenlets: it serves processes started by the test as well as the test's own
threadpool. ``cut()`` drops every open connection and refuses new ones (accepted, then closed
at once: the client sees "server closed the connection unexpectedly"); ``restore()`` lets
connections through again.
"""

from __future__ import annotations

import socket
import threading


class DatabaseProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; ``url(database)`` gives a psycopg URL through it."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="db-proxy").start()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def up(self) -> bool:
        return self._up.is_set()

    def cut(self) -> None:
        """Drop every connection; refuse new ones until ``restore``."""
        self._up.clear()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _kill(sock)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _kill(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                _kill(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _kill(source)
            _kill(sink)


def _kill(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
