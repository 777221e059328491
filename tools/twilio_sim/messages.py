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


def random_sid(prefix: str) -> str:
    """Return a Twilio-style SID: a two-letter prefix and 32 lowercase hex digits.

    Args:
        prefix: "CA" (call), "AC" (account) or "MZ" (stream) [T-STREAMAPI: ``^MZ[0-9a-fA-F]{32}$``].
    """
    return prefix + secrets.token_hex(16)


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
