"""Measure how long the gevent hub is blocked, and say what blocked it.

While a greenlet runs without yielding (CPU work, a blocking call that is not monkey-patched),
the hub cannot read sockets or fire timers: every call's audio stalls. :class:`HubMonitor`
measures it with a heartbeat greenlet that sleeps ``interval_s`` (10 ms) in a loop and times its
own wake-up with ``time.perf_counter``: a hub blocked for B s wakes it late by B minus the part
of its sleep that had not yet run, so a block is measured as ``lateness`` with

    B - interval_s <= lateness <= B + wake-up jitter (under 1 ms when idle, measured)

i.e. a resolution of ``interval_s``. It measures event-loop lag: if several greenlets each run
30 ms in one loop iteration, that is one 90 ms block (the loop did not poll for 90 ms). A block
longer than ``threshold_s`` counts in ``callstream_hub_blocks_total`` and, if the longest yet,
sets ``callstream_hub_block_max_seconds`` (``runtime.metrics``), and is logged as a warning
(at most one per ``log_every_s``; blocks in between are summed up in the next one).

What blocked: a native watchdog thread looks at the heartbeat every ``threshold_s / 2``; when
it is older than ``interval_s + threshold_s`` it takes the stack of the hub's thread
(``sys._current_frames``), i.e. the code running in place of the hub, and the warning shows it.
A block the watchdog does not catch in time (shorter than about ``interval_s + 1.5 × threshold_s``) or one
inside a C call holding the GIL without a Python frame of its own is logged without a stack or
with its Python caller.

Why not gevent's own monitor thread (``gevent.config.monitor_thread``)? Its
``EventLoopBlocked`` event reports the configured ``max_blocking_time``, not the actual
duration, and it traces every greenlet switch (``greenlet.settrace``), a cost on the hot path.
The heartbeat costs about 100 wake-ups a second (well under 1 % of a core); the watchdog 2 / threshold_s.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from typing import Callable

import gevent
from gevent import monkey

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 0.01
STACK_FRAMES = 12  # innermost frames shown in a warning


class HubMonitor:
    """Watches the gevent hub of the thread that calls :meth:`start`.

    Args:
        threshold_s: a block longer than this counts, in seconds (> 0).
        interval_s: heartbeat period, the resolution of a measured duration, in seconds.
        on_block: called on the hub with each counted block's duration in seconds
            (the process monitor passes ``runtime.metrics.hub_blocked``).
        log_every_s: at most one warning per this many seconds (0: every block).
        capture_stacks: run the watchdog thread that records what blocked.

    Attributes (read them on the hub):
        beats: heartbeats so far (about one per ``interval_s`` while the hub is free).
        blocks: blocks counted since :meth:`start`.
        max_block_s: the longest counted block, in seconds (0.0 before any).
        last_block_s, last_stack: the latest counted block and its stack text (``None`` if unknown).
    """

    def __init__(
        self,
        threshold_s: float = 0.05,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        on_block: Callable[[float], None] | None = None,
        log_every_s: float = 10.0,
        capture_stacks: bool = True,
    ) -> None:
        if threshold_s <= 0 or interval_s <= 0:
            raise ValueError("threshold_s and interval_s must be positive")
        self.threshold_s = threshold_s
        self.interval_s = interval_s
        self.on_block = on_block
        self.log_every_s = log_every_s
        self.capture_stacks = capture_stacks
        self.beats = 0
        self.blocks = 0
        self.max_block_s = 0.0
        self.last_block_s: float | None = None
        self.last_stack: str | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._running = False
        self._generation = 0  # a watchdog left from an earlier start() sees it change and exits
        self._beat: tuple[int, float] = (0, time.perf_counter())  # (sequence, perf_counter) of the last wake-up
        self._stack: tuple[int, str] | None = None  # (sequence of the stale beat, stack), set by the watchdog
        self._hub_thread_ident: int | None = None
        self._last_log = float("-inf")
        self._unlogged = 0
        self._unlogged_max_s = 0.0

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Start the heartbeat greenlet (and the watchdog thread) on this thread's hub. Idempotent."""
        if self._running:
            return
        self._running = True
        self._generation += 1
        self._hub_thread_ident = monkey.get_original("_thread", "get_ident")()
        self._beat = (self._beat[0] + 1, time.perf_counter())
        self._greenlet = gevent.spawn(self._heartbeat)
        if self.capture_stacks:
            monkey.get_original("_thread", "start_new_thread")(self._watchdog, (self._generation,))

    def stop(self) -> None:
        """Stop both (call it on the hub's thread); the watchdog exits within ``threshold_s / 2``."""
        self._running = False
        if self._greenlet is not None:
            self._greenlet.kill()
            self._greenlet = None

    def _heartbeat(self) -> None:
        interval_s = self.interval_s
        perf_counter = time.perf_counter
        sleep = gevent.sleep
        sequence = self._beat[0] + 1  # not the beat start() set: a stack the watchdog took before we ran is not ours
        while self._running:
            before = perf_counter()
            self._beat = (sequence, before)
            sleep(interval_s, ref=False)  # ref=False: the monitor alone does not keep the loop alive
            lateness_s = perf_counter() - before - interval_s
            self.beats += 1
            if lateness_s > self.threshold_s:
                stack = self._stack
                self._block(lateness_s, stack[1] if stack is not None and stack[0] == sequence else None)
            sequence += 1

    def _watchdog(self, generation: int) -> None:
        """Native thread: take the hub thread's stack while a block is going on."""
        sleep = monkey.get_original("time", "sleep")
        period_s = max(self.threshold_s / 2, 0.005)
        stale_s = self.interval_s + self.threshold_s
        while self._running and self._generation == generation:
            sleep(period_s)
            sequence, beat = self._beat
            if time.perf_counter() - beat > stale_s and (self._stack is None or self._stack[0] != sequence):
                frame = sys._current_frames().get(self._hub_thread_ident)
                if frame is not None:
                    self._stack = (sequence, "".join(traceback.format_stack(frame, limit=STACK_FRAMES)))
                del frame

    def _block(self, duration_s: float, stack: str | None) -> None:
        self.blocks += 1
        self.max_block_s = max(self.max_block_s, duration_s)
        self.last_block_s = duration_s
        self.last_stack = stack
        if self.on_block is not None:
            try:
                self.on_block(duration_s)
            except Exception:
                log.exception("hub monitor: on_block failed")
        now = time.monotonic()
        if now - self._last_log < self.log_every_s:
            self._unlogged += 1
            self._unlogged_max_s = max(self._unlogged_max_s, duration_s)
            return
        others = ""
        if self._unlogged:
            others = (f"; {self._unlogged} more block(s) since the last warning, longest "
                      f"{self._unlogged_max_s * 1000:.0f} ms")
        where = f"; blocked in (innermost last):\n{stack.rstrip()}" if stack else "; what blocked is unknown (not caught in time)"
        log.warning("gevent hub blocked for %.0f ms (threshold %.0f ms)%s%s",
                    duration_s * 1000, self.threshold_s * 1000, others, where)
        self._last_log = now
        self._unlogged = 0
        self._unlogged_max_s = 0.0


_monitor: HubMonitor | None = None
_monitor_pid: int | None = None


def start_for_server(threshold_ms: int) -> HubMonitor | None:
    """Start this process's hub monitor, feeding ``runtime.metrics``, once per process.

    ``create_app`` calls it. It starts only when gevent has monkey-patched the process, i.e.
    under ``python app.py`` and ``gunicorn -k gevent`` (which patch before the app is built);
    in an unpatched process (the test suite building apps) it does nothing, so no greenlet or
    thread is left behind. Call it on the thread that runs the server's hub.

    Args:
        threshold_ms: ``HUB_BLOCK_THRESHOLD_MS``; 0 turns the monitor off.

    Returns:
        The running monitor, or ``None`` when not started.
    """
    global _monitor, _monitor_pid
    if threshold_ms <= 0 or not _patched():
        return None
    if _monitor is not None and _monitor_pid == os.getpid() and _monitor.running:
        return _monitor
    from runtime import metrics

    _monitor = HubMonitor(threshold_ms / 1000, on_block=metrics.hub_blocked)
    _monitor_pid = os.getpid()  # a fork (gunicorn --preload) starts its own: threads do not survive fork
    _monitor.start()
    log.info("hub monitor: counting gevent hub blocks over %d ms", threshold_ms)
    return _monitor


def stop() -> None:
    """Stop the process's monitor if it runs."""
    global _monitor
    if _monitor is not None:
        _monitor.stop()
        _monitor = None


def _patched() -> bool:
    return monkey.is_module_patched("socket") and monkey.is_module_patched("time")
