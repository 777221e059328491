"""RECOGNIZER=openai / SYNTHESIZER=openai against a real local HTTP server (tests/engine_server.py).

The request shape, error mapping and size caps use the server with overridden answers; the
transcript and the audio come from the project's real whisper and piper engines behind it.
"""

import io
import socket
import struct
import time

import numpy as np
import pytest
import soundfile as sf

from speech.errors import EngineConfigError, RecognitionError, SynthesisError
from speech.openai_engines import (
    MAX_TRANSCRIPTION_BYTES,
    OpenAIRecognizer,
    OpenAISynthesizer,
    decode_wav,
)
from speech.recognition import make_recognizer
from speech.synthesis import PiperSynthesizer, make_synthesizer
from tests.engine_server import EngineServer
from tests.phone import phone_corpus, reference_text
from tools.wer import word_error_rate

TRANSCRIPTIONS, SPEECH = "/v1/audio/transcriptions", "/v1/audio/speech"
ONE_SECOND_8K = np.zeros(8000, dtype="<i2").tobytes()


def _tone(sample_rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)


def fixed_text(text="hello there"):
    return lambda pcm, rate: text


def fixed_audio(seconds=0.5, rate=22050):
    return lambda text: (_tone(rate, seconds), rate)


# -- request shape ------------------------------------------------------------------------


def test_transcription_request_is_a_multipart_wav_with_model_language_and_json_format():
    with EngineServer(fixed_text("  Hello,   there. ")) as server:
        recognizer = OpenAIRecognizer(server.url, model="whisper-1", language="en-US")
        assert recognizer.transcribe(ONE_SECOND_8K, 8000) == "Hello, there."
        request = server.requests[0]
    assert request["path"] == TRANSCRIPTIONS
    assert request["fields"] == {"model": "whisper-1", "language": "en", "response_format": "json"}
    samples, rate = sf.read(io.BytesIO(request["files"]["file"]), dtype="int16")
    info = sf.info(io.BytesIO(request["files"]["file"]))
    assert (info.format, info.subtype, info.channels, rate) == ("WAV", "PCM_16", 1, 16000)
    assert len(samples) == 16000  # 1 s at 8 kHz upsampled to 16 kHz
    assert "authorization" not in request["headers"]


def test_the_api_key_is_sent_as_a_bearer_token_only_when_set_and_never_shown():
    with EngineServer(fixed_text(), fixed_audio()) as server:
        keyed = OpenAIRecognizer(server.url, api_key="sk-test-secret")
        keyed.transcribe(ONE_SECOND_8K, 8000)
        OpenAISynthesizer(server.url, api_key="sk-test-secret").synthesize("Hi.")
        OpenAISynthesizer(server.url).synthesize("Hi.")
        headers = [request["headers"] for request in server.requests]
    assert headers[0]["authorization"] == "Bearer sk-test-secret"
    assert headers[1]["authorization"] == "Bearer sk-test-secret"
    assert "authorization" not in headers[2]
    assert "sk-test" not in repr(keyed) and "sk-test" not in repr(vars(keyed))


def test_speech_request_is_json_with_model_input_voice_and_pcm():
    with EngineServer(synthesize=fixed_audio(1.0)) as server:
        audio = OpenAISynthesizer(server.url, model="tts-1", voice="nova").synthesize("Good morning.")
        request = server.requests[0]
    assert request["path"] == SPEECH
    assert request["headers"]["content-type"] == "application/json"
    assert request["json"] == {"model": "tts-1", "input": "Good morning.", "voice": "nova", "response_format": "pcm"}
    assert audio.sample_rate == 24000
    assert abs(len(audio.samples) - 24000) <= 24  # 1 s at 22 050 Hz, resampled to 24 kHz by the server


def test_wav_format_takes_the_rate_from_the_header():
    with EngineServer(synthesize=fixed_audio(0.5, 16000)) as server:
        audio = OpenAISynthesizer(server.url, response_format="wav").synthesize("Hi.")
        assert server.requests[0]["json"]["response_format"] == "wav"
    assert audio.sample_rate == 16000 and len(audio.samples) == 8000
    assert np.array_equal(audio.samples, _tone(16000, 0.5))


def test_a_server_refusing_pcm_gets_wav_from_then_on():
    with EngineServer(synthesize=fixed_audio(0.5), pcm_formats=False) as server:
        synthesizer = OpenAISynthesizer(server.url)
        first = synthesizer.synthesize("One.")
        second = synthesizer.synthesize("Two.")
        formats = [request["json"]["response_format"] for request in server.requests]
    assert formats == ["pcm", "wav", "wav"]
    assert first.sample_rate == second.sample_rate == 22050


def test_nothing_to_say_or_hear_makes_no_request():
    with EngineServer(fixed_text(), fixed_audio()) as server:
        assert OpenAIRecognizer(server.url).transcribe(b"", 8000) == ""
        assert len(OpenAISynthesizer(server.url).synthesize("  \n").samples) == 0
        assert server.requests == []


def test_make_engines_and_config_errors():
    assert make_recognizer("openai", base_url="http://127.0.0.1:1/v1", timeout_s=2).name == "openai"
    assert make_synthesizer("openai", voice="onyx").voice == "onyx"
    for bad in ({"base_url": "ftp://x"}, {"base_url": "localhost:8000"}, {"model": ""}, {"timeout_s": 0}):
        with pytest.raises(EngineConfigError):
            make_recognizer("openai", **bad)
    for bad in ({"response_format": "mp3"}, {"voice": ""}, {"timeout_s": -1}, {"max_audio_s": 0}):
        with pytest.raises(EngineConfigError):
            make_synthesizer("openai", **bad)
    OpenAIRecognizer("http://127.0.0.1:1/v1").warm_up()  # no network: nothing listens there
    OpenAISynthesizer("http://127.0.0.1:1/v1").warm_up()


# -- errors ---------------------------------------------------------------------------------


def _fails(answer, expected, *, timeout_s=5.0):
    """Both engines against a server answering ``answer``: their error matches ``expected``."""
    with EngineServer(fixed_text(), fixed_audio(), answer=lambda path, index: answer) as server:
        with pytest.raises(RecognitionError, match=expected) as recognition:
            OpenAIRecognizer(server.url, timeout_s=timeout_s).transcribe(ONE_SECOND_8K, 8000)
        with pytest.raises(SynthesisError, match=expected) as synthesis:
            OpenAISynthesizer(server.url, timeout_s=timeout_s, response_format="wav").synthesize("Hi.")
    for error in (recognition.value, synthesis.value):
        assert str(error).startswith("openai: ")
    return recognition.value, synthesis.value


def test_http_500_carries_the_servers_message_cut_short():
    message = "the model crashed " + "x" * 1000
    body = b'{"error": {"message": "%s", "type": "server_error"}}' % message.encode()
    error, _ = _fails((500, "application/json", body), "HTTP 500 .*the model crashed x+…$")
    assert len(str(error)) < 320


def test_http_401_and_non_json_error_bodies():
    _fails((401, "application/json", b'{"error": {"message": "Incorrect API key provided"}}'),
           "HTTP 401 .*Incorrect API key provided")
    _fails((503, "text/html", b"<html>\n  Service   Unavailable</html>"), "HTTP 503 .*<html> Service Unavailable</html>")
    _fails((422, "application/json", b'{"detail": "bad field"}'), "HTTP 422 .*bad field")


def test_a_redirect_is_not_followed():
    _fails((307, "text/plain", b""), "HTTP 307")


def test_timeout():
    began = time.monotonic()
    _fails(("stall", 3.0), "no answer from .* within 0.5 s", timeout_s=0.5)
    assert time.monotonic() - began < 2.5


def test_refused_connection():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(RecognitionError, match="openai: cannot reach http://127.0.0.1:.*/v1/audio/transcriptions"):
        OpenAIRecognizer(url).transcribe(ONE_SECOND_8K, 8000)
    with pytest.raises(SynthesisError, match="openai: cannot reach"):
        OpenAISynthesizer(url).synthesize("Hi.")


def test_dropped_connection():
    _fails("drop", "cannot reach|failed")


def test_garbage_bodies():
    with EngineServer(answer=lambda path, index: [
        (200, "application/json", b"not json"),
        (200, "application/json", b'{"txt": 1}'),
        (200, "application/json", b'["text"]'),
        (200, "application/json", b"\xff\xfe"),
    ][index]) as server:
        recognizer = OpenAIRecognizer(server.url)
        for expected in ("not JSON", "no string \"text\"", "no string \"text\"", "not JSON"):
            with pytest.raises(RecognitionError, match=expected):
                recognizer.transcribe(ONE_SECOND_8K, 8000)
    with EngineServer(answer=lambda path, index: [
        (200, "audio/pcm", b"\x01\x02\x03"),
        (200, "audio/wav", b"ID3\x04mp3-not-wav"),
    ][index]) as server:
        with pytest.raises(SynthesisError, match="odd number of bytes"):
            OpenAISynthesizer(server.url).synthesize("Hi.")
        with pytest.raises(SynthesisError, match="not a WAV file"):
            OpenAISynthesizer(server.url, response_format="wav").synthesize("Hi.")


def test_oversize_answers_are_refused():
    big_json = b'{"text": "' + b"a" * MAX_TRANSCRIPTION_BYTES + b'"}'
    with EngineServer(answer=lambda path, index: (200, "application/json", big_json)) as server:
        with pytest.raises(RecognitionError, match="too large"):
            OpenAIRecognizer(server.url).transcribe(ONE_SECOND_8K, 8000)
    # 3 s of 24 kHz pcm against a 2 s cap, sent chunked (no Content-Length): cut while reading
    with EngineServer(synthesize=fixed_audio(3.0)) as server:
        with pytest.raises(SynthesisError, match="too large: over 96000 bytes"):
            OpenAISynthesizer(server.url, max_audio_s=2.0).synthesize("Hi.")
    with pytest.raises(SynthesisError, match="at most 4096"):
        OpenAISynthesizer("http://127.0.0.1:1/v1").synthesize("a" * 5000)


# -- WAV decoding -----------------------------------------------------------------------------


def _wav(samples: np.ndarray, rate: int, channels: int = 1, data_size: int | None = None, extra: bytes = b"") -> bytes:
    data = samples.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    size = len(data) if data_size is None else data_size
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + extra \
        + b"data" + struct.pack("<I", size) + data


def test_decode_wav_streamed_stereo_and_odd_chunks():
    tone = _tone(24000, 0.1)
    streamed = decode_wav(_wav(tone, 24000, data_size=0xFFFFFFFF))  # unknown length, as streamed
    assert streamed.sample_rate == 24000 and np.array_equal(streamed.samples, tone)
    stereo = decode_wav(_wav(np.repeat(tone, 2), 24000, channels=2))
    assert np.array_equal(stereo.samples, tone)
    with_list = decode_wav(_wav(tone, 24000, extra=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))
    assert np.array_equal(with_list.samples, tone)
    eight_bit = _wav(tone, 24000).replace(struct.pack("<HH", 2, 16), struct.pack("<HH", 1, 8), 1)
    with pytest.raises(SynthesisError, match="not 16-bit PCM"):
        decode_wav(eight_bit)
    with pytest.raises(SynthesisError, match="no data chunk"):
        decode_wav(b"RIFF\x00\x00\x00\x00WAVE")


# -- real engines behind the server -------------------------------------------------------------


def test_recognizer_transcribes_the_corpus_through_whisper_over_http(whisper):
    with EngineServer(whisper.transcribe) as server:
        recognizer = OpenAIRecognizer(server.url, timeout_s=30)
        for name in ("jfk.flac", "sr_english.wav"):
            text = recognizer.transcribe(phone_corpus(name), 8000)
            assert word_error_rate(reference_text(name), text) <= 0.25, (name, text)
        assert server.count(TRANSCRIPTIONS) == 2
        recognizer.close()


def test_synthesizer_speaks_through_piper_over_http():
    piper = PiperSynthesizer()
    with EngineServer(synthesize=piper) as server:
        for response_format, rate in (("pcm", 24000), ("wav", piper.sample_rate)):
            audio = OpenAISynthesizer(server.url, response_format=response_format, timeout_s=30).synthesize(
                "The quick brown fox jumps over the lazy dog.")
            assert audio.sample_rate == rate
            assert 1500 <= audio.duration_ms <= 5000, audio.duration_ms  # about 2.5 s of speech
            assert np.abs(audio.samples.astype(np.int32)).max() > 3000  # speech, not silence


def test_one_engine_serves_many_threads_with_a_connection_each():
    from concurrent.futures import ThreadPoolExecutor

    with EngineServer(fixed_text("ok")) as server:
        recognizer = OpenAIRecognizer(server.url)
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: recognizer.transcribe(ONE_SECOND_8K, 8000), range(40))) == ["ok"] * 40
        assert server.count(TRANSCRIPTIONS) == 40
        assert len(recognizer._endpoint._sessions) <= 4  # one session (keep-alive pool) per thread
        recognizer.close()
        assert recognizer.transcribe(ONE_SECOND_8K, 8000) == "ok"  # usable after close
