"""The LLM responder against a local server that streams server-sent events over a real socket."""

import time

import openai
import pytest

from core.responder import CallContext, is_speculative
from core.settings import load_settings
from responders.llm import DEFAULT_SYSTEM_PROMPT, DONE, LlmResponder, make_llm_responder, sse_content
from tests.llm_server import ChatServer, tokens

HISTORY = (
    {"speaker": "bot", "text": "Hello! How can I help?", "start_ms": 100, "end_ms": 2000},
    {"speaker": "caller", "text": "Tell me a story.", "start_ms": 3000, "end_ms": 4000},
    {"speaker": "bot", "text": "Once there was a phone. It rang all day. Nobody answered.", "start_ms": 5000, "end_ms": 7000,
     "interrupted": True, "heard": "Once there was a phone."},
    {"speaker": "caller", "text": "Why did it ring?", "start_ms": 7100, "end_ms": 8000},
)


def context(history=HISTORY, dtmf=None) -> CallContext:
    return CallContext(call_sid="CA1", stream_sid="MZ1", history=history, dtmf=dtmf)


def test_the_reply_streams_piece_by_piece_with_the_heard_history():
    reply = "Because someone wanted to talk. Would you answer it?"
    with ChatServer(lambda messages, index: reply, token_delay_s=0.02) as server:
        responder = LlmResponder(server.url, "test-model", "secret", "Be brief.")
        arrivals = []
        for piece in responder("Why did it ring?", context()):
            arrivals.append((time.monotonic(), piece))
    assert "".join(piece for _, piece in arrivals) == reply
    assert len(arrivals) == len(tokens(reply))  # one piece per event, not the whole body at the end
    assert arrivals[-1][0] - arrivals[0][0] >= 0.02 * (len(arrivals) - 2)
    [request] = server.requests
    assert request["model"] == "test-model" and request["stream"] is True and request["max_tokens"] == 300
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a story."},
        {"role": "assistant", "content": "Once there was a phone."},  # only what the caller heard
        {"role": "user", "content": "Why did it ring?"},
    ]
    assert server.headers[0]["authorization"] == "Bearer secret"


def test_markdown_is_not_read_out():
    with ChatServer(lambda messages, index: "**Sure.** Here is `one` thing.") as server:
        assert "".join(LlmResponder(server.url, "m")("hi", context(()))) == "Sure. Here is one thing."


@pytest.mark.parametrize("failure, error", [
    ("http500", openai.InternalServerError),
    (("stall", 1.5), openai.APITimeoutError),
])
def test_server_errors_and_timeouts_are_raised_from_the_stream(failure, error):
    with ChatServer(lambda messages, index: "Never heard.", fail=lambda index: failure) as server:
        responder = LlmResponder(server.url, "m", timeout_s=0.5)
        began = time.monotonic()
        with pytest.raises(error):
            list(responder("hello", context(())))
        assert time.monotonic() - began < 1.4  # the timeout bounds the wait; no retries


def test_a_dropped_connection_mid_stream_raises_after_the_pieces_that_came():
    with ChatServer(lambda messages, index: "One two three four five.", fail=lambda index: ("drop", 2)) as server:
        pieces = []
        with pytest.raises(Exception, match="incomplete chunked read"):  # the HTTP client's protocol error
            for piece in LlmResponder(server.url, "m")("hello", context(())):
                pieces.append(piece)
    assert "".join(pieces) == "One two"


def test_nothing_listening_is_a_connection_error():
    with ChatServer(lambda messages, index: "") as server:
        url = server.url
    with pytest.raises(openai.APIConnectionError):
        list(LlmResponder(url, "m", timeout_s=1)("hello", context(())))


def test_closing_the_stream_early_closes_the_connection():
    with ChatServer(lambda messages, index: "word " * 200, token_delay_s=0.01) as server:
        stream = LlmResponder(server.url, "m")("hello", context(()))
        assert next(stream) == "word"
        stream.close()  # what a barge-in does, through the generator's garbage collection
    assert len(server.requests) == 1


def test_settings_build_the_responder_and_reject_bad_ones():
    responder = make_llm_responder(load_settings({}))
    assert responder.system_prompt == DEFAULT_SYSTEM_PROMPT and responder.model == "llama3.2"
    assert not is_speculative(responder) and is_speculative(make_llm_responder(load_settings({"LLM_SPECULATIVE": "true"})))
    with pytest.raises(ValueError, match="LLM_MODEL"):
        make_llm_responder(load_settings({}, {"LLM_MODEL": ""}))
    with pytest.raises(ValueError, match="LLM_BASE_URL"):
        LlmResponder("localhost:11434", "m")


def test_sse_lines():
    assert sse_content('data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}') == "Hi"
    assert sse_content('data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}') is None
    assert sse_content('data: {"choices": [], "usage": {"total_tokens": 9}}') is None
    assert sse_content("data: [DONE]") is DONE
    assert sse_content("") is None and sse_content(": keep-alive") is None and sse_content("event: ping") is None
    with pytest.raises(RuntimeError, match="overloaded"):
        sse_content('data: {"error": {"message": "overloaded", "type": "server_error"}}')
    with pytest.raises(ValueError):
        sse_content("data: {not json")
