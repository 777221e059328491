"""A local chat completions server that streams for real: server-sent events over HTTP/1.1.

Speaks the OpenAI-compatible ``POST /v1/chat/completions`` with ``"stream": true`` the way
Ollama, vLLM, llama.cpp's server and OpenAI do: ``Content-Type: text/event-stream``, chunked
transfer encoding, one ``data: {chat.completion.chunk}`` event per token, a last chunk with
``finish_reason``, then ``data: [DONE]``. Each event is flushed to the socket on its own, with
``token_delay_s`` between them, so a client sees the reply arrive piece by piece.

The reply to each request comes from ``reply(messages, index)``; every request body is kept in
``requests`` for the test to inspect (e.g. the history the responder sent, the ``tools`` offered,
the ``tool`` messages with the results). ``fail`` makes request ``index`` answer with an HTTP
error, stall before its first byte, or drop the connection mid-stream.

A reply may call tools (:class:`ToolCalls`): after its text, each call streams as real servers
do (OpenAI, vLLM): a first ``delta.tool_calls`` entry with the call's ``index``, ``id``, ``type``
and ``function.name`` and empty arguments, then the arguments' JSON text in pieces of
``ARGUMENT_PIECE_CHARS`` characters, each in its own event with only the ``index``; the last
chunk's ``finish_reason`` is ``tool_calls``.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

ARGUMENT_PIECE_CHARS = 5  # a tool call's arguments arrive split mid-token, as a model writes them


@dataclass(frozen=True)
class ToolCalls:
    """A reply that calls tools: ``calls`` are ``(name, arguments)``, the arguments a dict (sent
    as its JSON) or a string (sent as it is: broken JSON, for a test); ``text`` streams first."""

    calls: tuple[tuple[str, "dict | str"], ...]
    text: str = ""

    def arguments_json(self) -> list[str]:
        return [a if isinstance(a, str) else json.dumps(a) for _, a in self.calls]


class ChatServer:
    """Run the server on 127.0.0.1 on a free port in a daemon thread (a context manager).

    Args:
        reply: ``(messages, request_index) -> str | ToolCalls``, the full reply of a request.
        token_delay_s: pause before each streamed event, s.
        fail: ``request_index -> None | "http500" | ("stall", seconds) | ("drop", after_tokens)``.
    """

    def __init__(self, reply: Callable[[list[dict], int], "str | ToolCalls"], *, token_delay_s: float = 0.0,
                 fail: Callable[[int], object] = lambda index: None) -> None:
        self.reply = reply
        self.token_delay_s = token_delay_s
        self.fail = fail
        self.requests: list[dict] = []
        self.headers: list[dict] = []  # each request's headers, names in lower case
        self.completed: dict[int, bool] = {}  # request index → its stream reached [DONE] (False: the client left)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL for ``LLM_BASE_URL``: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "ChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _take(self, body: dict, headers: dict) -> int:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            return len(self.requests) - 1


def tokens(text: str) -> list[str]:
    """Split like a tokenizer roughly does: words with their leading space, punctuation apart."""
    return re.findall(r"\s*[\w']+|\s*[^\w\s]", text)


def _handler_for(server: ChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            index = server._take(body, {k.lower(): v for k, v in self.headers.items()})
            failure = server.fail(index)
            if failure == "http500":
                self._json(500, {"error": {"message": "the model crashed", "type": "server_error"}})
                return
            if isinstance(failure, tuple) and failure[0] == "stall":
                time.sleep(failure[1])
            answer = server.reply(body.get("messages", []), index)
            calls = answer if isinstance(answer, ToolCalls) else None
            text = calls.text if calls else answer
            if not body.get("stream"):
                self._json(200, _completion(body, text, calls))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            pieces = tokens(text)
            drop_after = failure[1] if isinstance(failure, tuple) and failure[0] == "drop" else None
            try:
                self._event(_chunk(body, {"role": "assistant", "content": ""}, None))
                for number, piece in enumerate(pieces):
                    if drop_after is not None and number >= drop_after:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)  # mid-stream: no last chunk, no [DONE]
                        return
                    time.sleep(server.token_delay_s)
                    self._event(_chunk(body, {"content": piece}, None))
                for number, ((name, _), arguments) in enumerate(zip(calls.calls, calls.arguments_json()) if calls else ()):
                    time.sleep(server.token_delay_s)
                    self._event(_chunk(body, {"tool_calls": [{"index": number, "id": f"call_{index}_{number}", "type": "function",
                                                              "function": {"name": name, "arguments": ""}}]}, None))
                    for start in range(0, len(arguments), ARGUMENT_PIECE_CHARS):
                        time.sleep(server.token_delay_s)
                        piece = arguments[start:start + ARGUMENT_PIECE_CHARS]
                        self._event(_chunk(body, {"tool_calls": [{"index": number, "function": {"arguments": piece}}]}, None))
                self._event(_chunk(body, {}, "tool_calls" if calls else "stop"))
                self._send_chunk(b"data: [DONE]\n\n")
                self._send_chunk(b"")  # end of the chunked body
                server.completed[index] = True
            except (BrokenPipeError, ConnectionResetError):
                server.completed[index] = False  # the client closed the stream early (a barge-in)

        def _event(self, payload: dict) -> None:
            self._send_chunk(f"data: {json.dumps(payload)}\n\n".encode())

        def _send_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _json(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _chunk(body: dict, delta: dict, finish_reason: str | None) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": int(time.time()),
        "model": body.get("model", ""), "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def _completion(body: dict, text: str, calls: ToolCalls | None) -> dict:
    message: dict = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = [{"id": f"call_{number}", "type": "function", "function": {"name": name, "arguments": arguments}}
                                 for number, ((name, _), arguments) in enumerate(zip(calls.calls, calls.arguments_json()))]
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
    }
