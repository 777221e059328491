"""Health check, Prometheus metrics and the call record API."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from core.sids import filename_part
from handlers import metrics
from handlers.blocking import run_blocking
from store.calls import RECORDING_KINDS

bp = Blueprint("api", __name__)


def _services():
    return current_app.extensions["callstream"]


@bp.get("/")
def health():
    """``200`` with a short JSON status, for the platform's health checks."""
    services = _services()
    return jsonify(
        status="ok",
        service="callstream",
        active_calls=services.active_calls,
        recognizer=current_app.config["RECOGNIZER"],
        synthesizer=current_app.config["SYNTHESIZER"],
    )


@bp.get("/metrics")
def prometheus_metrics():
    """The process's metrics in Prometheus' text format (``handlers/metrics.py``).

    With ``METRICS_TOKEN`` set, a scrape must send ``Authorization: Bearer <token>``, else ``401``.
    """
    if not metrics.authorized(request.headers.get("Authorization"), current_app.config.get("METRICS_TOKEN", "")):
        return Response("Unauthorized: send Authorization: Bearer <METRICS_TOKEN>.\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return Response(metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE_LATEST})


def _positive_int(name: str, default: int, maximum: int) -> int:
    value = int(request.args.get(name, default))  # ValueError → 400 below
    if not 1 <= value <= maximum:
        raise ValueError(f"{name} must be from 1 to {maximum}")
    return value


@bp.get("/api/calls")
def list_calls():
    """Calls, most recent first, a page at a time: ``?page=1&per_page=20`` (per_page ≤ 200).

    Returns ``{"calls": [summary…], "page", "per_page", "total", "pages"}``; a summary has
    ``call_sid``, ``from``, ``to``, ``started_at``, ``ended_at``, ``duration_ms``, ``mode``,
    ``turn_count``.
    """
    try:
        page = _positive_int("page", 1, 1_000_000)
        per_page = _positive_int("per_page", 20, 200)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    store = _services().store  # current_app is not available in the worker thread
    calls, total = run_blocking(lambda: store.list_calls(page=page, per_page=per_page))
    return jsonify(calls=calls, page=page, per_page=per_page, total=total, pages=(total + per_page - 1) // per_page)


@bp.get("/api/calls/<call_sid>")
def get_call(call_sid: str):
    """One call: SIDs, numbers, times (ISO 8601, UTC), ``mode``, ``turns`` (media-clock ms),
    ``status_events`` and ``recordings`` (each with its download ``url``)."""
    call = run_blocking(_services().store.get_call, call_sid)
    if call is None:
        return jsonify(error=f"no call {call_sid}"), 404
    for item in call.get("recordings", []):
        item["url"] = recording_url(call_sid, item["kind"])
    return jsonify(call)


def recording_url(call_sid: str, kind: str) -> str:
    """Download path of a recording: the stereo mix at ``recording.wav``, a track at ``recording/<kind>.wav``."""
    return f"/api/calls/{call_sid}/recording.wav" if kind == "stereo" else f"/api/calls/{call_sid}/recording/{kind}.wav"


@bp.get("/api/calls/<call_sid>/recording.wav")
def stereo_recording(call_sid: str):
    """The call's stereo WAV: 8 kHz PCM16, left = caller, right = bot (or callee), sample 0 = media time 0."""
    return track_recording(call_sid, "stereo")


@bp.get("/api/calls/<call_sid>/recording/<kind>.wav")
def track_recording(call_sid: str, kind: str):
    """One track as Twilio carries it: 8 kHz μ-law mono WAV (``inbound`` or ``outbound``), or ``stereo``."""
    if kind not in RECORDING_KINDS:
        return jsonify(error=f"kind must be one of {', '.join(RECORDING_KINDS)}"), 404
    data = run_blocking(_services().store.recording_bytes, call_sid, kind)
    if data is None:
        return jsonify(error=f"no {kind} recording for call {call_sid}"), 404
    filename = f"{filename_part(call_sid)}-{kind}.wav"  # nothing from the URL reaches the header unescaped
    return Response(data, mimetype="audio/wav", headers={"Content-Disposition": f'inline; filename="{filename}"'})
