"""Simulate Twilio's side of a phone call against a callstream server.

One command plays the whole loop: the voice webhook, the TwiML answer, the
bidirectional Media Stream (``<Connect><Stream>``) and the caller's audio, in
real time, while modelling Twilio's playback buffer for the bot's audio.

Usage::

    python tools/callsim.py [--url http://127.0.0.1:5050] [options] ITEM...

ITEM is the caller's script, played in order:

* ``PATH``         an audio file soundfile can read (wav, flac, ogg...), mixed to
                   mono, soxr-resampled to 8 kHz and μ-law encoded, then spoken
                   as 20 ms media messages.
* ``dtmf:DIGITS``  one ``dtmf`` message per digit (0-9, ``*``, ``#``), 100 ms apart.
* ``silence:SECONDS``  that much μ-law silence.
* ``interrupt:SECONDS``  barge in: the wait before the next item ends once the bot's
                   reply has played for SECONDS (instead of waiting until it is quiet).

Before the first item (unless ``--no-wait-greeting``), between items and after
the last one, the caller keeps sending μ-law silence (0xFF, as a phone line
does) until the bot is quiet: no bot audio queued in the playback buffer, none
received or played for ``--quiet-s``, at least ``--min-wait-s`` spent waiting,
and, after an audio or DTMF item, a reply has started. ``--turn-timeout-s`` bounds
every wait. Then it sends ``stop`` and closes the socket.

Without ``--url`` the server runs in this process: ``app.create_app()`` served
by ``app.make_server(app, "127.0.0.1", 0)`` from the repository root.

Outputs: what the caller heard (``--out``, 8 kHz PCM16 mono WAV; sample 0 is
the timestamp of the first media message sent), the conversation from
``GET /api/calls/<CallSid>``, a summary line with the median voice-to-voice
latency, and with ``--json`` a machine-readable report (see ``build_report``).

Latency: a bot *reply* starts with the first outbound media message after a
``clear``, or after ``REPLY_GAP_S`` without outbound media while nothing was
queued for playback. For each caller turn in the call record, the first reply
that starts before the next caller turn ends is paired with it;
``voice_to_voice_ms`` is the wall-clock time from sending the media message
whose 20 ms contain the turn's ``end_ms`` to the arrival of that reply's first
media message, and ``first_mark_echo_ms`` the time to the first mark echoed by
playback after it (the caller has heard the start).
Exit code: 0 for a completed call, 1 on errors (webhook or connection failure,
no ``<Connect><Stream>`` in the TwiML, protocol violations with ``--strict``),
2 for bad arguments.

Protocol facts come from ``docs/protocol.md`` (Twilio Media Streams, T-WS) and
the message fixtures in ``shared/twilio/``. The pure parts (``PlaybackBuffer``,
``parse_server_message``, ``parse_twiml``, ``parse_script``, ``TwilioMessages``,
``CallerScript``, ``TurnWaiter``, ``ReplyTracker``, ``pair_latencies``) do no I/O
and read no clock; importing this module imports no gevent, socket or threading,
so ``main`` can monkey-patch first.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import secrets
import statistics
import sys
import xml.etree.ElementTree as ElementTree
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[1]

SAMPLE_RATE = 8000  # Hz, Twilio's only inbound format: audio/x-mulaw 8 kHz mono [T-WS].
FRAME_MS = 20  # Twilio sends one 160-byte (20 ms) media message per frame [protocol.md §7, obs].
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000  # 160 μ-law bytes
ULAW_SILENCE = 0xFF  # μ-law code for 0
DTMF_INTERVAL_MS = 100
DTMF_DIGITS = "0123456789*#"
REPLY_EXPECTED_AFTER = ("audio", "dtmf")  # script item kinds the bot answers; waits after them need a reply
STOP_GRACE_S = 1.0  # after sending stop, time the server gets to close the socket itself
REPLY_GAP_S = 0.4  # outbound media after this much silence on the wire, with nothing queued, starts a new reply

WEBHOOK_PATH = "/incoming-call"
API_CALL_PATH = "/api/calls/{call_sid}"


# --------------------------------------------------------------------------------------------
# Identifiers and the caller's script
# --------------------------------------------------------------------------------------------


def random_sid(prefix: str) -> str:
    """Return a Twilio-style SID: a two-letter prefix and 32 lowercase hex digits.

    Args:
        prefix: "CA" (call), "AC" (account) or "MZ" (stream) [T-STREAMAPI: ``^MZ[0-9a-fA-F]{32}$``].
    """
    return prefix + secrets.token_hex(16)


@dataclass(frozen=True)
class ScriptItem:
    """One step of the caller's script.

    Attributes:
        kind: "audio", "dtmf", "silence" or "interrupt" (the wait before the next item ends
            once the bot's reply has played for ``seconds``: a barge-in).
        token: the command-line argument it came from (for messages).
        path: audio file path (kind "audio").
        digits: DTMF digits, each one of ``DTMF_DIGITS`` (kind "dtmf").
        seconds: silence duration, or reply playback before interrupting, in seconds, > 0.
    """

    kind: str
    token: str
    path: str | None = None
    digits: str | None = None
    seconds: float | None = None


def parse_script(tokens: list[str]) -> list[ScriptItem]:
    """Parse the positional arguments into script items (no file access).

    Args:
        tokens: e.g. ``["hello.wav", "dtmf:12#", "silence:2.5"]``. Anything not
            starting with ``dtmf:`` or ``silence:`` is an audio file path.

    Returns:
        The items, in order.

    Raises:
        ValueError: empty or invalid DTMF digits, or a silence duration that is
            not a finite number > 0.
    """
    items = []
    for token in tokens:
        if token.startswith("dtmf:"):
            digits = token[len("dtmf:"):]
            if not digits or any(d not in DTMF_DIGITS for d in digits):
                raise ValueError(f"{token!r}: DTMF digits must be one or more of {DTMF_DIGITS}")
            items.append(ScriptItem("dtmf", token, digits=digits))
        elif token.startswith(("silence:", "interrupt:")):
            kind, _, value = token.partition(":")
            try:
                seconds = float(value)
            except ValueError:
                raise ValueError(f"{token!r}: {kind} needs a duration in seconds, e.g. {kind}:2.5") from None
            if not math.isfinite(seconds) or seconds <= 0:
                raise ValueError(f"{token!r}: {kind} duration must be > 0 seconds")
            items.append(ScriptItem(kind, token, seconds=seconds))
        elif not token:
            raise ValueError("empty script item")
        else:
            items.append(ScriptItem("audio", token, path=token))
    return items


def split_frames(ulaw: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    """Cut μ-law audio into frames, padding the last one with μ-law silence.

    Args:
        ulaw: G.711 μ-law bytes, 8 kHz mono.
        frame_bytes: bytes per frame (160 = 20 ms).

    Returns:
        ``ceil(len(ulaw) / frame_bytes)`` frames of exactly ``frame_bytes`` bytes.
    """
    frames = [ulaw[i:i + frame_bytes] for i in range(0, len(ulaw), frame_bytes)]
    if frames and len(frames[-1]) < frame_bytes:
        frames[-1] += bytes([ULAW_SILENCE]) * (frame_bytes - len(frames[-1]))
    return frames


@dataclass
class CallerTick:
    """What the caller sends on one 20 ms tick.

    Attributes:
        ulaw: 160 bytes of μ-law for this tick's media message.
        digits: DTMF digits to send (as ``dtmf`` messages) before the media message.
        note: a human-readable event that started on this tick, or None.
    """

    ulaw: bytes
    digits: list[str] = field(default_factory=list)
    note: str | None = None


class CallerScript:
    """The caller's behaviour, tick by tick: wait for the bot, speak an item, repeat.

    Pure: the runtime passes the clock in (``now_s``, monotonic seconds) and
    tells the ``TurnWaiter`` about bot audio.

    Args:
        items: the parsed script.
        audio: μ-law 8 kHz bytes for each audio item, keyed by ``ScriptItem.path``.
        waiter: decides when a wait is over.
        wait_first: wait for the bot (greeting) before the first item.

    Raises:
        ValueError: an audio item has no entry in ``audio``.
    """

    def __init__(self, items: list[ScriptItem], audio: dict[str, bytes], waiter: "TurnWaiter",
                 wait_first: bool = True):
        missing = [item.path for item in items if item.kind == "audio" and item.path not in audio]
        if missing:
            raise ValueError(f"no audio loaded for {missing}")
        self._audio = dict(audio)
        self._waiter = waiter
        self._steps: deque = deque()  # ("wait", previous item, interrupt after s) | ("play", item, None)
        previous = None
        for index, item in enumerate(items):
            if item.kind == "interrupt":
                if self._steps and self._steps[-1][0] == "wait":
                    self._steps[-1] = ("wait", self._steps[-1][1], item.seconds)
                else:
                    self._steps.append(("wait", previous, item.seconds))
                continue
            if (index > 0 or wait_first) and not (self._steps and self._steps[-1][0] == "wait"):
                self._steps.append(("wait", previous, None))
            self._steps.append(("play", item, None))
            previous = item
        self._steps.append(("wait", previous, None))
        self._frames: deque = deque()  # (ulaw, digits) of the item being played
        self._waiting = False
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
                reason = self._waiter.poll(now_s, audio_queued)
                if reason is None:
                    return CallerTick(bytes([ULAW_SILENCE]) * FRAME_BYTES, note=note)
                self._waiting = False
                note = _join_notes(note, {"quiet": "bot quiet", "interrupt": "interrupting the bot"}.get(
                    reason, f"wait timed out after {self._waiter.timeout_s:g} s"))
                continue
            if not self._steps:
                self.final_note = note
                return None
            step, item, interrupt_after_s = self._steps.popleft()
            if step == "wait":
                self._waiting = True
                expect_reply = item is not None and item.kind in REPLY_EXPECTED_AFTER
                self._waiter.start(now_s, expect_reply=expect_reply, interrupt_after_s=interrupt_after_s)
                note = _join_notes(note, "waiting for the bot" + (" to reply" if expect_reply else ""))
            else:
                self._frames.extend(self._item_frames(item))
                note = _join_notes(note, f"caller: {item.token}")
        ulaw, digits = self._frames.popleft()
        return CallerTick(ulaw, list(digits), note)

    def _item_frames(self, item: ScriptItem) -> list[tuple[bytes, tuple[str, ...]]]:
        silence = bytes([ULAW_SILENCE]) * FRAME_BYTES
        if item.kind == "audio":
            return [(frame, ()) for frame in split_frames(self._audio[item.path])] or [(silence, ())]
        if item.kind == "silence":
            return [(silence, ())] * max(1, round(item.seconds * 1000 / FRAME_MS))
        frames_per_digit = DTMF_INTERVAL_MS // FRAME_MS
        frames = []
        for digit in item.digits:
            frames.append((silence, (digit,)))
            frames.extend([(silence, ())] * (frames_per_digit - 1))
        return frames


def _join_notes(first: str | None, second: str) -> str:
    return second if first is None else f"{first}; {second}"


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

    def start(self, now_s: float, expect_reply: bool = False, interrupt_after_s: float | None = None) -> None:
        """Begin a wait at ``now_s``; ``expect_reply`` requires bot media to arrive before quiet counts;
        ``interrupt_after_s`` ends the wait once bot audio has played that long."""
        self._start_s = now_s
        self._expect_reply = expect_reply
        self._reply_seen = False
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
            played = self._first_played_s is not None and now_s - self._first_played_s >= self._interrupt_after_s
            return "interrupt" if played else None
        if audio_queued or (self._expect_reply and not self._reply_seen):
            return None
        quiet_from_s = max(self._start_s, self._last_bot_s if self._last_bot_s is not None else self._start_s)
        if now_s - quiet_from_s >= self.quiet_s and waited_s >= self.min_wait_s:
            return "quiet"
        return None


# --------------------------------------------------------------------------------------------
# TwiML and the voice webhook
# --------------------------------------------------------------------------------------------


class TwimlError(ValueError):
    """The voice webhook's TwiML has no usable ``<Connect><Stream>``."""


@dataclass(frozen=True)
class TwimlStream:
    """What Twilio takes from the TwiML answer.

    Attributes:
        url: the ``<Stream url>`` as written (relative URLs resolved later).
        parameters: ``<Parameter name value>`` pairs, in document order (become ``start.customParameters``).
        say: texts of ``<Say>`` verbs before ``<Connect>`` (Twilio speaks them before streaming).
    """

    url: str
    parameters: dict[str, str]
    say: list[str]


def parse_twiml(text: str) -> TwimlStream:
    """Find the bidirectional stream in a TwiML document [T-STREAM, protocol.md §4].

    Args:
        text: the webhook response body, e.g. ``<Response><Say>Hi</Say><Connect><Stream
            url="wss://host/media-stream"><Parameter name="From" value="+1..."/></Stream>
            </Connect></Response>``.

    Returns:
        The first ``<Connect><Stream>``'s URL and parameters, and the ``<Say>`` texts before it.

    Raises:
        TwimlError: not XML, root is not ``<Response>``, no ``<Connect><Stream>``
            (a ``<Start><Stream>`` fork cannot carry the bot's audio), or no ``url``.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise TwimlError(f"TwiML is not XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root is <{root.tag}>, expected <Response>")
    say = []
    for verb in root:
        if verb.tag == "Say":
            say.append((verb.text or "").strip())
        elif verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is None:
                continue
            url = (stream.get("url") or "").strip()
            if not url:
                raise TwimlError("<Connect><Stream> has no url attribute")
            parameters = {}
            for parameter in stream.findall("Parameter"):
                name = parameter.get("name")
                if name is None:
                    raise TwimlError("<Parameter> without a name attribute")
                parameters[name] = parameter.get("value", "")
            return TwimlStream(url, parameters, say)
    if root.find("Start/Stream") is not None:
        raise TwimlError("TwiML has <Start><Stream> (a one-way fork) but no <Connect><Stream>")
    raise TwimlError("TwiML has no <Connect><Stream>")


def websocket_url(stream_url: str, webhook_url: str) -> tuple[str, bool]:
    """Choose the URL to open for the stream.

    Twilio only connects with ``wss`` [T-STREAM]. Local test servers have no TLS,
    so when the webhook was plain ``http://`` the same host, port and path are
    opened with ``ws://``. A relative stream URL is resolved against the webhook URL.

    Args:
        stream_url: ``<Stream url>`` from the TwiML.
        webhook_url: the voice webhook URL that returned the TwiML.

    Returns:
        (URL to connect to, whether it was downgraded from wss to ws).

    Raises:
        TwimlError: the stream URL's scheme is not ws/wss (Twilio error 31922).
    """
    webhook = urlsplit(webhook_url)
    absolute = urljoin(webhook_url, stream_url)
    parts = urlsplit(absolute)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise TwimlError(f"stream URL {stream_url!r} is not wss:// (Twilio error 31922)")
    downgraded = False
    if scheme == "wss" and webhook.scheme == "http":
        scheme, downgraded = "ws", True
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")), downgraded


def webhook_form(call_sid: str, account_sid: str, from_number: str, to_number: str) -> dict[str, str]:
    """Return the form fields Twilio POSTs to the voice URL for a ringing inbound call.

    A realistic subset of Twilio's voice webhook parameters (values for the
    location fields are fixed sample values).
    """
    caller_location = {"City": "SAN FRANCISCO", "State": "CA", "Zip": "94105", "Country": "US"}
    called_location = {"City": "NEW YORK", "State": "NY", "Zip": "10001", "Country": "US"}
    form = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }
    for key, value in caller_location.items():
        form["From" + key] = value
        form["Caller" + key] = value
    for key, value in called_location.items():
        form["To" + key] = value
        form["Called" + key] = value
    return form


# --------------------------------------------------------------------------------------------
# Messages Twilio sends (Twilio -> server)
# --------------------------------------------------------------------------------------------


class TwilioMessages:
    """Build the JSON texts Twilio sends on one stream, with its counters [T-WS, protocol.md §2].

    ``sequenceNumber`` is one counter shared by every message after ``connected``
    (``start`` is "1"); ``media.chunk`` counts media messages from "1";
    ``media.timestamp`` starts at ``first_timestamp_ms`` and advances 20 per
    160-byte frame. Numeric-looking fields are JSON strings, ``mediaFormat``
    numbers are JSON numbers.

    Args:
        stream_sid: ``MZ…``; account_sid: ``AC…``; call_sid: ``CA…``.
        first_timestamp_ms: timestamp of the first media message (Twilio's real
            capture starts at 52, not 0).
    """

    def __init__(self, stream_sid: str, account_sid: str, call_sid: str, first_timestamp_ms: int = 20):
        self.stream_sid = stream_sid
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.first_timestamp_ms = first_timestamp_ms
        self.sequence_number = 0  # last one used
        self.chunk = 0  # last media chunk used

    @property
    def next_timestamp_ms(self) -> int:
        """Timestamp the next media message will carry."""
        return self.first_timestamp_ms + self.chunk * FRAME_MS

    def _next_sequence(self) -> str:
        self.sequence_number += 1
        return str(self.sequence_number)

    def connected(self) -> str:
        """Return the ``connected`` message (no sequence number)."""
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str]) -> str:
        """Return the ``start`` message of a bidirectional stream (tracks ["inbound"])."""
        return json.dumps({
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                "customParameters": dict(custom_parameters),
            },
            "streamSid": self.stream_sid,
        })

    def media(self, ulaw: bytes) -> str:
        """Return an inbound ``media`` message carrying one frame.

        Args:
            ulaw: G.711 μ-law bytes, 8 kHz mono; 160 bytes (20 ms) for the timestamps to stay right.
        """
        timestamp_ms = self.next_timestamp_ms
        self.chunk += 1
        return json.dumps({
            "event": "media",
            "sequenceNumber": self._next_sequence(),
            "media": {
                "track": "inbound",
                "chunk": str(self.chunk),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(ulaw).decode("ascii"),
            },
            "streamSid": self.stream_sid,
        })

    def dtmf(self, digit: str) -> str:
        """Return a ``dtmf`` message for one key press."""
        return json.dumps({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "sequenceNumber": self._next_sequence(),
            "dtmf": {"track": "inbound_track", "digit": digit},
        })

    def mark(self, name: str) -> str:
        """Return the ``mark`` echo for a mark the server sent."""
        return json.dumps({
            "event": "mark",
            "sequenceNumber": self._next_sequence(),
            "streamSid": self.stream_sid,
            "mark": {"name": name},
        })

    def stop(self) -> str:
        """Return the ``stop`` message (the call ended)."""
        return json.dumps({
            "event": "stop",
            "sequenceNumber": self._next_sequence(),
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
            "streamSid": self.stream_sid,
        })


# --------------------------------------------------------------------------------------------
# Messages the server sends (server -> Twilio), validated strictly
# --------------------------------------------------------------------------------------------


class ProtocolViolation(ValueError):
    """A server message Twilio would reject (warnings 31950/31951) [protocol.md §8]."""


@dataclass(frozen=True)
class ServerMessage:
    """A valid message from the server.

    Attributes:
        event: "media", "mark" or "clear".
        ulaw: decoded payload (G.711 μ-law 8 kHz mono) for "media", else None.
        mark_name: the mark's name for "mark", else None.
    """

    event: str
    ulaw: bytes | None = None
    mark_name: str | None = None


# Exact shapes of out_media.json, out_mark.json, out_clear.json: key -> nested keys (None = a string leaf).
_SERVER_SHAPES = {
    "media": {"event": None, "streamSid": None, "media": {"payload": None}},
    "mark": {"event": None, "streamSid": None, "mark": {"name": None}},
    "clear": {"event": None, "streamSid": None},
}


def _check_shape(value: object, shape: dict, where: str) -> None:
    if not isinstance(value, dict):
        raise ProtocolViolation(f"{where} must be a JSON object, got {type(value).__name__}")
    missing = sorted(set(shape) - set(value))
    extra = sorted(set(value) - set(shape))
    if missing:
        raise ProtocolViolation(f"{where} is missing field(s) {missing}")
    if extra:
        raise ProtocolViolation(f"{where} has unexpected field(s) {extra}")
    for key, sub_shape in shape.items():
        path = f"{where}.{key}"
        if sub_shape is None:
            if not isinstance(value[key], str):
                raise ProtocolViolation(f"{path} must be a string, got {type(value[key]).__name__}")
        else:
            _check_shape(value[key], sub_shape, path)


def parse_server_message(data: str | bytes, stream_sid: str) -> ServerMessage:
    """Validate one WebSocket message from the server the way Twilio does.

    Twilio accepts only text frames holding JSON ``media``, ``mark`` or
    ``clear`` messages with exactly the documented fields and the active
    ``streamSid`` [T-WS; T-ERR-31950, T-ERR-31951].

    Args:
        data: the message: ``str`` for a text frame, ``bytes`` for a binary frame.
        stream_sid: the stream's SID (from ``start``).

    Returns:
        The parsed message.

    Raises:
        ProtocolViolation: binary frame, invalid JSON, unknown event, missing or
            extra fields, non-string fields, wrong streamSid, payload that is not
            non-empty standard base64, or an empty mark name.
    """
    if isinstance(data, (bytes, bytearray)):
        raise ProtocolViolation("binary frame (Twilio accepts text frames only, warning 31950)")
    try:
        message = json.loads(data)
    except json.JSONDecodeError as error:
        raise ProtocolViolation(f"not JSON: {error}") from None
    if not isinstance(message, dict):
        raise ProtocolViolation(f"message must be a JSON object, got {type(message).__name__}")
    event = message.get("event")
    if event not in _SERVER_SHAPES:
        raise ProtocolViolation(f"event {event!r} is not one of media, mark, clear")
    _check_shape(message, _SERVER_SHAPES[event], "message")
    if message["streamSid"] != stream_sid:
        raise ProtocolViolation(f"streamSid {message['streamSid']!r} is not this stream's {stream_sid!r}")
    if event == "media":
        payload = message["media"]["payload"]
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as error:
            raise ProtocolViolation(f"media.payload is not valid base64: {error}") from None
        if not ulaw:
            raise ProtocolViolation("media.payload is empty")
        return ServerMessage("media", ulaw=ulaw)
    if event == "mark":
        name = message["mark"]["name"]
        if not name:
            raise ProtocolViolation("mark.name is empty")
        return ServerMessage("mark", mark_name=name)
    return ServerMessage("clear")


# --------------------------------------------------------------------------------------------
# Twilio's playback buffer
# --------------------------------------------------------------------------------------------


class PlaybackBuffer:
    """Model of Twilio's outbound playback queue on a bidirectional stream [T-WS, protocol.md §3].

    Media payloads and marks share one FIFO. Audio plays at real time: each
    ``tick`` takes up to ``num_bytes`` μ-law bytes (20 ms = 160 bytes) from the
    head, crossing chunk boundaries. A mark is reached when all audio queued
    before it has been played, and is echoed then; a mark sent while nothing is
    queued is reached at once. ``clear`` drops the queued audio and returns every
    queued mark, which Twilio echoes at once.
    """

    def __init__(self):
        self._queue: deque = deque()  # bytearray (audio) or str (mark name)
        self._queued_bytes = 0

    @property
    def queued_bytes(self) -> int:
        """μ-law bytes waiting to be played."""
        return self._queued_bytes

    @property
    def pending_marks(self) -> list[str]:
        """Names of queued marks, in order."""
        return [item for item in self._queue if isinstance(item, str)]

    def enqueue_media(self, ulaw: bytes) -> None:
        """Queue one media payload (G.711 μ-law 8 kHz mono bytes) behind everything queued."""
        if ulaw:
            self._queue.append(bytearray(ulaw))
            self._queued_bytes += len(ulaw)

    def enqueue_mark(self, name: str) -> bool:
        """Queue a mark behind the queued audio.

        Returns:
            True if nothing was queued, so the mark is reached now (echo it now;
            it is not queued); False if it waits in the queue.
        """
        if not self._queue:
            return True
        self._queue.append(name)
        return False

    def clear(self) -> list[str]:
        """Drop all queued audio and marks; return the marks' names in order (echo them all now)."""
        names = self.pending_marks
        self._queue.clear()
        self._queued_bytes = 0
        return names

    def tick(self, num_bytes: int = FRAME_BYTES) -> tuple[bytes, list[str]]:
        """Play one tick of audio.

        Args:
            num_bytes: μ-law bytes played per tick (160 = 20 ms at 8 kHz).

        Returns:
            (audio played: up to ``num_bytes`` μ-law bytes, ``b""`` when nothing
            is queued — the caller hears silence for the rest of the tick;
            names of the marks reached during this tick, including marks right
            after the last audio played).
        """
        played = bytearray()
        reached = []
        while self._queue:
            head = self._queue[0]
            if isinstance(head, str):
                reached.append(self._queue.popleft())
                continue
            if len(played) >= num_bytes:
                break
            take = min(num_bytes - len(played), len(head))
            played += head[:take]
            del head[:take]
            self._queued_bytes -= take
            if not head:
                self._queue.popleft()
        return bytes(played), reached


# --------------------------------------------------------------------------------------------
# Replies and latency
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One bot reply as the caller experienced it.

    Attributes:
        index: 1-based reply number.
        arrival_s: monotonic time its first outbound media message arrived.
        heard_ms: media-clock timestamp (ms) of the tick that played its first audio, or None.
        first_mark_echo_s: monotonic time of the first mark echoed by playback after it began, or None.
        media_messages: outbound media messages in this reply.
        ulaw_bytes: μ-law bytes received in this reply.
    """

    index: int
    arrival_s: float
    heard_ms: int | None = None
    first_mark_echo_s: float | None = None
    media_messages: int = 0
    ulaw_bytes: int = 0


class ReplyTracker:
    """Split the bot's outbound media into replies.

    A media message starts a new reply when it is the first one, when a
    ``clear`` came since the previous media, or when nothing was queued for
    playback and no media had arrived for ``gap_s``. Times are monotonic seconds.
    """

    def __init__(self, gap_s: float = REPLY_GAP_S):
        self.gap_s = gap_s
        self.replies: list[Reply] = []
        self._last_media_s: float | None = None
        self._cleared = False

    def on_media(self, now_s: float, num_bytes: int, audio_queued: bool) -> Reply | None:
        """Account for one outbound media message; return the new Reply if it starts one, else None."""
        new = (not self.replies or self._cleared
               or (not audio_queued and now_s - self._last_media_s >= self.gap_s))
        started = None
        if new:
            started = Reply(index=len(self.replies) + 1, arrival_s=now_s)
            self.replies.append(started)
        reply = self.replies[-1]
        reply.media_messages += 1
        reply.ulaw_bytes += num_bytes
        self._last_media_s = now_s
        self._cleared = False
        return started

    def on_clear(self) -> None:
        """Account for a ``clear``: the next media starts a new reply."""
        self._cleared = True

    def on_played(self, timestamp_ms: int) -> None:
        """Account for bot audio played on the tick with media timestamp ``timestamp_ms``."""
        if self.replies and self.replies[-1].heard_ms is None:
            self.replies[-1].heard_ms = timestamp_ms

    def on_mark_echo(self, now_s: float) -> None:
        """Account for a mark echoed because playback reached it (not because of a clear)."""
        if self.replies and self.replies[-1].first_mark_echo_s is None and now_s >= self.replies[-1].arrival_s:
            self.replies[-1].first_mark_echo_s = now_s


def frame_index_for_ms(time_ms: int, first_timestamp_ms: int, frame_ms: int = FRAME_MS) -> int:
    """Return the index of the media frame containing the instant just before ``time_ms``.

    Frame n covers media-clock times [first + n*frame_ms, first + (n+1)*frame_ms).
    A turn ending at ``time_ms`` ends inside the frame holding ``time_ms - 1``.
    Times before the first frame give 0.
    """
    return max(0, (time_ms - first_timestamp_ms - 1) // frame_ms)


def pair_latencies(caller_ends: list[tuple[int, int, float]], replies: list[Reply]) -> list[dict]:
    """Pair each caller turn with the first reply that started after it, and measure latency.

    Args:
        caller_ends: (turn index in the call record, turn end_ms, monotonic time
            the frame containing end_ms was sent), one per caller turn, in order.
        replies: replies from ``ReplyTracker``, in order.

    Returns:
        One dict per caller turn: ``caller_turn`` (index), ``caller_end_ms``,
        ``reply`` (1-based index or None), ``voice_to_voice_ms`` (end frame sent
        → first media of the reply arrived), ``first_mark_echo_ms`` (end frame
        sent → first mark echoed by playback after the reply began), and
        ``reply_heard_ms`` (media clock). A reply counts for a turn only if it
        began before the next caller turn's end frame was sent.
    """
    results = []
    ordered = sorted(caller_ends, key=lambda end: end[2])
    for position, (turn_index, end_ms, sent_s) in enumerate(ordered):
        next_sent_s = ordered[position + 1][2] if position + 1 < len(ordered) else math.inf
        reply = next((r for r in replies if sent_s < r.arrival_s <= next_sent_s), None)
        entry = {"caller_turn": turn_index, "caller_end_ms": end_ms, "reply": None,
                 "voice_to_voice_ms": None, "first_mark_echo_ms": None, "reply_heard_ms": None}
        if reply is not None:
            entry["reply"] = reply.index
            entry["voice_to_voice_ms"] = round((reply.arrival_s - sent_s) * 1000)
            entry["reply_heard_ms"] = reply.heard_ms
            if reply.first_mark_echo_s is not None:
                entry["first_mark_echo_ms"] = round((reply.first_mark_echo_s - sent_s) * 1000)
        results.append(entry)
    return results


def median_or_none(values: list[float | None]) -> float | None:
    """Median of the non-None values, or None if there are none."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


# --------------------------------------------------------------------------------------------
# Audio files (I/O)
# --------------------------------------------------------------------------------------------


def _import_repo_audio():
    """Import the repository's ``audio.codec`` and ``audio.resample`` modules (repo root on sys.path)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from audio import codec, resample

    return codec, resample


def load_audio_ulaw(path: str) -> bytes:
    """Read an audio file and return it as Twilio media: G.711 μ-law, 8 kHz, mono.

    Channels are averaged; the rate is converted with soxr (``audio.resample``);
    encoding is ``audio.codec.array_to_ulaw``.

    Raises:
        soundfile.LibsndfileError / OSError: the file cannot be read.
    """
    import soundfile

    codec, resample = _import_repo_audio()
    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        mono = resample.resample(mono, sample_rate, SAMPLE_RATE)
    return codec.array_to_ulaw(mono)


def ulaw_to_pcm(ulaw: bytes) -> bytes:
    """Decode G.711 μ-law bytes to PCM16 little-endian mono bytes (``audio.codec``)."""
    codec, _ = _import_repo_audio()
    return codec.ulaw_to_pcm16(ulaw)


def write_wav(path: str, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    """Write PCM16 little-endian mono bytes to a WAV file."""
    import wave

    with wave.open(path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


# --------------------------------------------------------------------------------------------
# The call (network; runs under gevent)
# --------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """Message counts for the report."""

    media_sent: int = 0
    dtmf_sent: int = 0
    media_received: int = 0
    media_received_bytes: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    clears_received: int = 0
    violations: int = 0
    late_ticks: int = 0
    max_tick_lateness_ms: float = 0.0


class SimulatedCall:
    """Run one Media Stream as Twilio would: send the caller's audio, play the bot's.

    The sending loop runs in the calling greenlet on absolute 20 ms deadlines
    from a monotonic clock (late ticks are caught up, never skipped); a second
    greenlet receives and validates server messages so the clock never waits
    on a receive. Requires gevent monkey patching (``main`` does it).

    Args:
        ws: an open websocket-client ``WebSocket``.
        messages: message builder holding the SIDs and counters.
        custom_parameters: the TwiML ``<Parameter>``s, sent in ``start``.
        script: the caller's behaviour.
        waiter: the script's ``TurnWaiter``.
        verbose: print every server message.
    """

    def __init__(self, ws, messages: TwilioMessages, custom_parameters: dict[str, str],
                 script: CallerScript, waiter: TurnWaiter, verbose: bool = False):
        import threading

        self.ws = ws
        self.messages = messages
        self.custom_parameters = custom_parameters
        self.script = script
        self.waiter = waiter
        self.verbose = verbose
        self.buffer = PlaybackBuffer()
        self.replies = ReplyTracker()
        self.counts = Counts()
        self.violations: list[dict] = []
        self.heard = bytearray()  # μ-law, one FRAME_BYTES block per media frame sent
        self.frame_sent_s: list[float] = []  # monotonic send time of media frame n
        self.ended_by: str | None = None
        self.failure: str | None = None  # set if the receiving greenlet crashed
        self._send_lock = threading.Lock()  # gevent-patched: keeps sequence numbers in send order
        self._t0: float | None = None
        self._server_closed = False
        self._stopping = False

    # -- output helpers --

    def clock_ms(self, now_s: float) -> int:
        """Media-clock time (ms) of monotonic ``now_s``."""
        return self.messages.first_timestamp_ms + round((now_s - self._t0) * 1000)

    def log(self, now_s: float, text: str) -> None:
        """Print one timeline line, stamped with the media clock in seconds."""
        print(f"[{self.clock_ms(now_s) / 1000:8.2f}s] {text}", flush=True)

    def _send(self, build, *args) -> None:
        with self._send_lock:
            self.ws.send(build(*args))

    # -- receiving --

    def _receive_loop(self) -> None:
        try:
            self._receive_messages()
        except Exception as error:  # a bug here must end the call loudly, not leave the caller deaf
            self.failure = f"receiver failed: {error!r}"
        if not self._stopping:
            self._server_closed = True

    def _receive_messages(self) -> None:
        import time

        import websocket

        while True:
            try:
                opcode, data = self.ws.recv_data()
            except (websocket.WebSocketConnectionClosedException, OSError, ValueError):
                break
            now_s = time.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode == websocket.ABNF.OPCODE_TEXT:
                try:
                    data = data.decode("utf-8")
                except UnicodeDecodeError:
                    self._violation(now_s, "text frame is not UTF-8", repr(data[:80]))
                    continue
            try:
                message = parse_server_message(data, self.messages.stream_sid)
            except ProtocolViolation as error:
                self._violation(now_s, str(error), data if isinstance(data, str) else repr(data[:80]))
                continue
            self._apply(message, now_s)

    def _violation(self, now_s: float, error: str, raw: str) -> None:
        self.counts.violations += 1
        self.violations.append({"at_ms": self.clock_ms(now_s), "error": error, "message": raw[:300]})
        self.log(now_s, f"PROTOCOL VIOLATION: {error}")

    def _apply(self, message: ServerMessage, now_s: float) -> None:
        if message.event == "media":
            self.counts.media_received += 1
            self.counts.media_received_bytes += len(message.ulaw)
            started = self.replies.on_media(now_s, len(message.ulaw), self.buffer.queued_bytes > 0)
            if started is not None:
                self.log(now_s, f"bot: reply {started.index} starts")
            self.buffer.enqueue_media(message.ulaw)
            self.waiter.note_media_received(now_s)
            if self.verbose:
                self.log(now_s, f"<- media {len(message.ulaw)} B (queued {self.buffer.queued_bytes} B)")
        elif message.event == "mark":
            self.counts.marks_received += 1
            if self.verbose:
                self.log(now_s, f"<- mark {message.mark_name!r}")
            if self.buffer.enqueue_mark(message.mark_name):
                self._echo_mark(message.mark_name, now_s, played=True)
        else:
            self.counts.clears_received += 1
            dropped_ms = self.buffer.queued_bytes * 1000 // SAMPLE_RATE
            names = self.buffer.clear()
            self.replies.on_clear()
            self.log(now_s, f"bot: clear (dropped {dropped_ms} ms of queued audio, {len(names)} mark(s))")
            for name in names:
                self._echo_mark(name, now_s, played=False)

    def _echo_mark(self, name: str, now_s: float, played: bool) -> None:
        self._send(self.messages.mark, name)
        self.counts.marks_echoed += 1
        if played:
            self.replies.on_mark_echo(now_s)
        if self.verbose:
            self.log(now_s, f"-> mark echo {name!r}{'' if played else ' (cleared)'}")

    # -- sending --

    def run(self) -> None:
        """Send connected/start, run the script in real time, then stop and close."""
        import time

        import gevent
        import websocket

        self._send(self.messages.connected)
        self._send(self.messages.start, self.custom_parameters)
        receiver = gevent.spawn(self._receive_loop)
        self._t0 = time.monotonic()
        frame = 0
        try:
            while True:
                deadline_s = self._t0 + frame * FRAME_MS / 1000
                now_s = time.monotonic()
                if deadline_s > now_s:
                    gevent.sleep(deadline_s - now_s)
                    now_s = time.monotonic()
                lateness_ms = (now_s - deadline_s) * 1000
                self.counts.max_tick_lateness_ms = max(self.counts.max_tick_lateness_ms, round(lateness_ms, 1))
                if lateness_ms > 10:
                    self.counts.late_ticks += 1
                if self._server_closed:
                    self.ended_by = "error" if self.failure else "server"
                    self.log(now_s, self.failure or "server closed the WebSocket")
                    break
                tick = self.script.next_tick(now_s, self.buffer.queued_bytes > 0)
                if tick is None:
                    if self.script.final_note:
                        self.log(now_s, self.script.final_note)
                    self.ended_by = "caller"
                    break
                if tick.note:
                    self.log(now_s, tick.note)
                self._play_tick(now_s)
                for digit in tick.digits:
                    self._send(self.messages.dtmf, digit)
                    self.counts.dtmf_sent += 1
                self._send(self.messages.media, tick.ulaw)
                self.frame_sent_s.append(now_s)
                self.counts.media_sent += 1
                frame += 1
        except KeyboardInterrupt:
            self.ended_by = "caller (interrupted)"
        except (websocket.WebSocketConnectionClosedException, OSError) as error:
            self.ended_by = "server"  # the socket died under us: wrap up with what we have
            self.log(time.monotonic(), f"connection lost: {error!r}")
        finally:
            self._hang_up(receiver)

    def _hang_up(self, receiver) -> None:
        """Send ``stop`` (unless the server hung up), then close the socket with one reader at a time.

        Twilio sends ``stop`` and closes [T-WS]; a server usually closes first on
        ``stop``, so give it ``STOP_GRACE_S`` before closing from this side.
        """
        import time

        import websocket

        self._stopping = True
        if self.ended_by != "server":
            try:
                self._send(self.messages.stop)
                self.log(time.monotonic(), "caller: hang up (stop)")
            except (websocket.WebSocketException, OSError):
                pass
            receiver.join(timeout=STOP_GRACE_S)
        # ws.close() reads the peer's close frame: never while the receiver is reading too.
        receiver.kill(timeout=1)
        try:
            self.ws.close(timeout=2)  # no-op if the server's close frame was already answered
        except (websocket.WebSocketException, OSError):
            pass
        self.ws.shutdown()

    def _play_tick(self, now_s: float) -> None:
        timestamp_ms = self.messages.next_timestamp_ms
        played, reached = self.buffer.tick(FRAME_BYTES)
        self.heard += played + bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(played))
        if played:
            self.waiter.note_audio_played(now_s)
            self.replies.on_played(timestamp_ms)
        for name in reached:
            self._echo_mark(name, now_s, played=True)

    def caller_end_send_times(self, turns: list[dict]) -> list[tuple[int, int, float]]:
        """Map caller turns' ``end_ms`` to the monotonic time their end frame was sent."""
        ends = []
        for index, turn in enumerate(turns):
            if turn.get("speaker") != "caller" or not isinstance(turn.get("end_ms"), (int, float)):
                continue
            frame = frame_index_for_ms(int(turn["end_ms"]), self.messages.first_timestamp_ms)
            if frame < len(self.frame_sent_s):
                ends.append((index, int(turn["end_ms"]), self.frame_sent_s[frame]))
        return ends


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


class CallError(Exception):
    """The call could not be placed or streamed (exit code 1)."""


def build_arg_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="callsim",
        description="Simulate Twilio's side of a call (voice webhook + bidirectional Media Stream) against a\n"
                    "callstream server, in real time. Before the first item (unless --no-wait-greeting), between\n"
                    "items and after the last one, the caller sends μ-law silence until the bot is quiet:\n"
                    "nothing queued for playback, no bot audio for --quiet-s, at least --min-wait-s waited and,\n"
                    "after an audio or dtmf item, a reply started; --turn-timeout-s bounds each wait.",
        epilog="Examples:\n"
               "  python tools/callsim.py ../shared/corpus/jfk.flac\n"
               "  python tools/callsim.py --url http://127.0.0.1:5050 hello.wav dtmf:12# silence:2 bye.wav\n"
               "  python tools/callsim.py --no-wait-greeting --json report.json question.wav\n"
               "Exit code: 0 completed call, 1 error (webhook/connection, no <Connect><Stream>, "
               "violations with --strict), 2 bad arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("script", nargs="*", metavar="AUDIO_OR_DTMF",
                        help="caller's script in order: an audio FILE, dtmf:DIGITS (100 ms apart), silence:SECONDS, "
                             "or interrupt:SECONDS (talk over the reply after it played that long)")
    parser.add_argument("--url", help="server base URL (voice webhook = URL/incoming-call); "
                                      "default: start app.create_app() in this process")
    parser.add_argument("--from", dest="from_number", default="+15551230001",
                        help="caller number (default %(default)s)")
    parser.add_argument("--to", dest="to_number", default="+15559870002", help="called number (default %(default)s)")
    parser.add_argument("--quiet-s", type=float, default=1.5,
                        help="bot silence that ends a wait, seconds (default %(default)s)")
    parser.add_argument("--min-wait-s", type=float, default=0.0, help="minimum wait, seconds (default %(default)s)")
    parser.add_argument("--turn-timeout-s", type=float, default=20.0,
                        help="maximum wait for the bot, seconds (default %(default)s)")
    parser.add_argument("--no-wait-greeting", action="store_true",
                        help="speak the first item at once instead of waiting for the bot (tests barge-in)")
    parser.add_argument("--first-timestamp-ms", type=int, default=20,
                        help="media.timestamp of the first media message (default %(default)s)")
    parser.add_argument("--auth-token", help="sign the webhook and the WebSocket upgrade with X-Twilio-Signature "
                                             "using this auth token")
    parser.add_argument("--out", default="callsim-heard.wav",
                        help="WAV of what the caller heard, 8 kHz PCM16 mono (default %(default)s)")
    parser.add_argument("--json", dest="json_path", help="write a machine-readable report to this path")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the server sent any invalid message")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every message from the server")
    return parser


def start_in_process_server():
    """Start the repository's app on 127.0.0.1 with an ephemeral port; return (server, base URL)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from app import create_app, make_server

    server = make_server(create_app(), "127.0.0.1", 0)
    server.start()
    return server, f"http://127.0.0.1:{server.server_port}"


def fetch_call_record(base_url: str, call_sid: str, wait_s: float = 3.0) -> tuple[dict | None, str | None]:
    """GET the call record, retrying until it has ``ended_at`` (or ``wait_s`` passes).

    Returns:
        (record or None, error text or None).
    """
    import time

    import requests

    url = base_url.rstrip("/") + API_CALL_PATH.format(call_sid=call_sid)
    deadline_s = time.monotonic() + wait_s
    record, error = None, None
    while True:
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                record, error = response.json(), None
                if record.get("ended_at"):
                    return record, None
            else:
                error = f"GET {url} -> HTTP {response.status_code}"
        except (requests.RequestException, ValueError) as exc:
            error = f"GET {url} failed: {exc}"
        if time.monotonic() >= deadline_s:
            return record, error
        time.sleep(0.2)


def print_conversation(record: dict) -> None:
    """Print the call record's turns: media-clock times in seconds, speaker, text."""
    turns = record.get("turns") or []
    print(f"\nConversation {record.get('call_sid', '')} ({len(turns)} turns):")
    for turn in turns:
        start_ms, end_ms = turn.get("start_ms"), turn.get("end_ms")
        span = (f"{start_ms / 1000:7.2f}-{end_ms / 1000:7.2f}s"
                if isinstance(start_ms, (int, float)) and isinstance(end_ms, (int, float)) else f"{'?':>17}")
        text = turn.get("text", "")
        if turn.get("dtmf"):
            text = f"[DTMF {turn['dtmf']}] {text}".strip()
        print(f"  {span}  {turn.get('speaker', '?'):<6}  {text}")


@dataclass
class CallOutcome:
    """Everything known about one simulated call, for printing and the report."""

    call_sid: str
    account_sid: str
    stream_sid: str
    items: list[ScriptItem]
    first_timestamp_ms: int
    base_url: str | None = None
    ws_url: str | None = None
    downgraded: bool = False
    twiml: TwimlStream | None = None
    session: SimulatedCall | None = None
    record: dict | None = None
    record_error: str | None = None
    latency: list[dict] = field(default_factory=list)
    heard_wav: str | None = None
    errors: list[str] = field(default_factory=list)


def build_report(outcome: CallOutcome) -> dict:
    """Assemble the ``--json`` report.

    Schema (times ``*_ms`` without "latency" are on the media clock, i.e. the
    ``timestamp`` of the media messages sent; latencies are wall-clock ms)::

        {"call_sid": "CA…", "account_sid": "AC…", "stream_sid": "MZ…",
         "url": base URL, "websocket_url": URL opened, "downgraded_to_ws": bool,
         "twiml": {"stream_url", "parameters": {…}, "say": [...]} | null,
         "script": [argument, ...], "first_timestamp_ms": int,
         "ended_by": "caller" | "server" | "caller (interrupted)" | "error" | null,
         "duration_ms": media time sent (frames × 20),
         "call": call record from GET /api/calls/<sid> | null, "call_error": str | null,
         "counts": {media_sent, dtmf_sent, media_received, media_received_bytes,
                    marks_received (sent by the server), marks_echoed, clears_received,
                    violations, late_ticks (> 10 ms behind the 20 ms clock),
                    max_tick_lateness_ms, replies},
         "violations": [{"at_ms", "error", "message" (first 300 chars)}],
         "replies": [{"index", "arrival_ms", "heard_ms", "first_mark_echo_ms",
                      "media_messages", "ulaw_bytes"}],
         "latency": [{"caller_turn" (index in call.turns), "caller_end_ms", "reply" (index | null),
                      "voice_to_voice_ms", "first_mark_echo_ms", "reply_heard_ms"}],
         "voice_to_voice_ms_median": number | null, "heard_wav": path | null,
         "errors": [str], "ok": bool}
    """
    session = outcome.session
    counts, replies = {}, []
    if session is not None:
        counts = asdict(session.counts)
        counts["replies"] = len(session.replies.replies)
        for reply in session.replies.replies:
            replies.append({
                "index": reply.index,
                "arrival_ms": session.clock_ms(reply.arrival_s),
                "heard_ms": reply.heard_ms,
                "first_mark_echo_ms": (session.clock_ms(reply.first_mark_echo_s)
                                       if reply.first_mark_echo_s is not None else None),
                "media_messages": reply.media_messages,
                "ulaw_bytes": reply.ulaw_bytes,
            })
    twiml = outcome.twiml
    return {
        "call_sid": outcome.call_sid,
        "account_sid": outcome.account_sid,
        "stream_sid": outcome.stream_sid,
        "url": outcome.base_url,
        "websocket_url": outcome.ws_url,
        "downgraded_to_ws": outcome.downgraded,
        "twiml": {"stream_url": twiml.url, "parameters": twiml.parameters, "say": twiml.say} if twiml else None,
        "script": [item.token for item in outcome.items],
        "first_timestamp_ms": outcome.first_timestamp_ms,
        "ended_by": session.ended_by if session else None,
        "duration_ms": len(session.frame_sent_s) * FRAME_MS if session else 0,
        "call": outcome.record,
        "call_error": outcome.record_error,
        "counts": counts,
        "violations": session.violations if session else [],
        "replies": replies,
        "latency": outcome.latency,
        "voice_to_voice_ms_median": median_or_none([entry["voice_to_voice_ms"] for entry in outcome.latency]),
        "heard_wav": outcome.heard_wav,
        "errors": outcome.errors,
        "ok": not outcome.errors,
    }


def load_script(tokens: list[str]) -> tuple[list[ScriptItem], dict[str, bytes]]:
    """Parse the script and decode its audio files (μ-law 8 kHz) before the call starts.

    Raises:
        ValueError: a bad item or an unreadable audio file.
    """
    items = parse_script(tokens)
    audio = {}
    for item in items:
        if item.kind == "audio" and item.path not in audio:
            try:
                audio[item.path] = load_audio_ulaw(item.path)
            except Exception as error:  # soundfile raises LibsndfileError/TypeError/RuntimeError, not only OSError
                raise ValueError(f"cannot read audio {item.path!r}: {error}") from None
            print(f"loaded {item.path}: {len(audio[item.path]) / SAMPLE_RATE:.2f} s at 8 kHz μ-law")
    return items, audio


def answer_call(webhook_url: str, form: dict[str, str], validator) -> TwimlStream:
    """POST the voice webhook like Twilio and return the stream from its TwiML.

    Args:
        webhook_url: ``{url}/incoming-call``.
        form: fields from ``webhook_form``.
        validator: a ``twilio.request_validator.RequestValidator`` to sign with, or None.

    Raises:
        CallError: connection failure, non-200 answer, or TwiML without ``<Connect><Stream>``.
    """
    import requests

    headers = {"User-Agent": "TwilioProxy/1.1"}
    if validator is not None:
        headers["X-Twilio-Signature"] = validator.compute_signature(webhook_url, form)
    try:
        response = requests.post(webhook_url, data=form, headers=headers, timeout=30)
    except requests.RequestException as error:
        raise CallError(f"voice webhook failed: {error}") from None
    if response.status_code != 200:
        raise CallError(f"voice webhook returned HTTP {response.status_code}: {response.text[:300]}")
    try:
        return parse_twiml(response.text)
    except TwimlError as error:
        raise CallError(f"{error}\nTwiML was: {response.text[:500]}") from None


def open_stream(ws_url: str, signed_url: str, validator):
    """Open the Media Stream WebSocket (blocking, no timeout once open).

    Args:
        ws_url: URL to connect to (ws:// or wss://).
        signed_url: the TwiML ``<Stream url>``; Twilio signs it exactly as written,
            with empty params [protocol.md §6.2].
        validator: a ``RequestValidator`` to sign with, or None.

    Raises:
        CallError: the connection or handshake failed.
    """
    import websocket

    headers = []
    if validator is not None:
        headers.append(f"X-Twilio-Signature: {validator.compute_signature(signed_url, {})}")
    try:
        ws = websocket.create_connection(ws_url, timeout=10, header=headers)
    except (websocket.WebSocketException, OSError) as error:
        raise CallError(f"WebSocket connection to {ws_url} failed: {error}") from None
    ws.settimeout(None)
    return ws


def place_call(args: argparse.Namespace, outcome: CallOutcome, audio: dict[str, bytes]) -> None:
    """Run the whole call against ``outcome.base_url``, filling ``outcome``.

    Raises:
        CallError: the call could not be placed or streamed.
    """
    validator = None
    if args.auth_token:
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(args.auth_token)
    webhook_url = outcome.base_url.rstrip("/") + WEBHOOK_PATH
    form = webhook_form(outcome.call_sid, outcome.account_sid, args.from_number, args.to_number)
    print(f"POST {webhook_url} (CallSid {outcome.call_sid}, From {args.from_number}, To {args.to_number})")
    outcome.twiml = twiml = answer_call(webhook_url, form, validator)
    for text in twiml.say:
        print(f"TwiML <Say>: {text!r} (Twilio speaks this before streaming; not simulated)")
    try:
        outcome.ws_url, outcome.downgraded = websocket_url(twiml.url, webhook_url)
    except TwimlError as error:
        raise CallError(str(error)) from None
    if outcome.downgraded:
        print(f"stream URL {twiml.url} -> connecting to {outcome.ws_url} (webhook is plain http://, no TLS)")
    print(f"WebSocket {outcome.ws_url} (StreamSid {outcome.stream_sid}, parameters {twiml.parameters})")
    ws = open_stream(outcome.ws_url, twiml.url, validator)

    waiter = TurnWaiter(args.quiet_s, args.min_wait_s, args.turn_timeout_s)
    script = CallerScript(outcome.items, audio, waiter, wait_first=not args.no_wait_greeting)
    messages = TwilioMessages(outcome.stream_sid, outcome.account_sid, outcome.call_sid, args.first_timestamp_ms)
    outcome.session = session = SimulatedCall(ws, messages, twiml.parameters, script, waiter, verbose=args.verbose)
    session.run()
    if session.failure:
        outcome.errors.append(session.failure)

    write_wav(args.out, ulaw_to_pcm(bytes(session.heard)))
    outcome.heard_wav = args.out
    print(f"\nheard audio: {args.out} ({len(session.heard) / SAMPLE_RATE:.2f} s, "
          f"sample 0 = timestamp {args.first_timestamp_ms} ms)")

    outcome.record, outcome.record_error = fetch_call_record(outcome.base_url, outcome.call_sid)
    if outcome.record is not None:
        print_conversation(outcome.record)
        caller_ends = session.caller_end_send_times(outcome.record.get("turns") or [])
        outcome.latency = pair_latencies(caller_ends, session.replies.replies)
    else:
        print(f"\nno call record: {outcome.record_error}")
    if session.violations:
        text = f"{len(session.violations)} protocol violation(s) by the server"
        print(text)
        if args.strict:
            outcome.errors.append(text)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Place the call described by ``args``; return the exit code. Needs gevent patching done."""
    if args.quiet_s < 0 or args.min_wait_s < 0 or args.turn_timeout_s <= 0 or args.first_timestamp_ms < 0:
        parser.error("--quiet-s, --min-wait-s and --first-timestamp-ms must be >= 0, --turn-timeout-s > 0")
    try:
        items, audio = load_script(args.script)
    except ValueError as error:
        parser.error(str(error))
    outcome = CallOutcome(random_sid("CA"), random_sid("AC"), random_sid("MZ"), items, args.first_timestamp_ms,
                          base_url=args.url)
    server = None
    try:
        if outcome.base_url is None:
            print("starting the server in this process (app.create_app)...", flush=True)
            server, outcome.base_url = start_in_process_server()
            print(f"server listening on {outcome.base_url}")
        place_call(args, outcome, audio)
    except CallError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        outcome.errors.append(str(error))
    finally:
        if server is not None:
            server.stop(timeout=2)

    report = build_report(outcome)
    if outcome.session is not None:
        print_summary(report)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
        print(f"report: {args.json_path}")
    return 0 if report["ok"] else 1


def print_summary(report: dict) -> None:
    """Print the one-line summary: turns, replies, median voice-to-voice latency, counts."""
    counts = report["counts"]
    latencies = [entry["voice_to_voice_ms"] for entry in report["latency"] if entry["voice_to_voice_ms"] is not None]
    median = report["voice_to_voice_ms_median"]
    latency_text = (f"voice-to-voice median {median:.0f} ms (min {min(latencies)}, max {max(latencies)}, "
                    f"n={len(latencies)})" if latencies else "voice-to-voice: no paired replies")
    print(f"\nSummary: {len(report['latency'])} caller turn(s), {counts.get('replies', 0)} bot reply(ies), "
          f"{latency_text}; media sent {counts.get('media_sent', 0)}, received {counts.get('media_received', 0)}; "
          f"marks {counts.get('marks_echoed', 0)} echoed / {counts.get('marks_received', 0)} received; "
          f"clears {counts.get('clears_received', 0)}; violations {counts.get('violations', 0)}; "
          f"max tick lateness {counts.get('max_tick_lateness_ms', 0)} ms; ended by {report['ended_by']}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: monkey-patch for gevent first, then parse arguments and run the call."""
    from gevent import monkey

    monkey.patch_all()
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
