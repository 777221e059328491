"""End to end: a responder's audio prompt played to a real caller, who barges in over it with real speech.

The real server (``python app.py``, default engines) with ``RESPONDER=tests.prompt_responder:respond``
and callsim over a real WebSocket. Marked ``e2e``.
"""

import sys

import pytest

from tests.prompt_responder import PROMPT
from tests.test_e2e import CORPUS, ONE_TWO_THREE, free_port, run_callsim, start_server, stop_server, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e


def test_a_caller_barges_in_over_a_prompt_and_is_answered(tmp_path):
    # "one two three" is answered with "Please hold." and a 7.1 s prompt; 2.5 s into that reply
    # (about 1.5 s into the prompt) the caller says "go forward ten meters" over it.
    process, url = start_server([sys.executable, "app.py"], tmp_path / "server.log", free_port(),
                                RESPONDER="tests.prompt_responder:respond", GREETING="")
    try:
        report, _ = run_callsim(tmp_path, "--quiet-s", "0.8", ONE_TWO_THREE, "interrupt:2.5", CORPUS / "goforward.flac",
                                url=url, timeout_s=90)
    finally:
        stop_server(process)
    callers, bots = turns(report, "caller"), turns(report, "bot")
    print([(t["speaker"], t["text"], t.get("heard")) for t in report["call"]["turns"]])
    assert bots[0]["text"] == f"Please hold. [played {PROMPT.name}]"
    held = bots[0]
    assert held["interrupted"] is True and report["counts"]["clears_received"] == 1
    assert held["heard"] == "Please hold."  # its mark was echoed; the prompt's never was
    played_ms = held["end_ms"] - held["start_ms"]
    print(f"the reply played {played_ms} ms before the clear")
    assert 1500 < played_ms < 7100  # cleared in the prompt, not after "Please hold." nor at its end
    assert len(callers) == 2 and word_error_rate("go forward ten meters", callers[1]["text"]) <= 0.25
    assert len(bots) == 2 and bots[1]["text"] == f"You said: {callers[1]['text']}" and not bots[1].get("interrupted")
    assert 0 < held["end_ms"] - callers[1]["start_ms"] <= 600  # barge-in reaction, media clock
