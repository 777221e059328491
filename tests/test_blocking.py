"""Blocking work runs in gevent's threadpool at a lower CPU priority than the hub's thread."""

import os
import threading

import pytest

from runtime.blocking import run_blocking, set_background_nice

pytestmark = pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priorities here")


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_background_threads_run_at_the_background_nice_and_the_caller_does_not():
    started, release = threading.Event(), threading.Event()
    tids = []

    def existing():
        tids.append(threading.get_native_id())
        started.set()
        release.wait(5)

    thread = threading.Thread(target=existing)
    thread.start()
    started.wait(5)
    mine = nice_of(threading.get_native_id())
    try:
        set_background_nice(12)
        assert nice_of(tids[0]) == max(12, mine)  # a thread that existed (an engine's pool) is lowered
        assert nice_of(threading.get_native_id()) == mine  # the hub's thread is not
        assert run_blocking(lambda: nice_of(threading.get_native_id())) >= 12
    finally:
        release.set()
        thread.join(5)
        set_background_nice(0)
    assert run_blocking(lambda: 41 + 1) == 42  # off: work still runs
    with pytest.raises(ZeroDivisionError):
        run_blocking(lambda: 1 / 0)


def test_engine_jobs_waiting_do_not_hold_up_file_and_database_work():
    import gevent

    from runtime.blocking import run_engine

    release = threading.Event()  # a real one: waited on in pool threads
    waiting = [gevent.spawn(run_engine, release.wait, 10) for _ in range(40)]  # more than gevent's pool holds
    gevent.sleep(0.2)
    try:
        with gevent.Timeout(5):
            assert run_blocking(lambda: "saved") == "saved"
    finally:
        release.set()
    gevent.joinall(waiting, timeout=10)
    assert all(job.value is True for job in waiting)
