"""Barge-in confirmation (issue #14 part 2): a backchannel or a cough over the bot does not stop
it; a long enough utterance, or a short one with a real word in its transcript, does."""

import pytest

from audio.endpointing import EndpointingConfig
from core.backchannel import DEFAULT_BACKCHANNELS, is_backchannel
from core.session import Cancel, Respond, Speak, Transcribe
from tests.test_session import Caller, make_session, of_type, sent_events


@pytest.mark.parametrize("text", ["Mhm.", "mm-hmm", "Okay, yeah.", "uh huh", "All right.", "", "(coughing)",
                                  "[MUSIC]", "YES!"])
def test_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["No.", "Wait.", "stop", "Okay, wait.", "yeah but Tuesday", "I see two", "right now"])
def test_not_backchannels(text):
    assert not is_backchannel(text)


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


@pytest.mark.parametrize("text", ["No.", "Wait!", "Stop."])
def test_a_short_word_that_is_not_a_backchannel_stops_the_bot_once_transcribed(text):
    caller, reply_id, actions = short_utterance_over_the_bot(text)
    assert clears(actions) == 1
    assert any(reply_id in c.reply_ids for c in of_type(actions, Cancel))
    assert [r.text for r in of_type(actions, Respond)] == [text]
    assert caller.session.record.turns[1].interrupted


def test_speech_over_the_bot_stops_it_once_it_has_lasted_barge_in_min_ms():
    caller, _ = bot_talking(min_ms=400)
    assert clears(caller.speak(380)) == 0  # voiced 380 ms: the bot plays on
    assert clears(caller.speak(40)) == 1  # 400 ms from the first voiced frame: a barge-in
    assert caller.session.record.turns[1].interrupted


def test_with_barge_in_min_ms_0_any_speech_start_stops_the_bot():
    caller, _ = bot_talking(min_ms=0)
    assert clears(caller.speak(200)) == 1  # at the speech start (200 ms of voice)


def test_words_over_the_bot_that_go_on_before_they_are_judged_are_one_turn():
    # "one … two three": "one" ends (a 700 ms pause) but is not transcribed yet when the caller
    # goes on; the two parts are judged, and answered, as one utterance.
    caller, _ = bot_talking(min_ms=1000)
    [first] = of_type(caller.speak(300) + caller.pause(700), Transcribe)
    actions = caller.speak(300)
    assert any(first.turn_id in c.turn_ids for c in of_type(actions, Cancel))
    [merged] = of_type(actions + caller.pause(700), Transcribe)
    assert len(merged.pcm) > len(first.pcm)
    caller.session.receive_transcript(first.turn_id, "one")  # stale: ignored
    caller.session.receive_transcript(merged.turn_id, "one two three")
    actions = caller.drain()
    assert clears(actions) == 1 and [r.text for r in of_type(actions, Respond)] == ["one two three"]


def test_a_short_word_over_the_bot_stops_it_as_soon_as_speculation_has_it():
    # "One" (300 ms) over the bot, then a pause: the speculative transcript at the 200 ms pause
    # stops the bot before the endpoint; a backchannel there does not.
    for text, stopped in (("One.", True), ("Mhm.", False)):
        caller, _ = bot_talking(endpointing=EndpointingConfig(pause_ms=200))
        actions = caller.speak(300) + caller.pause(200)
        [transcribe] = of_type(actions, Transcribe)
        assert transcribe.speculative
        caller.session.receive_transcript(transcribe.turn_id, text)
        assert clears(caller.drain()) == int(stopped), text
