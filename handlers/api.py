"""Health check and the call record API."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request

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


@bp.get("/api/calls")
def list_calls():
    """Recent calls, most recent first. ``?limit=N`` (1–500, default 50)."""
    try:
        limit = int(request.args.get("limit", 50))
    except ValueError:
        return jsonify(error="limit must be an integer"), 400
    limit = max(1, min(limit, 500))
    return jsonify(calls=[record.to_json() for record in _services().history.recent(limit)])


@bp.get("/api/calls/<call_sid>")
def get_call(call_sid: str):
    """One call: SIDs, numbers, start/end times (ISO 8601, UTC) and turns (media-clock ms)."""
    record = _services().history.get(call_sid)
    if record is None:
        return jsonify(error=f"no call {call_sid}"), 404
    return jsonify(record.to_json())
