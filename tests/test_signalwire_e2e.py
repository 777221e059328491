"""End to end as SignalWire: the real server in-process, callsim --signalwire, real speech.

SignalWire's cXML ``<Stream>`` differs from Twilio's in small ways (protocol.md §9): UUID SIDs,
``connected`` version "0.2.0", ``start`` without a top-level streamSid or empty customParameters,
``media`` without streamSid, ``dtmf`` with a duration and no track, mark echoes without
sequenceNumber, a bare ``stop``. Without a ``codec`` the audio is μ-law 8 kHz, as on Twilio, so
the server must serve such a call unchanged. With ``codec="L16@16000h"``/``"L16@24000h"`` the
audio is 16-bit little-endian PCM at 16/24 kHz both ways (``test_l16_call…``; callsim's ``--codec``
asks for it when the server's TwiML names no codec).

Slow (real time). Marked ``e2e``.
"""

import re

import numpy as np
import pytest
import soundfile as sf

from tests.test_e2e import GREETING, ONE_TWO_THREE, run_callsim, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def heard_text(recognizer, heard_path) -> str:
    """Recognize what the caller heard (a WAV at the stream's rate), piece by piece, cut in 0.8 s silences."""
    samples, sample_rate = sf.read(heard_path, dtype="int16")
    frame = sample_rate // 50  # 20 ms
    voiced = np.abs(samples.astype(np.int32)) > 200
    pieces, start, quiet = [], None, 0
    for index in range(0, len(samples), frame):
        loud = voiced[index:index + frame].any()
        if loud and start is None:
            start = index
        quiet = 0 if loud else quiet + 1
        if start is not None and quiet >= 40:
            pieces.append(samples[start:index])
            start = None
    if start is not None:
        pieces.append(samples[start:])
    return " ".join(recognizer.transcribe(piece.tobytes(), sample_rate) for piece in pieces)


def check_conversation(report, whisper, heard_path, sample_rate):
    """The caller's "one two three" and keys 4 2 # reach the bot, which greets, echoes and names the keys;
    the caller hears all three."""
    assert report["dialect"] == "signalwire"
    assert UUID.fullmatch(report["call_sid"]) and UUID.fullmatch(report["stream_sid"])
    assert report["media_format"]["sample_rate"] == sample_rate
    callers = turns(report, "caller")
    spoken = [t for t in callers if "dtmf" not in t]
    assert len(spoken) == 1 and word_error_rate("one two three", spoken[0]["text"]) == 0
    assert [t["dtmf"] for t in callers if "dtmf" in t] == ["42#"]  # dtmf{duration, digit}, no track
    bots = [b["text"] for b in turns(report, "bot")]
    assert bots == [GREETING, f"You said: {spoken[0]['text']}", "You pressed 4 2 #."]
    counts = report["counts"]
    assert counts["marks_received"] >= len(bots) and counts["marks_echoed"] == counts["marks_received"]
    assert sf.info(str(heard_path)).samplerate == sample_rate
    heard = heard_text(whisper, heard_path)
    print(f"heard: {heard!r}")
    # 2 of these 18 words are always misheard ("four two" → "for to"); 0.25 allows 2 more, and a missing reply
    # (at least 5 words) still fails.
    assert word_error_rate(f"{GREETING} you said one two three you pressed four two hash", heard) <= 0.25


def test_signalwire_fork_transcribes_both_parties(tmp_path, monkeypatch):
    # A listen-only <Start><Stream track="both_tracks"> fork: media on both tracks without streamSid, bare stop,
    # status callbacks with UUID SIDs.
    monkeypatch.setenv("FORWARD_TO", "+15557654321")
    report, _ = run_callsim(tmp_path, "--signalwire", ONE_TWO_THREE, f"callee:{ONE_TWO_THREE}", fork=True)
    assert report["mode"] == "fork" and report["dialect"] == "signalwire"
    assert report["counts"]["media_received"] == 0
    call = report["call"]
    assert [entry["event"] for entry in report["status_callbacks"]] == ["stream-started", "stream-stopped"]
    assert not any(entry["failed"] for entry in report["status_callbacks"])
    for speaker in ("caller", "callee"):
        said = " ".join(t["text"] for t in turns({"call": call}, speaker))
        assert word_error_rate("one two three", said) == 0, (speaker, said)


@pytest.mark.parametrize("codec, sample_rate", [("L16@24000h", 24000)])  # 16 kHz: the signed test below
def test_l16_call_transcribes_and_the_caller_hears_the_echo(codec, sample_rate, whisper, tmp_path):
    # --codec applies when the server's TwiML names no codec; a TwiML codec wins (the report says which).
    report, heard_path = run_callsim(tmp_path, "--signalwire", "--codec", codec, "--turn-timeout-s", "10",
                                     ONE_TWO_THREE, "dtmf:42#")
    assert report["media_format"] == {"encoding": "audio/x-L16", "sample_rate": sample_rate, "codec": codec}
    check_conversation(report, whisper, heard_path, sample_rate)


def test_signed_signalwire_call_in_the_servers_l16_at_16k(whisper, tmp_path, monkeypatch):
    # The server's own choice: SIGNALWIRE_CODEC puts codec="L16@16000h" in the TwiML it answers SignalWire
    # with, and with a signing key an authBearerToken, which callsim sends back on the (unsigned) upgrade.
    monkeypatch.setenv("SIGNALWIRE_SIGNING_KEY", "PSK_test_key")
    monkeypatch.setenv("SIGNALWIRE_CODEC", "L16@16000h")
    report, heard_path = run_callsim(tmp_path, "--signalwire", "--signing-key", "PSK_test_key", ONE_TWO_THREE, "dtmf:42#")
    assert report["media_format"] == {"encoding": "audio/x-L16", "sample_rate": 16000, "codec": "L16@16000h"}
    check_conversation(report, whisper, heard_path, 16000)
    [inbound] = (tmp_path / "recordings").glob("*/inbound.wav")
    info = sf.info(str(inbound))
    assert (info.samplerate, info.subtype) == (16000, "PCM_16")  # recorded as it came, wideband
