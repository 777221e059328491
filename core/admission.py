"""Admission control: answer a new call only if the engines can still answer it within the reply budget.

Pure: no clock, no engines. The webhook asks ``Admission.decide`` with the engines' backlog (queued
work in core-seconds, from ``speech.engine_queue``), the cost of one turn on this machine and the
time ``now_s`` (any monotonic clock, in seconds); the call worker reports when a call's stream
starts, when its first turn has been answered and when it ends.

The model. A conversation's first turn is the dangerous one: callers who arrive together hear the
same greeting and speak their first sentence at about the same time. So each admitted call whose
first turn has not been answered yet (*fresh*) brings one turn of work (``turn_core_s``) that will
reach the engines about as long after its admission as the new call's will after now. That work
is a fluid queue: each admission adds a turn, and the engines drain it at the cores the settled
calls leave free. Since the callers' sentences differ in length, turns of calls admitted within
``TURN_JITTER_S`` of each other are taken to land together (the queue drains only up to
``TURN_JITTER_S`` before now). The new caller's first reply then waits about::

    wait_s = (backlog_core_s + fresh_core_s + turn_core_s) / free_cores
    free_cores = cores − settled × turn_core_s / turn_interval_s

where ``fresh_core_s`` is what is left of the fresh calls' turns in that queue, and a call past its
first turn (*settled*) uses on average ``turn_core_s / turn_interval_s`` of a core. The call is
refused when ``wait_s`` exceeds the budget (``OVERLOAD_REPLY_BUDGET_MS``). Engines on other
machines (``RECOGNIZER=openai``, ``google``) cost no core-seconds here, so with them only
``MAX_CALLS`` limits calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TURN_INTERVAL_S = 10.0
"""A settled conversation's typical time between caller turns (a sentence, the reply, a pause), s."""

TURN_JITTER_S = 1.0
"""First turns of calls admitted this close together are taken to reach the engines together, s."""

RESERVATION_S = 30.0
"""An admitted call whose stream has not started within this time no longer holds its place, s."""

FRESH_MAX_S = 60.0
"""A call counts as fresh until its first turn is answered, or this long after its admission (a silent caller), s."""


@dataclass(frozen=True)
class Decision:
    """The answer for one new call.

    Attributes:
        admit: True to answer the call.
        predicted_wait_s: the model's wait for the new call's first reply, s (``inf`` when the
            settled calls alone use every core).
        fresh: calls admitted whose first turn has not been answered.
        settled: calls past their first turn.
    """

    admit: bool
    predicted_wait_s: float
    fresh: int
    settled: int


@dataclass
class _Fresh:
    admitted_s: float
    turn_core_s: float
    started: bool = False


@dataclass
class Admission:
    """The calls this process has admitted, and whether it can take one more.

    Args:
        cores: CPU cores the engines of this process may use (its share of the machine).
        budget_s: the longest predicted wait for a first reply at which a call is still admitted, s.
        turn_interval_s: see ``TURN_INTERVAL_S``.
        turn_jitter_s: see ``TURN_JITTER_S``.

    Calls are keyed by call SID (a webhook's ``CallSid``, a stream's ``start.callSid``); a key this
    object has not seen is ignored by ``answered``/``ended``. Not thread-safe: the server calls it
    from the gevent hub only.
    """

    cores: float
    budget_s: float
    turn_interval_s: float = TURN_INTERVAL_S
    turn_jitter_s: float = TURN_JITTER_S
    _fresh: dict[str, _Fresh] = field(default_factory=dict)  # call SID → its admission, until answered
    _settled: set[str] = field(default_factory=set)

    def decide(self, now_s: float, backlog_core_s: float, turn_core_s: float) -> Decision:
        """Whether a new call fits within the budget; does not admit it (``reserve`` does).

        Args:
            now_s: the current time, s (the same clock as every other call here).
            backlog_core_s: core-seconds the engines have queued and running now.
            turn_core_s: core-seconds of one caller turn (its recognition and the first sentence
                of its reply) on this machine; 0 for engines on other machines.
        """
        self._expire(now_s)
        fresh, settled = len(self._fresh), len(self._settled)
        if turn_core_s <= 0:
            return Decision(True, 0.0, fresh, settled)
        free_cores = self.cores - settled * turn_core_s / self.turn_interval_s
        if free_cores <= 0:
            return Decision(False, float("inf"), fresh, settled)
        ahead_core_s = max(0.0, backlog_core_s) + self._fresh_core_s(now_s, free_cores)
        wait_s = (ahead_core_s + turn_core_s) / free_cores
        # No other call and no work: refusing would serve nobody, even on a machine too slow for the budget.
        idle = ahead_core_s == 0 and fresh == 0 and settled == 0
        return Decision(wait_s <= self.budget_s or idle, wait_s, fresh, settled)

    def reserve(self, call_sid: str, now_s: float, turn_core_s: float) -> None:
        """The webhook admitted ``call_sid``, whose first turn will cost ``turn_core_s``: it is fresh from now."""
        self._expire(now_s)  # reservations whose stream never came go, even if no decision is asked for
        if call_sid not in self._fresh and call_sid not in self._settled:
            self._fresh[call_sid] = _Fresh(now_s, turn_core_s)

    def started(self, call_sid: str, now_s: float, turn_core_s: float, *, settled: bool = False) -> None:
        """``call_sid``'s stream started. A call admitted by its webhook keeps its place; one without
        (a TwiML Bin's stream) becomes fresh now. ``settled``: a stream with no reply to wait for (a
        listen-only fork) counts as settled from the start."""
        if settled:
            self._fresh.pop(call_sid, None)
            self._settled.add(call_sid)
            return
        entry = self._fresh.get(call_sid)
        if entry is not None:
            entry.started = True
        elif call_sid not in self._settled:
            self._fresh[call_sid] = _Fresh(now_s, turn_core_s, started=True)

    def answered(self, call_sid: str) -> None:
        """``call_sid``'s first caller turn has been answered: from now on its turns are spread out."""
        if self._fresh.pop(call_sid, None) is not None:
            self._settled.add(call_sid)

    def ended(self, call_sid: str) -> None:
        """``call_sid`` ended: it no longer counts."""
        self._fresh.pop(call_sid, None)
        self._settled.discard(call_sid)

    def _fresh_core_s(self, now_s: float, free_cores: float) -> float:
        """What is left of the fresh calls' first turns in the fluid queue: it drains at
        ``free_cores`` from each admission on, up to ``turn_jitter_s`` before ``now_s``."""
        left_core_s, clock_s = 0.0, None
        drain_until_s = now_s - self.turn_jitter_s
        for entry in sorted(self._fresh.values(), key=lambda e: e.admitted_s):
            point_s = min(entry.admitted_s, drain_until_s)
            if clock_s is not None and point_s > clock_s:
                left_core_s = max(0.0, left_core_s - free_cores * (point_s - clock_s))
            clock_s = point_s if clock_s is None else max(clock_s, point_s)
            left_core_s += entry.turn_core_s
        if clock_s is not None and drain_until_s > clock_s:
            left_core_s = max(0.0, left_core_s - free_cores * (drain_until_s - clock_s))
        return left_core_s

    def _expire(self, now_s: float) -> None:
        for call_sid, entry in list(self._fresh.items()):
            age_s = now_s - entry.admitted_s
            if not entry.started and age_s > RESERVATION_S:
                del self._fresh[call_sid]  # its stream never came
            elif age_s > FRESH_MAX_S:
                del self._fresh[call_sid]
                self._settled.add(call_sid)
