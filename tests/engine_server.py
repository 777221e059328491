"""A local OpenAI-compatible speech server that runs real engines: real recognition over real HTTP.

Speaks the two audio endpoints of OpenAI's API (https://platform.openai.com/docs/api-reference/audio)
the way OpenAI, speaches and vLLM do, on 127.0.0.1 on a free port, in a daemon thread:

* ``POST /v1/audio/transcriptions``: ``multipart/form-data`` with ``file`` (a WAV) and the form
  fields ``model``, ``language``, ``response_format``; the WAV is decoded (soundfile) to PCM16
  mono and handed to ``transcribe(pcm, sample_rate)`` (the project's ``WhisperRecognizer`` in the
  tests); the answer is ``{"text": ...}`` (``json``) or the bare text (``text``).
* ``POST /v1/audio/speech``: JSON ``{"model", "input", "voice", "response_format"}``;
  ``synthesize(text)`` (the project's ``PiperSynthesizer``, 22 050 Hz) makes the audio, which is
  answered as ``pcm`` (resampled to 24 kHz with soxr, 16-bit LE mono, no header, as OpenAI's pcm)
  sent with chunked transfer encoding in 8 KiB pieces, or as a ``wav`` at the voice's own rate.
  ``pcm_formats=False`` makes the server refuse ``pcm`` with HTTP 400, as some servers do.

Every request is kept in ``requests`` (path, headers with lower-case names, form fields or JSON
body, and the uploaded file's bytes) so the test can check its shape and that it went over
HTTP. ``answer(path, index)`` may replace request ``index``'s answer: ``(status, content_type,
body)``, ``("stall", seconds)`` before answering normally, or ``"drop"`` to close the connection
without an answer.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np
import soundfile as sf
import soxr

PCM_SAMPLE_RATE = 24000  # OpenAI's response_format=pcm


class EngineServer:
    """Run the server in a daemon thread (a context manager).

    Args:
        transcribe: ``(pcm16_bytes, sample_rate) -> str``; None answers 404 to transcriptions.
        synthesize: ``text -> (int16 samples, sample_rate)`` or an object with a ``synthesize``
            returning ``SynthesizedAudio``; None answers 404 to speech.
        answer: ``(path, request_index) -> None | (status, content_type, body) | ("stall", s) | "drop"``.
        pcm_formats: False: ``response_format=pcm`` is refused with HTTP 400.
    """

    def __init__(self, transcribe: Callable[[bytes, int], str] | None = None, synthesize: Any = None, *,
                 answer: Callable[[str, int], Any] = lambda path, index: None, pcm_formats: bool = True) -> None:
        self.transcribe = transcribe
        self.synthesize = synthesize
        self.answer = answer
        self.pcm_formats = pcm_formats
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for ``RECOGNIZER_BASE_URL``/``SYNTHESIZER_BASE_URL``: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def count(self, path: str) -> int:
        """Requests received on ``path`` (e.g. ``/v1/audio/transcriptions``)."""
        with self._lock:
            return sum(1 for request in self.requests if request["path"] == path)

    def __enter__(self) -> "EngineServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, request: dict) -> int:
        with self._lock:
            self.requests.append(request)
            return len(self.requests) - 1

    def _speak(self, text: str) -> tuple[np.ndarray, int]:
        if hasattr(self.synthesize, "synthesize"):
            audio = self.synthesize.synthesize(text)
            return audio.samples, audio.sample_rate
        return self.synthesize(text)


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Split a ``multipart/form-data`` body into its text fields and its files (by field name)."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            files[name] = payload
        else:
            fields[name] = payload.decode("utf-8")
    return fields, files


def _handler_for(server: EngineServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.rstrip("/")
            request: dict[str, Any] = {"path": path, "headers": {k.lower(): v for k, v in self.headers.items()}}
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                request["fields"], request["files"] = parse_multipart(content_type, body)
            else:
                try:
                    request["json"] = json.loads(body or b"{}")
                except ValueError:
                    request["json"] = None
            index = server._take(request)
            override = server.answer(path, index)
            if override == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(override, tuple) and override[0] == "stall":
                time.sleep(override[1])
            elif isinstance(override, tuple):
                status, kind, data = override
                self._send(status, kind, data)
                return
            if path == "/v1/audio/transcriptions" and server.transcribe is not None:
                self._transcription(request)
            elif path == "/v1/audio/speech" and server.synthesize is not None:
                self._speech(request.get("json") or {})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def _transcription(self, request: dict) -> None:
            upload = request.get("files", {}).get("file")
            if not upload:
                self._json(400, {"error": {"message": "no file"}})
                return
            try:
                samples, sample_rate = sf.read(io.BytesIO(upload), dtype="int16", always_2d=True)
            except Exception as exc:
                self._json(400, {"error": {"message": f"cannot decode audio: {exc}"}})
                return
            text = server.transcribe(samples[:, 0].tobytes(), int(sample_rate))
            if request["fields"].get("response_format") == "text":
                self._send(200, "text/plain", text.encode())
            else:
                self._json(200, {"text": text})

        def _speech(self, body: dict) -> None:
            fmt = body.get("response_format", "mp3")
            if fmt not in ("pcm", "wav") or (fmt == "pcm" and not server.pcm_formats):
                self._json(400, {"error": {"message": f"response_format {fmt!r} is not supported"}})
                return
            samples, sample_rate = server._speak(str(body.get("input", "")))
            samples = np.asarray(samples, dtype=np.int16)
            if fmt == "wav":
                out = io.BytesIO()
                sf.write(out, samples, sample_rate, format="WAV", subtype="PCM_16")
                self._send(200, "audio/wav", out.getvalue())
                return
            if sample_rate != PCM_SAMPLE_RATE and len(samples):
                samples = soxr.resample(samples, sample_rate, PCM_SAMPLE_RATE, "HQ")
            pcm = samples.astype("<i2").tobytes()
            self.send_response(200)
            self.send_header("Content-Type", "audio/pcm")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(pcm), 8192):
                piece = pcm[start:start + 8192]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _json(self, status: int, payload: dict) -> None:
            self._send(status, "application/json", json.dumps(payload).encode())

        def _send(self, status: int, kind: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main() -> None:
    """``python tests/engine_server.py``: serve whisper and piper for a manual run; prints the base URL (Ctrl-C stops)."""
    from speech.recognition import WhisperRecognizer
    from speech.synthesis import PiperSynthesizer

    recognizer, synthesizer = WhisperRecognizer(), PiperSynthesizer()
    recognizer.warm_up()
    synthesizer.warm_up()
    server = EngineServer(recognizer.transcribe, synthesizer)
    print(server.url, flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
