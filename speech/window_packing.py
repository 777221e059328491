"""Several utterances in one whisper window: lay them out with silence between, split the words back.

Whisper pads every input to a 30 s window and its encoder runs on the whole window, so a
3 s utterance costs nearly what a 30 s one does (docs/benchmarks.md, "Cost of a turn").
``pack`` puts several utterances (from different calls) into one window, separated by
digital silence; the window is decoded once with timestamps and word timestamps, and
``split`` hands each word back to the utterance whose part of the window holds it, or
returns None when the assignment is in doubt (then the caller decodes each utterance on
its own, as without packing); ``split_each`` marks only the utterances in doubt.

The rule (``split``), measured in bench/window_packing.py (docs/benchmarks.md, "Packing
utterances into one whisper window"): every word goes to the utterance whose *zone*
holds the midpoint of its [start, end]; utterance i's zone runs from the middle of the gap
before it to the middle of the gap after it. The split is in doubt if

* a word's [start, end] reaches across a gap's middle (it may belong to either side);
* a word's midpoint lies in a gap more than ``max_overhang_s`` from its utterance's
  audio (a word whisper placed in the silence: invented, or misplaced);
* one whisper segment holds words of two utterances (the decoder ran them together as
  one sentence, which changes punctuation and casing at the join);
* an utterance gets no words: its words may have gone to a neighbour, or been dropped, and
  the words after it may all have shifted by one utterance (seen: "ask" | "ask not" |
  "what your …" came out as "" | "Ask..." | "Ask...not... What your …");
* a word lasts less than ``MIN_WORD_S`` (whisper could not place it: seen on a repeated,
  invented phrase, "and so my fellow america" twice, the copy at zero length).

A word across or in a gap puts the utterances beside that gap in doubt; a segment across
utterances, those; an empty utterance, the one before it and every one after it (the
shift above runs forwards); a word too short to place, its utterance. What this cannot see is a word whisper leaves out or changes because the other
utterances are in its window ("Americans" → "America", "Ask not!" → "Ask."): packed texts are
not always the single runs' texts, even when every split is clear.

Plain Python and numpy, no threads, no model: the decoding is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

SAMPLE_RATE = 16000
"""Sample rate (Hz) of the utterances and of the packed window (whisper's input rate)."""

WINDOW_S = 30.0
"""Whisper's window in seconds: a pack must fit in it, or faster-whisper decodes more than one."""

DEFAULT_GAP_S = 2.0
"""Silence between two packed utterances, in seconds (see bench/window_packing.py)."""

DEFAULT_MAX_OVERHANG_S = 0.5
"""How far into a gap a word's midpoint may lie from its utterance's audio, in seconds."""

MIN_WORD_S = 0.02
"""A word shorter than this (seconds; whisper's timestamps step by 0.02 s) was not placed in the audio."""


@dataclass(frozen=True)
class Span:
    """Where one utterance lies in the packed window, in seconds from the window's start."""

    start_s: float
    end_s: float


@dataclass(frozen=True)
class Word:
    """One recognised word with its times in the packed window.

    Attributes:
        start_s, end_s: its times in seconds from the window's start (whisper's word timestamps).
        text: its text as whisper gives it, with its leading space and attached punctuation
            (" country.").
        segment: index of the whisper segment it came from (words of one segment were
            decoded as one sentence).
    """

    start_s: float
    end_s: float
    text: str
    segment: int = 0


def packed_duration_s(durations_s: Sequence[float], gap_s: float) -> float:
    """Length in seconds of a pack of utterances of these durations (seconds) with ``gap_s`` between them."""
    if not durations_s:
        return 0.0
    return float(sum(durations_s)) + gap_s * (len(durations_s) - 1)


def how_many_fit(durations_s: Sequence[float], gap_s: float, window_s: float = WINDOW_S) -> int:
    """Return how many of the first utterances (durations in seconds, in order) fit in one window.

    0 only for an empty list; an utterance longer than the window on its own gives 1 (it is
    decoded alone anyway).
    """
    count, total_s = 0, -gap_s
    for duration_s in durations_s:
        total_s += gap_s + duration_s
        if count and total_s > window_s:
            break
        count += 1
    return count


def pack(utterances: Sequence[np.ndarray], gap_s: float = DEFAULT_GAP_S) -> tuple[np.ndarray, list[Span]]:
    """Lay utterances end to end with ``gap_s`` seconds of digital silence (zeros) between them.

    The first utterance starts at 0 s and the window ends where the last one ends (no
    leading or trailing silence: whisper pads the rest of the 30 s window itself).

    Args:
        utterances: 1-D float32 arrays of mono samples at 16000 Hz (``SAMPLE_RATE``), in
            [-1, 1]; at least one, none empty.
        gap_s: silence between two utterances in seconds, >= 0.

    Returns:
        ``(samples, spans)``: the window as a 1-D float32 array at 16000 Hz, and for each
        utterance in order its ``Span`` in seconds (start inclusive, end exclusive).

    Raises:
        ValueError: no utterance, an empty or non-1-D one, a negative gap, or a pack longer
            than ``WINDOW_S`` (30 s).
    """
    if not utterances:
        raise ValueError("pack needs at least one utterance")
    if gap_s < 0:
        raise ValueError(f"gap_s must be >= 0, got {gap_s}")
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE)), dtype=np.float32)
    parts: list[np.ndarray] = []
    spans: list[Span] = []
    position = 0
    for index, samples in enumerate(utterances):
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or not samples.size:
            raise ValueError(f"utterance {index} must be a non-empty 1-D array, got shape {samples.shape}")
        if index:
            parts.append(gap)
            position += gap.size
        parts.append(samples)
        spans.append(Span(position / SAMPLE_RATE, (position + samples.size) / SAMPLE_RATE))
        position += samples.size
    if position > WINDOW_S * SAMPLE_RATE:
        raise ValueError(f"pack of {position / SAMPLE_RATE:.2f} s does not fit in the {WINDOW_S:g} s window")
    return np.concatenate(parts), spans


def words_of(segments: Iterable[Any]) -> list[Word]:
    """Flatten faster-whisper segments (``transcribe(..., word_timestamps=True)``) into ``Word``s.

    Args:
        segments: objects with a ``words`` list of objects with ``start``, ``end`` (seconds)
            and ``word`` (text), as faster-whisper's ``Segment`` and ``Word``.

    Returns:
        The words in order, each with the index of its segment.

    Raises:
        ValueError: a segment has no word timestamps (``words`` is None).
    """
    words: list[Word] = []
    for index, segment in enumerate(segments):
        if segment.words is None:
            raise ValueError("segments have no word timestamps: decode with word_timestamps=True")
        words.extend(Word(float(w.start), float(w.end), w.word, index) for w in segment.words)
    return words


def split_each(
    words: Sequence[Word],
    spans: Sequence[Span],
    *,
    max_overhang_s: float = DEFAULT_MAX_OVERHANG_S,
) -> list[str | None]:
    """Give each word of a packed window back to its utterance; None for each utterance in doubt.

    Doubt is kept to the utterances it concerns (the rule in the module docstring): a word
    across a gap's middle, or placed in a gap, puts both utterances beside that gap in doubt;
    a segment holding words of several utterances, all of them; an utterance without words,
    the one before it and every one after it; a word shorter than ``MIN_WORD_S``, its own.

    Args:
        words: the window's words in order (``words_of``), times in seconds from the
            window's start.
        spans: each utterance's place in the window (``pack``), in order, not overlapping.
        max_overhang_s: how far (seconds) past its utterance's audio, into a gap, a word's
            midpoint may lie.

    Returns:
        One entry per span, in order: its words joined, whitespace collapsed and stripped;
        or None when that utterance is in doubt (decode it on its own instead).
    """
    count = len(spans)
    # Utterance i owns [boundaries[i], boundaries[i + 1]): its zone reaches the middle of each gap.
    middles = [(before.end_s + after.start_s) / 2 for before, after in zip(spans, spans[1:])]
    boundaries = [float("-inf"), *middles, float("inf")]
    texts: list[list[str]] = [[] for _ in spans]
    doubt = [False] * count
    owners_of_segment: dict[int, set[int]] = {}
    for word in words:
        for gap, middle in enumerate(middles):
            if word.start_s < middle < word.end_s:
                doubt[gap] = doubt[gap + 1] = True
        midpoint_s = (word.start_s + word.end_s) / 2
        owner = next(i for i in range(count) if boundaries[i] <= midpoint_s < boundaries[i + 1])
        span = spans[owner]
        if midpoint_s < span.start_s - max_overhang_s:
            doubt[owner] = doubt[owner - 1] = True  # owner > 0: the first zone has no start
        elif midpoint_s > span.end_s + max_overhang_s:
            doubt[owner] = doubt[owner + 1] = True  # owner < count - 1: the last zone has no end
        if word.end_s - word.start_s < MIN_WORD_S:
            doubt[owner] = True
        owners_of_segment.setdefault(word.segment, set()).add(owner)
        texts[owner].append(word.text)
    for owners in owners_of_segment.values():
        if len(owners) > 1:
            for owner in owners:
                doubt[owner] = True
    if not all(texts):
        # The words after an empty utterance may all have shifted by one; the one before may hold its words.
        first_empty = next(i for i, parts in enumerate(texts) if not parts)
        for index in range(max(0, first_empty - 1), count):
            doubt[index] = True
    return [None if in_doubt else " ".join("".join(parts).split()) for parts, in_doubt in zip(texts, doubt)]


def split(
    words: Sequence[Word],
    spans: Sequence[Span],
    *,
    max_overhang_s: float = DEFAULT_MAX_OVERHANG_S,
) -> list[str] | None:
    """Give each word of a packed window back to its utterance, or None if any of that is in doubt.

    Args and rule: as ``split_each``.

    Returns:
        One text per span, in order (words joined, whitespace collapsed and stripped); None
        when any utterance is in doubt: decode each utterance on its own instead.
    """
    texts = split_each(words, spans, max_overhang_s=max_overhang_s)
    if any(text is None for text in texts):
        return None
    return texts  # type: ignore[return-value]
