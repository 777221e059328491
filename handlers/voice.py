"""Voice webhooks: TwiML that connects a conversation or forks a call, and stream status callbacks."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, jsonify, request

from core.call_tokens import TOKEN_PARAMETER
from core.outbound import OUTBOUND_PATH, OutboundOptions
from core.sids import is_call_sid, is_stream_sid
from runtime import metrics
from runtime.blocking import run_blocking
from twiml.responses import connect_stream, dial, fork_and_dial, say_and_hang_up

bp = Blueprint("voice", __name__)
log = logging.getLogger(__name__)

STREAM_PATH = "/media-stream"
STATUS_PATH = "/stream-status"
MAX_EVENT_CHARS = 32  # store/models.py StatusEventRow.event
MAX_STREAM_NAME_CHARS = 255  # StatusEventRow.name
NOT_CONFIGURED = "Sorry, this number is not set up to forward calls. Goodbye."


def _public_host() -> str:
    """``PUBLIC_URL``'s host, else the request's ``Host`` (ngrok forwards the public host name)."""
    public_url = current_app.config["CALLSTREAM"].public_url
    return urlsplit(public_url).netloc if public_url else request.host


def stream_url() -> str:
    """The ``wss://`` URL of the media stream (``wss`` is the only scheme Twilio accepts)."""
    return f"wss://{_public_host()}{STREAM_PATH}"


def status_callback_url() -> str:
    """Absolute URL of the stream status callback: ``PUBLIC_URL`` as given, else ``https://`` + host."""
    public_url = current_app.config["CALLSTREAM"].public_url
    base = public_url if public_url.startswith(("http://", "https://")) else f"https://{_public_host()}"
    return base + STATUS_PATH


# SignalWire's SIDs (AccountSid is the project ID) are UUIDs; Twilio's are "AC" + 32 hex (protocol.md §9).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_signalwire_request() -> bool:
    """True for a SignalWire (cXML) webhook: it is signed with ``X-SignalWire-Signature``, or
    its ``AccountSid`` is a UUID."""
    return "X-SignalWire-Signature" in request.headers or bool(_UUID.fullmatch(request.values.get("AccountSid", "")))


def _signalwire_stream(call_token: str) -> dict[str, str]:
    """``<Stream>`` attributes for a SignalWire webhook: ``SIGNALWIRE_CODEC`` and ``authBearerToken``:
    with signatures on, a stream token carrying ``call_token`` (SignalWire does not sign the WebSocket
    upgrade), else ``call_token`` itself, so the stream stays bound to its call even if SignalWire
    drops the ``<Parameter>``s; none for Twilio."""
    if not is_signalwire_request():
        return {}
    checker = current_app.extensions.get("signature_checker")
    if checker is not None and checker.enabled:
        token = checker.make_stream_token(time.time(), call_token)
    else:
        token = call_token
    return {"codec": current_app.config["CALLSTREAM"].signalwire_codec, "auth_bearer_token": token}


def _call_token() -> str:
    """The stream token binding the stream to the webhook's ``CallSid`` (``core.call_tokens``); ``""``
    without a valid one (the stream's ``start`` will then be refused)."""
    call_sid = request.values.get("CallSid", "")
    if not is_call_sid(call_sid):
        log.warning("webhook without a valid CallSid (%r): its stream will be refused", call_sid[:40])
        return ""
    return current_app.extensions["callstream"].call_tokens.make(call_sid, time.time())


def _call_parameters(call_token: str) -> dict[str, str]:
    """``From``, ``To``, ``CallSid`` from the webhook, and ``call_token`` as ``callstream_token``."""
    values = request.values
    parameters = {name: values[name] for name in ("From", "To", "CallSid") if values.get(name)}
    if call_token:
        parameters[TOKEN_PARAMETER] = call_token
    return parameters


@bp.route("/incoming-call", methods=["GET", "POST"])
def incoming_call() -> Response:
    """Twilio's voice webhook for a conversation: ``<Say>`` (optional) then ``<Connect><Stream>``.

    The caller (``From``), the called number (``To``) and ``CallSid`` from Twilio's webhook
    fields are passed to the stream as ``<Parameter>``s.
    """
    settings = current_app.config["CALLSTREAM"]
    if _busy():
        metrics.call_refused("max_calls")
        return Response(say_and_hang_up(settings.busy_message), mimetype="text/xml")
    if not _admitted():
        metrics.call_refused("overload")
        if settings.overload_answer == "503":  # Twilio then requests the number's Fallback URL
            return Response("overloaded: no engine capacity for another call\n", status=503, mimetype="text/plain",
                            headers={"Retry-After": "5"})
        return Response(say_and_hang_up(settings.busy_message), mimetype="text/xml")
    metrics.call_admitted()
    call_token = _call_token()
    twiml = connect_stream(stream_url(), parameters=_call_parameters(call_token), greeting=settings.twiml_greeting,
                           **_signalwire_stream(call_token))
    return Response(twiml, mimetype="text/xml")


@bp.route(OUTBOUND_PATH, methods=["POST"])
def outbound_call() -> Response:
    """The webhook of a call placed by ``POST /api/calls`` (``handlers/outbound.py``), requested by
    Twilio when the called party answers: ``<Connect><Stream>`` like ``/incoming-call``, with the
    call's options from this URL's query string (signed with the rest of the URL) passed to the
    stream as ``callstream_*`` ``<Parameter>``s (``core.outbound``).

    Over ``MAX_CALLS`` or under overload the called party hears ``BUSY_MESSAGE`` and the call ends.
    """
    settings = current_app.config["CALLSTREAM"]
    if _busy() or not _admitted():
        metrics.call_refused("max_calls")
        return Response(say_and_hang_up(settings.busy_message), mimetype="text/xml")
    metrics.call_admitted()
    try:
        options = OutboundOptions.from_query(request.args)
    except ValueError as exc:  # only a hand-made or altered URL gets here: ours are built from checked options
        log.warning("%s with bad options: %s", OUTBOUND_PATH, exc)
        return Response(say_and_hang_up(NOT_CONFIGURED), mimetype="text/xml")
    call_token = _call_token()
    parameters = {**_call_parameters(call_token), **options.stream_parameters()}
    return Response(connect_stream(stream_url(), parameters=parameters), mimetype="text/xml")


def _admitted() -> bool:
    """Admission control (``core.admission``): True, and the call's place reserved, if the engines
    can answer one more conversation within ``OVERLOAD_REPLY_BUDGET_MS``."""
    services = current_app.extensions["callstream"]
    decision = services.admission_decision()
    if not decision.admit:
        log.warning("overloaded: refusing a call (predicted first reply wait %.1f s > %d ms; %d calls before their "
                    "first reply, %d past it, engine backlog %.1f core-s)", decision.predicted_wait_s,
                    services.settings.overload_reply_budget_ms, decision.fresh, decision.settled, services.backlog_core_s)
        return False
    call_sid = request.values.get("CallSid", "")
    if services.settings.overload_reply_budget_ms and is_call_sid(call_sid):
        services.admission.reserve(call_sid, time.monotonic(), services.turn_core_s)
    return True


def _busy() -> bool:
    services = current_app.extensions["callstream"]
    if services.draining:
        log.warning("shutting down: answering busy")
        return True
    if services.active_calls < current_app.config["CALLSTREAM"].max_calls:
        return False
    log.warning("over MAX_CALLS=%d (%d active): answering busy", current_app.config["CALLSTREAM"].max_calls, services.active_calls)
    return True


@bp.route("/forward-call", methods=["GET", "POST"])
def forward_call() -> Response:
    """Voice webhook for a listen-only fork: ``<Start><Stream track="both_tracks">`` then ``<Dial FORWARD_TO>``.

    Without ``FORWARD_TO`` the caller hears that the number is not set up, and the call ends.
    """
    forward_to = current_app.config["CALLSTREAM"].forward_to
    if not forward_to:
        log.error("/forward-call: FORWARD_TO is not set; the caller is told and the call ends")
        return Response(say_and_hang_up(NOT_CONFIGURED), mimetype="text/xml")
    if _busy():  # the caller still reaches FORWARD_TO, just without the listen-only fork
        return Response(dial(forward_to), mimetype="text/xml")
    call_token = _call_token()
    twiml = fork_and_dial(
        stream_url(), status_callback_url=status_callback_url(), forward_to=forward_to, parameters=_call_parameters(call_token),
        **_signalwire_stream(call_token),
    )
    return Response(twiml, mimetype="text/xml")


@bp.route(STATUS_PATH, methods=["GET", "POST"])
def stream_status():
    """Twilio's stream ``statusCallback``: stream-started, stream-stopped, stream-error (TwiML ``<Stream>``).

    Stored on the call (created if the callback comes before the stream's ``start``).
    Fields: AccountSid, CallSid, StreamSid, StreamName, StreamEvent, StreamError, Timestamp.
    """
    values = request.values
    call_sid, event = values.get("CallSid", ""), values.get("StreamEvent", "")
    if not call_sid or not event:
        return jsonify(error="CallSid and StreamEvent are required"), 400
    stream_sid = values.get("StreamSid") or None
    # checked like a stream's start (core.sids): unsigned in development, and the columns are bounded
    if not is_call_sid(call_sid) or (stream_sid is not None and not is_stream_sid(stream_sid)):
        return jsonify(error="CallSid and StreamSid must be Twilio SIDs or SignalWire UUIDs"), 400
    if len(event) > MAX_EVENT_CHARS:
        return jsonify(error=f"StreamEvent is longer than {MAX_EVENT_CHARS} characters"), 400
    error = values.get("StreamError") or None
    store = current_app.extensions["callstream"].store
    run_blocking(
        lambda: store.add_status_event(
            call_sid,
            stream_sid=stream_sid,
            event=event,
            error=error,
            timestamp=values.get("Timestamp") or None,
            name=(values.get("StreamName") or "")[:MAX_STREAM_NAME_CHARS] or None,
        )
    )
    if event == "stream-error":
        log.warning("[%s] stream error: %s", call_sid, error)
    return "", 204
