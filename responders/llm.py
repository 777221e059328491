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

Tools (``LLM_TOOLS``, ``LLM_BUILTIN_TOOLS``): each request offers them; when the model's stream
ends with ``tool_calls`` (streamed as deltas: an index, an id, the name, the arguments' JSON in
pieces), each is run (``responders.tools``; the built-in ones become pieces,
``responders.call_tools``), a ``core.responder.ToolCall`` is yielded for the record, and the
request is sent again with the assistant's ``tool_calls`` message and one ``role: tool`` message
per call (its JSON result, or ``{"error": …}``), at most ``max_tool_rounds`` times.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Iterable, Iterator

import openai

from core.chat_messages import chat_messages
from core.responder import CallContext, Goodbye, ToolCall, Transfer
from core.settings import Settings
from responders.call_tools import CallTools, parse_targets
from responders.tools import Tool, ToolDefinitionError, load_tools, run_tool

log = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly assistant talking with a caller on the phone. Your words are spoken aloud by a "
    "speech synthesizer, so answer in one to three short sentences of plain spoken English: no lists, "
    "no markdown, no emoji, no URLs. If you did not understand the caller, ask them to repeat."
)
_UNSPEAKABLE = re.compile(r"[*_#`~>|]+")  # markdown a model may emit despite the prompt; a synthesizer would read it out
NO_API_KEY = "no-key"  # local servers (Ollama, llama.cpp) ignore the key; the client needs a value
MAX_TOOL_ROUNDS = 5  # tool calls answered per reply before the model must answer in words (a loop costs the caller's wait)


class LlmResponder:
    """Streaming chat-completions responder: ``respond(text, call) -> Iterator[str | ToolCall | Transfer]``.

    Args:
        base_url: the API's base URL, up to and including ``/v1`` (e.g. ``http://localhost:11434/v1``).
        model: the model name the server knows (e.g. ``llama3.2``, ``gpt-4o-mini``).
        api_key: bearer token; ``""`` for servers that need none.
        system_prompt: the system message of every request.
        timeout_s: connect and per-read timeout of the HTTP request, s; a stalled stream ends
            with ``openai.APITimeoutError`` so its thread does not wait forever.
        max_tokens: longest reply, in tokens (a phone reply should be short).
        tools: functions the model may call (``responders.tools.load_tools``).
        call_tools: the built-in tools that act on the call; ``None``: none.
        tool_timeout_s: longest run of one tool, s; then the model is told it timed out.
        max_tool_rounds: rounds of tool calls answered per reply; the request after the last
            one forbids tools (``tool_choice: "none"``).

    Raises:
        ValueError: an unusable URL or model, or a tool named like a built-in one.
    """

    cooperative = True  # its HTTP client uses gevent's patched sockets: read on the hub (runtime.reply_stream)

    def __init__(self, base_url: str, model: str, api_key: str = "", system_prompt: str = DEFAULT_SYSTEM_PROMPT,
                 *, timeout_s: float = 15.0, max_tokens: int = 300, tools: Iterable[Tool] = (),
                 call_tools: CallTools | None = None, tool_timeout_s: float = 10.0,
                 max_tool_rounds: int = MAX_TOOL_ROUNDS) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"LLM_BASE_URL must be an http(s) URL such as http://localhost:11434/v1, got {base_url!r}")
        if not model:
            raise ValueError("LLM_MODEL must name a model (e.g. llama3.2)")
        self.model = model
        self.system_prompt = system_prompt
        self.max_tokens = max_tokens
        self.tools = {tool.name: tool for tool in tools}
        self.call_tools = call_tools or CallTools(())
        clash = sorted(set(self.tools) & set(self.call_tools.names))
        if clash:
            raise ToolDefinitionError(f"LLM_TOOLS: {', '.join(clash)} is the name of a built-in tool (LLM_BUILTIN_TOOLS)")
        self.tool_specs = [tool.spec for tool in self.tools.values()] + self.call_tools.specs
        self.tool_timeout_s = tool_timeout_s
        self.max_tool_rounds = max_tool_rounds
        # No retries: a retry after a timeout would double the caller's wait; the apology is better.
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key or NO_API_KEY, timeout=timeout_s, max_retries=0)

    def __call__(self, text: str, call: CallContext) -> Iterator[str | ToolCall | Transfer]:
        messages = chat_messages(self.system_prompt, call.history, text=text, dtmf=call.dtmf)
        return self._stream(messages)

    def _stream(self, messages: list[dict]) -> Iterator[str | ToolCall | Transfer]:
        """Text pieces as they come; after each round of tool calls, their records, then the next round's text.

        Raises:
            RuntimeError: the model still asked for tools when they were no longer offered.
        """
        said = ""  # the text of this reply so far
        for round_number in range(self.max_tool_rounds + 1):
            last_round = round_number == self.max_tool_rounds
            words: list[str] = []
            calls = yield from self._request(messages, words, tool_choice="none" if last_round else None,
                                             join=bool(said) and not said[-1].isspace())
            said += "".join(words)
            spoke = bool(said.strip())
            if not calls:
                return
            if last_round:
                raise RuntimeError(f"the model asked for tools again after {self.max_tool_rounds} rounds of them")
            messages = [*messages, {"role": "assistant", "content": "".join(words), "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls]}]
            action: Goodbye | Transfer | None = None
            for call in calls:
                record, piece = self._run(call, spoke=spoke, action_taken=action is not None)
                action = action or piece
                content = record.result if record.error is None else json.dumps({"error": record.error})
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
                # Not the arguments or the error's text at INFO: they may hold what the caller said.
                log.info("tool call %s: %s in %d ms", record.name, "failed" if record.error else "ok", record.elapsed_ms)
                if record.error:
                    log.debug("tool call %s failed: %s", record.name, record.error)
                yield record
            if action is not None:  # the call is ending or being transferred: no more words from the model
                yield action
                return

    def _request(self, messages: list[dict], words: list[str], *, tool_choice: str | None, join: bool):
        """Send one request and yield its text pieces; return its tool calls (``[]``: none), each
        ``{"id", "name", "arguments"}`` with the arguments' JSON text. ``words`` gets the raw text."""
        # The SDK sends the request and raises its typed errors (status, timeout, connection); the
        # events are read raw: its typed chunk objects cost more CPU than receiving the token (on
        # the event loop, per token of every call): 399 -> 111 µs per token, measured here.
        extra: dict = {}
        if self.tool_specs:
            extra["tools"] = self.tool_specs
            if tool_choice:
                extra["tool_choice"] = tool_choice
        request = self.client.chat.completions.with_streaming_response.create(
            model=self.model, messages=messages, stream=True, max_tokens=self.max_tokens, **extra,
        )
        calls = ToolCallDeltas()
        with request as response:  # closed also when the caller barged in and the generator is closed early
            for line in response.iter_lines():
                delta = sse_delta(line)
                if delta is DONE:
                    break
                if not delta:
                    continue
                if delta.get("tool_calls"):
                    calls.add(delta["tool_calls"])
                content = delta.get("content")
                if content:
                    if join and not words and not content[0].isspace():
                        yield " "  # the text before the tool calls ended a sentence; keep the next one apart
                    words.append(content)
                    yield _UNSPEAKABLE.sub("", content)
        return calls.complete()

    def _run(self, call: dict, *, spoke: bool, action_taken: bool) -> tuple[ToolCall, Goodbye | Transfer | None]:
        """Run one tool call; never raises for the model's mistakes or the tool's failure."""
        name = call["name"]
        try:
            arguments = json.loads(call["arguments"] or "{}")
            if not isinstance(arguments, dict):
                raise ValueError(f"expected a JSON object, got {type(arguments).__name__}")
        except ValueError as exc:  # json.JSONDecodeError too: the model wrote broken JSON
            return ToolCall(name, {}, None, f"arguments are not a JSON object: {exc}", 0), None
        if name in self.call_tools:
            if action_taken:
                return ToolCall(name, arguments, None, "the call is already ending or being transferred", 0), None
            return self.call_tools.act(name, arguments, spoke=spoke)
        tool = self.tools.get(name)
        if tool is None:
            known = ", ".join([*self.tools, *self.call_tools.names]) or "none"
            return ToolCall(name, arguments, None, f"there is no tool named {name!r} (the tools: {known})", 0), None
        return run_tool(tool, arguments, self.tool_timeout_s), None


class ToolCallDeltas:
    """The tool calls of one streamed reply, put together from their deltas.

    Each delta of ``choices[0].delta.tool_calls`` carries the call's ``index`` and some of its
    ``id``, ``function.name`` and ``function.arguments`` (the JSON text in pieces, to be
    concatenated). Servers differ: some send a whole call in one delta, some no ``index`` (the
    position in the list is used) or no ``id`` (``call_<index>`` is made up, since the ``tool``
    message must name it), some repeat the name in each delta.
    """

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, deltas: list[dict]) -> None:
        """Take one event's ``tool_calls`` list."""
        for position, delta in enumerate(deltas):
            index = delta.get("index", position)
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            call["id"] = delta.get("id") or call["id"]
            function = delta.get("function") or {}
            name = function.get("name") or ""
            if name and name != call["name"]:
                call["name"] += name
            call["arguments"] += function.get("arguments") or ""

    def complete(self) -> list[dict[str, str]]:
        """The calls in index order: ``{"id", "name", "arguments"}``."""
        return [{**call, "id": call["id"] or f"call_{index}"} for index, call in sorted(self._calls.items())]


DONE = object()  # what sse_content returns for the stream's last event


def sse_delta(line: str) -> "dict | None | object":
    """The ``choices[0].delta`` of one server-sent event line of a chat completions stream.

    ``data: {chat.completion.chunk}`` gives the delta dict (``content``, ``tool_calls``…; ``None``
    if the chunk has no choice), ``data: [DONE]`` gives :data:`DONE`, and any other line (blank
    separators, ``:`` comments, ``event:``) ``None``. Source: the OpenAI API reference,
    "Streaming" (chat completions).

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
    return (choices[0].get("delta") or {}) if choices else None


def sse_content(line: str) -> "str | None | object":
    """The text of one event line: ``choices[0].delta.content``, else as :func:`sse_delta`.

    Raises:
        RuntimeError, ValueError: as :func:`sse_delta`.
    """
    delta = sse_delta(line)
    return delta.get("content") if isinstance(delta, dict) else delta


def make_llm_responder(settings: Settings) -> LlmResponder:
    """Build the responder from ``LLM_*`` settings (``core.settings``); ``RESPONDER_TIMEOUT_S`` bounds each read.
    With ``LLM_SPECULATIVE`` it is marked speculative (``core.responder.speculative``): a chat request
    has no side effects, so it may be sent during the caller's pause. ``LLM_TOOLS`` is imported
    and its functions' schemas built here, so a tool that cannot be one stops the start-up.

    Raises:
        ValueError: ``LLM_BASE_URL`` or ``LLM_MODEL`` is unusable, ``LLM_TRANSFER_TARGETS`` holds
            something that is no target, ``LLM_TOOL_TIMEOUT_S`` is not under ``RESPONDER_TIMEOUT_S``,
            or ``LLM_SPECULATIVE`` is asked for with ``LLM_TOOLS``.
        responders.tools.ToolDefinitionError: (a ``ValueError``) a tool cannot be one.
    """
    if settings.llm_tools and settings.llm_speculative:
        # A speculative request may be for a turn the caller goes on with; its tools would have run anyway.
        raise ValueError("LLM_SPECULATIVE cannot be used with LLM_TOOLS: tools would run for turns the caller has not finished")
    if settings.llm_tool_timeout_s >= settings.responder_timeout_s:
        raise ValueError(f"LLM_TOOL_TIMEOUT_S ({settings.llm_tool_timeout_s:g} s) must be under RESPONDER_TIMEOUT_S "
                         f"({settings.responder_timeout_s:g} s), the wait for each piece of the reply, which a tool's run is part of")
    try:
        targets = parse_targets(settings.llm_transfer_targets)
    except ValueError as exc:
        raise ValueError(f"LLM_TRANSFER_TARGETS: {exc}") from None
    # The built-ins come with LLM_TOOLS only: a model without tool support answers any request that
    # offers tools with an HTTP error. transfer_call needs LLM_TRANSFER_TARGETS: a model must not
    # transfer a caller to a number the caller asked for (toll fraud).
    names = [name.strip() for name in settings.llm_builtin_tools.split(",") if name.strip()] if settings.llm_tools else []
    if "transfer_call" in names and not targets:
        log.warning("LLM_TOOLS: transfer_call is not offered without LLM_TRANSFER_TARGETS")
        names.remove("transfer_call")
    responder = LlmResponder(
        settings.llm_base_url, settings.llm_model, settings.llm_api_key,
        settings.llm_system_prompt or DEFAULT_SYSTEM_PROMPT,
        timeout_s=settings.responder_timeout_s, max_tokens=settings.llm_max_tokens,
        tools=load_tools(settings.llm_tools) if settings.llm_tools else (),
        call_tools=CallTools(names, targets), tool_timeout_s=settings.llm_tool_timeout_s,
    )
    responder.speculative = settings.llm_speculative  # core.responder.is_speculative reads it
    return responder
