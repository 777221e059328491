"""Unit tests of core.playout: marks pending at Twilio, heard sentences, placing bot audio."""

from core.actions import RecordPlayed
from core.playout import Playout

BYTES_PER_MS = 8  # μ-law 8 kHz


def audio(ms: int, fill: bytes = b"\x01") -> bytes:
    return fill * (ms * BYTES_PER_MS)


def test_marks_are_named_per_reply_and_sentence_and_pending_until_echoed():
    playout = Playout(BYTES_PER_MS)
    assert not playout.has_pending
    assert playout.queue(3, 0, audio(100), final=False, sent_ms=1000) == "r3s0"
    assert playout.queue(3, 1, audio(100), final=True, sent_ms=1000) == "r3s1"
    assert playout.has_pending
    [(mark, placed)] = playout.echo("r3s0", 1100)
    assert (mark.reply_id, mark.sentence_index, mark.final) == (3, 0, False)
    assert placed == RecordPlayed(1000, audio(100))
    assert playout.has_pending
    [(mark, _)] = playout.echo("r3s1", 1200)
    assert mark.final and not playout.has_pending


def test_an_echo_also_plays_every_earlier_mark_and_places_them_back_to_back():
    playout = Playout(BYTES_PER_MS)
    playout.queue(1, 0, audio(100, b"\x01"), final=False, sent_ms=0)
    playout.queue(1, 1, audio(50, b"\x02"), final=False, sent_ms=0)
    played = playout.echo("r1s1", 400)
    assert [m.name for m, _ in played] == ["r1s0", "r1s1"]
    # the first started when it was sent; the second ended at its echo
    assert [p for _, p in played] == [RecordPlayed(0, audio(100, b"\x01")), RecordPlayed(350, audio(50, b"\x02"))]


def test_audio_is_never_placed_before_it_was_sent_or_over_earlier_audio():
    playout = Playout(BYTES_PER_MS)
    playout.queue(1, 0, audio(100), final=False, sent_ms=500)
    [(_, placed)] = playout.echo("r1s0", 520)  # the inbound clock stalled: echo only 20 ms after sending
    assert placed.start_ms == 500
    playout.queue(1, 1, audio(100), final=False, sent_ms=550)
    [(_, placed)] = playout.echo("r1s1", 560)
    assert placed.start_ms == 600  # after the first sentence ended


def test_unknown_and_cleared_marks_are_ignored():
    playout = Playout(BYTES_PER_MS)
    assert playout.echo("r9s0", 100) == []
    playout.queue(1, 0, audio(100), final=False, sent_ms=0)
    playout.clear(40)
    assert playout.echo("r1s0", 100) == []  # Twilio echoes cleared marks: late, ignored


def test_clear_places_only_what_played_until_then_and_drops_every_mark():
    playout = Playout(BYTES_PER_MS)
    playout.queue(1, 0, audio(100, b"\x01"), final=False, sent_ms=1000)
    playout.queue(1, 1, audio(100, b"\x02"), final=True, sent_ms=1000)
    placed = playout.clear(1150)
    assert placed == [RecordPlayed(1000, audio(100, b"\x01")), RecordPlayed(1100, audio(50, b"\x02"))]
    assert not playout.has_pending
    assert playout.clear(2000) == []


def test_clear_before_anything_played_places_nothing():
    playout = Playout(BYTES_PER_MS)
    playout.queue(1, 0, audio(100), final=False, sent_ms=1000)
    assert playout.clear(1000) == []


def test_heard_sentences_are_those_echoed_and_are_taken_once():
    playout = Playout(BYTES_PER_MS)
    for index in range(3):
        playout.queue(7, index, audio(20), final=index == 2, sent_ms=0)
    playout.echo("r7s1", 100)
    assert playout.take_heard(7) == [0, 1]
    assert playout.take_heard(7) == []
    assert playout.take_heard(8) == []


def test_a_reply_that_played_to_its_final_mark_leaves_nothing_heard_behind():
    playout = Playout(BYTES_PER_MS)
    playout.queue(2, 0, audio(20), final=True, sent_ms=0)
    playout.echo("r2s0", 100)
    assert playout.take_heard(2) == []


def test_finish_reply_at_last_mark_makes_its_last_pending_mark_final():
    playout = Playout(BYTES_PER_MS)
    playout.queue(1, 0, audio(20), final=False, sent_ms=0)
    playout.queue(2, 0, audio(20), final=False, sent_ms=0)
    playout.queue(1, 1, audio(20), final=False, sent_ms=0)
    assert playout.finish_reply_at_last_mark(1)
    assert not playout.finish_reply_at_last_mark(3)
    finals = [(m.name, m.final) for m, _ in playout.echo("r1s1", 100)]
    assert finals == [("r1s0", False), ("r2s0", False), ("r1s1", True)]
