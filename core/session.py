"""The per-call state machine of a bidirectional (``<Connect><Stream>``) conversation.

Sans-I/O, shaped like ``websockets.Protocol``: the worker feeds inputs and then drains
``actions_to_perform()``; the session never touches a socket, a greenlet or a clock. Time is
the stream's media clock: the ``timestamp`` of Twilio's inbound media (protocol.md §7). Its
lifecycle (``phase``: awaiting start, streaming, hanging up, stopped) is shared with the
listen-only ``core.listen_session.ListenSession`` (``core.stream_session``); bot audio at
Twilio is tracked by ``core.playout``, key presses by ``core.dtmf``, and the inputs held for a
speculative turn by ``core.deferred``. The actions are defined in ``core.actions``.

Inputs:
    ``receive_event(event)``         every parsed Twilio message;
    ``receive_transcript(turn_id, text, error)``  the recognizer's result;
    ``receive_reply(turn_id, text, error)``       the responder's result;
    ``receive_reply_chunk(turn_id, text)``, ``receive_reply_end(turn_id, error)``
                                     a streaming responder's result, piece by piece;
    ``receive_speech(reply_id, index, audio)``    one synthesized sentence (or loaded prompt), in the stream's wire format;
    ``receive_speech_failed(reply_id, error)``, ``receive_prompt_failed(reply_id, index, error)``;
    ``close()``                      the socket ended (with or without ``stop``).
Outputs (actions): ``Send`` a message, ``Transcribe`` an utterance, ``Respond`` to a turn,
``Speak`` a reply, ``Cancel`` a turn's pending work, ``RecordPlayed`` bot audio, ``HangUp``
(close the socket: nothing follows ``</Connect>``, so Twilio ends the call), ``EndCall``.
``hang_up(text)`` says goodbye and hangs up once it has played (the caller cannot cut it off).

Turn-taking rules:
* An utterance ends after ``stop_ms`` of non-speech (``audio.endpointing``; with ``turn_end``,
  after ``turn_end.complete_ms``); it is transcribed, and a non-empty transcript goes to the
  responder. An empty transcript or a recognition error never reaches the responder.
* **End of turn** (``turn_end``): the reply's audio is held, and a responder that is not
  speculative is not asked, until the caller has been silent for the turn's required silence
  (``core.turn_end``: from its transcript and the caller's pauses) and is not starting to
  speak; what the caller says before that continues the turn.
* **Continuation:** if the caller starts speaking again before any audio of the reply to
  their previous utterance was sent, that reply is abandoned and the two utterances are
  transcribed together as one turn (no answer to half a sentence). The start is judged by the
  first voiced frame: a reply that went out while the caller's voice was already back (their
  start is decided ``endpointing.start_ms`` later) is retracted with a ``clear`` and leaves the
  record (``_retract_answer``).
* **Barge-in:** if the caller starts speaking (or presses a key) while reply audio is still
  queued at Twilio (marks not yet echoed) or being synthesized, the session sends ``clear``,
  cancels the reply and treats its pending marks as cleared (T-WS "clear": Twilio echoes
  them; those late echoes are ignored like any unknown mark name).
* A mark follows each synthesized sentence; the bot is speaking from its first reply audio
  until the last mark echo.
* **Audio prompts:** a reply's items are its sentences and its prompts (``core.responder.Play``,
  ``core.sentences.split_reply``); the worker loads a prompt's audio instead of synthesizing it,
  and from then on it is one more sentence (its mark, barge-in, ``heard``, the recording). The
  record shows it as ``[played hold.wav]``; a prompt that fails to load is left out and the reply
  goes on (``"prompt failed"`` on the bot turn).
* **Streaming replies:** a responder's pieces are cut into sentences as they arrive
  (``core.sentences.SentenceStream``); each sentence is spoken as soon as it is complete, so
  the first plays while the rest is still being generated. A barge-in also cancels the rest
  of the stream. What the caller heard of an interrupted reply (the sentences whose mark was
  echoed) is kept as ``heard`` on its turn, for the responder's history.
* **Speculation** (``endpointing.pause_ms`` > 0): when the caller pauses for ``pause_ms``,
  the utterance so far is transcribed at once as a *tentative* turn. If the pause becomes
  the endpoint with the same audio, the turn is confirmed and its transcript (ready or on
  its way) is used; if the caller speaks on, it is dropped. With ``speculative_reply``
  the responder and synthesis run ahead too, but nothing is recorded, sent or said until
  the endpoint confirms the turn (LiveKit Agents calls this preemptive generation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Callable

from audio.echo import EchoCanceller
from audio.endpointing import Endpointer, EndpointingConfig, SpeechPaused, SpeechStarted, Utterance, UtteranceEnded
from audio.framing import FrameAssembler
from audio.stream_format import MULAW_8K, StreamFormat
from core import protocol
from core.backchannel import DEFAULT_BACKCHANNELS, DEFAULT_STOP_WORDS, has_stop_word, is_backchannel
from core.actions import Action, Cancel, EndCall, HangUp, RecordPlayed, Respond, Send, Speak, Transcribe
from core.deferred import (
    DeferredInput,
    DeferredPromptFailure,
    DeferredReply,
    DeferredReplyEnd,
    DeferredSpeech,
    DeferredSpeechFailure,
    DeferredTranscript,
    replay_order,
)
from core.dtmf import MAX_DTMF_KEYS, DtmfBurst, DtmfCollector
from core.playout import Playout
from core.protocol import Dtmf, Event, Mark, Media, Start
from core.records import Turn
from core.responder import Play
from core.sentences import Reply, ReplyItem, SentenceStream, item_text, reply_text, split_reply, split_sentences
from core.stream_session import Phase, StreamSession
from core.turn_end import TurnEndConfig, TurnEndPolicy

__all__ = [
    "MAX_DTMF_KEYS", "Action", "CallSession", "Cancel", "EndCall", "HangUp", "Phase", "RecordPlayed", "Respond",
    "SessionConfig", "Send", "Speak", "Transcribe",
]

log = logging.getLogger(__name__)

SHORT_OVER_BOT_JOIN_MS = 1200
"""Words over the bot too short to stop it ("one") start the caller's turn if they go on within
this long (media time, from the end of the words to the next speech), ms: the unfinished-turn
silence of ``core.turn_end``."""


# --- configuration and internal state ----------------------------------------------------


@dataclass(frozen=True)
class SessionConfig:
    """Per-call behaviour.

    Attributes:
        endpointing: utterance detection settings (media-clock milliseconds).
        greeting: text spoken when the stream starts; ``""`` for none.
        outbound_chunk_ms: audio per outbound media message, in ms (20 ms = 160 bytes).
        dtmf_flush_ms: digits are passed to the responder this long (media time) after the
            last key press, or at once on ``#``; 0 passes every digit at once.
        max_call_ms: media time after which the call says ``time_limit_goodbye`` and hangs
            up; 0 for no limit.
        time_limit_goodbye: what the caller hears when the time limit is reached.
        apology: said in the offline voice when recognition or the responder fails.
        idle_nudge_ms: caller silence (media time, while the bot is quiet) after which
            ``idle_nudge`` is said once; 0 for never.
        idle_hangup_ms: caller silence after which ``idle_goodbye`` is said and the call
            ends; 0 for never.
        speculative_reply: with speculation on (``endpointing.pause_ms``), also ask the
            responder and synthesize the reply during the pause; it is sent only if the
            pause becomes the endpoint.
        barge_in_min_ms: caller speech over the bot (first to last voiced frame, added up over
            the parts of an utterance that goes on after a pause) that stops it unless its
            transcript is only ``backchannels``; a shorter utterance stops it only once its
            transcript holds one of ``barge_in_words``, and is otherwise dropped (unless the
            caller goes on within ``SHORT_OVER_BOT_JOIN_MS``: then it starts their turn). Until
            then the bot's audio plays on (no ``clear``). 0: any speech start stops the bot at once.
        backchannels: words and phrases a caller says over the bot without taking the turn
            (``core.backchannel``); such an utterance is dropped, unanswered.
        barge_in_words: words and phrases that stop the bot however short the utterance
            ("no", "wait"; ``core.backchannel.DEFAULT_STOP_WORDS``).
        turn_end: end-of-turn silences (``core.turn_end``): utterances end after
            ``turn_end.complete_ms`` (instead of ``endpointing.stop_ms``) and each reply's audio
            is held until the caller has been silent as long as its transcript and their pauses
            require; if they go on first, it is one turn. None: every utterance ends after
            ``endpointing.stop_ms`` and is answered as soon as its reply is ready.
        await_answer: an outbound call with answering-machine detection: from ``start`` the bot
            says nothing, and what the called party says is recorded but not answered, until
            ``receive_answered_by`` (or ``answer_timeout_ms`` of media time: taken as
            ``unknown``); so the bot never talks over a voicemail greeting.
        answer_timeout_ms: see ``await_answer``.
        voicemail_message: said to an answering machine after its beep, then the call ends
            (``""``: hang up without a message).
        machine_responder: the responder decides what a machine hears: it is asked with
            ``text=""`` (``CallContext.answered_by`` tells who answered) instead.
    """

    endpointing: EndpointingConfig = field(default_factory=EndpointingConfig)
    greeting: str = ""
    outbound_chunk_ms: int = 20
    dtmf_flush_ms: int = 1500
    max_call_ms: int = 0
    time_limit_goodbye: str = "We have reached the time limit for this call. Goodbye."
    apology: str = "Sorry, something went wrong on my side. Could you say that again?"
    idle_nudge_ms: int = 0
    idle_nudge: str = "Are you still there?"
    idle_hangup_ms: int = 0
    idle_goodbye: str = "I have not heard anything for a while, so I will hang up now. Goodbye."
    speculative_reply: bool = False
    barge_in_min_ms: int = 0
    backchannels: tuple[str, ...] = DEFAULT_BACKCHANNELS
    barge_in_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    turn_end: TurnEndConfig | None = None
    await_answer: bool = False
    answer_timeout_ms: int = 35_000
    voicemail_message: str = ""
    machine_responder: bool = False


MACHINE_ANSWERS = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other")
"""Twilio's ``AnsweredBy`` values for an answering machine (answering-machine detection, webhook
parameters); ``fax`` is not a machine to speak to, and ``human``/``unknown`` are greeted."""


@dataclass
class _CallerTurn:
    turn_id: int
    pcm: bytes
    start_ms: int  # first voiced frame
    end_ms: int  # end of last voiced frame
    detected_ms: int  # media time the endpoint was decided
    speech_ms: int = 0  # first to last voiced frame, summed over the utterances it merges
    record: Turn | None = None  # set once a transcript is recorded
    latency_ms: dict[str, int] = field(default_factory=dict)  # per stage, filled as the turn goes
    tentative: bool = False  # speculative: the endpoint is not decided yet
    deferred: list[DeferredInput] = field(default_factory=list)  # inputs held while tentative
    responding: bool = False  # a Respond was issued while tentative
    sentence_stream: SentenceStream | None = None  # a streaming reply being cut into sentences
    reply_id: int | None = None  # the streaming reply's id, once its first sentence is complete
    over_bot: bool = False  # spoken over the bot, too short to stop it: its transcript decides
    required_silence_ms: int = 0  # silence after end_ms before its reply may play (core.turn_end)
    respond_held: str | None = None  # transcript for a responder with side effects, asked once that silence is reached


@dataclass
class _Reply:
    reply_id: int
    turn_id: int | None  # None for the greeting
    text: str  # for the record: prompts as their transcript, failed ones left out
    sentences: list[ReplyItem]  # sentences and prompts, each sent with its own mark
    sentences_sent: int = 0
    complete: bool = True  # False while a streaming responder may add sentences
    error: str | None = None  # recorded on the bot turn (a streaming responder failed mid-reply)
    record: Turn | None = None
    cancelled: bool = False
    hang_up: bool = False  # a goodbye: hang up once it has played
    turn_end_ms: int | None = None  # end of the caller's turn it answers
    skipped: set[int] = field(default_factory=set)  # indices of prompts that failed to load


class CallSession(StreamSession):
    """State machine of one bidirectional call; see the module docstring.

    Args:
        config: per-call settings; ``config.endpointing.sample_rate`` must be
            ``stream_format.processing_rate``.
        is_speech: voice activity decision for one frame of PCM16 mono at that rate
            (``config.endpointing.frame_ms`` long).
        stream_format: the wire audio of the stream, both ways: Twilio's μ-law 8 kHz, or
            SignalWire's L16 (``audio.stream_format``).
        echo: removes the bot's own voice from the caller's frames before the VAD and the
            recognizer hear them (``audio.echo``, at the endpointing rate); None for none.

    Raises:
        ValueError: the endpointing rate does not match the stream format or the echo canceller.
    """

    mode = "conversation"

    def __init__(self, config: SessionConfig, is_speech: Callable[[bytes], bool], stream_format: StreamFormat = MULAW_8K,
                 echo: EchoCanceller | None = None) -> None:
        if config.endpointing.sample_rate != stream_format.processing_rate:
            raise ValueError(f"endpointing at {config.endpointing.sample_rate} Hz, but {stream_format} is analysed at {stream_format.processing_rate} Hz")
        if echo is not None and (echo.sample_rate, echo.frame_ms) != (config.endpointing.sample_rate, config.endpointing.frame_ms):
            raise ValueError(f"echo canceller for {echo.frame_ms} ms frames at {echo.sample_rate} Hz, endpointing "
                             f"{config.endpointing.frame_ms} ms at {config.endpointing.sample_rate} Hz")
        super().__init__()
        self._echo = echo
        self.config = config
        self.stream_format = stream_format
        self._bytes_per_ms = stream_format.bytes_per_ms
        self.now_ms = 0  # media clock: end of the latest inbound frame
        self.media_before_start = 0
        self._frames = FrameAssembler(frame_ms=config.endpointing.frame_ms, stream_format=stream_format)
        endpointing = config.endpointing
        self._turn_end: TurnEndPolicy | None = None
        if config.turn_end is not None:
            endpointing = replace(endpointing, stop_ms=config.turn_end.complete_ms)
            self._turn_end = TurnEndPolicy(config.turn_end)
        self._endpointer = Endpointer(endpointing, is_speech)
        self._held: list[DeferredSpeech | DeferredPromptFailure] = []  # reply audio waiting for the turn's silence
        self._playout = Playout(stream_format.bytes_per_ms)
        self._dtmf = DtmfCollector(config.dtmf_flush_ms)
        self._next_turn_id = 1
        self._next_reply_id = 1
        self._open_turn: _CallerTurn | None = None  # latest caller turn not yet answered with audio
        self._continuation: _CallerTurn | None = None  # turn the current utterance continues
        self._tentative: _CallerTurn | None = None  # speculative turn of the current pause
        self._barge_in_pending = False  # the caller started speaking over the bot; not confirmed yet
        self._short_over_bot: _CallerTurn | None = None  # the last words over the bot too short to stop it
        self._last_answer: tuple[_CallerTurn, _Reply] | None = None  # the latest spoken turn whose reply has started
        self._turns: dict[int, _CallerTurn] = {}
        self._replies: dict[int, _Reply] = {}
        self._hang_up_reason: str | None = None
        self._transfer_to: str | None = None
        self._awaiting_answer = False  # an outbound call's answering-machine detection has not answered
        self._first_media_ms: int | None = None
        self._last_activity_ms = 0  # media time of the last caller speech, key press or bot audio
        self._nudged = False
        self._latency_reports: list[dict[str, int]] = []

    # -- outputs --------------------------------------------------------------------

    def take_latency_reports(self) -> list[dict[str, int]]:
        """Return and forget the ``latency_ms`` of replies finished since the last call: each
        answered turn's stages in ms, reported once, when its first sentence was heard (mark
        echo) or the reply ended without it (barge-in, stop)."""
        if not self._latency_reports:
            return self._latency_reports  # empty: called after every media message, so no new list
        reports, self._latency_reports = self._latency_reports, []
        return reports

    @property
    def hanging_up(self) -> str | None:
        """The reason given to ``hang_up()``, once it was called (kept after the stream stops)."""
        return self._hang_up_reason

    @property
    def transfer_to(self) -> str | None:
        """The target given to ``transfer()`` (or a reply with ``transfer_to``), once it was."""
        return self._transfer_to

    @property
    def awaiting_answer(self) -> bool:
        """True while an outbound call waits for answering-machine detection (``config.await_answer``)."""
        return self._awaiting_answer

    @property
    def dtmf_dropped(self) -> int:
        """Keys dropped because ``MAX_DTMF_KEYS`` were waiting."""
        return self._dtmf.dropped_keys

    @property
    def frames_lost(self) -> int:
        """Inbound frames missing from the media clock so far (filled with silence)."""
        return self._frames.filled_frames

    @property
    def bot_speaking(self) -> bool:
        """True from a reply's first audio until its last mark echo (or a barge-in)."""
        return self._playout.has_pending or any(r.record is not None for r in self._replies.values())

    @property
    def _answering(self) -> bool:
        """Started, neither hanging up nor stopped: caller input is answered."""
        return self.phase is Phase.STREAMING

    # -- inputs ---------------------------------------------------------------------

    def receive_transcript(
        self, turn_id: int, text: str | None, error: str | None = None, *, elapsed_ms: int | None = None
    ) -> None:
        """Take the recognizer's result for ``turn_id`` (``text`` stripped; ``""`` = nothing heard).

        A stale result (the turn was merged into a continuation) is ignored. After
        ``stop`` the transcript is recorded but not answered. ``elapsed_ms`` (how long
        recognition took) goes into the reply's ``latency_ms``.
        """
        turn = self._turns.get(turn_id)
        if turn is None or self.record is None:
            return
        if turn.tentative:
            self._tentative_transcript(turn, text, error, elapsed_ms)
            return
        if elapsed_ms is not None:
            turn.latency_ms["recognition"] = elapsed_ms
        if turn.over_bot:
            verdict = False if error is not None else self._stops_the_bot(turn, text or "")
            if not verdict:
                log.info("turn %d: %r over the bot is not a barge-in%s", turn_id, text or "",
                         f" (recognition failed: {error})" if error else
                         " (too short, no stop word)" if verdict is None else "")
                self._forget_turn(turn)
                if verdict is None:  # it may be the start of more
                    self._short_over_bot = turn
                return
            turn.over_bot = False
            self._confirm_barge_in(f"turn {turn_id} said {text.strip()!r}")
        if error is not None:
            log.warning("turn %d: recognition failed: %s", turn_id, error)
            self._record_caller_turn(turn, "", error=error)
            self._forget_turn(turn)
            self._apologize()
            return
        text = (text or "").strip()
        if not text:
            log.info("turn %d: nothing recognized (%d ms of audio)", turn_id, turn.end_ms - turn.start_ms)
            self._forget_turn(turn)
            return
        self._record_caller_turn(turn, text)
        if self.stopped or self._awaiting_answer:  # a voicemail greeting, or "hello?" before the detection: recorded
            self._forget_turn(turn)
            return
        if self._turn_end is not None and turn.pcm:
            turn.required_silence_ms, judged = self._turn_end.required_silence_ms(text)
            turn.latency_ms["required_silence"] = turn.required_silence_ms
            log.info("turn %d: %s, answered after %d ms of silence", turn_id, judged.value, turn.required_silence_ms)
        if turn.responding:
            return
        if self._turn_end is not None and not self.config.speculative_reply and not self._silent_long_enough(turn):
            turn.respond_held = text  # a responder with side effects is asked only for a finished turn
            return
        self._actions.append(Respond(turn_id, text))

    def is_confirmed(self, turn_id: int) -> bool:
        """True once ``turn_id`` is a turn the caller waits on: not tentative (a speculative turn
        whose pause became the endpoint), not dropped, and, with ``turn_end``, silent for
        ``turn_end.undecided_ms`` (``ENDPOINT_SILENCE_MS``) already: an utterance that ended after
        ``turn_end.complete_ms`` is often continued, so its recognition is urgent only from then
        (under load, a continued one is then mostly dropped from the queue before it runs)."""
        turn = self._turns.get(turn_id)
        if turn is None or turn.tentative:
            return False
        return self._turn_end is None or self.now_ms - turn.end_ms >= self._turn_end.config.undecided_ms

    def speculation_declined(self, turn_id: int) -> None:
        """The worker did not run the speculative ``Transcribe`` of ``turn_id`` (e.g. under
        load): the turn is dropped, and the endpoint, if it comes, is transcribed as usual."""
        turn = self._turns.get(turn_id)
        if turn is not None and turn.tentative:
            self._forget_turn(turn)

    def receive_reply(
        self, turn_id: int, text: Reply | None, error: str | None = None, *,
        elapsed_ms: int | None = None, hang_up: bool = False, transfer_to: str | None = None,
    ) -> None:
        """Take the responder's reply for ``turn_id``: text, a ``Play``, or a list or tuple of both
        (``core.sentences.split_reply``); ``None``/blank means say nothing.

        ``error`` (the responder raised or timed out): the caller hears the apology.
        ``hang_up``: the reply is a goodbye; the call ends once it has played.
        ``transfer_to``: the reply is a transfer's announcement (may be blank); once it has
        played, ``HangUp`` carries the target (``HangUp.transfer_to``).
        ``elapsed_ms`` (how long the responder took) goes into the reply's ``latency_ms``.
        """
        turn = self._turns.get(turn_id)
        if turn is None or not self._answering:
            return
        hang_up = hang_up or transfer_to is not None
        items = split_reply(text)
        if turn.tentative and (error is not None or hang_up or not items):
            turn.deferred.append(DeferredReply(text, error, elapsed_ms, hang_up, transfer_to))  # acted on if confirmed
            return
        if elapsed_ms is not None:
            turn.latency_ms["responder"] = elapsed_ms
        if error is not None:
            log.warning("turn %d: responder failed: %s", turn_id, error)
            self._forget_turn(turn)
            self._apologize()
            return
        if hang_up:
            self._forget_turn(turn)
            if transfer_to is not None:
                self.transfer(transfer_to, text or "")
            else:
                self.hang_up(text or "", "the responder ended the call")
            return
        if not items:
            self._forget_turn(turn)
            return
        self._start_reply(text, turn_id)

    def receive_reply_chunk(self, turn_id: int, text: str | Play, *, elapsed_ms: int | None = None) -> None:
        """Take the next piece of a streaming responder's reply for ``turn_id`` (text of any length, or a ``Play``).

        Each sentence is spoken as soon as it is complete; a ``Play`` completes the text before it. ``elapsed_ms`` (the responder's
        time to its first piece) goes into the reply's ``latency_ms``. Pieces for a turn that
        was dropped (barge-in, continuation, hang-up) are ignored. End with ``receive_reply_end``.
        """
        turn = self._turns.get(turn_id)
        if turn is None or not self._answering:
            return
        if turn.sentence_stream is None:
            turn.sentence_stream = SentenceStream()
            if elapsed_ms is not None:
                turn.latency_ms["responder"] = elapsed_ms
        self._extend_reply(turn, turn.sentence_stream.push(text))

    def receive_reply_end(self, turn_id: int, error: str | None = None, *, hang_up: bool = False,
                          transfer_to: str | None = None) -> None:
        """The streaming reply for ``turn_id`` is complete, or failed with ``error``.

        ``error`` (a short category, e.g. ``"responder timeout"``: it is stored on the bot turn
        and shown on the call's page) before any sentence was complete: the caller hears the apology instead;
        after: the reply ends with its complete sentences and the apology follows, in the
        offline voice (an unfinished sentence is not spoken). ``hang_up``: the reply is a
        goodbye; from now on the caller cannot interrupt it, and the call ends once it has
        played. ``transfer_to``: likewise, then the call is transferred (``HangUp.transfer_to``).
        A stream that produced nothing is a silent reply.
        """
        turn = self._turns.get(turn_id)
        if turn is None or not self._answering:
            return
        hang_up = hang_up or transfer_to is not None
        if turn.tentative:
            turn.deferred.append(DeferredReplyEnd(error, hang_up, transfer_to))  # acted on if the turn is confirmed
            return
        stream, turn.sentence_stream = turn.sentence_stream, None
        reply = self._replies.get(turn.reply_id) if turn.reply_id is not None else None
        if error is not None:
            log.warning("turn %d: streaming responder failed: %s", turn_id, error)
            if reply is None:
                self._forget_turn(turn)
                self._apologize()
                return
            reply.error = error
            if reply.record is not None:
                reply.record.error = reply.error
            self._extend_reply(turn, split_sentences(self.config.apology), offline_voice=True)
        elif stream is not None:
            self._extend_reply(turn, stream.finish())
            reply = self._replies.get(turn.reply_id) if turn.reply_id is not None else None
        if reply is None:  # nothing to say
            self._forget_turn(turn)
            if transfer_to is not None:
                self.transfer(transfer_to, "")
            elif hang_up:
                self.hang_up("", "the responder ended the call")
            return
        reply.complete = True
        if hang_up:
            reply.hang_up = True
            self._transfer_to = transfer_to
            self._hang_up_reason = f"transfer to {transfer_to}" if transfer_to else "the responder ended the call"
            self.phase = Phase.HANGING_UP
        if reply.sentences_sent == len(reply.sentences):  # every sentence is already at Twilio
            self._end_sent_reply(reply)

    def _extend_reply(self, turn: _CallerTurn, sentences: list[ReplyItem], *, offline_voice: bool = False) -> None:
        """Add complete sentences (and prompts) to ``turn``'s streaming reply (started by the first) and speak them."""
        if not sentences:
            return
        if turn.reply_id is None:
            reply = _Reply(self._next_reply_id, turn.turn_id, reply_text(sentences), list(sentences), complete=False)
            self._next_reply_id += 1
            self._replies[reply.reply_id] = reply
            turn.reply_id = reply.reply_id
            self._actions.append(Speak(reply.reply_id, tuple(sentences), offline_voice))
            return
        reply = self._replies.get(turn.reply_id)
        if reply is None or reply.cancelled or reply.complete:
            return
        first_index = len(reply.sentences)
        reply.sentences.extend(sentences)
        self._update_text(reply)
        self._actions.append(Speak(reply.reply_id, tuple(sentences), offline_voice, first_index))

    def _end_sent_reply(self, reply: _Reply) -> None:
        """A reply became complete after all its audio was sent: it ends with its last mark echo."""
        if reply.record is None:  # none of it was sent: its only items were prompts that failed
            self._drop_reply(reply)
            if reply.hang_up:
                self._actions.append(self._final_hang_up())
            return
        self._reply_fully_sent(reply)
        if self._playout.finish_reply_at_last_mark(reply.reply_id):
            return
        if reply.record is not None and reply.record.end_ms is None:
            reply.record.end_ms = self.now_ms
        self._replies.pop(reply.reply_id, None)
        if reply.hang_up:
            self._actions.append(self._final_hang_up())

    def receive_speech(self, reply_id: int, index: int, audio: bytes, *, elapsed_ms: int | None = None) -> None:
        """Queue sentence ``index`` of reply ``reply_id`` (synthesized, or a prompt's audio): mono audio
        in the stream's wire format (``stream_format``: μ-law 8 kHz, or L16 little-endian at the
        stream's rate), no header.

        Produces media messages of ``outbound_chunk_ms`` each followed by one mark. Audio of
        a cancelled reply is dropped. ``elapsed_ms`` (synthesis time of the first sentence)
        goes into the reply's ``latency_ms``.
        """
        reply = self._replies.get(reply_id)
        if reply is None or reply.cancelled or self.stream_sid is None or self.stopped:
            return
        tentative = self._tentative_turn_of(reply)
        if tentative is not None:
            tentative.deferred.append(DeferredSpeech(reply_id, index, audio, elapsed_ms))
            return
        if self._holding(reply):
            self._held.append(DeferredSpeech(reply_id, index, audio, elapsed_ms))
            return
        if reply.record is None:
            reply.record = Turn("bot", reply.text, self.now_ms, None, error=reply.error)
            assert self.record is not None
            self.record.add_turn(reply.record)
            turn = self._turns.get(reply.turn_id) if reply.turn_id is not None else None
            if turn is not None:
                if elapsed_ms is not None:
                    turn.latency_ms["synthesis"] = elapsed_ms
                reply.record.latency_ms = {
                    "endpoint": turn.detected_ms - turn.end_ms,
                    **turn.latency_ms,
                    "total": self.now_ms - turn.end_ms,
                }
                reply.turn_end_ms = turn.end_ms
                if turn.pcm:
                    self._last_answer = (turn, reply)
                if self._open_turn is turn:
                    self._open_turn = None
                if self._turn_end is not None and turn.pcm:
                    self._turn_end.observe_answered_turn()
        chunk_bytes = self.config.outbound_chunk_ms * self._bytes_per_ms
        for offset in range(0, len(audio), chunk_bytes):
            self._actions.append(Send(protocol.media_message(self.stream_sid, audio[offset : offset + chunk_bytes]), reply_id))
        final = reply.complete and index == len(reply.sentences) - 1
        name = self._playout.queue(reply_id, index, audio, final=final, sent_ms=self.now_ms)
        if self._echo is not None:
            self._echo.play(self.now_ms, self.stream_format.decode_at_processing_rate(audio))
        self._actions.append(Send(protocol.mark_message(self.stream_sid, name), reply_id))
        reply.sentences_sent = index + 1
        if final:
            self._reply_fully_sent(reply)

    def receive_speech_failed(self, reply_id: int, error: str) -> None:
        """Synthesis of reply ``reply_id`` failed: the reply ends with what was already sent.

        ``error`` is logged; the bot turn records only ``"synthesis failed"``.
        """
        reply = self._replies.get(reply_id)
        if reply is None or reply.cancelled:
            return
        tentative = self._tentative_turn_of(reply)
        if tentative is not None:
            tentative.deferred.append(DeferredSpeechFailure(reply_id, error))
            return
        log.warning("reply %d: synthesis failed after %d sentence(s): %s", reply_id, reply.sentences_sent, error)
        if reply.record is not None:
            reply.record.error = "synthesis failed"  # a category: the engine's words may leak details
        if not reply.complete:  # a streaming reply: stop the stream, the reply ends here
            reply.complete = True
            if reply.turn_id is not None:
                self._actions.append(Cancel(turn_ids=(reply.turn_id,)))
        if self._playout.finish_reply_at_last_mark(reply_id):  # finish when what was sent has played
            del reply.sentences[reply.sentences_sent :]
            self._reply_fully_sent(reply)
            return
        if reply.record is not None and reply.record.end_ms is None:
            reply.record.end_ms = self.now_ms
        self._reply_fully_sent(reply)
        self._drop_reply(reply)
        if reply.hang_up:
            self._actions.append(self._final_hang_up())

    def receive_prompt_failed(self, reply_id: int, index: int, error: str) -> None:
        """Prompt ``index`` of reply ``reply_id`` (a ``Play``) could not be loaded: the reply goes on without it.

        ``error`` is logged; the bot turn records only ``"prompt failed"``, and its text leaves the
        prompt out. A reply with nothing else to say ends unheard (no bot turn).
        """
        reply = self._replies.get(reply_id)
        if reply is None or reply.cancelled or self.stream_sid is None or self.stopped:
            return
        tentative = self._tentative_turn_of(reply)
        if tentative is not None:
            tentative.deferred.append(DeferredPromptFailure(reply_id, index, error))
            return
        if self._holding(reply):  # in order with the audio before it
            self._held.append(DeferredPromptFailure(reply_id, index, error))
            return
        log.warning("reply %d: item %d, a prompt, left out: %s", reply_id, index, error)
        reply.skipped.add(index)
        reply.error = "prompt failed"  # a category: the path and the decoder's words stay in the log
        if reply.record is not None:
            reply.record.error = reply.error
        self._update_text(reply)
        reply.sentences_sent = index + 1
        if reply.complete and index == len(reply.sentences) - 1:  # it was the last item
            self._end_sent_reply(reply)

    def _update_text(self, reply: _Reply) -> None:
        """Set ``reply``'s record text from its items (prompts that failed left out)."""
        reply.text = reply_text(item for i, item in enumerate(reply.sentences) if i not in reply.skipped)
        if reply.record is not None:
            reply.record.text = reply.text

    def hang_up(self, goodbye: Reply, reason: str) -> None:
        """End the call: stop listening, say ``goodbye`` (``""`` for none; text, a ``Play`` or a list), then ``HangUp``.

        Whatever the bot was saying is cleared and pending turns are dropped; the goodbye
        cannot be interrupted, and the ``HangUp`` comes when its last mark is echoed, so it
        is not cut off. Does nothing before ``start``, while hanging up or after ``stop``.
        Afterwards drain ``actions_to_perform()``.
        """
        if not self._answering:
            return
        log.info("hanging up (%s)", reason)
        self._interrupt_bot()
        for turn in list(self._turns.values()):
            self._forget_turn(turn)
        for reply in [r for r in self._replies.values() if not r.cancelled]:
            self._drop_reply(reply)
        self._hang_up_reason = reason
        self.phase = Phase.HANGING_UP
        self._dtmf.discard()
        self._start_reply(goodbye, None, hang_up=True)
        if not any(r.hang_up for r in self._replies.values()):
            self._actions.append(self._final_hang_up())

    def receive_tool_call(self, turn_id: int, text: str, error: str | None = None) -> None:
        """Record a tool the language model called while answering ``turn_id`` (``core.responder.ToolCall``'s
        ``transcript``) as a ``"tool"`` turn at the current media time; ``error``: a short category.
        Not spoken; ignored before ``start`` or for a turn that was dropped."""
        if self.record is None or turn_id not in self._turns:
            return
        self.record.add_turn(Turn("tool", text, self.now_ms, self.now_ms, error=error))

    def _final_hang_up(self) -> HangUp:
        """The ``HangUp`` once the goodbye (or a transfer's announcement) has played: it carries the
        transfer's target, if any."""
        return HangUp(self.hanging_up or "goodbye", self._transfer_to)

    def transfer(self, target: str, announcement: str) -> None:
        """Hand the call to ``target`` (checked by the caller: ``core.dial_targets``): like
        ``hang_up(announcement)``, but the final ``HangUp`` carries ``transfer_to=target``, for the
        worker to redirect the call to ``<Dial>`` instead of ending it."""
        if not self._answering:
            return
        self._transfer_to = target
        self.hang_up(announcement, f"transfer to {target}")

    def receive_answered_by(self, answered_by: str) -> None:
        """Twilio's answering-machine detection result (``AnsweredBy``) for a call started with
        ``config.await_answer``; ignored otherwise, or when it comes twice.

        ``human``, ``unknown`` (and any value Twilio adds later): the greeting plays and the
        conversation starts. A machine (``MACHINE_ANSWERS``; with ``DetectMessageEnd`` Twilio
        says so after the beep): ``config.voicemail_message``, then the call ends; with
        ``config.machine_responder``, the responder is asked (``Respond`` with ``text=""``).
        ``fax``: the call ends at once.
        """
        if not self._awaiting_answer or not self._answering:
            return
        self._awaiting_answer = False
        if self.record is not None:
            self.record.answered_by = answered_by
        log.info("answered by %s", answered_by)
        if answered_by == "fax":
            self.hang_up("", "a fax machine answered")
        elif answered_by in MACHINE_ANSWERS:
            if self.config.machine_responder:
                turn = _CallerTurn(self._new_turn_id(), b"", self.now_ms, self.now_ms, self.now_ms)
                self._turns[turn.turn_id] = turn
                self._actions.append(Respond(turn.turn_id, ""))
            else:
                self.hang_up(self.config.voicemail_message, f"voicemail ({answered_by})")
        elif self.config.greeting.strip():
            self._start_reply(self.config.greeting, None)

    # -- event handlers -----------------------------------------------------------------

    def _on_other_event(self, event: Event) -> None:
        if isinstance(event, Mark):
            self._on_mark(event)
        elif isinstance(event, Dtmf):
            self._on_dtmf(event)

    def _on_start(self, event: Start) -> None:
        if self.config.await_answer:
            self._awaiting_answer = True  # the greeting waits for receive_answered_by
        elif self.config.greeting.strip():
            self._start_reply(self.config.greeting, None)

    def _on_media(self, event: Media) -> None:
        if self.start is None:
            self.media_before_start += 1
            if self.media_before_start == 1:
                log.warning("media before start: ignored")
            return
        if self.stopped or event.track != "inbound" or event.timestamp_ms < 0:
            return
        if self._first_media_ms is None:
            self._first_media_ms = event.timestamp_ms
        frame_ms = self.config.endpointing.frame_ms
        for frame in self._frames.push(event.payload, event.timestamp_ms):
            self.now_ms = frame.timestamp_ms + frame_ms
            pcm = frame.pcm if self._echo is None else self._echo.process(frame.pcm, frame.timestamp_ms)
            for ep_event in self._endpointer.push(pcm, frame.timestamp_ms):
                if isinstance(ep_event, SpeechStarted):
                    self._on_speech_started(ep_event)
                elif isinstance(ep_event, SpeechPaused):
                    self._on_speech_paused(ep_event)
                elif isinstance(ep_event, UtteranceEnded):
                    self._on_utterance_ended(ep_event)
            if self._barge_in_pending and self._speech_over_bot_ms() >= self.config.barge_in_min_ms:
                self._confirm_barge_in("long enough")
            if self._turn_end is not None:
                self._release_held()
        burst = self._dtmf.poll(self.now_ms)
        if burst is not None:
            self._answer_dtmf(burst)
        if self._awaiting_answer and self.now_ms - self._first_media_ms >= self.config.answer_timeout_ms:
            log.warning("no answering-machine detection result after %d ms: greeting as for a person", self.now_ms - self._first_media_ms)
            self.receive_answered_by("unknown")
        limit_ms = self.config.max_call_ms
        if limit_ms and self._answering and self.now_ms - self._first_media_ms >= limit_ms:
            self.hang_up(self.config.time_limit_goodbye, f"call longer than {limit_ms} ms")
        self._check_idle()

    def _check_idle(self) -> None:
        """Nudge a silent caller once, then hang up (media time; never while anything is in progress)."""
        if (not self._answering or self._awaiting_answer or self._endpointer.in_speech or self._turns or self._replies
                or self._playout.has_pending):
            if self.now_ms > self._last_activity_ms:
                self._last_activity_ms = self.now_ms
            return
        idle_ms = self.now_ms - max(self._last_activity_ms, self._first_media_ms or 0)
        config = self.config
        if config.idle_hangup_ms and idle_ms >= config.idle_hangup_ms:
            self.hang_up(config.idle_goodbye, f"caller silent for {idle_ms} ms")
        elif config.idle_nudge_ms and idle_ms >= config.idle_nudge_ms and not self._nudged:
            self._nudged = True
            self._start_reply(config.idle_nudge, None)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._nudged = False
        short, self._short_over_bot = self._short_over_bot, None
        if not self._answering:
            return  # the goodbye plays to the end
        if short is not None and event.voice_start_ms - short.end_ms > SHORT_OVER_BOT_JOIN_MS:
            short = None
        retracted = self._retract_answer(event.voice_start_ms)
        if retracted is not None:
            self._continuation = retracted
            return
        if self.config.barge_in_min_ms and self._bot_talking():
            self._barge_in_pending = True  # a backchannel or a cough must not stop the bot
            turn = self._open_turn
            if turn is not None and turn.over_bot:
                # The caller went on before their words over the bot were judged ("one … two
                # three"): judge, and answer, the whole thing.
                self._forget_turn(turn)
            elif short is not None:  # "one" was judged too short, but it was the start of "one two three"
                turn = short
            else:
                return
            log.info("turn %d continues at %d ms over the bot", turn.turn_id, event.voice_start_ms)
            self._continuation = turn
            return
        if self._interrupt_bot():
            log.info("barge-in at %d ms", event.detected_ms)
            return
        if self._open_turn is None and short is not None:  # "one" over the bot's last words, then "two three"
            log.info("turn %d continues at %d ms", short.turn_id, event.voice_start_ms)
            self._continuation = short
        elif self._open_turn is not None:
            # The caller went on before hearing any reply: answer the whole thing instead.
            turn = self._open_turn
            if self._turn_end is not None:
                self._turn_end.observe_continued_pause(event.voice_start_ms - turn.end_ms)
            log.info("turn %d continues at %d ms; its pending reply is abandoned", turn.turn_id, event.voice_start_ms)
            self._continuation = turn
            self._forget_turn(turn)
        for reply in [r for r in self._replies.values() if not r.cancelled]:
            self._drop_reply(reply)  # e.g. a greeting still being synthesized

    def _retract_answer(self, voice_start_ms: int) -> _CallerTurn | None:
        """The caller's voice began before the reply to their last turn was first sent (their start
        is decided only ``endpointing.start_ms`` later, when that audio may be out): they were
        still talking, so the reply is retracted like one not sent yet. Twilio's buffer is cleared,
        the reply's bot turn leaves the record (the caller heard at most its first frames: the
        recording keeps them) and the turn it answered is returned, to be continued. ``None``
        otherwise: what starts after the reply began is heard over the bot (no echo can start
        before the audio it echoes)."""
        answer, self._last_answer = self._last_answer, None
        if answer is None:
            return None
        turn, reply = answer
        if reply.cancelled or reply.record is None or voice_start_ms >= reply.record.start_ms:
            return None
        log.info("turn %d continues at %d ms, before its reply was sent at %d ms: the reply is retracted",
                 turn.turn_id, voice_start_ms, reply.record.start_ms)
        self._interrupt_bot()
        if self.record is not None:
            self.record.turns[:] = [t for t in self.record.turns if t is not reply.record]
        if self._turn_end is not None:
            self._turn_end.observe_continued_pause(voice_start_ms - turn.end_ms)
        return turn

    def _on_speech_paused(self, event: SpeechPaused) -> None:
        """Start transcribing the utterance so far: a tentative turn, confirmed by the endpoint."""
        if not self._answering:
            return
        if self._tentative is not None:  # the caller spoke on since the last pause
            self._forget_turn(self._tentative)
        utt = event.utterance
        pcm, start_ms, speech_ms = self._joined(utt, self._continuation)
        turn = _CallerTurn(self._new_turn_id(), pcm, start_ms, utt.end_ms, event.detected_ms, speech_ms, tentative=True,
                           over_bot=self._barge_in_pending)
        self._turns[turn.turn_id] = turn
        self._tentative = turn
        self._actions.append(Transcribe(turn.turn_id, pcm, self.config.endpointing.sample_rate, speculative=True))

    def _on_utterance_ended(self, event: UtteranceEnded) -> None:
        if not self._answering:
            return
        utt = event.utterance
        previous = self._continuation
        self._continuation = None
        pcm, start_ms, speech_ms = self._joined(utt, previous)
        tentative, self._tentative = self._tentative, None
        if tentative is not None:
            if tentative.end_ms == utt.end_ms and tentative.start_ms == start_ms and len(tentative.pcm) == len(pcm):
                self._barge_in_pending = False  # the utterance is over: its transcript decides
                self._confirm(tentative, event.detected_ms, previous)
                return
            self._forget_turn(tentative)
        turn = _CallerTurn(self._new_turn_id(), pcm, start_ms, utt.end_ms, event.detected_ms, speech_ms,
                           over_bot=self._barge_in_pending)
        self._barge_in_pending = False  # the utterance is over: its transcript decides
        if previous is not None and previous.record is not None:
            turn.record = previous.record  # the merged transcript replaces it
        self._turns[turn.turn_id] = turn
        self._open_turn = turn
        self._actions.append(Transcribe(turn.turn_id, pcm, self.config.endpointing.sample_rate))

    def _confirm(self, turn: _CallerTurn, detected_ms: int, previous: _CallerTurn | None) -> None:
        """The pause became the endpoint: the tentative turn is the turn; replay what it holds
        (nothing before its transcript came: ``receive_transcript`` takes it from there)."""
        turn.tentative = False
        turn.detected_ms = detected_ms
        turn.latency_ms["speculative"] = 1
        if previous is not None and previous.record is not None:
            turn.record = previous.record  # the merged transcript replaces it
        self._open_turn = turn
        deferred, turn.deferred = turn.deferred, []
        for item in replay_order(deferred):
            if isinstance(item, DeferredTranscript):
                self.receive_transcript(turn.turn_id, item.text, item.error, elapsed_ms=item.elapsed_ms)
            elif isinstance(item, DeferredReply):
                self.receive_reply(turn.turn_id, item.text, item.error, elapsed_ms=item.elapsed_ms, hang_up=item.hang_up,
                                   transfer_to=item.transfer_to)
            elif isinstance(item, DeferredSpeech):
                self.receive_speech(item.reply_id, item.index, item.audio, elapsed_ms=item.elapsed_ms)
            elif isinstance(item, DeferredSpeechFailure):
                self.receive_speech_failed(item.reply_id, item.error)
            elif isinstance(item, DeferredPromptFailure):
                self.receive_prompt_failed(item.reply_id, item.index, item.error)
            elif isinstance(item, DeferredReplyEnd):
                self.receive_reply_end(turn.turn_id, item.error, hang_up=item.hang_up, transfer_to=item.transfer_to)

    @staticmethod
    def _joined(utt: Utterance, previous: _CallerTurn | None) -> tuple[bytes, int, int]:
        """PCM, first voiced frame and speech (ms) of utterance ``utt``, after the turn it continues."""
        speech_ms = utt.end_ms - utt.voice_start_ms
        if previous is None:
            return utt.pcm, utt.voice_start_ms, speech_ms
        return previous.pcm + utt.pcm, previous.start_ms, previous.speech_ms + speech_ms

    def _speech_over_bot_ms(self) -> int:
        """The current utterance's speech so far, with the turn it continues (``barge_in_min_ms``)."""
        prior_ms = self._continuation.speech_ms if self._continuation is not None else 0
        return self._endpointer.voiced_ms + prior_ms

    def _stops_the_bot(self, turn: _CallerTurn, text: str) -> bool | None:
        """Judge words said over the bot: True a barge-in; False a backchannel (or nothing
        said); None too short to stop it (under ``barge_in_min_ms`` of speech, no stop word)."""
        if is_backchannel(text, self.config.backchannels):
            return False
        if has_stop_word(text, self.config.barge_in_words) or turn.speech_ms >= self.config.barge_in_min_ms:
            return True
        return None

    def _tentative_transcript(self, turn: _CallerTurn, text: str | None, error: str | None, elapsed_ms: int | None) -> None:
        """Hold a tentative turn's transcript; with ``speculative_reply``, ask the responder already."""
        turn.deferred.append(DeferredTranscript(text, error, elapsed_ms))
        if elapsed_ms is not None:
            turn.latency_ms["recognition"] = elapsed_ms
        if turn.over_bot and error is None and self._stops_the_bot(turn, text or ""):
            # Words over the bot that stop it do so as soon as speculation has them.
            self._confirm_barge_in(f"turn {turn.turn_id} is saying {(text or '').strip()!r}")
        text = (text or "").strip()
        if error is None and text and self.config.speculative_reply and not self.stopped and not turn.over_bot:
            turn.responding = True
            pending = Turn("caller", text, turn.start_ms, turn.end_ms)
            self._actions.append(Respond(turn.turn_id, text, pending_turn=pending))

    def _tentative_turn_of(self, reply: _Reply) -> _CallerTurn | None:
        """The turn ``reply`` answers, if it is still tentative (its inputs wait for the endpoint)."""
        turn = self._turns.get(reply.turn_id) if reply.turn_id is not None else None
        return turn if turn is not None and turn.tentative else None

    def _on_mark(self, event: Mark) -> None:
        for mark, placed in self._playout.echo(event.name, self.now_ms):
            if placed is not None:
                self._actions.append(placed)
            reply = self._replies.get(mark.reply_id)
            if reply is None or reply.record is None:
                continue
            latency = reply.record.latency_ms
            if reply.turn_end_ms is not None and latency is not None and "first_mark" not in latency:
                latency["first_mark"] = self.now_ms - reply.turn_end_ms  # the first sentence has played
                self._latency_reports.append(latency)
            if mark.final:
                reply.record.end_ms = self.now_ms
                del self._replies[reply.reply_id]
                if reply.hang_up:
                    self._actions.append(self._final_hang_up())

    def _on_dtmf(self, event: Dtmf) -> None:
        if not self._answering or not event.digit:
            return
        self._interrupt_bot()
        self._nudged = False
        self._last_activity_ms = self.now_ms
        burst = self._dtmf.press(event.digit, self.now_ms)
        if burst is not None:
            self._answer_dtmf(burst)

    def _answer_dtmf(self, burst: DtmfBurst) -> None:
        turn = _CallerTurn(self._new_turn_id(), b"", burst.start_ms, burst.end_ms, self.now_ms)
        self._turns[turn.turn_id] = turn
        self._record_caller_turn(turn, "", dtmf=burst.digits)
        if self._awaiting_answer:
            self._forget_turn(turn)
            return
        self._actions.append(Respond(turn.turn_id, "", dtmf=burst.digits))

    def _on_stop(self) -> None:
        if self._tentative is not None:  # the endpointer's last utterance is transcribed below
            self._forget_turn(self._tentative)
        for event in self._endpointer.finish():
            # Transcribed for the record; not answered (the call is over).
            utt = event.utterance
            turn = _CallerTurn(self._new_turn_id(), utt.pcm, utt.voice_start_ms, utt.end_ms, event.detected_ms)
            self._turns[turn.turn_id] = turn
            self._actions.append(Transcribe(turn.turn_id, utt.pcm, self.config.endpointing.sample_rate))
        live = tuple(r.reply_id for r in self._replies.values() if not r.cancelled)
        for reply in list(self._replies.values()):
            if reply.record is not None and reply.record.end_ms is None:
                reply.record.end_ms = self.now_ms
            self._report_unheard(reply)
            reply.cancelled = True
        self._replies.clear()
        self._held.clear()
        self._actions.extend(self._playout.clear(self.now_ms))
        if live:
            self._actions.append(Cancel(reply_ids=live))
        self._actions.append(EndCall())

    # -- helpers ------------------------------------------------------------------------

    def _new_turn_id(self) -> int:
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        return turn_id

    def _start_reply(self, text: Reply, turn_id: int | None, *, hang_up: bool = False, offline_voice: bool = False) -> None:
        sentences = tuple(split_reply(text))
        if not sentences:
            return
        record_text = text.strip() if isinstance(text, str) else reply_text(sentences)
        reply = _Reply(self._next_reply_id, turn_id, record_text, list(sentences), hang_up=hang_up)
        self._next_reply_id += 1
        self._replies[reply.reply_id] = reply
        self._actions.append(Speak(reply.reply_id, sentences, offline_voice))

    def _apologize(self) -> None:
        if self.config.apology.strip() and self._answering:
            self._start_reply(self.config.apology, None, offline_voice=True)

    def _reply_fully_sent(self, reply: _Reply) -> None:
        """All audio of ``reply`` is queued at Twilio; the turn is done once its marks echo."""
        if reply.turn_id is not None:
            self._turns.pop(reply.turn_id, None)

    def _holding(self, reply: _Reply) -> bool:
        """True if ``reply``'s audio must wait: it answers a caller turn that has not been silent
        for its ``required_silence_ms`` yet, or earlier audio of it is waiting."""
        if any(held.reply_id == reply.reply_id for held in self._held):
            return True
        if self._turn_end is None or reply.record is not None or reply.turn_id is None:
            return False
        turn = self._turns.get(reply.turn_id)
        return turn is not None and bool(turn.pcm) and not self._silent_long_enough(turn)  # key presses: at once

    def _silent_long_enough(self, turn: _CallerTurn) -> bool:
        """The caller has been silent ``turn.required_silence_ms`` since ``turn``'s last voiced
        frame and is not starting to speak: two voiced frames the endpointer has not counted as
        an utterance yet hold the reply (one is often a click or a breath)."""
        if self.now_ms - turn.end_ms < turn.required_silence_ms:
            return False
        return self._endpointer.voiced_in_window_ms < 2 * self.config.endpointing.frame_ms

    def _release_held(self) -> None:
        """Ask the responder for, and send the held audio of, every caller turn that has now been
        silent long enough."""
        for turn in self._turns.values():  # Respond does not change _turns
            if turn.respond_held is not None and self._silent_long_enough(turn):
                text, turn.respond_held = turn.respond_held, None
                self._actions.append(Respond(turn.turn_id, text))
        for reply_id in dict.fromkeys(held.reply_id for held in self._held):
            reply = self._replies.get(reply_id)
            turn = self._turns.get(reply.turn_id) if reply is not None and reply.turn_id is not None else None
            if reply is not None and not reply.cancelled and turn is not None and not self._silent_long_enough(turn):
                continue
            items = [held for held in self._held if held.reply_id == reply_id]
            self._held = [held for held in self._held if held.reply_id != reply_id]
            for held in items:
                if isinstance(held, DeferredSpeech):
                    self.receive_speech(reply_id, held.index, held.audio, elapsed_ms=held.elapsed_ms)
                else:
                    self.receive_prompt_failed(reply_id, held.index, held.error)

    def _bot_talking(self) -> bool:
        """True while reply audio has been sent and is not fully played."""
        return self._playout.has_pending or any(r.record is not None for r in self._replies.values() if not r.cancelled)

    def _confirm_barge_in(self, why: str) -> None:
        """The caller's speech over the bot is a barge-in after all: stop the bot."""
        self._barge_in_pending = False
        for turn in self._turns.values():
            turn.over_bot = False
        if self._interrupt_bot():
            log.info("barge-in at %d ms (%s)", self.now_ms, why)

    def _interrupt_bot(self) -> bool:
        """Barge-in: if reply audio was sent and is not fully played, clear Twilio's buffer and
        cancel every reply. Returns True if it did."""
        if not self._bot_talking():
            return False
        live = [r for r in self._replies.values() if not r.cancelled]
        if self._playout.has_pending and self.stream_sid is not None:
            self._actions.append(Send(protocol.clear_message(self.stream_sid)))
        # Twilio echoes the pending marks after clear; the echoes are ignored.
        self._actions.extend(self._playout.clear(self.now_ms))
        if self._echo is not None:
            self._echo.clear(self.now_ms)
        for reply in live:
            self._drop_reply(reply, interrupted=True)
        return True

    def _report_unheard(self, reply: _Reply) -> None:
        """A reply ends before its first mark echo: report its latency without ``first_mark``."""
        latency = reply.record.latency_ms if reply.record is not None else None
        if reply.turn_end_ms is not None and latency is not None and "first_mark" not in latency:
            self._latency_reports.append(latency)

    def _drop_reply(self, reply: _Reply, *, interrupted: bool = False) -> None:
        self._report_unheard(reply)
        reply.cancelled = True
        self._replies.pop(reply.reply_id, None)
        self._actions.append(Cancel(reply_ids=(reply.reply_id,)))
        heard = self._playout.take_heard(reply.reply_id)
        if reply.record is not None:
            if reply.record.end_ms is None:
                reply.record.end_ms = self.now_ms
            if interrupted:
                reply.record.interrupted = True
                reply.record.heard = " ".join(item_text(reply.sentences[index]) for index in heard)
        if reply.turn_id is not None:
            turn = self._turns.get(reply.turn_id)
            if turn is not None:  # also stops a streaming responder still producing the reply
                self._forget_turn(turn)

    def _forget_turn(self, turn: _CallerTurn) -> None:
        """Stop tracking ``turn`` and cancel its pending work."""
        self._turns.pop(turn.turn_id, None)
        if self._open_turn is turn:
            self._open_turn = None
        if self._tentative is turn:
            self._tentative = None
        reply_ids = tuple(r.reply_id for r in self._replies.values() if r.turn_id == turn.turn_id)
        for reply_id in reply_ids:
            self._replies[reply_id].cancelled = True
            del self._replies[reply_id]
            self._playout.take_heard(reply_id)
        self._actions.append(Cancel(turn_ids=(turn.turn_id,), reply_ids=reply_ids))

    def _record_caller_turn(self, turn: _CallerTurn, text: str, *, error: str | None = None, dtmf: str | None = None) -> None:
        assert self.record is not None
        if turn.record is None:
            turn.record = Turn("caller", text, turn.start_ms, turn.end_ms)
            self.record.add_turn(turn.record)
        else:  # a continuation: the merged transcript replaces the partial one
            turn.record.text = text
            turn.record.start_ms = turn.start_ms
            turn.record.end_ms = turn.end_ms
        if error is not None:
            turn.record.error = error
        if dtmf is not None:
            turn.record.dtmf = dtmf
