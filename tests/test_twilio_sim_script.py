"""Tests for tools/twilio_sim/script.py (pure: the clock is faked)."""

import pytest

from tools.twilio_sim.frames import FRAME_BYTES, split_frames
from tools.twilio_sim.script import CallerScript, ForkScript, SpokenItem, TurnWaiter, parse_script


def test_parse_script_reads_each_kind_in_order():
    items = parse_script(["a.wav", "dtmf:12*#", "silence:2.5", "dir/b.flac"])
    assert [item.kind for item in items] == ["audio", "dtmf", "silence", "audio"]
    assert items[0].path == "a.wav" and items[3].path == "dir/b.flac"
    assert items[1].digits == "12*#"
    assert items[2].seconds == 2.5
    assert [item.token for item in items] == ["a.wav", "dtmf:12*#", "silence:2.5", "dir/b.flac"]


@pytest.mark.parametrize("token", ["dtmf:", "dtmf:12x", "dtmf:1 2", "silence:", "silence:abc",
                                   "silence:0", "silence:-1", "silence:nan", "silence:inf", ""])
def test_parse_script_rejects_bad_items(token):
    with pytest.raises(ValueError):
        parse_script([token])


def test_turn_waiter_needs_quiet_time_and_min_wait():
    waiter = TurnWaiter(quiet_s=1.5, min_wait_s=2.0, timeout_s=20.0)
    waiter.start(10.0)
    assert waiter.poll(11.49, audio_queued=False) is None
    assert waiter.poll(11.99, audio_queued=False) is None  # quiet long enough, but min wait not reached
    assert waiter.poll(12.0, audio_queued=False) == "quiet"


def test_turn_waiter_counts_quiet_from_last_bot_audio():
    waiter = TurnWaiter(quiet_s=1.5, min_wait_s=0.0, timeout_s=20.0)
    waiter.start(0.0)
    waiter.note_media_received(0.5)
    assert waiter.poll(1.0, audio_queued=True) is None
    waiter.note_audio_played(3.0)  # playback of the queued audio ends at 3.0 s
    assert waiter.poll(4.4, audio_queued=False) is None
    assert waiter.poll(4.5, audio_queued=False) == "quiet"


def test_turn_waiter_expecting_a_reply_waits_for_media_or_timeout():
    waiter = TurnWaiter(quiet_s=1.0, min_wait_s=0.0, timeout_s=5.0)
    waiter.note_media_received(-1.0)  # media from before the wait does not count as the reply
    waiter.start(0.0, expect_reply=True)
    assert waiter.poll(3.0, audio_queued=False) is None
    waiter.note_media_received(3.2)
    assert waiter.poll(4.1, audio_queued=False) is None
    assert waiter.poll(4.2, audio_queued=False) == "quiet"
    waiter.start(10.0, expect_reply=True)
    assert waiter.poll(14.9, audio_queued=False) is None
    assert waiter.poll(15.0, audio_queued=False) == "timeout"


def test_turn_waiter_poll_before_start_is_an_error():
    with pytest.raises(RuntimeError):
        TurnWaiter(1.0, 0.0, 5.0).poll(0.0, audio_queued=False)


def run_script(script, bot_media_at=(), queued_until=None, max_ticks=10_000):
    """Drive a CallerScript with a fake 20 ms clock; return the ticks it produced."""
    ticks = []
    for n in range(max_ticks):
        now_s = n * 0.02
        for at_s in bot_media_at:
            if abs(at_s - now_s) < 0.01:
                script._waiter.note_media_received(now_s)
        queued = queued_until is not None and now_s < queued_until
        if queued:
            script._waiter.note_audio_played(now_s)  # the runtime does this on ticks that play bot audio
        tick = script.next_tick(now_s, queued)
        if tick is None:
            return ticks
        ticks.append((now_s, tick))
    raise AssertionError("script did not finish")


def test_caller_script_plays_items_between_waits():
    audio = bytes(range(256)) * 2  # 512 bytes -> 4 frames
    waiter = TurnWaiter(quiet_s=0.5, min_wait_s=0.0, timeout_s=3.0)
    items = parse_script(["silence:0.1", "dtmf:12", "x.wav"])
    script = CallerScript(items, {"x.wav": audio}, waiter, wait_first=True)
    ticks = run_script(script, bot_media_at=[0.6, 1.5])
    frames = [tick.ulaw for _, tick in ticks]
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    notes = [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]
    # Greeting wait 0.5 s, silence 5 frames, wait 0.5 s, DTMF 2 x 5 frames, wait for the reply (media at
    # 1.5 s, quiet 0.5 s), the 4 audio frames, then a final wait that times out (no reply).
    assert notes[0] == (0.0, "waiting for the bot")
    assert notes[1] == (0.5, "bot quiet; caller: silence:0.1")
    assert notes[2] == (0.6, "waiting for the bot")
    assert notes[3][1] == "bot quiet; caller: dtmf:12"
    assert notes[4][1] == "waiting for the bot to reply"
    assert notes[5] == (2.0, "bot quiet; caller: x.wav")
    assert notes[6] == (2.08, "waiting for the bot to reply")
    assert ticks[-1][0] == pytest.approx(2.08 + 3.0 - 0.02)
    assert script.final_note == "wait timed out after 3 s"
    digits = [(round(now_s, 2), tick.digits) for now_s, tick in ticks if tick.digits]
    dtmf_start = notes[3][0]
    assert digits == [(dtmf_start, ["1"]), (round(dtmf_start + 0.1, 2), ["2"])]
    spoken = b"".join(tick.ulaw for now_s, tick in ticks if 2.0 <= now_s < 2.07)
    assert spoken == b"".join(split_frames(audio))


def test_caller_script_without_greeting_wait_speaks_first():
    waiter = TurnWaiter(quiet_s=0.21, min_wait_s=0.0, timeout_s=1.0)
    ticks = run_script(CallerScript(parse_script(["silence:0.04"]), {}, waiter, wait_first=False))
    assert ticks[0][1].note == "caller: silence:0.04"
    assert len(ticks) == 2 + 11  # 2 silence frames, then the final quiet wait: ticks 0.04 ... 0.24 s


def test_caller_script_waits_while_bot_audio_is_queued():
    waiter = TurnWaiter(quiet_s=0.2, min_wait_s=0.0, timeout_s=10.0)
    ticks = run_script(CallerScript([], {}, waiter), queued_until=1.0)
    # Last bot audio played on the 0.98 s tick; the wait ends 0.2 s later.
    assert ticks[-1][0] == pytest.approx(0.98 + 0.2 - 0.02, abs=0.021)


def test_caller_script_interrupt_talks_over_the_reply_after_it_played_that_long():
    audio = bytes(160)
    waiter = TurnWaiter(quiet_s=0.5, min_wait_s=0.0, timeout_s=5.0)
    items = parse_script(["a.wav", "interrupt:0.3", "b.wav"])
    assert items[1].kind == "interrupt" and items[1].seconds == 0.3
    script = CallerScript(items, {"a.wav": audio, "b.wav": audio}, waiter, wait_first=False)
    ticks = run_script(script, bot_media_at=[0.5], queued_until=2.0)
    notes = [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]
    assert notes[0] == (0.0, "caller: a.wav")
    # The wait starts on the 0.02 s tick; bot audio is first heard after it (0.04 s); 0.3 s later the caller
    # barges in, long before the bot is quiet (2.0 s).
    assert notes[1] == (0.02, "waiting for the bot to reply")
    assert notes[2] == (0.34, "interrupting the bot; caller: b.wav")


def test_caller_script_requires_audio_for_audio_items():
    with pytest.raises(ValueError):
        CallerScript(parse_script(["missing.wav"]), {}, TurnWaiter(1, 0, 1))


def test_caller_script_logs_when_each_audio_item_was_sent():
    a, b = bytes(range(256)) * 2, bytes(range(100))  # 512 bytes (64 ms, 4 frames), 100 bytes (12.5 ms, 1 frame)
    waiter = TurnWaiter(quiet_s=0.2, min_wait_s=0.0, timeout_s=1.0)
    script = CallerScript(parse_script(["a.wav", "dtmf:1", "b.wav"]), {"a.wav": a, "b.wav": b}, waiter,
                          wait_first=False)
    ticks = run_script(script)
    starts = [index for index, (_, tick) in enumerate(ticks) if tick.note and "caller:" in tick.note]
    assert script.spoken == [SpokenItem("inbound", 0, "a.wav", starts[0], 64),
                             SpokenItem("inbound", 2, "b.wav", starts[2], 12)]
    assert ticks[starts[2]][1].ulaw[:100] == b


def test_parse_script_fork_reads_callee_items():
    items = parse_script(["q.wav", "callee:dir/answer.wav", "silence:1"], fork=True)
    assert [(item.kind, item.track, item.path) for item in items] == [
        ("audio", "inbound", "q.wav"), ("audio", "outbound", "dir/answer.wav"), ("silence", "inbound", None)]
    assert items[1].token == "callee:dir/answer.wav"


@pytest.mark.parametrize("tokens, fork, message", [
    (["callee:a.wav"], False, "need --fork"),
    (["callee:"], True, "audio file path"),
    (["dtmf:1"], True, "bidirectional"),
    (["interrupt:1"], True, "one after"),
])
def test_parse_script_refuses_items_of_the_other_mode(tokens, fork, message):
    with pytest.raises(ValueError, match=message):
        parse_script(tokens, fork=fork)


def test_caller_script_refuses_callee_items():
    items = parse_script(["callee:a.wav"], fork=True)
    with pytest.raises(ValueError, match="--fork"):
        CallerScript(items, {"a.wav": bytes(160)}, TurnWaiter(1, 0, 1))


def drain(script):
    ticks = []
    while (tick := script.next_tick()) is not None:
        ticks.append(tick)
    return ticks


def test_fork_script_plays_both_sides_in_turn_with_gaps_and_tail():
    caller = bytes(range(1, 251)) * 2  # 500 bytes: 4 frames (62.5 ms)
    callee = bytes(range(3, 203))  # 200 bytes: 2 frames (25 ms)
    items = parse_script(["q.wav", "callee:a.wav", "silence:0.1", "q.wav"], fork=True)
    script = ForkScript(items, {"q.wav": caller, "a.wav": callee}, gap_s=0.1, tail_s=0.2)
    ticks = drain(script)
    silence = b"\xff" * FRAME_BYTES
    # q 4 + gap 5 + a 2 + gap 5 + silence 5 + gap 5 + q 4 + tail 10
    assert len(ticks) == 4 + 5 + 2 + 5 + 5 + 5 + 4 + 10
    assert all(len(t.inbound) == len(t.outbound) == FRAME_BYTES for t in ticks)
    assert b"".join(t.inbound for t in ticks[0:4]) == b"".join(split_frames(caller))
    assert all(t.outbound == silence for t in ticks[0:4])
    assert all(t.inbound == t.outbound == silence for t in ticks[4:9])
    assert b"".join(t.outbound for t in ticks[9:11]) == b"".join(split_frames(callee))
    assert all(t.inbound == silence for t in ticks[9:11])
    assert b"".join(t.inbound for t in ticks[26:30]) == b"".join(split_frames(caller))
    assert all(t.inbound == t.outbound == silence for t in ticks[30:])
    assert script.spoken == [SpokenItem("inbound", 0, "q.wav", 0, 62), SpokenItem("outbound", 1, "callee:a.wav", 9, 25),
                             SpokenItem("inbound", 3, "q.wav", 26, 62)]
    notes = [(index, t.note) for index, t in enumerate(ticks) if t.note]
    assert notes == [(0, "caller: q.wav"), (9, "callee: a.wav"), (16, "silence: 0.1 s"), (26, "caller: q.wav"),
                     (30, "tail: 0.2 s of silence")]
    assert script.next_tick() is None and script.final_note == "script over"


def test_fork_script_without_gap_or_tail_is_just_the_items():
    items = parse_script(["callee:a.wav", "b.wav"], fork=True)
    script = ForkScript(items, {"a.wav": bytes(160), "b.wav": bytes(320)}, gap_s=0, tail_s=0)
    ticks = drain(script)
    assert len(ticks) == 3
    assert [item.start_tick for item in script.spoken] == [0, 1]
    assert ForkScript([], {}, gap_s=0, tail_s=0).next_tick() is None


@pytest.mark.parametrize("tokens, audio, kwargs", [
    (["a.wav"], {}, {}),
    ([], {}, {"gap_s": -0.1}),
    ([], {}, {"tail_s": float("nan")}),
])
def test_fork_script_rejects_missing_audio_and_bad_durations(tokens, audio, kwargs):
    with pytest.raises(ValueError):
        ForkScript(parse_script(tokens, fork=True), audio, **kwargs)


def test_fork_script_rejects_conversation_items():
    with pytest.raises(ValueError, match="fork script"):
        ForkScript(parse_script(["dtmf:1"]), {})


def test_a_reply_to_keys_that_starts_while_the_last_key_is_held_is_not_missed():
    """The bot answers "#" at once: its audio may arrive before the DTMF item's 100 ms hold is over."""
    waiter = TurnWaiter(quiet_s=0.5, min_wait_s=0.0, timeout_s=3.0)
    script = CallerScript(parse_script(["dtmf:1#"]), {}, waiter, wait_first=False)
    ticks = run_script(script, bot_media_at=[0.14])  # "#" goes out at 0.10 s, the item ends at 0.20 s
    assert script.final_note == "bot quiet"  # not "wait timed out after 3 s"
    assert ticks[-1][0] < 1.0


def test_a_reply_that_starts_in_the_trailing_silence_of_an_audio_item_counts():
    # 0.2 s of speech, then 0.4 s of silence in the file: the bot answers 0.2 s after the speech,
    # while the caller's file still sends its silence. Counted from the end of the item, that reply
    # would be missed and the caller would wait out the timeout.
    import numpy as np

    from audio.codec import array_to_ulaw
    speech = array_to_ulaw(0.5 * np.sin(2 * np.pi * 440 * np.arange(1600) / 8000))
    audio = speech + b"\xff" * 3200
    waiter = TurnWaiter(quiet_s=0.2, min_wait_s=0.0, timeout_s=3.0)
    script = CallerScript(parse_script(["a.wav"]), {"a.wav": audio}, waiter, wait_first=False)
    ticks = run_script(script, bot_media_at=[0.4])
    notes = [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]
    assert notes == [(0.0, "caller: a.wav"), (0.6, "waiting for the bot to reply")]
    assert script.final_note == "bot quiet" and ticks[-1][0] < 1.0
