"""Tests for tools/twilio_sim/latency.py (pure)."""

from tools.twilio_sim.latency import ReplyTracker, median_or_none, pair_latencies


def test_reply_tracker_splits_on_gap_and_clear():
    tracker = ReplyTracker(gap_s=0.4)
    assert tracker.on_media(1.00, 160, audio_queued=False).index == 1
    assert tracker.on_media(1.02, 160, audio_queued=True) is None
    assert tracker.on_media(1.60, 160, audio_queued=True) is None  # long gap but audio still queued
    tracker.on_played(1040)
    tracker.on_played(1060)
    tracker.on_mark_echo(2.0)
    tracker.on_mark_echo(2.5)
    assert tracker.on_media(2.30, 160, audio_queued=False).index == 2  # gap 0.7 s and nothing queued
    tracker.on_clear()
    assert tracker.on_media(2.31, 160, audio_queued=False).index == 3  # after a clear
    first = tracker.replies[0]
    assert (first.media_messages, first.ulaw_bytes, first.heard_ms, first.first_mark_echo_s) == (3, 480, 1040, 2.0)


def test_pair_latencies_pairs_each_turn_with_the_next_reply():
    tracker = ReplyTracker()
    tracker.on_media(0.5, 160, False)  # greeting, before any caller turn
    tracker.on_media(5.2, 160, False)  # reply to turn 1
    tracker.on_mark_echo(6.0)
    tracker.on_media(9.0, 160, False)  # second part of reply to turn 1 (nothing unpaired before it)
    # turn 3 gets no reply before turn 5 ends; turn 5's reply arrives at 20.3
    tracker.on_media(20.3, 160, False)
    caller_ends = [(1, 4000, 4.0), (3, 12000, 12.0), (5, 19000, 19.0)]
    result = pair_latencies(caller_ends, tracker.replies)
    assert [(r["caller_turn"], r["reply"], r["voice_to_voice_ms"], r["first_mark_echo_ms"]) for r in result] == [
        (1, 2, 1200, 2000), (3, None, None, None), (5, 4, 1300, None)]
    assert median_or_none([r["voice_to_voice_ms"] for r in result]) == 1250
    assert median_or_none([None]) is None
