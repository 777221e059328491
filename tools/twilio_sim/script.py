"""The simulated call's script: parsing the items, and playing them tick by tick.

``CallerScript`` is the caller of a conversation (items between waits for the
bot); ``ForkScript`` is both sides of a forked call (caller and callee items one
after another, no waiting). Both log when each audio item was sent (``spoken``).

Pure: no I/O; time comes in as arguments (monotonic seconds).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tools.twilio_sim.frames import FRAME_MS, split_frames
from tools.twilio_sim.media_format import MULAW_8K, MediaFormat

DTMF_INTERVAL_MS = 100
CALLEE_PREFIX = "callee:"  # fork mode: an audio file the dialled party speaks (the outbound track)
OVER_PREFIX = "over:"  # over:SECONDS:FILE: the caller says FILE over the bot's reply (a backchannel, a cough)
DTMF_DIGITS = "0123456789*#"
REPLY_EXPECTED_AFTER = ("audio", "dtmf")  # script item kinds the bot answers; waits after them need a reply


@dataclass(frozen=True)
class ScriptItem:
    """One step of the caller's script.

    Attributes:
        kind: "audio", "dtmf", "silence", "interrupt" (the wait before the next item ends
            once the bot's reply has played for ``seconds``: a barge-in) or "over" (during that
            wait, once the reply has played for ``seconds``, the caller says ``path`` over it and
            then waits on as before: a backchannel or a cough, not a turn).
        token: the command-line argument it came from (for messages).
        path: audio file path (kinds "audio" and "over").
        digits: DTMF digits, each one of ``DTMF_DIGITS`` (kind "dtmf").
        seconds: silence duration, or reply playback before interrupting or talking over it, in seconds, > 0.
        track: who speaks an audio item: "inbound" (the caller) or, for a ``callee:`` item in
            fork mode, "outbound" (the dialled party, heard by the caller).
    """

    kind: str
    token: str
    path: str | None = None
    digits: str | None = None
    seconds: float | None = None
    track: str = "inbound"


@dataclass(frozen=True)
class SpokenItem:
    """When an audio item was sent, on the tick clock.

    Attributes:
        track: "inbound" (caller) or "outbound" (callee).
        index: position of the item in the script.
        token: the item's command-line argument.
        start_tick: index of the 20 ms tick whose media carried the item's first frame (tick n
            carries media timestamp ``first_timestamp_ms + 20 * n``).
        duration_ms: the item's audio length in ms (rounded), without frame padding.
    """

    track: str
    index: int
    token: str
    start_tick: int
    duration_ms: int


def parse_script(tokens: list[str], fork: bool = False) -> list[ScriptItem]:
    """Parse the positional arguments into script items (no file access).

    Args:
        tokens: e.g. ``["hello.wav", "dtmf:12#", "silence:2.5", "over:1.5:mhm.wav"]``. Anything not
            starting with ``dtmf:``, ``silence:``, ``interrupt:``, ``over:`` or ``callee:`` is an
            audio file path (the caller speaks it).
        fork: the script of a listen-only fork: ``callee:PATH`` items (the dialled party
            speaks PATH) are allowed; ``dtmf:``, ``interrupt:`` and ``over:`` items are not.

    Returns:
        The items, in order.

    Raises:
        ValueError: empty or invalid DTMF digits, a silence duration that is not a
            finite number > 0, a ``callee:`` item without ``fork`` or without a path,
            an ``over:`` item without ``SECONDS:FILE``, or a ``dtmf:``/``interrupt:``/``over:`` item
            with ``fork``.
    """
    items = []
    for token in tokens:
        if token.startswith(CALLEE_PREFIX):
            if not fork:
                raise ValueError(f"{token!r}: callee: items need --fork (a bidirectional stream carries only "
                                 "the caller's audio; the other side is the bot)")
            path = token[len(CALLEE_PREFIX):]
            if not path:
                raise ValueError(f"{token!r}: callee: needs an audio file path, e.g. callee:answer.wav")
            items.append(ScriptItem("audio", token, path=path, track="outbound"))
            continue
        if fork and token.startswith("dtmf:"):
            raise ValueError(f"{token!r}: dtmf: items need a bidirectional stream (Twilio sends no dtmf "
                             "messages on a <Start><Stream> fork)")
        if fork and token.startswith(("interrupt:", OVER_PREFIX)):
            raise ValueError(f"{token!r}: {token.partition(':')[0]}: needs a bot to talk over; --fork plays the items "
                             "one after another (--gap-s apart)")
        if token.startswith("dtmf:"):
            digits = token[len("dtmf:"):]
            if not digits or any(d not in DTMF_DIGITS for d in digits):
                raise ValueError(f"{token!r}: DTMF digits must be one or more of {DTMF_DIGITS}")
            items.append(ScriptItem("dtmf", token, digits=digits))
        elif token.startswith(("silence:", "interrupt:")):
            kind, _, value = token.partition(":")
            items.append(ScriptItem(kind, token, seconds=_seconds(token, kind, value, f"{kind}:2.5")))
        elif token.startswith(OVER_PREFIX):
            value, _, path = token[len(OVER_PREFIX):].partition(":")
            if not path:
                raise ValueError(f"{token!r}: over: needs SECONDS:FILE, e.g. over:1.5:mhm.wav")
            items.append(ScriptItem("over", token, path=path, seconds=_seconds(token, "over", value, "over:1.5:FILE")))
        elif not token:
            raise ValueError("empty script item")
        else:
            items.append(ScriptItem("audio", token, path=token))
    return items


def _seconds(token: str, kind: str, value: str, example: str) -> float:
    """An item's duration in seconds: a finite number > 0 (ValueError otherwise)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{token!r}: {kind} needs a duration in seconds, e.g. {example}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{token!r}: {kind} duration must be > 0 seconds")
    return seconds


@dataclass
class _Wait:
    """A wait for the bot in a ``CallerScript``: what the caller does during it besides sending silence.

    Attributes:
        interrupt_after_s: end the wait once the bot's reply has played this long (``interrupt:``), or None.
        overs: ``over:`` items said during the wait, as (script index, item), in script order.
    """

    interrupt_after_s: float | None = None
    overs: list = field(default_factory=list)


@dataclass
class CallerTick:
    """What the caller sends on one 20 ms tick.

    Attributes:
        payload: this tick's media payload: one 20 ms frame in the script's ``MediaFormat``
            (160 bytes of μ-law on Twilio).
        digits: DTMF digits to send (as ``dtmf`` messages) before the media message.
        note: a human-readable event that started on this tick, or None.
    """

    payload: bytes
    digits: list[str] = field(default_factory=list)
    note: str | None = None

    @property
    def ulaw(self) -> bytes:
        """``payload``, by its name on a μ-law stream."""
        return self.payload


class CallerScript:
    """The caller's behaviour, tick by tick: wait for the bot, speak an item, repeat.

    ``interrupt:`` and ``over:`` items belong to the wait before the next item (the wait after
    the item before them). During that wait, each ``over:SECONDS:FILE`` is said once the bot's
    reply has played for SECONDS (``TurnWaiter.playing_for_s``; several in order of SECONDS),
    and the wait then goes on as before: the caller waits until the bot is quiet again. An
    ``over:`` item whose time never comes (the reply stopped or the wait ended first) is not said,
    and the note that ends the wait says so.

    Pure: the runtime passes the clock in (``now_s``, monotonic seconds) and
    tells the ``TurnWaiter`` about bot audio.

    Args:
        items: the parsed script.
        audio: each audio item's payload bytes in ``media_format``, keyed by ``ScriptItem.path``.
        waiter: decides when a wait is over.
        wait_first: wait for the bot (greeting) before the first item.
        media_format: the stream's format (default μ-law 8 kHz, Twilio's): frame size and silence.

    Attributes:
        spoken: the audio and ``over:`` items sent so far, with the tick they started on (``SpokenItem``).
        final_note: how the final wait ended, once ``next_tick`` returned None.

    Raises:
        ValueError: an audio item has no entry in ``audio``, or an item is on the outbound track
            (``callee:``: only the caller speaks in a conversation).
    """

    def __init__(self, items: list[ScriptItem], audio: dict[str, bytes], waiter: "TurnWaiter",
                 wait_first: bool = True, media_format: MediaFormat = MULAW_8K):
        missing = [item.path for item in items if item.path is not None and item.path not in audio]
        if missing:
            raise ValueError(f"no audio loaded for {missing}")
        outbound = [item.token for item in items if item.track != "inbound"]
        if outbound:
            raise ValueError(f"{outbound}: only the caller speaks in a conversation (callee: items need --fork)")
        self._audio = dict(audio)
        self._format = media_format
        self._waiter = waiter
        self._steps: deque = deque()  # ("wait", previous item, _Wait) | ("play", item, index)
        previous = None
        for index, item in enumerate(items):
            if item.kind in ("interrupt", "over"):
                if not (self._steps and self._steps[-1][0] == "wait"):
                    self._steps.append(("wait", previous, _Wait()))
                wait = self._steps[-1][2]
                if item.kind == "interrupt":
                    wait.interrupt_after_s = item.seconds
                else:
                    wait.overs.append((index, item))
                continue
            if (index > 0 or wait_first) and not (self._steps and self._steps[-1][0] == "wait"):
                self._steps.append(("wait", previous, _Wait()))
            self._steps.append(("play", item, index))
            previous = item
        if not (self._steps and self._steps[-1][0] == "wait" and self._steps[-1][2].interrupt_after_s is None):
            self._steps.append(("wait", previous, _Wait()))  # after an interrupt: wait for the bot's answer to it
        self._overs: list = []  # the current wait's ``over:`` items not said yet, (index, item), soonest first
        self._frames: deque = deque()  # (payload, digits) of the item being played
        self._waiting = False
        self._last_digit_s: float | None = None  # when the latest DTMF digit was sent
        self._voiced_frames_left = 0  # frames of the item being played up to its last voiced one
        self._speech_end_s: float | None = None  # when the last voiced frame of the latest audio item was sent
        self._ticks = 0  # ticks returned so far
        self.spoken: list[SpokenItem] = []  # audio items, in the order they were sent
        self.final_note: str | None = None  # note of the tick that ended the script (see next_tick)

    def next_tick(self, now_s: float, audio_queued: bool) -> CallerTick | None:
        """Return what to send on this tick, or None once the script (and final wait) is over.

        When None is returned, ``final_note`` says how the final wait ended.

        Args:
            now_s: monotonic time of this tick, in seconds.
            audio_queued: whether bot audio is still queued in the playback buffer.
        """
        note = None
        while not self._frames:
            if self._waiting:
                playing_s = self._waiter.playing_for_s(now_s)
                if self._overs and playing_s is not None and playing_s >= self._overs[0][1].seconds:
                    index, item = self._overs.pop(0)
                    self._frames.extend(self._item_frames(item))
                    self.spoken.append(_spoken(item, index, self._ticks, self._audio[item.path], self._format))
                    note = _join_notes(note, f"caller over the bot: {item.path}")
                    continue
                reason = self._waiter.poll(now_s, audio_queued)
                if reason is None:
                    self._ticks += 1
                    return CallerTick(self._format.silence_frame, note=note)
                self._waiting = False
                note = _join_notes(note, {"quiet": "bot quiet", "interrupt": "interrupting the bot"}.get(
                    reason, f"wait timed out after {self._waiter.timeout_s:g} s"))
                if self._overs:
                    note = _join_notes(note, f"not said: {', '.join(item.token for _, item in self._overs)} "
                                             "(the reply did not play that long)")
                    self._overs = []
                continue
            if not self._steps:
                self.final_note = note
                return None
            step, item, extra = self._steps.popleft()
            if step == "wait":
                self._waiting = True
                expect_reply = item is not None and item.kind in REPLY_EXPECTED_AFTER
                # A reply to keys may start while the last key is still held (the bot answers "#" at
                # once), and a reply to speech while the file's trailing silence still plays: count
                # bot audio from that key, or from the end of the speech, not from the end of the item.
                since_s = self._last_digit_s if item is not None and item.kind == "dtmf" and self._last_digit_s else now_s
                replies_since_s = self._speech_end_s if item is not None and item.kind == "audio" else None
                self._waiter.start(since_s, expect_reply=expect_reply, interrupt_after_s=extra.interrupt_after_s,
                                   replies_since_s=replies_since_s)
                self._overs = sorted(extra.overs, key=lambda over: over[1].seconds)
                note = _join_notes(note, "waiting for the bot" + (" to reply" if expect_reply else ""))
            else:
                frames = self._item_frames(item)
                self._frames.extend(frames)
                if item.kind == "audio":
                    self.spoken.append(_spoken(item, extra, self._ticks, self._audio[item.path], self._format))
                    self._voiced_frames_left = _last_voiced(frames, self._format) + 1
                    self._speech_end_s = None
                note = _join_notes(note, f"caller: {item.token}")
        payload, digits = self._frames.popleft()
        self._ticks += 1
        if digits:
            self._last_digit_s = now_s
        if self._voiced_frames_left:
            self._voiced_frames_left -= 1
            if not self._voiced_frames_left:
                self._speech_end_s = now_s
        return CallerTick(payload, list(digits), note)

    def _item_frames(self, item: ScriptItem) -> list[tuple[bytes, tuple[str, ...]]]:
        silence = self._format.silence_frame
        if item.kind in ("audio", "over"):
            return [(frame, ()) for frame in _audio_frames(self._audio[item.path], self._format)]
        if item.kind == "silence":
            return [(silence, ())] * max(1, round(item.seconds * 1000 / FRAME_MS))
        frames_per_digit = DTMF_INTERVAL_MS // FRAME_MS
        frames = []
        for digit in item.digits:
            frames.append((silence, (digit,)))
            frames.extend([(silence, ())] * (frames_per_digit - 1))
        return frames


SPEECH_PEAK = 1000
"""A frame whose PCM16 peak reaches this (-30 dBFS) is speech, for where an item's speech ends."""


def _last_voiced(frames: list[tuple[bytes, tuple[str, ...]]], media_format: MediaFormat) -> int:
    """Index of the last frame of an audio item that holds speech (-1: none)."""
    for index in range(len(frames) - 1, -1, -1):
        samples = np.frombuffer(media_format.to_pcm16(frames[index][0]), dtype="<i2")
        if samples.size and int(np.abs(samples.astype(np.int32)).max()) >= SPEECH_PEAK:
            return index
    return -1


def _join_notes(first: str | None, second: str) -> str:
    return second if first is None else f"{first}; {second}"


def _audio_frames(payload: bytes, media_format: MediaFormat) -> list[bytes]:
    """Frames of an audio item; an empty file still takes one (silent) frame."""
    frames = split_frames(payload, media_format.frame_bytes, media_format.silence_byte)
    return frames or [media_format.silence_frame]


def _spoken(item: ScriptItem, index: int, start_tick: int, payload: bytes, media_format: MediaFormat) -> SpokenItem:
    return SpokenItem(item.track, index, item.token, start_tick, media_format.duration_ms(len(payload)))


@dataclass
class ForkTick:
    """What both sides of a forked call say on one 20 ms tick.

    Attributes:
        inbound: one 20 ms frame the caller says (the inbound track): 160 bytes of μ-law on Twilio.
        outbound: one 20 ms frame the callee says (the outbound track: what the caller hears).
        note: a human-readable event that started on this tick, or None.
    """

    inbound: bytes
    outbound: bytes
    note: str | None = None


class ForkScript:
    """Both sides of a forked call, tick by tick: the items one after another, no waiting.

    Caller items (audio files, ``silence:``) go on the inbound track, ``callee:`` items on
    the outbound track; the other track is silence meanwhile. Consecutive items are
    separated by ``gap_s`` of silence on both tracks; after the last item come ``tail_s`` of
    silence, then the script is over. Nobody waits for the server: on a fork it never speaks.

    Args:
        items: the parsed script (``parse_script(tokens, fork=True)``).
        audio: each audio item's payload bytes in ``media_format``, keyed by ``ScriptItem.path``.
        gap_s: silence between items, seconds (rounded to 20 ms ticks).
        tail_s: silence after the last item, seconds (rounded to 20 ms ticks).
        media_format: the stream's format (default μ-law 8 kHz, Twilio's).

    Attributes:
        spoken: the audio items queued so far, with the tick they start on (``SpokenItem``).
        final_note: "script over" once ``next_tick`` returned None.

    Raises:
        ValueError: a ``dtmf``/``interrupt`` item, an audio item with no entry in ``audio``,
            or a gap/tail that is not a finite number >= 0.
    """

    def __init__(self, items: list[ScriptItem], audio: dict[str, bytes], gap_s: float = 0.8, tail_s: float = 2.0,
                 media_format: MediaFormat = MULAW_8K):
        unsupported = [item.token for item in items if item.kind not in ("audio", "silence")]
        if unsupported:
            raise ValueError(f"{unsupported}: a fork script has only audio, callee: and silence: items")
        missing = [item.path for item in items if item.kind == "audio" and item.path not in audio]
        if missing:
            raise ValueError(f"no audio loaded for {missing}")
        for name, value in (("gap_s", gap_s), ("tail_s", tail_s)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        self._audio = dict(audio)
        self._format = media_format
        self._gap_ticks = round(gap_s * 1000 / FRAME_MS)
        self._steps: deque = deque(enumerate(items))
        self._tail_ticks: int | None = round(tail_s * 1000 / FRAME_MS)  # None once the tail is queued
        self._frames: deque = deque()  # (inbound, outbound, note)
        self._ticks = 0
        self.spoken: list[SpokenItem] = []
        self.final_note: str | None = None

    def next_tick(self) -> ForkTick | None:
        """Return what both sides send on this tick, or None once the script (and tail) is over."""
        silence = self._format.silence_frame
        while not self._frames:
            if self._steps:
                index, item = self._steps.popleft()
                if index > 0:
                    self._frames.extend([(silence, silence, None)] * self._gap_ticks)
                self._frames.extend(self._item_frames(index, item, silence))
            elif self._tail_ticks is not None:
                tail = [(silence, silence, None)] * self._tail_ticks
                if tail:
                    tail[0] = (silence, silence, f"tail: {self._tail_ticks * FRAME_MS / 1000:g} s of silence")
                self._frames.extend(tail)
                self._tail_ticks = None
            else:
                self.final_note = "script over"
                return None
        inbound, outbound, note = self._frames.popleft()
        self._ticks += 1
        return ForkTick(inbound, outbound, note)

    def _item_frames(self, index: int, item: ScriptItem, silence: bytes) -> list[tuple[bytes, bytes, str | None]]:
        start_tick = self._ticks + len(self._frames)
        if item.kind == "silence":
            count = max(1, round(item.seconds * 1000 / FRAME_MS))
            return [(silence, silence, f"silence: {item.seconds:g} s")] + [(silence, silence, None)] * (count - 1)
        payload = self._audio[item.path]
        self.spoken.append(_spoken(item, index, start_tick, payload, self._format))
        speaker = "caller" if item.track == "inbound" else "callee"
        frames = [(frame, silence, None) if item.track == "inbound" else (silence, frame, None)
                  for frame in _audio_frames(payload, self._format)]
        frames[0] = (*frames[0][:2], f"{speaker}: {item.path}")
        return frames


class TurnWaiter:
    """Decide when the simulated caller may speak again (the bot is quiet).

    Quiet means: no bot audio queued in the playback buffer; no outbound media
    received and no bot audio played for ``quiet_s`` (counted from the start of
    the wait at the earliest); at least ``min_wait_s`` since the wait started;
    and, when a reply is expected (after an audio or DTMF item), at
    least one outbound media message received since the wait started. The wait
    ends anyway after ``timeout_s``. With ``interrupt_after_s`` the wait instead ends as
    soon as bot audio has been playing for that long (the caller barges in). All times
    are monotonic seconds.

    Args:
        quiet_s: required bot silence, seconds.
        min_wait_s: minimum wait, seconds.
        timeout_s: maximum wait, seconds.
    """

    def __init__(self, quiet_s: float, min_wait_s: float, timeout_s: float):
        self.quiet_s = quiet_s
        self.min_wait_s = min_wait_s
        self.timeout_s = timeout_s
        self._start_s: float | None = None
        self._last_bot_s: float | None = None
        self._expect_reply = False
        self._reply_seen = False
        self._interrupt_after_s: float | None = None
        self._first_played_s: float | None = None

    def start(self, now_s: float, expect_reply: bool = False, interrupt_after_s: float | None = None,
              replies_since_s: float | None = None) -> None:
        """Begin a wait at ``now_s`` (or earlier: bot media since then counts); ``expect_reply`` requires bot media
        to arrive before quiet counts (bot media since ``replies_since_s``, if earlier, is that reply);
        ``interrupt_after_s`` ends the wait once bot audio has played that long."""
        self._start_s = now_s
        self._expect_reply = expect_reply
        since_s = now_s if replies_since_s is None else min(now_s, replies_since_s)
        self._reply_seen = self._last_bot_s is not None and self._last_bot_s >= since_s  # it may lie in the past
        self._interrupt_after_s = interrupt_after_s
        self._first_played_s = None

    def note_media_received(self, now_s: float) -> None:
        """Record that an outbound media message arrived at ``now_s``."""
        self._last_bot_s = now_s
        if self._start_s is not None and now_s >= self._start_s:
            self._reply_seen = True

    def note_audio_played(self, now_s: float) -> None:
        """Record that bot audio was played (heard) on the tick at ``now_s``."""
        self._last_bot_s = now_s
        if self._first_played_s is None and self._start_s is not None and now_s >= self._start_s:
            self._first_played_s = now_s

    def playing_for_s(self, now_s: float) -> float | None:
        """Seconds since bot audio first played in this wait (None: none has played yet)."""
        return None if self._first_played_s is None else now_s - self._first_played_s

    def poll(self, now_s: float, audio_queued: bool) -> str | None:
        """Return "quiet", "interrupt" or "timeout" when the wait is over, else None.

        Raises:
            RuntimeError: ``start`` was never called.
        """
        if self._start_s is None:
            raise RuntimeError("TurnWaiter.poll() before start()")
        waited_s = now_s - self._start_s
        if waited_s >= self.timeout_s:
            return "timeout"
        if self._interrupt_after_s is not None:
            playing_s = self.playing_for_s(now_s)
            return "interrupt" if playing_s is not None and playing_s >= self._interrupt_after_s else None
        if audio_queued or (self._expect_reply and not self._reply_seen):
            return None
        quiet_from_s = max(self._start_s, self._last_bot_s if self._last_bot_s is not None else self._start_s)
        if now_s - quiet_from_s >= self.quiet_s and waited_s >= self.min_wait_s:
            return "quiet"
        return None
