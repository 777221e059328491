"""A priority queue served by engine threads: callers hand over one item each and block for its result.

``EngineQueue`` owns one or more engine threads. Callers (any OS threads: gevent's threadpool
threads in the server) submit one item each and block until it has run; a free engine thread
takes the queued item of the most urgent ``Priority``, the oldest first among equals, so work runs
in deadline order and in arrival order instead of interleaving (threads calling a CTranslate2
model at once had all their decodes finish near the end: docs/benchmarks.md). An item whose
``CancelToken`` was cancelled before an engine thread took it is skipped (its caller gave up:
a barge-in, a timeout). Every item carries its estimated cost in core-seconds, and the queue
reports what it holds (``backlog_core_s``) for admission control (core/admission.py).

With a ``run_many`` hook, a free engine thread takes every item queued at that moment with the
priority of the most urgent one (up to what ``fit_many`` allows) and runs them in one call: the
recognizer packs several utterances into one whisper window (speech/window_packing.py). It
never waits for more items to arrive.

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

import atexit
import heapq
import itertools
import os
import queue
import sys
import time
from enum import IntEnum
from typing import Any, Callable, Generic, Sequence, TypeVar

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


class EngineCancelledError(RuntimeError):
    """The item's ``CancelToken`` was cancelled before an engine thread took it: it never ran."""


class Priority(IntEnum):
    """How soon an engine item is needed; an engine thread takes the lowest value first.

    CRITICAL: a caller waits on it now (the recognition of a finished turn, the first sentence of
    a reply, a greeting). SOON: needed later (a reply's later sentences, needed when the previous
    one has played; a listen-only fork's transcript, which nobody waits for). SPECULATIVE: may be
    thrown away (recognition started in the caller's pause, before the endpoint).
    """

    CRITICAL = 0
    SOON = 1
    SPECULATIVE = 2


class CancelToken:
    """Held by the waiting side: to say the result is no longer wanted, or is wanted sooner.

    ``cancel()`` is a plain attribute write, safe from any thread (the gevent hub included); an
    engine thread reads it when it takes the item and skips a cancelled one. ``promote(priority)``
    moves a still-queued item up (a speculative recognition whose pause became the endpoint: a
    caller now waits on it); it takes the queue's lock for a moment (microseconds).
    """

    __slots__ = ("cancelled", "_promote")

    def __init__(self) -> None:
        self.cancelled = False
        self._promote: Callable[[int], None] | None = None  # set by EngineQueue.submit

    def cancel(self) -> None:
        self.cancelled = True

    def promote(self, priority: int) -> None:
        """Run the item as ``priority`` if that is more urgent and it has not started (else nothing)."""
        if self._promote is not None:
            self._promote(int(priority))


class _Pending(Generic[Result]):
    """One submitted item: its outcome and a raw lock that is released when it is set."""

    __slots__ = ("item", "cost_core_s", "cancel", "priority", "taken", "sequence", "alone", "_done", "_outcome")

    def __init__(self, item: Any, cost_core_s: float = 0.0, cancel: CancelToken | None = None, priority: int = 0) -> None:
        self.item = item
        self.cost_core_s = cost_core_s
        self.cancel = cancel
        self.priority = priority
        self.taken = False  # an engine thread took it (a promoted item has a stale heap entry left)
        self.sequence = 0  # of the heap entry it was last taken from (RUN_ALONE puts it back there)
        self.alone = False  # run_many sent it back (RUN_ALONE): it goes through run, by itself
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
EXIT_WAIT_S = 10.0  # at interpreter exit, the longest wait for the items engine threads are running

RUN_ALONE: Any = object()
"""What ``run_many`` returns for an item it did not run: the item goes back to the head of
the queue (its old place) and the next free engine thread runs it alone through ``run``."""


class EngineQueue(Generic[Item, Result]):
    """Run items through ``run`` one at a time per engine thread, most urgent first, then in arrival order.

    Args:
        run: ``run(item) -> result``, called on an engine thread only; what it raises is
            raised to that item's caller. With ``workers`` > 1 it runs on several threads at
            once and must be thread-safe (e.g. a CTranslate2 model with ``num_workers``
            replicas).
        workers: engine threads taking items from the one queue (>= 1).
        run_many: optional ``run_many(items) -> results``, called on an engine thread
            instead of ``run`` when, as the thread frees, more than one item of the most
            urgent queued priority is waiting (not cancelled): ``items`` is the list of those
            (at least 2, in arrival order, as many as ``fit_many`` allows); it returns one
            result per item, in the same order, where a ``BaseException`` instance is raised
            to that item's caller alone and ``RUN_ALONE`` sends the item back to its place
            at the head of the queue, to be run alone through ``run`` by the next free
            engine thread (so several such items share the engine threads). What it raises
            is raised to every one of them, as is a ``ValueError`` if it returns a different
            number of results. None (the default): items always run one by one through ``run``.
        fit_many: optional ``fit_many(items) -> n``: how many of the leading ``items``
            (the candidates for one ``run_many`` call, in order) go together, 1 or more; the
            rest stay queued, first in line. Called with the queue's lock held: it must be
            quick and must not use the queue. None: all of them.

    Raises:
        ValueError: ``workers`` < 1.

    The engine threads start on the first ``submit`` (and again after ``close`` or in a
    forked child, where threads do not survive).

    The queued items are a heap of ``(priority, sequence, pending)`` under a raw lock; the
    ``SimpleQueue`` carries one wake-up per item (or a stop), so an engine thread sleeps in C
    until there is work and then takes the best item there is at that moment.
    """

    def __init__(
        self,
        run: Callable[[Item], Result],
        *,
        workers: int = 1,
        run_many: Callable[[list[Item]], Sequence[Result | BaseException]] | None = None,
        fit_many: Callable[[list[Item]], int] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._run = run
        self._run_many = run_many
        self._fit_many = fit_many
        self.workers = workers
        self._start_lock = _allocate_lock()
        self._heap_lock = _allocate_lock()
        self._heap: list[tuple[int, int, _Pending]] = []
        self._sequence = itertools.count()
        self._running_core_s = 0.0  # estimated cost of the items engine threads are running
        self._queue: Any = None  # wake-ups: one per queued item, or _STOP
        self._stopped: list[Any] = []  # one raw lock per engine thread, released when it exits
        self._pid = 0
        self._exit_hook = False

    def submit(
        self, item: Item, *, priority: int = Priority.CRITICAL, cost_core_s: float = 0.0, cancel: CancelToken | None = None
    ) -> _Pending[Result]:
        """Queue ``item``; return its pending outcome (``.result(timeout_s)`` blocks for it).

        Args:
            item: what ``run`` gets.
            priority: a ``Priority`` (lower runs first; equal ones in arrival order).
            cost_core_s: estimated CPU cost in core-seconds, counted in ``backlog_core_s``
                until the item is done.
            cancel: when cancelled before an engine thread takes the item, the item is
                skipped and its outcome is ``EngineCancelledError``.
        """
        pending: _Pending[Result] = _Pending(item, cost_core_s, cancel, int(priority))
        wake = self._running_queue()
        with self._heap_lock:
            heapq.heappush(self._heap, (int(priority), next(self._sequence), pending))
        if cancel is not None:
            cancel._promote = lambda to: self._promote(pending, to)
        wake.put(True)
        return pending

    def _promote(self, pending: _Pending, priority: int) -> None:
        """Queue ``pending`` again at ``priority`` if it is more urgent and not taken; the old heap
        entry stays and is skipped once the item has been taken."""
        with self._heap_lock:
            if not pending.taken and priority < pending.priority:
                pending.priority = priority
                heapq.heappush(self._heap, (priority, next(self._sequence), pending))

    def call(self, item: Item, timeout_s: float | None = None, **options: Any) -> Result:
        """Submit ``item`` (``options`` as for ``submit``) and block the calling OS thread until its outcome is ready.

        Raises:
            TimeoutError: not done within ``timeout_s`` seconds (the item is cancelled if
                it has not started).
            EngineCancelledError: its ``cancel`` token was cancelled before it started.
            BaseException: what ``run`` raised for this item.
        """
        pending = self.submit(item, **options)
        try:
            return pending.result(timeout_s)
        except TimeoutError:
            if pending.cancel is None:
                pending.cancel = CancelToken()
            pending.cancel.cancel()
            raise

    @property
    def queued(self) -> int:
        """Items waiting for an engine thread (cancelled ones included until a thread skips them)."""
        with self._heap_lock:
            return len({id(p) for _, _, p in self._heap if not p.taken})

    @property
    def backlog_core_s(self) -> float:
        """Estimated core-seconds of the items queued (not cancelled) and running."""
        with self._heap_lock:
            waiting = {id(p): p for _, _, p in self._heap if not p.taken and (p.cancel is None or not p.cancel.cancelled)}
            return sum(p.cost_core_s for p in waiting.values()) + self._running_core_s

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
        """Return the wake-up queue of live engine threads, starting them if needed."""
        work = self._queue
        if work is not None and self._pid == os.getpid():
            return work
        with self._start_lock:
            if self._queue is None or self._pid != os.getpid():
                if self._pid != os.getpid():  # a forked child: the parent's items are not ours to run
                    self._heap, self._running_core_s = [], 0.0
                    self._heap_lock = _allocate_lock()
                self._queue = _SimpleQueue()
                self._pid = os.getpid()
                self._stopped = []
                for _ in range(self.workers):
                    stopped = _allocate_lock()
                    stopped.acquire()
                    self._stopped.append(stopped)
                    _start_new_thread(self._loop, (self._queue, stopped))
                for _ in self._heap:  # items queued before a close(): wake a thread for each
                    self._queue.put(True)
                if not self._exit_hook:
                    # Engine threads are raw threads, which the interpreter does not wait for: one still
                    # inside onnxruntime or CTranslate2 while the interpreter tears down the models
                    # aborts the process ("terminate called without an active exception"). So at
                    # exit, the queued items fail and the running ones are waited for.
                    atexit.register(self._close_at_exit)
                    self._exit_hook = True
            return self._queue

    def _close_at_exit(self) -> None:
        with self._heap_lock:
            dropped, self._heap = self._heap, []
        for _, _, pending in dropped:
            pending.taken = True
            pending.set(EngineClosedError("the process is exiting"))
        self.close(timeout_s=EXIT_WAIT_S)

    def _pop_untaken(self) -> tuple[int, int, _Pending] | None:
        """Pop the most urgent heap entry whose item is not taken (called with the lock held); None if none."""
        while self._heap:
            entry = heapq.heappop(self._heap)
            if not entry[2].taken:  # else a stale entry of a promoted item
                return entry
        return None

    def _take(self) -> _Pending | None:
        """Pop the most urgent queued item and count it as running; None if the heap is empty."""
        with self._heap_lock:
            entry = self._pop_untaken()
            if entry is None:
                return None
            pending = entry[2]
            pending.taken = True
            self._running_core_s += pending.cost_core_s
            return pending

    def _take_many(self) -> list[_Pending]:
        """Pop the most urgent queued item and the others of its priority that ``fit_many`` allows.

        Cancelled ones among the others are failed with ``EngineCancelledError`` and left
        out; the first is returned even when cancelled (``_loop`` skips it). Returns []
        if the heap is empty.
        """
        with self._heap_lock:
            head = self._pop_untaken()
            if head is None:
                return []
            entries: list[tuple[int, int, _Pending]] = [head]  # (priority, sequence, pending)
            first = entries[0][2]
            first.taken = True
            alone = []  # sent back by run_many: each runs by itself, later
            while not first.alone and self._heap and self._heap[0][0] == entries[0][0]:
                entry = heapq.heappop(self._heap)
                if entry[2].taken:
                    continue
                if entry[2].alone:
                    alone.append(entry)
                    continue
                entry[2].taken = True
                if entry[2].cancel is not None and entry[2].cancel.cancelled:
                    entry[2].set(EngineCancelledError("cancelled before it ran"))
                else:
                    entries.append(entry)
            for entry in alone:
                heapq.heappush(self._heap, entry)
            if first.alone or (first.cancel is not None and first.cancel.cancelled):
                keep = 1  # run or skipped alone, as without run_many; the others wait for the next wake-up
            elif len(entries) > 1 and self._fit_many is not None:
                keep = max(1, min(len(entries), int(self._fit_many([entry[2].item for entry in entries]))))
            else:
                keep = len(entries)
            for entry in entries[keep:]:  # back with their old sequence numbers: still first in line
                entry[2].taken = False
                heapq.heappush(self._heap, entry)
            for entry in entries[:keep]:
                entry[2].sequence = entry[1]
            taken = [entry[2] for entry in entries[:keep]]
            self._running_core_s += sum(p.cost_core_s for p in taken)
            return taken

    def _run_together(self, taken: list[_Pending], work: Any) -> None:
        """Run ``taken`` (2 or more, not cancelled) in one ``run_many`` call and hand out the results.

        An item whose result is ``RUN_ALONE`` goes back into the heap with its old priority and
        sequence (first in line) and a wake-up in ``work``, marked to run alone.
        """
        try:
            results = list(self._run_many([p.item for p in taken]))  # type: ignore[misc]
            if len(results) != len(taken):
                raise ValueError(f"run_many returned {len(results)} results for {len(taken)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must be woken
            results = [exc] * len(taken)
        for pending, outcome in zip(taken, results):
            if outcome is RUN_ALONE:
                with self._heap_lock:
                    pending.alone, pending.taken = True, False
                    heapq.heappush(self._heap, (pending.priority, pending.sequence, pending))
                work.put(True)
            else:
                pending.set(outcome)

    def _done(self, pending: _Pending) -> None:
        with self._heap_lock:
            self._running_core_s = max(0.0, self._running_core_s - pending.cost_core_s)

    def _loop(self, work: Any, stopped: Any) -> None:
        """Engine thread: run queued items one by one (or together, with ``run_many``), most urgent first, until a _STOP."""
        try:
            while True:
                if work.get() is _STOP:
                    return
                if self._run_many is None:
                    pending = self._take()
                    taken = [] if pending is None else [pending]
                else:
                    # Items taken together leave their wake-ups in ``work``: a thread woken by
                    # one of those finds nothing to take and waits again.
                    taken = self._take_many()
                if not taken:  # its item was failed by a closing thread, or taken with another
                    continue
                try:
                    if len(taken) > 1:
                        self._run_together(taken, work)
                    elif taken[0].cancel is not None and taken[0].cancel.cancelled:
                        taken[0].set(EngineCancelledError("cancelled before it ran"))
                    else:
                        taken[0].set(self._run(taken[0].item))
                except BaseException as exc:  # noqa: BLE001 - the waiting caller must be woken
                    for pending in taken:
                        pending.set(exc)
                finally:
                    for pending in taken:
                        self._done(pending)
        finally:
            # Items queued after the stop (a submit that raced close()) fail rather than
            # hang; another engine thread's stop is left for it.
            while True:
                try:
                    token = work.get_nowait()
                except queue.Empty:
                    break
                if token is _STOP:
                    work.put(_STOP)
                    break
                pending = self._take()
                if pending is not None:
                    self._done(pending)
                    pending.set(EngineClosedError("the engine queue was closed"))
            stopped.release()
