"""Speech engines as services: any OpenAI-compatible audio API over HTTP.

``RECOGNIZER=openai`` and ``SYNTHESIZER=openai`` let the web process hand recognition and
synthesis to another machine (or another process), so it scales apart from the engines. The
protocol is OpenAI's audio API (https://platform.openai.com/docs/api-reference/audio), which
OpenAI, Groq (``https://api.groq.com/openai/v1``, transcription only), self-hosted servers such
as speaches / faster-whisper-server (``http://host:8000/v1``) and vLLM speak:

* ``POST {base}/audio/transcriptions`` (OpenAI: "Create transcription"): a
  ``multipart/form-data`` upload with the fields ``file`` (the audio file), ``model``,
  ``language`` (ISO-639-1) and ``response_format``; with ``response_format=json`` the answer
  is ``{"text": "..."}``. Here the file is a WAV: RIFF, PCM 16-bit signed little-endian, mono,
  16 000 Hz (the rate every engine of ``speech.recognition`` gets; soxr upsamples the call's
  8 kHz).
* ``POST {base}/audio/speech`` (OpenAI: "Create speech"): a JSON body ``{"model", "input",
  "voice", "response_format"}``; the answer is the audio file. ``response_format=pcm`` is raw
  samples with no header, "24kHz (16-bit signed, low-endian)" mono (OpenAI's "Supported output
  formats"); ``wav`` is the same in a RIFF header, whose rate is read from the header.

The HTTP client is ``requests`` (no new dependency). The engines block and are thread-safe: the
call worker runs them in its engine thread pool (``runtime.blocking.run_engine``). Under gevent's
monkey-patching a socket belongs to the hub of the OS thread that opened it, and a keep-alive
connection reused from another pool thread fails ("Cannot switch to a different thread",
reproduced here with one shared ``requests.Session``). So each engine keeps one
``requests.Session`` (a keep-alive connection pool) **per OS thread** that uses it: at most one
connection per engine thread, each reused only by its own thread.

Bounds, since the server's answer is treated as hostile: the connect and each read wait at most
``timeout_s`` and the whole answer must arrive within ``timeout_s`` of the request (else the
engine's error); answers larger than the caps (``MAX_TRANSCRIPTION_BYTES``; for speech
``max_audio_s`` of audio) are refused unread or as soon as they pass the cap; redirects are not
followed (an error, so the bearer token never goes elsewhere). The API key goes only into the
``Authorization: Bearer`` header, and only when it is set; it is in no message or repr.

Errors: the recognizer raises ``RecognitionError`` and the synthesizer ``SynthesisError`` for
every failure (connection refused, DNS, timeouts, HTTP 4xx/5xx with the server's message cut to
``_MAX_MESSAGE_CHARS``, malformed JSON or audio, oversize answers), each message starting
``openai:``. The call worker's policies apply as for Google's engines: a failed recognition is
answered with the apology, a failed sentence is spoken by the offline piper voice.

``warm_up`` makes no request: there is nothing to load, the server may not be up yet when the
web process starts, and a test request would cost money on a paid API. It only checks that the
configuration is usable; a wrong URL or key shows on the first call (logged, apology/fallback).
"""

from __future__ import annotations

import json
import logging
import struct
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import requests
from gevent.monkey import get_original

from speech.errors import EngineConfigError, RecognitionError, SynthesisError

if TYPE_CHECKING:
    from speech.synthesis import SynthesizedAudio

# speech.recognition and speech.synthesis import this module for their engine registries, so
# their helpers are imported where they are used, not here (no import cycle).

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_PCM_SAMPLE_RATE = 24000
"""Rate (Hz) of OpenAI's ``response_format=pcm``: 16-bit signed little-endian mono, no header."""

MAX_TRANSCRIPTION_BYTES = 256 * 1024
"""Largest transcription answer accepted, bytes (a 15 s utterance's JSON is well under 1 KiB)."""

MAX_INPUT_CHARS = 4096
"""Longest text sent to ``/audio/speech`` (OpenAI's documented limit for ``input``)."""

_MAX_MESSAGE_CHARS = 200  # of the server's error message, in our error
_MAX_ERROR_BODY_BYTES = 4096  # read of an error answer's body
_MAX_WAV_CHANNELS = 8
_CHUNK_BYTES = 64 * 1024
_FORMAT_REJECTED = (400, 415, 422)  # statuses that may mean "unsupported response_format"

_thread_local = get_original("_thread", "_local")  # per OS thread, not per greenlet
_real_lock = get_original("_thread", "allocate_lock")


class _HttpError(Exception):
    """An HTTP-level failure; ``status`` is the HTTP status, or None for transport errors."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _check_base_url(engine: str, base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EngineConfigError(
            f"{engine}: base_url must be an http(s) URL up to /v1, such as {DEFAULT_BASE_URL}, got {base_url!r}")
    return base_url.rstrip("/")


def _check_timeout(engine: str, timeout_s: float) -> float:
    if not timeout_s > 0:
        raise EngineConfigError(f"{engine}: timeout_s must be positive, got {timeout_s}")
    return float(timeout_s)


def _server_message(body: bytes) -> str:
    """The server's error message from an error answer: OpenAI's ``{"error": {"message"}}``,
    FastAPI's ``{"detail": ...}``, or the body as text; whitespace collapsed, cut to
    ``_MAX_MESSAGE_CHARS``."""
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        if isinstance(error, dict) and error.get("message"):
            text = str(error["message"])
        elif isinstance(error, str):
            text = error
        elif payload.get("detail"):
            text = str(payload["detail"])
        elif payload.get("message"):
            text = str(payload["message"])
    text = " ".join(text.split())
    if len(text) > _MAX_MESSAGE_CHARS:
        text = text[:_MAX_MESSAGE_CHARS] + "…"
    return text or "(no message)"


class _Endpoint:
    """One ``POST`` endpoint, with a ``requests.Session`` per OS thread (see the module docstring).

    Args:
        url: the full endpoint URL.
        api_key: bearer token; "" sends no ``Authorization`` header.
        timeout_s: connect timeout, per-read timeout and deadline of the whole answer, s.
    """

    def __init__(self, url: str, api_key: str, timeout_s: float) -> None:
        self.url = url
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s = timeout_s
        self._local = _thread_local()
        self._lock = _real_lock()
        self._sessions: list[requests.Session] = []

    def __repr__(self) -> str:  # never the key
        return f"_Endpoint({self._where!r}, timeout_s={self.timeout_s})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # One request at a time per thread: one kept-alive connection per host; no retries
            # (a retry after a timeout would double the caller's wait; the fallback is better).
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def post(self, max_bytes: int, **request: Any) -> tuple[bytes, str]:
        """POST and read the whole answer (as a stream, within the caps).

        Args:
            max_bytes: largest body accepted.
            **request: ``json=`` or ``data=``/``files=`` for ``requests``.

        Returns:
            ``(body, content_type)`` of a 2xx answer.

        Raises:
            _HttpError: transport error, timeout, non-2xx status (``status`` set), or a body
                over ``max_bytes``.
        """
        deadline = time.monotonic() + self.timeout_s
        try:
            response = self._session().post(
                self.url, headers=self._headers, timeout=(self.timeout_s, self.timeout_s),
                stream=True, allow_redirects=False, **request,
            )
        except requests.exceptions.ConnectTimeout:
            raise _HttpError(f"connecting to {self._where} timed out after {self.timeout_s:g} s") from None
        except requests.exceptions.ReadTimeout:
            raise _HttpError(f"no answer from {self._where} within {self.timeout_s:g} s") from None
        except requests.exceptions.RequestException as exc:
            raise _HttpError(f"cannot reach {self._where}: {_short(exc)}") from exc
        with response:
            status = response.status_code
            if not 200 <= status < 300:
                body = self._read(response, _MAX_ERROR_BODY_BYTES, deadline, truncate=True)
                raise _HttpError(f"HTTP {status} from {self._where}: {_server_message(body)}", status)
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > max_bytes:
                raise _HttpError(f"answer from {self._where} too large: {int(length)} bytes (at most {max_bytes})")
            body = self._read(response, max_bytes, deadline)
            return body, response.headers.get("Content-Type", "")

    def _read(self, response: requests.Response, max_bytes: int, deadline: float, *, truncate: bool = False) -> bytes:
        body = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK_BYTES):
                body += chunk
                if len(body) > max_bytes:
                    if truncate:
                        return bytes(body[:max_bytes])
                    raise _HttpError(f"answer from {self._where} too large: over {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise _HttpError(f"answer from {self._where} not complete within {self.timeout_s:g} s")
        except requests.exceptions.RequestException as exc:  # read timeout, connection reset, bad chunking
            if truncate:
                return bytes(body)
            raise _HttpError(f"reading the answer from {self._where} failed: {_short(exc)}") from exc
        return bytes(body)

    def close(self) -> None:
        """Close every thread's session (idle keep-alive connections); threads open new ones if used again."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
            self._local = _thread_local()
        for session in sessions:
            try:
                session.close()
            except Exception as exc:  # a socket of another thread's gevent hub
                log.debug("closing an HTTP session failed: %r", exc)


def _short(exc: BaseException) -> str:
    """A one-line description of a requests error (urllib3's wrapped reason, cut)."""
    reason = exc
    while reason.args and isinstance(reason.args[0], BaseException):
        reason = reason.args[0]
    reason = getattr(reason, "reason", reason)
    text = " ".join(f"{type(reason).__name__}: {reason}".split())
    return text[:_MAX_MESSAGE_CHARS]


class OpenAIRecognizer:
    """Transcription by an OpenAI-compatible ``POST {base_url}/audio/transcriptions``.

    Each utterance is upsampled to 16 kHz with soxr (as for every engine) and uploaded as a WAV
    (PCM 16-bit LE, mono, 16 000 Hz; 32 000 bytes per second of audio plus a 44-byte header)
    with ``model``, ``language`` and ``response_format=json``; the answer's ``text`` is the
    transcript.

    Args:
        base_url: the API's base URL up to ``/v1``: OpenAI ``https://api.openai.com/v1``, Groq
            ``https://api.groq.com/openai/v1``, speaches ``http://host:8000/v1``.
        model: the model name the server knows (``whisper-1``, ``gpt-4o-mini-transcribe``,
            Groq ``whisper-large-v3-turbo``, speaches ``Systran/faster-whisper-small``).
        api_key: sent as ``Authorization: Bearer``; "" for servers that need none.
        language: spoken language; its primary subtag is sent as ISO-639-1 ("en-US" → "en").
        timeout_s: connect timeout, read timeout and deadline of the whole answer, s.

    Raises:
        EngineConfigError: ``base_url`` is not an http(s) URL, ``model`` is empty, or
            ``timeout_s`` is not positive.
    """

    name = "openai"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, model: str = "whisper-1", api_key: str = "", *,
                 language: str = "en", timeout_s: float = 10.0) -> None:
        base = _check_base_url("openai recognizer", base_url)
        if not model:
            raise EngineConfigError("openai recognizer: model must name a model (e.g. whisper-1)")
        self.model = model
        self.language = language.split("-")[0].lower()
        self._endpoint = _Endpoint(f"{base}/audio/transcriptions", api_key, _check_timeout("openai recognizer", timeout_s))

    def __repr__(self) -> str:
        return f"OpenAIRecognizer({self._endpoint.url!r}, model={self.model!r})"

    backlog_core_s = 0.0  # the work runs on the service's machines

    def cost_core_s(self, audio_s: float) -> float:
        """Nothing of this machine's CPU beyond a WAV encode (counted as 0)."""
        return 0.0

    def transcribe(self, pcm: bytes, sample_rate: int, *, priority: Any = None, cancel: Any = None) -> str:
        """Transcribe one utterance over HTTP (``priority`` and ``cancel`` are ignored: requests are not queued).

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz (the call worker passes
                8000 Hz telephone audio); upsampled to 16 kHz with soxr.
            sample_rate: rate of ``pcm`` in Hz.

        Returns:
            The text, whitespace collapsed; "" when nothing was recognised or ``pcm`` is empty
            (then no request is made).

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: connection refused, timeout, HTTP error (with the server's message,
                cut), an answer over ``MAX_TRANSCRIPTION_BYTES``, or one that is not a JSON object
                with a string ``text``.
        """
        from speech.recognition import _audio_data

        audio = _audio_data(pcm, sample_rate)
        if not audio.frame_data:
            return ""
        fields = {"model": self.model, "response_format": "json"}
        if self.language:
            fields["language"] = self.language
        # SpeechRecognition's own WAV (RIFF, 16-bit PCM, mono, 16 kHz: no conversion asked for).
        files = {"file": ("utterance.wav", audio.get_wav_data(), "audio/wav")}
        try:
            body, _ = self._endpoint.post(MAX_TRANSCRIPTION_BYTES, data=fields, files=files)
        except _HttpError as exc:
            raise RecognitionError(f"openai: {exc}") from exc
        try:
            payload = json.loads(body.decode("utf-8"))
        except ValueError as exc:  # also UnicodeDecodeError
            raise RecognitionError(f"openai: the transcription answer is not JSON: {body[:60]!r}") from exc
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            raise RecognitionError(f"openai: the transcription answer has no string \"text\": {body[:60]!r}")
        return " ".join(text.split())

    def warm_up(self) -> None:
        """Do nothing over the network (see the module docstring): the configuration was checked
        at construction, and there is no model to load here."""

    def close(self) -> None:
        """Close the kept-alive connections; a later call opens new ones."""
        self._endpoint.close()


def decode_wav(data: bytes) -> SynthesizedAudio:
    """Decode a WAV file of 16-bit PCM (RIFF ``WAVE``, format 1 or extensible PCM).

    Tolerates a streamed WAV whose ``data`` size is unknown (0, 0xFFFFFFFF or past the end of
    ``data``: the samples are the rest of the file), as servers that stream WAV write it; a
    trailing partial frame is dropped.

    Args:
        data: the whole file.

    Returns:
        int16 mono at the header's sample rate (channels averaged).

    Raises:
        SynthesisError: not a RIFF/WAVE file, no ``fmt `` before ``data``, not 16-bit PCM, or an
            implausible channel count or rate.
    """
    from speech.synthesis import SynthesizedAudio

    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SynthesisError(f"openai: the speech answer is not a WAV file: {data[:16]!r}")
    position, fmt = 12, None
    while position + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, position)
        body_at = position + 8
        if chunk_id == b"fmt ":
            if size < 16 or body_at + 16 > len(data):
                raise SynthesisError("openai: WAV fmt chunk too short")
            audio_format, channels, sample_rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body_at)
            if audio_format == 0xFFFE and size >= 40 and body_at + 26 <= len(data):  # WAVE_FORMAT_EXTENSIBLE
                audio_format = struct.unpack_from("<H", data, body_at + 24)[0]
            if audio_format != 1 or bits != 16:
                raise SynthesisError(f"openai: WAV is not 16-bit PCM (format {audio_format}, {bits} bits)")
            if not 1 <= channels <= _MAX_WAV_CHANNELS or not 1000 <= sample_rate <= 384000:
                raise SynthesisError(f"openai: WAV has {channels} channels at {sample_rate} Hz")
            fmt = (channels, sample_rate)
        elif chunk_id == b"data":
            if fmt is None:
                raise SynthesisError("openai: WAV data before its fmt chunk")
            channels, sample_rate = fmt
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body_at + size)
            frame_bytes = 2 * channels
            raw = data[body_at:end]
            raw = raw[: len(raw) - len(raw) % frame_bytes]
            frames = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
            if channels == 1:
                mono = frames[:, 0].astype(np.int16)
            else:
                mono = np.rint(frames.mean(axis=1)).astype(np.int16)
            return SynthesizedAudio(mono, sample_rate)
        position = body_at + size + (size & 1)  # chunks are padded to even sizes
    raise SynthesisError("openai: WAV has no data chunk")


class OpenAISynthesizer:
    """Speech by an OpenAI-compatible ``POST {base_url}/audio/speech``.

    Sends ``{"model", "input", "voice", "response_format"}`` as JSON and decodes the answer:
    ``pcm`` (the default: raw PCM 16-bit signed little-endian mono at ``pcm_sample_rate`` Hz,
    24 000 for OpenAI; no header, nothing to parse) or ``wav`` (the rate from its header; the
    choice for servers whose raw PCM is at another rate). If the server rejects ``pcm`` (HTTP
    400, 415 or 422) the same sentence is asked again as ``wav``, and if that works the engine
    keeps to ``wav`` (logged once).

    "Streamed" here: the answer is read as it arrives (``requests`` with ``stream=True``, in
    64 KiB pieces, chunked transfer encoding accepted), so the size cap and the deadline hold
    while the server is still sending, and OpenAI starts sending before it has synthesized the
    whole text. ``synthesize`` still returns the whole sentence at once: the ``Synthesizer``
    interface returns whole audio per call, and the call worker already synthesizes a reply
    sentence by sentence, so the caller hears the first sentence while the next is synthesized.
    No audio is played before its sentence has fully arrived.

    Args:
        base_url: the API's base URL up to ``/v1``: OpenAI ``https://api.openai.com/v1``,
            speaches ``http://host:8000/v1``.
        model: the model name (OpenAI ``tts-1``, ``gpt-4o-mini-tts``; speaches
            ``speaches-ai/Kokoro-82M-v1.0-ONNX``).
        voice: the voice name (OpenAI ``alloy``, ``nova``, …; speaches/Kokoro ``af_heart``).
        api_key: sent as ``Authorization: Bearer``; "" for servers that need none.
        response_format: ``pcm`` or ``wav``.
        pcm_sample_rate: rate of the server's ``pcm`` answers in Hz.
        timeout_s: connect timeout, read timeout and deadline of the whole answer, s.
        max_audio_s: longest answer accepted, s of audio (the byte cap is computed from it:
            for ``wav`` at up to 48 kHz stereo).

    Raises:
        EngineConfigError: bad ``base_url``, empty ``model`` or ``voice``, unknown
            ``response_format``, or a non-positive rate, timeout or ``max_audio_s``.
    """

    name = "openai"

    def __init__(self, base_url: str = DEFAULT_BASE_URL, model: str = "tts-1", voice: str = "alloy",
                 api_key: str = "", *, response_format: str = "pcm", pcm_sample_rate: int = OPENAI_PCM_SAMPLE_RATE,
                 timeout_s: float = 10.0, max_audio_s: float = 60.0) -> None:
        base = _check_base_url("openai synthesizer", base_url)
        if not model or not voice:
            raise EngineConfigError("openai synthesizer: model and voice must be set (e.g. tts-1 and alloy)")
        if response_format not in ("pcm", "wav"):
            raise EngineConfigError(f"openai synthesizer: response_format must be pcm or wav, got {response_format!r}")
        if pcm_sample_rate <= 0 or not max_audio_s > 0:
            raise EngineConfigError("openai synthesizer: pcm_sample_rate and max_audio_s must be positive")
        self.model = model
        self.voice = voice
        self.response_format = response_format
        self.pcm_sample_rate = pcm_sample_rate
        self.max_audio_s = float(max_audio_s)
        self._endpoint = _Endpoint(f"{base}/audio/speech", api_key, _check_timeout("openai synthesizer", timeout_s))

    def __repr__(self) -> str:
        return f"OpenAISynthesizer({self._endpoint.url!r}, model={self.model!r}, voice={self.voice!r})"

    def _max_bytes(self, response_format: str) -> int:
        if response_format == "pcm":
            return int(self.max_audio_s * self.pcm_sample_rate) * 2
        return int(self.max_audio_s * 48000) * 2 * 2 + 1024  # wav: 48 kHz stereo, plus headers

    backlog_core_s = 0.0  # the work runs on the service's machines

    def cost_core_s(self, text: str) -> float:
        """Nothing of this machine's CPU beyond decoding the answer (counted as 0)."""
        return 0.0

    def synthesize(self, text: str, *, priority: Any = None, cancel: Any = None) -> SynthesizedAudio:
        """Speak ``text`` through the server (``priority`` and ``cancel`` are ignored: requests are not queued).

        Args:
            text: the text, at most ``MAX_INPUT_CHARS`` characters; empty or whitespace-only
                gives empty samples (at ``pcm_sample_rate``) without a request.

        Returns:
            int16 mono: at ``pcm_sample_rate`` Hz for ``pcm``, at the header's rate for ``wav``.

        Raises:
            SynthesisError: text too long, connection refused, timeout, HTTP error (with the
                server's message, cut), an answer over the cap or longer than ``max_audio_s``,
                raw PCM of an odd byte count, or a WAV that is not 16-bit PCM.
        """
        from speech.synthesis import SynthesizedAudio

        if not text.strip():
            return SynthesizedAudio(np.zeros(0, dtype=np.int16), self.pcm_sample_rate)
        if len(text) > MAX_INPUT_CHARS:
            raise SynthesisError(f"openai: text of {len(text)} characters (at most {MAX_INPUT_CHARS})")
        response_format = self.response_format
        try:
            audio = self._request(text, response_format)
        except _HttpError as exc:
            if response_format != "pcm" or exc.status not in _FORMAT_REJECTED:
                raise SynthesisError(f"openai: {exc}") from exc
            try:
                audio = self._request(text, "wav")
            except _HttpError as again:
                raise SynthesisError(f"openai: {exc}; as wav: {again}") from again
            self.response_format = "wav"
            log.warning("openai synthesizer: the server refused response_format=pcm (%s); using wav from now on", exc)
        if len(audio.samples) > self.max_audio_s * audio.sample_rate:
            raise SynthesisError(f"openai: {audio.duration_ms} ms of audio (at most {self.max_audio_s:g} s)")
        return audio

    def _request(self, text: str, response_format: str) -> SynthesizedAudio:
        from speech.synthesis import SynthesizedAudio

        body, _ = self._endpoint.post(self._max_bytes(response_format), json={
            "model": self.model, "input": text, "voice": self.voice, "response_format": response_format,
        })
        if response_format == "wav":
            return decode_wav(body)
        if len(body) % 2:
            raise SynthesisError(f"openai: raw PCM answer of an odd number of bytes ({len(body)}): not 16-bit samples")
        return SynthesizedAudio(np.frombuffer(body, dtype="<i2").astype(np.int16), self.pcm_sample_rate)

    def warm_up(self) -> None:
        """Do nothing over the network (see the module docstring); the configuration was checked
        at construction."""

    def close(self) -> None:
        """Close the kept-alive connections; a later call opens new ones."""
        self._endpoint.close()
