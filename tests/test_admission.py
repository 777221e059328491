"""Admission control's model (core/admission.py): pure, with time passed in."""

import pytest

from core.admission import FRESH_MAX_S, RESERVATION_S, Admission

TURN_CORE_S = 1.0  # one turn: recognition and the first sentence of the reply


def admission(**options):
    return Admission(cores=2.0, budget_s=1.5, turn_jitter_s=1.0, **options)


def admit_burst(control, times_s):
    """Offer a call at each time; reserve the admitted ones; return their indices."""
    admitted = []
    for index, now_s in enumerate(times_s):
        if control.decide(now_s, 0.0, TURN_CORE_S).admit:
            control.reserve(f"CA{index}", now_s, TURN_CORE_S)
            admitted.append(index)
    return admitted


def test_an_idle_server_admits_and_predicts_one_turn_on_its_cores():
    decision = admission().decide(0.0, 0.0, TURN_CORE_S)
    assert decision.admit and decision.predicted_wait_s == pytest.approx(0.5)
    assert (decision.fresh, decision.settled) == (0, 0)


def test_calls_arriving_together_are_admitted_until_their_first_turns_would_miss_the_budget():
    # Within the jitter every first turn lands together: 1.5 s × 2 cores = 3 turns of 1 core-second.
    assert admit_burst(admission(), [0.0, 0.1, 0.2, 0.3, 0.4]) == [0, 1, 2]


def test_calls_spread_out_drain_the_queue_and_more_are_admitted():
    control = admission()
    spread = admit_burst(control, [0.24 * i for i in range(25)])  # 25 callers within 6 s
    together = admit_burst(admission(), [0.0] * 25)
    assert len(together) == 3
    assert 6 <= len(spread) < 25
    # Admissions never outrun the cores: about 2 turns a second after the first 3.
    assert len(spread) <= 3 + 2 * 6


def test_the_engine_backlog_counts_against_a_new_call():
    control = admission()
    assert control.decide(0.0, 1.9, TURN_CORE_S).admit  # (1.9 + 1) / 2 = 1.45 s
    refused = control.decide(0.0, 2.1, TURN_CORE_S)
    assert not refused.admit and refused.predicted_wait_s == pytest.approx(1.55)


def test_settled_calls_take_their_share_of_the_cores():
    control = admission(turn_interval_s=10.0)
    for index in range(10):
        control.reserve(f"CA{index}", 0.0, TURN_CORE_S)
        control.started(f"CA{index}", 0.5, TURN_CORE_S)
        control.answered(f"CA{index}")
    decision = control.decide(100.0, 0.0, TURN_CORE_S)
    assert decision.settled == 10 and decision.fresh == 0
    assert decision.predicted_wait_s == pytest.approx(1.0 / (2.0 - 10 * 0.1))
    for index in range(10, 20):
        control.started(f"CA{index}", 100.0, TURN_CORE_S)
        control.answered(f"CA{index}")
    full = control.decide(100.0, 0.0, TURN_CORE_S)
    assert not full.admit and full.predicted_wait_s == float("inf")  # 20 settled calls use both cores


def test_an_ended_call_frees_its_place():
    control = admission()
    assert admit_burst(control, [0.0, 0.0, 0.0]) == [0, 1, 2]
    assert not control.decide(0.0, 0.0, TURN_CORE_S).admit
    control.ended("CA1")
    assert control.decide(0.0, 0.0, TURN_CORE_S).admit


def test_a_reservation_whose_stream_never_comes_expires_and_a_silent_caller_settles():
    control = admission()
    control.reserve("CAgone", 0.0, TURN_CORE_S)
    control.reserve("CAsilent", 0.0, TURN_CORE_S)
    control.started("CAsilent", 1.0, TURN_CORE_S)
    assert control.decide(RESERVATION_S + 1, 0.0, TURN_CORE_S).fresh == 1  # the stream that never started is gone
    later = control.decide(FRESH_MAX_S + 1, 0.0, TURN_CORE_S)
    assert (later.fresh, later.settled) == (0, 1)


def test_a_stream_without_a_webhook_here_counts_from_its_start():
    control = admission()
    control.started("CAbin", 0.0, TURN_CORE_S)  # a TwiML Bin's <Connect><Stream>: no webhook on this server
    assert control.decide(0.0, 0.0, TURN_CORE_S).fresh == 1
    control.answered("CAbin")
    control.answered("CAunknown")  # never seen: ignored
    control.ended("CAunknown")
    assert control.decide(0.0, 0.0, TURN_CORE_S).settled == 1


def test_engines_on_other_machines_never_refuse():
    control = admission()
    for index in range(100):
        assert control.decide(0.0, 0.0, 0.0).admit
        control.reserve(f"CA{index}", 0.0, 0.0)


def test_an_idle_server_admits_a_call_even_when_one_turn_alone_exceeds_the_budget():
    slow = Admission(cores=1.0, budget_s=0.9)
    first = slow.decide(0.0, 0.0, 1.2)
    assert first.admit and first.predicted_wait_s == pytest.approx(1.2)
    slow.reserve("CA1", 0.0, 1.2)
    assert not slow.decide(0.0, 0.0, 1.2).admit  # but not a second one beside it
    assert not slow.decide(10.0, 0.5, 1.2).admit  # nor while the engines have work queued
    slow.started("CA1", 1.0, 1.2)
    slow.answered("CA1")
    assert not slow.decide(100.0, 0.0, 1.2).admit  # nor beside a settled call, queue empty or not
