import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soxr

from audio.codec import array_to_ulaw, ulaw_to_pcm16
from audio.errors import AudioFormatError
from speech.errors import EngineConfigError, RecognitionError
from speech.recognition import (
    GoogleRecognizer,
    WhisperRecognizer,
    make_recognizer,
)
from tests.conftest import online
from tests.phone import CORPUS, phone_corpus, read_mono, reference_text, to_pcm
from tools.wer import normalize_text, word_error_rate

MAX_WER = 0.15


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


def _jfk_phrases(jfk_phone: bytes) -> list[bytes]:
    """jfk.flac on the phone line, cut in its pauses into four phrases (1.9–3.2 s)."""
    cuts_s = [(0.0, 2.6), (2.9, 4.8), (4.8, 7.8), (7.8, 11.0)]
    return [jfk_phone[int(a * 8000) * 2 : int(b * 8000) * 2] for a, b in cuts_s]


def test_whisper_default_runs_on_two_engine_threads_each_getting_its_own_text(jfk_phone):
    recognizer = WhisperRecognizer()
    try:
        assert recognizer.num_workers == 2
        recognizer.warm_up()
        pcms = [phone_corpus("sr_english.wav"), *_jfk_phrases(jfk_phone)]
        alone = [recognizer.transcribe(pcm, 8000) for pcm in pcms]
        with ThreadPoolExecutor(max_workers=len(pcms)) as pool:
            texts = list(pool.map(lambda pcm: recognizer.transcribe(pcm, 8000), pcms))
        assert texts == alone and all(alone)
    finally:
        recognizer.close()


def test_whisper_decode_failure_fails_only_that_call(whisper, monkeypatch):
    # The model's own transcribe is made to fail once (a fake inside this unit test):
    # the caller gets a RecognitionError, the engine thread lives on for the next call.
    model = whisper.model()
    real = model.transcribe
    calls = []

    def fail_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("decoder broke")
        return real(*args, **kwargs)

    monkeypatch.setattr(model, "transcribe", fail_once)
    pcm = phone_corpus("sr_english.wav")
    with pytest.raises(RecognitionError, match="whisper: transcription failed.*decoder broke"):
        whisper.transcribe(pcm, 8000)
    assert normalize_text(whisper.transcribe(pcm, 8000)) == "one two three"


def test_whisper_long_utterance_is_transcribed_whole(whisper, jfk_phone):
    # Over 30 s (one whisper window): faster-whisper decodes it window by window, all
    # of it. (Not compared word for word: the repeated speech triggers whisper's
    # temperature fallback, which samples.)
    text = whisper.transcribe(jfk_phone * 3, 8000)
    assert normalize_text(text).endswith("what you can do for your country"), text  # said after 30 s


def test_whisper_load_runs_numpy_blas_on_one_thread(whisper):
    # OpenBLAS's spinning idle threads slowed every transcription ≈20 % (speech/recognition.py).
    from threadpoolctl import threadpool_info

    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    assert blas and all(info["num_threads"] == 1 for info in blas), blas


def test_whisper_cpu_threads_default_is_the_usable_cores_up_to_four():
    cores = len(os.sched_getaffinity(0))
    assert WhisperRecognizer().cpu_threads == max(1, min(4, cores))
    assert WhisperRecognizer(cpu_threads=3).cpu_threads == 3


GEVENT_WHISPER_SCRIPT = """
from gevent import monkey
monkey.patch_all()

import json, sys, time
import gevent
sys.path.insert(0, sys.argv[1])
from speech.recognition import WhisperRecognizer
from tests.hub_ticker import start_ticker
from tests.phone import phone_corpus

recognizer = WhisperRecognizer()
recognizer.warm_up()  # on the main (hub) thread, as create_app does
jfk, short = phone_corpus("jfk.flac"), phone_corpus("sr_english.wav")
alone = [recognizer.transcribe(jfk, 8000), recognizer.transcribe(short, 8000)]
gaps = []
tick = start_ticker(gaps)
pool = gevent.get_hub().threadpool
jobs = [pool.spawn(recognizer.transcribe, pcm, 8000) for pcm in (jfk, short, jfk, short)]
texts = [job.get(timeout=60) for job in jobs]
tick.kill()
recognizer.close()
print(json.dumps({"ok": texts == alone * 2, "texts": texts, "max_gap_s": max(gaps)}))
"""


def test_whisper_under_gevent_threadpool_keeps_the_hub_running():
    repo = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", GEVENT_WHISPER_SCRIPT, str(repo)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["ok"], report["texts"]
    assert report["max_gap_s"] < 0.3, report  # a decode on the hub would stall it ≥ 0.3 s


def test_whisper_model_path_must_be_a_directory(tmp_path):
    with pytest.raises(EngineConfigError):
        WhisperRecognizer(model_path=tmp_path / "missing")


def test_whisper_unloadable_model_raises_recognition_error(tmp_path):
    # An empty directory: loading must fail locally (no download attempt) and be wrapped.
    recognizer = WhisperRecognizer(model_path=tmp_path)
    with pytest.raises(RecognitionError, match="whisper"):
        recognizer.warm_up()


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
    assert make_recognizer("google", key="k", timeout_s=1.0).name == "google"


def test_make_recognizer_rejects_unknown_engine_and_options():
    with pytest.raises(EngineConfigError, match="'google', 'openai', 'whisper'"):
        make_recognizer("sphinx")  # removed: pocketsphinx's WER was ≈0.7 on phone speech
    with pytest.raises(EngineConfigError):
        make_recognizer("google", beam_size=2)
    with pytest.raises(EngineConfigError):
        make_recognizer("whisper", beam_size=0)
    with pytest.raises(EngineConfigError):
        make_recognizer("whisper", batch_max=8)  # removed: batching did not pay on a CPU
    with pytest.raises(EngineConfigError):
        make_recognizer("whisper", num_workers=0)


class _FakeWhisperModel:
    """Stands in for ``WhisperModel`` (no decoding): every run of non-zero samples is one word, "w<value × 10>.".

    With ``word_timestamps`` it returns one segment per word, with the word's times; without,
    one segment with all the words. ``gate`` holds every call until it is set; ``temperature``
    is what the segments report.
    """

    def __init__(self):
        self.calls = []  # (seconds of audio, word_timestamps)
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.temperature = 0.0

    def transcribe(self, samples, **options):
        from types import SimpleNamespace

        words_wanted = options.get("word_timestamps", False)
        self.calls.append((samples.size / 16000, words_wanted))
        self.started.set()
        assert self.gate.wait(10)
        loud = np.concatenate([[False], samples != 0, [False]])
        edges = np.flatnonzero(loud[1:] != loud[:-1]).reshape(-1, 2)
        words = [SimpleNamespace(start=a / 16000, end=b / 16000, word=f" w{round(float(samples[a]) * 10)}.") for a, b in edges]
        if not words_wanted:
            return iter([SimpleNamespace(text="".join(w.word for w in words), temperature=0.0, seek=0)]), None
        return iter([SimpleNamespace(text=w.word, words=[w], temperature=self.temperature, seek=0) for w in words]), None


def _fake_packing_recognizer(**options):
    recognizer = WhisperRecognizer(num_workers=1, packing=True, **options)
    recognizer._model = _FakeWhisperModel()  # model() returns it: nothing is loaded
    return recognizer, recognizer._model


def _utterance_pcm(value: float, duration_s: float) -> bytes:
    """16 kHz PCM16 of a constant level (the fake model's "word" value × 10 is its text)."""
    return (np.full(int(duration_s * 16000), value * 32768, dtype="<i2")).tobytes()


def _transcribe_while_busy(recognizer, model, pcms):
    """Transcribe pcms[0], then the others from threads while pcms[0] is still being decoded."""
    model.gate.clear()
    with ThreadPoolExecutor(max_workers=len(pcms)) as pool:
        futures = [pool.submit(recognizer.transcribe, pcms[0], 16000)]
        assert model.started.wait(5)
        futures += [pool.submit(recognizer.transcribe, pcm, 16000) for pcm in pcms[1:]]
        deadline = time.monotonic() + 5
        while recognizer._queue.queued < len(pcms) - 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        model.gate.set()
        return [future.result(10) for future in futures]


def test_whisper_packing_decodes_the_utterances_queued_behind_a_busy_engine_in_one_window():
    recognizer, model = _fake_packing_recognizer()
    try:
        pcms = [_utterance_pcm(v, 1.5) for v in (0.1, 0.2, 0.3, 0.4)]
        assert _transcribe_while_busy(recognizer, model, pcms) == ["w1.", "w2.", "w3.", "w4."]
        # the first alone (nothing was queued), the other three in one 1.5 * 3 + 2 * 2 = 8.5 s window
        assert model.calls == [(1.5, False), (8.5, True)]
        assert (recognizer.packs, recognizer.packed_utterances, recognizer.unpacked_utterances) == (1, 3, 0)
    finally:
        recognizer.close()


def test_whisper_packing_falls_back_to_one_decode_each_when_in_doubt():
    recognizer, model = _fake_packing_recognizer()
    model.temperature = 0.2  # whisper's temperature fallback sampled: not what a single run gives
    try:
        pcms = [_utterance_pcm(v, 1.0) for v in (0.1, 0.2, 0.3)]
        assert _transcribe_while_busy(recognizer, model, pcms) == ["w1.", "w2.", "w3."]
        assert model.calls == [(1.0, False), (4.0, True), (1.0, False), (1.0, False)]
        assert (recognizer.packs, recognizer.packed_utterances, recognizer.unpacked_utterances) == (1, 0, 2)
    finally:
        recognizer.close()


def test_whisper_packing_puts_only_what_fits_in_30_s_in_one_window():
    recognizer, model = _fake_packing_recognizer()
    try:
        pcms = [_utterance_pcm(v, 14.0) for v in (0.1, 0.2, 0.3, 0.4)]
        assert _transcribe_while_busy(recognizer, model, pcms) == ["w1.", "w2.", "w3.", "w4."]
        assert model.calls == [(14.0, False), (30.0, True), (14.0, False)]  # 14 + 2 + 14 s, then the fourth alone
    finally:
        recognizer.close()


def test_whisper_without_packing_decodes_queued_utterances_one_by_one():
    recognizer = WhisperRecognizer(num_workers=1)
    recognizer._model = model = _FakeWhisperModel()
    try:
        pcms = [_utterance_pcm(v, 1.0) for v in (0.1, 0.2, 0.3)]
        assert _transcribe_while_busy(recognizer, model, pcms) == ["w1.", "w2.", "w3."]
        assert model.calls == [(1.0, False)] * 3
    finally:
        recognizer.close()


def test_whisper_packing_gap_must_be_positive():
    with pytest.raises(EngineConfigError, match="packing_gap_s"):
        WhisperRecognizer(packing=True, packing_gap_s=0)
