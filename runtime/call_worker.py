"""The gevent runtime of one call: the only code that touches the socket and greenlets.

One ``CallWorker`` per WebSocket connection (flask-sock runs each connection in its own
greenlet). It reads Twilio's messages, feeds them to a sans-I/O session and carries out the
session's actions. The ``start`` message decides the session: ``CallSession`` for a
bidirectional conversation, ``ListenSession`` for a listen-only fork (``core.listen_session.is_fork``),
which never sends anything.

* a **writer** greenlet is the only sender on the socket (media, mark, clear, in order);
* recognition, the responder and synthesis run as jobs (greenlets) whose CPU work goes to
  the engines' thread pool (``runtime.blocking.run_engine``; file and database work has its
  own), so the hub keeps reading 50 media messages a second per call (faster-whisper and
  piper release the GIL while they compute, so their threads do not stall the hub);
* every engine call runs under a timeout; a failure is reported to the session, which never
  passes a failed transcription to the responder; the call record keeps a short category
  (``"recognition timeout"``…), the log the engine's own words;
* the socket is admitted at ``start`` only with a stream token for its call (``core.call_tokens``)
  and if the call is not streaming here already (a conversation may have one fork beside it);
  it counts against ``MAX_CALLS`` from then on; before, against ``MAX_PENDING_STREAMS``;
* wall-clock deadlines: no ``start`` within ``START_TIMEOUT_S`` closes the socket; no message for
  ``MEDIA_TIMEOUT_S`` after it ends the call like a drop; media stamped more than
  ``MAX_MEDIA_AHEAD_S`` ahead of the time since ``start`` is dropped (``core.media_clock``).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from dataclasses import replace
from functools import partial
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import gevent
from gevent.queue import Queue
from simple_websocket import ConnectionClosed
from twilio.base.exceptions import TwilioRestException

from audio.constants import FRAME_MS
from audio.errors import AudioFormatError
from audio.stream_format import MULAW_8K, StreamFormat, stream_format
from audio.echo import EchoCanceller
from audio.hybrid_vad import HybridVad
from audio.silero_vad import SileroVad
from audio.vad import WebRtcVad
from core import protocol
from core.call_tokens import TOKEN_PARAMETER
from core.actions import Cancel, EndCall, HangUp, RecordPlayed, Respond, Send, Speak, Transcribe
from core.listen_session import ListenSession, is_fork
from core.media_clock import is_too_far_ahead
from core.protocol import ProtocolError
from core.dial_targets import check_dial_target
from core.outbound import PARAMETER_PREFIX, OutboundOptions
from core.responder import CallContext, Goodbye, Play, ToolCall, Transfer, is_machine_responder, is_speculative
from core.sentences import Reply, reply_text, split_reply
from core.session import CallSession, SessionConfig
from core.stream_session import StreamSession
from runtime import metrics
from runtime.blocking import run_blocking, run_engine
from runtime.call_keeper import CallKeeper
from runtime.phrases import synthesize_for_stream
from runtime.prompts import PROMPT_LOAD_TIMEOUT_S
from runtime.reply_stream import END, is_reply_stream, open_reply_stream
from runtime.server import close_websocket
from runtime.services import Services
from runtime.twilio_rest import complete_call, explain_rest_error, redirect_to_dial
from speech.engine_queue import CancelToken, Priority

log = logging.getLogger(__name__)

MEDIA_PREFIX = '{"event": "media"'  # how protocol.media_message's JSON begins
YIELD_EVERY_MESSAGES = 20  # let other greenlets run between bursts of buffered messages
METRICS_EVERY_MESSAGES = 50  # media counted and lost frames reported about once a second per call
LOGGED_DROPS = 5  # bad messages of one kind logged in full per call; then every 1000th
END_OF_CALL_TRANSCRIBE_WAIT_S = 5.0  # let the last utterance reach the call record
ANSWER_POLL_S = 0.25  # how often an outbound call reads the store for its answering-machine detection result
ANSWER_GRACE_S = 5  # beyond MACHINE_DETECTION_TIMEOUT_S, a result that never comes counts as "unknown"
TRANSFER_STOP_WAIT_S = 10.0  # after redirecting the call, Twilio ends the stream; if it has not, hang up


def _as_reply(reply: Any) -> Reply | None:
    """A responder's (non-streaming) result as the session takes it: ``None``, text, a ``Play``, or a
    tuple of those (from a list or tuple; other values as their ``str``, as a non-text reply always was)."""
    if reply is None or isinstance(reply, (str, Play)):
        return reply
    if isinstance(reply, (list, tuple)):
        return tuple(r if r is None or isinstance(r, (str, Play)) else str(r) for r in reply)
    return str(reply)


class _CallLog(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"[{self.extra['call']}] {msg}", kwargs


def _iso_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class CallWorker:
    """Serve one media stream until ``stop`` or the socket closes.

    Args:
        ws: the flask-sock WebSocket (``simple_websocket.Server``).
        services: the process-wide engines, responder and call history.
        bearer_token: the call token the upgrade carried as ``Authorization: Bearer``
            (``handlers.signatures.call_token_in_bearer``), accepted like the ``callstream_token``
            parameter; ``""`` for none.
    """

    def __init__(self, ws, services: Services, bearer_token: str = "") -> None:
        self.ws = ws
        self.services = services
        self.bearer_token = bearer_token  # the upgrade's stream token, if any (SignalWire authBearerToken)
        self.session: StreamSession | None = None  # created by the start message: a CallSession or ListenSession
        self.messages_before_start = 0
        self.dropped: dict[str, int] = {}  # kind of bad message → how many were ignored
        self.keeper: CallKeeper | None = None  # recordings and the call store, from start on
        self.log = _CallLog(log, {"call": "connecting"})
        self._outbox: Queue = Queue()
        self._cancelled_replies: set[int] = set()
        self._jobs: dict[tuple[str, int], gevent.Greenlet] = {}
        self._speech_queues: dict[int, deque] = {}  # reply id → (index, sentence, offline_voice) left to synthesize
        self._ended = False
        self._mode: str | None = None  # "conversation" or "fork", for the metrics, once started
        self.stream_format: StreamFormat = MULAW_8K  # the wire audio, from the start message
        self._media_uncounted = 0
        self._frames_lost_reported = 0
        self._started_s: float | None = None  # monotonic time the start message arrived
        self._live: tuple[str, str] | None = None  # (mode, call SID) in services.live_calls
        self._admission_key: str | None = None  # this call in services.admission, once started
        self._caller_spoke = False  # a caller turn has been recognized (its reply settles the call in admission)
        self._speculating: dict[int, CancelToken] = {}  # turn id → token of its recognition not yet urgent
        self._pending = False  # counted in services.pending_streams
        self._counted = False  # counted in services.active_calls
        self._max_ahead_s: float = services.settings.max_media_ahead_s
        self.responder = services.responder  # an outbound call may name another (OUTBOUND_RESPONDERS)
        self.outbound: OutboundOptions | None = None  # the options of a call placed by POST /api/calls

    # -- main loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Read and handle messages until the call ends; always finalizes the call record."""
        services = self.services
        if services.pending_streams >= services.settings.max_pending_streams:
            self.log.warning("%d sockets already wait for their start (MAX_PENDING_STREAMS): closing this one",
                             services.pending_streams)
            close_websocket(self.ws)
            return
        services.pending_streams += 1
        self._pending = True
        services.workers.add(self)
        writer = gevent.spawn(self._write_loop)
        try:
            self._read_loop()
        finally:
            try:
                if self.session is not None:
                    self.session.close()
                    self._perform(self.session.actions_to_perform())
                self._finish(writer)
            finally:
                self._release()

    def _release(self) -> None:
        """Give back what this socket held: its pending or call slot and its live call SID."""
        services = self.services
        if self._pending:
            services.pending_streams -= 1
            self._pending = False
        if self._counted:
            services.active_calls -= 1
            self._counted = False
        if self._live is not None:
            services.live_calls[self._live[0]].discard(self._live[1])
            self._live = None
        if self._admission_key is not None:
            services.admission.ended(self._admission_key)
            self._admission_key = None
        services.workers.discard(self)
        if self._mode is not None:
            metrics.call_ended(self._mode)

    def _read_loop(self) -> None:
        received = 0
        settings = self.services.settings
        start_timeout_s, media_timeout_s = settings.start_timeout_s, settings.media_timeout_s
        deadline_s = time.monotonic() + start_timeout_s
        while not self._ended:
            timeout_s = deadline_s - time.monotonic()
            if timeout_s <= 0:
                if self.session is None:
                    self.log.warning("no start message within %s s: closing the socket", start_timeout_s)
                    self._hang_up("no start")
                else:
                    self.log.warning("no message for %s s: the stream is dead; ending the call", media_timeout_s)
                    self._abort()
                return
            try:
                text = self.ws.receive(timeout=timeout_s)
            except ConnectionClosed:
                self.log.info("socket closed by peer")
                return
            if text is None:  # the deadline passed (or an empty read): checked above
                continue
            now_s = time.monotonic()
            if self.session is not None:
                deadline_s = now_s + media_timeout_s
            received += 1
            if received % YIELD_EVERY_MESSAGES == 0:
                gevent.sleep(0)  # receive() does not yield while messages are buffered: a flood must not starve other calls
            if isinstance(text, bytes):
                self._drop("binary frame", f"{len(text)} bytes (Twilio sends text frames)")
                continue
            try:
                event = protocol.parse_message(text)
            except ProtocolError as exc:
                if self.session is None and exc.event == "start":  # nothing on this stream can be served
                    self.log.warning("refusing the stream: bad start message: %s; closing the socket", exc)
                    self._hang_up("bad start message")
                    return
                self._drop("bad message", f"{exc}: {text[:120]!r}")
                continue
            if self.session is None:
                if not isinstance(event, protocol.Start):
                    self._before_start(event)
                    continue
                refusal = self._admit(event)
                if refusal is not None:
                    self.log.warning("refusing stream %s of call %s: %s; closing the socket", event.stream_sid, event.call_sid, refusal)
                    self._hang_up("stream refused")
                    return
                deadline_s = now_s + media_timeout_s
                try:
                    self.session = self._new_session(event)
                except AudioFormatError as exc:  # nothing on this stream can be understood or answered
                    self.log.error("stream %s: unsupported media format %s: %s; closing the socket", event.stream_sid, event.media_format, exc)
                    self._hang_up("unsupported media format")
                    return
                self.session.receive_event(event)
                self._on_started(event)
                self._refuse_if_busy()
            else:
                sid = getattr(event, "stream_sid", None)
                if sid is not None and sid != self.session.stream_sid:
                    self._drop("message for another stream", f"streamSid {sid!r}, expected {self.session.stream_sid!r}")
                    continue
                if isinstance(event, protocol.Media):
                    elapsed_s = now_s - self._started_s
                    if is_too_far_ahead(event.timestamp_ms, len(event.payload) // self.stream_format.bytes_per_ms, elapsed_s,
                                        self._max_ahead_s):  # e.g. 27 h ahead: no silence is written up to it
                        self._drop("media stamped ahead of the clock", f"timestamp {event.timestamp_ms} ms, {elapsed_s:.1f} s after start")
                        continue
                    if self.keeper is not None and event.track in self.session.start.tracks:
                        self.keeper.add_audio(event.track, event.timestamp_ms, event.payload)  # as Twilio sent it
                    self._media_uncounted += 1
                    if self._media_uncounted >= METRICS_EVERY_MESSAGES:
                        self._report_media()
                self.session.receive_event(event)
            self._perform(self.session.actions_to_perform())

    def _report_media(self) -> None:
        """Add the media messages read and the frames lost since the last report to the metrics."""
        metrics.media_in(self._media_uncounted)
        self._media_uncounted = 0
        if self.session is not None:
            lost = self.session.frames_lost
            metrics.frames_lost(lost - self._frames_lost_reported)
            self._frames_lost_reported = lost

    def _drop(self, kind: str, detail: str) -> None:
        """Log a dropped message: the first few of each kind in full, then every thousandth."""
        count = self.dropped.get(kind, 0) + 1
        self.dropped[kind] = count
        if count <= LOGGED_DROPS or count % 1000 == 0:
            self.log.warning("ignoring a %s (#%d): %s", kind, count, detail)

    def _admit(self, start: protocol.Start) -> str | None:
        """Admit the stream of ``start``: ``None``, and it is counted as a call; else the reason to refuse it.

        Refused: no valid stream token for its call SID (``core.call_tokens``), or the call is
        already streaming here in the same mode (a second conversation, or a second fork).
        """
        services = self.services
        refusal = services.call_tokens.check(start.call_sid, start.custom_parameters, time.time(), self.bearer_token)
        if refusal is not None:
            return refusal
        mode = "fork" if is_fork(start) else "conversation"
        live = services.live_calls[mode]
        if start.call_sid in live:
            return f"call {start.call_sid} already has a {mode} stream"
        live.add(start.call_sid)
        self._live = (mode, start.call_sid)
        self._started_s = time.monotonic()
        self._max_ahead_s = services.settings.max_media_ahead_s
        services.pending_streams -= 1
        self._pending = False
        services.active_calls += 1
        self._counted = True
        # A fork's utterances have no reply to wait for: it counts as settled from the start.
        self._admission_key = start.call_sid if mode == "conversation" else f"fork:{start.call_sid}"
        services.admission.started(self._admission_key, self._started_s, services.turn_core_s, settled=mode == "fork")
        return None

    def end(self, reason: str) -> None:
        """End this call now, from outside (server shutdown): hang up; the record and recordings are saved."""
        self._hang_up(reason)

    def _refuse_if_busy(self) -> None:
        """Over ``MAX_CALLS`` (this call included), or shutting down: say the busy message and hang up;
        a fork just ends."""
        settings = self.services.settings
        if self.services.active_calls <= settings.max_calls and not self.services.draining:
            return
        self.log.warning("over MAX_CALLS=%d: refusing the call", settings.max_calls)
        self.session.hang_up(settings.busy_message, f"over MAX_CALLS={settings.max_calls}")  # a fork: at once

    def _hang_up(self, reason: str) -> None:
        """Close the socket: nothing follows ``</Connect>``, so Twilio ends the call (and logs 31921);
        with REST credentials, also complete the call through the API."""
        self.log.info("hanging up: %s", reason)
        self._ended = True
        gevent.spawn(close_websocket, self.ws)  # also unblocks the reader waiting in receive()
        client, start = self.services.twilio_client, self.session.start if self.session else None
        if client is not None and start is not None and start.call_sid:
            gevent.spawn(self._complete_call, client, start.call_sid)

    def _transfer(self, action: HangUp) -> None:
        """Redirect the call to ``<Dial>`` (its announcement has played); Twilio then ends the stream.
        If the REST API refuses, or the stream is still open ``TRANSFER_STOP_WAIT_S`` later, hang up."""
        target, call_sid, record = action.transfer_to, self.session.start.call_sid, self.session.record
        if record is not None:  # before the update: Twilio may end the stream (and this job) before it returns
            record.transferred_to = target
        try:
            status = run_blocking(redirect_to_dial, self.services.twilio_client, call_sid, target, timeout_s=10)
        except TwilioRestException as exc:
            self._transfer_failed(action, explain_rest_error(exc))
            return
        except Exception as exc:  # unreachable, timeout
            self._transfer_failed(action, f"{type(exc).__name__}: {exc}")
            return
        self.log.info("transferred to %s (call %s); waiting for Twilio to end the stream", target, status)
        gevent.sleep(TRANSFER_STOP_WAIT_S)
        if not self._ended:
            self._hang_up("the stream went on after the transfer")

    def _transfer_failed(self, action: HangUp, why: str) -> None:
        self.log.warning("transfer to %s failed: %s; hanging up", action.transfer_to, why)
        record = self.session.record
        if record is not None:
            record.transferred_to = None
            if record.turns and record.turns[-1].speaker == "bot":
                record.turns[-1].error = "transfer failed"
        self._hang_up(action.reason)

    def _complete_call(self, client, call_sid: str) -> None:
        try:
            self.log.info("REST hang-up: %s", run_blocking(complete_call, client, call_sid, timeout_s=10))
        except Exception as exc:  # the socket is closed anyway
            self.log.warning("REST hang-up failed: %s", exc)

    def _abort(self) -> None:
        """The socket is unusable: end the call without a close handshake (unblocks the reader)."""
        self._ended = True
        sock = getattr(self.ws, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        else:
            self.ws.close()

    def _words(self, text: str | None) -> str:
        """``text`` for the log: quoted with ``LOG_TRANSCRIPTS``, else only its length (words are personal data)."""
        if text is None:
            return "nothing"
        if self.services.settings.log_transcripts:
            return repr(text)
        return f"{len(text)} characters"

    def _before_start(self, event: protocol.Event) -> None:
        if isinstance(event, protocol.Connected):
            return
        self.messages_before_start += 1
        if self.messages_before_start == 1:
            self.log.warning("ignoring %s before start", type(event).__name__.lower())

    def _new_session(self, start: protocol.Start) -> StreamSession:
        """The session for this stream, analysing audio at its format's processing rate.

        Raises:
            AudioFormatError: ``start.mediaFormat`` is not μ-law 8 kHz or SignalWire's mono L16.
        """
        settings = self.services.settings
        media_format = start.media_format
        self.stream_format = stream_format(media_format.encoding, media_format.sample_rate, media_format.channels)
        rate = self.stream_format.processing_rate

        def make_vad():
            if settings.vad == "silero":
                return SileroVad(sample_rate=rate, frame_ms=FRAME_MS).is_speech
            if settings.vad == "hybrid":
                return HybridVad(mode=settings.vad_mode, sample_rate=rate, frame_ms=FRAME_MS).is_speech
            return WebRtcVad(mode=settings.vad_mode, sample_rate=rate, frame_ms=FRAME_MS).is_speech

        config = self.services.session_config()
        self.outbound = OutboundOptions.from_stream_parameters(start.custom_parameters)
        if self.outbound is not None:
            config = self._outbound_config(config, self.outbound)
        if is_fork(start):  # nothing to answer: no speculative recognition
            return ListenSession(replace(config.endpointing, pause_ms=0, sample_rate=rate), make_vad, self.stream_format)
        echo = EchoCanceller(rate, FRAME_MS) if settings.echo_cancellation else None
        return CallSession(replace(config, endpointing=replace(config.endpointing, sample_rate=rate)), make_vad(),
                           self.stream_format, echo)

    def _outbound_config(self, config: SessionConfig, options: OutboundOptions) -> SessionConfig:
        """The session settings of a placed call: its greeting, voicemail message and responder
        (only one of ``OUTBOUND_RESPONDERS``), and waiting for answering-machine detection."""
        settings = self.services.settings
        if options.responder is not None:
            responder = self.services.outbound_responders.get(options.responder)
            if responder is None:
                self.log.warning("responder %r is not one of OUTBOUND_RESPONDERS: using RESPONDER", options.responder[:80])
            self.responder = responder or self.responder
        return replace(
            config,
            greeting=config.greeting if options.greeting is None else options.greeting,
            voicemail_message=settings.voicemail_message if options.voicemail_message is None else options.voicemail_message,
            await_answer=options.machine_detection,
            answer_timeout_ms=(settings.machine_detection_timeout_s + ANSWER_GRACE_S) * 1000,
            machine_responder=is_machine_responder(self.responder),
            speculative_reply=is_speculative(self.responder),
        )

    def _await_answer(self, _: Any) -> None:
        """Wait for the answering-machine detection result: Twilio POSTs it to ``/amd-status``, in
        this process or another, which keeps it in the store; read it every ``ANSWER_POLL_S``."""
        call_sid = self.session.start.call_sid
        while self.session.awaiting_answer and not self._ended:
            try:
                answered_by = run_blocking(self.services.store.answered_by, call_sid, timeout_s=ANSWER_POLL_S * 10)
            except Exception as exc:  # the store is down: the session's own timeout greets in the end
                self.log.warning("reading the answering-machine detection result failed: %s", exc)
                answered_by = None
            if answered_by and self.session.awaiting_answer:
                self.session.receive_answered_by(answered_by)
                self._perform(self.session.actions_to_perform())
                return
            gevent.sleep(ANSWER_POLL_S)

    def _on_started(self, start: protocol.Start) -> None:
        self.log = _CallLog(log, {"call": start.call_sid or start.stream_sid})
        self._mode = self.session.mode
        metrics.call_started(self._mode)
        record = self.session.record
        if record is not None:
            record.started_at = _iso_now()
            record.direction = "inbound" if self.outbound is None else "outbound"
            self.keeper = CallKeeper(self.services, record, self.log, self.stream_format)
            try:
                self.keeper.start()
            except Exception:  # the call goes on without recording rather than not at all
                self.log.exception("could not start recording/saving the call")
        self.log.info(
            "%s stream %s started (tracks %s, params %s)",
            record.mode if record else "?", start.stream_sid, ",".join(start.tracks), sorted(start.custom_parameters),
        )
        if getattr(self.session, "awaiting_answer", False):
            self.log.info("outbound call: waiting for answering-machine detection before speaking")
            self._spawn(("answer", 0), self._await_answer, None)

    def _finish(self, writer: gevent.Greenlet) -> None:
        transcriptions = [g for (kind, _), g in self._jobs.items() if kind == "transcribe"]
        gevent.joinall(transcriptions, timeout=END_OF_CALL_TRANSCRIBE_WAIT_S)
        gevent.killall(list(self._jobs.values()), block=True, timeout=1.0)
        self._report_media()
        self._outbox.put(None)
        writer.join(timeout=2.0)
        writer.kill(block=False)
        if self.session is not None and self.session.record is not None:
            self.session.record.ended_at = _iso_now()
        if self.keeper is not None:
            self.keeper.finish()
        if self.ws.connected:
            close_websocket(self.ws)
        if self.dropped:
            self.log.warning("ignored messages: %s", ", ".join(f"{n} {kind}" for kind, n in self.dropped.items()))
        self.log.info("call finished")

    # -- actions ------------------------------------------------------------------------

    def _perform(self, actions: list) -> None:
        """Carry out session actions. Never yields, so session state stays consistent."""
        for action in actions:
            if isinstance(action, Send):
                self._outbox.put(action)
            elif isinstance(action, Transcribe):
                self._spawn(("transcribe", action.turn_id), self._transcribe, action)
            elif isinstance(action, Respond):
                self._spawn(("respond", action.turn_id), self._respond, action)
            elif isinstance(action, Speak):
                self._queue_speech(action)
            elif isinstance(action, Cancel):
                self._cancel(action)
            elif isinstance(action, EndCall):
                self._ended = True
            elif isinstance(action, HangUp) and action.transfer_to is not None:
                self._spawn(("transfer", 0), self._transfer, action)
            elif isinstance(action, HangUp):
                self._hang_up(action.reason)
            elif isinstance(action, RecordPlayed):
                if self.keeper is not None:
                    self.keeper.add_audio("outbound", action.start_ms, action.audio)
        if self.session is not None:
            for latency_ms in self.session.take_latency_reports():
                metrics.observe_turn_latency(latency_ms)
            if self._speculating:
                self._promote_confirmed()

    def _promote_confirmed(self) -> None:
        """A speculative recognition whose pause became the endpoint, or an utterance's that has now
        been silent for ENDPOINT_SILENCE_MS, has a caller waiting on it."""
        for turn_id, token in list(self._speculating.items()):
            if self.session.is_confirmed(turn_id):
                token.promote(Priority.CRITICAL)
                del self._speculating[turn_id]

    def _spawn(self, key: tuple[str, int], func: Callable, action: Any) -> None:
        job = gevent.spawn(func, action)
        self._jobs[key] = job
        job.link(lambda g: self._jobs.pop(key, None) if self._jobs.get(key) is g else None)

    def _cancel(self, action: Cancel) -> None:
        current = gevent.getcurrent()
        keys = [("respond", t) for t in action.turn_ids] + [("transcribe", t) for t in action.turn_ids]
        keys += [("speak", r) for r in action.reply_ids]
        self._cancelled_replies.update(action.reply_ids)
        for key in keys:
            job = self._jobs.get(key)
            if job is not None and job is not current:
                job.kill(block=False)

    # -- jobs ---------------------------------------------------------------------------

    def _transcribe(self, action: Transcribe) -> None:
        settings = self.services.settings
        if action.speculative and self.services.recognizer_busy:
            self.session.speculation_declined(action.turn_id)  # the endpoint will be transcribed as usual
            self._perform(self.session.actions_to_perform())
            return
        # A fork's transcript has no caller waiting on it; a speculative one may be thrown away; an
        # utterance that ended after ENDPOINT_COMPLETE_MS is urgent once the session says so.
        fork = self._mode == "fork"
        urgent = not action.speculative and not fork and self.session.is_confirmed(action.turn_id)
        priority = Priority.SPECULATIVE if action.speculative else Priority.CRITICAL if urgent else Priority.SOON
        cancel = CancelToken()
        if not fork and not urgent:
            self._speculating[action.turn_id] = cancel  # promoted once the session confirms the turn
        began = time.monotonic()
        try:
            text = run_engine(
                self.services.recognize, action.pcm, action.sample_rate, priority, cancel,
                timeout_s=settings.recognition_timeout_s,
            )
            error = None
        except gevent.Timeout:
            text, error = None, "recognition timeout"
            self.log.warning("turn %d: recognition timed out after %s s", action.turn_id, settings.recognition_timeout_s)
        except Exception as exc:  # engine failure: reported, never passed to the responder
            text, error = None, "recognition failed"
            self.log.warning("turn %d: recognition failed: %s: %s", action.turn_id, type(exc).__name__, exc)
        finally:  # a timeout, or the job killed (barge-in, the caller went on): not decoded if still queued
            cancel.cancel()
            self._speculating.pop(action.turn_id, None)
        elapsed_ms = (time.monotonic() - began) * 1000
        if error is None:
            metrics.observe_recognition(elapsed_ms / 1000)
        audio_ms = len(action.pcm) // 2 * 1000 // action.sample_rate
        self.log.info("turn %d: recognized %s from %d ms of audio in %.0f ms%s", action.turn_id, self._words(text), audio_ms,
                      elapsed_ms, " (speculative)" if action.speculative else "")
        self._caller_spoke = self._caller_spoke or bool(text)
        self.session.receive_transcript(action.turn_id, text, error, elapsed_ms=round(elapsed_ms))
        self._perform(self.session.actions_to_perform())

    def _respond(self, action: Respond) -> None:
        session, settings = self.session, self.services.settings
        start = session.start
        record = session.record
        context = CallContext(
            call_sid=start.call_sid if start else "",
            stream_sid=start.stream_sid if start else "",
            from_number=record.from_number if record else None,
            to_number=record.to_number if record else None,
            custom_parameters={k: v for k, v in start.custom_parameters.items()
                               if k != TOKEN_PARAMETER and not k.startswith(PARAMETER_PREFIX)} if start else {},
            dtmf=action.dtmf,
            history=tuple(t.to_json() for t in record.turns) + ((action.pending_turn.to_json(),) if action.pending_turn else ())
            if record else (),
            direction=record.direction if record else "inbound",
            answered_by=record.answered_by if record else None,
        )
        began = time.monotonic()
        try:
            reply = run_engine(self.responder, action.text, context, timeout_s=settings.responder_timeout_s)
            error = None
            if is_reply_stream(reply):
                self._stream_reply(action.turn_id, reply, began)
                return
        except gevent.Timeout:
            reply, error = None, "responder timeout"
            self.log.warning("turn %d: the responder timed out after %s s", action.turn_id, settings.responder_timeout_s)
        except Exception:  # a responder bug must not end the call
            reply, error = None, "responder failed"
            self.log.exception("turn %d: responder raised", action.turn_id)
        elapsed_ms = (time.monotonic() - began) * 1000
        if isinstance(reply, Transfer):
            self.log.info("turn %d: responder transfers the call to %s in %.0f ms", action.turn_id, reply.target, elapsed_ms)
            target, error = self._transfer_target(reply)
            session.receive_reply(action.turn_id, reply.announcement if target else None, error,
                                  elapsed_ms=round(elapsed_ms), transfer_to=target)
            self._perform(session.actions_to_perform())
            return
        reply = _as_reply(reply)
        self.log.info("turn %d: responder answered %s in %.0f ms", action.turn_id,
                      self._words(None if reply is None else reply_text(split_reply(reply))), elapsed_ms)
        hang_up = isinstance(reply, Goodbye) or isinstance(reply, tuple) and any(isinstance(r, Goodbye) for r in reply)
        session.receive_reply(action.turn_id, reply, error, elapsed_ms=round(elapsed_ms), hang_up=hang_up)
        self._perform(session.actions_to_perform())

    def _stream_reply(self, turn_id: int, pieces: Iterable, began: float) -> None:
        """Pass a streaming responder's pieces to the session as they come, waiting at most
        ``RESPONDER_TIMEOUT_S`` for each (``runtime.reply_stream``)."""
        session, timeout_s = self.session, self.services.settings.responder_timeout_s
        first_ms, hang_up, error, length = None, False, None, 0
        stream = open_reply_stream(pieces, self.responder)
        transfer_to = None
        try:
            while True:
                piece = stream.next_piece(timeout_s)
                if piece is END:
                    break
                if isinstance(piece, Transfer):  # its announcement ends the reply; what follows is not said
                    transfer_to, transfer_error = self._transfer_target(piece)
                    if transfer_error is not None:
                        raise ValueError(transfer_error)
                    if piece.announcement:
                        session.receive_reply_chunk(turn_id, " " + piece.announcement, elapsed_ms=first_ms)
                        self._perform(session.actions_to_perform())
                    break
                if isinstance(piece, ToolCall):  # for the record; the model's answer follows
                    self.log.info("turn %d: the model called %s (%s, %d ms)", turn_id, piece.name,
                                  "failed" if piece.error else "ok", piece.elapsed_ms)
                    session.receive_tool_call(turn_id, piece.transcript, "tool failed" if piece.error else None)
                    continue
                if not isinstance(piece, (str, Play)) or not piece:
                    continue
                hang_up = hang_up or isinstance(piece, Goodbye)
                if first_ms is None:
                    first_ms = round((time.monotonic() - began) * 1000)
                length += len(piece) if isinstance(piece, str) else 0
                session.receive_reply_chunk(turn_id, piece if isinstance(piece, Play) else str(piece), elapsed_ms=first_ms)
                self._perform(session.actions_to_perform())
        except TimeoutError:
            error = "responder timeout"
            self.log.warning("turn %d: no reply text from the streaming responder for %s s", turn_id, timeout_s)
        except Exception as exc:  # an HTTP error, a model server that went away, a responder bug
            error = "responder failed"
            self.log.warning("turn %d: streaming responder raised: %s: %s", turn_id, type(exc).__name__, exc)
        finally:  # also when a barge-in kills this job: the model stops generating
            stream.close()
        self.log.info("turn %d: responder streamed %d characters, first after %s ms, all in %.0f ms%s", turn_id, length,
                      first_ms, (time.monotonic() - began) * 1000, f" ({error})" if error else "")
        session.receive_reply_end(turn_id, error, hang_up=hang_up, transfer_to=transfer_to if error is None else None)
        self._perform(session.actions_to_perform())

    def _transfer_target(self, transfer: Transfer) -> tuple[str | None, str | None]:
        """``(target, None)`` for a transfer that can be made, else ``(None, error)`` (the caller
        hears the apology and the call goes on)."""
        if self.services.twilio_client is None:
            self.log.warning("a transfer needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN: not transferring")
            return None, "transfer unavailable"
        try:
            return check_dial_target(transfer.target), None
        except ValueError as exc:
            self.log.warning("not transferring: %s", exc)
            return None, "transfer target invalid"

    def _queue_speech(self, action: Speak) -> None:
        """Queue a reply's sentences; one job per reply synthesizes them in order (a streamed reply
        adds sentences while its job runs)."""
        items = [(action.first_index + i, sentence, action.offline_voice) for i, sentence in enumerate(action.sentences)]
        queue = self._speech_queues.get(action.reply_id)
        if queue is not None:  # the reply's job is running: it takes these next
            queue.extend(items)
            return
        self._speech_queues[action.reply_id] = deque(items)
        self._spawn(("speak", action.reply_id), self._speak, action.reply_id)

    def _speak(self, reply_id: int) -> None:
        queue = self._speech_queues[reply_id]
        try:
            while queue and reply_id not in self._cancelled_replies:
                index, sentence, offline_voice = queue.popleft()
                if isinstance(sentence, Play):
                    self._play_prompt(reply_id, index, sentence)  # a prompt that fails is left out: the reply goes on
                elif not self._speak_sentence(reply_id, index, sentence, offline_voice):
                    return
        finally:  # no yield between the empty queue and this: a new Speak starts a new job
            self._speech_queues.pop(reply_id, None)

    def _speak_sentence(self, reply_id: int, index: int, sentence: str, offline_voice: bool) -> bool:
        """Synthesize one sentence (or take a fixed phrase's from the cache) and hand it to the session;
        False if synthesis failed."""
        timeout_s = self.services.settings.synthesis_timeout_s
        offline = self.services.offline_synthesizer
        engines = [offline] if offline_voice else [self.services.synthesizer]
        if engines[0] is not offline:
            engines.append(offline)  # the online voice failed: the same sentence in the offline one
        # The first sentence is what the caller waits for; a later one is needed when the one
        # before it has played.
        priority = Priority.CRITICAL if index == 0 else Priority.SOON
        phrases = self.services.phrases
        began = time.monotonic()
        audio, error = phrases.get(engines[0].name, self.stream_format, sentence), None
        for engine in engines if audio is None else ():
            cancel = CancelToken()
            try:
                synthesize = partial(engine.synthesize, priority=priority, cancel=cancel)
                audio = run_engine(synthesize_for_stream, self.stream_format, synthesize, sentence, timeout_s=timeout_s)
                phrases.put(engine.name, self.stream_format, sentence, audio)
                break
            except gevent.Timeout:
                error = f"{engine.name} timed out after {timeout_s} s"
            except Exception as exc:
                error = f"{engine.name}: {type(exc).__name__}: {exc}"
            finally:
                cancel.cancel()
            self.log.warning("reply %d: synthesis failed (%s)%s", reply_id, error,
                             "; trying the offline voice" if engine is not engines[-1] else "")
        if audio is None:  # the record gets the category; the engine's words stay in the log
            self.session.receive_speech_failed(reply_id, "synthesis failed")
            self._perform(self.session.actions_to_perform())
            return False
        elapsed_ms = (time.monotonic() - began) * 1000
        metrics.observe_synthesis(elapsed_ms / 1000)
        self.log.info("reply %d: sentence %d, %d ms of audio synthesized in %.0f ms",
                      reply_id, index + 1, len(audio) // self.stream_format.bytes_per_ms, elapsed_ms)
        if index == 0 and self._caller_spoke and self._admission_key is not None:
            self.services.admission.answered(self._admission_key)  # the first turn's critical work is done
        self.session.receive_speech(reply_id, index, audio, elapsed_ms=round(elapsed_ms))
        self._perform(self.session.actions_to_perform())
        return True

    def _play_prompt(self, reply_id: int, index: int, play: Play) -> None:
        """Load a prompt's audio in the stream's format (once per file and format: ``services.prompts``)
        in a thread, and hand it to the session like a synthesized sentence."""
        began = time.monotonic()
        try:
            audio = run_blocking(self.services.prompts.load, play.path, self.stream_format, timeout_s=PROMPT_LOAD_TIMEOUT_S)
        except gevent.Timeout:
            error = f"{play.path}: not loaded within {PROMPT_LOAD_TIMEOUT_S} s"
        except Exception as exc:  # PromptError, or anything else: the call goes on
            error = f"{type(exc).__name__}: {exc}"
        else:
            elapsed_ms = (time.monotonic() - began) * 1000
            self.log.info("reply %d: item %d, prompt %s, %d ms of audio loaded in %.0f ms", reply_id, index + 1,
                          play.transcript, len(audio) // self.stream_format.bytes_per_ms, elapsed_ms)
            if index == 0 and self._caller_spoke and self._admission_key is not None:
                self.services.admission.answered(self._admission_key)
            self.session.receive_speech(reply_id, index, audio, elapsed_ms=round(elapsed_ms))
            self._perform(self.session.actions_to_perform())
            return
        self.log.warning("reply %d: prompt failed: %s", reply_id, error)
        self.session.receive_prompt_failed(reply_id, index, error)
        self._perform(self.session.actions_to_perform())

    def _write_loop(self) -> None:
        """The only sender: messages leave in the order the session produced them."""
        while True:
            item = self._outbox.get()
            if item is None:
                return
            if item.reply_id is not None and item.reply_id in self._cancelled_replies:
                continue  # barge-in: drop reply audio not yet sent
            try:
                with gevent.Timeout(self.services.settings.send_timeout_s):
                    self.ws.send(item.text)
                if item.reply_id is not None and item.text.startswith(MEDIA_PREFIX):
                    metrics.media_out()
            except gevent.Timeout:
                self.log.warning("a send took over %s s: the socket is half-dead; ending the call", self.services.settings.send_timeout_s)
                self._abort()
                return
            except ConnectionClosed:
                return
            except OSError as exc:
                self.log.warning("send failed: %s", exc)
                self._abort()
                return

