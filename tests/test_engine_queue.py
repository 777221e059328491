"""EngineQueue: items run one at a time per engine thread, in arrival order, on real threads (no model here)."""

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from speech.engine_queue import _STOP, RUN_ALONE, CancelToken, EngineCancelledError, EngineClosedError, EngineQueue, Priority

REPO = Path(__file__).resolve().parents[1]


class GatedEngine:
    """A run that records its items and, while ``gate`` is clear, holds the first one."""

    def __init__(self):
        self.items = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, item):
        self.items.append(item)
        self.started.set()
        assert self.gate.wait(10)
        if isinstance(item, Exception):
            raise item
        return item * 10


@pytest.fixture
def engine():
    return GatedEngine()


def _in_threads(func, args):
    """Run func(arg) for every arg, each in its own thread; return the threads and outcomes (value or exception)."""
    out = [None] * len(args)

    def call(index):
        try:
            out[index] = func(args[index])
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out[index] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(args))]
    for thread in threads:
        thread.start()
    return threads, out


def test_a_lone_item_runs_at_once(engine):
    worker = EngineQueue(engine)
    engine.gate.set()
    try:
        began = time.perf_counter()
        assert worker.call(4) == 40
        assert time.perf_counter() - began < 1.0
        assert engine.items == [4]
    finally:
        worker.close()


def test_items_queued_while_the_engine_is_busy_run_one_by_one_in_arrival_order(engine):
    worker = EngineQueue(engine)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        pending = [worker.submit(item) for item in (2, 3, 4)]
        assert worker.queued == 3  # all waiting behind the first
        engine.gate.set()
        assert [p.result(5) for p in [first, *pending]] == [10, 20, 30, 40]
        assert engine.items == [1, 2, 3, 4]
    finally:
        worker.close()


def test_an_exception_fails_only_its_item(engine):
    worker = EngineQueue(engine)
    engine.gate.set()
    try:
        bad = ValueError("bad item")
        pending = [worker.submit(item) for item in (1, bad, 3)]
        assert pending[0].result(5) == 10 and pending[2].result(5) == 30
        with pytest.raises(ValueError, match="bad item"):
            pending[1].result(5)
    finally:
        worker.close()


def test_result_times_out_while_the_engine_is_busy(engine):
    worker = EngineQueue(engine)
    try:
        pending = worker.submit(1)
        with pytest.raises(TimeoutError):
            pending.result(0.05)
        engine.gate.set()
        assert pending.result(5) == 10
        assert pending.result(5) == 10  # may be read again
    finally:
        worker.close()


def test_close_finishes_queued_items_and_a_later_submit_restarts(engine):
    worker = EngineQueue(engine)
    first = worker.submit(1)
    assert engine.started.wait(5)
    queued = [worker.submit(item) for item in (2, 3, 4)]
    closer = threading.Thread(target=worker.close)
    closer.start()
    engine.gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert [p.result(5) for p in [first, *queued]] == [10, 20, 30, 40]
    try:
        assert worker.call(5, timeout_s=5) == 50  # a new engine thread
    finally:
        worker.close()


def test_an_item_queued_behind_a_stop_fails_instead_of_hanging(engine):
    # What a submit racing close() leaves: an item after the engine thread's stop.
    worker = EngineQueue(engine)
    engine.gate.set()
    try:
        work = worker._running_queue()
        work.put(_STOP)
        late = worker.submit(1)
        with pytest.raises(EngineClosedError, match="closed"):
            late.result(5)
        assert engine.items == []
    finally:
        worker.close(timeout_s=5)


def test_engine_thread_is_a_real_thread_and_callers_may_be_many():
    idents = set()

    def run(item):
        idents.add(threading.get_ident())
        return item

    worker = EngineQueue(run)
    try:
        threads, out = _in_threads(worker.call, list(range(20)))
        for thread in threads:
            thread.join(5)
        assert out == list(range(20))
        assert len(idents) == 1 and threading.get_ident() not in idents
    finally:
        worker.close()


def test_several_workers_run_items_in_parallel():
    both_running = threading.Barrier(2, timeout=5)
    idents = set()

    def run(item):
        idents.add(threading.get_ident())
        both_running.wait()  # only passes if two items run at the same time
        return item

    worker = EngineQueue(run, workers=2)
    try:
        pending = [worker.submit(item) for item in (1, 2)]
        assert [p.result(10) for p in pending] == [1, 2]
        assert len(idents) == 2
    finally:
        worker.close()


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        EngineQueue(lambda item: item, workers=0)


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json, sys
    import gevent
    sys.path.insert(0, sys.argv[1])
    from speech.engine_queue import EngineQueue
    from tests.hub_ticker import start_ticker

    real_sleep = monkey.get_original("time", "sleep")
    order = []

    def run(item):
        real_sleep(0.1)  # the engine blocks its own OS thread, never the hub
        order.append(item)
        return item * 2

    worker = EngineQueue(run)
    assert worker.call(0) == 0  # from the hub's thread, as warm_up does at start-up
    order.clear()

    gaps = []
    tick = start_ticker(gaps)
    pool = gevent.get_hub().threadpool
    first = pool.spawn(worker.call, 1)
    gevent.sleep(0.05)  # the engine is busy with the first: the next ones queue up
    rest = [pool.spawn(worker.call, i) for i in range(2, 6)]
    results = [first.get(timeout=10)] + [job.get(timeout=10) for job in rest]
    tick.kill()
    worker.close()
    print(json.dumps({"results": results, "first": order[0], "max_gap_s": max(gaps)}))
    """
)


def test_works_in_a_gevent_monkey_patched_process_without_blocking_the_hub():
    run = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, str(REPO)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["results"] == [2, 4, 6, 8, 10]
    assert report["first"] == 1  # the one submitted first ran first
    assert report["max_gap_s"] < 0.15  # the hub kept running its greenlets


def test_the_most_urgent_queued_item_runs_next_and_equals_keep_arrival_order(engine):
    worker = EngineQueue(engine)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        later = [
            worker.submit(2, priority=Priority.SPECULATIVE),
            worker.submit(3, priority=Priority.SOON),
            worker.submit(4, priority=Priority.CRITICAL),
            worker.submit(5, priority=Priority.SOON),
            worker.submit(6, priority=Priority.CRITICAL),
        ]
        engine.gate.set()
        assert [p.result(5) for p in [first, *later]] == [10, 20, 30, 40, 50, 60]
        assert engine.items == [1, 4, 6, 3, 5, 2]
    finally:
        worker.close()


def test_an_item_cancelled_before_it_starts_is_skipped_and_its_caller_told(engine):
    worker = EngineQueue(engine)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        token = CancelToken()
        dropped = worker.submit(2, priority=Priority.SPECULATIVE, cancel=token)
        kept = worker.submit(3)
        token.cancel()
        engine.gate.set()
        assert first.result(5) == 10 and kept.result(5) == 30
        with pytest.raises(EngineCancelledError):
            dropped.result(5)
        assert engine.items == [1, 3]
    finally:
        worker.close()


def test_an_item_whose_caller_timed_out_is_not_run(engine):
    worker = EngineQueue(engine)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        with pytest.raises(TimeoutError):
            worker.call(2, timeout_s=0.05)
        engine.gate.set()
        assert first.result(5) == 10
        assert worker.call(3, timeout_s=5) == 30
        assert engine.items == [1, 3]
    finally:
        worker.close()


def test_the_backlog_counts_queued_and_running_costs_until_they_are_done(engine):
    worker = EngineQueue(engine)
    try:
        assert worker.backlog_core_s == 0.0
        first = worker.submit(1, cost_core_s=0.7)
        assert engine.started.wait(5)
        token = CancelToken()
        worker.submit(2, cost_core_s=0.3, priority=Priority.SOON)
        worker.submit(3, cost_core_s=0.5, cancel=token)
        assert worker.backlog_core_s == pytest.approx(1.5)
        token.cancel()  # a cancelled item is no longer work to do
        assert worker.backlog_core_s == pytest.approx(1.0)
        engine.gate.set()
        first.result(5)
        deadline = time.monotonic() + 5
        while worker.backlog_core_s and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.backlog_core_s == 0.0 and worker.queued == 0
    finally:
        worker.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from speech.engine_queue import EngineQueue

    def run(item):
        time.sleep(0.5)  # still running when the main thread reaches the end of the script
        with open(sys.argv[2], "a") as out:
            out.write(f"{item}\\n")

    worker = EngineQueue(run)
    worker.submit("running")
    time.sleep(0.1)
    worker.submit("queued")
    """
)


def test_at_exit_the_running_item_is_waited_for_and_the_queued_ones_are_dropped(tmp_path):
    # Engine threads are raw threads: without the exit hook the interpreter would tear down under a
    # running engine (onnxruntime then aborted the process).
    out = tmp_path / "done.txt"
    result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(REPO), str(out)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "running\n"


def test_a_promoted_item_runs_at_its_new_priority_once(engine):
    worker = EngineQueue(engine)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        token = CancelToken()
        speculative = worker.submit(2, priority=Priority.SPECULATIVE, cancel=token, cost_core_s=0.5)
        later = worker.submit(3, priority=Priority.SOON)
        critical = worker.submit(4, priority=Priority.CRITICAL)
        token.promote(Priority.CRITICAL)  # its pause became the endpoint: a caller waits on it now
        token.promote(Priority.SPECULATIVE)  # never demoted
        assert worker.queued == 3 and worker.backlog_core_s == pytest.approx(0.5)
        engine.gate.set()
        assert [p.result(5) for p in (first, speculative, later, critical)] == [10, 20, 30, 40]
        assert engine.items == [1, 4, 2, 3]  # after the critical one queued before its promotion
        token.promote(Priority.CRITICAL)  # done: nothing happens
        assert worker.queued == 0
    finally:
        worker.close()


class ManyEngine(GatedEngine):
    """A GatedEngine whose ``run_many`` records each group it gets (items times 100; an Exception item fails alone)."""

    def __init__(self):
        super().__init__()
        self.groups = []

    def run_many(self, items):
        self.groups.append(list(items))
        return [item if isinstance(item, Exception) else item * 100 for item in items]


def test_run_many_gets_everything_queued_of_the_most_urgent_priority_when_the_thread_frees():
    engine = ManyEngine()
    worker = EngineQueue(engine, run_many=engine.run_many)
    try:
        first = worker.submit(1)  # alone when it arrives: run through run
        assert engine.started.wait(5)
        later = [
            worker.submit(2),
            worker.submit(3, priority=Priority.SOON),
            worker.submit(4),
            worker.submit(5, priority=Priority.SOON),
            worker.submit(ValueError("bad"), priority=Priority.SOON),
        ]
        engine.gate.set()
        assert first.result(5) == 10
        assert [p.result(5) for p in later[:4]] == [200, 300, 400, 500]
        with pytest.raises(ValueError, match="bad"):  # failed alone: its companions got their results
            later[4].result(5)
        assert engine.items == [1]
        assert len(engine.groups) == 2 and engine.groups[0] == [2, 4]  # CRITICAL first, then SOON
        assert engine.groups[1][:2] == [3, 5] and len(engine.groups[1]) == 3
        assert worker.queued == 0 and worker.backlog_core_s == 0.0
    finally:
        worker.close()


def test_fit_many_limits_a_group_and_the_rest_stay_first_in_line():
    engine = ManyEngine()
    worker = EngineQueue(engine, run_many=engine.run_many, fit_many=lambda items: 2)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        later = [worker.submit(item) for item in (2, 3, 4, 5, 6)]
        engine.gate.set()
        assert first.result(5) == 10
        # 2 and 3 together, then 4 and 5, then 6 alone (through run)
        assert [p.result(5) for p in later] == [200, 300, 400, 500, 60]
        assert engine.groups == [[2, 3], [4, 5]]
        assert engine.items == [1, 6]
    finally:
        worker.close()


def test_run_many_skips_cancelled_items_and_a_failure_reaches_every_item_of_the_group():
    engine = GatedEngine()

    def run_many(items):
        raise RuntimeError(f"group of {len(items)} failed")

    worker = EngineQueue(engine, run_many=run_many)
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        token = CancelToken()
        group = [worker.submit(2), worker.submit(3, cancel=token), worker.submit(4)]
        token.cancel()
        engine.gate.set()
        assert first.result(5) == 10
        with pytest.raises(EngineCancelledError):
            group[1].result(5)
        for pending in (group[0], group[2]):
            with pytest.raises(RuntimeError, match="group of 2 failed"):
                pending.result(5)
        assert worker.backlog_core_s == 0.0
    finally:
        worker.close()


def test_run_many_returning_the_wrong_number_of_results_fails_the_group():
    engine = GatedEngine()
    worker = EngineQueue(engine, run_many=lambda items: [1])
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        group = [worker.submit(2), worker.submit(3)]
        engine.gate.set()
        assert first.result(5) == 10
        for pending in group:
            with pytest.raises(ValueError, match="1 results for 2 items"):
                pending.result(5)
    finally:
        worker.close()


def test_run_many_never_waits_for_a_group_and_close_still_finishes_queued_items():
    engine = ManyEngine()
    engine.gate.set()
    worker = EngineQueue(engine, run_many=engine.run_many, workers=2)
    try:
        began = time.perf_counter()
        assert worker.call(7, timeout_s=5) == 70  # alone: run at once, not held back for company
        assert time.perf_counter() - began < 1.0
        pending = [worker.submit(item) for item in range(1, 9)]
        worker.close(timeout_s=5)
        assert all(p.result(5) in (item * 10, item * 100) for p, item in zip(pending, range(1, 9)))
        ran = sorted(engine.items[1:] + [item for group in engine.groups for item in group])
        assert ran == list(range(1, 9))
    finally:
        worker.close()


def test_what_run_many_sends_back_runs_alone_first_in_line_run_alone_first_in_line():
    engine = GatedEngine()
    groups = []

    def run_many(items):
        groups.append(list(items))
        return [RUN_ALONE if item % 2 else item * 100 for item in items]  # odd ones: "in doubt"

    worker = EngineQueue(engine, run_many=run_many, fit_many=lambda items: 3)
    try:
        first = worker.submit(0)
        assert engine.started.wait(5)
        later = [worker.submit(item) for item in (1, 2, 3, 4, 6)]
        engine.gate.set()
        assert first.result(5) == 0
        assert [p.result(5) for p in later] == [10, 200, 30, 400, 600]
        # 1, 2, 3 together; 1 and 3 back at the head, each run alone, before 4 and 6 go together
        assert groups == [[1, 2, 3], [4, 6]]
        assert engine.items == [0, 1, 3]
        assert worker.backlog_core_s == 0.0 and worker.queued == 0
    finally:
        worker.close()
