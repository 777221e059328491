"""A FIFO queue served by engine threads: callers hand over one item each and block for its result.

``EngineQueue`` owns one or more engine threads. Callers (any OS threads: gevent's threadpool
threads in the server) submit one item each and block until it has run; a free engine thread
takes the oldest queued item, so work runs in arrival order instead of interleaving (threads
calling a CTranslate2 model at once had all their decodes finish near the end:
docs/benchmarks.md).

gevent: the server monkey-patches ``threading`` and ``queue`` before this module is
imported, which would turn a ``threading.Thread`` into a greenlet on the hub and make
``threading.Lock`` a hub-bound gevent lock. Everything here therefore uses the
*original* primitives (``gevent.monkey.get_original``): an engine thread is a real OS
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
from typing import Any, Callable, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def _original(module: str, name: str) -> Any:
    """Return ``module.name`` as it was before any gevent monkey-patching."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(sys.modules.get(module) or __import__(module), name)


_allocate_lock = _original("_thread", "allocate_lock")
_start_new_thread = _original("_thread", "start_new_thread")
_SimpleQueue = _original("queue", "SimpleQueue")


class EngineClosedError(RuntimeError):
    """The queue was closed before the item ran."""


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

    def result(self, timeout_s: float | None = None) -> Result:
        """Block the calling OS thread until the outcome is set; return it or raise it.

        Raises:
            TimeoutError: not done within ``timeout_s`` seconds (the item still runs).
            BaseException: the item's failure.
        """
        if not self._done.acquire(True, -1 if timeout_s is None else max(timeout_s, 0.0)):
            raise TimeoutError(f"engine item not done within {timeout_s} s")
        self._done.release()  # leave it released: result() may be called again
        (outcome,) = self._outcome
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


_STOP = object()


class EngineQueue(Generic[Item, Result]):
    """Run items through ``run`` one at a time per engine thread, in arrival order.

    Args:
        run: ``run(item) -> result``, called on an engine thread only; what it raises is
            raised to that item's caller. With ``workers`` > 1 it runs on several threads at
            once and must be thread-safe (e.g. a CTranslate2 model with ``num_workers``
            replicas).
        workers: engine threads taking items from the one queue (>= 1).

    Raises:
        ValueError: ``workers`` < 1.

    The engine threads start on the first ``submit`` (and again after ``close`` or in a
    forked child, where threads do not survive).
    """

    def __init__(self, run: Callable[[Item], Result], *, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._run = run
        self.workers = workers
        self._start_lock = _allocate_lock()
        self._queue: Any = None
        self._stopped: list[Any] = []  # one raw lock per engine thread, released when it exits
        self._pid = 0

    def submit(self, item: Item) -> _Pending[Result]:
        """Queue ``item``; return its pending outcome (``.result(timeout_s)`` blocks for it)."""
        pending: _Pending[Result] = _Pending(item)
        self._running_queue().put(pending)
        return pending

    def call(self, item: Item, timeout_s: float | None = None) -> Result:
        """Submit ``item`` and block the calling OS thread until its outcome is ready.

        Raises:
            TimeoutError: not done within ``timeout_s`` seconds.
            BaseException: what ``run`` raised for this item.
        """
        return self.submit(item).result(timeout_s)

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the engine threads after the items already queued; a later ``submit`` restarts them.

        Args:
            timeout_s: longest wait for the threads to finish; None waits as long as it takes.
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
        """Return the queue of live engine threads, starting them if needed."""
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
        """Engine thread: run queued items one by one until a _STOP."""
        try:
            while True:
                pending = work.get()
                if pending is _STOP:
                    return
                try:
                    pending.set(self._run(pending.item))
                except BaseException as exc:  # noqa: BLE001 - the waiting caller must be woken
                    pending.set(exc)
        finally:
            # Items queued after the stop (a submit that raced close()) fail rather than
            # hang; another engine thread's stop is left for it.
            while True:
                try:
                    pending = work.get_nowait()
                except queue.Empty:
                    break
                if pending is _STOP:
                    work.put(_STOP)
                    break
                pending.set(EngineClosedError("the engine queue was closed"))
            stopped.release()
