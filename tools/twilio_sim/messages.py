"""Media Stream messages: building the ones Twilio (or SignalWire) sends, validating the ones the server sends.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import uuid
from dataclasses import dataclass

from tools.twilio_sim.frames import FRAME_MS, SAMPLE_RATE
from tools.twilio_sim.media_format import MULAW_8K, MediaFormat

MEDIA_TRACKS = ("inbound", "outbound")  # media.track values [T-WS]
UNIDIRECTIONAL_VIOLATION = "message on a unidirectional stream: Twilio rejects it with error 31924"


def random_sid(prefix: str) -> str:
    """Return a Twilio-style SID: a two-letter prefix and 32 lowercase hex digits.

    Args:
        prefix: "CA" (call), "AC" (account) or "MZ" (stream) [T-STREAMAPI: ``^MZ[0-9a-fA-F]{32}$``].
    """
    return prefix + secrets.token_hex(16)


def random_uuid_sid() -> str:
    """Return a SignalWire-style SID: a random UUID in lowercase text, e.g. "7d56cc11-536d-4a45-b4fb-ed3d55be843b".

    SignalWire's call, account and stream SIDs are all UUIDs [SW-STREAM, protocol.md §9].
    """
    return str(uuid.uuid4())


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

    Attributes:
        media_format: the payloads' format: μ-law 8 kHz, the only one Twilio has [T-WS].
    """

    media_format: MediaFormat = MULAW_8K

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

    def _use_tracks(self, tracks: list[str] | tuple[str, ...]) -> None:
        if not tracks or any(track not in MEDIA_TRACKS for track in tracks):
            raise ValueError(f"tracks {list(tracks)!r} must be one or more of {MEDIA_TRACKS}")
        self.tracks = tuple(tracks)

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
        self._use_tracks(tracks)
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
        media = self._media_body(ulaw, track)
        return json.dumps({
            "event": "media",
            "sequenceNumber": self._next_sequence(),
            "media": media,
            "streamSid": self.stream_sid,
        })

    def _media_body(self, payload: bytes, track: str) -> dict[str, str]:
        """The ``media`` object of the track's next frame (advances its chunk counter)."""
        if track not in MEDIA_TRACKS:
            raise ValueError(f"track {track!r} is not one of {MEDIA_TRACKS}")
        timestamp_ms = self.first_timestamp_ms + self.chunks[track] * FRAME_MS
        self.chunks[track] += 1
        return {
            "track": track,
            "chunk": str(self.chunks[track]),
            "timestamp": str(timestamp_ms),
            "payload": base64.b64encode(payload).decode("ascii"),
        }

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


class SignalWireMessages(TwilioMessages):
    """Build the JSON texts SignalWire sends on one stream: Twilio's, with SignalWire's differences.

    The differences, from the ``rawEvent`` examples of SW-STREAM (protocol.md §9; fixtures
    ``signalwire_*.json``): ``connected`` has version "0.2.0"; ``start`` has no top-level
    ``streamSid``, ``customParameters`` only when there are parameters, and ``mediaFormat``
    follows the codec; ``media`` has no ``streamSid``; ``dtmf`` is ``{event, streamSid,
    dtmf{duration, digit}}`` (duration a number, in ms; no track, no sequenceNumber); a
    ``mark`` echo has no ``sequenceNumber``; ``stop`` is only ``{event, sequenceNumber}``.
    SIDs are UUIDs (``random_uuid_sid``).

    ``sequenceNumber`` counts the messages that carry one (``start``, ``media``, ``stop``):
    whether SignalWire also counts the ``dtmf`` and ``mark`` messages that do not show it is
    undocumented; not counting them is our choice. Chunks and timestamps are Twilio's (the
    L16@24k example: chunk "1001", timestamp "20041", 20 ms per chunk).

    Args:
        stream_sid, account_sid, call_sid: UUIDs.
        first_timestamp_ms: timestamp of the first media message.
        media_format: the payloads' format: ``MULAW_8K`` (no codec), ``L16_16K`` or ``L16_24K``.
    """

    DTMF_DURATION_MS = 100  # the key is held for the 100 ms the script spaces digits by

    def __init__(self, stream_sid: str, account_sid: str, call_sid: str, first_timestamp_ms: int = 20,
                 media_format: MediaFormat = MULAW_8K):
        super().__init__(stream_sid, account_sid, call_sid, first_timestamp_ms)
        self.media_format = media_format

    def connected(self) -> str:
        """Return the ``connected`` message (version "0.2.0", no sequence number)."""
        return json.dumps({"event": "connected", "protocol": "Call", "version": "0.2.0"})

    def start(self, custom_parameters: dict[str, str], tracks: list[str] | tuple[str, ...] = ("inbound",)) -> str:
        """Return the ``start`` message; see ``TwilioMessages.start`` for the arguments and errors."""
        self._use_tracks(tracks)
        start = {
            "streamSid": self.stream_sid,
            "accountSid": self.account_sid,
            "callSid": self.call_sid,
            "tracks": list(tracks),
        }
        if custom_parameters:  # "Appears only when parameters are defined" [SW-STREAM]
            start["customParameters"] = dict(custom_parameters)
        fmt = self.media_format
        start["mediaFormat"] = {"encoding": fmt.encoding, "sampleRate": fmt.sample_rate, "channels": 1}
        return json.dumps({"event": "start", "sequenceNumber": self._next_sequence(), "start": start})

    def media(self, payload: bytes, track: str = "inbound") -> str:
        """Return a ``media`` message carrying one frame of one track (no ``streamSid``).

        Args:
            payload: one 20 ms frame in ``media_format`` (160 bytes μ-law, 640 or 960 bytes L16).
            track: "inbound" or "outbound".

        Raises:
            ValueError: another track.
        """
        media = self._media_body(payload, track)
        return json.dumps({"event": "media", "sequenceNumber": self._next_sequence(), "media": media})

    def dtmf(self, digit: str) -> str:
        """Return a ``dtmf`` message for one key press, held ``DTMF_DURATION_MS``."""
        return json.dumps({
            "event": "dtmf",
            "streamSid": self.stream_sid,
            "dtmf": {"duration": self.DTMF_DURATION_MS, "digit": digit},
        })

    def mark(self, name: str) -> str:
        """Return the ``mark`` echo for a mark the server sent (no sequence number)."""
        return json.dumps({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def stop(self) -> str:
        """Return the ``stop`` message: only the event and a sequence number."""
        return json.dumps({"event": "stop", "sequenceNumber": self._next_sequence()})


class ProtocolViolation(ValueError):
    """A server message Twilio would reject (warnings 31950/31951) [protocol.md §8]."""


@dataclass(frozen=True)
class ServerMessage:
    """A valid message from the server.

    Attributes:
        event: "media", "mark" or "clear".
        payload: decoded payload for "media", in the stream's ``MediaFormat`` (G.711 μ-law 8 kHz
            mono on Twilio), else None.
        mark_name: the mark's name for "mark", else None.
    """

    event: str
    payload: bytes | None = None
    mark_name: str | None = None

    @property
    def ulaw(self) -> bytes | None:
        """``payload``, by its name on a μ-law stream."""
        return self.payload


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


def parse_server_message(data: str | bytes, stream_sid: str, unidirectional: bool = False,
                         media_format: MediaFormat = MULAW_8K) -> ServerMessage:
    """Validate one WebSocket message from the server the way Twilio does.

    On a bidirectional stream Twilio accepts only text frames holding JSON
    ``media``, ``mark`` or ``clear`` messages with exactly the documented fields
    and the active ``streamSid`` [T-WS; T-ERR-31950, T-ERR-31951]. On a
    unidirectional ``<Start><Stream>`` fork it accepts nothing at all: "do not
    send audio or control messages back to Twilio" [T-ERR-31924]. SignalWire
    documents the same three messages with the same fields, and media "must match"
    the stream's codec [SW-STREAM, protocol.md §9]: the same checks apply, and an
    L16 payload must hold whole 16-bit samples.

    Args:
        data: the message: ``str`` for a text frame, ``bytes`` for a binary frame.
        stream_sid: the stream's SID (from ``start``).
        unidirectional: the stream is a fork; every message is a violation.
        media_format: the stream's format (``MULAW_8K`` on Twilio).

    Returns:
        The parsed message.

    Raises:
        ProtocolViolation: any message on a unidirectional stream (the text starts with
            ``UNIDIRECTIONAL_VIOLATION``); else binary frame, invalid JSON, unknown event,
            missing or extra fields, non-string fields, wrong streamSid, payload that is not
            non-empty standard base64, a payload that is not a whole number of samples, or an
            empty mark name.
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
        if len(ulaw) % media_format.sample_width:
            raise ProtocolViolation(f"media.payload is {len(ulaw)} bytes: not whole {media_format.label} samples "
                                    f"({media_format.sample_width} bytes each)")
        return ServerMessage("media", payload=ulaw)
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
