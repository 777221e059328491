"""The session's call actions: a transfer's announcement then the redirect, and an outbound call's
answering-machine detection (no I/O: scripted messages on the media clock)."""

from core.session import MACHINE_ANSWERS, HangUp, Respond, Speak, Transcribe
from core.protocol import Mark
from tests.test_session import STREAM_SID, Caller, answered_turn, make_session, of_type, sent_events


def played(caller, speak, size_bytes=800) -> list:
    """Synthesize ``speak``'s first sentence and echo its mark: the actions that follow."""
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * size_bytes)
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    caller.session.receive_event(Mark(STREAM_SID, mark))
    return caller.drain()


def test_a_transfer_is_announced_uninterrupted_then_the_hang_up_carries_its_target():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, "Connecting you to our front desk.", transfer_to="+15550123")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 8000)
    mark = sent_events(caller.drain())[-1]["mark"]["name"]
    actions = caller.speak(600) + caller.pause(700)  # the caller talks over the announcement: no barge-in
    assert sent_events(actions) == [] and of_type(actions, Transcribe) == [] and of_type(actions, HangUp) == []
    caller.session.receive_event(Mark(STREAM_SID, mark))
    assert of_type(caller.drain(), HangUp) == [HangUp("transfer to +15550123", "+15550123")]
    assert caller.session.transfer_to == "+15550123"
    assert caller.session.record.turns[-1].text == "Connecting you to our front desk."


def test_a_transfer_without_an_announcement_and_a_streamed_one():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply(respond.turn_id, None, transfer_to="sip:desk@pbx.example.com")
    assert of_type(caller.drain(), HangUp) == [HangUp("transfer to sip:desk@pbx.example.com", "sip:desk@pbx.example.com")]

    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_reply_chunk(respond.turn_id, "One moment. ")
    caller.session.receive_reply_chunk(respond.turn_id, "Transferring you now.")
    caller.session.receive_reply_end(respond.turn_id, transfer_to="+15550123")
    [speak] = of_type(caller.drain(), Speak)
    assert " ".join(speak.sentences) == "One moment. Transferring you now."
    assert of_type(played(caller, speak), HangUp) == [HangUp("transfer to +15550123", "+15550123")]


def test_an_outbound_call_says_nothing_until_a_person_is_detected_then_greets():
    caller = Caller(make_session(greeting="Hi, this is your reminder.", await_answer=True))
    assert caller.start() == [] and caller.session.awaiting_answer
    caller.speak(600)
    [transcribe] = of_type(caller.pause(700), Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, "Hello?")
    assert of_type(caller.drain(), Respond) + of_type(caller.drain(), Speak) == []  # recorded, not answered
    assert [t.text for t in caller.session.record.turns] == ["Hello?"]
    caller.session.receive_answered_by("human")
    [speak] = of_type(caller.drain(), Speak)
    assert speak.sentences == ("Hi, this is your reminder.",)
    assert caller.session.record.answered_by == "human" and not caller.session.awaiting_answer
    caller.session.receive_answered_by("machine_end_beep")  # a second result changes nothing
    assert caller.drain() == [] and caller.session.record.answered_by == "human"


def test_a_voicemail_greeting_is_not_talked_over_and_hears_the_message_after_the_beep():
    caller = Caller(make_session(greeting="Hi!", await_answer=True, voicemail_message="Please call us back. Goodbye."))
    caller.start()
    for _ in range(3):  # a long greeting with pauses: every part is recorded, none answered, nothing said
        caller.speak(1500)
        actions = caller.pause(700)
        [transcribe] = of_type(actions, Transcribe)
        caller.session.receive_transcript(transcribe.turn_id, "Leave a message after the tone.")
        assert of_type(actions + caller.drain(), Speak) == [] and of_type(caller.drain(), Respond) == []
    assert of_type(caller.pause(25_000), Speak) == []  # no idle nudge or hang-up while waiting
    caller.session.receive_answered_by("machine_end_beep")
    [speak] = of_type(caller.drain(), Speak)
    assert " ".join(speak.sentences) == "Please call us back. Goodbye."
    assert of_type(played(caller, speak), HangUp) == [HangUp("voicemail (machine_end_beep)")]
    assert caller.session.record.answered_by == "machine_end_beep"
    assert [t.speaker for t in caller.session.record.turns] == ["caller"] * 3 + ["bot"]


def test_a_machine_responder_is_asked_a_fax_is_hung_up_on_and_no_answer_counts_as_unknown():
    caller = Caller(make_session(greeting="Hi!", await_answer=True, machine_responder=True))
    caller.start()
    caller.session.receive_answered_by(MACHINE_ANSWERS[1])
    [respond] = of_type(caller.drain(), Respond)
    assert respond.text == "" and respond.dtmf is None
    caller.session.receive_reply(respond.turn_id, "Your appointment is on Tuesday. Goodbye.", hang_up=True)
    assert " ".join(of_type(caller.drain(), Speak)[0].sentences) == "Your appointment is on Tuesday. Goodbye."

    caller = Caller(make_session(greeting="Hi!", await_answer=True))
    caller.start()
    caller.session.receive_answered_by("fax")
    assert of_type(caller.drain(), HangUp) == [HangUp("a fax machine answered")]

    caller = Caller(make_session(greeting="Hi!", await_answer=True, answer_timeout_ms=5000))
    caller.start()
    assert of_type(caller.pause(4960), Speak) == []
    [speak] = of_type(caller.pause(40), Speak)
    assert speak.sentences == ("Hi!",) and caller.session.record.answered_by == "unknown"


def test_key_presses_before_the_answer_is_known_are_recorded_not_answered():
    caller = Caller(make_session(greeting="Hi!", await_answer=True, dtmf_flush_ms=0))
    caller.start()
    from core.protocol import Dtmf

    caller.session.receive_event(Dtmf(STREAM_SID, "1", None))
    caller.pause(40)
    assert of_type(caller.drain(), Respond) == []
    assert caller.session.record.turns[-1].dtmf == "1"


def test_a_tool_call_is_recorded_as_a_tool_turn_and_not_spoken():
    caller = Caller(make_session())
    caller.start()
    respond = answered_turn(caller)
    caller.session.receive_tool_call(respond.turn_id, 'next_appointment({"name": "Ann"}) -> "Tuesday"')
    caller.session.receive_tool_call(respond.turn_id, "free_slots({}) -> error: timed out", "tool failed")
    caller.session.receive_tool_call(999, "dropped() -> 1")  # a turn that is gone: nothing
    assert of_type(caller.drain(), Speak) == []
    tools = [t for t in caller.session.record.turns if t.speaker == "tool"]
    assert [(t.text, t.error) for t in tools] == [('next_appointment({"name": "Ann"}) -> "Tuesday"', None),
                                                  ("free_slots({}) -> error: timed out", "tool failed")]
