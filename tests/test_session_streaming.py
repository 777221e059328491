"""Streaming replies in the per-call state machine: pieces in, sentences spoken as they complete."""

from core.protocol import Mark
from core.session import Cancel, HangUp, Respond, Speak
from tests.test_session import STREAM_SID, Caller, answered_turn, make_session, of_type, sent_events, speculative_session


def marks_of(actions) -> list[str]:
    return [e["mark"]["name"] for e in sent_events(actions) if e["event"] == "mark"]


def stream(session, turn_id, *pieces):
    for piece in pieces:
        session.receive_reply_chunk(turn_id, piece, elapsed_ms=40)


def test_each_sentence_is_spoken_as_soon_as_it_is_complete():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "Sure, I can", " help with")
    assert of_type(caller.drain(), Speak) == []  # no sentence complete yet
    stream(session, respond.turn_id, " that today. What is", " your name")
    [first] = of_type(caller.drain(), Speak)
    assert first.sentences == ("Sure, I can help with that today.",) and first.first_index == 0
    session.receive_speech(first.reply_id, 0, b"\x01" * 800, elapsed_ms=70)
    [mark0] = marks_of(caller.drain())
    stream(session, respond.turn_id, "? I will wait.")
    session.receive_reply_end(respond.turn_id)
    [second, third] = of_type(caller.drain(), Speak)
    assert (second.reply_id, second.first_index, second.sentences) == (first.reply_id, 1, ("What is your name?",))
    assert (third.first_index, third.sentences) == (2, ("I will wait.",))
    session.receive_speech(first.reply_id, 1, b"\x02" * 800)
    session.receive_speech(first.reply_id, 2, b"\x03" * 800)
    mark1, mark2 = marks_of(caller.drain())
    for name in (mark0, mark1):
        session.receive_event(Mark(STREAM_SID, name))
    assert session.bot_speaking
    session.receive_event(Mark(STREAM_SID, mark2))
    assert not session.bot_speaking
    bot = session.record.turns[-1]
    assert bot.text == "Sure, I can help with that today. What is your name? I will wait."
    assert bot.latency_ms["responder"] == 40 and bot.latency_ms["synthesis"] == 70
    assert bot.interrupted is None and "interrupted" not in bot.to_json()


def test_a_stream_that_ends_after_its_audio_was_sent_ends_with_the_last_echo():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "Here is the first part. ")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 800)
    [mark] = marks_of(caller.drain())
    session.receive_event(Mark(STREAM_SID, mark))
    assert session.bot_speaking  # the model may still be producing the rest
    session.receive_reply_end(respond.turn_id)
    assert not session.bot_speaking and session.record.turns[-1].end_ms is not None


def test_barge_in_cancels_the_stream_and_keeps_what_was_heard():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "Once upon a time there was a phone. ", "It rang all day long. ", "Nobody")
    speaks = of_type(caller.drain(), Speak)
    reply_id = speaks[0].reply_id
    session.receive_speech(reply_id, 0, b"\x01" * 800)
    session.receive_speech(reply_id, 1, b"\x02" * 8000)
    mark0, _ = marks_of(caller.drain())
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, mark0))  # the first sentence played
    actions = caller.speak(300)  # the caller talks over the second
    assert {"event": "clear", "streamSid": STREAM_SID} in sent_events(actions)
    assert any(respond.turn_id in c.turn_ids for c in of_type(actions, Cancel))  # the responder's stream is stopped
    stream(session, respond.turn_id, " answered it.")  # late pieces change nothing
    session.receive_reply_end(respond.turn_id)
    assert of_type(caller.drain(), Speak) == []
    bot = session.record.turns[-1].to_json()
    assert bot["interrupted"] is True and bot["heard"] == "Once upon a time there was a phone."
    assert bot["text"] == "Once upon a time there was a phone. It rang all day long."


def test_an_error_before_any_sentence_is_apologized_for():
    caller = Caller(make_session(apology="Sorry, try again."))
    caller.start()
    respond = answered_turn(caller)
    stream(caller.session, respond.turn_id, "I think")
    caller.session.receive_reply_end(respond.turn_id, "APITimeoutError: Request timed out.")
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Sorry, try again.",) and speak.offline_voice


def test_an_error_mid_reply_ends_it_with_the_apology_after_what_was_said():
    caller = Caller(make_session(apology="Sorry, try again."))
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "The first thing to know is this. The second", " thing")
    [first] = of_type(caller.drain(), Speak)
    session.receive_reply_end(respond.turn_id, "responder failed")
    [apology] = of_type(caller.drain(), Speak)
    assert (apology.reply_id, apology.first_index, apology.sentences, apology.offline_voice) == (first.reply_id, 1, ("Sorry, try again.",), True)
    session.receive_speech(first.reply_id, 0, b"\x01" * 800)
    session.receive_speech(first.reply_id, 1, b"\x02" * 800)
    for name in marks_of(caller.drain()):
        session.receive_event(Mark(STREAM_SID, name))
    bot = session.record.turns[-1]
    assert not session.bot_speaking and bot.text == "The first thing to know is this. Sorry, try again."
    assert bot.error == "responder failed"


def test_an_empty_stream_says_nothing_and_a_streamed_goodbye_hangs_up_after_playing():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply_end(respond.turn_id)
    assert of_type(caller.drain(), Speak) == [] and not caller.session.bot_speaking
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "Thanks for calling,", " goodbye!")
    session.receive_reply_end(respond.turn_id, hang_up=True)
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Thanks for calling, goodbye!",)
    caller.speak(300)  # a goodbye cannot be interrupted
    session.receive_speech(speak.reply_id, 0, b"\x01" * 800)
    actions = caller.drain()
    assert of_type(actions, HangUp) == [] and {"event": "clear", "streamSid": STREAM_SID} not in sent_events(actions)
    session.receive_event(Mark(STREAM_SID, marks_of(actions)[0]))
    assert of_type(caller.drain(), HangUp) == [HangUp("the responder ended the call")]


def test_synthesis_failure_mid_stream_stops_the_stream():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    stream(session, respond.turn_id, "The first sentence is here. The second one is here. ")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 800)
    session.receive_speech_failed(speak.reply_id, "piper crashed")
    actions = caller.drain()
    assert any(respond.turn_id in c.turn_ids for c in of_type(actions, Cancel))
    stream(session, respond.turn_id, "A third one that is never spoken. ")
    assert of_type(caller.drain(), Speak) == []
    session.receive_event(Mark(STREAM_SID, marks_of(actions)[0]))
    bot = session.record.turns[-1]
    assert not session.bot_speaking and bot.error == "synthesis failed"  # not the engine's words
    assert bot.text == "The first sentence is here. The second one is here."  # what the responder said


def test_a_speculative_stream_is_held_until_the_endpoint_then_spoken():
    caller = Caller(speculative_session(speculative_reply=True))
    caller.start()
    caller.speak(1000)
    [ahead] = [a for a in caller.pause(200) if type(a).__name__ == "Transcribe"]
    session = caller.session
    session.receive_transcript(ahead.turn_id, "hello")
    [respond] = of_type(caller.drain(), Respond)
    stream(session, respond.turn_id, "Hello to you too. ")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 800)
    session.receive_reply_end(respond.turn_id)
    assert sent_events(caller.drain()) == []  # nothing sent before the endpoint
    actions = caller.pause(400)  # the pause becomes the endpoint
    events = sent_events(actions)
    assert [e["event"] for e in events][-1] == "mark" and events[0]["event"] == "media"
    session.receive_event(Mark(STREAM_SID, marks_of(actions)[0]))
    assert not session.bot_speaking and session.record.turns[-1].text == "Hello to you too."
