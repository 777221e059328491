"""Outbound calls: ``POST /api/calls`` places one through Twilio's REST API; Twilio's callbacks on it.

* ``POST /api/calls`` (dashboard login, JSON only): checks the body (``core.outbound.CallRequest``),
  asks Twilio to call (``runtime.twilio_rest.place_call``) with the webhook ``/outbound-call``
  (``handlers/voice.py``) carrying the call's options, and answers ``201`` with the call SID.
  Twilio's refusals (a bad number, a trial account's unverified number, wrong credentials) come
  back as ``400`` with Twilio's code and message; no credentials or no ``PUBLIC_URL``: ``400``;
  Twilio unreachable: ``502``.
* ``/call-status`` (signed like every webhook): the call's progress (``CallStatus``), kept as a
  ``call-<status>`` status event; a call that ends without ever streaming (``busy``,
  ``no-answer``, ``failed``, ``canceled``, or ``completed`` before its stream) is ended in the store.
* ``/amd-status`` (signed): the answering-machine detection result (``AnsweredBy``), kept on the
  call, where its worker, in this process or another, picks it up (``runtime.call_worker``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import partial

from flask import Blueprint, current_app, jsonify, request
from twilio.base.exceptions import TwilioRestException

from core.outbound import AMD_STATUS_PATH, CALL_STATUS_PATH, OUTBOUND_PATH, CallRequest
from core.sids import is_call_sid
from handlers.auth import require_login
from runtime.blocking import run_blocking
from runtime.twilio_rest import explain_rest_error, place_call

log = logging.getLogger(__name__)

api_bp = Blueprint("outbound_api", __name__)
require_login(api_bp)
bp = Blueprint("outbound", __name__)

PLACE_CALL_TIMEOUT_S = 15.0
ANSWERED_BY = ("human", "unknown", "fax", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other")
"""Twilio's ``AnsweredBy`` values (Answering Machine Detection, webhook parameters)."""
CALL_STATUSES = ("queued", "initiated", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled")
"""Twilio's ``CallStatus`` values (Call resource)."""
_NEVER_STREAMED = ("busy", "failed", "no-answer", "canceled")


@api_bp.post("/api/calls")
def create_call():
    """Place a call: ``{"to": "+15551234567", "from"?, "greeting"?, "voicemail_message"?,
    "responder"?, "machine_detection"?, "parameters"?: {name: value}}`` → ``201 {"call_sid",
    "status", "to", "from"}``; see the module docstring for the errors."""
    services = current_app.extensions["callstream"]
    settings = services.settings
    if not request.is_json:  # also keeps a cross-site form (no preflight) from placing calls with a browser's login
        return jsonify(error="send the call as JSON (Content-Type: application/json)"), 415
    try:
        call = CallRequest.from_json(request.get_json(silent=True), default_from=settings.twilio_phone_number,
                                     machine_detection=settings.machine_detection,
                                     allowed_responders=list(services.outbound_responders))
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    if services.twilio_client is None:
        return jsonify(error="outbound calls need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"), 400
    base = settings.public_url
    if not base.startswith(("http://", "https://")):
        return jsonify(error="outbound calls need PUBLIC_URL (the https:// address Twilio reaches this server at)"), 400
    options = call.options
    try:
        call_sid = run_blocking(partial(
            place_call, services.twilio_client, to=call.to, from_=call.from_number,
            url=f"{base}{OUTBOUND_PATH}?{options.query()}", status_callback=base + CALL_STATUS_PATH,
            amd_callback=base + AMD_STATUS_PATH if options.machine_detection else None,
            amd_timeout_s=settings.machine_detection_timeout_s,
        ), timeout_s=PLACE_CALL_TIMEOUT_S)
    except TwilioRestException as exc:
        log.warning("placing a call failed: %s", explain_rest_error(exc))
        return jsonify(error=explain_rest_error(exc), twilio_code=exc.code, twilio_status=exc.status), 400
    except Exception as exc:  # unreachable, DNS, TLS, timeout
        log.warning("placing a call failed: %s: %s", type(exc).__name__, exc)
        return jsonify(error=f"Twilio's API could not be reached: {type(exc).__name__}"), 502
    if not is_call_sid(call_sid):
        return jsonify(error="Twilio's API answered without a call SID"), 502
    log.info("[%s] placed an outbound call (machine detection %s)", call_sid, "on" if options.machine_detection else "off")
    try:
        run_blocking(lambda: services.store.note_call(call_sid, direction="outbound", from_number=call.from_number,
                                                      to_number=call.to, started_at=datetime.now(timezone.utc)))
    except Exception:  # the call is placed: its record is made again when it streams
        log.exception("[%s] could not note the outbound call", call_sid)
    return jsonify(call_sid=call_sid, status="queued", to=call.to, **{"from": call.from_number}), 201


@bp.post(CALL_STATUS_PATH)
def call_status():
    """Twilio's ``StatusCallback`` for a placed call: ``CallSid``, ``CallStatus``, ``Timestamp``,
    ``ErrorCode`` (on ``failed``). ``204`` when kept, ``400`` for fields that are not Twilio's."""
    values = request.values
    call_sid, status = values.get("CallSid", ""), values.get("CallStatus", "")
    if not is_call_sid(call_sid) or status not in CALL_STATUSES:
        return jsonify(error="CallSid must be a call SID and CallStatus one of Twilio's"), 400
    store = current_app.extensions["callstream"].store
    error = (values.get("ErrorCode") or values.get("SipResponseCode") or "")[:64] or None
    timestamp = (values.get("Timestamp") or "")[:64] or None

    def keep() -> None:
        store.add_status_event(call_sid, stream_sid=None, event=f"call-{status}", error=error, timestamp=timestamp)
        if status in _NEVER_STREAMED or status == "completed":
            store.end_call(call_sid, datetime.now(timezone.utc))  # no-op once the stream's worker ended it

    run_blocking(keep)
    if status in _NEVER_STREAMED:
        log.info("[%s] outbound call %s%s", call_sid, status, f" ({error})" if error else "")
    return "", 204


@bp.post(AMD_STATUS_PATH)
def amd_status():
    """Twilio's ``AsyncAmdStatusCallback``: ``CallSid``, ``AnsweredBy``, ``MachineDetectionDuration``
    (ms). Kept on the call (``answered_by``) and as an ``answered-by`` status event; ``204``."""
    values = request.values
    call_sid, answered_by = values.get("CallSid", ""), values.get("AnsweredBy", "")
    if not is_call_sid(call_sid) or answered_by not in ANSWERED_BY:
        return jsonify(error="CallSid must be a call SID and AnsweredBy one of Twilio's"), 400
    store = current_app.extensions["callstream"].store
    duration = values.get("MachineDetectionDuration", "")
    duration = duration if duration.isdigit() and len(duration) < 10 else None

    def keep() -> None:
        store.note_call(call_sid, answered_by=answered_by)
        store.add_status_event(call_sid, stream_sid=None, event="answered-by", error=None, timestamp=None,
                               name=f"{answered_by} after {duration} ms" if duration else answered_by)

    run_blocking(keep)
    log.info("[%s] answered by %s (detection took %s ms)", call_sid, answered_by, duration)
    return "", 204
