"""End of turn: how long a caller's silence must last before the bot answers (issue #14 part 3).

A fixed silence either answers callers who pause mid-sentence in fragments or keeps everyone
waiting. The evidence at a pause, measured on the labelled pause points of
``tests/data/pause_points.tsv`` (``bench/turn_taking.py``; docs/benchmarks.md, "End of turn"):

* **The transcript** (whisper tiny.en's, of the audio up to the pause). Whisper writes an
  unfinished phrase without a final period ("And so my fellow", "He might even have been
  made") or with an ellipsis or a dash ("And you always...", "in the s-"): that is strong
  evidence of *incomplete*, as is a last word that cannot end an English sentence ("to", "the",
  "and"), or a short transcript that opens with a connector ("And so am I fellow America." at
  JFK's 1.06 s pause). A final period or question mark is no evidence of *complete*: whisper
  closes fragments with them ("One.", "Go forward.", "How do you marry the more?" 1.3 s into "Had
  he married a more amiable woman"), so it leaves the turn *undecided*.
* **This caller's pauses**: a pause after which the caller went on with the same turn
  (``observe_continued_pause``) shows how long they pause mid-turn; an undecided turn waits
  that long plus a margin. Before the caller's first answered turn nothing is known and an
  undecided turn waits ``undecided_ms`` (the old fixed endpoint).
* **Prosody** (final pitch fall against the utterance's median, Praat's pitch tracker at 8 kHz)
  was measured and is not used: on the corpus it did not separate complete from incomplete
  points (the final "three." and the list items "one," "two," all fall by 1.3–2.0 semitones).

Pure: text and media-time durations in, a duration out; no clock.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from core.backchannel import words_of


class Completeness(enum.Enum):
    """What a transcript says about whether the caller has finished their turn."""

    UNDECIDED = "undecided"
    INCOMPLETE = "incomplete"


CONTINUATION_WORDS = frozenset(
    """a an the and or but nor so because if than that whether which who whose whom to of for in on
    at by with from into onto about as like my your his her its our their this these those um uh er
    erm very""".split()
)
"""Words that do not end an English sentence: a transcript ending in one is unfinished. (Not
auxiliaries: "than he was." ends one.)"""

OPENING_CONNECTORS = ("and so", "and then", "so", "and", "but", "well", "because", "or")
"""Connectors that open a longer sentence: a short transcript starting with one ("And so my
fellow Americans.") is a preamble, not a turn."""

_SHORT_PREAMBLE_WORDS = 6  # "and so my fellow americans" is 5
_UNFINISHED_END = re.compile(r"(\.\.\.|…|[-–—,;:])$")
_TERMINAL_END = re.compile(r"([.?!]['\")\]]*|\d)$")  # whisper writes "5 5" with no period


def judge_transcript(text: str) -> Completeness:
    """Judge a (speculative or final) transcript of the caller's speech up to a pause.

    Args:
        text: the recognizer's text, punctuation included (whisper's style).

    Returns:
        ``INCOMPLETE`` for no words, a trailing ellipsis, dash, comma or colon, no final
        punctuation (a final digit excepted), a last word from :data:`CONTINUATION_WORDS`, or a
        short transcript that opens with one of :data:`OPENING_CONNECTORS`; ``UNDECIDED``
        otherwise.
    """
    stripped = text.strip()
    words = words_of(stripped)
    if not words or _UNFINISHED_END.search(stripped) or not _TERMINAL_END.search(stripped):
        return Completeness.INCOMPLETE
    if words[-1] in CONTINUATION_WORDS:
        return Completeness.INCOMPLETE
    if len(words) <= _SHORT_PREAMBLE_WORDS and any(
        words[: len(c.split())] == c.split() and len(words) > len(c.split()) for c in OPENING_CONNECTORS
    ):
        return Completeness.INCOMPLETE
    return Completeness.UNDECIDED


@dataclass(frozen=True)
class TurnEndConfig:
    """Silences (media time, ms) a caller's turn must reach before its reply plays.

    Attributes:
        complete_ms: for an undecided transcript once a turn of this caller was answered and
            they have not paused longer mid-turn (``ENDPOINT_COMPLETE_MS``); also where the
            endpointer ends an utterance.
        undecided_ms: for an undecided transcript before this caller's first answered turn
            (``ENDPOINT_SILENCE_MS``).
        incomplete_ms: for a transcript judged incomplete, and the ceiling for any turn
            (``ENDPOINT_INCOMPLETE_MS``).
        margin_ms: added to the longest pause this caller went on after.

    Raises:
        ValueError: unless ``0 < complete_ms <= undecided_ms <= incomplete_ms`` and ``margin_ms >= 0``.
    """

    complete_ms: int = 300
    undecided_ms: int = 600
    incomplete_ms: int = 1200
    margin_ms: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.complete_ms <= self.undecided_ms <= self.incomplete_ms:
            raise ValueError(f"need 0 < complete_ms <= undecided_ms <= incomplete_ms, got {self.complete_ms}, "
                             f"{self.undecided_ms}, {self.incomplete_ms}")
        if self.margin_ms < 0:
            raise ValueError(f"margin_ms must be >= 0, got {self.margin_ms}")


class TurnEndPolicy:
    """One caller's end-of-turn judge: the silence each turn needs, from its transcript and the
    caller's pause history (see the module docstring)."""

    def __init__(self, config: TurnEndConfig) -> None:
        self.config = config
        self.longest_continued_pause_ms = 0
        self.answered_turns = 0

    def observe_continued_pause(self, pause_ms: int) -> None:
        """The caller went on with the same turn after ``pause_ms`` of silence (ms)."""
        self.longest_continued_pause_ms = max(self.longest_continued_pause_ms, pause_ms)

    def observe_answered_turn(self) -> None:
        """A turn of this caller was answered (its reply started playing)."""
        self.answered_turns += 1

    def required_silence_ms(self, text: str) -> tuple[int, Completeness]:
        """Silence after the caller's last voiced frame before the reply to ``text`` may play, ms,
        and the transcript's judgement. Always within ``[complete_ms, incomplete_ms]``."""
        config = self.config
        judged = judge_transcript(text)
        if judged is Completeness.INCOMPLETE:
            return config.incomplete_ms, judged
        # Before the first answered turn nothing is known of how this caller pauses.
        wait_ms = config.undecided_ms if self.answered_turns == 0 else config.complete_ms
        if self.longest_continued_pause_ms:
            wait_ms = max(wait_ms, self.longest_continued_pause_ms + config.margin_ms)
        return min(max(wait_ms, config.complete_ms), config.incomplete_ms), judged
