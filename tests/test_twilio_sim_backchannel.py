"""Tests for ``over:SECONDS:FILE`` script items: the caller says FILE over the bot's reply and waits on (pure, fake clock).

The sounds are the real recordings in tests/data/backchannel (an "uh-huh" and the word "one").
"""

from pathlib import Path

import pytest

from tests.test_twilio_sim_script import run_script
from tools.twilio_sim.audio_files import load_audio_ulaw, load_script
from tools.twilio_sim.frames import split_frames
from tools.twilio_sim.script import CallerScript, SpokenItem, TurnWaiter, parse_script

DATA = Path(__file__).resolve().parent / "data"
UHUH = str(DATA / "backchannel" / "uhuh.flac")  # 0.37 s: 3000 μ-law bytes, 19 frames
ONE = str(DATA / "backchannel" / "one.flac")  # 0.75 s
SPEECH = str(DATA / "sr_english.wav")
AUDIO = {path: load_audio_ulaw(path) for path in (UHUH, ONE, SPEECH)}


def notes_of(ticks) -> list[tuple[float, str]]:
    return [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]


def caller(tokens, wait_first=False, quiet_s=0.5, timeout_s=8.0) -> CallerScript:
    return CallerScript(parse_script(tokens), AUDIO, TurnWaiter(quiet_s, 0.0, timeout_s), wait_first=wait_first)


def test_an_over_item_parses_seconds_and_a_path_that_may_hold_colons():
    items = parse_script([SPEECH, f"over:1.5:{UHUH}", "over:0.2:C:/sounds/mhm.wav"])
    assert [(item.kind, item.seconds, item.path) for item in items[1:]] == [
        ("over", 1.5, UHUH), ("over", 0.2, "C:/sounds/mhm.wav")]
    assert items[1].token == f"over:1.5:{UHUH}"


@pytest.mark.parametrize("token, message", [
    ("over:", "SECONDS:FILE"), ("over:1", "SECONDS:FILE"), ("over:1:", "SECONDS:FILE"),
    ("over:soon:a.wav", "duration in seconds"), ("over:0:a.wav", "> 0"), ("over:-1:a.wav", "> 0"),
    ("over:nan:a.wav", "> 0"), ("over:inf:a.wav", "> 0"),
])
def test_a_bad_over_item_is_refused(token, message):
    with pytest.raises(ValueError, match=message):
        parse_script([token])


def test_a_fork_refuses_over_items():
    with pytest.raises(ValueError, match="over: needs a bot to talk over"):
        parse_script([SPEECH, f"over:1:{UHUH}"], fork=True)


def test_load_script_reads_the_over_items_audio():
    items, sources = load_script([SPEECH, f"over:1:{UHUH}"])
    assert set(sources) == {SPEECH, UHUH} and items[1].kind == "over"
    assert sources[UHUH].sample_rate == 22050 and 0.36 < sources[UHUH].duration_s < 0.38


def test_the_caller_says_it_over_the_reply_then_waits_for_the_bot_to_finish():
    script = caller([SPEECH, f"over:0.29:{UHUH}", ONE])
    ticks = run_script(script, bot_media_at=[2.8], queued_until=5.0)
    notes = notes_of(ticks)
    # "one two three" takes 138 ticks (0.00-2.74 s); the wait starts at 2.76 s; bot audio is heard from 2.78 s
    # (the first tick that plays it after the wait started).
    assert notes[0] == (0.0, f"caller: {SPEECH}")
    assert notes[1] == (2.76, "waiting for the bot to reply")
    assert notes[2] == (3.08, f"caller over the bot: {UHUH}")  # 0.29 s into the reply, on the next tick
    # Then silence again until the bot is quiet (its last audio at 4.98 s, quiet 0.5 s), not a barge-in.
    assert notes[3] == (5.48, f"bot quiet; caller: {ONE}")
    over_start = round(3.08 / 0.02)
    sent = b"".join(tick.ulaw for _, tick in ticks[over_start:over_start + 19])
    assert sent == b"".join(split_frames(AUDIO[UHUH]))
    assert ticks[over_start + 19][1].ulaw == b"\xff" * 160
    assert script.spoken[1] == SpokenItem("inbound", 1, f"over:0.29:{UHUH}", over_start, 375)
    assert [item.token for item in script.spoken] == [SPEECH, f"over:0.29:{UHUH}", ONE]


def test_several_over_items_are_said_in_order_of_their_seconds():
    script = caller([SPEECH, f"over:0.99:{ONE}", f"over:0.19:{UHUH}"])
    ticks = run_script(script, bot_media_at=[2.8], queued_until=6.0)
    notes = notes_of(ticks)
    assert notes[2] == (2.98, f"caller over the bot: {UHUH}")
    assert notes[3] == (3.78, f"caller over the bot: {ONE}")
    # The over items were the last wait's: the script ends once the bot is quiet (last audio 5.98 s + 0.5 s),
    # with no other wait after it.
    assert len(notes) == 4 and script.final_note == "bot quiet"
    assert ticks[-1][0] == pytest.approx(6.46)
    assert [item.index for item in script.spoken] == [0, 2, 1]


def test_an_over_item_the_reply_is_too_short_for_is_not_said():
    script = caller([SPEECH, f"over:1.0:{UHUH}", ONE])
    ticks = run_script(script, bot_media_at=[2.8], queued_until=3.2)  # 0.4 s of reply
    notes = notes_of(ticks)
    assert notes[2] == (3.68, f"bot quiet; not said: over:1.0:{UHUH} (the reply did not play that long); caller: {ONE}")
    assert [item.token for item in script.spoken] == [SPEECH, ONE]


def test_an_over_item_before_the_first_item_talks_over_the_greeting():
    script = caller([f"over:0.47:{UHUH}", SPEECH], wait_first=True)
    ticks = run_script(script, bot_media_at=[0.2], queued_until=2.0)
    notes = notes_of(ticks)
    assert notes[:2] == [(0.0, "waiting for the bot"), (0.5, f"caller over the bot: {UHUH}")]
    assert notes[2] == (2.48, f"bot quiet; caller: {SPEECH}")


def test_over_and_interrupt_in_one_wait():
    script = caller([SPEECH, f"over:0.19:{UHUH}", "interrupt:0.99", ONE])
    notes = notes_of(run_script(script, bot_media_at=[2.8], queued_until=9.0))
    assert notes[2] == (2.98, f"caller over the bot: {UHUH}")
    assert notes[3] == (3.78, f"interrupting the bot; caller: {ONE}")  # the backchannel did not end the wait


def test_a_script_ending_in_an_interrupt_still_waits_for_the_answer_to_it():
    script = caller([SPEECH, "interrupt:0.19"], timeout_s=2.0)
    notes = notes_of(run_script(script, bot_media_at=[2.8], queued_until=9.0))
    assert notes[2] == (2.98, "interrupting the bot; waiting for the bot to reply")
