import os
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soxr

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.errors import AudioFormatError
from speech.errors import EngineConfigError, RecognitionError
from speech.recognition import (
    GoogleRecognizer,
    SphinxRecognizer,
    WhisperRecognizer,
    make_recognizer,
)
from tests.conftest import online
from tests.phone import CORPUS, phone_corpus, read_mono, reference_text, to_pcm
from tools.wer import normalize_text, word_error_rate

MAX_WER = 0.15


@pytest.fixture(scope="module")
def sphinx():
    recognizer = SphinxRecognizer()
    yield recognizer
    recognizer.close()


@pytest.fixture(scope="module")
def jfk_phone():
    return phone_corpus("jfk.flac")


def _wideband_16k(name: str) -> bytes:
    samples, sample_rate = read_mono(CORPUS / name)
    return to_pcm(soxr.resample(samples, sample_rate, 16000, "HQ"))


def _line(samples: np.ndarray) -> bytes:
    """8 kHz float/int16 samples through the μ-law line."""
    return ulaw_to_pcm16(array_to_ulaw(samples))


@pytest.fixture(scope="module")
def jfk_text(whisper, jfk_phone):
    return whisper.transcribe(jfk_phone, 8000)


def test_whisper_transcribes_jfk_phone_audio(jfk_text):
    assert jfk_text == jfk_text.strip() and jfk_text
    assert word_error_rate(reference_text("jfk.flac"), jfk_text) <= MAX_WER, jfk_text


def test_whisper_transcribes_one_two_three_phone_audio(whisper):
    text = whisper.transcribe(phone_corpus("sr_english.wav"), 8000)
    assert word_error_rate(reference_text("sr_english.wav"), text) <= MAX_WER, text


def test_whisper_transcribes_16k_audio_without_resampling(whisper):
    text = whisper.transcribe(_wideband_16k("sr_english.wav"), 16000)
    assert normalize_text(text) == "one two three", text


_RNG = np.random.default_rng(7)
_T = np.arange(2 * 8000) / 8000


@pytest.mark.parametrize(
    "samples",
    [
        np.zeros(2 * 8000),  # digital silence
        _RNG.standard_normal(2 * 8000) * 10 ** (-50 / 20),  # white noise at -50 dBFS
        0.1 * np.sin(2 * np.pi * 60 * _T),  # mains hum at -20 dBFS
    ],
    ids=["silence", "noise-50dBFS", "hum60Hz"],
)
def test_whisper_returns_empty_text_for_non_speech(whisper, samples):
    assert whisper.transcribe(_line(samples), 8000) == ""


def test_whisper_empty_input_and_bad_input(whisper):
    assert whisper.transcribe(b"", 8000) == ""
    with pytest.raises(AudioFormatError):
        whisper.transcribe(b"\x00\x00\x00", 8000)
    with pytest.raises(AudioFormatError):
        whisper.transcribe(b"\x00\x00", 0)


def test_whisper_concurrent_calls_match_one_call(whisper, jfk_phone, jfk_text):
    start = threading.Barrier(4)

    def call(_):
        start.wait(timeout=10)
        return whisper.transcribe(jfk_phone, 8000)

    with ThreadPoolExecutor(max_workers=4) as pool:
        texts = list(pool.map(call, range(4)))
    assert texts == [jfk_text] * 4


def test_whisper_model_path_must_be_a_directory(tmp_path):
    with pytest.raises(EngineConfigError):
        WhisperRecognizer(model_path=tmp_path / "missing")


def test_whisper_unloadable_model_raises_recognition_error(tmp_path):
    # An empty directory: loading must fail locally (no download attempt) and be wrapped.
    recognizer = WhisperRecognizer(model_path=tmp_path)
    with pytest.raises(RecognitionError, match="whisper"):
        recognizer.warm_up()


def test_sphinx_recognizes_one_two_three(sphinx):
    samples, sample_rate = read_mono(CORPUS / "sr_english.wav")
    text = sphinx.transcribe(to_pcm(samples), sample_rate)  # 44.1 kHz, soxr to 16 kHz inside
    assert normalize_text(text) == "one two three", text


@pytest.fixture(scope="module")
def sphinx_phone_text(sphinx):
    return sphinx.transcribe(phone_corpus("sr_english.wav"), 8000)


def test_sphinx_accepts_8k_phone_audio(sphinx_phone_text):
    # Sphinx is fragile on telephone audio: LSB-level rounding differences in the line
    # simulation turn "one two" into "wanted to" (feasibility §2: WER ≈0.7 on real
    # calls), so only the word it gets reliably is checked.
    assert "three" in normalize_text(sphinx_phone_text).split(), sphinx_phone_text


def test_sphinx_runs_in_another_process(sphinx):
    worker = sphinx.worker_pid()
    assert worker != os.getpid()
    assert sphinx.worker_pid() == worker  # one long-lived worker, not one per call


def test_sphinx_empty_input(sphinx):
    assert sphinx.transcribe(b"", 8000) == ""
    with pytest.raises(AudioFormatError):
        sphinx.transcribe(b"\x00", 8000)


def test_sphinx_close_then_reuse_starts_a_new_worker():
    recognizer = SphinxRecognizer()
    try:
        first = recognizer.worker_pid()
        recognizer.close()
        assert recognizer.worker_pid() not in (first, os.getpid())
    finally:
        recognizer.close()


def test_sphinx_refuses_to_start_its_pool_off_the_main_thread_under_gevent(monkeypatch):
    # Under gevent the pool's helper threads would be greenlets of a threadpool thread
    # and deadlock later calls; a clear error is raised instead. gevent is faked here.
    fake_monkey = types.SimpleNamespace(is_module_patched=lambda name: name == "threading")
    monkeypatch.setitem(sys.modules, "gevent.monkey", fake_monkey)
    recognizer = SphinxRecognizer()
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            with pytest.raises(RecognitionError, match="warm_up"):
                pool.submit(recognizer.worker_pid).result()
        first = recognizer.worker_pid()  # the main thread may start it
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(recognizer.worker_pid).result() == first  # and then threads may use it
    finally:
        recognizer.close()


def test_sphinx_concurrent_calls(sphinx, sphinx_phone_text):
    pcm = phone_corpus("sr_english.wav")
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(lambda _: sphinx.transcribe(pcm, 8000), range(2))) == [sphinx_phone_text] * 2


def test_google_fails_fast_offline():
    if online("www.google.com"):
        pytest.skip("network is reachable; this test checks the offline failure")
    recognizer = GoogleRecognizer(timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(RecognitionError, match="google"):
        recognizer.transcribe(phone_corpus("sr_english.wav"), 8000)
    assert time.monotonic() - started < 10.0


def test_google_flac_encoder_works():
    GoogleRecognizer().warm_up()  # raises RecognitionError if SR's flac binary cannot run


def test_make_recognizer_builds_engines_without_loading():
    assert make_recognizer("whisper", beam_size=2).name == "whisper"
    assert make_recognizer("sphinx").name == "sphinx"
    assert make_recognizer("google", key="k", timeout_s=1.0).name == "google"


def test_make_recognizer_rejects_unknown_engine_and_options():
    with pytest.raises(EngineConfigError, match="'google', 'sphinx', 'whisper'"):
        make_recognizer("vosk")
    with pytest.raises(EngineConfigError):
        make_recognizer("sphinx", beam_size=2)
    with pytest.raises(EngineConfigError):
        make_recognizer("whisper", beam_size=0)
