"""What a simulated call produced: the ``--json`` report, the conversation and the summary line.

Pure apart from printing: no network, no clock reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tools.twilio_sim.frames import FRAME_MS
from tools.twilio_sim.latency import median_or_none
from tools.twilio_sim.media_format import MediaFormat
from tools.twilio_sim.script import ScriptItem, SpokenItem
from tools.twilio_sim.stream import SimulatedCall, SimulatedFork
from tools.twilio_sim.twiml import TwimlStream

SPEAKERS = {"inbound": "caller", "outbound": "callee"}  # who speaks on each track of a fork


def print_conversation(record: dict) -> None:
    """Print the call record's turns: media-clock times in seconds, speaker, text."""
    turns = record.get("turns") or []
    print(f"\nConversation {record.get('call_sid', '')} ({len(turns)} turns):")
    for turn in turns:
        start_ms, end_ms = turn.get("start_ms"), turn.get("end_ms")
        span = (f"{start_ms / 1000:7.2f}-{end_ms / 1000:7.2f}s"
                if isinstance(start_ms, (int, float)) and isinstance(end_ms, (int, float)) else f"{'?':>17}")
        text = turn.get("text", "")
        if turn.get("dtmf"):
            text = f"[DTMF {turn['dtmf']}] {text}".strip()
        print(f"  {span}  {turn.get('speaker', '?'):<6}  {text}")


@dataclass
class CallOutcome:
    """Everything known about one simulated call, for printing and the report."""

    call_sid: str
    account_sid: str
    stream_sid: str
    items: list[ScriptItem]
    first_timestamp_ms: int
    base_url: str | None = None
    mode: str = "conversation"
    ws_url: str | None = None
    downgraded: bool = False
    twiml: TwimlStream | None = None
    session: SimulatedCall | SimulatedFork | None = None
    record: dict | None = None
    record_error: str | None = None
    latency: list[dict] = field(default_factory=list)
    heard_wav: str | None = None
    status_callbacks: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialect: str = "twilio"
    media_format: MediaFormat | None = None
    direction: str = "inbound"  # "outbound": a call the server placed (--answer)
    answered_by: str | None = None  # what the simulated answering-machine detection said
    transfers: list[dict] = field(default_factory=list)  # REST updates that replaced the call's TwiML
    platform_callbacks: list[dict] = field(default_factory=list)  # call progress and AMD callbacks sent


def spoken_entries(spoken: list[SpokenItem], first_timestamp_ms: int) -> list[dict]:
    """Convert the script's audio items to the report's ``spoken`` entries on the media clock.

    Args:
        spoken: from ``CallerScript.spoken`` / ``ForkScript.spoken``.
        first_timestamp_ms: ``media.timestamp`` of tick 0.

    Returns:
        ``[{"track", "speaker", "item", "index", "start_ms", "end_ms"}]``: ``start_ms`` is the
        timestamp of the media carrying the item's first frame, ``end_ms`` = start + the audio's
        length (without the padding of its last frame).
    """
    entries = []
    for item in spoken:
        start_ms = first_timestamp_ms + item.start_tick * FRAME_MS
        entries.append({"track": item.track, "speaker": SPEAKERS[item.track], "item": item.token,
                        "index": item.index, "start_ms": start_ms, "end_ms": start_ms + item.duration_ms})
    return entries


def build_report(outcome: CallOutcome) -> dict:
    """Assemble the ``--json`` report.

    Schema (times ``*_ms`` without "latency" are on the media clock, i.e. the
    ``timestamp`` of the media messages sent; latencies are wall-clock ms)::

        {"call_sid": "CA…", "account_sid": "AC…", "stream_sid": "MZ…" (UUIDs with --signalwire),
         "dialect": "twilio" | "signalwire",
         "media_format": {"encoding": "audio/x-mulaw" | "audio/x-L16", "sample_rate": Hz,
                          "codec": null | "L16@16000h" | "L16@24000h"} | null (no stream),
         "mode": "conversation" (<Connect><Stream>, /incoming-call) | "fork" (<Start><Stream>, /forward-call),
         "url": base URL, "websocket_url": URL opened, "downgraded_to_ws": bool,
         "twiml": {"verb": "Connect" | "Start", "stream_url", "track", "name", "status_callback",
                   "status_callback_method", "codec" (as written, or null), "parameters": {…},
                   "say": [...], "dial": [...]} | null,
         "tracks": start.tracks sent, e.g. ["inbound"] or ["inbound", "outbound"],
         "script": [argument, ...], "first_timestamp_ms": int,
         "direction": "inbound" | "outbound" (--answer: a call the server placed),
         "answered_by": what the simulated answering-machine detection said | null,
         "transfers": [{"dial": [<Dial> targets], "twiml", "at_ms"}] (REST updates replacing the TwiML),
         "platform_callbacks": [{"kind": "status" | "amd", "value", "status_code", "error"}],
         "ended_by": "caller" | "server" | "platform" (a transfer) | "caller (interrupted)" | "error" | null,
         "duration_ms": media time sent (ticks × 20),
         "spoken": [{"track": "inbound" | "outbound", "speaker": "caller" | "callee", "item": argument,
                     "index": position in script, "start_ms", "end_ms"}] (each audio item as sent),
         "call": call record from GET /api/calls/<sid> | null, "call_error": str | null,
         "counts": {media_sent (all tracks), media_sent_inbound, media_sent_outbound, dtmf_sent,
                    media_received, media_received_bytes, marks_received (sent by the server),
                    marks_echoed, clears_received, violations,
                    late_ticks (> 10 ms behind the 20 ms clock), max_tick_lateness_ms, replies},
         "violations": [{"at_ms", "error", "message" (first 300 chars)}],
         "replies": [{"index", "arrival_ms", "heard_ms", "first_mark_echo_ms",
                      "media_messages", "ulaw_bytes" (payload bytes, L16 ones on an L16 stream)}]
                    ([] in fork mode),
         "latency": [{"caller_turn" (index in call.turns), "caller_end_ms", "reply" (index | null),
                      "voice_to_voice_ms", "first_mark_echo_ms", "reply_heard_ms"}] ([] in fork mode),
         "voice_to_voice_ms_median": number | null,
         "status_callbacks": [{"event", "method", "url" (requested), "status_code" (null if the
                               request failed), "error" (str | null), "failed" (bool)}],
         "heard_wav": path (PCM16 mono at media_format's sample_rate) | null, "errors": [str], "ok": bool}
    """
    session = outcome.session
    counts, replies = {}, []
    if session is not None:
        counts = asdict(session.counts)
    if isinstance(session, SimulatedCall):
        counts["replies"] = len(session.replies.replies)
        for reply in session.replies.replies:
            replies.append({
                "index": reply.index,
                "arrival_ms": session.clock_ms(reply.arrival_s),
                "heard_ms": reply.heard_ms,
                "first_mark_echo_ms": (session.clock_ms(reply.first_mark_echo_s)
                                       if reply.first_mark_echo_s is not None else None),
                "media_messages": reply.media_messages,
                "ulaw_bytes": reply.ulaw_bytes,
            })
    twiml = outcome.twiml
    twiml_entry = None
    if twiml is not None:
        twiml_entry = {"verb": twiml.verb, "stream_url": twiml.url, "track": twiml.track, "name": twiml.name,
                       "status_callback": twiml.status_callback,
                       "status_callback_method": twiml.status_callback_method, "codec": twiml.codec,
                       "parameters": twiml.parameters, "say": twiml.say, "dial": twiml.dial}
    return {
        "call_sid": outcome.call_sid,
        "account_sid": outcome.account_sid,
        "stream_sid": outcome.stream_sid,
        "dialect": outcome.dialect,
        "media_format": _media_format_entry(outcome.media_format),
        "mode": outcome.mode,
        "url": outcome.base_url,
        "websocket_url": outcome.ws_url,
        "downgraded_to_ws": outcome.downgraded,
        "twiml": twiml_entry,
        "tracks": list(session.tracks) if session else (twiml.tracks if twiml else []),
        "script": [item.token for item in outcome.items],
        "first_timestamp_ms": outcome.first_timestamp_ms,
        "direction": outcome.direction,
        "answered_by": outcome.answered_by,
        "transfers": outcome.transfers,
        "platform_callbacks": outcome.platform_callbacks,
        "ended_by": session.ended_by if session else None,
        "duration_ms": len(session.frame_sent_s) * FRAME_MS if session else 0,
        "spoken": spoken_entries(session.spoken, outcome.first_timestamp_ms) if session else [],
        "call": outcome.record,
        "call_error": outcome.record_error,
        "counts": counts,
        "violations": session.violations if session else [],
        "replies": replies,
        "latency": outcome.latency,
        "voice_to_voice_ms_median": median_or_none([entry["voice_to_voice_ms"] for entry in outcome.latency]),
        "status_callbacks": outcome.status_callbacks,
        "heard_wav": outcome.heard_wav,
        "errors": outcome.errors,
        "ok": not outcome.errors,
    }


def _media_format_entry(media_format: MediaFormat | None) -> dict | None:
    if media_format is None:
        return None
    return {"encoding": media_format.encoding, "sample_rate": media_format.sample_rate, "codec": media_format.codec}


def print_summary(report: dict) -> None:
    """Print the one-line summary: turns, replies, median voice-to-voice latency, counts (fork: media per track).

    A SignalWire call says so, with its stream's encoding and rate, e.g. "Summary (signalwire, audio/x-L16 16000 Hz)".
    """
    counts = report["counts"]
    platform = ""
    if report.get("dialect", "twilio") != "twilio":
        fmt = report.get("media_format") or {}
        platform = f"{report['dialect']}, {fmt.get('encoding')} {fmt.get('sample_rate')} Hz"
    callbacks = ", ".join(f"{entry['event']} {entry['status_code'] or 'failed'}"
                          for entry in report["status_callbacks"]) or "none"
    if report["mode"] == "fork":
        turns = (report["call"] or {}).get("turns") or []
        print(f"\nSummary ({platform + ', ' if platform else ''}fork, tracks {report['tracks']}): "
              f"{len(report['spoken'])} item(s) spoken, "
              f"{len(turns)} turn(s) in the call record; media sent {counts.get('media_sent', 0)} "
              f"(inbound {counts.get('media_sent_inbound', 0)}, outbound {counts.get('media_sent_outbound', 0)}); "
              f"status callbacks: {callbacks}; violations {counts.get('violations', 0)}; "
              f"max tick lateness {counts.get('max_tick_lateness_ms', 0)} ms; ended by {report['ended_by']}")
        return
    latencies = [entry["voice_to_voice_ms"] for entry in report["latency"] if entry["voice_to_voice_ms"] is not None]
    median = report["voice_to_voice_ms_median"]
    latency_text = (f"voice-to-voice median {median:.0f} ms (min {min(latencies)}, max {max(latencies)}, "
                    f"n={len(latencies)})" if latencies else "voice-to-voice: no paired replies")
    print(f"\nSummary{f' ({platform})' if platform else ''}: {len(report['latency'])} caller turn(s), "
          f"{counts.get('replies', 0)} bot reply(ies), "
          f"{latency_text}; media sent {counts.get('media_sent', 0)}, received {counts.get('media_received', 0)}; "
          f"marks {counts.get('marks_echoed', 0)} echoed / {counts.get('marks_received', 0)} received; "
          f"clears {counts.get('clears_received', 0)}; violations {counts.get('violations', 0)}; "
          f"max tick lateness {counts.get('max_tick_lateness_ms', 0)} ms; status callbacks: {callbacks}; "
          f"ended by {report['ended_by']}")
