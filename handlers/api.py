"""Health check, Prometheus metrics and the call record API.

Every route but the health check needs the dashboard login (``handlers/auth.py``); ``/metrics``
also takes ``METRICS_TOKEN`` as a bearer token. The login is checked before a route runs.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from core.sids import filename_part
from runtime import metrics
from handlers.auth import require_login
from runtime.blocking import run_blocking
from store.calls import RECORDING_KINDS

bp = Blueprint("api", __name__)
require_login(bp, open_endpoints={"api.health"}, token_endpoints={"api.prometheus_metrics": "metrics_token"})

MAX_PAGE = 1_000_000
"""Highest page number of the call lists (the API and ``/calls``): the OFFSET stays small for any database."""
MAX_PER_PAGE = 200
DOWNLOAD_CHUNK_BYTES = 256 * 1024
"""Bytes read (in a thread) and sent per step of a recording download."""


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
        recognizer=current_app.config["CALLSTREAM"].recognizer,
        synthesizer=current_app.config["CALLSTREAM"].synthesizer,
    )


@bp.get("/metrics")
def prometheus_metrics():
    """The process's metrics in Prometheus' text format (``runtime/metrics.py``).

    Needs the dashboard login or ``Authorization: Bearer <METRICS_TOKEN>`` (checked by ``handlers/auth.py``).
    """
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
        page = _positive_int("page", 1, MAX_PAGE)
        per_page = _positive_int("per_page", 20, MAX_PER_PAGE)
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    store = _services().store  # current_app is not available in the worker thread
    calls, total = run_blocking(lambda: store.list_calls(page=page, per_page=per_page))
    return jsonify(calls=[summary.to_json() for summary in calls], page=page, per_page=per_page, total=total,
                   pages=(total + per_page - 1) // per_page)


@bp.get("/api/calls/<call_sid>")
def get_call(call_sid: str):
    """One call: SIDs, numbers, times (ISO 8601, UTC), ``mode``, ``turns`` (media-clock ms),
    ``status_events`` and ``recordings`` (each with its download ``url``)."""
    call = run_blocking(_services().store.get_call, call_sid)
    if call is None:
        return jsonify(error=f"no call {call_sid}"), 404
    body = call.to_json()  # times become ISO 8601 here, at the JSON boundary
    for item in body["recordings"]:
        item["url"] = recording_url(call_sid, item["kind"])
    return jsonify(body)


def recording_url(call_sid: str, kind: str) -> str:
    """Download path of a recording: the stereo mix at ``recording.wav``, a track at ``recording/<kind>.wav``."""
    return f"/api/calls/{call_sid}/recording.wav" if kind == "stereo" else f"/api/calls/{call_sid}/recording/{kind}.wav"


@bp.get("/api/calls/<call_sid>/recording.wav")
def stereo_recording(call_sid: str):
    """The call's stereo WAV: 8 kHz PCM16, left = caller, right = bot (or callee), sample 0 = media time 0."""
    return track_recording(call_sid, "stereo")


@bp.get("/api/calls/<call_sid>/recording/<kind>.wav")
def track_recording(call_sid: str, kind: str):
    """One track as Twilio carries it: 8 kHz μ-law mono WAV (``inbound`` or ``outbound``), or ``stereo``.

    Streamed ``DOWNLOAD_CHUNK_BYTES`` at a time from the file or the database, with
    ``Content-Length``: a download never holds the whole recording in memory.
    """
    if kind not in RECORDING_KINDS:
        return jsonify(error=f"kind must be one of {', '.join(RECORDING_KINDS)}"), 404
    reader = run_blocking(_services().store.recording_reader, call_sid, kind)
    if reader is None:
        return jsonify(error=f"no {kind} recording for call {call_sid}"), 404

    def body():
        try:
            while chunk := run_blocking(reader.read, DOWNLOAD_CHUNK_BYTES):
                yield chunk
        finally:  # also when the client goes away mid-download
            reader.close()

    filename = f"{filename_part(call_sid)}-{kind}.wav"  # nothing from the URL reaches the header unescaped
    return Response(body(), mimetype="audio/wav", headers={
        "Content-Disposition": f'inline; filename="{filename}"', "Content-Length": str(reader.size_bytes),
    })


@bp.delete("/api/calls/<call_sid>")
def delete_call(call_sid: str):
    """Erase one call: its rows (call, turns, status events, recordings, waveform) and its recording
    files inside ``RECORDINGS_DIR``. ``204`` when done, ``404`` if unknown, ``409`` while the call
    is still going on in this process (a call live in another process cannot be seen from here).
    """
    services = _services()
    if call_sid in _live_call_sids(services):
        return jsonify(error=f"call {call_sid} is still in progress; delete it once it has ended"), 409
    deleted = run_blocking(services.store.delete_call, call_sid, current_app.config["CALLSTREAM"].recordings_dir)
    if not deleted:
        return jsonify(error=f"no call {call_sid}"), 404
    return Response(status=204)


def _live_call_sids(services) -> set[str]:
    """The call SIDs of the calls this process is serving now."""
    live = set()
    for worker in list(services.workers):
        record = getattr(getattr(worker, "session", None), "record", None)
        if getattr(record, "call_sid", None):
            live.add(record.call_sid)
    return live
