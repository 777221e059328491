"""Collect a caller's key presses (``dtmf`` messages) into bursts for the responder.

Sans-I/O: times are media-clock milliseconds passed in by the session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_DTMF_KEYS = 64
"""Keys collected before they reach the responder; more in the same burst are dropped (logged once),
so a flood of ``dtmf`` messages costs constant memory and time per message."""


@dataclass(frozen=True)
class DtmfBurst:
    """Keys pressed without a pause: ``digits`` (``0-9``, ``*``, ``#``), pressed from media time
    ``start_ms`` to ``end_ms`` (the last key)."""

    digits: str
    start_ms: int
    end_ms: int


class DtmfCollector:
    """Collect keys until ``#``, or until ``flush_ms`` of media time passes without a key.

    Args:
        flush_ms: the burst ends this long after its last key; 0 or less ends it at every key.
        max_keys: keys kept per burst; further keys are counted in ``dropped_keys`` and lost.
    """

    def __init__(self, flush_ms: int, max_keys: int = MAX_DTMF_KEYS) -> None:
        self.flush_ms = flush_ms
        self.max_keys = max_keys
        self.digits = ""  # the keys of the burst so far
        self.dropped_keys = 0  # over the whole call; the first drop is logged
        self._start_ms = 0
        self._last_ms = 0

    def press(self, digit: str, now_ms: int) -> DtmfBurst | None:
        """Add one key pressed at ``now_ms``; return the burst if it ends with this key (``#``, or
        ``flush_ms`` <= 0), else ``None``."""
        if not self.digits:
            self._start_ms = now_ms
        if len(self.digits) >= self.max_keys:
            self.dropped_keys += 1
            if self.dropped_keys == 1:
                log.warning("more than %d keys pressed without a pause: further keys are dropped", self.max_keys)
            return None
        self.digits += digit
        self._last_ms = now_ms
        if digit == "#" or self.flush_ms <= 0:
            return self._take()
        return None

    def poll(self, now_ms: int) -> DtmfBurst | None:
        """Return the burst if ``flush_ms`` have passed since its last key at media time ``now_ms``."""
        if self.digits and now_ms - self._last_ms >= self.flush_ms:
            return self._take()
        return None

    def discard(self) -> None:
        """Forget the keys of the burst so far (the call is hanging up)."""
        self.digits = ""

    def _take(self) -> DtmfBurst:
        burst = DtmfBurst(self.digits, self._start_ms, self._last_ms)
        self.digits = ""
        return burst
