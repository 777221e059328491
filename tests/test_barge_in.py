"""Barge-in confirmation (issue #14 part 2): a backchannel or a cough over the bot does not stop
it; a long enough utterance, or a short one with a stop word ("no", "wait") in its transcript, does."""

import pytest

from audio.endpointing import EndpointingConfig
from core.backchannel import DEFAULT_BACKCHANNELS, has_stop_word, is_backchannel
from core.session import Cancel, Respond, Speak, Transcribe
from tests.test_session import Caller, make_session, of_type, sent_events


@pytest.mark.parametrize("text", ["Mhm.", "mm-hmm", "Okay, yeah.", "uh huh", "All right.", "", "(coughing)",
                                  "[MUSIC]", "YES!"])
def test_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["No.", "Wait.", "stop", "Okay, wait.", "yeah but Tuesday", "I see two", "right now"])
def test_not_backchannels(text):
    assert not is_backchannel(text)


@pytest.mark.parametrize("text, stop", [("No, no.", True), ("Okay, wait.", True), ("Hold on!", True), ("HEY", True),
                                        ("Thank you.", False), ("One.", False), ("nobody", False), ("whatever", False),
                                        ("hold", False), ("", False)])
def test_stop_words(text, stop):
    assert has_stop_word(text) is stop


def test_phrases_are_configurable():
    assert not is_backchannel("indeed")
    assert is_backchannel("Indeed, indeed.", DEFAULT_BACKCHANNELS + ("indeed",))
    assert not is_backchannel("all", ("all right",))  # a phrase matches only as a whole


def bot_talking(min_ms: int = 400, **overrides) -> tuple[Caller, int]:
    """A call in which the bot is reading a long reply (audio sent, no mark echoed yet)."""
    caller = Caller(make_session(barge_in_min_ms=min_ms, **overrides))
    caller.start()
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, "tell me a story")
    [respond] = of_type(caller.drain(), Respond)
    caller.session.receive_reply(respond.turn_id, "Once upon a time there was a phone. It rang all day.")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 80000)  # 10 s of audio
    caller.drain()
    return caller, speak.reply_id


def clears(actions) -> int:
    return sum(1 for e in sent_events(actions) if e["event"] == "clear")


def short_utterance_over_the_bot(text: str) -> tuple[Caller, int, list]:
    """The caller says something short (300 ms) over the bot, transcribed as ``text``; returns the
    call, the bot's reply id and the actions after the transcript."""
    caller, reply_id = bot_talking()
    actions = caller.speak(300) + caller.pause(700)
    assert clears(actions) == 0  # not before the transcript
    [transcribe] = of_type(actions, Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, text)
    return caller, reply_id, caller.drain()


@pytest.mark.parametrize("text", ["Mhm.", "", "(coughing)", "Okay."])
def test_a_short_backchannel_or_noise_over_the_bot_does_not_stop_it(text):
    caller, reply_id, actions = short_utterance_over_the_bot(text)
    assert clears(actions) == 0 and not of_type(actions, Respond)
    assert all(reply_id not in c.reply_ids for c in of_type(actions, Cancel))
    assert [t.speaker for t in caller.session.record.turns] == ["caller", "bot"]  # nothing recorded
    assert not caller.session.record.turns[-1].interrupted


@pytest.mark.parametrize("text", ["No.", "Wait!", "Stop.", "Okay, hold on."])
def test_a_short_stop_word_stops_the_bot_once_transcribed(text):
    caller, reply_id, actions = short_utterance_over_the_bot(text)
    assert clears(actions) == 1
    assert any(reply_id in c.reply_ids for c in of_type(actions, Cancel))
    assert [r.text for r in of_type(actions, Respond)] == [text]
    assert caller.session.record.turns[1].interrupted


@pytest.mark.parametrize("text", ["Thank you.", "One.", "you"])
def test_other_short_words_over_the_bot_do_not_stop_it(text):
    # What a blip of the bot's own echo is transcribed as ("Thank you." on a quarter-second of
    # leaked echo, end to end), or a caller's first word that goes no further.
    caller, reply_id, actions = short_utterance_over_the_bot(text)
    assert clears(actions) == 0 and not of_type(actions, Respond)
    assert [t.speaker for t in caller.session.record.turns] == ["caller", "bot"]
    assert clears(caller.pause(2000)) == 0


def test_a_short_word_over_the_bot_that_the_caller_goes_on_from_starts_their_turn():
    # "one" (300 ms, judged too short), 700 ms later "two three": one turn. The bot stops at the
    # second part's speech start (200 ms of voice), when the parts add up to 500 ms: past
    # BARGE_IN_MIN_MS (400 ms), where the second part alone is not.
    caller, reply_id, actions = short_utterance_over_the_bot("One.")
    assert clears(actions) == 0
    assert clears(caller.speak(180)) == 0
    actions = caller.speak(20)
    assert clears(actions) == 1
    [merged] = of_type(actions + caller.speak(300) + caller.pause(700), Transcribe)
    assert len(merged.pcm) >= (300 + 500) * 16  # both parts (PCM16 at 8 kHz: 16 bytes per ms)
    caller.session.receive_transcript(merged.turn_id, "One. Two three.")
    assert [r.text for r in of_type(caller.drain(), Respond)] == ["One. Two three."]


def test_a_short_word_is_forgotten_if_the_caller_does_not_go_on_soon():
    caller, reply_id, actions = short_utterance_over_the_bot("One.")
    caller.pause(1000)  # 1700 ms after the word: past SHORT_OVER_BOT_JOIN_MS
    actions = caller.speak(380)
    assert clears(actions) == 0  # 380 ms of new speech, not added to the old word
    caller, _ = bot_talking(min_ms=400)
    assert clears(caller.speak(380)) == 0  # voiced 380 ms: the bot plays on
    assert clears(caller.speak(40)) == 1  # 400 ms from the first voiced frame: a barge-in
    assert caller.session.record.turns[1].interrupted


def test_with_barge_in_min_ms_0_any_speech_start_stops_the_bot():
    caller, _ = bot_talking(min_ms=0)
    assert clears(caller.speak(200)) == 1  # at the speech start (200 ms of voice)


def test_words_over_the_bot_that_go_on_before_they_are_judged_are_one_turn():
    # "wait … one two three": "wait" ends (a 700 ms pause) but is not transcribed yet when the caller
    # goes on; the two parts are judged, and answered, as one utterance.
    caller, _ = bot_talking(min_ms=1000)
    [first] = of_type(caller.speak(300) + caller.pause(700), Transcribe)
    actions = caller.speak(300)
    assert any(first.turn_id in c.turn_ids for c in of_type(actions, Cancel))
    [merged] = of_type(actions + caller.pause(700), Transcribe)
    assert len(merged.pcm) > len(first.pcm)
    caller.session.receive_transcript(first.turn_id, "wait")  # stale: ignored
    caller.session.receive_transcript(merged.turn_id, "wait, one two three")  # 600 ms of speech, with a stop word
    actions = caller.drain()
    assert clears(actions) == 1 and [r.text for r in of_type(actions, Respond)] == ["wait, one two three"]


def test_a_short_word_over_the_bot_stops_it_as_soon_as_speculation_has_it():
    # "Wait" (300 ms) over the bot, then a pause: the speculative transcript at the 200 ms pause
    # stops the bot before the endpoint; a backchannel, or another short word, there does not.
    for text, stopped in (("Wait.", True), ("Mhm.", False), ("One.", False)):
        caller, _ = bot_talking(endpointing=EndpointingConfig(pause_ms=200))
        actions = caller.speak(300) + caller.pause(200)
        [transcribe] = of_type(actions, Transcribe)
        assert transcribe.speculative
        caller.session.receive_transcript(transcribe.turn_id, text)
        assert clears(caller.drain()) == int(stopped), text
