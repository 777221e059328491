"""The listen-only fork state machine: two tracks, two speakers, nothing sent."""

from audio.endpointing import EndpointingConfig
from core.listen_session import ListenSession, is_fork
from core.protocol import Dtmf, Mark, Media, MediaFormat, Start, Stop
from core.actions import EndCall, HangUp, Transcribe
from core.stream_session import Phase

VOICED = bytes(160)
SILENT = b"\xff" * 160


def start(tracks=("inbound", "outbound"), params=None):
    return Start("MZ1", "AC1", "CA1", tracks, MediaFormat(), params or {"From": "+1555", "To": "+1666"})


def is_speech(frame):
    return any(frame)


def test_is_fork_from_the_start_message():
    assert is_fork(start(("inbound", "outbound")))
    assert is_fork(start(("outbound",)))
    assert not is_fork(start(("inbound",)))
    assert is_fork(start(("inbound",), {"mode": "fork"}))


def feed(session, timeline):
    """timeline: list of (inbound chunk, outbound chunk) per 20 ms, from timestamp 20."""
    for index, (inbound, outbound) in enumerate(timeline):
        timestamp_ms = 20 + 20 * index
        session.receive_event(Media("MZ1", "inbound", index + 1, timestamp_ms, inbound))
        session.receive_event(Media("MZ1", "outbound", index + 1, timestamp_ms, outbound))
    return session.actions_to_perform()


def test_both_tracks_are_endpointed_and_transcribed_as_two_speakers():
    session = ListenSession(EndpointingConfig(), lambda: is_speech)
    session.receive_event(start())
    assert session.record.mode == "fork" and session.record.from_number == "+1555"
    # caller talks 0.6 s, both quiet 0.8 s, callee talks 0.6 s, quiet 0.8 s
    timeline = [(VOICED, SILENT)] * 30 + [(SILENT, SILENT)] * 40 + [(SILENT, VOICED)] * 30 + [(SILENT, SILENT)] * 40
    actions = feed(session, timeline)
    transcribes = [a for a in actions if isinstance(a, Transcribe)]
    assert len(transcribes) == 2
    # the callee's transcript arrives first: the record stays in time order
    session.receive_transcript(transcribes[1].turn_id, "I can help")
    session.receive_transcript(transcribes[0].turn_id, "hello is anyone there")
    turns = [t.to_json() for t in session.record.turns]
    assert [(t["speaker"], t["text"]) for t in turns] == [("caller", "hello is anyone there"), ("callee", "I can help")]
    assert turns[0]["start_ms"] == 20 and turns[0]["end_ms"] == 620
    assert turns[1]["start_ms"] == 20 + 70 * 20


def test_nothing_is_ever_sent_and_marks_or_dtmf_are_ignored():
    session = ListenSession(EndpointingConfig(), lambda: is_speech)
    session.receive_event(start())
    session.receive_event(Mark("MZ1", "x"))
    session.receive_event(Dtmf("MZ1", "5"))
    actions = feed(session, [(VOICED, VOICED)] * 20)
    session.receive_event(Stop("MZ1"))
    actions += session.actions_to_perform()
    assert {type(a) for a in actions} == {Transcribe, EndCall}  # stop closes both open utterances
    assert sum(isinstance(a, Transcribe) for a in actions) == 2


def test_an_empty_transcript_adds_no_turn_and_an_error_is_recorded():
    session = ListenSession(EndpointingConfig(), lambda: is_speech)
    session.receive_event(start(("inbound",), {"mode": "fork"}))
    actions = feed(session, [(VOICED, SILENT)] * 30 + [(SILENT, SILENT)] * 40 + [(VOICED, SILENT)] * 30 + [(SILENT, SILENT)] * 40)
    first, second = [a for a in actions if isinstance(a, Transcribe)]
    session.receive_transcript(first.turn_id, "")
    session.receive_transcript(second.turn_id, None, "RecognitionError: down")
    assert [(t.text, t.error) for t in session.record.turns] == [("", "RecognitionError: down")]


def test_the_fork_goes_through_the_stream_phases_and_hangs_up_at_once():
    session = ListenSession(EndpointingConfig(), lambda: is_speech)
    assert session.phase is Phase.AWAITING_START and session.mode == "fork"
    session.hang_up("Goodbye.", "too early")
    assert session.actions_to_perform() == []  # nothing to hang up before start
    session.receive_event(start())
    assert session.phase is Phase.STREAMING
    session.hang_up("Goodbye.", "over MAX_CALLS=0")
    session.hang_up("Goodbye.", "again")
    assert session.actions_to_perform() == [HangUp("over MAX_CALLS=0")]  # nothing is said on a fork, once
    assert session.phase is Phase.HANGING_UP
    session.close()
    assert session.phase is Phase.STOPPED and session.stopped
    assert session.actions_to_perform() == [EndCall()]
    assert session.take_latency_reports() == []


def test_a_transcript_records_its_recognition_time():
    session = ListenSession(EndpointingConfig(), lambda: is_speech)
    session.receive_event(start(("inbound",), {"mode": "fork"}))
    [transcribe] = [a for a in feed(session, [(VOICED, SILENT)] * 30 + [(SILENT, SILENT)] * 40) if isinstance(a, Transcribe)]
    session.receive_transcript(transcribe.turn_id, "hello", elapsed_ms=250)
    [turn] = session.record.turns
    assert turn.to_json() == {"speaker": "caller", "text": "hello", "start_ms": 20, "end_ms": 620, "latency_ms": {"recognition": 250}}
