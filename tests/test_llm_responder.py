"""The LLM responder against a local server that streams server-sent events over a real socket."""

import json
import time

import openai
import pytest

from app import make_responder
from core.responder import CallContext, Goodbye, ResponderConfigError, ToolCall, Transfer, is_speculative
from core.settings import SettingsError, load_settings
from responders.call_tools import CallTools
from responders.llm import DEFAULT_SYSTEM_PROMPT, DONE, LlmResponder, ToolCallDeltas, make_llm_responder, sse_content, sse_delta
from responders.tools import make_tool
from tests.llm_server import ChatServer, ToolCalls, tokens

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
    assert "tools" not in request  # none offered: some servers refuse an empty list
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


def lookup(name: str) -> dict:
    """Find a customer's next appointment.

    Args:
        name: the customer's name.
    """
    if name == "boom":
        raise KeyError(name)
    return {"name": name, "when": "Tuesday"}


def tool_results(request):
    return [(m["tool_call_id"], m["content"]) for m in request["messages"] if m["role"] == "tool"]


def test_streamed_tool_calls_are_run_and_their_results_sent_back_before_the_answer():
    def reply(messages, index):
        if index == 0:
            return ToolCalls((("lookup", {"name": "Ann"}), ("lookup", {"name": "boom"})), text="Let me check.")
        return "Ann comes on Tuesday."

    with ChatServer(reply) as server:
        responder = LlmResponder(server.url, "m", tools=[make_tool(lookup)], call_tools=CallTools())
        pieces = list(responder("When is Ann coming?", context(())))
    records = [p for p in pieces if isinstance(p, ToolCall)]
    assert [(r.name, r.arguments, r.result, r.error) for r in records] == [
        ("lookup", {"name": "Ann"}, '{"name": "Ann", "when": "Tuesday"}', None),
        ("lookup", {"name": "boom"}, None, "KeyError: 'boom'"),
    ]
    text = [p for p in pieces if isinstance(p, str)]
    assert "".join(text) == "Let me check. Ann comes on Tuesday."  # the two rounds' text kept apart by a space
    assert pieces.index(records[0]) == len(tokens("Let me check."))  # the records come between the rounds
    first, second = server.requests
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup", "end_call", "transfer_call"]
    assert first["tools"][0]["function"]["parameters"]["properties"]["name"]["description"] == "the customer's name."
    assert "tool_choice" not in first
    assert second["messages"][-4:-2] == [
        {"role": "user", "content": "When is Ann coming?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_0_0", "type": "function", "function": {"name": "lookup", "arguments": '{"name": "Ann"}'}},
            {"id": "call_0_1", "type": "function", "function": {"name": "lookup", "arguments": '{"name": "boom"}'}}]},
    ]
    assert tool_results(second) == [("call_0_0", '{"name": "Ann", "when": "Tuesday"}'),
                                    ("call_0_1", '{"error": "KeyError: \'boom\'"}')]


def test_broken_arguments_and_unknown_tools_are_answered_with_errors():
    def reply(messages, index):
        return ToolCalls((("lookup", '{"name": "An'), ("lookup", '["Ann"]'), ("book", {"day": "monday"}))) if index == 0 else "Sorry."

    with ChatServer(reply) as server:
        pieces = list(LlmResponder(server.url, "m", tools=[make_tool(lookup)])("book me", context(())))
    errors = [p.error for p in pieces if isinstance(p, ToolCall)]
    assert errors[0].startswith("arguments are not a JSON object: Unterminated string")
    assert errors[1] == "arguments are not a JSON object: expected a JSON object, got list"
    assert errors[2] == "there is no tool named 'book' (the tools: lookup)"
    assert [content for _, content in tool_results(server.requests[1])] == [json.dumps({"error": e}) for e in errors]
    assert pieces[-1] == "." and len(server.requests) == 2


def test_the_rounds_of_tool_calls_are_bounded():
    with ChatServer(lambda messages, index: ToolCalls((("lookup", {"name": "Ann"}),))) as server:
        responder = LlmResponder(server.url, "m", tools=[make_tool(lookup)], max_tool_rounds=2)
        pieces = []
        with pytest.raises(RuntimeError, match="asked for tools again after 2 rounds"):
            for piece in responder("loop", context(())):
                pieces.append(piece)
    assert len(server.requests) == 3 and len(pieces) == 2  # two rounds run; the third request forbade tools
    assert [r.get("tool_choice") for r in server.requests] == [None, None, "none"]
    assert len(tool_results(server.requests[2])) == 2


def test_end_call_says_goodbye_and_ends_the_reply():
    reply = ToolCalls((("end_call", {"message": "Bye now!"}),), text="Glad I could help.")
    with ChatServer(lambda messages, index: reply) as server:
        pieces = list(LlmResponder(server.url, "m", call_tools=CallTools())("thanks, bye", context(())))
    record, goodbye = pieces[-2:]
    assert record.name == "end_call" and record.error is None
    assert isinstance(goodbye, Goodbye) and goodbye == "Bye now!"
    assert "".join(p for p in pieces[:-1] if isinstance(p, str)) == "Glad I could help."
    assert len(server.requests) == 1  # no more words after the goodbye


def test_a_transfer_to_a_target_off_the_list_is_refused_back_to_the_model():
    def reply(messages, index):
        target = "+1 900 555 0000" if index == 0 else "+15551234567"
        return ToolCalls((("transfer_call", {"target": target, "announcement": "Connecting you."}),))

    with ChatServer(reply) as server:
        tools = CallTools(transfer_targets=("+15551234567",))
        pieces = list(LlmResponder(server.url, "m", call_tools=tools)("a person please", context(())))
    refused, done, transfer = pieces
    assert refused.error == "+19005550000 is not an allowed transfer target; allowed: +15551234567"
    assert done.error is None and transfer == Transfer("+15551234567", "Connecting you.")
    assert tool_results(server.requests[1]) == [("call_0_0", json.dumps({"error": refused.error}))]
    assert server.requests[0]["tools"][1]["function"]["parameters"]["properties"]["target"]["enum"] == ["+15551234567"]
    assert len(server.requests) == 2


def test_tool_call_deltas_as_servers_send_them():
    calls = ToolCallDeltas()
    calls.add([{"index": 0, "id": "a", "function": {"name": "look", "arguments": ""}}])
    calls.add([{"index": 0, "function": {"name": "up", "arguments": '{"x"'}}])  # a name in pieces
    calls.add([{"index": 1, "id": "b", "function": {"name": "end_call", "arguments": "{}"}},
               {"index": 0, "function": {"arguments": ": 1}"}}])
    calls.add([{"index": 1, "function": {"name": "end_call"}}])  # a name repeated
    assert calls.complete() == [{"id": "a", "name": "lookup", "arguments": '{"x": 1}'},
                                {"id": "b", "name": "end_call", "arguments": "{}"}]
    whole = ToolCallDeltas()
    whole.add([{"function": {"name": "f", "arguments": "{}"}}, {"function": {"name": "g", "arguments": "{}"}}])  # no index, no id
    assert whole.complete() == [{"id": "call_0", "name": "f", "arguments": "{}"}, {"id": "call_1", "name": "g", "arguments": "{}"}]
    assert sse_delta('data: {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}') == {"tool_calls": [{"index": 0}]}


def test_tool_settings():
    responder = make_llm_responder(load_settings({"LLM_TOOLS": "examples.clinic_tools", "LLM_TRANSFER_TARGETS": "+1 555 123 4567"}))
    assert list(responder.tools) == ["next_appointment", "free_slots"] and responder.tool_timeout_s == 10.0
    assert responder.call_tools.names == ("end_call", "transfer_call")
    assert responder.call_tools.transfer_targets == ("+15551234567",)
    with_tools = {"LLM_TOOLS": "tests.llm_tools"}
    assert [s["function"]["name"] for s in make_llm_responder(load_settings({**with_tools, "LLM_BUILTIN_TOOLS": "end_call"})).tool_specs] == [
        "next_appointment", "end_call"]
    assert [s["function"]["name"] for s in make_llm_responder(load_settings({**with_tools, "LLM_BUILTIN_TOOLS": "none"})).tool_specs] == [
        "next_appointment"]
    # No LLM_TOOLS: no tools at all (a model without tool support fails any request offering them);
    # no LLM_TRANSFER_TARGETS: no transfer_call (the model must not dial what a caller asks for).
    assert make_llm_responder(load_settings({})).tool_specs == []
    assert make_llm_responder(load_settings(with_tools)).call_tools.names == ("end_call",)
    with pytest.raises(SettingsError, match="LLM_BUILTIN_TOOLS"):
        load_settings({"LLM_BUILTIN_TOOLS": "end_call,hang_up"})
    for environ, message in [
        ({"LLM_TOOLS": "examples.clinic_tools", "LLM_SPECULATIVE": "true"}, "LLM_SPECULATIVE cannot be used with LLM_TOOLS"),
        ({"LLM_TOOL_TIMEOUT_S": "15"}, r"LLM_TOOL_TIMEOUT_S \(15 s\) must be under RESPONDER_TIMEOUT_S"),
        ({"LLM_TRANSFER_TARGETS": "+15551234567,the desk"}, "LLM_TRANSFER_TARGETS: 'the desk' is not an E.164 number"),
        ({"LLM_TOOLS": "examples.front_desk"}, "tool examples.front_desk.respond, parameter call: unsupported type CallContext"),
        ({"LLM_TOOLS": "tests.llm_tools", "LLM_BUILTIN_TOOLS": "end_call"}, None),
    ]:
        settings = load_settings({"RESPONDER": "llm", **environ})
        if message is None:
            assert list(make_responder(settings).tools) == ["next_appointment"]
            continue
        with pytest.raises(ResponderConfigError, match=f"RESPONDER=llm: {message}"):  # stops the start-up
            make_responder(settings)
