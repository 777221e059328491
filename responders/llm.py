"""A responder that asks a large language model, through any OpenAI-compatible chat completions API.

Works with Ollama (``http://localhost:11434/v1``), the llama.cpp server, vLLM, OpenAI and
others that implement ``POST /chat/completions`` with ``"stream": true`` (server-sent events,
one ``chat.completion.chunk`` per ``data:`` line, then ``data: [DONE]``). The HTTP client is
the ``openai`` package. Select it with ``RESPONDER=llm``; ``LLM_BASE_URL``, ``LLM_MODEL``,
``LLM_API_KEY`` and ``LLM_SYSTEM_PROMPT`` configure it.

The reply streams: :meth:`LlmResponder.__call__` returns a generator of text pieces as the
model produces them, and the call worker speaks each sentence as soon as it is complete. The
history sent with each request is the call's, with interrupted replies cut to what the caller
heard (``core.chat_messages``). Errors (connection refused, HTTP errors, timeouts) are raised
from the generator; the call worker answers them with the apology and the call goes on.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Iterator

import openai

from core.chat_messages import chat_messages
from core.responder import CallContext
from core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly assistant talking with a caller on the phone. Your words are spoken aloud by a "
    "speech synthesizer, so answer in one to three short sentences of plain spoken English: no lists, "
    "no markdown, no emoji, no URLs. If you did not understand the caller, ask them to repeat."
)
_UNSPEAKABLE = re.compile(r"[*_#`~>|]+")  # markdown a model may emit despite the prompt; a synthesizer would read it out
NO_API_KEY = "no-key"  # local servers (Ollama, llama.cpp) ignore the key; the client needs a value


class LlmResponder:
    """Streaming chat-completions responder: ``respond(text, call) -> Iterator[str]``.

    Args:
        base_url: the API's base URL, up to and including ``/v1`` (e.g. ``http://localhost:11434/v1``).
        model: the model name the server knows (e.g. ``llama3.2``, ``gpt-4o-mini``).
        api_key: bearer token; ``""`` for servers that need none.
        system_prompt: the system message of every request.
        timeout_s: connect and per-read timeout of the HTTP request, s; a stalled stream ends
            with ``openai.APITimeoutError`` so its thread does not wait forever.
        max_tokens: longest reply, in tokens (a phone reply should be short).
    """

    cooperative = True  # its HTTP client uses gevent's patched sockets: read on the hub (runtime.reply_stream)

    def __init__(self, base_url: str, model: str, api_key: str = "", system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 *, timeout_s: float = 15.0, max_tokens: int = 300) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLM_BASE_URL must be an http(s) URL such as http://localhost:11434/v1, got {base_url!r}")
        if not model:
            raise ValueError("LLM_MODEL must name a model (e.g. llama3.2)")
        self.model = model
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        # No retries: a retry after a timeout would double the caller's wait; the apology is better.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or NO_API_KEY, timeout=timeout_s, max_retries=0)

    def __call__(self, text: str, call: CallContext) -> Iterator[str]:
        messages = chat_messages(self.system_prompt, call.history, text=text, dtmf=call.dtmf)
        return self._stream(messages)

    def _stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        # The SDK sends the request and raises its typed errors (status, timeout, connection); the
        # events are read raw: its typed chunk objects cost more CPU than receiving the token (on
        # the event loop, per token of every call): 399 -> 111 µs per token, measured here.
        request = self.client.chat.completions.with_streaming_response.create(
            model=self.model, messages=messages, stream=True, max_tokens=self.max_tokens,
        )
        with request as response:  # closed also when the caller barged in and the generator is closed early
            for line in response.iter_lines():
                piece = sse_content(line)
                if piece is DONE:
                    return
                if piece:
                    yield _UNSPEAKABLE.sub("", piece)


DONE = object()  # what sse_content returns for the stream's last event


def sse_content(line: str) -> "str | None | object":
    """The text of one server-sent event line of a chat completions stream.

    ``data: {chat.completion.chunk}`` gives ``choices[0].delta.content`` (``None`` if it has none),
    ``data: [DONE]`` gives :data:`DONE`, and any other line (blank separators, ``:`` comments,
    ``event:``) ``None``. Source: the OpenAI API reference, "Streaming" (chat completions).

    Raises:
        RuntimeError: the event is an error object (a server may report a failure mid-stream).
        ValueError: the data is not JSON.
    """
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    chunk = json.loads(data)
    if "error" in chunk:
        error = chunk["error"]
        raise RuntimeError(f"the model server reported an error: {error.get('message', error) if isinstance(error, dict) else error}")
    choices = chunk.get("choices") or ()
    return (choices[0].get("delta") or {}).get("content") if choices else None


def make_llm_responder(settings: Settings) -> LlmResponder:
    """Build the responder from ``LLM_*`` settings (``core.settings``); ``RESPONDER_TIMEOUT_S`` bounds each read.
    With ``LLM_SPECULATIVE`` it is marked speculative (``core.responder.speculative``): a chat request
    has no side effects, so it may be sent during the caller's pause.

    Raises:
        ValueError: ``LLM_BASE_URL`` or ``LLM_MODEL`` is unusable.
    """
    responder = LlmResponder(
        settings.llm_base_url, settings.llm_model, settings.llm_api_key,
        settings.llm_system_prompt or DEFAULT_SYSTEM_PROMPT,
        timeout_s=settings.responder_timeout_s, max_tokens=settings.llm_max_tokens,
    )
    responder.speculative = settings.llm_speculative  # core.responder.is_speculative reads it
    return responder
