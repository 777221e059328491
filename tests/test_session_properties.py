"""Property-based tests of the per-call state machines and the audio pipeline under them.

``CallSession`` and ``ListenSession`` are driven by generated scripts: Twilio messages with
any timestamps and payload sizes, in any order, interleaved with the results of the worker's
jobs (transcripts, replies, synthesized sentences, failures), including late results for work
that was cancelled and results for ids that never existed. A fake worker answers each job at
most once, in the order the real one would (``runtime/call_worker.py``: sentences of a reply in
order, nothing after a synthesis failure). After every step the drained actions are checked
against the session's promises (module docstring of ``core.session``, protocol.md §3).
``FrameAssembler`` and ``Endpointer`` are checked against their docstrings on arbitrary chunk
sizes and timestamps.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audio.codec import ulaw_to_pcm16
from audio.endpointing import EndpointingConfig, Endpointer, SpeechStarted, UtteranceEnded
from audio.framing import FrameAssembler
from core.listen_session import ListenSession
from core.protocol import Connected, Dtmf, Mark, Media, MediaFormat, Start, Stop, UnknownEvent
from core.session import (
    CallSession,
    Cancel,
    EndCall,
    HangUp,
    RecordPlayed,
    Respond,
    SessionConfig,
    Send,
    Speak,
    Transcribe,
)

STREAM_SID = "MZ00000000000000000000000000000001"
OTHER_SID = "MZ00000000000000000000000000000002"
CALL_SID = "CA00000000000000000000000000000001"
ULAW_BYTES_PER_MS = 8
PCM_BYTES_PER_MS = 16  # PCM16 at 8 kHz

# database=None: no .hypothesis/ example database in the repo; failures found are pinned with @example.
SETTINGS = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def any_nonzero(frame: bytes) -> bool:
    """Voiced iff not digital silence: μ-law 0x00 is loud, 0xFF decodes to 0."""
    return any(frame)


def hashed(frame: bytes) -> bool:
    """A deterministic coin per frame content, so voiced and unvoiced frames interleave."""
    return hashlib.blake2b(frame, digest_size=1).digest()[0] < 160


VADS = {"any_nonzero": any_nonzero, "hashed": hashed}


# --- script of a call ----------------------------------------------------------------------------

# Payloads are described, not stored, so shrunk examples stay readable.
payloads = st.one_of(
    st.tuples(st.just("voiced"), st.integers(0, 2000)),
    st.tuples(st.just("silent"), st.integers(0, 2000)),
    st.tuples(st.just("random"), st.integers(0, 2000), st.integers(0, 2**16)),
)
media_ops = st.tuples(
    st.just("media"),
    st.sampled_from(["next", "next", "same", "back", "jump", "jitter", "abs"]),
    st.integers(0, 10**6),
    payloads,
    st.sampled_from(["inbound", "inbound", "inbound", "outbound", "both"]),
)
talk_ops = st.tuples(st.just("talk"), st.integers(0, 50).map(lambda n: 20 * n), st.integers(0, 60).map(lambda n: 20 * n))
TEXTS = [None, "", "   ", "hello there", "hello there", "Yes. I can.", "First sentence here. Second one follows! And a third?"]
# (which pending job, or True for an id that was never issued)
results = st.tuples(st.integers(0, 50), st.sampled_from([False, False, False, False, True]))
mark_ops = st.tuples(st.just("mark"), st.integers(0, 50), st.sampled_from(["known", "known", "known", "unknown", "other sid"]))
transcript_ops = st.tuples(st.just("transcript"), results, st.sampled_from(TEXTS), st.sampled_from([None, None, None, "RecognitionError: down"]))
reply_ops = st.tuples(st.just("reply"), results, st.sampled_from(TEXTS), st.sampled_from([None, None, None, "ValueError: bug"]))
speech_ops = st.tuples(st.just("speech"), results, st.integers(0, 4000))
# A streaming responder: pieces of any length (splitting words and sentences), then its end.
chunk_ops = st.tuples(st.just("chunk"), results, st.sampled_from(["Sure", ", I can", " help. ", "Next one", "! And ", "more.", " ", "x" * 90]))
chunk_end_ops = st.tuples(st.just("chunk_end"), results, st.sampled_from([None, None, "APITimeoutError: timed out"]), st.booleans())
rare_ops = st.sampled_from([
    ("stop",), ("close",), ("start",), ("unknown",), ("connected",), ("hang_up", ""), ("hang_up", "Goodbye now."),
])
call_ops = st.one_of(
    st.just(("exchange",)),
    talk_ops, talk_ops, talk_ops,
    media_ops,
    mark_ops, mark_ops,
    transcript_ops, transcript_ops,
    reply_ops, reply_ops,
    chunk_ops, chunk_ops, chunk_end_ops,
    speech_ops, speech_ops, speech_ops,
    st.tuples(st.just("speech_failed"), results),
    st.tuples(st.just("dtmf"), st.sampled_from(list("0123456789*#") + ["", "12"])),
    st.tuples(st.just("goodbye_reply"), results),
    rare_ops,
)
configs = st.fixed_dictionaries({
    "greeting": st.sampled_from(["", "Hello! Say something and I will repeat it."]),
    "dtmf_flush_ms": st.sampled_from([0, 100, 1500]),
    "outbound_chunk_ms": st.sampled_from([20, 7, 100]),
    "stop_ms": st.sampled_from([60, 200, 600]),
    "max_utterance_ms": st.sampled_from([700, 2000, 15000]),
    "vad": st.sampled_from(sorted(VADS)),
    "max_call_ms": st.sampled_from([0, 0, 3000]),
    "idle_nudge_ms": st.sampled_from([0, 0, 1000]),
    "idle_hangup_ms": st.sampled_from([0, 0, 2500]),
    "apology": st.sampled_from(["", "Sorry, say that again?"]),
    "pause_ms": st.sampled_from([0, 40, 200]),
    "speculative_reply": st.booleans(),
})
DEFAULT_CONFIG = {
    "greeting": "", "dtmf_flush_ms": 1500, "outbound_chunk_ms": 20, "stop_ms": 600, "max_utterance_ms": 15000,
    "vad": "any_nonzero", "max_call_ms": 0, "idle_nudge_ms": 0, "idle_hangup_ms": 0, "apology": "",
    "pause_ms": 0, "speculative_reply": False,
}


def make_payload(desc) -> bytes:
    kind, length = desc[0], desc[1]
    if kind == "voiced":
        return b"\x00" * length
    if kind == "silent":
        return b"\xff" * length
    return hashlib.shake_128(desc[2].to_bytes(4, "little")).digest(length) if length else b""


@dataclass
class _Sentence:
    reply_id: int
    mark: str
    audio: bytes
    sent_ms: int  # media time it was sent


@dataclass
class CallDriver:
    """Plays Twilio and the worker around a ``CallSession`` and checks every step's actions."""

    cfg: dict
    # Off only to reproduce the old behaviour (these were bugs, fixed in 3906aef; see the regression tests).
    negative_timestamps: bool = True  # test_a_stream_clock_below_zero_keeps_turns_well_formed
    check_played_after_sent: bool = True  # test_bot_audio_is_never_placed_before_it_was_sent
    session: CallSession = None
    clock_ms: int = 20  # where the next on-time chunk starts
    last_ts_ms: int = 20
    # The fake worker's queues: jobs issued and not answered yet (cancelled ones too: results race).
    transcribe_jobs: list = field(default_factory=list)
    respond_jobs: list = field(default_factory=list)
    speak_jobs: dict = field(default_factory=dict)  # reply_id -> [sentences, next index]
    reply_sentences: dict = field(default_factory=dict)  # reply_id -> every sentence a Speak asked for, in order
    # What was observed.
    steps: int = 0
    stop_step: int | None = None
    end_calls: int = 0
    outstanding_marks: list = field(default_factory=list)  # sent, not echoed, not cleared
    marks_sent: list = field(default_factory=list)
    reply_audio: dict = field(default_factory=dict)  # reply_id -> audio since its last mark
    sentences: list = field(default_factory=list)  # every sentence sent, in order
    placed_upto: int = -1  # index in sentences of the last sentence a RecordPlayed came from
    playout_end_ms: int | None = None
    transcribed: set = field(default_factory=set)
    responded: set = field(default_factory=set)
    cancelled_turns: set = field(default_factory=set)
    cancelled_replies: set = field(default_factory=set)
    spoken: set = field(default_factory=set)
    hang_ups: int = 0
    played: list = field(default_factory=list)  # every RecordPlayed
    speech_given: dict = field(default_factory=dict)  # reply_id -> its sentences' audio passed in, not sent yet

    def __post_init__(self) -> None:
        cfg = {**DEFAULT_CONFIG, **self.cfg}
        endpointing = EndpointingConfig(stop_ms=cfg["stop_ms"], max_utterance_ms=cfg["max_utterance_ms"], pause_ms=cfg["pause_ms"])
        config = SessionConfig(
            endpointing=endpointing, greeting=cfg["greeting"], outbound_chunk_ms=cfg["outbound_chunk_ms"],
            dtmf_flush_ms=cfg["dtmf_flush_ms"], max_call_ms=cfg["max_call_ms"], apology=cfg["apology"],
            idle_nudge_ms=cfg["idle_nudge_ms"], idle_hangup_ms=cfg["idle_hangup_ms"],
            speculative_reply=cfg["speculative_reply"],
        )
        self.session = CallSession(config, VADS[cfg["vad"]])

    # -- inputs ------------------------------------------------------------------------------

    def run(self, ops, settle: bool = False) -> None:
        for op in ops:
            self.step(op)
        if settle:
            self.settle()
        self.session.close()
        self.check(self.session.actions_to_perform(), closing=True)
        assert self.end_calls == 1, "exactly one EndCall once the stream is over"
        self.check_final_record()

    def step(self, op) -> None:
        kind = op[0]
        s = self.session
        if kind == "media":
            _, mode, amount, desc, track = op
            ulaw = make_payload(desc)
            ts = {
                "next": self.clock_ms, "same": self.last_ts_ms, "back": self.clock_ms - 1 - amount % 2000,
                "jump": self.clock_ms + amount, "jitter": self.clock_ms + amount % 21 - 10, "abs": amount - 1000,
            }[mode]
            if not self.negative_timestamps:
                ts = max(ts, 0)
            for t in (["inbound", "outbound"] if track == "both" else [track]):
                s.receive_event(Media(STREAM_SID, t, None, ts, ulaw))
            self.last_ts_ms = ts
            self.clock_ms = ts + len(ulaw) // ULAW_BYTES_PER_MS
        elif kind == "talk":
            _, voiced_ms, silent_ms = op
            for chunk, duration in ((b"\x00" * 160, voiced_ms), (b"\xff" * 160, silent_ms)):
                for _ in range(duration // 20):
                    s.receive_event(Media(STREAM_SID, "inbound", None, self.clock_ms, chunk))
                    self.last_ts_ms = self.clock_ms
                    self.clock_ms += 20
                    self.check(s.actions_to_perform())
        elif kind == "exchange":  # a whole turn: talk, then the worker does every job it has
            self.step(("talk", 600, s.config.endpointing.stop_ms + 100))
            self.work()
            return
        elif kind == "mark":
            _, pick, which = op
            if which == "known" and self.marks_sent:
                name = self.marks_sent[pick % len(self.marks_sent)]
            else:
                name = f"never-sent-{pick}"
            s.receive_event(Mark(OTHER_SID if which == "other sid" else STREAM_SID, name))
            if name in self.outstanding_marks:  # Twilio plays in order: earlier marks have played
                del self.outstanding_marks[: self.outstanding_marks.index(name) + 1]
        elif kind == "dtmf":
            s.receive_event(Dtmf(STREAM_SID, op[1], "inbound_track"))
        elif kind == "start":
            s.receive_event(Start(STREAM_SID, "AC1", CALL_SID, ("inbound",), MediaFormat(), {"From": "+15550001"}))
        elif kind == "stop":
            s.receive_event(Stop(STREAM_SID, "AC1", CALL_SID))
        elif kind == "close":
            s.close()
        elif kind == "unknown":
            s.receive_event(UnknownEvent("surprise"))
        elif kind == "connected":
            s.receive_event(Connected("Call", "1.0.0"))
        elif kind == "transcript":
            _, (pick, stale), text, error = op
            turn_id = self.take(self.transcribe_jobs, pick, stale)
            s.receive_transcript(turn_id, text, error, elapsed_ms=pick)
        elif kind == "reply":
            _, (pick, stale), text, error = op
            turn_id = self.take(self.respond_jobs, pick, stale)
            s.receive_reply(turn_id, text, error, elapsed_ms=pick)
        elif kind == "chunk":  # the responder job goes on: it is not taken off the queue
            _, (pick, stale), text = op
            turn_id = 10_000 + pick if stale or not self.respond_jobs else self.respond_jobs[pick % len(self.respond_jobs)]
            s.receive_reply_chunk(turn_id, text, elapsed_ms=pick)
        elif kind == "chunk_end":
            _, (pick, stale), error, hang_up = op
            turn_id = self.take(self.respond_jobs, pick, stale)
            s.receive_reply_end(turn_id, error, hang_up=hang_up and error is None)
        elif kind == "speech":
            _, (pick, stale), nbytes = op
            reply_id, index = self.next_sentence(pick, stale)
            ulaw = hashlib.shake_128(f"{reply_id}/{index}".encode()).digest(nbytes)
            self.speech_given.setdefault(reply_id, []).append(ulaw)
            s.receive_speech(reply_id, index, ulaw, elapsed_ms=pick)
        elif kind == "speech_failed":
            _, (pick, stale) = op
            reply_id, _ = self.next_sentence(pick, stale, failing=True)
            s.receive_speech_failed(reply_id, "engine down")
        elif kind == "hang_up":
            s.hang_up(op[1], "test")
        elif kind == "goodbye_reply":
            _, (pick, stale) = op
            turn_id = self.take(self.respond_jobs, pick, stale)
            s.receive_reply(turn_id, "Thanks for calling, goodbye!", hang_up=True)
        if kind in ("stop", "close") and self.stop_step is None:
            self.stop_step = self.steps
        self.check(s.actions_to_perform())
        self.steps += 1

    @staticmethod
    def take(jobs: list, pick: int, stale: bool) -> int:
        if stale or not jobs:
            return 10_000 + pick  # never issued
        return jobs.pop(pick % len(jobs))

    def next_sentence(self, pick: int, stale: bool, failing: bool = False) -> tuple[int, int]:
        if stale or not self.speak_jobs:
            return 10_000 + pick, 0
        reply_id = sorted(self.speak_jobs)[pick % len(self.speak_jobs)]
        sentences, index = self.speak_jobs[reply_id]
        if failing or index + 1 == len(sentences):
            del self.speak_jobs[reply_id]  # the worker's job ends
        else:
            self.speak_jobs[reply_id][1] = index + 1
        return reply_id, index

    def work(self, echo: bool = False) -> None:
        """The worker finishes every job it has (and, if ``echo``, Twilio plays every mark)."""
        for _ in range(30):
            if self.transcribe_jobs:
                self.step(("transcript", (0, False), "hello there", None))
            elif self.respond_jobs:
                self.step(("reply", (0, False), "Okay, thank you.", None))
            elif self.speak_jobs:
                self.step(("speech", (0, False), 800))
            elif echo and self.outstanding_marks:
                self.step(("mark", self.marks_sent.index(self.outstanding_marks[-1]), "known"))
            else:
                break

    def settle(self) -> None:
        """The worker finishes every job and Twilio plays everything: the call must come to rest."""
        self.work(echo=True)
        s = self.session
        if self.stop_step is not None or s.start is None:
            return
        assert not s.bot_speaking, "every mark echoed, yet the bot is still speaking"
        if s.hanging_up is not None:
            assert self.hang_ups == 1, f"hanging up ({s.hanging_up}) and the goodbye played, but no HangUp"

    # -- invariants ------------------------------------------------------------------------------

    def check(self, actions: list, closing: bool = False) -> None:
        s = self.session
        over = self.stop_step is not None or closing
        for action in actions:
            if over:
                assert isinstance(action, (Transcribe, Cancel, EndCall, RecordPlayed)), f"{action!r} after the stream ended"
            if isinstance(action, Send):
                self.check_send(action)
            elif isinstance(action, Transcribe):
                assert action.turn_id not in self.transcribed, "a turn is transcribed once"
                self.transcribed.add(action.turn_id)
                assert action.sample_rate == 8000 and action.pcm and len(action.pcm) % 2 == 0
                self.transcribe_jobs.append(action.turn_id)
            elif isinstance(action, Respond):
                assert action.turn_id not in self.responded, "one Respond per turn"
                assert action.turn_id not in self.cancelled_turns, "Respond for a cancelled turn"
                self.responded.add(action.turn_id)
                if action.dtmf is None:
                    assert action.text and action.text == action.text.strip(), f"empty text for the responder: {action!r}"
                else:
                    assert action.text == "" and action.dtmf, f"a key-press turn without keys: {action!r}"
                self.respond_jobs.append(action.turn_id)
            elif isinstance(action, Speak):
                assert action.sentences and all(x and x == x.strip() for x in action.sentences)
                known = self.reply_sentences.setdefault(action.reply_id, [])
                if action.first_index == 0:
                    assert action.reply_id not in self.spoken, "reply ids are fresh"
                else:  # a streamed reply's next sentences: right after the ones before
                    assert action.reply_id in self.spoken, "more sentences for a reply never started"
                    assert action.first_index == len(known), "streamed sentences skip or repeat"
                    assert action.reply_id not in self.cancelled_replies, "more sentences for a cancelled reply"
                self.spoken.add(action.reply_id)
                known.extend(action.sentences)
                job = self.speak_jobs.get(action.reply_id)
                if job is None:  # (a new job: the reply's earlier one, if any, has finished)
                    self.speak_jobs[action.reply_id] = [known, action.first_index]
            elif isinstance(action, Cancel):
                self.cancelled_turns.update(action.turn_ids)
                self.cancelled_replies.update(action.reply_ids)
            elif isinstance(action, EndCall):
                self.end_calls += 1
                assert over, "EndCall before stop/close"
            elif isinstance(action, RecordPlayed):
                self.check_played(action)
            elif isinstance(action, HangUp):
                self.hang_ups += 1
                assert self.hang_ups == 1, "HangUp twice"
                assert s.hanging_up is not None, "HangUp without hang_up()"
            else:
                raise AssertionError(f"unknown action {action!r}")
            if self.hang_ups and not isinstance(action, HangUp):
                assert isinstance(action, (Transcribe, Cancel, EndCall, RecordPlayed)), f"{action!r} after HangUp"
        if not over:
            assert self.end_calls == 0
        if s.record is not None:
            self.check_record()

    def check_send(self, action: Send) -> None:
        s = self.session
        assert s.start is not None, "Send before start"
        message = json.loads(action.text)
        assert message["streamSid"] == STREAM_SID
        event = message["event"]
        if action.reply_id is not None:
            reply = s._replies.get(action.reply_id)
            assert reply is None or s._tentative_turn_of(reply) is None, "reply audio sent before the endpoint confirmed its turn"
        if event == "media":
            assert set(message) == {"event", "streamSid", "media"} and set(message["media"]) == {"payload"}
            assert action.reply_id in self.spoken and action.reply_id not in self.cancelled_replies, "audio of a cancelled reply"
            chunk = base64.b64decode(message["media"]["payload"], validate=True)
            chunk_bytes = s.config.outbound_chunk_ms * ULAW_BYTES_PER_MS
            assert 0 < len(chunk) <= chunk_bytes
            previous = self.reply_audio.get(action.reply_id, b"")
            assert len(previous) % chunk_bytes == 0, "a short media message in the middle of a sentence"
            self.reply_audio[action.reply_id] = previous + chunk
        elif event == "mark":
            assert set(message) == {"event", "streamSid", "mark"} and set(message["mark"]) == {"name"}
            assert action.reply_id in self.spoken and action.reply_id not in self.cancelled_replies
            name = message["mark"]["name"]
            assert name not in self.marks_sent, f"mark name {name!r} reused"
            self.marks_sent.append(name)
            self.outstanding_marks.append(name)
            audio = self.reply_audio.pop(action.reply_id, b"")
            assert audio == self.speech_given[action.reply_id].pop(0), "the media before a mark is not the sentence's audio"
            self.sentences.append(_Sentence(action.reply_id, name, audio, s.now_ms))
        elif event == "clear":
            assert set(message) == {"event", "streamSid"} and action.reply_id is None
            assert self.outstanding_marks, "clear sent with no mark pending"
            self.outstanding_marks.clear()
        else:
            raise AssertionError(f"unexpected outbound event {event!r}")

    def check_played(self, action: RecordPlayed) -> None:
        self.played.append(action)
        assert action.audio, "empty RecordPlayed"
        if self.playout_end_ms is not None:
            assert action.start_ms >= self.playout_end_ms, "played audio overlaps the previous piece"
        self.playout_end_ms = action.start_ms + len(action.audio) // ULAW_BYTES_PER_MS
        assert len(action.audio) % ULAW_BYTES_PER_MS == 0
        # A prefix of a sentence that was sent, each sentence placed at most once, in order.
        for index in range(self.placed_upto + 1, len(self.sentences)):
            if self.sentences[index].audio.startswith(action.audio):
                self.placed_upto = index
                break
        else:
            raise AssertionError("RecordPlayed audio is not a prefix of a sentence sent after the last one placed")
        if self.check_played_after_sent:
            sent_ms = self.sentences[self.placed_upto].sent_ms
            assert action.start_ms >= sent_ms, f"audio sent at {sent_ms} ms placed as played from {action.start_ms} ms"

    def check_record(self) -> None:
        turns = self.session.record.turns
        starts = [t.start_ms for t in turns]
        assert starts == sorted(starts), "turns out of start-time order"
        for turn in turns:
            assert turn.speaker in ("caller", "bot")
            if turn.end_ms is not None:
                assert turn.start_ms <= turn.end_ms, f"turn ends before it starts: {turn.to_json()}"
            if turn.speaker == "caller":
                assert turn.end_ms is not None
                assert turn.text or turn.error is not None or turn.dtmf, f"empty caller turn: {turn.to_json()}"
            for stage, value in (turn.latency_ms or {}).items():
                assert isinstance(value, int) and value >= 0, f"latency {stage} = {value!r}"
            json.dumps(turn.to_json())

    def check_final_record(self) -> None:
        record = self.session.record
        if record is None:
            return
        for turn in record.turns:
            assert turn.end_ms is not None, f"a turn never ended: {turn.to_json()}"


def call_scripts(max_size: int = 50):
    return st.lists(call_ops, min_size=8, max_size=max_size)


def start_first(ops):
    return [("start",)] + ops


# --- 3. CallSession -----------------------------------------------------------------------------


@settings(max_examples=400, **SETTINGS)
@given(configs, call_scripts().map(start_first), st.booleans())
@example(DEFAULT_CONFIG, [("start",), ("talk", 600, 700), ("transcript", (0, False), "hello there", None),
                          ("reply", (0, False), "First sentence here. Second one follows! And a third?", None),
                          ("speech", (0, False), 3200), ("talk", 300, 0), ("mark", 0, "known"), ("stop",)], False)
@example({**DEFAULT_CONFIG, "pause_ms": 200, "speculative_reply": True},
         [("start",), ("talk", 600, 200), ("transcript", (0, False), "hello there", None),
          ("reply", (0, False), "First sentence here. Second one follows!", None), ("speech", (0, False), 800),
          ("speech", (0, False), 480), ("talk", 0, 500), ("mark", 1, "known"), ("talk", 400, 200),
          ("transcript", (0, False), "and more", None), ("reply", (0, False), "Sure.", None), ("speech", (0, False), 160),
          ("talk", 200, 0), ("talk", 0, 700), ("stop",)], True)
def test_call_session_keeps_its_promises_on_any_script(cfg, ops, settle):
    """Never raises, and after every step (``CallDriver.check``): every Send is Twilio's JSON
    with the stream's SID (media/mark/clear only, exact keys, none before start, none for a
    cancelled reply); a sentence's media messages carry exactly its audio, then one mark with a
    fresh name; ``clear`` only while marks are pending; nothing but Transcribe/Cancel/EndCall/
    RecordPlayed after stop or close, exactly one EndCall; played audio is a prefix of a sent
    sentence, in order, never overlapping; turns in start order with start <= end and every turn
    ended at the end; the responder never gets empty text (or a key-press turn without keys);
    one HangUp at most, only after ``hang_up``. With ``settle`` the worker then finishes every
    job and Twilio plays every mark: the bot must be quiet and a pending goodbye hung up."""
    CallDriver(cfg).run(ops, settle)


@settings(max_examples=100, **SETTINGS)
@given(configs, call_scripts(25))
def test_call_session_keeps_its_promises_before_start_too(cfg, ops):
    """Scripts that do not begin with ``start``: media, marks, results before it are harmless."""
    CallDriver(cfg).run(ops)


@dataclass
class LoggingDriver(CallDriver):
    """A CallDriver that also keeps the actions it checked, for targeted properties."""

    log: list = field(default_factory=list)

    def check(self, actions, closing=False):
        self.log.extend(actions)
        super().check(actions, closing)

    def take_log(self) -> list:
        actions, self.log = self.log, []
        return actions


def of_type(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


@settings(max_examples=60, **SETTINGS)
@given(
    first_ms=st.integers(10, 60).map(lambda n: 20 * n),
    pause_ms=st.integers(31, 150).map(lambda n: 20 * n),
    second_ms=st.integers(10, 60).map(lambda n: 20 * n),
    progress=st.sampled_from(["nothing", "transcribed", "replied", "replied, synthesis failed"]),
)
def test_speaking_again_before_any_reply_audio_merges_the_two_utterances(first_ms, pause_ms, second_ms, progress):
    """Continuation (session docstring): the reply to the first utterance is abandoned and the
    two utterances are transcribed together as one turn, whatever stage the first one reached."""
    d = LoggingDriver(DEFAULT_CONFIG)
    d.step(("start",))
    d.step(("talk", 0, 200))
    d.step(("talk", first_ms, pause_ms))
    [first] = of_type(d.take_log(), Transcribe)
    if progress != "nothing":
        d.step(("transcript", (0, False), "I would like", None))
        [respond] = of_type(d.take_log(), Respond)
    if progress.startswith("replied"):
        d.step(("reply", (0, False), "What would you like? Please tell me.", None))
        [speak] = of_type(d.take_log(), Speak)
        if progress.endswith("failed"):
            d.step(("speech_failed", (0, False)))
    d.step(("talk", second_ms, 0))
    cancels = of_type(d.take_log(), Cancel)
    assert any(first.turn_id in c.turn_ids for c in cancels), "the first turn's work is cancelled"
    if progress.startswith("replied") and not progress.endswith("failed"):
        assert any(speak.reply_id in c.reply_ids for c in cancels), "its reply is abandoned"
        d.step(("speech", (0, False), 800))  # late synthesis of the abandoned reply
        assert of_type(d.take_log(), Send) == []
    if progress == "transcribed":
        d.step(("reply", (0, False), "Late answer.", None))  # the responder answers the first half
        assert of_type(d.take_log(), Speak) == []
    d.step(("talk", 0, 700))
    [merged] = of_type(d.take_log(), Transcribe)
    assert merged.pcm.startswith(first.pcm) and len(merged.pcm) >= len(first.pcm) + second_ms * PCM_BYTES_PER_MS
    d.transcribe_jobs[:] = [merged.turn_id]
    d.step(("transcript", (0, False), "I would like a pizza", None))
    [respond2] = of_type(d.take_log(), Respond)
    assert respond2.text == "I would like a pizza"
    callers = [t for t in d.session.record.turns if t.speaker == "caller"]
    assert len(callers) == 1 and callers[0].text == "I would like a pizza", [t.to_json() for t in callers]
    # Silence from 20 ms, first utterance at 220 ms, the pause, the second utterance.
    assert callers[0].start_ms == 220 and callers[0].end_ms == 220 + first_ms + pause_ms + second_ms
    d.run([])


@settings(max_examples=80, **SETTINGS)
@given(
    sizes=st.lists(st.integers(0, 8000), min_size=1, max_size=3),
    echoed=st.integers(0, 3),
    played_ms=st.integers(0, 60).map(lambda n: 20 * n),
    talk_ms=st.integers(15, 40).map(lambda n: 20 * n),
    by_key=st.booleans(),
)
def test_barge_in_clears_exactly_what_is_queued(sizes, echoed, played_ms, talk_ms, by_key):
    """Barge-in (session docstring): speech or a key press while reply audio is queued at Twilio
    sends one ``clear``, cancels the reply, records it as interrupted with what was heard, and
    places no more audio than was sent; late echoes and late synthesis change nothing."""
    text = "First sentence here. Second one follows! A third one, to be sure."
    d = LoggingDriver(DEFAULT_CONFIG)
    d.step(("start",))
    d.step(("talk", 600, 700))
    d.step(("transcript", (0, False), "tell me three things", None))
    d.step(("reply", (0, False), text, None))
    [speak] = of_type(d.take_log(), Speak)
    sizes = sizes[: len(speak.sentences)]
    for size in sizes:
        d.step(("speech", (0, False), size))
    marks = list(d.marks_sent)
    echoed = min(echoed, len(marks))
    d.step(("talk", 0, played_ms))
    for index in range(echoed):
        d.step(("mark", index, "known"))
    d.take_log()
    queued = echoed < len(marks)
    still_talking = queued or len(sizes) < len(speak.sentences)
    if by_key:
        d.step(("dtmf", "5"))
    else:
        d.step(("talk", talk_ms, 0))
    actions = d.take_log()
    clears = [a for a in of_type(actions, Send) if json.loads(a.text)["event"] == "clear"]
    assert len(clears) == int(queued), "clear exactly when marks are pending"
    bot = [t for t in d.session.record.turns if t.speaker == "bot"][-1]
    if still_talking:
        assert any(speak.reply_id in c.reply_ids for c in of_type(actions, Cancel))
        assert bot.interrupted is True and bot.end_ms is not None
        assert bot.heard == " ".join(speak.sentences[:echoed])
    else:
        assert bot.interrupted is None
    assert sum(len(p.audio) for p in d.played) <= sum(sizes)
    if still_talking:
        for index in range(len(marks)):  # Twilio echoes the cleared marks; late synthesis arrives
            d.step(("mark", index, "known"))
        d.step(("speech", (0, False), 160))
        assert of_type(d.take_log(), (Send, RecordPlayed)) == []
    d.run([])


# Bugs the properties above found, kept as regression tests at their shrunk examples.


@settings(max_examples=30, **SETTINGS)
@given(configs, call_scripts(15).map(start_first), st.sampled_from(["stop", "close"]))
@example(DEFAULT_CONFIG, [("start",), ("stop",), ("stop",)], "stop")
@example(DEFAULT_CONFIG, [("start",), ("close",), ("stop",)], "stop")
def test_a_second_stop_ends_the_call_once(cfg, ops, first):
    """A ``stop`` after ``stop`` or ``close()`` (a duplicate, or a socket that closed first).
    Found by these properties (a second EndCall); fixed in ccbf51b, kept as a regression test."""
    CallDriver(cfg).run(ops + [(first,), ("stop",)])


# Was: CallSession._on_start accepted a start after stop, so the greeting's Speak came after EndCall.
@settings(max_examples=30, **SETTINGS)
@given(configs.map(lambda c: {**c, "greeting": "Hello there, welcome!"}), call_scripts(10))
@example({**DEFAULT_CONFIG, "greeting": "Hello there, welcome!"}, [("stop",), ("start",)])
def test_a_start_after_stop_is_ignored(cfg, ops):
    """Not reachable through ``runtime/call_worker.py`` (it creates the session on ``start``),
    but the session's own contract is "nothing after stop but Transcribe/Cancel/EndCall/RecordPlayed"."""
    CallDriver(cfg).run([("stop",)] + ops + [("start",)])


# Was: CallSession._on_dtmf took an empty digit (the parser accepted "digit": "") as a key press.
@settings(max_examples=30, **SETTINGS)
@given(configs.map(lambda c: {**c, "dtmf_flush_ms": 0}), call_scripts(10).map(start_first))
@example({**DEFAULT_CONFIG, "dtmf_flush_ms": 0}, [("start",)])
def test_an_empty_dtmf_digit_is_not_a_key_press(cfg, ops):
    """``Dtmf(digit="")`` (the parser now rejects ``"digit": ""``): the session used to ask the
    responder about no keys and record a caller turn with no text and no keys."""
    CallDriver(cfg).run(ops + [("dtmf", "")])


# Was: now_ms starts at 0, so bot audio before the first media is stamped 0; media stamped below 0 then ended the bot turn before it started.
@settings(max_examples=30, **SETTINGS)
@given(configs.map(lambda c: {**c, "greeting": "Hello there, welcome!"}), st.integers(0, 999))
@example({**DEFAULT_CONFIG, "greeting": "Hello there, welcome!"}, 0)
def test_a_stream_clock_below_zero_keeps_turns_well_formed(cfg, abs_ms):
    """The greeting's audio is sent before any inbound media (its turn starts at now_ms = 0);
    then media stamped -1000 ms (the parser now rejects it) talked over it: the interrupted bot
    turn got end_ms = -800 < start_ms = 0."""
    driver = CallDriver(cfg, negative_timestamps=True)
    driver.run([("start",), ("speech", (0, False), 160), ("media", "abs", abs_ms, ("voiced", 2400), "inbound")])


# Was: _record_played placed a mark-echoed sentence at echo - duration, before it was sent when inbound media stalls.
@settings(max_examples=30, **SETTINGS)
@given(configs, call_scripts(15).map(start_first))
@example(DEFAULT_CONFIG, [("start",), ("exchange",), ("mark", 0, "known")])
def test_bot_audio_is_never_placed_before_it_was_sent(cfg, ops):
    """Twilio may send no inbound chunks during silence (protocol.md §7, §10 item 15): the media
    clock stalls while the bot talks, and the mark echo arrives with now_ms = the send time. The
    sentence (100 ms here) was placed from 100 ms before it was sent."""
    CallDriver(cfg, check_played_after_sent=True).run(ops + [("exchange",), ("mark", 1, "known")])


# --- 4. ListenSession ---------------------------------------------------------------------------

listen_ops = st.one_of(
    media_ops,
    st.tuples(st.just("talk2"), st.integers(0, 60).map(lambda n: 20 * n), st.integers(0, 60).map(lambda n: 20 * n),
              st.sampled_from(["inbound", "outbound", "both"])),
    st.tuples(st.just("mark"), st.integers(0, 5), st.just("unknown")),
    st.tuples(st.just("dtmf"), st.sampled_from(["1", "#"])),
    st.just(("start",)),
    st.just(("stop",)),
    st.just(("close",)),
    st.just(("unknown",)),
    st.tuples(st.just("transcript"), results, st.sampled_from(TEXTS), st.sampled_from([None, "RecognitionError: down"])),
)


def run_listen(tracks, vad_name, ops):
    session = ListenSession(EndpointingConfig(stop_ms=200, max_utterance_ms=2000), lambda: VADS[vad_name])
    jobs: list[int] = []
    end_calls = 0
    clock = {"inbound": 20, "outbound": 20}
    over = False
    for op in ops + [("close",)]:
        kind = op[0]
        if kind == "media":
            _, mode, amount, desc, track = op
            ulaw = make_payload(desc)
            for t in (["inbound", "outbound"] if track == "both" else [track]):
                ts = {"next": clock[t], "same": clock[t], "back": clock[t] - 1 - amount % 2000, "jump": clock[t] + amount,
                      "jitter": clock[t] + amount % 21 - 10, "abs": amount - 1000}[mode]
                session.receive_event(Media(STREAM_SID, t, None, ts, ulaw))
                clock[t] = ts + len(ulaw) // 8
        elif kind == "talk2":
            _, voiced_ms, silent_ms, track = op
            for chunk, duration in ((b"\x00" * 160, voiced_ms), (b"\xff" * 160, silent_ms)):
                for _ in range(duration // 20):
                    for t in (["inbound", "outbound"] if track == "both" else [track]):
                        session.receive_event(Media(STREAM_SID, t, None, clock[t], chunk))
                        clock[t] += 20
        elif kind == "mark":
            session.receive_event(Mark(STREAM_SID, f"m{op[1]}"))
        elif kind == "dtmf":
            session.receive_event(Dtmf(STREAM_SID, op[1]))
        elif kind == "start":
            session.receive_event(Start(STREAM_SID, "AC1", CALL_SID, tracks, MediaFormat(), {}))
        elif kind == "stop":
            session.receive_event(Stop(STREAM_SID))
        elif kind == "close":
            session.close()
        elif kind == "unknown":
            session.receive_event(UnknownEvent("surprise"))
        elif kind == "transcript":
            _, (pick, stale), text, error = op
            turn_id = 10_000 + pick if stale or not jobs else jobs.pop(pick % len(jobs))
            session.receive_transcript(turn_id, text, error, elapsed_ms=pick)
        over = over or kind in ("stop", "close")
        for action in session.actions_to_perform():
            assert isinstance(action, (Transcribe, EndCall)), f"a fork only transcribes: {action!r}"
            if isinstance(action, Transcribe):
                assert action.pcm and len(action.pcm) % 2 == 0 and action.sample_rate == 8000
                jobs.append(action.turn_id)
            else:
                end_calls += 1
                assert over
        if session.record is not None:
            turns = session.record.turns
            assert [t.start_ms for t in turns] == sorted(t.start_ms for t in turns)
            assert all(t.speaker in ("caller", "callee") and t.start_ms < t.end_ms for t in turns)
            assert session.record.mode == "fork"
    assert end_calls == 1, f"{end_calls} EndCall actions"
    # Transcripts that arrive after the end still go into the record.
    for turn_id in jobs:
        session.receive_transcript(turn_id, "late words")
    assert session.actions_to_perform() == []


@settings(max_examples=100, **SETTINGS)
@given(
    st.sampled_from([("inbound", "outbound"), ("inbound",), ("outbound",), ()]),
    st.sampled_from(sorted(VADS)),
    st.lists(listen_ops, max_size=30).map(start_first),
)
def test_listen_session_never_sends_and_keeps_turns_in_order(tracks, vad_name, ops):
    run_listen(tracks, vad_name, ops)


# --- 5. FrameAssembler and Endpointer -------------------------------------------------------------

# Codes 0x00..0x7E decode to non-zero samples: a zero sample in a frame can only be fill.
NONZERO_ULAW = st.binary(max_size=2000).map(lambda b: bytes(x % 0x7F for x in b))
chunk_scripts = st.lists(
    st.tuples(
        NONZERO_ULAW,
        st.sampled_from(["next", "next", "next", "same", "back", "small gap", "gap", "jump", "jitter"]),
        st.integers(0, 10**5),
    ),
    max_size=30,
)


def chunk_timestamps(script, first_ms):
    """Resolve each chunk's timestamp against the end of the previous chunk (as stated)."""
    stated_end, previous = first_ms, first_ms
    for ulaw, mode, amount in script:
        ts = {
            "next": stated_end, "same": previous, "back": stated_end - 1 - amount % 500,
            "small gap": stated_end + amount % 60, "gap": stated_end + amount % 3000,
            "jump": stated_end + amount, "jitter": stated_end + amount % 21 - 10,
        }[mode]
        yield ulaw, ts
        previous, stated_end = ts, ts + len(ulaw) // 8


@settings(max_examples=200, **SETTINGS)
@given(
    frame_ms=st.sampled_from([10, 20, 30]),
    max_gap_fill_ms=st.sampled_from([2000, 100, 30]),
    first_ms=st.integers(-1000, 10**6),
    script=chunk_scripts,
)
def test_frame_assembler_frames_are_whole_on_the_grid_and_lose_no_audio(frame_ms, max_gap_fill_ms, first_ms, script):
    assembler = FrameAssembler(frame_ms=frame_ms, max_gap_fill_ms=max_gap_fill_ms)
    frames = []
    received = b""
    origin = None
    whole_ms = True
    for ulaw, ts in chunk_timestamps(script, first_ms):
        expected_before = assembler.expected_timestamp_ms
        jumps_before = assembler.clock_jumps
        new = assembler.push(ulaw, ts)
        if not ulaw:
            assert new == [] and assembler.expected_timestamp_ms == expected_before
            continue
        received += ulaw
        jumped = assembler.clock_jumps > jumps_before
        if origin is None or jumped:
            origin = ts  # the grid (re)starts at this chunk
        # Where this chunk's audio went (the clock is kept in samples: check while it is on whole ms).
        whole_ms = whole_ms and len(ulaw) % 8 == 0
        placed_ms = assembler.expected_timestamp_ms - len(ulaw) // 8
        if whole_ms and expected_before is not None and not jumped:
            if ts >= expected_before:  # on time or late: a gap of half a frame or more is filled
                assert placed_ms == (ts if 2 * (ts - expected_before) >= frame_ms else expected_before)
            else:  # early (overlap): the audio goes on at the clock
                assert placed_ms == expected_before
        for frame in new:
            assert len(frame.pcm) == assembler.frame_bytes == 16 * frame_ms
            if frame.filled:
                assert not any(frame.pcm), "a filled frame is silence"
        if jumped:  # at most one frame (the old grid's remainder, padded) before the chunk's timestamp
            before = [f for f in new if f.timestamp_ms < ts]
            assert len(before) <= 1 and not any(f.filled for f in before)
            new_grid = new[len(before):]
        else:
            new_grid = new
        assert all((f.timestamp_ms - origin) % frame_ms == 0 for f in new_grid), "frame off the grid"
        frames.extend(new)
    stamps = [f.timestamp_ms for f in frames]
    assert all(b - a >= frame_ms for a, b in zip(stamps, stamps[1:])), f"frames overlap or go back: {stamps}"
    # No audio lost, duplicated or reordered: the non-zero samples are exactly what was received.
    samples = b"".join(f.pcm for f in frames)
    kept = b"".join(samples[i:i + 2] for i in range(0, len(samples), 2) if samples[i:i + 2] != b"\0\0")
    decoded = ulaw_to_pcm16(received)
    assert decoded.startswith(kept) and len(decoded) - len(kept) < assembler.frame_bytes, "audio lost"
    assert assembler.filled_frames == sum(f.filled for f in frames)


def voiced_frame(frame: bytes) -> bool:
    """The fake classifier of these scripts: bit 1 of the first sample."""
    return bool(int.from_bytes(frame[:2], "little", signed=True) & 2)


def make_frame(index: int, voiced: bool, frame_bytes: int) -> bytes:
    value = 4 * (index % 8000) + 1 + 2 * int(voiced)  # odd (never silence), bit 1 = voiced, index for identity
    return value.to_bytes(2, "little", signed=True) * (frame_bytes // 2)


endpointing_configs = st.builds(
    lambda frame_ms, start_frames, extra, stop_ms, pre_roll_ms, max_extra: EndpointingConfig(
        frame_ms=frame_ms, start_ms=start_frames * frame_ms, start_window_ms=(start_frames + extra) * frame_ms,
        stop_ms=stop_ms, pre_roll_ms=pre_roll_ms,
        max_utterance_ms=(start_frames + extra) * frame_ms + pre_roll_ms + frame_ms + max_extra,
    ),
    st.sampled_from([10, 20, 30]),
    st.integers(1, 10),
    st.integers(0, 5),
    st.integers(1, 800) | st.integers(1, 40).map(lambda n: 30 * n),  # (30: a multiple of every frame size)
    st.integers(0, 400),
    st.integers(1, 2000),
)
frame_scripts = st.lists(
    st.tuples(st.booleans(), st.integers(1, 40), st.sampled_from([0, 0, 0, 0, 1, 7, 40])),  # (voiced, run of frames, gap before, in frames)
    max_size=30,
)


@settings(max_examples=200, **SETTINGS)
@given(config=endpointing_configs, first_ms=st.integers(-500, 10**6), script=frame_scripts, sub_ms=st.integers(0, 9))
def test_endpointer_utterances_match_their_docstrings(config, first_ms, script, sub_ms):
    endpointer = Endpointer(config, voiced_frame)
    fb, fms = config.frame_bytes, config.frame_ms
    timeline: dict[int, tuple[bytes, bool]] = {}
    events = []
    t = first_ms
    index = 0
    for voiced, run, gap_frames in script:
        t += gap_frames * fms + (sub_ms if gap_frames else 0)  # gaps need not be whole frames
        for _ in range(run):
            frame = make_frame(index, voiced, fb)
            timeline[t] = (frame, voiced)
            events += [(e, t) for e in endpointer.push(frame, t)]
            t += fms
            index += 1
    in_speech = endpointer.in_speech
    finished = endpointer.finish()
    assert len(finished) == int(in_speech) and all(e.utterance.forced for e in finished)
    assert not endpointer.in_speech
    events += [(e, None) for e in finished]

    # Starts and ends alternate, beginning with a start; each end matches its start.
    open_start = None
    utterances = []
    for event, _pushed_at in events:
        if isinstance(event, SpeechStarted):
            assert open_start is None, "two SpeechStarted without an end"
            open_start = event
            assert event.detected_ms >= event.voice_start_ms + fms
        else:
            assert isinstance(event, UtteranceEnded) and open_start is not None, "UtteranceEnded without a start"
            utt = event.utterance
            assert utt.voice_start_ms == open_start.voice_start_ms
            utterances.append((utt, event.detected_ms))
            open_start = None
    assert open_start is None, "finish() closes the utterance in progress"

    previous_end = None
    for utt, detected_ms in utterances:
        assert utt.start_ms <= utt.voice_start_ms < utt.end_ms <= detected_ms
        assert utt.voice_start_ms - utt.start_ms < config.pre_roll_ms + fms, "pre-roll rounded up to whole frames at most"
        assert len(utt.pcm) == (utt.end_ms - utt.start_ms) * config.sample_rate // 1000 * 2 == utt.duration_ms * 16
        # Cut by the frame that reaches max_utterance_ms; that frame may come after a gap
        # shorter than stop_ms, filled with zeros: the overshoot is less than stop_ms + a frame.
        assert len(utt.pcm) < (config.max_utterance_ms + config.stop_ms + fms) * 16
        if not any(gap for _, _, gap in script):
            assert len(utt.pcm) <= -(-config.max_utterance_ms // fms) * fms * 16  # rounded up to whole frames
        if previous_end is not None:
            assert utt.start_ms >= previous_end, "utterances overlap"
        previous_end = utt.end_ms
        # The first voiced frame and the last frame are voiced; the audio is the frames at their times.
        assert timeline[utt.voice_start_ms][1], "voice_start_ms is not a voiced frame"
        assert timeline[utt.end_ms - fms][1], "end_ms is not the end of a voiced frame"
        if not utt.forced:
            assert detected_ms - utt.end_ms >= config.stop_ms, "ended before stop_ms of non-speech"
        # Frames where they were pushed, zeros in the gaps (gaps need not be whole frames).
        expected = bytearray((utt.end_ms - utt.start_ms) * 16)
        for ts, (frame, _) in timeline.items():
            if utt.start_ms <= ts < utt.end_ms:
                expected[(ts - utt.start_ms) * 16:(ts - utt.start_ms) * 16 + fb] = frame
        assert utt.pcm == bytes(expected), "utterance audio is not the frames at their media times"


def runs_of_voiced(timeline, fms):
    """Maximal runs of contiguous voiced frames: lists of timestamps."""
    runs, current, previous = [], [], None
    for ts in sorted(timeline):
        voiced = timeline[ts][1]
        if voiced and current and previous == ts - fms:
            current.append(ts)
        elif voiced:
            if current:
                runs.append(current)
            current = [ts]
        else:
            if current:
                runs.append(current)
            current = []
        previous = ts
    if current:
        runs.append(current)
    return runs


@settings(max_examples=150, **SETTINGS)
@given(config=endpointing_configs, script=frame_scripts)
def test_endpointer_covers_every_voiced_run_long_enough_to_start(config, script):
    """A run of ``start_ms`` of contiguous voiced frames always ends up inside an utterance,
    even across forced cuts at ``max_utterance_ms`` (the next voiced frame resumes at once)."""
    assert_voiced_runs_covered(config, script)


def assert_voiced_runs_covered(config, script):
    endpointer = Endpointer(config, voiced_frame)
    fb, fms = config.frame_bytes, config.frame_ms
    timeline = {}
    utterances = []
    t, index = 0, 0
    for voiced, run, gap_frames in script:
        t += gap_frames * fms
        for _ in range(run):
            frame = make_frame(index, voiced, fb)
            timeline[t] = (frame, voiced)
            utterances += [e.utterance for e in endpointer.push(frame, t) if isinstance(e, UtteranceEnded)]
            t += fms
            index += 1
    utterances += [e.utterance for e in endpointer.finish()]
    for run in runs_of_voiced(timeline, fms):
        if len(run) * fms < config.start_ms:
            continue
        for ts in run:
            assert any(u.start_ms <= ts < u.end_ms for u in utterances), f"voiced frame at {ts} ms in no utterance"


@settings(max_examples=120, **SETTINGS)
@given(
    max_gap_fill_ms=st.sampled_from([2000, 20, 35, 0, 5, 15]),
    first_ms=st.integers(-1000, 10**6),
    script=st.lists(st.tuples(st.sampled_from([b"\x00", b"\xff", b"\x10"]), st.integers(0, 700),
                              st.sampled_from(["next", "same", "back", "small gap", "gap", "jump", "jitter"]),
                              st.integers(0, 10**5)), max_size=40),
)
def test_frame_assembler_feeds_the_endpointer_without_overlap(max_gap_fill_ms, first_ms, script):
    """Whatever the chunk timestamps, the frames are a valid input for ``Endpointer.push``."""
    assembler = FrameAssembler(frame_ms=20, max_gap_fill_ms=max_gap_fill_ms)
    endpointer = Endpointer(EndpointingConfig(stop_ms=200, max_utterance_ms=2000), any_nonzero)
    resolved = chunk_timestamps([(byte * n, mode, amount) for byte, n, mode, amount in script], first_ms)
    for ulaw, ts in resolved:
        for frame in assembler.push(ulaw, ts):
            endpointer.push(frame.pcm, frame.timestamp_ms)
    endpointer.finish()


# Was a bug found by the properties (fixed): FrameAssembler with max_gap_fill_ms < frame_ms: the padded remainder frame overlaps the frames after a clock jump
@settings(max_examples=50, **SETTINGS)
@given(
    max_gap_fill_ms=st.sampled_from([0, 5, 15]),
    script=st.lists(st.tuples(st.integers(1, 400), st.integers(0, 40)), max_size=10),
)
@example(max_gap_fill_ms=0, script=[(1, 0), (160, 10)])  # 1 byte at 0 ms, 160 bytes at 11 ms
def test_frame_assembler_frames_never_overlap_with_a_small_max_gap_fill(max_gap_fill_ms, script):
    """Module docstring: frame timestamps lie on a grid, restarted only at a clock jump; the
    Endpointer raises ValueError on an overlapping frame. Chunks: (bytes, ms of gap after the
    previous chunk's end)."""
    assembler = FrameAssembler(frame_ms=20, max_gap_fill_ms=max_gap_fill_ms)
    endpointer = Endpointer(EndpointingConfig(), any_nonzero)
    ts = 0
    for nbytes, gap_ms in script:
        ts += gap_ms
        for frame in assembler.push(b"\x00" * nbytes, ts):
            endpointer.push(frame.pcm, frame.timestamp_ms)
        ts += -(-nbytes // 8)


# Was a bug found by the properties (fixed): after a forced cut, resume is cleared by the frame's end, not its start: a pause shorter than stop_ms (not a whole number of frames) loses the resume
@settings(max_examples=50, **SETTINGS)
@given(config=endpointing_configs, script=frame_scripts)
@example(
    config=EndpointingConfig(frame_ms=10, start_ms=20, start_window_ms=20, stop_ms=1, pre_roll_ms=0, max_utterance_ms=31),
    script=[(True, 9, 0)],
)
@example(  # realistic: ENDPOINT_SILENCE_MS=250 with 20 ms frames, a 240 ms pause after a cut
    config=EndpointingConfig(frame_ms=20, start_ms=200, start_window_ms=300, stop_ms=250, pre_roll_ms=300, max_utterance_ms=1000),
    script=[(True, 50, 0), (False, 12, 0), (True, 9, 0)],
)
def test_a_forced_cut_resumes_on_speech_within_stop_ms(config, script):
    """Endpointing docstring: "If the frame at the cut is voiced, the next voiced frame within
    stop_ms starts a new utterance at once". In the second example the 9 voiced frames after the
    240 ms pause (< stop_ms 250, so no end of utterance either) are in no utterance."""
    assert_voiced_runs_covered(config, script)
