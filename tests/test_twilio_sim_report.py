"""Tests for tools/twilio_sim/report.py (pure apart from printing)."""

from tools.twilio_sim.report import CallOutcome, build_report, print_summary, spoken_entries
from tools.twilio_sim.script import SpokenItem, parse_script
from tools.twilio_sim.twiml import parse_twiml

FORK_TWIML = ('<Response><Start><Stream url="wss://h/media-stream" track="both_tracks" '
              'statusCallback="https://h/stream-status"/></Start><Dial>+15557654321</Dial></Response>')


def test_spoken_entries_put_items_on_the_media_clock():
    spoken = [SpokenItem("inbound", 0, "q.wav", 0, 1234), SpokenItem("outbound", 2, "callee:a.wav", 107, 2000)]
    assert spoken_entries(spoken, first_timestamp_ms=52) == [
        {"track": "inbound", "speaker": "caller", "item": "q.wav", "index": 0, "start_ms": 52, "end_ms": 1286},
        {"track": "outbound", "speaker": "callee", "item": "callee:a.wav", "index": 2,
         "start_ms": 52 + 107 * 20, "end_ms": 52 + 107 * 20 + 2000},
    ]


def test_fork_report_without_a_stream_has_mode_tracks_callbacks_and_errors(capsys):
    items = parse_script(["q.wav", "callee:a.wav"], fork=True)
    outcome = CallOutcome("CA1", "AC1", "MZ1", items, 20, base_url="http://h", mode="fork",
                          twiml=parse_twiml(FORK_TWIML, fork=True))
    outcome.status_callbacks = [{"event": "stream-error", "method": "POST", "url": "http://h/stream-status",
                                 "status_code": 500, "error": None, "failed": True}]
    outcome.errors.append("WebSocket connection failed")
    report = build_report(outcome)
    assert (report["mode"], report["tracks"], report["spoken"], report["latency"]) == (
        "fork", ["inbound", "outbound"], [], [])
    assert report["twiml"]["verb"] == "Start" and report["twiml"]["dial"] == ["+15557654321"]
    assert report["twiml"]["status_callback"] == "https://h/stream-status"
    assert report["status_callbacks"][0]["status_code"] == 500
    assert report["script"] == ["q.wav", "callee:a.wav"]
    assert report["ok"] is False
    report["counts"] = {"media_sent": 10, "media_sent_inbound": 5, "media_sent_outbound": 5}
    print_summary(report)
    line = capsys.readouterr().out
    assert "fork" in line and "inbound 5, outbound 5" in line and "stream-error 500" in line


def test_conversation_report_defaults():
    report = build_report(CallOutcome("CA1", "AC1", "MZ1", parse_script(["q.wav"]), 20))
    assert (report["mode"], report["tracks"], report["status_callbacks"], report["twiml"], report["ok"]) == (
        "conversation", [], [], None, True)
