"""What every call shares in one process: settings, speech engines, responder, call store."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from gevent.monkey import get_original

from audio.endpointing import EndpointingConfig
from core.admission import Admission, Decision
from core.call_tokens import CallTokens
from core.responder import Responder, is_speculative
from core.session import SessionConfig
from core.settings import Settings
from core.turn_end import TurnEndConfig
from runtime.phrases import PhraseCache
from runtime.prompts import PromptCache
from speech.engine_queue import CancelToken, Priority
from speech.errors import RecognitionError
from speech.recognition import Recognizer
from speech.synthesis import Synthesizer
from store.calls import CallStore

TYPICAL_UTTERANCE_S = 4.0
"""A caller's sentence, for the cost of a turn in admission control, s (recognition cost is nearly flat in it)."""

TYPICAL_FIRST_SENTENCE_CHARS = 60
"""A reply's first sentence, for the cost of a turn (``core.sentences`` cuts first sentences at 60)."""


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class Services:
    """Process-wide objects, created once by ``create_app`` (models load once per process)."""

    settings: Settings
    recognizer: Recognizer
    synthesizer: Synthesizer
    responder: Responder
    store: CallStore
    outbound_responders: dict = field(default_factory=dict)  # OUTBOUND_RESPONDERS: name → responder, loaded at start
    fallback_synthesizer: Synthesizer | None = None  # the offline voice, when SYNTHESIZER is an online one
    twilio_client: Any = None  # twilio.rest.Client when TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set
    call_tokens: CallTokens | None = None  # per-call stream tokens; None: made from the settings' secrets
    active_calls: int = 0  # started streams (from their start message on): what MAX_CALLS bounds
    pending_streams: int = 0  # sockets connected and waiting for their start (MAX_PENDING_STREAMS)
    live_calls: dict = field(default_factory=lambda: {"conversation": set(), "fork": set()})  # mode → call SIDs streaming
    workers: set = field(default_factory=set)  # the CallWorkers of the sockets open (pending or started)
    draining: bool = False  # shutting down: no new calls
    # This process among those sharing the store (``instances`` table); stamped on its calls and folders.
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    filer: Any = None  # runtime.call_filer.CallFiler: files finished calls, retries while the store is down
    recognitions_running: int = 0  # engine calls in threads right now (a killed job's thread runs on)
    admission: Admission | None = None  # made from the settings: whether the engines can answer one more call
    phrases: PhraseCache | None = None  # wire audio of the fixed phrases (greeting, apology, …)
    prompts: PromptCache = field(default_factory=PromptCache)  # wire audio of the responders' Play files
    # A real lock: it is taken in threadpool threads (gevent's patched Lock is for greenlets).
    _count_lock: Any = field(default_factory=lambda: get_original("_thread", "allocate_lock")(), repr=False)

    def __post_init__(self) -> None:
        if self.call_tokens is None:  # keyed with the signing secrets; else STREAM_BEARER_TOKEN; else random
            s = self.settings
            secrets = [s.twilio_auth_token, s.signalwire_signing_key]
            bearer = s.stream_bearer_token
            self.call_tokens = CallTokens(secrets if any(secrets) else [bearer], bearer)
        if self.admission is None:
            # The budget is voice-to-voice, from the caller's last word: a first turn's reply waits
            # ENDPOINT_SILENCE_MS before it may play (speculation, which hides recognition in it, is
            # the first thing given up under load). With the end-of-turn policy recognition starts
            # earlier (ENDPOINT_COMPLETE_MS), but budgeting from there admitted a 5th caller in the
            # burst benchmark and its p95 went from 1.9 to 2.9 s (docs/capacity.md), so not.
            engine_budget_ms = max(0, self.settings.overload_reply_budget_ms - self.settings.endpoint_silence_ms)
            self.admission = Admission(cores=usable_cores(), budget_s=engine_budget_ms / 1000)
        if self.phrases is None:
            self.phrases = PhraseCache(self.fixed_phrases())

    @property
    def recognizer_busy(self) -> bool:
        """Too busy to start a speculative recognition (never for an engine on another machine,
        which costs this machine's cores nothing).

        Alone on the line, a call may speculate until as many recognitions run as there are cores.
        With other calls, only on an idle recognizer: a decode that has started cannot be taken
        back, so a speculative one (often 2-3 per sentence, one per pause between words) would hold
        an engine thread and half the cores that another caller's finished turn needs (measured in
        the burst benchmark: docs/benchmarks.md).
        """
        cost_core_s = getattr(self.recognizer, "cost_core_s", None)
        if cost_core_s is not None and not cost_core_s(TYPICAL_UTTERANCE_S):
            return False
        return self.recognitions_running >= (usable_cores() if self.active_calls <= 1 else 1)

    def recognize(self, pcm: bytes, sample_rate: int, priority: Priority = Priority.CRITICAL,
                  cancel: CancelToken | None = None) -> str:
        """``recognizer.transcribe`` (blocking; runs in a threadpool thread), counted in ``recognitions_running``.

        Returns ``""`` for a recognition cancelled before it ran: nobody waits for it any more (the
        caller went on, or hung up), and an exception here would only be printed by gevent's
        threadpool as a traceback (one per continuation under load).
        """
        with self._count_lock:
            self.recognitions_running += 1
        try:
            return self.recognizer.transcribe(pcm, sample_rate, priority=priority, cancel=cancel)
        except RecognitionError:
            if cancel is not None and cancel.cancelled:
                return ""
            raise
        finally:
            with self._count_lock:
                self.recognitions_running -= 1

    @property
    def backlog_core_s(self) -> float:
        """Estimated core-seconds of this machine's CPU the engines have queued and running."""
        engines = {id(e): e for e in (self.recognizer, self.synthesizer, self.fallback_synthesizer) if e is not None}
        return sum(getattr(engine, "backlog_core_s", 0.0) for engine in engines.values())

    @property
    def turn_core_s(self) -> float:
        """Core-seconds of this machine's CPU for one caller turn: its recognition and the first
        sentence of the reply (0 with engines on other machines)."""
        recognizer_cost = getattr(self.recognizer, "cost_core_s", None)
        synthesizer_cost = getattr(self.synthesizer, "cost_core_s", None)
        return (recognizer_cost(TYPICAL_UTTERANCE_S) if recognizer_cost else 0.0) + (
            synthesizer_cost("x" * TYPICAL_FIRST_SENTENCE_CHARS) if synthesizer_cost else 0.0)

    def admission_decision(self) -> Decision:
        """Whether one more conversation fits within ``OVERLOAD_REPLY_BUDGET_MS`` (always yes when it is 0)."""
        if not self.settings.overload_reply_budget_ms:
            return Decision(True, 0.0, 0, 0)
        return self.admission.decide(time.monotonic(), self.backlog_core_s, self.turn_core_s)

    def fixed_phrases(self) -> list[str]:
        """The texts every call may hear, whatever the caller says: cached once synthesized."""
        config = self.session_config()
        return [config.greeting, config.apology, config.idle_nudge, config.idle_goodbye, config.time_limit_goodbye,
                self.settings.busy_message]

    @property
    def offline_synthesizer(self) -> Synthesizer:
        """The offline voice: for apologies, and when the online voice fails."""
        return self.fallback_synthesizer or self.synthesizer

    def session_config(self) -> SessionConfig:
        """The per-call state machine's settings, from the environment settings."""
        s = self.settings
        return SessionConfig(
            endpointing=EndpointingConfig(
                start_ms=s.speech_start_ms,
                stop_ms=s.endpoint_silence_ms,
                pre_roll_ms=s.pre_roll_ms,
                max_utterance_ms=s.max_utterance_ms,
                pause_ms=s.speculation_pause_ms,
            ),
            greeting=s.greeting,
            outbound_chunk_ms=s.outbound_chunk_ms,
            dtmf_flush_ms=s.dtmf_flush_ms,
            max_call_ms=s.max_call_duration_s * 1000,
            apology=s.apology_message,
            idle_nudge_ms=s.idle_nudge_s * 1000,
            idle_hangup_ms=s.idle_hangup_s * 1000,
            speculative_reply=is_speculative(self.responder),
            barge_in_min_ms=s.barge_in_min_ms,
            backchannels=tuple(p.strip() for p in s.backchannels.split(",") if p.strip()),
            barge_in_words=tuple(p.strip() for p in s.barge_in_words.split(",") if p.strip()),
            turn_end=TurnEndConfig(s.endpoint_complete_ms, s.endpoint_silence_ms, s.endpoint_incomplete_ms)
            if s.endpoint_complete_ms else None,
        )
