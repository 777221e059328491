"""speech.window_packing: laying utterances out in one whisper window and splitting the words back."""

import numpy as np
import pytest

from speech.window_packing import (
    SAMPLE_RATE,
    WINDOW_S,
    Span,
    Word,
    how_many_fit,
    pack,
    packed_duration_s,
    split,
    split_each,
    words_of,
)


def tone(duration_s, value=0.5):
    return np.full(int(duration_s * SAMPLE_RATE), value, dtype=np.float32)


def test_pack_lays_utterances_out_with_silence_between():
    samples, spans = pack([tone(1.0, 0.1), tone(0.5, 0.2), tone(2.0, 0.3)], gap_s=1.5)
    assert samples.dtype == np.float32
    assert samples.size == int((1.0 + 1.5 + 0.5 + 1.5 + 2.0) * SAMPLE_RATE)
    assert spans == [Span(0.0, 1.0), Span(2.5, 3.0), Span(4.5, 6.5)]
    for span, value in zip(spans, (0.1, 0.2, 0.3)):
        part = samples[int(span.start_s * SAMPLE_RATE): int(span.end_s * SAMPLE_RATE)]
        assert np.all(part == np.float32(value))
    assert not samples[int(1.0 * SAMPLE_RATE): int(2.5 * SAMPLE_RATE)].any()  # the gap is digital silence


def test_pack_of_one_is_the_utterance():
    utterance = tone(3.0)
    samples, spans = pack([utterance], gap_s=2.0)
    np.testing.assert_array_equal(samples, utterance)
    assert spans == [Span(0.0, 3.0)]


@pytest.mark.parametrize("utterances, gap_s", [
    ([], 2.0),
    ([tone(1.0), np.zeros(0, np.float32)], 2.0),
    ([np.zeros((2, 100), np.float32)], 2.0),
    ([tone(1.0)], -0.1),
    ([tone(10.0), tone(10.0), tone(9.0)], 1.0),  # 31 s
])
def test_pack_rejects_what_is_not_one_window(utterances, gap_s):
    with pytest.raises(ValueError):
        pack(utterances, gap_s)


def test_how_many_fit_counts_the_leading_utterances_that_fit_in_30_s():
    assert how_many_fit([], 2.0) == 0
    assert how_many_fit([40.0, 1.0], 2.0) == 1  # too long alone: decoded alone anyway
    assert how_many_fit([4.0] * 10, 2.0) == 5  # 5 * 4 + 4 * 2 = 28 s; a sixth makes 34
    assert how_many_fit([14.0, 14.0], 2.0) == 2  # exactly 30 s
    assert how_many_fit([14.0, 14.1], 2.0) == 1
    assert packed_duration_s([14.0, 14.0], 2.0) == WINDOW_S
    assert packed_duration_s([], 2.0) == 0.0


SPANS = [Span(0.0, 3.0), Span(5.0, 6.0), Span(8.0, 12.0)]  # gaps' middles at 4.0 and 7.0


def words(*items):
    return [Word(start, end, text, segment) for start, end, text, segment in items]


def test_split_gives_each_word_to_its_utterance():
    texts = split(words(
        (0.0, 0.5, " Ask", 0), (0.5, 1.2, " not", 0), (1.2, 3.3, " what.", 0),  # ends 0.3 s into the gap
        (5.1, 5.8, " Two.", 1),
        (7.6, 8.4, " One,", 2), (8.4, 9.0, " two,", 2), (9.0, 11.9, " three.", 3),  # starts before its audio
    ), SPANS)
    assert texts == ["Ask not what.", "Two.", "One, two, three."]


def test_split_of_no_spans_and_single_span():
    assert split([], []) == []
    assert split(words((0.0, 1.0, " Hello", 0), (1.0, 1.5, " there.", 0)), [Span(0.0, 1.6)]) == ["Hello there."]


@pytest.mark.parametrize("items", [
    # a word reaching across the middle of a gap (4.0 s): it may belong to either side
    [(0.0, 2.0, " Ask", 0), (2.0, 4.5, " not", 0), (5.1, 5.8, " Two.", 1), (8.0, 9.0, " One.", 2)],
    # a word placed in the silence, more than 0.5 s from either utterance
    [(0.0, 2.0, " Ask", 0), (3.4, 3.9, " uh", 1), (5.1, 5.8, " Two.", 2), (8.0, 9.0, " One.", 3)],
    # one segment holding words of two utterances: decoded as one sentence
    [(0.0, 2.0, " Ask", 0), (5.1, 5.8, " two,", 0), (8.0, 9.0, " One.", 1)],
    # an utterance without words
    [(0.0, 2.0, " Ask", 0), (8.0, 9.0, " One.", 1)],
])
def test_split_is_in_doubt(items):
    assert split(words(*items), SPANS) is None


def test_split_overhang_is_adjustable():
    items = words((0.0, 2.0, " Ask", 0), (3.0, 3.8, " not", 0), (5.1, 5.8, " Two.", 1), (8.0, 9.0, " One.", 2))
    # " not" has its midpoint at 3.4 s, 0.4 s past its utterance's audio (which ends at 3.0 s)
    assert split(items, SPANS) == ["Ask not", "Two.", "One."]
    assert split(items, SPANS, max_overhang_s=0.3) is None


FOUR = [Span(0.0, 2.0), Span(4.0, 5.0), Span(7.0, 8.0), Span(10.0, 12.0)]  # gaps' middles at 3, 6, 9 s


@pytest.mark.parametrize("items, expected", [
    # all clear
    ([(0.0, 1.9, " A.", 0), (4.0, 5.0, " B.", 1), (7.0, 8.0, " C.", 2), (10.0, 11.0, " D.", 3)],
     ["A.", "B.", "C.", "D."]),
    # a word across the middle of the second gap (6 s): B and C in doubt
    ([(0.0, 1.9, " A.", 0), (4.0, 6.5, " B.", 1), (7.0, 8.0, " C.", 2), (10.0, 11.0, " D.", 3)],
     ["A.", None, None, "D."]),
    # a word in the first gap, 0.8 s past A's audio: A and B in doubt
    ([(0.0, 1.9, " A", 0), (2.6, 3.0, " uh.", 0), (4.0, 5.0, " B.", 1), (7.0, 8.0, " C.", 2), (10.0, 11.0, " D.", 3)],
     [None, None, "C.", "D."]),
    # a word in the last gap, 0.8 s before D's audio: C and D in doubt
    ([(0.0, 1.9, " A.", 0), (4.0, 5.0, " B.", 1), (7.0, 8.0, " C.", 2), (9.1, 9.3, " uh", 3), (10.0, 11.0, " D.", 3)],
     ["A.", "B.", None, None]),
    # one segment across B and C: both in doubt
    ([(0.0, 1.9, " A.", 0), (4.0, 5.0, " B,", 1), (7.0, 8.0, " c.", 1), (10.0, 11.0, " D.", 2)],
     ["A.", None, None, "D."]),
    # C without words: B, C and every one after (the words after it may all have shifted)
    ([(0.0, 1.9, " A.", 0), (4.0, 5.0, " B.", 1), (10.0, 11.0, " D.", 2)],
     ["A.", None, None, None]),
    # the first without words: all
    ([(4.0, 5.0, " B.", 1), (7.0, 8.0, " C.", 2), (10.0, 11.0, " D.", 3)],
     [None, None, None, None]),
    # a word of no length (whisper could not place it): its utterance in doubt
    ([(0.0, 1.9, " A.", 0), (4.0, 5.0, " B.", 1), (7.0, 8.0, " C.", 2), (10.0, 11.0, " D.", 3), (11.0, 11.0, " D.", 3)],
     ["A.", "B.", "C.", None]),
])
def test_split_each_keeps_doubt_to_the_utterances_concerned(items, expected):
    assert split_each(words(*items), FOUR) == expected
    assert split(words(*items), FOUR) == (expected if None not in expected else None)


def test_words_of_flattens_faster_whisper_segments():
    class W:
        def __init__(self, start, end, word):
            self.start, self.end, self.word = start, end, word

    class S:
        def __init__(self, words):
            self.words = words

    flat = words_of([S([W(0.0, 0.4, " One,"), W(0.5, 0.9, " two.")]), S([W(3.0, 3.5, " Three.")])])
    assert flat == [Word(0.0, 0.4, " One,", 0), Word(0.5, 0.9, " two.", 0), Word(3.0, 3.5, " Three.", 1)]
    with pytest.raises(ValueError):
        words_of([S(None)])


def test_packed_decode_of_real_phone_speech_matches_single_runs_or_falls_back(whisper):
    # Two utterances on the phone line, "one two three" and JFK's last phrase (7.7-11.0 s),
    # decoded in one window and split back: each packed text is its single run's text, or is
    # sent back to run alone (RUN_ALONE) when the split is in doubt; never another call's words.
    # On 2026-12-03 "3." was stamped to end 1 s into the gap after it on this machine, so the
    # first came back in doubt, where earlier runs split both (bench/window_packing.py,
    # docs/benchmarks.md: why packing is off by default). About 2 core-seconds.
    from speech.engine_queue import RUN_ALONE
    from speech.recognition import _audio_data, _float_samples
    from tests.phone import PHONE_SAMPLE_RATE, phone_corpus
    from tools.wer import normalize_text

    pcms = [phone_corpus("sr_english.wav"), phone_corpus("jfk.flac")[int(7.7 * PHONE_SAMPLE_RATE) * 2:]]
    singles = [whisper.transcribe(pcm, PHONE_SAMPLE_RATE) for pcm in pcms]
    assert [normalize_text(text) for text in singles] == ["one two three", "ask what you can do for your country"]
    packed = whisper._decode_packed([_float_samples(_audio_data(pcm, PHONE_SAMPLE_RATE)) for pcm in pcms])
    assert len(packed) == 2
    for text, single in zip(packed, singles):
        assert text is RUN_ALONE or normalize_text(text) == normalize_text(single)
