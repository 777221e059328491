"""Backchannels: what a listener says over a speaker without taking the turn ("mhm", "okay"),
and the stop words that take it however short they are ("no", "wait").

A caller who says "mhm" while the bot talks is listening, not interrupting (issue #14; the
peers' users' complaint: pipecat#1084, livekit/agents#1229). Pure: text in, answer out.
"""

from __future__ import annotations

import re

DEFAULT_BACKCHANNELS = (
    "mhm", "mm-hmm", "mm hmm", "mmhmm", "hmm", "mm", "uh-huh", "uh huh", "okay", "ok", "yeah", "yep",
    "yes", "right", "sure", "alright", "all right", "i see", "got it", "oh", "ah", "uh", "um", "ha", "haha",
)
"""Acknowledgements, fillers and laughter that never interrupt the bot (``BACKCHANNELS``). "No",
"wait" and "stop" are not among them: they do. ("Ha ha!" is also what whisper tiny.en writes for
the real "uh-huh" of tests/data/backchannel/uhuh.flac.)"""

DEFAULT_STOP_WORDS = (
    "no", "nope", "wait", "stop", "hold on", "hang on", "sorry", "excuse me", "pardon", "what", "hello", "hey",
    "cancel", "enough",
)
"""Words that stop the bot even when said in less than ``BARGE_IN_MIN_MS`` (``BARGE_IN_WORDS``).
Any other short utterance over the bot does not: a blip of the bot's own echo that the canceller
let through is transcribed as a short phrase ("Thank you.", whisper's usual guess on a
quarter-second of noise), and it must not stop the bot."""

_NOISE = re.compile(r"[\[(][^\])]*[\])]")  # whisper's "(coughing)", "[MUSIC]": not words
_WORDS = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")


def words_of(text: str) -> list[str]:
    """Lower-case words of ``text``, without punctuation and without bracketed noise tags."""
    return _WORDS.findall(_NOISE.sub(" ", text.lower()))


def is_backchannel(text: str, phrases: tuple[str, ...] = DEFAULT_BACKCHANNELS) -> bool:
    """True if ``text`` holds no word outside ``phrases`` (``""`` and noise tags alone count as
    backchannel: nothing was said). Phrases of several words ("all right") match as a whole;
    matching ignores case and punctuation ("Okay, yeah." is a backchannel; "Okay, wait." is not)."""
    words = words_of(text)
    patterns = sorted((words_of(p) for p in phrases), key=len, reverse=True)
    i = 0
    while i < len(words):
        for pattern in patterns:
            if pattern and words[i : i + len(pattern)] == pattern:
                i += len(pattern)
                break
        else:
            return False
    return True


def has_stop_word(text: str, phrases: tuple[str, ...] = DEFAULT_STOP_WORDS) -> bool:
    """True if ``text`` holds one of ``phrases`` as whole words ("No, no." and "Okay, wait." do;
    "nobody" and "whatever" do not); matching ignores case and punctuation."""
    words = words_of(text)
    for phrase in phrases:
        pattern = words_of(phrase)
        if pattern and any(words[i : i + len(pattern)] == pattern for i in range(len(words) - len(pattern) + 1)):
            return True
    return False
