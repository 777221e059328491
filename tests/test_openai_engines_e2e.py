"""End to end with the engines as services: ``python app.py`` with ``RECOGNIZER=openai`` and
``SYNTHESIZER=openai`` pointed at tests/engine_server.py (real whisper and piper behind a real
HTTP socket), callsim playing Twilio with real speech."""

import sys

import pytest

from speech.synthesis import PiperSynthesizer
from tests.engine_server import EngineServer
from tests.test_e2e import CORPUS, GREETING, JFK, free_port, run_callsim, start_server, stop_server, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e


def test_a_call_with_recognition_and_synthesis_over_http(whisper, tmp_path):
    piper = PiperSynthesizer()
    piper.warm_up()  # else the greeting's first request waits for the voice to load, and the caller talks over it
    with EngineServer(whisper.transcribe, piper) as engines:
        process, url = start_server(
            [sys.executable, "app.py"], tmp_path / "server.log", free_port(),
            RECOGNIZER="openai", RECOGNIZER_BASE_URL=engines.url, RECOGNIZER_MODEL="tiny.en",
            RECOGNIZER_API_KEY="sk-e2e-secret", SYNTHESIZER="openai", SYNTHESIZER_BASE_URL=engines.url,
            SYNTHESIZER_MODEL="piper-joe", SYNTHESIZER_VOICE="joe",
        )
        try:
            report, _ = run_callsim(tmp_path, JFK, url=url)
        finally:
            stop_server(process)
        log = (tmp_path / "server.log").read_text()
    print(f"engine server requests: {engines.count('/v1/audio/transcriptions')} transcriptions, "
          f"{engines.count('/v1/audio/speech')} speech")

    callers = turns(report, "caller")
    transcript = " ".join(t["text"] for t in callers)
    wer = word_error_rate((CORPUS / "jfk.txt").read_text(), transcript)
    print(f"caller transcript WER {wer:.3f}: {transcript!r}")
    assert wer <= 0.25

    # Recognition really went over HTTP: one request per utterance transcribed (speculative ones too).
    transcriptions = [r for r in engines.requests if r["path"] == "/v1/audio/transcriptions"]
    assert len(transcriptions) >= len(callers) >= 1
    assert all(r["fields"]["model"] == "tiny.en" and r["headers"]["authorization"] == "Bearer sk-e2e-secret"
               for r in transcriptions)
    # The greeting and the replies were synthesized over HTTP, in the server's voice, and heard.
    speech = [r["json"] for r in engines.requests if r["path"] == "/v1/audio/speech"]
    assert speech[0] == {"model": "piper-joe", "input": GREETING, "voice": "joe", "response_format": "pcm"}
    bots = turns(report, "bot")
    assert bots[0]["text"] == GREETING
    assert [b["text"] for b in bots[1:]] == [f"You said: {c['text']}" for c in callers]
    assert all(b["end_ms"] is not None and b["end_ms"] > b["start_ms"] for b in bots)  # their audio played
    assert len(speech) >= len(bots)
    assert report["counts"]["marks_received"] >= len(bots)
    latencies = [entry["voice_to_voice_ms"] for entry in report["latency"]]
    print(f"voice-to-voice ms: {latencies}")
    assert latencies and all(value is not None and 0 < value < 10_000 for value in latencies)
    # No engine failed (no piper fallback, no apology), and the key is in no log line.
    assert "synthesis failed" not in log and "recognition failed" not in log
    assert "sk-e2e-secret" not in log
