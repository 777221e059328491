"""Run blocking work (database, files, engines) off the gevent hub, at a lower CPU priority.

Two thread pools: ``run_blocking`` (database, files, HTTP requests of the pages) uses gevent's
own, ``run_engine`` (recognition, synthesis, the responder) a separate one. An engine job can wait
a long time for its turn at the recognizer; when those waits took all of a shared pool's threads
(500 forks talking at once), call saves, recording flushes and stream status callbacks queued
behind them and timed out.

The hub thread reads every call's media; the engines (CTranslate2, onnxruntime) keep every core
busy while they run. When both want the CPU, a starved hub is a blocked hub: every call's audio
stalls (measured under load: the hub thread held the GIL in ~99 % of samples, so it was waiting for
a core, not for the GIL). So the threads that do blocking work run at a higher nice value
(``BACKGROUND_NICE``): Linux schedules each thread on its own, and a nice-10 thread gets about a
ninth of the CPU a nice-0 thread gets while both are runnable (CFS weights 110 vs 1024), so the hub
wins whenever it has work and the engines use every cycle it leaves.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

import gevent
from gevent.monkey import get_original

log = logging.getLogger(__name__)

_native_thread_id = get_original("threading", "get_native_id")
ENGINE_THREADS = 64  # waiting engine jobs are cheap; the engines themselves bound the CPU they use
_background_nice = 0  # set by set_background_nice() at start-up
_engine_pool: tuple[int, Any] | None = None  # (pid, gevent ThreadPool): one per process (gunicorn forks)
_warned = False


def set_background_nice(nice: int) -> None:
    """From now on, threads running ``run_blocking`` work lower their own priority to ``nice`` (0: leave it).

    Also lowers every other thread that exists now (the engines' own thread pools, started by their
    warm-up), except the calling one: call it from the hub's thread, after the engines are warm.
    Raising one's nice value needs no privilege; where it is refused, the error is logged once.
    """
    global _background_nice
    _background_nice = nice
    if not nice or not hasattr(os, "setpriority"):
        return
    me = _native_thread_id()
    tasks = Path("/proc/self/task")
    others = [int(p.name) for p in tasks.iterdir() if p.name.isdigit() and int(p.name) != me] if tasks.is_dir() else []
    for tid in others:
        _lower(tid)


def _lower(tid: int) -> None:
    """Raise thread ``tid``'s nice value to ``_background_nice`` (never lower it)."""
    global _warned
    try:
        # Linux: PRIO_PROCESS with a thread id is that one thread.
        if os.getpriority(os.PRIO_PROCESS, tid) < _background_nice:
            os.setpriority(os.PRIO_PROCESS, tid, _background_nice)
    except OSError as exc:  # the thread ended, or a sandbox refuses
        if not _warned:
            _warned = True
            log.warning("could not lower the priority of background thread %d: %s", tid, exc)


def _in_background(func: Callable, args: tuple) -> Any:
    if _background_nice:
        _lower(_native_thread_id())  # a threadpool thread the hub started since (it inherits the hub's 0)
    return func(*args)


def run_blocking(func: Callable, *args: Any, timeout_s: float | None = None) -> Any:
    """Run ``func(*args)`` in gevent's threadpool and wait for it without blocking the hub.

    Raises:
        gevent.Timeout: not done within ``timeout_s`` seconds (the thread runs on).
        Exception: whatever ``func`` raised.
    """
    return gevent.get_hub().threadpool.spawn(_in_background, func, args).get(timeout=timeout_s)


def run_engine(func: Callable, *args: Any, timeout_s: float | None = None) -> Any:
    """Like ``run_blocking``, in the engines' own thread pool (see the module docstring).

    Raises:
        gevent.Timeout: not done within ``timeout_s`` seconds (the thread runs on).
        Exception: whatever ``func`` raised.
    """
    return spawn_engine(func, *args).get(timeout=timeout_s)


def spawn_engine(func: Callable, *args: Any):
    """Start ``func(*args)`` in the engines' thread pool; return its ``gevent.event.AsyncResult``."""
    global _engine_pool
    if _engine_pool is None or _engine_pool[0] != os.getpid():
        from gevent.threadpool import ThreadPool

        _engine_pool = (os.getpid(), ThreadPool(ENGINE_THREADS))
    return _engine_pool[1].spawn(_in_background, func, args)
