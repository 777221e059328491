"""Audio prompts (``Play``) in the per-call state machine: one item of a reply, marked, cleared and
recorded like a sentence of speech; a prompt that failed to load is left out."""

from audio.endpointing import EndpointingConfig
from core.protocol import Mark
from core.responder import Play
from core.session import Cancel, HangUp, RecordPlayed, Respond, Speak, Transcribe
from core.turn_end import TurnEndConfig
from tests.test_session import STREAM_SID, Caller, answered_turn, make_session, of_type, sent_events, speculative_session

HOLD = Play("prompts/hold.wav")
PROMPT_AUDIO = b"\x05" * 16000  # 2 s of μ-law
SPEECH_AUDIO = b"\x01" * 800  # 100 ms


def marks_of(actions) -> list[str]:
    return [e["mark"]["name"] for e in sent_events(actions) if e["event"] == "mark"]


def media_of(actions) -> int:
    return sum(1 for e in sent_events(actions) if e["event"] == "media")


def reply_with_prompt(caller, reply=("Please hold.", HOLD, "Thanks for waiting.")) -> Speak:
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, list(reply) if isinstance(reply, tuple) else reply, elapsed_ms=3)
    [speak] = of_type(caller.drain(), Speak)
    return speak


def test_a_prompt_between_sentences_is_sent_and_marked_like_a_sentence_and_recorded_as_played():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller)
    assert speak.sentences == ("Please hold.", HOLD, "Thanks for waiting.")  # the worker loads the Play's file
    session = caller.session
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_speech(speak.reply_id, 1, PROMPT_AUDIO)
    session.receive_speech(speak.reply_id, 2, SPEECH_AUDIO)
    actions = caller.drain()
    assert media_of(actions) == 5 + 100 + 5  # 20 ms media messages: 100 ms, 2 s, 100 ms
    marks = marks_of(actions)
    assert len(marks) == 3
    caller.pause(100)
    for name in marks:
        session.receive_event(Mark(STREAM_SID, name))
    played = of_type(caller.drain(), RecordPlayed)
    assert [p.audio for p in played] == [SPEECH_AUDIO, PROMPT_AUDIO, SPEECH_AUDIO]  # the recording has the prompt
    assert not session.bot_speaking
    bot = session.record.turns[-1].to_json()
    assert bot["text"] == "Please hold. [played hold.wav] Thanks for waiting."
    assert "interrupted" not in bot and "error" not in bot and bot["end_ms"] is not None


def test_a_bare_play_is_a_reply_of_one_prompt():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller, HOLD)
    assert speak.sentences == (HOLD,)
    caller.session.receive_speech(speak.reply_id, 0, PROMPT_AUDIO)
    [mark] = marks_of(caller.drain())
    caller.session.receive_event(Mark(STREAM_SID, mark))
    assert caller.session.record.turns[-1].text == "[played hold.wav]"


def test_a_tuple_of_texts_splits_each_into_sentences_and_blank_items_are_left_out():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller, ("One moment please. I will check.", "  ", None, HOLD))
    assert speak.sentences == ("One moment please.", "I will check.", HOLD)


def test_barge_in_during_a_prompt_clears_it_and_heard_leaves_it_out():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller)
    session = caller.session
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_speech(speak.reply_id, 1, PROMPT_AUDIO)
    first, _ = marks_of(caller.drain())
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, first))  # "Please hold." played; the prompt is playing
    caller.drain()
    actions = caller.pause(500) + caller.speak(300)  # the caller talks 500 ms into the prompt
    assert [e for e in sent_events(actions) if e["event"] == "clear"] == [{"event": "clear", "streamSid": STREAM_SID}]
    assert any(speak.reply_id in c.reply_ids for c in of_type(actions, Cancel))  # the third item is not loaded or sent
    [placed] = of_type(actions, RecordPlayed)
    assert 0 < len(placed.audio) < len(PROMPT_AUDIO)  # only what played of the prompt is in the recording
    session.receive_speech(speak.reply_id, 2, SPEECH_AUDIO)  # late: dropped
    assert sent_events(caller.drain()) == []
    bot = session.record.turns[-1].to_json()
    assert bot["interrupted"] is True and bot["heard"] == "Please hold."
    assert bot["text"] == "Please hold. [played hold.wav] Thanks for waiting."


def test_a_prompt_that_played_is_in_heard():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller)
    session = caller.session
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_speech(speak.reply_id, 1, PROMPT_AUDIO)
    session.receive_speech(speak.reply_id, 2, SPEECH_AUDIO)
    first, second, _ = marks_of(caller.drain())
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, first))
    session.receive_event(Mark(STREAM_SID, second))
    caller.speak(300)  # over the last sentence
    bot = session.record.turns[-1].to_json()
    assert bot["interrupted"] is True and bot["heard"] == "Please hold. [played hold.wav]"


def test_a_prompt_that_fails_is_left_out_and_the_reply_goes_on():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller)
    session = caller.session
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_prompt_failed(speak.reply_id, 1, "PromptError: prompt file not found: /srv/prompts/hold.wav")
    session.receive_speech(speak.reply_id, 2, SPEECH_AUDIO)
    actions = caller.drain()
    assert media_of(actions) == 10
    marks = marks_of(actions)
    assert marks == [f"r{speak.reply_id}s0", f"r{speak.reply_id}s2"]
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, marks[0]))
    assert session.bot_speaking
    session.receive_event(Mark(STREAM_SID, marks[1]))
    assert not session.bot_speaking
    bot = session.record.turns[-1].to_json()
    assert bot["text"] == "Please hold. Thanks for waiting." and bot["error"] == "prompt failed"  # the path stays in the log
    assert bot["end_ms"] is not None and "interrupted" not in bot


def test_a_failed_last_prompt_ends_the_reply_with_the_mark_before_it():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller, ("Please hold.", HOLD))
    session = caller.session
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    [mark] = marks_of(caller.drain())
    session.receive_prompt_failed(speak.reply_id, 1, "not found")
    assert session.bot_speaking  # "Please hold." is still playing
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, mark))
    assert not session.bot_speaking
    bot = session.record.turns[-1]
    assert (bot.text, bot.error) == ("Please hold.", "prompt failed") and bot.end_ms is not None
    # The call goes on: the next turn is answered.
    caller.pause(400)
    assert of_type(caller.speak(600) + caller.pause(700), Transcribe)


def test_a_reply_of_only_a_failed_prompt_says_nothing_and_the_call_goes_on():
    caller = Caller(make_session())
    caller.start()
    speak = reply_with_prompt(caller, HOLD)
    session = caller.session
    session.receive_prompt_failed(speak.reply_id, 0, "not found")
    assert sent_events(caller.drain()) == [] and not session.bot_speaking
    assert [t.speaker for t in session.record.turns] == ["caller"]
    [transcribe] = of_type(caller.pause(400) + caller.speak(600) + caller.pause(700), Transcribe)
    session.receive_transcript(transcribe.turn_id, "hello again")
    assert [r.text for r in of_type(caller.drain(), Respond)] == ["hello again"]


def test_a_goodbye_of_only_a_failed_prompt_still_hangs_up():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, [HOLD], hang_up=True)
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_prompt_failed(speak.reply_id, 0, "not found")
    assert of_type(caller.drain(), HangUp) == [HangUp("the responder ended the call")]


def test_a_goodbye_with_a_prompt_hangs_up_once_the_prompt_has_played():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, ["Goodbye.", HOLD], hang_up=True)
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Goodbye.", HOLD)
    caller.session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    caller.session.receive_speech(speak.reply_id, 1, PROMPT_AUDIO)
    first, last = marks_of(caller.drain())
    caller.session.receive_event(Mark(STREAM_SID, first))
    assert of_type(caller.drain(), HangUp) == []
    caller.session.receive_event(Mark(STREAM_SID, last))
    assert of_type(caller.drain(), HangUp) == [HangUp("the responder ended the call")]


def test_a_streamed_play_completes_the_text_before_it():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    session.receive_reply_chunk(respond.turn_id, "Please hold", elapsed_ms=40)
    assert of_type(caller.drain(), Speak) == []  # no sentence end yet
    session.receive_reply_chunk(respond.turn_id, HOLD)
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Please hold", HOLD) and speak.first_index == 0
    session.receive_reply_chunk(respond.turn_id, " Thanks for waiting.")
    session.receive_reply_end(respond.turn_id)
    [rest] = of_type(caller.drain(), Speak)
    assert (rest.first_index, rest.sentences) == (2, ("Thanks for waiting.",))
    for index, audio in enumerate((SPEECH_AUDIO, PROMPT_AUDIO, SPEECH_AUDIO)):
        session.receive_speech(speak.reply_id, index, audio)
    for name in marks_of(caller.drain()):
        session.receive_event(Mark(STREAM_SID, name))
    assert not session.bot_speaking
    assert session.record.turns[-1].text == "Please hold [played hold.wav] Thanks for waiting."


def test_a_failed_prompt_of_a_speculative_reply_waits_for_the_endpoint():
    caller = Caller(speculative_session(speculative_reply=True))
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(200), Transcribe)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "hello")
    [respond] = of_type(caller.drain(), Respond)
    session.receive_reply(respond.turn_id, ["Please hold.", HOLD])
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_prompt_failed(speak.reply_id, 1, "not found")
    assert sent_events(caller.drain()) == [] and session.record.turns == []  # the caller may go on
    [mark] = marks_of(caller.pause(400))  # the pause becomes the endpoint: replayed in order
    session.receive_event(Mark(STREAM_SID, mark))
    bot = session.record.turns[-1]
    assert (bot.text, bot.error) == ("Please hold.", "prompt failed") and not session.bot_speaking


def test_a_failed_prompt_held_for_the_turns_silence_is_replayed_after_the_audio_before_it():
    turn_end = TurnEndConfig(complete_ms=300, undecided_ms=600, incomplete_ms=1200)
    caller = Caller(make_session(turn_end=turn_end, speculative_reply=True, endpointing=EndpointingConfig(pause_ms=0)))
    caller.start()
    [transcribe] = of_type(caller.speak(600) + caller.pause(300), Transcribe)
    session = caller.session
    session.receive_transcript(transcribe.turn_id, "Go forward.")  # a first turn: its reply waits for 600 ms of silence
    [respond] = of_type(caller.drain(), Respond)
    session.receive_reply(respond.turn_id, ["Please hold.", HOLD, "Thanks."])
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, SPEECH_AUDIO)
    session.receive_prompt_failed(speak.reply_id, 1, "not found")
    session.receive_speech(speak.reply_id, 2, SPEECH_AUDIO)
    assert sent_events(caller.drain()) == []  # held
    assert marks_of(caller.pause(320)) == [f"r{speak.reply_id}s0", f"r{speak.reply_id}s2"]
    bot = session.record.turns[-1]
    assert (bot.text, bot.error) == ("Please hold. Thanks.", "prompt failed")
