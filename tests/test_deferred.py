"""Unit tests of core.deferred: the replay order of a tentative turn's held inputs."""

from core.deferred import DeferredReply, DeferredReplyEnd, DeferredSpeech, DeferredSpeechFailure, DeferredTranscript, replay_order


def test_replay_order_is_transcript_reply_speech_then_the_stream_end_each_in_arrival_order():
    transcript = DeferredTranscript("hello", None, 120)
    reply = DeferredReply(None, "responder failed", 30, False)
    s0, s1 = DeferredSpeech(4, 0, b"\x01", 50), DeferredSpeech(4, 1, b"\x02", None)
    failed = DeferredSpeechFailure(4, "engine down")
    end = DeferredReplyEnd(None, True)
    arrived = [transcript, s0, end, s1, failed, reply]
    assert replay_order(arrived) == [transcript, reply, s0, s1, failed, end]
    assert arrived[2] is end  # the queue itself is left as it was


def test_deferred_inputs_are_frozen():
    import dataclasses

    import pytest

    with pytest.raises(dataclasses.FrozenInstanceError):
        DeferredTranscript("hi", None, 1).text = "changed"
