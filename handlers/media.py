"""The media stream WebSocket route: one ``CallWorker`` per connection."""

from __future__ import annotations

from flask import current_app
from flask_sock import Sock

from handlers.call_worker import CallWorker

sock = Sock()


@sock.route("/media-stream")
def media_stream(ws) -> None:
    """Twilio connects here from ``<Connect><Stream url="wss://HOST/media-stream">``."""
    CallWorker(ws, current_app.extensions["callstream"]).run()
