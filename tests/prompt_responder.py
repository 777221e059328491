"""The responder of the audio-prompt end-to-end test (tests/test_prompts_e2e.py): the caller's first
turn is answered with a sentence and a prompt of real speech (a 7.1 s LibriVox reading), later
turns are echoed."""

from pathlib import Path

from core.responder import Play

PROMPT = Path(__file__).resolve().parent / "data" / "librivox_ss01_0870.flac"


def respond(text, call):
    if sum(turn["speaker"] == "caller" for turn in call.history) <= 1:  # the history ends with this turn
        return ["Please hold.", Play(str(PROMPT))]
    return f"You said: {text}"
