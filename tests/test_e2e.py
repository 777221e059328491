"""End to end: the real server, the real default engines, callsim playing Twilio, real speech.

Slow (real time: each call lasts as long as its audio plus the bot's replies). Marked ``e2e``.
"""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf

from tools.wer import normalize_text, word_error_rate

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
JFK = CORPUS / "jfk.flac"
ONE_TWO_THREE = REPO / "tests" / "data" / "sr_english.wav"
GREETING = "Hello! Say something and I will repeat it."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: list[str], log_path: Path, port: int):
    """Start a server process with ``PORT=port``; return it once ``GET /`` answers 200."""
    env = {**os.environ, "PORT": str(port), "LOG_LEVEL": "info", "GREETING": GREETING}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's gunicorn
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(url + "/", timeout=1).status_code == 200:
                break
        except requests.RequestException:  # refused, or accepted but the worker is still loading
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return process, url


def stop_server(process) -> None:
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` as a user runs it, on a free port."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_server([sys.executable, "app.py"], log_path, free_port())
    yield url
    stop_server(process)
    print(f"\nserver log: {log_path}")


def run_callsim(tmp_path, *script, url=None, timeout_s=240):
    report_path, heard_path = tmp_path / "report.json", tmp_path / "heard.wav"
    command = [sys.executable, "tools/callsim.py", "--json", str(report_path), "--out", str(heard_path), "--strict"]
    if url:
        command += ["--url", url]
    result = subprocess.run(command + [str(item) for item in script], cwd=REPO, capture_output=True, text=True, timeout=timeout_s)
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["violations"] == [] and report["counts"]["violations"] == 0
    return report, heard_path


def turns(report, speaker):
    return [t for t in report["call"]["turns"] if t["speaker"] == speaker]


def heard_text(recognizer, heard_path) -> str:
    samples, sample_rate = sf.read(heard_path, dtype="int16")
    assert sample_rate == 8000
    # Recognize the heard timeline piece by piece (whisper works on ≤ 30 s windows), cut in silences.
    voiced = np.abs(samples.astype(np.int32)) > 200
    pieces, start, quiet = [], None, 0
    for index in range(0, len(samples), 160):
        loud = voiced[index : index + 160].any()
        if loud and start is None:
            start = index
        quiet = 0 if loud else quiet + 1
        if start is not None and quiet >= 40:  # 0.8 s of silence ends a piece
            pieces.append(samples[start:index])
            start = None
    if start is not None:
        pieces.append(samples[start:])
    return " ".join(recognizer.transcribe(piece.tobytes(), 8000) for piece in pieces)


def test_jfk_call_transcribes_and_the_caller_hears_the_echo(server, whisper, tmp_path):
    report, heard_path = run_callsim(tmp_path, JFK, url=server)
    reference = (CORPUS / "jfk.txt").read_text()
    callers = turns(report, "caller")
    transcript = " ".join(t["text"] for t in callers)
    wer = word_error_rate(reference, transcript)
    print(f"caller transcript WER {wer:.3f}: {transcript!r}")
    assert wer <= 0.15

    bots = turns(report, "bot")
    assert bots[0]["text"] == GREETING
    assert [b["text"] for b in bots[1:]] == [f"You said: {c['text']}" for c in callers]
    assert all(b["end_ms"] is not None and b["end_ms"] > b["start_ms"] for b in bots)
    counts = report["counts"]
    assert counts["marks_received"] >= len(bots) and counts["marks_echoed"] == counts["marks_received"]
    assert counts["clears_received"] == 0

    expected_heard = " ".join(b["text"] for b in bots)
    heard = heard_text(whisper, heard_path)  # our own recognizer checks what the caller heard
    heard_wer = word_error_rate(expected_heard, heard)
    print(f"heard WER {heard_wer:.3f}: {heard!r}")
    assert heard_wer <= 0.2
    assert normalize_text(reference).split()[-4:] == normalize_text(heard).split()[-4:]  # "...for your country"

    latencies = [entry["voice_to_voice_ms"] for entry in report["latency"]]
    print(f"voice-to-voice ms: {latencies}")
    assert latencies and all(value is not None and 0 < value < 10_000 for value in latencies)


def test_in_process_call_with_dtmf_and_barge_in(tmp_path):
    # callsim without --url starts the app itself. Script: "one two three", keys 4 2 #, then JFK, and
    # while the bot is reading JFK back the caller talks over it after 1.5 s.
    report, heard_path = run_callsim(tmp_path, ONE_TWO_THREE, "dtmf:42#", JFK, "interrupt:1.5", ONE_TWO_THREE)
    callers = turns(report, "caller")
    spoken = [t for t in callers if "dtmf" not in t]
    assert [t["dtmf"] for t in callers if "dtmf" in t] == ["42#"]
    assert word_error_rate("one two three", spoken[0]["text"]) == 0
    assert word_error_rate((CORPUS / "jfk.txt").read_text(), spoken[1]["text"]) <= 0.15
    assert word_error_rate("one two three", spoken[-1]["text"]) == 0

    bots = turns(report, "bot")
    assert "You pressed 4 2 #." in [b["text"] for b in bots]
    interrupted = [b for b in bots if b.get("interrupted")]
    assert len(interrupted) == 1 and interrupted[0]["text"].startswith("You said: And so my fellow")
    assert report["counts"]["clears_received"] == 1
    # The barge-in cut the long reply short: it ended within about 2.5 s of starting (1.5 s + VAD start + margin).
    assert interrupted[0]["end_ms"] - interrupted[0]["start_ms"] < 3000
    assert bots[-1]["text"].lower().startswith("you said") and word_error_rate("you said one two three", bots[-1]["text"]) == 0


def test_procfile_command_serves_a_call_under_gunicorn(tmp_path, whisper):
    # The PaaS runs the Procfile's web command with $PORT set: gunicorn's gevent worker + flask-sock.
    web = next(line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:"))
    port = free_port()
    command = ["bash", "-c", "exec " + web.removeprefix("web:").strip()]
    process, url = start_server(command, tmp_path / "gunicorn.log", port)
    try:
        report, heard_path = run_callsim(tmp_path, ONE_TWO_THREE, url=url)
    finally:
        stop_server(process)
    callers = turns(report, "caller")
    assert len(callers) == 1 and word_error_rate("one two three", callers[0]["text"]) == 0
    assert word_error_rate(f"{GREETING} you said one two three", heard_text(whisper, heard_path)) <= 0.2
    assert "gevent" in (tmp_path / "gunicorn.log").read_text()  # the gevent worker class was used
