"""BatchWorker: batches of whatever is queued, on one real engine thread (no model here)."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from speech.batching import BatchClosedError, BatchWorker

REPO = Path(__file__).resolve().parents[1]


class GatedEngine:
    """A run_batch that records its batches and, while ``gate`` is clear, holds the first one."""

    def __init__(self):
        self.batches = []
        self.gate = threading.Event()
        self.started = threading.Event()

    def __call__(self, items):
        self.batches.append(list(items))
        self.started.set()
        assert self.gate.wait(10)
        for index, item in enumerate(items):
            if isinstance(item, Exception):
                yield index, item
            else:
                yield index, item * 10


@pytest.fixture
def engine():
    return GatedEngine()


def _eventually(predicate, timeout_s=5.0):
    """Wait until predicate() is true (on_batch runs on the engine thread after the results are handed out)."""
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def _in_threads(func, args):
    """Run func(arg) for every arg, each in its own thread; return the outcomes (value or exception)."""
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


def test_a_lone_item_runs_at_once_and_reports_its_batch(engine):
    seen = []
    worker = BatchWorker(engine, on_batch=lambda size, seconds: seen.append((size, seconds)))
    engine.gate.set()
    try:
        began = time.perf_counter()
        assert worker.run(4) == 40
        assert time.perf_counter() - began < 1.0
        assert engine.batches == [[4]]
        assert _eventually(lambda: len(seen) == 1)
        assert seen[0][0] == 1 and 0 <= seen[0][1] < 1.0
    finally:
        worker.close()


def test_items_queued_while_the_engine_is_busy_run_as_one_batch(engine):
    sizes = []
    worker = BatchWorker(engine, max_batch=8, on_batch=lambda size, seconds: sizes.append(size))
    try:
        first = worker.submit(1)
        assert engine.started.wait(5)
        threads, out = _in_threads(worker.run, [2, 3, 4])
        deadline = time.monotonic() + 5
        while worker._queue.qsize() < 3 and time.monotonic() < deadline:  # all three queued
            time.sleep(0.01)
        engine.gate.set()
        for thread in threads:
            thread.join(5)
        assert first.result(5) == 10
        assert out == [20, 30, 40]  # each caller gets its own result
        assert engine.batches[0] == [1] and sorted(engine.batches[1]) == [2, 3, 4]
        assert _eventually(lambda: len(sizes) == 2) and sizes == [1, 3]
    finally:
        worker.close()


def test_max_batch_limits_each_run(engine):
    worker = BatchWorker(engine, max_batch=2)
    try:
        first = worker.submit(0)
        assert engine.started.wait(5)
        pending = worker.submit_many([1, 2, 3, 4, 5])
        engine.gate.set()
        assert [p.result(5) for p in [first, *pending]] == [0, 10, 20, 30, 40, 50]
        assert engine.batches == [[0], [1, 2], [3, 4], [5]]
    finally:
        worker.close()


def test_max_batch_one_runs_items_one_by_one_in_order(engine):
    worker = BatchWorker(engine, max_batch=1)
    engine.gate.set()
    try:
        pending = worker.submit_many([1, 2, 3])
        assert [p.result(5) for p in pending] == [10, 20, 30]
        assert engine.batches == [[1], [2], [3]]
    finally:
        worker.close()


def test_an_exception_outcome_fails_only_its_item(engine):
    worker = BatchWorker(engine)
    engine.gate.set()
    try:
        bad = ValueError("bad item")
        pending = worker.submit_many([1, bad, 3])
        assert pending[0].result(5) == 10 and pending[2].result(5) == 30
        with pytest.raises(ValueError, match="bad item"):
            pending[1].result(5)
        assert len(engine.batches) == 1
    finally:
        worker.close()


def test_an_engine_error_is_isolated_by_running_the_items_alone():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        if "poison" in items:
            raise RuntimeError("engine failed")
        return [(i, item.upper()) for i, item in enumerate(items)]

    worker = BatchWorker(run_batch)
    try:
        pending = worker.submit_many(["a", "poison", "b"])
        assert pending[0].result(5) == "A" and pending[2].result(5) == "B"
        with pytest.raises(RuntimeError, match="engine failed"):
            pending[1].result(5)
        assert calls == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
    finally:
        worker.close()


def test_items_already_delivered_keep_their_result_when_the_engine_fails_later():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        yield 0, items[0].upper()
        if len(items) > 1:
            raise RuntimeError("late failure")

    worker = BatchWorker(run_batch)
    try:
        pending = worker.submit_many(["x", "y", "z"])
        assert [p.result(5) for p in pending] == ["X", "Y", "Z"]
        assert calls == [["x", "y", "z"], ["y"], ["z"]]  # x is not run again
    finally:
        worker.close()


def test_an_item_the_engine_forgets_fails_instead_of_hanging():
    worker = BatchWorker(lambda items: [(0, "only the first")])
    try:
        pending = worker.submit_many(["a", "b"])
        assert pending[0].result(5) == "only the first"
        with pytest.raises(RuntimeError, match="no outcome"):
            pending[1].result(5)
    finally:
        worker.close()


def test_a_failing_observer_does_not_stop_the_engine(engine):
    def observer(size, seconds):
        raise RuntimeError("metrics down")

    worker = BatchWorker(engine, on_batch=observer)
    engine.gate.set()
    try:
        assert worker.run(1) == 10
        assert worker.run(2) == 20
    finally:
        worker.close()


def test_result_times_out_while_the_engine_is_busy(engine):
    worker = BatchWorker(engine)
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
    worker = BatchWorker(engine, max_batch=2)
    first = worker.submit(1)
    assert engine.started.wait(5)
    queued = worker.submit_many([2, 3, 4])
    closer = threading.Thread(target=worker.close)
    closer.start()
    engine.gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert [p.result(5) for p in [first, *queued]] == [10, 20, 30, 40]
    try:
        assert worker.run(5, timeout_s=5) == 50  # a new engine thread
    finally:
        worker.close()


def test_engine_thread_is_a_real_thread_and_callers_may_be_many(engine):
    idents = set()

    def run_batch(items):
        idents.add(threading.get_ident())
        return [(i, item) for i, item in enumerate(items)]

    worker = BatchWorker(run_batch, max_batch=4)
    try:
        threads, out = _in_threads(worker.run, list(range(20)))
        for thread in threads:
            thread.join(5)
        assert out == list(range(20))
        assert len(idents) == 1 and threading.get_ident() not in idents
    finally:
        worker.close()


def test_several_workers_run_batches_in_parallel():
    both_running = threading.Barrier(2, timeout=5)
    idents = set()

    def run_batch(items):
        idents.add(threading.get_ident())
        both_running.wait()  # only passes if two batches run at the same time
        return [(i, item) for i, item in enumerate(items)]

    worker = BatchWorker(run_batch, max_batch=1, workers=2)
    try:
        pending = worker.submit_many([1, 2])
        assert [p.result(10) for p in pending] == [1, 2]
        assert len(idents) == 2
    finally:
        worker.close()


def test_max_batch_and_workers_must_be_positive():
    with pytest.raises(ValueError):
        BatchWorker(lambda items: [], max_batch=0)
    with pytest.raises(ValueError):
        BatchWorker(lambda items: [], workers=0)


def test_closed_error_is_a_runtime_error():
    assert issubclass(BatchClosedError, RuntimeError)


GEVENT_SCRIPT = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()

    import json, sys, time
    import gevent
    sys.path.insert(0, sys.argv[1])
    from speech.batching import BatchWorker
    from tests.hub_ticker import start_ticker

    real_sleep = monkey.get_original("time", "sleep")
    sizes = []

    def run_batch(items):
        real_sleep(0.2)  # the engine blocks its own OS thread, never the hub
        return [(i, item * 2) for i, item in enumerate(items)]

    worker = BatchWorker(run_batch, max_batch=8, on_batch=lambda n, s: sizes.append(n))
    assert worker.run(0) == 0  # from the hub's thread, as warm_up does at start-up
    sizes.clear()

    gaps = []
    tick = start_ticker(gaps)
    pool = gevent.get_hub().threadpool
    first = pool.spawn(worker.run, 1)
    gevent.sleep(0.05)  # the engine is busy with the first: the next ones queue up
    rest = [pool.spawn(worker.run, i) for i in range(2, 6)]
    results = [first.get(timeout=10)] + [job.get(timeout=10) for job in rest]
    tick.kill()
    worker.close()
    print(json.dumps({"results": results, "sizes": sizes, "max_gap_s": max(gaps)}))
    """
)


def test_works_in_a_gevent_monkey_patched_process_without_blocking_the_hub():
    run = subprocess.run(
        [sys.executable, "-c", GEVENT_SCRIPT, str(REPO)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    import json

    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["results"] == [2, 4, 6, 8, 10]
    assert report["sizes"] == [1, 4]  # the four that queued behind the first ran together
    assert report["max_gap_s"] < 0.15  # the hub kept running its greenlets
