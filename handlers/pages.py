"""Server-rendered call history: ``GET /calls`` (a paged table) and ``GET /calls/<call_sid>``.

The detail page shows the call's header, its status events, a player and download links for
its recordings (served by ``handlers/api.py`` at ``/api/calls/<sid>/recording.wav`` and
``/api/calls/<sid>/recording/<kind>.wav``), the stereo recording as an inline SVG waveform
with the turns marked (``audio/waveform.py``), and the transcript timeline. No JavaScript.

Every store call, and the drawing of the waveform (from its stored envelope, computed once per
call: ``runtime/waveforms.py``), runs through ``run_blocking`` so the gevent hub keeps serving
the calls in progress. Every page needs the dashboard login (``handlers/auth.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, current_app, render_template, request
from markupsafe import Markup

from audio.errors import AudioFormatError
from audio.waveform import envelope_svg, format_clock
from handlers.api import MAX_PAGE
from handlers.auth import require_login
from runtime.blocking import run_blocking
from runtime.waveforms import waveform_of_call
from store.records import StoredTurn

log = logging.getLogger(__name__)

bp = Blueprint("pages", __name__)
require_login(bp)  # every page shows call data: no open route

PER_PAGE = 20
# Order of the latency stages in a bot turn's breakdown (core/records.py, ``latency_ms``).
LATENCY_STAGES = ("endpoint", "recognition", "responder", "synthesis")


def _store():
    return current_app.extensions["callstream"].store


@bp.get("/calls")
def calls():
    """The call history, most recent first, ``PER_PAGE`` calls per page (``?page=N``, from 1; a page
    that is not a positive integer shows page 1, one over ``MAX_PAGE`` is a ``400``)."""
    page = max(1, request.args.get("page", 1, type=int) or 1)
    if page > MAX_PAGE:  # an OFFSET past what the database's integers hold would fail there
        return Response(f"Bad request: page must be from 1 to {MAX_PAGE}.\n", status=400, mimetype="text/plain")
    summaries, total = run_blocking(partial(_store().list_calls, page=page, per_page=PER_PAGE))
    num_pages = max(1, -(-total // PER_PAGE))
    return render_template(
        "calls.html",
        calls=summaries,
        total=total,
        page=page,
        num_pages=num_pages,
        prev_page=page - 1 if page > 1 else None,
        next_page=page + 1 if page * PER_PAGE < total else None,
    )


@bp.get("/calls/<call_sid>")
def call(call_sid: str):
    """One call: header, status events, player, recordings, waveform and transcript; 404 if unknown."""
    store = _store()
    record = run_blocking(store.get_call, call_sid)
    if record is None:
        return render_template("not_found.html", call_sid=call_sid), 404
    sid_path = quote(call_sid, safe="")
    recordings = [{**asdict(recording), "url": _recording_url(sid_path, recording.kind)} for recording in record.recordings]
    has_stereo = any(recording.kind == "stereo" for recording in record.recordings)
    labels = ("caller", "callee") if record.mode == "fork" else ("caller", "bot")
    svg = None
    if has_stereo:
        svg = run_blocking(_waveform_of, store, call_sid, [turn.to_json() for turn in record.turns], labels)
    return render_template(
        "call.html",
        call=record,
        turns=[_turn_view(turn) for turn in record.turns],
        recordings=recordings,
        player_url=_recording_url(sid_path, "stereo") if has_stereo else None,
        waveform=Markup(svg) if svg else None,  # escaped by waveform_svg itself
        duration_ms=record.duration_ms,
    )


def _recording_url(sid_path: str, kind: str) -> str:
    """Download path served by handlers/api.py: the stereo mix at ``recording.wav``, a track at ``recording/<kind>.wav``."""
    if kind == "stereo":
        return f"/api/calls/{sid_path}/recording.wav"
    return f"/api/calls/{sid_path}/recording/{quote(kind, safe='')}.wav"


def _waveform_of(store: Any, call_sid: str, turns: list[dict], labels: tuple[str, str]) -> str | None:
    """Draw the call's stored waveform, computing and storing it first if needed (blocking: run it in a thread).

    Returns:
        The SVG, or ``None`` when the recording is gone or cannot be decoded (logged).
    """
    envelope = waveform_of_call(store, call_sid)
    if envelope is None:
        return None
    try:
        return envelope_svg(envelope, turns, labels=labels)
    except AudioFormatError as error:
        log.warning("stereo recording of %s cannot be drawn: %s", call_sid, error)
        return None


def _turn_view(turn: StoredTurn) -> dict:
    """A stored turn as saved plus what the template shows: clock times and the latency breakdown."""
    latency = turn.latency_ms if isinstance(turn.latency_ms, Mapping) else {}
    stages = [(name, latency[name]) for name in LATENCY_STAGES if isinstance(latency.get(name), (int, float))]
    return {
        **turn.to_json(),
        "start_clock": format_clock(turn.start_ms),
        "end_clock": format_clock(turn.end_ms),
        "latency_total": latency.get("total") if isinstance(latency.get("total"), (int, float)) else None,
        "latency_stages": stages,
    }


@bp.app_template_filter("call_time")
def call_time(when: datetime | None) -> str:
    """A time → ``2026-11-21 07:00:05 UTC`` (``+0200`` instead of ``UTC`` at another offset; ``—`` for ``None``)."""
    if when is None:
        return "—"
    if when.utcoffset() is not None and when.utcoffset().total_seconds() == 0:
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when.strftime("%Y-%m-%d %H:%M:%S %z").strip()


@bp.app_template_filter("call_duration")
def call_duration(ms: int | None) -> str:
    """Milliseconds → ``m:ss``, whole seconds rounded down as players show them (``h:mm:ss`` from an hour; ``—`` for ``None``)."""
    if ms is None:
        return "—"
    seconds = int(ms // 1000)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@bp.app_template_filter("size_kb")
def size_kb(size_bytes: int | None) -> str:
    """Bytes → ``123.4 KB`` / ``1.2 MB``."""
    if size_bytes is None:
        return "—"
    if size_bytes >= 1_000_000:
        return f"{size_bytes / 1_000_000:.1f} MB"
    return f"{size_bytes / 1000:.1f} KB"
