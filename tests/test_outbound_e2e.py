"""End to end, outbound: the real server places calls through its REST client to callsim's stand-in of
Twilio's REST API (a real HTTP server), callsim answers them as a person or a voicemail over a real
WebSocket with real speech, and plays Twilio's callbacks (call progress, answering-machine detection)
and its side of a transfer (the REST update's <Dial>)."""

import json
import subprocess
import sys

import pytest

from tests.test_e2e import ONE_TWO_THREE, REPO, free_port, heard_text, start_server, stop_server, turns

pytestmark = pytest.mark.e2e

ACCOUNT_SID = "AC" + "5" * 32
TOKEN = "e2e-auth-token"
OURS = "+15550100"
FRONT_DESK = "+15550123"
REMINDER = "examples.appointment_reminder:respond"
GREETING = ("Hi Ann, this is Harbour Clinic with a reminder of your appointment on Tuesday at 3 pm. "
            "Press 1 to confirm, or 0 to talk to the front desk.")
VOICEMAIL_GREETING = REPO / "tests" / "data" / "librivox_ss01_0880.flac"  # 3.0 s of a stranger's voice
VOICEMAIL_GREETING_MS = 3000 + 500  # and the beep callsim adds


@pytest.fixture(scope="module")
def outbound_server(tmp_path_factory):
    """``python app.py`` with Twilio credentials, its REST API pointed at callsim's stand-in (on ``api_port``)."""
    directory = tmp_path_factory.mktemp("outbound")
    port, api_port = free_port(), free_port()
    process, url = start_server(
        [sys.executable, "app.py"], directory / "server.log", port, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=TOKEN, TWILIO_API_BASE_URL=f"http://127.0.0.1:{api_port}", PUBLIC_URL=f"http://127.0.0.1:{port}",
        TWILIO_PHONE_NUMBER=OURS, OUTBOUND_RESPONDERS=REMINDER, FRONT_DESK_NUMBER=FRONT_DESK)
    yield url, api_port
    stop_server(process)
    print(f"\nserver log: {directory / 'server.log'}")


def answered_call(tmp_path, outbound_server, callsim_args, call_args):
    """Start callsim answering, place the call with ``tools/call.py``; return callsim's report and heard.wav."""
    url, api_port = outbound_server
    report_path, heard_path = tmp_path / "report.json", tmp_path / "heard.wav"
    callsim = subprocess.Popen(
        [sys.executable, "tools/callsim.py", "--url", url, "--answer", "--api-port", str(api_port), "--auth-token", TOKEN,
         "--account-sid", ACCOUNT_SID, "--json", str(report_path), "--out", str(heard_path), "--strict", *callsim_args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        placed = None
        for _ in range(50):  # until callsim's stand-in listens
            placed = subprocess.run([sys.executable, "tools/call.py", "--url", url, "+15550199", *call_args],
                                    cwd=REPO, capture_output=True, text=True, timeout=60)
            if placed.returncode == 0 or "could not be reached" not in placed.stderr:
                break
            subprocess.run([sys.executable, "-c", "import time; time.sleep(0.2)"])
        assert placed.returncode == 0, placed.stderr
        call_sid = json.loads(placed.stdout)["call_sid"]
        output, _ = callsim.communicate(timeout=180)
    finally:
        callsim.kill()
    print(output[-4000:])
    assert callsim.returncode == 0, output[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["counts"]["violations"] == 0 and report["call_sid"] == call_sid
    return report, heard_path


def test_a_person_answers_hears_the_greeting_after_detection_and_is_transferred(outbound_server, whisper, tmp_path):
    report, heard_path = answered_call(
        tmp_path, outbound_server, [str(ONE_TWO_THREE), "dtmf:0"],
        ["--responder", REMINDER, "--greeting", GREETING, "--param", "when=Tuesday at 3 pm"])
    call = report["call"]
    assert (call["direction"], call["answered_by"], call["transferred_to"]) == ("outbound", "human", FRONT_DESK)
    assert report["direction"] == "outbound" and report["answered_by"] == "human"
    # The person's "one two three" was recorded, then nothing was said until the detection answered.
    spoken_end_ms = report["spoken"][0]["end_ms"]
    first_reply_ms = report["replies"][0]["arrival_ms"]
    assert first_reply_ms >= spoken_end_ms + 1200  # callsim's detection: 1.2 s of silence after the first words
    bots = turns(report, "bot")
    assert [b["text"] for b in bots] == [GREETING, "Connecting you to the front desk now."]
    # The announcement was heard to its end, then the REST update replaced the TwiML with <Dial>.
    assert bots[1]["end_ms"] is not None and report["counts"]["marks_echoed"] == report["counts"]["marks_received"]
    [transfer] = report["transfers"]
    assert transfer["dial"] == [FRONT_DESK] and report["ended_by"] == "platform"
    heard = heard_text(whisper, heard_path).lower()
    assert "harbour clinic" in heard.replace("harbor", "harbour") and "front desk" in heard
    events = [e["event"] for e in call["status_events"]]
    assert events[:3] == ["call-initiated", "call-ringing", "call-in-progress"] and "answered-by" in events


def test_a_voicemail_gets_the_message_after_the_beep_and_nothing_over_its_greeting(outbound_server, whisper, tmp_path):
    report, heard_path = answered_call(
        tmp_path, outbound_server, ["--voicemail", str(VOICEMAIL_GREETING)],
        ["--responder", REMINDER, "--param", "name=Ann", "--param", "when=Tuesday at 3 pm"])
    call = report["call"]
    assert (call["direction"], call["answered_by"]) == ("outbound", "machine_end_beep")
    [reply] = report["replies"]
    assert reply["arrival_ms"] >= report["first_timestamp_ms"] + VOICEMAIL_GREETING_MS  # not a word over the greeting
    [bot] = turns(report, "bot")
    assert bot["text"].startswith("Hello Ann, this is Harbour Clinic") and "Tuesday at 3 pm" in bot["text"]
    assert report["ended_by"] == "server" and call["ended_at"]  # the message, then the hang-up
    heard = heard_text(whisper, heard_path).lower().replace("harbor", "harbour")
    assert "harbour clinic" in heard and "tuesday" in heard and "goodbye" in heard
