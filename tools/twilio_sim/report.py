"""What a simulated call produced: the ``--json`` report, the conversation and the summary line.

Pure apart from printing: no network, no clock reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tools.twilio_sim.frames import FRAME_MS
from tools.twilio_sim.latency import median_or_none
from tools.twilio_sim.script import ScriptItem
from tools.twilio_sim.stream import SimulatedCall
from tools.twilio_sim.twiml import TwimlStream


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
    ws_url: str | None = None
    downgraded: bool = False
    twiml: TwimlStream | None = None
    session: SimulatedCall | None = None
    record: dict | None = None
    record_error: str | None = None
    latency: list[dict] = field(default_factory=list)
    heard_wav: str | None = None
    errors: list[str] = field(default_factory=list)


def build_report(outcome: CallOutcome) -> dict:
    """Assemble the ``--json`` report.

    Schema (times ``*_ms`` without "latency" are on the media clock, i.e. the
    ``timestamp`` of the media messages sent; latencies are wall-clock ms)::

        {"call_sid": "CA…", "account_sid": "AC…", "stream_sid": "MZ…",
         "url": base URL, "websocket_url": URL opened, "downgraded_to_ws": bool,
         "twiml": {"stream_url", "parameters": {…}, "say": [...]} | null,
         "script": [argument, ...], "first_timestamp_ms": int,
         "ended_by": "caller" | "server" | "caller (interrupted)" | "error" | null,
         "duration_ms": media time sent (frames × 20),
         "call": call record from GET /api/calls/<sid> | null, "call_error": str | null,
         "counts": {media_sent, dtmf_sent, media_received, media_received_bytes,
                    marks_received (sent by the server), marks_echoed, clears_received,
                    violations, late_ticks (> 10 ms behind the 20 ms clock),
                    max_tick_lateness_ms, replies},
         "violations": [{"at_ms", "error", "message" (first 300 chars)}],
         "replies": [{"index", "arrival_ms", "heard_ms", "first_mark_echo_ms",
                      "media_messages", "ulaw_bytes"}],
         "latency": [{"caller_turn" (index in call.turns), "caller_end_ms", "reply" (index | null),
                      "voice_to_voice_ms", "first_mark_echo_ms", "reply_heard_ms"}],
         "voice_to_voice_ms_median": number | null, "heard_wav": path | null,
         "errors": [str], "ok": bool}
    """
    session = outcome.session
    counts, replies = {}, []
    if session is not None:
        counts = asdict(session.counts)
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
    return {
        "call_sid": outcome.call_sid,
        "account_sid": outcome.account_sid,
        "stream_sid": outcome.stream_sid,
        "url": outcome.base_url,
        "websocket_url": outcome.ws_url,
        "downgraded_to_ws": outcome.downgraded,
        "twiml": {"stream_url": twiml.url, "parameters": twiml.parameters, "say": twiml.say} if twiml else None,
        "script": [item.token for item in outcome.items],
        "first_timestamp_ms": outcome.first_timestamp_ms,
        "ended_by": session.ended_by if session else None,
        "duration_ms": len(session.frame_sent_s) * FRAME_MS if session else 0,
        "call": outcome.record,
        "call_error": outcome.record_error,
        "counts": counts,
        "violations": session.violations if session else [],
        "replies": replies,
        "latency": outcome.latency,
        "voice_to_voice_ms_median": median_or_none([entry["voice_to_voice_ms"] for entry in outcome.latency]),
        "heard_wav": outcome.heard_wav,
        "errors": outcome.errors,
        "ok": not outcome.errors,
    }


def print_summary(report: dict) -> None:
    """Print the one-line summary: turns, replies, median voice-to-voice latency, counts."""
    counts = report["counts"]
    latencies = [entry["voice_to_voice_ms"] for entry in report["latency"] if entry["voice_to_voice_ms"] is not None]
    median = report["voice_to_voice_ms_median"]
    latency_text = (f"voice-to-voice median {median:.0f} ms (min {min(latencies)}, max {max(latencies)}, "
                    f"n={len(latencies)})" if latencies else "voice-to-voice: no paired replies")
    print(f"\nSummary: {len(report['latency'])} caller turn(s), {counts.get('replies', 0)} bot reply(ies), "
          f"{latency_text}; media sent {counts.get('media_sent', 0)}, received {counts.get('media_received', 0)}; "
          f"marks {counts.get('marks_echoed', 0)} echoed / {counts.get('marks_received', 0)} received; "
          f"clears {counts.get('clears_received', 0)}; violations {counts.get('violations', 0)}; "
          f"max tick lateness {counts.get('max_tick_lateness_ms', 0)} ms; ended by {report['ended_by']}")
