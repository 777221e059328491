"""Audio prompts: real files written with soundfile, converted to the wire formats, and cached."""

import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from audio.codec import ulaw_to_array
from audio.resample import resample
from audio.stream_format import L16, MULAW_8K, StreamFormat
from runtime import prompts
from runtime.prompts import PromptCache, PromptError, load_prompt

L16_24K = StreamFormat(L16, 24000)


def tone(duration_s: float, sample_rate: int, channels: int = 1, hz: float = 440.0) -> np.ndarray:
    """A sine at half scale plus a little noise (float32, frames × channels)."""
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    rng = np.random.default_rng(1)
    mono = (0.5 * np.sin(2 * np.pi * hz * t) + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def write(path, duration_s=2.0, sample_rate=44100, channels=1, **options):
    sf.write(path, tone(duration_s, sample_rate, channels), sample_rate, **options)
    return path


def snr_db(reference: np.ndarray, signal: np.ndarray) -> float:
    reference, signal = reference.astype(np.float64), signal.astype(np.float64)
    return 10 * np.log10(np.sum(reference**2) / np.sum((reference - signal) ** 2))


def test_a_stereo_wav_becomes_mulaw_8k_that_decodes_close_to_the_source(tmp_path):
    path = write(tmp_path / "hold.wav", duration_s=2.0, sample_rate=44100, channels=2, subtype="PCM_16")
    audio = load_prompt(path, MULAW_8K)
    assert len(audio) == 2 * 8000  # 2 s × 8000 samples/s × 1 byte
    source, rate = sf.read(path, dtype="int16", always_2d=True)
    reference = resample(source[:, 0], rate, 8000)  # both channels hold the same tone
    decoded = ulaw_to_array(audio)
    assert snr_db(reference, decoded) > 30  # μ-law's own noise is about 38 dB down at this level


def test_a_flac_becomes_l16_at_24k(tmp_path):
    path = write(tmp_path / "hold.flac", duration_s=1.5, sample_rate=16000)
    audio = load_prompt(path, L16_24K)
    assert len(audio) == round(1.5 * 24000) * 2  # 2 bytes per sample
    decoded = np.frombuffer(audio, dtype="<i2")
    source, rate = sf.read(path, dtype="int16")
    reference = resample(source, rate, 24000)
    assert np.abs(reference.astype(np.int32) - decoded).max() <= 2  # L16: block-wise soxr as one-shot, within a few LSB


def test_a_relative_path_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "prompts").mkdir()
    write(tmp_path / "prompts" / "hold.wav", duration_s=0.5, sample_rate=8000)
    monkeypatch.chdir(tmp_path)
    assert len(load_prompt("prompts/hold.wav", MULAW_8K)) == 4000


@pytest.mark.parametrize("name, content, message", [
    ("missing.wav", None, "prompt file not found: "),
    ("folder", "dir", "prompt path is a directory: "),
    ("notes.wav", b"this is not audio at all", "cannot decode prompt "),
    ("empty.wav", "empty", "holds no audio"),
])
def test_a_file_that_cannot_be_played_is_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content == "empty":
        sf.write(path, np.zeros(0, dtype=np.int16), 8000)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(PromptError, match=message) as raised:
        load_prompt(path, MULAW_8K)
    assert str(tmp_path / name) in str(raised.value)


def test_a_fifo_is_refused_before_anything_reads_it(tmp_path):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(PromptError, match="not a regular file"):
        load_prompt(fifo, MULAW_8K)


def test_a_prompt_longer_than_the_cap_is_refused(tmp_path):
    path = write(tmp_path / "long.wav", duration_s=2.0, sample_rate=8000)
    assert len(load_prompt(path, MULAW_8K, max_s=2)) == 16000
    with pytest.raises(PromptError, match=r"longer than 1\.5 s"):
        load_prompt(path, MULAW_8K, max_s=1.5)
    assert prompts.PROMPT_MAX_S == 600


def test_a_cache_hit_does_not_read_the_file_again(tmp_path, monkeypatch):
    path = write(tmp_path / "hold.wav", duration_s=1.0, sample_rate=22050)
    opened = []
    real = sf.SoundFile
    monkeypatch.setattr(prompts.sf, "SoundFile", lambda *args, **kwargs: opened.append(args) or real(*args, **kwargs))
    cache = PromptCache()
    first = cache.load(path, MULAW_8K)
    began = time.perf_counter()
    second = cache.load(str(path), MULAW_8K)
    hit_s = time.perf_counter() - began
    assert second is first and len(opened) == 1 and (cache.loads, cache.hits) == (1, 1)
    assert hit_s < 0.01  # a stat and a dict look-up
    cache.load(path, L16_24K)  # another stream format: converted once more
    assert len(opened) == 2 and len(cache) == 2


def test_a_file_replaced_on_disk_is_read_again_and_the_old_version_dropped(tmp_path):
    path = write(tmp_path / "hold.wav", duration_s=1.0, sample_rate=8000)
    cache = PromptCache()
    assert len(cache.load(path, MULAW_8K)) == 8000
    write(path, duration_s=0.5, sample_rate=8000)  # another size (and mtime)
    assert len(cache.load(path, MULAW_8K)) == 4000
    assert cache.loads == 2 and len(cache) == 1 and cache.size_bytes == 4000


def test_failures_are_not_cached(tmp_path):
    cache = PromptCache()
    path = tmp_path / "later.wav"
    with pytest.raises(PromptError):
        cache.load(path, MULAW_8K)
    write(path, duration_s=0.25, sample_rate=8000)
    assert len(cache.load(path, MULAW_8K)) == 2000


def test_the_cache_is_bounded_least_recently_used_out_first(tmp_path):
    a, b, c = (write(tmp_path / f"{name}.wav", duration_s=1.0, sample_rate=8000) for name in "abc")
    cache = PromptCache(max_bytes=20000)  # room for two 8000-byte prompts
    cache.load(a, MULAW_8K)
    cache.load(b, MULAW_8K)
    cache.load(a, MULAW_8K)  # a is now the most recently used
    cache.load(c, MULAW_8K)  # b goes
    assert cache.size_bytes == 16000 and cache.loads == 3
    cache.load(a, MULAW_8K)
    assert cache.loads == 3
    cache.load(b, MULAW_8K)
    assert cache.loads == 4
    huge = PromptCache(max_bytes=1000)
    assert len(huge.load(a, MULAW_8K)) == 8000 and len(huge) == 0  # bigger than the whole cache: not kept


def test_concurrent_loads_of_one_prompt_decode_it_once(tmp_path, monkeypatch):
    path = write(tmp_path / "hold.wav", duration_s=1.0, sample_rate=8000)
    decoded = []

    def slow_load(*args, **kwargs):
        decoded.append(args)
        time.sleep(0.2)  # the others arrive while this one decodes
        return real_load(*args, **kwargs)

    real_load = prompts.load_prompt
    monkeypatch.setattr(prompts, "load_prompt", slow_load)
    cache = PromptCache()
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.load(path, MULAW_8K))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(decoded) == 1 and len(results) == 4 and len({id(r) for r in results}) == 1
