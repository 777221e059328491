"""What every call shares in one process: settings, speech engines, responder, call store."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from gevent.monkey import get_original

from audio.endpointing import EndpointingConfig
from core.call_tokens import CallTokens
from core.responder import Responder, is_speculative
from core.session import SessionConfig
from core.settings import Settings
from speech.recognition import Recognizer
from speech.synthesis import Synthesizer
from store.calls import CallStore


@dataclass
class Services:
    """Process-wide objects, created once by ``create_app`` (models load once per process)."""

    settings: Settings
    recognizer: Recognizer
    synthesizer: Synthesizer
    responder: Responder
    store: CallStore
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
    # A real lock: it is taken in threadpool threads (gevent's patched Lock is for greenlets).
    _count_lock: Any = field(default_factory=lambda: get_original("_thread", "allocate_lock")(), repr=False)

    def __post_init__(self) -> None:
        if self.call_tokens is None:  # keyed with the signing secrets; else STREAM_BEARER_TOKEN; else random
            s = self.settings
            secrets = [s.twilio_auth_token, s.signalwire_signing_key]
            bearer = s.stream_bearer_token
            self.call_tokens = CallTokens(secrets if any(secrets) else [bearer], bearer)

    @property
    def recognizer_busy(self) -> bool:
        """As many recognitions run as there are cores: speculative ones would only slow the others."""
        return self.recognitions_running >= (os.cpu_count() or 1)

    def recognize(self, pcm: bytes, sample_rate: int) -> str:
        """``recognizer.transcribe`` (blocking; runs in a threadpool thread), counted in ``recognitions_running``."""
        with self._count_lock:
            self.recognitions_running += 1
        try:
            return self.recognizer.transcribe(pcm, sample_rate)
        finally:
            with self._count_lock:
                self.recognitions_running -= 1

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
        )
