"""Reading a streaming responder's pieces from a greenlet: in one engine thread, or on the hub."""

import threading
import time

import gevent
import pytest

from core.responder import Play
from runtime.reply_stream import END, HubStream, ThreadedStream, is_reply_stream, open_reply_stream


def test_a_threaded_stream_runs_the_whole_generator_in_one_thread_and_closes_it_there():
    threads, closed_in = set(), []

    def pieces():
        try:
            for word in ["one ", "two ", "three"]:
                threads.add(threading.get_ident())
                time.sleep(0.01)  # blocking, as an HTTP read would
                yield word
        finally:
            closed_in.append(threading.get_ident())

    stream = ThreadedStream(pieces())
    got = []
    while (piece := stream.next_piece(timeout_s=2)) is not END:
        got.append(piece)
    assert got == ["one ", "two ", "three"]
    gevent.sleep(0.05)
    assert len(threads) == 1 and closed_in == list(threads) and threading.get_ident() not in threads


def test_a_threaded_stream_raises_the_generators_error_and_times_out_on_a_stall():
    def failing():
        yield "partial "
        raise ConnectionError("model server went away")

    stream = ThreadedStream(failing())
    assert stream.next_piece(timeout_s=2) == "partial "
    with pytest.raises(ConnectionError, match="went away"):
        stream.next_piece(timeout_s=2)

    closed = threading.Event()

    def stalling():
        try:
            yield "first "
            time.sleep(0.5)
            yield "too late"
            yield "never asked for"
        finally:
            closed.set()

    stream = ThreadedStream(stalling())
    assert stream.next_piece(timeout_s=2) == "first "
    with pytest.raises(TimeoutError):
        stream.next_piece(timeout_s=0.1)
    assert closed.wait(2)  # the thread stopped at the next piece and closed the generator


def test_a_hub_stream_iterates_on_the_greenlet_with_a_timeout_per_piece():
    def cooperative():
        yield "a "
        gevent.sleep(0.5)
        yield "b"

    stream = HubStream(cooperative())
    assert stream.next_piece(timeout_s=1) == "a "
    with pytest.raises(TimeoutError):
        stream.next_piece(timeout_s=0.05)
    stream.close()


def test_only_a_cooperative_responder_on_patched_sockets_runs_on_the_hub():
    def respond(text, call):
        yield "x"

    respond.cooperative = True
    # The test process does not monkey-patch: even a cooperative responder gets a thread.
    assert isinstance(open_reply_stream(respond("", None), respond), ThreadedStream)


def test_a_list_or_tuple_is_a_whole_reply_not_a_stream():
    assert not is_reply_stream(["Please hold.", Play("hold.wav")]) and not is_reply_stream(("Hi.",))
    assert not is_reply_stream(Play("hold.wav")) and not is_reply_stream("text")
    assert is_reply_stream(iter(["Hi."])) and is_reply_stream(piece for piece in ["Hi."])
