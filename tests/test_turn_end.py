"""End of turn (issue #14 part 3): the silence a turn needs before its reply plays, from its
transcript and the caller's pauses; in the session, a reply held until then, and a caller who
goes on first makes it one turn."""

import pytest

from bench.turn_taking import policies as bench_policies, read_points, score
from audio.endpointing import EndpointingConfig
from core.protocol import Dtmf, Mark
from core.session import Respond, Speak, Transcribe
from core.turn_end import Completeness, TurnEndConfig, TurnEndPolicy, judge_transcript
from tests.test_session import Caller, make_session, of_type, sent_events

INCOMPLETE = Completeness.INCOMPLETE
UNDECIDED = Completeness.UNDECIDED


@pytest.mark.parametrize("text", [
    "And so my fellow",  # no final punctuation (whisper, 1.76 s into jfk.flac)
    "And you always...", "in the s-", "Eight of spades,", "He might even have been made",
    "Go somewhere and do it for the.", "I want to.",  # a last word that ends no sentence
    "And so am I fellow America.",  # a short transcript opening with a connector: JFK's pause
    "So the thing is.", "", ".", "(coughing)",
])
def test_unfinished_transcripts(text):
    assert judge_transcript(text) is INCOMPLETE


@pytest.mark.parametrize("text", [
    "One.", "1, 2, 3.", "5 5", "Go forward 10 meters.", "than he was.", "How do you marry the more?",
    "And so my fellow Americans ask not what your country can do for you ask what you can do for your country.",
    "Yes!", 'He said "no."',
])
def test_transcripts_with_a_final_period_question_mark_or_number_are_undecided(text):
    assert judge_transcript(text) is UNDECIDED


def test_the_policy_learns_how_this_caller_pauses():
    policy = TurnEndPolicy(TurnEndConfig(complete_ms=300, undecided_ms=600, incomplete_ms=1200, margin_ms=100))
    assert policy.required_silence_ms("Go forward.") == (600, UNDECIDED)  # nothing known yet
    assert policy.required_silence_ms("go to the") == (1200, INCOMPLETE)
    policy.observe_answered_turn()
    assert policy.required_silence_ms("Go forward.")[0] == 300  # a caller who has not paused mid-turn
    policy.observe_continued_pause(540)
    assert policy.required_silence_ms("Go forward.")[0] == 640
    policy.observe_continued_pause(1500)
    assert policy.required_silence_ms("Go forward.")[0] == 1200  # never past incomplete_ms


@pytest.mark.parametrize("values", [(0, 600, 1200), (700, 600, 1200), (300, 600, 500)])
def test_config_rejects_an_unordered_set(values):
    with pytest.raises(ValueError):
        TurnEndConfig(*values)


TURN_END = TurnEndConfig(complete_ms=300, undecided_ms=600, incomplete_ms=1200)


def answered_utterance(caller: Caller, text: str) -> tuple[int, list]:
    """The caller speaks 600 ms and pauses 300 ms; the utterance is transcribed as ``text``,
    the echo reply synthesized. Returns the reply id and the actions up to there."""
    actions = caller.speak(600) + caller.pause(300)
    [transcribe] = of_type(actions, Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, text)
    [respond] = of_type(caller.drain(), Respond)
    caller.session.receive_reply(respond.turn_id, f"You said {text}")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 1600)
    return speak.reply_id, actions + caller.drain()


def media_sent(actions) -> int:
    return sum(1 for e in sent_events(actions) if e["event"] == "media")


def test_an_utterance_ends_after_complete_ms_but_its_reply_waits_for_the_turns_silence():
    caller = Caller(make_session(turn_end=TURN_END, speculative_reply=True))
    caller.start()
    _, actions = answered_utterance(caller, "Go forward.")
    assert media_sent(actions) == 0  # 300 ms of silence: the first turn's undecided reply waits for 600
    assert media_sent(caller.pause(280)) == 0
    assert media_sent(caller.pause(40)) == 10  # 620 ms: it plays
    assert caller.session.record.turns[-1].latency_ms["required_silence"] == 600


def test_a_caller_who_goes_on_before_the_held_reply_plays_makes_one_turn():
    caller = Caller(make_session(turn_end=TURN_END, speculative_reply=True))
    caller.start()
    first_reply, _ = answered_utterance(caller, "And so my fellow")  # incomplete: waits 1200 ms
    actions = caller.pause(600) + caller.speak(600) + caller.pause(300)
    assert media_sent(actions) == 0
    merged = of_type(actions, Transcribe)[-1]
    assert len(merged.pcm) > 16 * 1200  # both utterances
    caller.session.receive_transcript(merged.turn_id, "And so my fellow Americans, ask not.")
    assert [r.text for r in of_type(caller.drain(), Respond)] == ["And so my fellow Americans, ask not."]
    callers = [t for t in caller.session.record.turns if t.speaker == "caller"]
    assert [t.text for t in callers] == ["And so my fellow Americans, ask not."]  # one turn
    assert caller.session._turn_end.longest_continued_pause_ms == 900  # 300 + 600 ms of silence


def test_voiced_frames_not_yet_an_utterance_keep_the_reply_held():
    caller = Caller(make_session(turn_end=TURN_END, speculative_reply=True))
    caller.start()
    answered_utterance(caller, "Go forward.")
    assert media_sent(caller.pause(260) + caller.speak(100)) == 0  # 660 ms, but the caller may be starting
    assert media_sent(caller.pause(300)) == 10  # they were not


def test_a_second_turn_of_a_caller_who_does_not_pause_is_answered_after_complete_ms():
    caller = Caller(make_session(turn_end=TURN_END, speculative_reply=True))
    caller.start()
    answered_utterance(caller, "Go forward.")
    [mark] = [e["mark"]["name"] for e in sent_events(caller.pause(320)) if e["event"] == "mark"]
    caller.session.receive_event(Mark(caller.session.stream_sid, mark))  # the reply has played
    caller.pause(400)
    _, actions = answered_utterance(caller, "Ten meters.")
    assert media_sent(actions) == 10  # 300 ms of silence was enough: played at once


def test_a_responder_with_side_effects_is_asked_only_once_the_turn_has_ended():
    # An LLM is not @speculative: it is not asked about "And so my fellow" while the caller may go on.
    caller = Caller(make_session(turn_end=TURN_END))
    caller.start()
    [first] = of_type(caller.speak(600) + caller.pause(300), Transcribe)
    caller.session.receive_transcript(first.turn_id, "And so my fellow")  # incomplete: 1200 ms
    assert not of_type(caller.drain() + caller.pause(800), Respond)
    [merged] = of_type(caller.speak(600) + caller.pause(300), Transcribe)  # the caller went on
    # Undecided, from a caller who paused 1100 ms mid-turn: it waits 1200 ms (the cap).
    caller.session.receive_transcript(merged.turn_id, "And so my fellow Americans.")
    assert not of_type(caller.drain() + caller.pause(880), Respond)
    [respond] = of_type(caller.pause(40), Respond)
    assert (respond.turn_id, respond.text) == (merged.turn_id, "And so my fellow Americans.")


def test_without_turn_end_the_reply_plays_as_soon_as_it_is_ready():
    caller = Caller(make_session())
    caller.start()
    actions = caller.speak(600) + caller.pause(600)
    [transcribe] = of_type(actions, Transcribe)
    caller.session.receive_transcript(transcribe.turn_id, "And so my fellow")
    [respond] = of_type(caller.drain(), Respond)
    caller.session.receive_reply(respond.turn_id, "ok")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 1600)
    assert media_sent(caller.drain()) == 10


def test_on_the_labelled_pause_points_of_real_speech():
    # tests/data/pause_points.tsv: whisper tiny.en's transcripts at every pause and word end of
    # 15 real recordings (bench/turn_taking.py --build).
    points = read_points()
    assert len({p.file for p in points}) == 15 and sum(p.label == "complete" for p in points) == 15
    # A finished turn is never taken for an unfinished one (it would wait ENDPOINT_INCOMPLETE_MS).
    assert all(judge_transcript(p.transcript) is UNDECIDED for p in points if p.label == "complete")
    policies = dict(bench_policies(TurnEndConfig()))
    before = score(points, policies["one fixed endpoint, 600 ms (before)"])
    first_turn = score(points, next(v for k, v in policies.items() if k.endswith("first turn")))
    later_turn = score(points, next(v for k, v in policies.items() if k.endswith("later turn")))
    # No more fragments at the callers' real pauses than one fixed 600 ms endpoint ...
    assert first_turn["natural"] <= before["natural"] and later_turn["natural"] <= before["natural"]
    # ... fewer answers inside a 1 s hesitation, and a later turn is answered sooner.
    assert first_turn["hesitation_1000"] < before["hesitation_1000"]
    assert later_turn["wait_median"] < before["wait_median"]


def test_an_utterance_that_ended_early_is_waited_on_only_after_endpoint_silence():
    # Its recognition starts at once, but as urgent work only once the caller has been silent for
    # ENDPOINT_SILENCE_MS: under load, a pause the caller goes on after costs the queue nothing.
    caller = Caller(make_session(turn_end=TURN_END, endpointing=EndpointingConfig(stop_ms=600)))
    caller.start()
    [transcribe] = of_type(caller.speak(600) + caller.pause(300), Transcribe)
    assert not transcribe.speculative and not caller.session.is_confirmed(transcribe.turn_id)
    caller.pause(280)
    assert not caller.session.is_confirmed(transcribe.turn_id)
    caller.pause(20)
    assert caller.session.is_confirmed(transcribe.turn_id)


def test_the_reply_to_key_presses_is_not_held_by_noise_on_the_line():
    caller = Caller(make_session(turn_end=TURN_END, speculative_reply=True, dtmf_flush_ms=0))
    caller.start()
    caller.session.receive_event(Dtmf(caller.session.stream_sid, "5"))
    [respond] = of_type(caller.drain(), Respond)
    caller.speak(60)  # a few voiced frames: not an utterance yet
    caller.session.receive_reply(respond.turn_id, "You pressed 5.")
    [speak] = of_type(caller.drain(), Speak)
    caller.session.receive_speech(speak.reply_id, 0, b"\x01" * 1600)
    assert media_sent(caller.drain()) == 10
