"""The media stream WebSocket route: one ``CallWorker`` per connection."""

from __future__ import annotations

from flask import current_app, request
from flask_sock import Sock

from runtime.call_worker import CallWorker
from handlers.signatures import call_token_in_bearer

sock = Sock()


@sock.route("/media-stream")
def media_stream(ws) -> None:
    """Twilio connects here from ``<Connect><Stream url="wss://HOST/media-stream">``."""
    authorization = request.headers.get("Authorization", "")
    bearer = authorization[len("Bearer "):].strip() if authorization.startswith("Bearer ") else ""
    CallWorker(ws, current_app.extensions["callstream"], bearer_token=call_token_in_bearer(bearer)).run()
