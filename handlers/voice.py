"""Voice webhooks: answer a call with TwiML that connects a bidirectional media stream."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from twiml.responses import connect_stream

bp = Blueprint("voice", __name__)

STREAM_PATH = "/media-stream"


def stream_url() -> str:
    """The ``wss://`` URL of the media stream: ``PUBLIC_URL``'s host, else this request's host.

    Behind ngrok or a proxy set ``PUBLIC_URL``; without it the ``Host`` header is used (ngrok
    forwards the public host name). The scheme is always ``wss`` (the only one Twilio accepts).
    """
    public_url = current_app.config["PUBLIC_URL"]
    host = urlsplit(public_url).netloc if public_url else request.host
    return f"wss://{host}{STREAM_PATH}"


@bp.route("/incoming-call", methods=["GET", "POST"])
def incoming_call() -> Response:
    """Twilio's voice webhook: ``<Say>`` (optional) then ``<Connect><Stream>``.

    The caller (``From``), the called number (``To``) and ``CallSid`` from Twilio's webhook
    fields are passed to the stream as ``<Parameter>``s.
    """
    values = request.values
    parameters = {name: values[name] for name in ("From", "To", "CallSid") if values.get(name)}
    twiml = connect_stream(stream_url(), parameters=parameters, greeting=current_app.config["TWIML_GREETING"])
    return Response(twiml, mimetype="text/xml")
