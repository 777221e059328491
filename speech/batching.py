"""Micro-batching: requests that are waiting at the same time run together in one engine run.

``BatchWorker`` owns an engine thread (or a few). Callers (any OS threads: gevent's threadpool
threads in the server) hand it one item each and block until that item's outcome is
ready. Whenever the engine thread is free it takes *everything already queued* (up to
``max_batch`` items) and runs it as one batch: a lone request runs at once, with no
added wait, and requests that arrive while a batch runs form the next batch.

gevent: the server monkey-patches ``threading`` and ``queue`` before this module is
imported, which would turn a ``threading.Thread`` into a greenlet on the hub and make
``threading.Lock`` a hub-bound gevent lock. Everything here therefore uses the
*original* primitives (``gevent.monkey.get_original``): the engine thread is a real OS
thread started with ``_thread.start_new_thread``, the queue is the C
``queue.SimpleQueue``, and each caller waits on a raw ``_thread`` lock. Nothing runs on
the hub, and callers must be real threads (a caller on the hub thread blocks the hub
until its item is done: acceptable only at start-up, e.g. ``warm_up``).
"""

from __future__ import annotations

import os
import queue
import sys
import time
from typing import Any, Callable, Generic, Iterable, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchRunner = Callable[[list[Any]], Iterable[tuple[int, Any]]]
"""``run_batch(items)``: run a batch, yield ``(index, outcome)`` per item as each is ready.

An outcome that is a ``BaseException`` instance fails only that item (it is raised to
its caller). If ``run_batch`` itself raises, the items it had not yet yielded are run
again one by one, so a bad item fails alone; an item that raises when run alone gets
that exception.
"""

BatchObserver = Callable[[int, float], None]
"""``on_batch(batch_size, seconds)``: called on the engine thread after every run."""


def _original(module: str, name: str) -> Any:
    """Return ``module.name`` as it was before any gevent monkey-patching."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(sys.modules.get(module) or __import__(module), name)


_allocate_lock = _original("_thread", "allocate_lock")
_start_new_thread = _original("_thread", "start_new_thread")
_SimpleQueue = _original("queue", "SimpleQueue")


class BatchClosedError(RuntimeError):
    """The worker was closed before the item ran."""


class _Pending(Generic[Result]):
    """One submitted item: its outcome and a raw lock that is released when it is set."""

    __slots__ = ("item", "_done", "_outcome")

    def __init__(self, item: Any) -> None:
        self.item = item
        self._done = _allocate_lock()
        self._done.acquire()
        self._outcome: Any = None

    def set(self, outcome: Any) -> None:
        """Store the outcome (a result or a BaseException) and wake the caller; later calls are ignored."""
        if self._done.locked() and self._outcome is None:
            self._outcome = (outcome,)
            self._done.release()

    def done(self) -> bool:
        """True once the outcome is set."""
        return not self._done.locked()

    def result(self, timeout_s: float | None = None) -> Result:
        """Block the calling OS thread until the outcome is set; return it or raise it.

        Raises:
            TimeoutError: not done within ``timeout_s`` seconds (the item still runs).
            BaseException: the item's failure.
        """
        if not self._done.acquire(True, -1 if timeout_s is None else max(timeout_s, 0.0)):
            raise TimeoutError(f"batch item not done within {timeout_s} s")
        self._done.release()  # leave it released: result() may be called again
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


_STOP = object()


class BatchWorker(Generic[Item, Result]):
    """Run items through ``run_batch`` in batches of whatever is queued, on engine threads (one by default).

    Args:
        run_batch: the engine (see ``BatchRunner``); called on the engine thread only,
            so it needs no locking of its own.
        max_batch: most items per run (>= 1); 1 turns batching off (one item per run, in
            arrival order).
        workers: engine threads taking batches from the one queue (>= 1); more than 1
            only for an engine that runs several batches in parallel (e.g. a CTranslate2
            model with ``num_workers`` replicas); ``run_batch`` must then be thread-safe.
        on_batch: optional ``on_batch(batch_size, seconds)`` observer (see
            ``BatchObserver``), e.g. to feed a batch-size histogram; its exceptions are
            ignored. ``seconds`` is the wall-clock time of the whole run.

    Raises:
        ValueError: ``max_batch`` or ``workers`` < 1.

    The engine threads start on the first ``submit`` (and again after ``close`` or in a
    forked child, where threads do not survive).
    """

    def __init__(
        self, run_batch: BatchRunner, *, max_batch: int = 8, workers: int = 1, on_batch: BatchObserver | None = None
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.workers = workers
        self.on_batch = on_batch
        self._start_lock = _allocate_lock()
        self._queue: Any = None
        self._stopped: list[Any] = []  # one raw lock per engine thread, released when it exits
        self._pid = 0

    def submit(self, item: Item) -> _Pending[Result]:
        """Queue ``item``; return its pending outcome (``.result(timeout_s)`` blocks for it)."""
        return self.submit_many([item])[0]

    def submit_many(self, items: list[Item]) -> list[_Pending[Result]]:
        """Queue ``items`` at once: the engine takes them together (up to ``max_batch`` per run).

        Returns:
            One pending outcome per item, in order.
        """
        pendings: list[_Pending[Result]] = [_Pending(item) for item in items]
        if pendings:
            work = self._running_queue()
            for start in range(0, len(pendings), self.max_batch):  # one queue entry per run
                work.put(pendings[start : start + self.max_batch])
        return pendings

    def run(self, item: Item, timeout_s: float | None = None) -> Result:
        """Submit ``item`` and block the calling OS thread until its outcome is ready.

        Raises:
            TimeoutError: not done within ``timeout_s`` seconds.
            BaseException: what the engine raised for this item.
        """
        return self.submit(item).result(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the engine thread after the items already queued; a later ``submit`` restarts it.

        Args:
            timeout_s: longest wait for the thread to finish; None waits as long as it takes.
        """
        with self._start_lock:
            work, stopped, self._queue, self._stopped = self._queue, self._stopped, None, []
            if work is None or self._pid != os.getpid():
                return
        for _ in stopped:
            work.put(_STOP)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for lock in stopped:
            wait_s = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            if lock.acquire(True, wait_s):
                lock.release()

    def _running_queue(self) -> Any:
        """Return the queue of a live engine thread, starting the thread if needed."""
        work = self._queue
        if work is not None and self._pid == os.getpid():
            return work
        with self._start_lock:
            if self._queue is None or self._pid != os.getpid():
                self._queue = _SimpleQueue()
                self._pid = os.getpid()
                self._stopped = []
                for _ in range(self.workers):
                    stopped = _allocate_lock()
                    stopped.acquire()
                    self._stopped.append(stopped)
                    _start_new_thread(self._loop, (self._queue, stopped))
            return self._queue

    def _loop(self, work: Any, stopped: Any) -> None:
        """Engine thread: take what is queued (up to max_batch), run it, repeat until a _STOP."""
        carry: list[_Pending[Result]] = []  # taken from the queue, not yet run
        stop = False
        try:
            while carry or not stop:
                if not carry:
                    entry = work.get()
                    if entry is _STOP:
                        return
                    carry.extend(entry)
                while len(carry) < self.max_batch and not stop:
                    try:
                        entry = work.get_nowait()
                    except queue.Empty:
                        break
                    if entry is _STOP:
                        stop = True
                    else:
                        carry.extend(entry)
                batch, carry = carry[: self.max_batch], carry[self.max_batch :]
                if carry and self.workers > 1 and not stop:
                    work.put(carry)  # another engine thread may be idle
                    carry = []
                self._run(batch)
        finally:
            # Items queued after the stop (a submit that raced close()) fail rather than
            # hang; another engine thread's stop is left for it.
            while True:
                try:
                    entry = work.get_nowait()
                except queue.Empty:
                    break
                if entry is _STOP:
                    work.put(_STOP)
                    break
                carry.extend(entry)
            for pending in carry:
                pending.set(BatchClosedError("the batch worker was closed"))
            stopped.release()

    def _run(self, batch: list[_Pending[Result]]) -> None:
        started = time.perf_counter()
        self._deliver(batch, isolate=len(batch) > 1)
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch), time.perf_counter() - started)
            except Exception:  # an observer must not take the engine down
                pass

    def _deliver(self, batch: list[_Pending[Result]], *, isolate: bool) -> None:
        """Run ``batch`` and set every item's outcome; on an engine error, retry items alone."""
        try:
            for index, outcome in self._run_batch([p.item for p in batch]):
                batch[index].set(outcome)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must be woken
            left = [p for p in batch if not p.done()]
            if isolate and left:
                for pending in left:
                    self._deliver([pending], isolate=False)
                return
            for pending in left:
                pending.set(exc)
            return
        for pending in batch:
            pending.set(RuntimeError("the batch engine returned no outcome for this item"))
