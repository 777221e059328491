"""Tests for tools/twilio_sim/audio_files.py, on real speech from the corpus."""

import wave
from pathlib import Path

import soundfile

from tools.twilio_sim.audio_files import load_audio_ulaw, ulaw_to_pcm, write_wav

CORPUS = Path(__file__).resolve().parent / "data"


def test_load_audio_ulaw_converts_real_speech_to_8k_mono():
    path = CORPUS / "jfk.flac"  # 44.1 kHz stereo
    info = soundfile.info(str(path))
    ulaw = load_audio_ulaw(str(path))
    assert abs(len(ulaw) - info.duration * 8000) <= 2
    pcm = ulaw_to_pcm(ulaw)
    assert len(pcm) == 2 * len(ulaw)
    import numpy as np

    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples ** 2)) > 300  # speech, not silence


def test_write_wav_round_trips(tmp_path):
    pcm = ulaw_to_pcm(bytes(range(256)))
    out = tmp_path / "heard.wav"
    write_wav(str(out), pcm)
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == pcm
