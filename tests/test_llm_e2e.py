"""End to end with the LLM responder: the real server and engines, callsim on real speech, and a local
chat completions server that streams server-sent events over a real socket, including a tool call."""

import json
import os
import subprocess
import sys

import pytest
import soundfile as sf

from tests import llm_tools
from tests.llm_server import ChatServer, ToolCalls
from tests.test_e2e import GREETING, ONE_TWO_THREE, REPO, data_env, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e

STORY = ("Let me count for you slowly. One comes first of all the numbers. Two comes right after one. "
         "Three follows two, and four follows three. Five is next, and then six. Seven and eight come after that. "
         "Nine is almost ten. Ten is where most people stop. That is how counting goes.")


LOOKING = "Let me look that up."


def reply(messages, index):
    heard = messages[-1]["content"]
    if index == 1:
        return STORY
    if index == 2:  # the third turn: the model calls a tool, saying something meanwhile
        return ToolCalls((("next_appointment", {"name": heard}),), text=LOOKING)
    if index == 3:  # the answer can only come from the tool's result, sent back in this request
        return f"Your next appointment is {json.loads(heard)}."
    return f"You said {heard} That is a fine start."


def test_three_turns_with_the_llm_a_barge_in_that_trims_the_history_and_a_tool_call(tmp_path, whisper):
    tool_log = tmp_path / "tool_calls.jsonl"
    with ChatServer(reply, token_delay_s=0.1) as llm:
        env = {**os.environ, **data_env(tmp_path), "GREETING": GREETING, "RESPONDER": "llm", "LLM_BASE_URL": llm.url,
               "LLM_MODEL": "local-test", "LLM_SYSTEM_PROMPT": "Answer briefly.", "LLM_TOOLS": "tests.llm_tools", "LLM_TRANSFER_TARGETS": "+15550123",
               "CALLSTREAM_TEST_TOOL_LOG": str(tool_log)}
        report_path = tmp_path / "report.json"
        command = [sys.executable, "tools/callsim.py", "--json", str(report_path), "--out", str(tmp_path / "heard.wav"), "--strict",
                   str(ONE_TWO_THREE), str(ONE_TWO_THREE), "interrupt:3", str(ONE_TWO_THREE)]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
        print(result.stdout[-4000:])
        (tmp_path / "callsim.log").write_text(result.stderr)
        assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["counts"]["violations"] == 0

    callers = turns(report, "caller")
    assert len(callers) == 3 and all(word_error_rate("one two three", t["text"]) == 0 for t in callers)
    assert len(llm.requests) == 4  # the third turn took two: the tool call, then the answer from its result
    assert all(r["model"] == "local-test" and r["stream"] is True for r in llm.requests)

    bots = [b for b in turns(report, "bot") if b["text"] != GREETING]
    assert bots[0]["text"] == reply([{"content": callers[0]["text"]}], 0)
    # The story was interrupted: its text is what the model had produced by then (the barge-in
    # stopped the stream), and the caller heard its first sentence(s), not all of it.
    story = bots[1]
    assert story["interrupted"] is True and report["counts"]["clears_received"] == 1
    assert STORY.startswith(story["text"]) and story["text"].startswith(story["heard"])
    assert story["heard"] and len(story["heard"]) < len(story["text"])
    assert llm.completed == {0: True, 1: False, 2: True, 3: True}  # the barge-in closed the story's stream
    # The third request carries the history trimmed to what was heard, then the caller's last turn.
    messages = llm.requests[2]["messages"]
    assert messages[0] == {"role": "system", "content": "Answer briefly."}
    assert messages[1:] == [
        {"role": "assistant", "content": GREETING},
        {"role": "user", "content": callers[0]["text"]},
        {"role": "assistant", "content": bots[0]["text"]},
        {"role": "user", "content": callers[1]["text"]},
        {"role": "assistant", "content": story["heard"]},
        {"role": "user", "content": callers[2]["text"]},
    ]
    # Streaming: the story takes >= 6 s to arrive (over 60 tokens, 0.1 s apart), but the caller
    # heard its first sentence(s) before its stream was closed unfinished (asserted above). How
    # soon is a benchmark's question (bench/voice_to_voice.py --llm), not a timed test's: a bound
    # of 3.5 s here failed under the CI's load (4.2-5.7 s).

    # The tool: offered with the built-in ones, run once in the server with the model's
    # arguments, its result sent back in the next request, and the answer made of it heard.
    assert [t["function"]["name"] for t in llm.requests[2]["tools"]] == ["next_appointment", "end_call", "transfer_call"]
    assert [json.loads(line) for line in tool_log.read_text().splitlines()] == [{"name": callers[2]["text"]}]
    call_id = "call_2_0"
    assert llm.requests[3]["messages"][len(messages):] == [
        {"role": "assistant", "content": LOOKING, "tool_calls": [{"id": call_id, "type": "function", "function": {
            "name": "next_appointment", "arguments": json.dumps({"name": callers[2]["text"]})}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps(llm_tools.ANSWER)},
    ]
    answer = bots[2]
    assert answer["text"] == f"{LOOKING} Your next appointment is {llm_tools.ANSWER}."
    [tool_turn] = turns(report, "tool")  # the call record shows the tool call and its result
    assert tool_turn["text"] == (f'next_appointment({json.dumps({"name": callers[2]["text"]})}) -> '
                                 f"{json.dumps(llm_tools.ANSWER)}") and "error" not in tool_turn
    assert not answer.get("interrupted")
    # What the caller heard from the answer's first audio on, recognized: the tool's result.
    samples, sample_rate = sf.read(tmp_path / "heard.wav", dtype="int16")
    heard = whisper.transcribe(samples[report["replies"][-1]["heard_ms"] * sample_rate // 1000:].tobytes(), sample_rate)
    print(f"heard after the tool call: {heard!r}")
    assert all(word in heard.lower() for word in ("appointment", "tuesday"))
