"""The example responders in examples/, loaded the way RESPONDER loads them."""

from app import make_responder
from core.responder import CallContext, Goodbye
from core.sentences import SentenceStream
from core.settings import load_settings


def call(dtmf=None, history=(), from_number="+15550001") -> CallContext:
    return CallContext(call_sid="CA1", stream_sid="MZ1", from_number=from_number, dtmf=dtmf, history=history)


def responder(name):
    return make_responder(load_settings({"RESPONDER": f"examples.{name}:respond"}))


def test_front_desk_answers_keys_questions_and_hangs_up():
    respond = responder("front_desk")
    first = [{"speaker": "caller", "text": "hi"}]
    assert respond("hi", call(history=first)).startswith("Hello caller from +15550001.")
    assert respond("", call(dtmf="12#")) == "We are open from nine to five, Monday to Friday. We are at 12 Harbour Street, next to the library."
    assert respond("When are you open?", call()) == "We are open from nine to five, Monday to Friday."
    assert respond("hmm", call(history=first * 2)).startswith("Sorry, I did not get that.")
    goodbye = respond("OK, bye.", call())
    assert isinstance(goodbye, Goodbye) and goodbye == "Thanks for calling. Goodbye!"


def test_streaming_tutor_yields_sentences_piece_by_piece():
    respond = responder("streaming_tutor")
    pieces = list(respond("Seven, please.", call()))
    assert len(pieces) == 11
    splitter = SentenceStream()
    sentences = [s for piece in pieces for s in splitter.push(piece)] + splitter.finish()
    assert sentences[0] == "Here is the table of 7." and sentences[-1] == "10 times 7 is 70."
    assert list(respond("", call(dtmf="3")))[1] == "1 times 3 is 3. "
    [bye] = list(respond("bye now", call()))
    assert isinstance(bye, Goodbye)


def test_front_desk_transfers_to_a_person_on_0_or_when_asked():
    from core.responder import Transfer

    respond = responder("front_desk")
    assert respond("", call(dtmf="0")) == Transfer("+15550123", "Connecting you to the front desk now.")
    assert respond("Can I talk to a person?", call()) == Transfer("+15550123", "Connecting you to the front desk now.")


def test_the_appointment_reminder_confirms_transfers_and_leaves_a_voicemail():
    from dataclasses import replace

    from core.responder import Transfer, is_machine_responder

    respond = responder("appointment_reminder")
    assert is_machine_responder(respond)
    person = replace(call(), direction="outbound", answered_by="human", custom_parameters={"name": "Ann", "when": "Tuesday at 3 pm"})
    assert respond("", replace(person, dtmf="1")) == Goodbye("Thank you, your appointment on Tuesday at 3 pm is confirmed. Goodbye.")
    assert isinstance(respond("", replace(person, dtmf="0")), Transfer)
    assert respond("what?", person).startswith("Press 1")
    message = respond("", replace(person, answered_by="machine_end_beep"))
    assert isinstance(message, Goodbye) and message.startswith("Hello Ann, this is Harbour Clinic") and "Tuesday at 3 pm" in message
