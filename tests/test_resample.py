"""Tests for audio.resample: soxr one-shot and streaming resampling."""

import numpy as np
import pytest

from audio.errors import AudioFormatError
from audio.resample import StreamResampler, resample


def tone(frequency_hz: float, sample_rate: int, duration_s: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    """A sine as float64 in [-1, 1]."""
    t = np.arange(int(sample_rate * duration_s)) / sample_rate
    return amplitude * np.sin(2 * np.pi * frequency_hz * t)


def to_int16(samples: np.ndarray) -> np.ndarray:
    return np.rint(samples * 32767).astype(np.int16)


def steady(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop 100 ms at each end (filter edges) and return float64."""
    edge = sample_rate // 10
    return samples[edge:-edge].astype(np.float64)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples))))


def peak_frequency_hz(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (22050, 8000), (24000, 8000), (16000, 8000)])
@pytest.mark.parametrize("as_int16", [True, False])
def test_1khz_tone_keeps_frequency_and_level(in_rate, out_rate, as_int16):
    source = tone(1000, in_rate)
    samples = to_int16(source) if as_int16 else source.astype(np.float32)
    out = resample(samples, in_rate, out_rate)
    assert out.dtype == (np.int16 if as_int16 else np.float32)
    assert out.ndim == 1 and abs(len(out) - len(source) * out_rate / in_rate) <= 1
    body = steady(out, out_rate)
    reference = steady(to_int16(source) if as_int16 else source, in_rate)
    assert abs(peak_frequency_hz(body, out_rate) - 1000) <= 2
    level_db = 20 * np.log10(rms(body) / rms(reference))
    assert abs(level_db) < 0.1
    # Aligned with the input: same phase as the ideal tone at the output rate.
    ideal = tone(1000, out_rate) * (32767 if as_int16 else 1)
    assert np.max(np.abs(body - steady(ideal[: len(out)], out_rate))) < 0.01 * np.max(np.abs(ideal))


@pytest.mark.parametrize("as_int16", [False, True])
@pytest.mark.parametrize("frequency_hz", [6000, 5300])
def test_6khz_tone_is_removed_when_going_from_24k_to_8k(frequency_hz, as_int16):
    convert = to_int16 if as_int16 else (lambda x: x.astype(np.float32))
    passed = steady(resample(convert(tone(1000, 24000)), 24000, 8000), 8000)
    aliased = steady(resample(convert(tone(frequency_hz, 24000)), 24000, 8000), 8000)
    ratio = max(rms(aliased), 1e-12) / rms(passed)  # int16 output may round to all zeros
    attenuation_db = 20 * np.log10(ratio)
    print(f"\n{frequency_hz} Hz tone at 24 kHz -> 8 kHz ({'int16' if as_int16 else 'float32'}): {attenuation_db:.1f} dB re 1 kHz")
    assert attenuation_db < -60


def best_lag_difference(a: np.ndarray, b: np.ndarray, max_lag: int = 8) -> tuple[int, int]:
    """Align ``b`` to ``a`` within ±max_lag samples; return (lag, max abs difference)."""
    a = a.astype(np.int32)
    b = b.astype(np.int32)
    best = None
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[lag:], b) if lag >= 0 else (a, b[-lag:])
        n = min(len(x), len(y)) - max_lag
        difference = int(np.max(np.abs(x[:n] - y[:n])))
        if best is None or difference < best[1]:
            best = (lag, difference)
    return best


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 16000), (22050, 8000), (24000, 8000), (16000, 8000)])
def test_streaming_in_20ms_chunks_equals_one_shot(in_rate, out_rate):
    rng = np.random.default_rng(in_rate + out_rate)
    signal = to_int16(0.3 * tone(440, in_rate) + 0.2 * tone(1234, in_rate) + 0.05 * rng.standard_normal(in_rate))
    one_shot = resample(signal, in_rate, out_rate)
    stream = StreamResampler(in_rate, out_rate)
    chunk = in_rate * 20 // 1000
    parts = [stream.process(signal[i : i + chunk]) for i in range(0, len(signal), chunk)]
    parts.append(stream.flush())
    streamed = np.concatenate(parts)
    assert streamed.dtype == np.int16
    assert abs(len(streamed) - len(one_shot)) <= 2
    lag, difference = best_lag_difference(one_shot, streamed)
    assert difference <= 4, (lag, difference)


def test_stream_holds_back_output_and_is_reusable_after_flush():
    signal = to_int16(tone(500, 24000, 0.2))

    def run(stream: StreamResampler) -> tuple[int, np.ndarray]:
        head = stream.process(signal[:480])
        rest = stream.process(signal[480:])
        return len(head), np.concatenate([head, rest, stream.flush()])

    stream = StreamResampler(24000, 8000)
    head_len, first = run(stream)
    assert head_len < 160  # soxr withholds part of the first 20 ms until more input or flush
    assert abs(len(first) - 1600) <= 1
    _, second = run(stream)  # flush() reset the filter: a new signal gives the same output
    assert np.array_equal(first, second)
    _, fresh = run(StreamResampler(24000, 8000))
    assert np.array_equal(first, fresh)


def test_float_stream():
    signal = tone(1000, 16000, 0.5).astype(np.float32)
    stream = StreamResampler(16000, 8000, dtype="float32")
    out = np.concatenate([stream.process(signal[i : i + 320]) for i in range(0, len(signal), 320)] + [stream.flush()])
    assert out.dtype == np.float32
    one_shot = resample(signal, 16000, 8000)
    assert abs(len(out) - len(one_shot)) <= 2
    n = min(len(out), len(one_shot))
    assert np.max(np.abs(out[:n] - one_shot[:n])) < 1e-3
    assert stream.process(signal.astype(np.float64)).dtype == np.float32


def test_equal_rates_pass_through():
    samples = to_int16(tone(1000, 8000, 0.1))
    assert resample(samples, 8000, 8000) is samples
    floats = tone(1000, 8000, 0.1)
    assert resample(floats, 8000, 8000) is floats
    stream = StreamResampler(8000, 8000)
    assert np.array_equal(stream.process(samples), samples)
    assert stream.flush().size == 0


def test_float64_in_gives_float32_out_and_empty_input():
    assert resample(tone(1000, 22050, 0.1), 22050, 8000).dtype == np.float32
    assert resample(np.zeros(0, np.int16), 8000, 16000).dtype == np.int16
    assert resample(np.zeros(0, np.int16), 8000, 16000).size == 0


@pytest.mark.parametrize("bad", [np.zeros((100, 2), np.int16), np.zeros(100, np.int32), np.zeros(100, np.uint8)])
def test_rejects_bad_arrays(bad):
    with pytest.raises(AudioFormatError):
        resample(bad, 16000, 8000)
    with pytest.raises(AudioFormatError):
        StreamResampler(16000, 8000).process(bad)


def test_rejects_bad_rates_and_mismatched_stream_dtype():
    with pytest.raises(AudioFormatError):
        resample(np.zeros(10, np.int16), 0, 8000)
    with pytest.raises(AudioFormatError):
        StreamResampler(8000, -1)
    with pytest.raises(AudioFormatError):
        StreamResampler(8000, 16000, dtype="int32")
    with pytest.raises(AudioFormatError):
        StreamResampler(8000, 16000).process(np.zeros(10, np.float32))


def test_stream_quality_recipe():
    source = to_int16(tone(1000, 24000))
    held, joined = {}, {}
    for quality in ("LQ", "HQ"):
        stream = StreamResampler(24000, 16000, quality=quality)
        first = stream.process(source)
        held[quality] = 16000 - len(first)
        joined[quality] = np.concatenate([first, stream.flush()])
    assert 0 < held["LQ"] < held["HQ"]  # a lower recipe holds back less output
    for out in joined.values():
        assert len(out) == 16000 and abs(peak_frequency_hz(steady(out, 16000), 16000) - 1000) <= 2
    assert np.max(np.abs(steady(joined["LQ"], 16000) - steady(joined["HQ"], 16000))) <= 3  # same signal, in time
    with pytest.raises(AudioFormatError):
        StreamResampler(24000, 16000, quality="best")
