"""The per-call state machine, driven by scripted messages on the media clock (no I/O)."""

import json

import pytest

from audio.endpointing import EndpointingConfig
from core.protocol import Dtmf, Mark, Media, MediaFormat, Start, Stop, UnknownEvent
from core.session import CallSession, Cancel, EndCall, HangUp, RecordPlayed, Respond, SessionConfig, Send, Speak, Transcribe
from core.stream_session import Phase

STREAM_SID = "MZ00000000000000000000000000000001"
CALL_SID = "CA00000000000000000000000000000001"
VOICED = bytes(160)  # μ-law 0x00 decodes to -32124: loud
SILENT = b"\xff" * 160  # μ-law silence decodes to 0


def is_speech(frame: bytes) -> bool:
    return any(frame)


def make_session(greeting: str = "", **overrides) -> CallSession:
    overrides.setdefault("endpointing", EndpointingConfig())
    config = SessionConfig(greeting=greeting, **overrides)
    return CallSession(config, is_speech)


class Caller:
    """Feeds a session 20 ms media chunks on a media clock starting at 20 ms."""

    def __init__(self, session: CallSession) -> None:
        self.session = session
        self.timestamp_ms = 20
        self.actions: list = []

    def start(self) -> list:
        self.session.receive_event(
            Start(STREAM_SID, "AC1", CALL_SID, ("inbound",), MediaFormat(), {"From": "+15550001", "To": "+15550002"})
        )
        return self.drain()

    def send(self, chunk: bytes, duration_ms: int) -> list:
        for _ in range(duration_ms // 20):
            self.session.receive_event(Media(STREAM_SID, "inbound", None, self.timestamp_ms, chunk))
            self.timestamp_ms += 20
        return self.drain()

    def speak(self, duration_ms: int) -> list:
        return self.send(VOICED, duration_ms)

    def pause(self, duration_ms: int) -> list:
        return self.send(SILENT, duration_ms)

    def drain(self) -> list:
        actions = self.session.actions_to_perform()
        self.actions.extend(actions)
        return actions


def of_type(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def sent_events(actions) -> list[dict]:
    return [json.loads(a.text) for a in of_type(actions, Send)]


def test_greeting_is_spoken_when_the_stream_starts():
    caller = Caller(make_session(greeting="Hello there, how are you?"))
    actions = caller.start()
    speak = of_type(actions, Speak)
    assert len(speak) == 1 and speak[0].sentences == ("Hello there, how are you?",)
    assert caller.session.record.call_sid == CALL_SID
    assert caller.session.record.from_number == "+15550001"


def test_no_greeting_no_actions():
    assert Caller(make_session()).start() == []


def test_utterance_is_transcribed_answered_spoken_and_marked():
    caller = Caller(make_session())
    caller.start()
    caller.pause(400)
    assert caller.speak(1000) == []
    actions = caller.pause(700)
    [transcribe] = of_type(actions, Transcribe)
    assert transcribe.sample_rate == 8000
    # 1000 ms of speech plus pre-roll, in PCM16 bytes; the utterance spans the voiced frames.
    assert 1000 * 16 <= len(transcribe.pcm) <= (1000 + 300 + 40) * 16
    session = caller.session
    session.receive_transcript(transcribe.turn_id, "hello", elapsed_ms=300)
    [respond] = of_type(caller.drain(), Respond)
    assert respond.text == "hello" and respond.dtmf is None
    session.receive_reply(respond.turn_id, "You said hello. Anything else?", elapsed_ms=2)
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("You said hello.", "Anything else?")
    caller.pause(400)  # recognition and synthesis take media time too
    session.receive_speech(speak.reply_id, 0, b"\x01" * 400, elapsed_ms=60)
    events = sent_events(caller.drain())
    assert [e["event"] for e in events] == ["media", "media", "media", "mark"]
    assert events[0] == {"event": "media", "streamSid": STREAM_SID, "media": {"payload": events[0]["media"]["payload"]}}
    assert session.bot_speaking
    session.receive_speech(speak.reply_id, 1, b"\x02" * 160)
    marks = [e["mark"]["name"] for e in sent_events(caller.drain()) if e["event"] == "mark"]
    session.receive_event(Mark(STREAM_SID, events[-1]["mark"]["name"]))
    assert session.bot_speaking
    caller.pause(100)
    session.receive_event(Mark(STREAM_SID, marks[0]))
    assert not session.bot_speaking
    turns = [t.to_json() for t in session.record.turns]
    assert [t["speaker"] for t in turns] == ["caller", "bot"]
    assert turns[0]["text"] == "hello" and turns[0]["start_ms"] == 420 and turns[0]["end_ms"] == 1420
    assert turns[1]["text"] == "You said hello. Anything else?"
    assert turns[1]["start_ms"] < turns[1]["end_ms"]
    # Endpoint after 600 ms of silence; the 700 ms pause ran 100 ms past it, then 400 ms until the reply audio.
    assert turns[1]["latency_ms"] == {"endpoint": 600, "recognition": 300, "responder": 2, "synthesis": 60, "total": 1100, "first_mark": 1100}


def test_short_pause_inside_speech_does_not_end_the_utterance():
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    caller.pause(400)
    caller.speak(600)
    actions = caller.pause(700)
    [transcribe] = of_type(actions, Transcribe)
    assert len(transcribe.pcm) >= 1600 * 16


def test_barge_in_clears_twilio_and_cancels_the_reply():
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    session = caller.session
    session.receive_transcript(transcribe.turn_id, "tell me a story")
    [respond] = of_type(caller.drain(), Respond)
    session.receive_reply(respond.turn_id, "Once upon a time there was a phone. It rang all day.")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 8000)
    first_mark = sent_events(caller.drain())[-1]["mark"]["name"]
    actions = caller.speak(300)  # the caller talks over the reply
    assert sent_events(actions) == [{"event": "clear", "streamSid": STREAM_SID}]
    cancel = of_type(actions, Cancel)
    assert cancel and speak.reply_id in cancel[0].reply_ids
    # Twilio echoes the cleared mark; it is tolerated and changes nothing.
    session.receive_event(Mark(STREAM_SID, first_mark))
    session.receive_event(Mark(STREAM_SID, "never-sent"))
    # Late synthesis of the cancelled reply is dropped.
    session.receive_speech(speak.reply_id, 1, b"\x01" * 160)
    assert sent_events(caller.drain()) == []
    bot = session.record.turns[-1]
    assert bot.speaker == "bot" and bot.interrupted is True and bot.end_ms is not None
    # The interruption is a new turn.
    [transcribe2] = of_type(caller.pause(700), Transcribe)
    assert transcribe2.turn_id != transcribe.turn_id


def test_continuation_before_any_reply_audio_merges_the_utterances():
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    [first] = of_type(caller.pause(700), Transcribe)
    session = caller.session
    session.receive_transcript(first.turn_id, "I would like")
    [respond] = of_type(caller.drain(), Respond)
    actions = caller.speak(400)  # the caller goes on before the bot said anything
    assert not [e for e in sent_events(actions) if e["event"] == "clear"]
    assert any(isinstance(a, Cancel) and first.turn_id in a.turn_ids for a in actions)
    session.receive_reply(respond.turn_id, "You said: I would like")  # stale: dropped
    assert of_type(caller.drain(), Speak) == []
    [merged] = of_type(caller.pause(700), Transcribe)
    assert len(merged.pcm) > len(first.pcm)
    session.receive_transcript(merged.turn_id, "I would like a pizza")
    assert of_type(caller.drain(), Respond)[0].text == "I would like a pizza"
    caller_turns = [t for t in session.record.turns if t.speaker == "caller"]
    assert len(caller_turns) == 1 and caller_turns[0].text == "I would like a pizza"


@pytest.mark.parametrize("text,error", [("", None), (None, "RecognitionError: offline")])
def test_nothing_recognized_or_a_failure_never_reaches_the_responder(text, error):
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, text, error)
    actions = caller.drain()
    assert of_type(actions, Respond) == []
    turns = caller.session.record.turns
    if error:
        assert turns[0].error == error and turns[0].text == ""
        [speak] = of_type(actions, Speak)  # a failure is apologized for, in the offline voice
        assert speak.offline_voice and "Sorry" in speak.sentences[0]
    else:
        assert turns == [] and of_type(actions, Speak) == []  # nothing heard: no answer at all


def test_dtmf_digits_reach_the_responder_after_a_pause_or_hash():
    caller = Caller(make_session(dtmf_flush_ms=1000))
    caller.start()
    caller.pause(100)
    for digit in "12":
        caller.session.receive_event(Dtmf(STREAM_SID, digit, "inbound_track"))
    assert of_type(caller.pause(900), Respond) == []
    [respond] = of_type(caller.pause(200), Respond)
    assert respond.dtmf == "12" and respond.text == ""
    caller.session.receive_event(Dtmf(STREAM_SID, "9", "inbound_track"))
    caller.session.receive_event(Dtmf(STREAM_SID, "#", "inbound_track"))
    [respond2] = of_type(caller.drain(), Respond)
    assert respond2.dtmf == "9#"
    assert [t.dtmf for t in caller.session.record.turns] == ["12", "9#"]


def test_stop_mid_utterance_transcribes_for_the_record_but_does_not_answer():
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    caller.session.receive_event(Stop(STREAM_SID, "AC1", CALL_SID))
    actions = caller.drain()
    [transcribe] = of_type(actions, Transcribe)
    assert isinstance(actions[-1], EndCall)
    caller.session.receive_transcript(transcribe.turn_id, "goodbye")
    assert of_type(caller.drain(), Respond) == []
    assert caller.session.record.turns[0].text == "goodbye"


def test_media_before_start_unknown_events_and_a_second_start_are_ignored():
    session = make_session(greeting="Hi there, welcome!")
    session.receive_event(Media(STREAM_SID, "inbound", 1, 0, VOICED))
    session.receive_event(UnknownEvent("surprise"))
    assert session.actions_to_perform() == [] and session.media_before_start == 1
    caller = Caller(session)
    assert len(of_type(caller.start(), Speak)) == 1
    assert caller.start() == []
    assert session.record.call_sid == CALL_SID


def test_caller_speaking_while_the_greeting_is_synthesized_drops_it_without_clear():
    caller = Caller(make_session(greeting="Hello and welcome to the line."))
    [speak] = of_type(caller.start(), Speak)
    actions = caller.speak(300)
    assert sent_events(actions) == []
    assert any(isinstance(a, Cancel) and speak.reply_id in a.reply_ids for a in actions)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 160)
    assert caller.drain() == []


@pytest.mark.parametrize("played_before_failure", [False, True])
def test_synthesis_failure_ends_the_reply_with_what_was_sent(played_before_failure):
    caller = Caller(make_session())
    caller.start()
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    session = caller.session
    session.receive_transcript(transcribe.turn_id, "hi")
    session.receive_reply(transcribe.turn_id, "First sentence here. Second sentence here.")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 160)
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    if played_before_failure:
        session.receive_event(Mark(STREAM_SID, mark))
    session.receive_speech_failed(speak.reply_id, "engine down")
    if not played_before_failure:
        assert session.bot_speaking
        session.receive_event(Mark(STREAM_SID, mark))
    assert not session.bot_speaking
    bot = session.record.turns[-1]
    assert bot.end_ms is not None and bot.error == "synthesis failed"  # not the engine's words
    assert sent_events(caller.speak(300)) == []  # no clear: nothing is playing


def reply_with(caller, text, ulaw_per_sentence):
    """Drive one turn up to the reply's audio being sent; return the sent mark names."""
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, "hi")
    caller.session.receive_reply(transcribe.turn_id, text)
    [speak] = of_type(caller.drain(), Speak)
    for index, ulaw in enumerate(ulaw_per_sentence):
        caller.session.receive_speech(speak.reply_id, index, ulaw)
    return [e["mark"]["name"] for e in sent_events(caller.drain()) if e["event"] == "mark"]


def test_played_bot_audio_is_placed_where_its_mark_echo_says_it_ended():
    caller = Caller(make_session())
    caller.start()
    first, second = b"\x01" * 3200, b"\x02" * 1600  # 400 ms and 200 ms
    marks = reply_with(caller, "First sentence here. Second sentence here.", [first, second])
    sent_ms = caller.session.now_ms
    caller.pause(500)
    caller.session.receive_event(Mark(STREAM_SID, marks[0]))
    [placed] = of_type(caller.drain(), RecordPlayed)
    assert placed == RecordPlayed(sent_ms + 500 - 400, first)
    caller.pause(200)
    caller.session.receive_event(Mark(STREAM_SID, marks[1]))
    [placed2] = of_type(caller.drain(), RecordPlayed)
    assert placed2 == RecordPlayed(sent_ms + 500, second)  # right after the first


def test_barge_in_records_only_what_played_before_the_clear():
    caller = Caller(make_session())
    caller.start()
    marks = reply_with(caller, "A long sentence that will be interrupted.", [b"\x01" * 8000])  # 1 s
    sent_ms = caller.session.now_ms
    actions = caller.speak(300)  # speech starts; the endpointer decides after 200 ms of it
    [clear] = [e for e in sent_events(actions) if e["event"] == "clear"]
    [placed] = of_type(actions, RecordPlayed)
    played_ms = len(placed.audio) // 8
    assert placed.start_ms == sent_ms and 200 <= played_ms <= 300  # cut at the barge-in, not the whole second
    caller.session.receive_event(Mark(STREAM_SID, marks[0]))  # the echo after clear adds nothing
    assert of_type(caller.drain(), RecordPlayed) == []


def test_hang_up_says_goodbye_uninterrupted_then_hangs_up():
    caller = Caller(make_session())
    caller.start()
    caller.session.hang_up("Thanks for calling, goodbye.", "test")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 8000)
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    actions = caller.speak(600) + caller.pause(700)  # the caller talks over the goodbye
    assert sent_events(actions) == [] and of_type(actions, Transcribe) == [] and of_type(actions, HangUp) == []
    caller.session.receive_event(Mark(STREAM_SID, mark))
    assert of_type(caller.drain(), HangUp) == [HangUp("test")]


def test_hang_up_clears_what_the_bot_was_saying_and_drops_pending_turns():
    caller = Caller(make_session())
    caller.start()
    reply_with(caller, "A long sentence that will be cut.", [b"\x01" * 8000])
    caller.session.hang_up("", "the responder ended the call")
    actions = caller.drain()
    assert [e["event"] for e in sent_events(actions)] == ["clear"]
    assert of_type(actions, HangUp) == [HangUp("the responder ended the call")]  # no goodbye: at once


def test_the_call_time_limit_says_goodbye_on_the_media_clock():
    caller = Caller(make_session(max_call_ms=2000, time_limit_goodbye="Time is up, goodbye."))
    caller.start()
    assert of_type(caller.pause(1960), Speak) == []
    [speak] = of_type(caller.pause(40), Speak)
    assert speak.sentences == ("Time is up, goodbye.",)
    assert caller.session.hanging_up == "call longer than 2000 ms"
    caller.session.receive_speech_failed(speak.reply_id, "engine down")  # no goodbye audio: hang up anyway
    assert of_type(caller.drain(), HangUp) == [HangUp("call longer than 2000 ms")]


def answered_turn(caller):
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, "hello")
    [respond] = of_type(caller.drain(), Respond)
    return respond


def test_a_responder_failure_is_apologized_for():
    caller = Caller(make_session(apology="Sorry, try again."))
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, None, "ValueError: bug")
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Sorry, try again.",) and speak.offline_voice


def test_a_responder_goodbye_ends_the_call_after_it_played():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, "Thanks for calling, goodbye!", hang_up=True)
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 800)
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    assert of_type(caller.drain(), HangUp) == []
    caller.session.receive_event(Mark(STREAM_SID, mark))
    assert of_type(caller.drain(), HangUp) == [HangUp("the responder ended the call")]


def test_a_silent_caller_is_nudged_once_then_hung_up_on():
    caller = Caller(make_session(idle_nudge_ms=3000, idle_nudge="Still there?", idle_hangup_ms=6000))
    caller.start()
    assert of_type(caller.pause(2960), Speak) == []
    [nudge] = of_type(caller.pause(40), Speak)
    assert nudge.sentences == ("Still there?",)
    caller.session.receive_speech(nudge.reply_id, 0, b"\x01" * 800)  # 100 ms of audio
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    caller.pause(100)
    caller.session.receive_event(Mark(STREAM_SID, mark))
    assert of_type(caller.pause(5000), Speak) == []  # silence counts again from the end of the nudge
    [goodbye] = of_type(caller.pause(1000), Speak)
    assert "hang up" in " ".join(goodbye.sentences) and caller.session.hanging_up.startswith("caller silent")


def test_speaking_resets_the_idle_clock():
    caller = Caller(make_session(idle_nudge_ms=3000))
    caller.start()
    caller.pause(2000)
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, None)  # the responder says nothing
    assert of_type(caller.pause(2000), Speak) == []


# --- speculation: recognition (and a speculative responder's reply) during the pause ---------------


def speculative_session(**overrides) -> CallSession:
    config = SessionConfig(endpointing=EndpointingConfig(pause_ms=200), **overrides)
    return CallSession(config, is_speech)


def test_a_pause_starts_recognition_and_the_endpoint_uses_its_result():
    caller = Caller(speculative_session())
    caller.start()
    caller.speak(1000)
    actions = caller.pause(200)
    [ahead] = of_type(actions, Transcribe)
    assert ahead.speculative and 1000 * 16 <= len(ahead.pcm)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "hello", elapsed_ms=150)
    assert caller.drain() == [] and session.record.turns == []  # nothing decided, nothing recorded yet
    actions = caller.pause(400)  # the pause becomes the endpoint (600 ms)
    assert of_type(actions, Transcribe) == []  # no second recognition
    [respond] = of_type(actions, Respond)
    assert respond.turn_id == ahead.turn_id and respond.text == "hello" and respond.pending_turn is None
    assert [(t.speaker, t.text) for t in session.record.turns] == [("caller", "hello")]
    session.receive_reply(respond.turn_id, "Hi.", elapsed_ms=1)
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 160, elapsed_ms=30)
    caller.drain()
    latency = session.record.turns[-1].latency_ms
    assert latency["endpoint"] == 600 and latency["recognition"] == 150 and latency["speculative"] == 1
    assert latency["total"] == 600  # recognition finished inside the pause: nothing added after the endpoint


def test_a_transcript_arriving_after_the_endpoint_is_used_once():
    caller = Caller(speculative_session())
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(700), Transcribe)  # pause and endpoint before the result
    session = caller.session
    session.receive_transcript(ahead.turn_id, "hello", elapsed_ms=500)
    [respond] = of_type(caller.drain(), Respond)
    assert respond.turn_id == ahead.turn_id
    assert [t.text for t in session.record.turns] == ["hello"]


def test_speaking_on_after_a_pause_drops_the_speculation():
    caller = Caller(speculative_session())
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(300), Transcribe)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "I would like", elapsed_ms=100)
    caller.speak(600)  # not an endpoint: the caller goes on
    actions = caller.pause(200)  # a new pause: a new speculation, the old one cancelled
    assert any(isinstance(a, Cancel) and ahead.turn_id in a.turn_ids for a in actions)
    [again] = of_type(actions, Transcribe)
    assert again.speculative and len(again.pcm) > len(ahead.pcm)
    session.receive_transcript(ahead.turn_id, "I would like", elapsed_ms=100)  # a stale result: ignored
    assert caller.drain() == []
    caller.pause(400)
    session.receive_transcript(again.turn_id, "I would like a pizza", elapsed_ms=100)
    [respond] = of_type(caller.drain(), Respond)
    assert respond.text == "I would like a pizza"
    assert [t.text for t in session.record.turns] == ["I would like a pizza"]


def test_a_speculative_reply_is_held_until_the_endpoint_then_sent_at_once():
    caller = Caller(speculative_session(speculative_reply=True))
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(200), Transcribe)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "hello", elapsed_ms=100)
    [respond] = of_type(caller.drain(), Respond)
    assert respond.pending_turn is not None and respond.pending_turn.text == "hello"  # history for the responder
    session.receive_reply(respond.turn_id, "You said: hello. Bye now.", elapsed_ms=1)
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 320, elapsed_ms=40)
    session.receive_speech(speak.reply_id, 1, b"\x02" * 160, elapsed_ms=40)
    assert caller.drain() == [] and not session.bot_speaking  # held: the caller may still go on
    caller.pause(380)
    assert sent_events(caller.drain()) == []  # 580 ms: not the endpoint yet
    actions = caller.pause(20)
    events = sent_events(actions)
    assert [e["event"] for e in events] == ["media", "media", "mark", "media", "mark"]
    assert of_type(actions, Respond) == [] and of_type(actions, Speak) == []
    turns = [t.to_json() for t in session.record.turns]
    assert [(t["speaker"], t["text"]) for t in turns] == [("caller", "hello"), ("bot", "You said: hello. Bye now.")]
    assert turns[1]["latency_ms"]["total"] == 600  # the reply left with the endpoint


def test_a_speculative_reply_is_never_sent_if_the_caller_speaks_on():
    caller = Caller(speculative_session(speculative_reply=True))
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(200), Transcribe)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "yes", elapsed_ms=100)
    [respond] = of_type(caller.drain(), Respond)
    session.receive_reply(respond.turn_id, "Booked.", elapsed_ms=1)
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 160)
    caller.speak(400)
    actions = caller.pause(700)
    assert any(isinstance(a, Cancel) and speak.reply_id in a.reply_ids for a in actions)
    [final] = [a for a in of_type(actions, Transcribe)]
    session.receive_transcript(final.turn_id, "yes but not tomorrow")
    caller.drain()
    assert sent_events(caller.actions) == []
    assert [t.text for t in session.record.turns] == ["yes but not tomorrow"]


def test_a_speculative_goodbye_or_failure_waits_for_the_endpoint():
    caller = Caller(speculative_session(speculative_reply=True, apology="Sorry."))
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(200), Transcribe)
    session = caller.session
    session.receive_transcript(ahead.turn_id, "bye", elapsed_ms=100)
    [respond] = of_type(caller.drain(), Respond)
    session.receive_reply(respond.turn_id, "Goodbye!", hang_up=True)
    assert caller.drain() == [] and session.hanging_up is None
    actions = caller.pause(400)
    [speak] = of_type(actions, Speak)
    assert speak.sentences == ("Goodbye!",) and session.hanging_up is not None


def test_a_declined_speculation_is_transcribed_at_the_endpoint():
    caller = Caller(speculative_session())
    caller.start()
    caller.speak(1000)
    [ahead] = of_type(caller.pause(200), Transcribe)
    caller.session.speculation_declined(ahead.turn_id)
    caller.drain()
    [final] = of_type(caller.pause(400), Transcribe)
    assert not final.speculative and final.turn_id != ahead.turn_id and final.pcm == ahead.pcm


def test_a_dtmf_flood_costs_linear_time_and_bounded_memory():
    """100,000 key presses without a pause: the buffer stops at MAX_DTMF_KEYS; each press costs the same."""
    import time as _time

    from core.session import MAX_DTMF_KEYS

    def flood(presses: int) -> float:
        caller = Caller(make_session(dtmf_flush_ms=1000))
        caller.start()
        began = _time.perf_counter()
        for _ in range(presses):
            caller.session.receive_event(Dtmf(STREAM_SID, "5", "inbound_track"))
        elapsed = _time.perf_counter() - began
        assert len(caller.session._dtmf.digits) == MAX_DTMF_KEYS
        assert caller.session.dtmf_dropped == presses - MAX_DTMF_KEYS
        [respond] = of_type(caller.pause(1100), Respond)
        assert respond.dtmf == "5" * MAX_DTMF_KEYS  # the first keys still reach the responder
        return elapsed

    small, large = flood(10_000), flood(100_000)
    assert large < 20 * small + 0.05, f"10x the presses took {large / small:.1f}x the time"
    assert large < 2.0


def test_a_media_clock_jump_of_27_hours_allocates_no_gap_silence():
    """Fed straight to the session (the worker drops such a message before): the framing resynchronises
    instead of filling, so memory stays bounded, and later audio is still heard."""
    import tracemalloc

    caller = Caller(make_session())
    caller.start()
    caller.speak(400)
    tracemalloc.start()
    caller.timestamp_ms += 27 * 3600 * 1000
    caller.speak(400)
    caller.pause(700)
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_bytes < 2_000_000, f"{peak_bytes} bytes allocated for the jump"
    assert caller.session.frames_lost <= 2000 // 20  # at most max_gap_fill_ms of silence
    assert of_type(caller.actions, Transcribe)  # the utterances were still recognised


def test_the_call_goes_through_the_stream_phases():
    caller = Caller(make_session())
    session = caller.session
    assert session.phase is Phase.AWAITING_START and session.mode == "conversation"
    session.hang_up("Bye.", "before start")
    assert caller.drain() == [] and session.hanging_up is None
    caller.start()
    assert session.phase is Phase.STREAMING
    session.hang_up("Goodbye now.", "the test")
    [speak] = of_type(caller.drain(), Speak)
    assert session.phase is Phase.HANGING_UP and session.hanging_up == "the test"
    caller.speak(600)
    caller.pause(700)
    assert of_type(caller.actions, Transcribe) == []  # nothing is answered while hanging up
    session.receive_event(Stop(STREAM_SID))
    assert session.phase is Phase.STOPPED and session.stopped and session.hanging_up == "the test"
    assert of_type(caller.drain(), EndCall) == [EndCall()]


def test_a_bot_turn_records_its_latency_and_a_caller_turn_no_optional_keys():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, "Fine.", elapsed_ms=30)
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 160, elapsed_ms=20)
    caller_turn, bot = caller.session.record.turns
    assert set(caller_turn.to_json()) == {"speaker", "text", "start_ms", "end_ms"}
    assert set(bot.to_json()) == {"speaker", "text", "start_ms", "end_ms", "latency_ms"}
    assert bot.latency_ms == bot.to_json()["latency_ms"] and bot.latency_ms["responder"] == 30


def test_a_reply_sent_after_the_caller_went_on_is_retracted_and_the_turn_continues():
    # The caller pauses, is answered, and goes on just before the reply's audio goes out; their
    # start is decided 200 ms of voice later (EndpointingConfig.start_ms), when the reply is out.
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)  # 600 ms of speech, then 700 ms of silence
    session = caller.session
    session.receive_reply(respond.turn_id, "You said hello.")
    [speak] = of_type(caller.drain(), Speak)
    caller.speak(20)  # the caller's voice is back
    session.receive_speech(speak.reply_id, 0, b"\x01" * 1600)  # the reply goes out 20 ms later
    assert sent_events(caller.drain())[0]["event"] == "media"
    actions = caller.speak(400) + caller.pause(700)
    assert [e["event"] for e in sent_events(actions)] == ["clear"]
    [transcribe] = of_type(actions, Transcribe)
    assert 1000 * 16 <= len(transcribe.pcm)  # both parts of the turn: 600 + 420 ms of speech
    assert [t.speaker for t in session.record.turns] == ["caller"]  # the retracted reply is not a bot turn
    session.receive_transcript(transcribe.turn_id, "hello there")
    assert [t.text for t in session.record.turns] == ["hello there"]
    assert of_type(caller.drain(), Respond)[0].text == "hello there"


def test_speech_that_starts_after_the_reply_was_sent_is_over_the_bot():
    caller = Caller(make_session(barge_in_min_ms=500))
    caller.start()
    respond = answered_turn(caller)
    session = caller.session
    session.receive_reply(respond.turn_id, "You said hello.")
    [speak] = of_type(caller.drain(), Speak)
    session.receive_speech(speak.reply_id, 0, b"\x01" * 16000)  # 2 s of reply
    caller.drain()
    actions = caller.pause(20) + caller.speak(300)  # a short word after the reply began (or its echo)
    assert sent_events(actions) == []  # not a retraction: shorter than BARGE_IN_MIN_MS, no clear yet
    assert [t.speaker for t in session.record.turns] == ["caller", "bot"]
