"""Media Stream messages: building the ones Twilio sends, validating the ones the server sends.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass

from tools.twilio_sim.frames import FRAME_MS, SAMPLE_RATE

MEDIA_TRACKS = ("inbound", "outbound")  # media.track values [T-WS]
UNIDIRECTIONAL_VIOLATION = "message on a unidirectional stream: Twilio rejects it with error 31924"


def random_sid(prefix: str) -> str:
    """Return a Twilio-style SID: a two-letter prefix and 32 lowercase hex digits.

    Args:
        prefix: "CA" (call), "AC" (account) or "MZ" (stream) [T-STREAMAPI: ``^MZ[0-9a-fA-F]{32}$``].
    """
    return prefix + secrets.token_hex(16)


class TwilioMessages:
    """Build the JSON texts Twilio sends on one stream, with its counters [T-WS, protocol.md §2].

    ``sequenceNumber`` is one counter shared by every message after ``connected``
    (``start`` is "1"), across tracks; ``media.chunk`` counts each track's media
    messages from "1" (whether Twilio counts chunks per track or across the tracks
    of a ``both_tracks`` fork is undocumented [protocol.md §11]: per track is our
    choice); ``media.timestamp`` starts at ``first_timestamp_ms`` and advances 20
    per 160-byte frame of that track, so when every track sends one frame per
    20 ms the frames of the same 20 ms carry the same timestamp. Numeric-looking
    fields are JSON strings, ``mediaFormat`` numbers are JSON numbers.

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
        self.chunks = {track: 0 for track in MEDIA_TRACKS}  # last media chunk used, per track
        self.tracks: tuple[str, ...] = ("inbound",)  # the stream's tracks, set by ``start``

    @property
    def next_timestamp_ms(self) -> int:
        """Timestamp of the next 20 ms: the next frame of the stream's track that has sent the fewest.

        Between ticks (each of ``tracks`` has sent one frame per tick) it is the
        timestamp every track's next frame carries.
        """
        return self.first_timestamp_ms + min(self.chunks[track] for track in self.tracks) * FRAME_MS

    def _next_sequence(self) -> str:
        self.sequence_number += 1
        return str(self.sequence_number)

    def connected(self) -> str:
        """Return the ``connected`` message (no sequence number)."""
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(self, custom_parameters: dict[str, str], tracks: list[str] | tuple[str, ...] = ("inbound",)) -> str:
        """Return the ``start`` message.

        Args:
            custom_parameters: the TwiML ``<Parameter>``s.
            tracks: ``start.tracks``: ["inbound"] for a bidirectional stream; a fork's
                follow its TwiML ``track`` (``twiml.STREAM_TRACKS``) [T-WS, protocol.md §2.2].

        Raises:
            ValueError: a track other than "inbound"/"outbound", or none.
        """
        if not tracks or any(track not in MEDIA_TRACKS for track in tracks):
            raise ValueError(f"tracks {list(tracks)!r} must be one or more of {MEDIA_TRACKS}")
        self.tracks = tuple(tracks)
        return json.dumps({
            "event": "start",
            "sequenceNumber": self._next_sequence(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": list(tracks),
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": SAMPLE_RATE, "channels": 1},
                "customParameters": dict(custom_parameters),
            },
            "streamSid": self.stream_sid,
        })

    def media(self, ulaw: bytes, track: str = "inbound") -> str:
        """Return a ``media`` message carrying one frame of one track.

        Args:
            ulaw: G.711 μ-law bytes, 8 kHz mono; 160 bytes (20 ms) for the timestamps to stay right.
            track: "inbound" (the caller) or "outbound" (audio Twilio plays to the caller: on a fork,
                the dialled party) [T-WS "media.track"].

        Raises:
            ValueError: another track.
        """
        if track not in MEDIA_TRACKS:
            raise ValueError(f"track {track!r} is not one of {MEDIA_TRACKS}")
        timestamp_ms = self.first_timestamp_ms + self.chunks[track] * FRAME_MS
        self.chunks[track] += 1
        return json.dumps({
            "event": "media",
            "sequenceNumber": self._next_sequence(),
            "media": {
                "track": track,
                "chunk": str(self.chunks[track]),
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


def parse_server_message(data: str | bytes, stream_sid: str, unidirectional: bool = False) -> ServerMessage:
    """Validate one WebSocket message from the server the way Twilio does.

    On a bidirectional stream Twilio accepts only text frames holding JSON
    ``media``, ``mark`` or ``clear`` messages with exactly the documented fields
    and the active ``streamSid`` [T-WS; T-ERR-31950, T-ERR-31951]. On a
    unidirectional ``<Start><Stream>`` fork it accepts nothing at all: "do not
    send audio or control messages back to Twilio" [T-ERR-31924].

    Args:
        data: the message: ``str`` for a text frame, ``bytes`` for a binary frame.
        stream_sid: the stream's SID (from ``start``).
        unidirectional: the stream is a fork; every message is a violation.

    Returns:
        The parsed message.

    Raises:
        ProtocolViolation: any message on a unidirectional stream (the text starts with
            ``UNIDIRECTIONAL_VIOLATION``); else binary frame, invalid JSON, unknown event,
            missing or extra fields, non-string fields, wrong streamSid, payload that is not
            non-empty standard base64, or an empty mark name.
    """
    if unidirectional:
        raise ProtocolViolation(f"{UNIDIRECTIONAL_VIOLATION} ({_describe(data)})")
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


def _describe(data: str | bytes) -> str:
    """A short description of a message for a violation text, e.g. "text frame, event 'mark'"."""
    if isinstance(data, (bytes, bytearray)):
        return f"binary frame, {len(data)} bytes"
    try:
        message = json.loads(data)
    except json.JSONDecodeError:
        return "text frame, not JSON"
    if isinstance(message, dict) and "event" in message:
        return f"text frame, event {message['event']!r}"
    return "text frame, JSON without an event"
