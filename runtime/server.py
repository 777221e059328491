"""gevent WSGI server glue for flask-sock (``python app.py``; gunicorn needs none of it).

Measured on this stack (flask-sock 0.7, simple-websocket, gevent 24): under ``gevent.pywsgi`` a finished WebSocket route leaves the
connection open (pywsgi parses the next frame as an HTTP request and a close takes the peer's
10 s timeout), because simple-websocket works on a ``dup()`` of the socket. The handler below
and ``close_websocket`` fix both (close in 1 ms either way). gevent-websocket's handler must
not be used with flask-sock: both do the handshake.
"""

from __future__ import annotations

import socket

from gevent.pywsgi import WSGIHandler, WSGIServer


class WebSocketAwareHandler(WSGIHandler):
    """After a WebSocket route returns, close the connection instead of reading more HTTP."""

    def run_application(self):
        try:
            super().run_application()
        finally:
            if self.environ.get("HTTP_UPGRADE", "").lower() == "websocket":
                self.close_connection = True


def close_websocket(ws, wait_s: float = 1.0) -> None:
    """Close a flask-sock WebSocket from the server side and really end the TCP connection.

    Args:
        ws: the ``simple_websocket.Server`` flask-sock passed to the route.
        wait_s: how long to wait for the peer's close reply, in seconds.
    """
    try:
        ws.close()
    except Exception:  # already closed by the peer
        pass
    thread = getattr(ws, "thread", None)
    if thread is not None:
        thread.join(wait_s)
    sock = getattr(ws, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # FIN even though pywsgi holds another fd
        except OSError:
            pass


def make_server(app, host: str, port: int) -> WSGIServer:
    """Build (not start) the gevent WSGI server for ``app`` on ``host:port`` (0 = any free port).

    The caller must have run ``gevent.monkey.patch_all()`` first.
    """
    return WSGIServer((host, port), app, handler_class=WebSocketAwareHandler, log=None)
