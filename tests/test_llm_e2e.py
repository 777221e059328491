"""End to end with the LLM responder: the real server and engines, callsim on real speech, and a local
chat completions server that streams server-sent events over a real socket."""

import json
import os
import subprocess
import sys

import pytest

from tests.llm_server import ChatServer
from tests.test_e2e import GREETING, ONE_TWO_THREE, REPO, data_env, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e

STORY = ("Let me count for you slowly. One comes first of all the numbers. Two comes right after one. "
         "Three follows two, and four follows three. Five is next, and then six. Seven and eight come after that. "
         "Nine is almost ten. Ten is where most people stop. That is how counting goes.")


def reply(messages, index):
    heard = messages[-1]["content"]
    if index == 1:
        return STORY
    return f"You said {heard} That is a fine start." if index == 0 else f"Now I heard {heard} Thank you."


def test_three_turns_with_the_llm_and_a_barge_in_that_trims_the_history(tmp_path):
    with ChatServer(reply, token_delay_s=0.1) as llm:
        env = {**os.environ, **data_env(tmp_path), "GREETING": GREETING, "RESPONDER": "llm", "LLM_BASE_URL": llm.url,
               "LLM_MODEL": "local-test", "LLM_SYSTEM_PROMPT": "Answer briefly."}
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
    assert len(llm.requests) == 3
    assert all(r["model"] == "local-test" and r["stream"] is True for r in llm.requests)

    bots = [b for b in turns(report, "bot") if b["text"] != GREETING]
    assert bots[0]["text"] == reply([{"content": callers[0]["text"]}], 0)
    assert bots[2]["text"] == reply([{"content": callers[2]["text"]}], 2)
    # The story was interrupted: its text is what the model had produced by then (the barge-in
    # stopped the stream), and the caller heard its first sentence(s), not all of it.
    story = bots[1]
    assert story["interrupted"] is True and report["counts"]["clears_received"] == 1
    assert STORY.startswith(story["text"]) and story["text"].startswith(story["heard"])
    assert story["heard"] and len(story["heard"]) < len(story["text"])
    assert llm.completed == {0: True, 1: False, 2: True}  # the barge-in closed the story's stream
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
