"""Prometheus metrics of the process: calls, media traffic, turn latency, engine times, hub blocking.

The metric objects live once per process on prometheus-client's default ``REGISTRY`` (created
when this module is first imported, so building many apps in one process, as the tests do,
never registers a name twice). That registry also carries prometheus-client's ``process_*``
(CPU seconds, resident memory, open fds), ``python_gc_*`` and ``python_info`` collectors, and
any metric a responder defines with prometheus-client's defaults, so those are exported too.
``GET /metrics`` (``handlers/api.py``) serves :func:`render`.

The call worker reports through the small functions below. They are cheap: a media-message
counter increment is one pre-bound child ``inc`` (about 0.4 µs, measured with prometheus-client
0.26.0 on the project's machine, patched or not by gevent), so calling :func:`media_in` per
message costs about 0.1 % of a core at 2,500 messages/s. Call them from greenlets (the hub
thread); they are thread-safe but, under gevent monkey patching, their locks are gevent locks.

One process, one set of numbers: with several gunicorn workers each would export its own
(the Procfile runs one).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST", "REGISTRY", "MODES", "STAGES", "active_call", "authorized", "call_ended", "call_started",
    "frames_lost", "hub_blocked", "media_in", "media_out", "observe_recognition",
    "observe_synthesis",
    "observe_turn_latency", "render",
]

MODES = ("conversation", "fork")
"""Values of the ``mode`` label of ``callstream_active_calls``."""

STAGES = ("endpoint", "recognition", "responder", "synthesis", "total", "first_mark")
"""Values of the ``stage`` label of ``callstream_turn_latency_seconds`` (keys of a reply's ``latency_ms``)."""

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Histogram buckets (s) of the voice-latency histograms: fine around a conversational 0.2–2 s."""


ACTIVE_CALLS = Gauge("callstream_active_calls", "Calls in progress in this process.", ["mode"])
TURN_LATENCY = Histogram(
    "callstream_turn_latency_seconds",
    "Latency of a bot reply by stage: endpoint (silence waited, media clock), recognition, responder, "
    "synthesis (first sentence, wall clock), total (caller's last voiced frame to the first reply audio sent) "
    "and first_mark (... to the echo of the first sentence's mark).",
    ["stage"], buckets=LATENCY_BUCKETS_S,
)
RECOGNITION = Histogram("callstream_recognition_seconds", "Speech recognition time per utterance, queueing included.",
                        buckets=LATENCY_BUCKETS_S)
SYNTHESIS = Histogram("callstream_synthesis_seconds", "Speech synthesis engine time per sentence.",
                      buckets=LATENCY_BUCKETS_S)
MEDIA_MESSAGES = Counter("callstream_media_messages", "Media Stream media messages received (in) and sent (out).",
                         ["direction"])
FRAMES_LOST = Counter("callstream_frames_lost", "Inbound 20 ms frames missing from the media clock (timestamp gaps).")
HUB_BLOCKS = Counter("callstream_hub_blocks", "Times the gevent hub was blocked longer than HUB_BLOCK_THRESHOLD_MS.")
CALLS_ADMITTED = Counter("callstream_calls_admitted", "Conversation webhooks answered with a stream (admission control let them in).")
CALLS_REFUSED = Counter("callstream_calls_refused", "Conversation webhooks refused: over MAX_CALLS or shutting down (max_calls), or the engines' backlog (overload).", ["reason"])
ENGINE_BACKLOG = Gauge("callstream_engine_backlog_core_seconds", "Estimated core-seconds of this machine's CPU that the speech engines have queued and running.")
HUB_BLOCK_MAX = Gauge("callstream_hub_block_max_seconds", "Longest gevent hub block seen since the process started.")

# Pre-bound children: the per-message paths skip the label lookup (1.3 µs → 0.4 µs), and every
# label value is exported (as 0) before its first event.
_ACTIVE = {mode: ACTIVE_CALLS.labels(mode=mode) for mode in MODES}
_STAGE = {stage: TURN_LATENCY.labels(stage=stage) for stage in STAGES}
_MEDIA_IN = MEDIA_MESSAGES.labels(direction="in")
_MEDIA_OUT = MEDIA_MESSAGES.labels(direction="out")
for _reason in ("max_calls", "overload"):
    CALLS_REFUSED.labels(_reason)
_hub_block_max_s = 0.0


def _mode(mode: str) -> Gauge:
    try:
        return _ACTIVE[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}") from None


def call_started(mode: str) -> None:
    """Count a call in progress. ``mode``: ``"conversation"`` or ``"fork"``; else ``ValueError``."""
    _mode(mode).inc()


def call_ended(mode: str) -> None:
    """Count a call as over (pair it with :func:`call_started`, or use :func:`active_call`)."""
    _mode(mode).dec()


@contextlib.contextmanager
def active_call(mode: str) -> Iterator[None]:
    """``with active_call("conversation"):`` counts the call in progress for the block, however it ends."""
    gauge = _mode(mode)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def media_in(n: int = 1) -> None:
    """Count ``n`` inbound media messages (call per message, or per batch with their number)."""
    _MEDIA_IN.inc(n)


def media_out(n: int = 1) -> None:
    """Count ``n`` outbound media messages sent to Twilio."""
    _MEDIA_OUT.inc(n)


def frames_lost(n: int) -> None:
    """Count ``n`` inbound 20 ms frames missing from the media clock; ``n <= 0`` is ignored."""
    if n > 0:
        FRAMES_LOST.inc(n)


def _seconds(value_ms: object) -> float | None:
    if isinstance(value_ms, bool) or not isinstance(value_ms, (int, float)):
        return None
    if not math.isfinite(value_ms) or value_ms < 0:
        return None
    return value_ms / 1000.0


def observe_turn_latency(latency_ms: Mapping[str, object]) -> None:
    """Record a bot reply's latency breakdown.

    Args:
        latency_ms: the reply record's ``latency_ms``: ``{stage: milliseconds}`` with stages from
            :data:`STAGES`. Unknown keys, missing stages and values that are not finite
            non-negative numbers (``None``, a negative media-clock difference) are skipped.
    """
    for stage, value_ms in latency_ms.items():
        child = _STAGE.get(stage)
        seconds = _seconds(value_ms)
        if child is not None and seconds is not None:
            child.observe(seconds)


def observe_recognition(seconds: float) -> None:
    """Record how long one utterance's recognition took (wall clock, queueing included), in seconds."""
    RECOGNITION.observe(seconds)


def observe_synthesis(seconds: float) -> None:
    """Record the synthesis engine time of one sentence, in seconds (wall clock)."""
    SYNTHESIS.observe(seconds)


def call_admitted() -> None:
    """A conversation webhook was answered with a stream."""
    CALLS_ADMITTED.inc()


def call_refused(reason: str) -> None:
    """A conversation webhook was refused: ``"max_calls"`` (or shutting down) or ``"overload"``."""
    CALLS_REFUSED.labels(reason).inc()


def track_engine_backlog(backlog_core_s: Callable[[], float]) -> None:
    """Report ``backlog_core_s()`` as the engine backlog gauge, read at each scrape."""
    ENGINE_BACKLOG.set_function(backlog_core_s)


def hub_blocked(seconds: float) -> None:
    """Count one gevent hub block of ``seconds`` (over the threshold) and keep the longest (``runtime.hub_monitor``)."""
    global _hub_block_max_s
    HUB_BLOCKS.inc()
    if seconds > _hub_block_max_s:
        _hub_block_max_s = seconds
        HUB_BLOCK_MAX.set(seconds)


def render() -> bytes:
    """The registry in Prometheus' text exposition format; serve it as :data:`CONTENT_TYPE_LATEST`."""
    return generate_latest(REGISTRY)


def authorized(authorization_header: str | None, token: str) -> bool:
    """Tell whether a scrape carries the token: always when ``token`` is empty, else only with
    ``Authorization: Bearer <token>`` (compared as bytes in constant time; a non-ASCII header is
    simply not the token). ``GET /metrics`` itself is guarded by ``handlers.auth`` (dashboard
    login or this token)."""
    from handlers.auth import bearer_matches

    return not token or bearer_matches(authorization_header, token)
