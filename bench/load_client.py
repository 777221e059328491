"""Load-test client: many simulated Twilio Media Streams from one gevent process, cheaply.

Used by ``bench/load.py``. The simulator in ``tools/twilio_sim`` places one call faithfully;
this module places up to hundreds at once from one process that shares the machine with the
server, so every per-message cost is cut:

* media messages are formatted from a template with pre-encoded payloads (``fast_media``,
  identical text to ``TwilioMessages.media``) and framed as WebSocket text frames with a zero
  masking key (``client_frame``: RFC 6455 §5.3 requires a key, the server cannot tell a zero
  one from a random one, and with it the frame is the text itself behind a header, so a fork's
  whole stream is built before the run and each 20 ms costs one ``sendall``);
* the handshake and the parsing of the server's frames use ``wsproto`` (the library
  ``simple-websocket`` runs on);
* silence is μ-law 0x7F (minus zero) instead of 0xFF (plus zero): both decode to PCM 0, but the
  server's recorder fills gaps with 0xFF, so every frame the server recorded can be checked
  against what was sent, silence included (``frames_lost``). Audio files are sent the same way
  (``distinguishable``: every 0xFF byte becomes 0x7F, which decodes to the same sample).

Pure helpers (no I/O, no clock): ``fast_media``, ``client_frame``, ``distinguishable``,
``UnderrunMeter``, ``frames_lost``, ``percentile``, ``build_fork_plan``.
Runtime (gevent; ``gevent.monkey.patch_all()`` must have run): ``connect_websocket``,
``LoadCall`` (a bidirectional conversation), ``LoadFork`` (a listen-only fork).
"""

from __future__ import annotations

import base64
import math
import struct
from array import array
from dataclasses import dataclass, field

from tools.twilio_sim.frames import FRAME_BYTES, FRAME_MS, frame_index_for_ms
from tools.twilio_sim.latency import ReplyTracker
from tools.twilio_sim.messages import ProtocolViolation, TwilioMessages, parse_server_message, random_sid
from tools.twilio_sim.playback import PlaybackBuffer
from tools.twilio_sim.script import CallerScript, ScriptItem, TurnWaiter, split_frames

ULAW_SILENCE_SENT = 0x7F  # μ-law "minus zero": PCM 0, like 0xFF, but not the recorder's gap fill
SILENCE_FRAME = bytes([ULAW_SILENCE_SENT]) * FRAME_BYTES
_FF_TO_7F = bytes.maketrans(b"\xff", b"\x7f")
STOP_GRACE_S = 3.0  # after ``stop``, time the server gets to close the socket itself

_MEDIA_TEXT = ('{"event": "media", "sequenceNumber": "%d", "media": {"track": "%s", "chunk": "%d", '
               '"timestamp": "%d", "payload": "%s"}, "streamSid": "%s"}')



def is_refusal(webhook_error: str) -> bool:
    """True when a failed voice webhook was the server refusing the call (admission control or
    MAX_CALLS): HTTP 503, or TwiML that hangs up instead of streaming (``answer_call``'s error text)."""
    return "HTTP 503" in webhook_error or "<Hangup" in webhook_error

def distinguishable(ulaw: bytes) -> bytes:
    """Return μ-law audio with every 0xFF byte (+0) replaced by 0x7F (−0): the same PCM samples,
    but no byte equal to the recorder's gap fill (0xFF), so lost frames can be found."""
    return ulaw.translate(_FF_TO_7F)


def fast_media(messages: TwilioMessages, payload_b64: str, track: str = "inbound") -> str:
    """Return the ``media`` message ``messages.media(ulaw, track)`` would, from a pre-encoded payload.

    Same text (same key order and separators as ``json.dumps``), same counters advanced
    (``sequence_number``, ``chunks[track]``), about ten times cheaper.

    Args:
        messages: the stream's message builder (its counters advance).
        payload_b64: standard base64 of the 160-byte μ-law frame (``base64.b64encode(...).decode()``).
        track: "inbound" or "outbound".

    Raises:
        KeyError: a track other than "inbound"/"outbound".
    """
    timestamp_ms = messages.first_timestamp_ms + messages.chunks[track] * FRAME_MS
    messages.chunks[track] += 1
    messages.sequence_number += 1
    return _MEDIA_TEXT % (messages.sequence_number, track, messages.chunks[track], timestamp_ms, payload_b64,
                          messages.stream_sid)


def client_frame(text: str | bytes) -> bytes:
    """Frame one WebSocket text message as a client must (FIN, opcode 1, masked), with the zero key.

    Args:
        text: the message (``str`` is UTF-8 encoded; ``bytes`` must already be UTF-8).

    Returns:
        The frame's bytes: 2–10 header bytes, the 4-byte key 00 00 00 00, then the text unchanged.
    """
    payload = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    length = len(payload)
    if length < 126:
        header = bytes((0x81, 0x80 | length))
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    return header + b"\x00\x00\x00\x00" + payload


def percentile(values, fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` 0–1) of ``values``; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def frames_lost(sent: bytes, recorded: bytes, start_byte: int, frame_bytes: int = FRAME_BYTES) -> int:
    """Count the frames of ``sent`` that the recording does not hold exactly where they belong.

    Args:
        sent: the track's μ-law bytes as sent, frame after frame (no 0xFF bytes: ``distinguishable``).
        recorded: the recording's μ-law samples (sample 0 = media time 0).
        start_byte: where ``sent`` starts in ``recorded`` (first media timestamp in ms × 8).
        frame_bytes: bytes per frame (160 = 20 ms).

    Returns:
        Frames missing (beyond the end, or filled with anything else: the recorder's 0xFF gap fill).
    """
    lost = 0
    for offset in range(0, len(sent), frame_bytes):
        frame = sent[offset:offset + frame_bytes]
        position = start_byte + offset
        if recorded[position:position + len(frame)] != frame:
            lost += 1
    return lost


class UnderrunMeter:
    """Gaps in the bot's audio as the caller hears it: the playback buffer ran dry inside a reply.

    A reply is the bot audio between two caller utterances. A gap starts on a tick that played
    less than a whole frame after reply audio had begun (at the time the last byte played), and is
    an underrun if more audio arrives before the caller speaks again (then its length is the
    wait until that audio arrived). The end of a reply (dry until the caller speaks) and a
    ``clear`` are not underruns. Times are monotonic seconds.
    """

    def __init__(self) -> None:
        self.gaps_s: list[float] = []
        self._in_reply = False
        self._dry_since_s: float | None = None

    def on_tick(self, now_s: float, played_bytes: int, caller_speaking: bool, frame_bytes: int = FRAME_BYTES) -> None:
        """Account for one 20 ms playback tick at ``now_s`` that played ``played_bytes`` μ-law bytes."""
        if caller_speaking:
            self._in_reply = False
            self._dry_since_s = None
        elif self._in_reply and played_bytes < frame_bytes and self._dry_since_s is None:
            self._dry_since_s = now_s + played_bytes / (frame_bytes * 1000 / FRAME_MS)

    def on_media(self, now_s: float) -> None:
        """Account for bot audio arriving at ``now_s``."""
        if self._dry_since_s is not None and now_s > self._dry_since_s:
            self.gaps_s.append(now_s - self._dry_since_s)
        self._dry_since_s = None
        self._in_reply = True

    def on_clear(self) -> None:
        """Account for a ``clear``: the reply was cut off on purpose."""
        self._in_reply = False
        self._dry_since_s = None


# -- forks: the whole stream built before the run ----------------------------------------------


@dataclass
class ForkPlan:
    """A listen-only fork's stream, built before the run.

    Attributes:
        call_sid, account_sid, stream_sid: the SIDs.
        first_timestamp_ms: media timestamp of the first frame.
        tracks: ``start.tracks`` the plan was built for.
        frames: per track, the μ-law frames sent, in order (one per 20 ms tick).
        bursts: WebSocket frames to send: ``burst_ticks`` ticks of every track each, joined.
        burst_ticks: ticks per burst; the last burst may hold fewer.
        stop_frame: the framed ``stop`` message.
        utterances: (track, start tick, end tick) of each utterance sent whole.
    """

    call_sid: str
    account_sid: str
    stream_sid: str
    first_timestamp_ms: int
    tracks: tuple[str, ...]
    frames: dict[str, list[bytes]]
    bursts: list[bytes]
    burst_ticks: int
    stop_frame: bytes
    utterances: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def ticks(self) -> int:
        """20 ms ticks in the stream."""
        return len(self.frames[self.tracks[0]])


def fork_schedule(utterances: list[bytes], ticks: int, first_pause_ticks: int, pause_ticks: list[int],
                  rotation: int) -> tuple[list[bytes], list[tuple[int, int]]]:
    """Lay out one track: silence, then utterances separated by pauses, cut at ``ticks``.

    Args:
        utterances: μ-law audio (``distinguishable``), spoken in turn starting at ``rotation``
            (none: silence throughout).
        ticks: length of the track in 20 ms ticks.
        first_pause_ticks: silence before the first utterance.
        pause_ticks: silence after each utterance, used in turn (at least one entry).
        rotation: index of the first utterance.

    Returns:
        (``ticks`` frames, (start tick, end tick) of each utterance that fits whole).
    """
    frames: list[bytes] = [SILENCE_FRAME] * min(ticks, first_pause_ticks)
    spoken = []
    turn = 0
    while len(frames) < ticks and utterances:
        audio = [distinguishable(frame) for frame in split_frames(utterances[(rotation + turn) % len(utterances)])]
        start = len(frames)
        frames.extend(audio[:ticks - start])
        if start + len(audio) <= ticks:
            spoken.append((start, start + len(audio)))
        frames.extend([SILENCE_FRAME] * min(ticks - len(frames), pause_ticks[turn % len(pause_ticks)]))
        turn += 1
    frames.extend([SILENCE_FRAME] * (ticks - len(frames)))
    return frames[:ticks], spoken


def build_fork_plan(tracks: tuple[str, ...], track_frames: dict[str, list[bytes]], burst_ticks: int,
                    first_timestamp_ms: int = 20, payloads: dict[bytes, str] | None = None) -> ForkPlan:
    """Build every message of a fork's stream: per tick one media message per track, framed.

    Sequence number 1 is left for ``start`` (sent after the voice webhook has answered).

    Args:
        tracks: ``start.tracks``, e.g. ("inbound", "outbound").
        track_frames: per track, one 160-byte μ-law frame per tick (all the same length).
        burst_ticks: ticks sent together (1 = one send every 20 ms, as Twilio does).
        first_timestamp_ms: media timestamp of tick 0.
        payloads: cache of base64 payloads by frame (filled as it goes).

    Raises:
        ValueError: ``burst_ticks`` < 1, or tracks of different lengths.
    """
    if burst_ticks < 1:
        raise ValueError("burst_ticks must be >= 1")
    lengths = {len(track_frames[track]) for track in tracks}
    if len(lengths) != 1:
        raise ValueError(f"tracks have different lengths: {lengths}")
    payloads = {} if payloads is None else payloads
    messages = TwilioMessages(random_sid("MZ"), random_sid("AC"), random_sid("CA"), first_timestamp_ms)
    messages.tracks = tuple(tracks)
    messages.sequence_number = 1  # "start"
    ticks = lengths.pop()
    bursts = []
    for first in range(0, ticks, burst_ticks):
        parts = []
        for tick in range(first, min(ticks, first + burst_ticks)):
            for track in tracks:
                frame = track_frames[track][tick]
                payload = payloads.get(frame)
                if payload is None:
                    payload = payloads[frame] = base64.b64encode(frame).decode("ascii")
                parts.append(client_frame(fast_media(messages, payload, track)))
        bursts.append(b"".join(parts))
    return ForkPlan(messages.call_sid, messages.account_sid, messages.stream_sid, first_timestamp_ms, tuple(tracks),
                    {track: track_frames[track] for track in tracks}, bursts, burst_ticks,
                    client_frame(messages.stop()))


# -- runtime -------------------------------------------------------------------------------------


def connect_websocket(ws_url: str, timeout_s: float = 10.0):
    """Open a WebSocket (``ws://`` only) with ``wsproto``; return (socket, ``wsproto.WSConnection``).

    The socket has TCP_NODELAY set and no timeout once open. Bytes the server sent after its
    handshake answer stay buffered in the connection: read its ``events()`` before receiving more.

    Raises:
        ConnectionError: the server refused the upgrade or closed the connection.
        OSError: the TCP connection failed or timed out.
    """
    import socket
    from urllib.parse import urlsplit

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, RejectConnection, Request

    parts = urlsplit(ws_url)
    if parts.scheme != "ws":
        raise ConnectionError(f"{ws_url}: only ws:// is supported")
    sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = WSConnection(ConnectionType.CLIENT)
        sock.sendall(conn.send(Request(host=parts.netloc, target=parts.path or "/")))
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError(f"{ws_url}: connection closed during the handshake")
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, AcceptConnection):
                    sock.settimeout(None)
                    return sock, conn
                if isinstance(event, RejectConnection):
                    raise ConnectionError(f"{ws_url}: upgrade refused with HTTP {event.status_code}")
    except BaseException:
        sock.close()
        raise


class _Stream:
    """One WebSocket as Twilio's side: sending (one lock), reading server messages, hanging up.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:5050``.
        webhook_path: "/incoming-call" or "/forward-call".
        start_at_s: monotonic time to place the call.
    """

    fork = False

    def __init__(self, base_url: str, webhook_path: str, start_at_s: float):
        from gevent.lock import Semaphore

        self.webhook_url = base_url.rstrip("/") + webhook_path
        self.start_at_s = start_at_s
        self.sock = None
        self.conn = None
        self._lock = Semaphore()
        self.server_closed = False
        self.error: str | None = None
        self.ended_by: str | None = None
        self.violations = 0
        self.callback_failures: list[str] = []
        self.stream_started_s: float | None = None
        self.stream_ended_s: float | None = None
        self.refused = False  # the webhook refused the call (admission control: busy TwiML or HTTP 503)

    def _answer_and_connect(self, call_sid: str, account_sid: str):
        from tools.twilio_sim.call import answer_call
        from tools.twilio_sim.twiml import webhook_form, websocket_url

        form = webhook_form(call_sid, account_sid, "+15551230001", "+15559870002")
        twiml = answer_call(self.webhook_url, form, None, fork=self.fork)
        ws_url, _ = websocket_url(twiml.url, self.webhook_url)
        self.sock, self.conn = connect_websocket(ws_url)
        return twiml

    def send(self, data: bytes) -> None:
        """Send bytes (whole frames) under the lock, so frames never interleave."""
        with self._lock:
            self.sock.sendall(data)

    def send_text(self, text: str) -> None:
        self.send(client_frame(text))

    def _status_callback(self, twiml, event: str, sids: tuple[str, str, str]) -> None:
        """Send a stream status callback like Twilio (fire and forget; failures are kept)."""
        if not twiml.status_callback:
            return
        import gevent

        gevent.spawn(self._send_callback, twiml, event, sids)

    def _send_callback(self, twiml, event: str, sids: tuple[str, str, str]) -> None:
        from datetime import datetime, timezone

        import requests

        from tools.twilio_sim.status_callback import callback_request, status_callback_form
        from tools.twilio_sim.twiml import status_callback_urls

        try:
            request_url, signed_url, _ = status_callback_urls(twiml.status_callback, self.webhook_url)
            form = status_callback_form(*sids, twiml.name, event, datetime.now(timezone.utc))
            request = callback_request(twiml.status_callback_method, request_url, signed_url, form)
            response = requests.request(request.method, request.url, data=request.form or None, timeout=15)
            if response.status_code >= 300 and response.status_code != 404:
                self.callback_failures.append(f"{event}: HTTP {response.status_code}")
        except Exception as exc:  # noqa: BLE001 - a failed callback is reported, the call goes on
            self.callback_failures.append(f"{event}: {exc}")

    def _read_loop(self) -> None:
        """Read the server's frames until it closes; text messages go to ``on_text``."""
        from wsproto.connection import ConnectionState
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        parts: list[str] = []
        try:
            while True:
                for event in self.conn.events():
                    if isinstance(event, TextMessage):
                        parts.append(event.data)
                        if event.message_finished:
                            self.on_text("".join(parts))
                            parts = []
                    elif isinstance(event, BytesMessage):
                        self.violations += 1
                    elif isinstance(event, Ping):
                        self.send(self.conn.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        if self.conn.state is ConnectionState.REMOTE_CLOSING:
                            self.send(self.conn.send(event.response()))
                        self.server_closed = True
                        return
                data = self.sock.recv(65536)
                if not data:
                    self.server_closed = True
                    return
                self.conn.receive_data(data)
        except OSError:
            self.server_closed = True

    def on_text(self, text: str) -> None:
        raise NotImplementedError

    def _hang_up(self, reader, stop_text: str | bytes) -> None:
        """Send ``stop`` (unless the server hung up), give the server time to close, then close."""
        import gevent
        from wsproto.events import CloseConnection

        if not self.server_closed:
            try:
                self.send(stop_text if isinstance(stop_text, bytes) else client_frame(stop_text))
            except OSError:
                pass
            reader.join(timeout=STOP_GRACE_S)
        if not reader.dead:
            try:
                self.send(self.conn.send(CloseConnection(code=1000)))
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            reader.join(timeout=1.0)
            reader.kill(block=False)
        gevent.sleep(0)
        try:
            self.sock.close()
        except OSError:
            pass


class LoadCall(_Stream):
    """One bidirectional conversation, as ``tools/twilio_sim`` plays it, cheap enough for dozens at once.

    Waits for the greeting (unless ``greeting`` is False), then speaks each utterance in real time,
    sending μ-law silence while it waits for the bot; the bot's audio goes through Twilio's
    playback buffer (``PlaybackBuffer``: 20 ms per tick, marks echoed when played) and the next
    utterance starts once the reply has played and the bot was quiet for ``quiet_s``
    (``TurnWaiter``, ``CallerScript``).

    Args:
        base_url: the server.
        utterances: μ-law 8 kHz audio (``distinguishable``) of each utterance, in speaking order.
        start_at_s: monotonic time to place the call.
        greeting: the server speaks a greeting first; wait for it before the first utterance.
        quiet_s: bot silence after which the caller speaks again, seconds.
        turn_timeout_s: longest wait for a reply, seconds.
        payloads: shared cache of base64 payloads by frame.

    Attributes (results): ``call_sid``; ``frame_sent_s`` (monotonic time each inbound media
    message had been sent); ``inbound`` (μ-law sent); ``replies`` (``ReplyTracker``);
    ``underruns`` (``UnderrunMeter``); ``tick_lateness_s`` (wake-up lateness of each tick, s);
    counts ``media_received``, ``marks_received``, ``clears_received``, ``violations``;
    ``greeting_wait`` (how the wait for the greeting ended); ``error``; ``ended_by``.
    """

    def __init__(self, base_url: str, utterances: list[bytes], start_at_s: float, greeting: bool = True,
                 quiet_s: float = 1.5, turn_timeout_s: float = 20.0, payloads: dict[bytes, str] | None = None,
                 first_timestamp_ms: int = 20):
        super().__init__(base_url, "/incoming-call", start_at_s)
        self.call_sid = random_sid("CA")
        self.account_sid = random_sid("AC")
        self.stream_sid = random_sid("MZ")
        self.first_timestamp_ms = first_timestamp_ms
        self.greeting = greeting
        self.waiter = TurnWaiter(quiet_s, 0.0, turn_timeout_s)
        audio = {f"utterance{index}": ulaw for index, ulaw in enumerate(utterances)}
        items = [ScriptItem("audio", name, path=name) for name in audio]
        self.script = CallerScript(items, audio, self.waiter, wait_first=False)
        self.utterance_count = len(items)
        self.payloads = {} if payloads is None else payloads
        self.buffer = PlaybackBuffer()
        self.replies = ReplyTracker()
        self.underruns = UnderrunMeter()
        self.messages = TwilioMessages(self.stream_sid, self.account_sid, self.call_sid, first_timestamp_ms)
        self.frame_sent_s = array("d")
        self.tick_lateness_s = array("d")
        self.inbound = bytearray()
        self.media_received = 0
        self.media_bytes_received = 0
        self.marks_received = 0
        self.marks_echoed = 0
        self.clears_received = 0
        self.greeting_wait: str | None = None

    def run(self) -> None:
        """Place the call and play it to the end; never raises (``error`` says what failed)."""
        import time

        import gevent

        gevent.sleep(max(0.0, self.start_at_s - time.monotonic()))
        try:
            twiml = self._answer_and_connect(self.call_sid, self.account_sid)
        except Exception as exc:  # noqa: BLE001 - CallError, OSError, ConnectionError: the call failed
            if is_refusal(str(exc)):
                self.refused = True
            else:
                self.error = f"could not connect: {exc}"
            return
        sids = (self.account_sid, self.call_sid, self.stream_sid)
        reader = None
        try:
            self.send_text(self.messages.connected())
            self.send_text(self.messages.start(twiml.parameters))
            self._status_callback(twiml, "stream-started", sids)
            reader = gevent.spawn(self._read_loop)
            self._tick_loop()
        except OSError as exc:
            self.error = f"connection lost: {exc!r}"
            self.ended_by = "server"
        finally:
            if reader is not None:
                self._hang_up(reader, self.messages.stop())
            else:
                self.sock.close()
            self.stream_ended_s = time.monotonic()
            self._status_callback(twiml, "stream-stopped", sids)

    def _tick_loop(self) -> None:
        import time

        import gevent

        silence_ff = bytes([0xFF]) * FRAME_BYTES
        t0 = self.stream_started_s = time.monotonic()
        greeting_pending = self.greeting
        if greeting_pending:
            self.waiter.start(t0, expect_reply=True)
        tick = 0
        while True:
            deadline_s = t0 + tick * FRAME_MS / 1000
            now_s = time.monotonic()
            if deadline_s > now_s:
                gevent.sleep(deadline_s - now_s)
                now_s = time.monotonic()
            self.tick_lateness_s.append(now_s - deadline_s)
            if self.server_closed:
                self.ended_by = "server"
                return
            timestamp_ms = self.messages.next_timestamp_ms
            played, reached = self.buffer.tick(FRAME_BYTES)
            if played:
                self.waiter.note_audio_played(now_s)
                self.replies.on_played(timestamp_ms)
            for name in reached:
                self._echo_mark(name, now_s, played=True)
            if greeting_pending:
                reason = self.waiter.poll(now_s, self.buffer.queued_bytes > 0)
                ulaw = silence_ff
                if reason is not None:
                    self.greeting_wait, greeting_pending = reason, False
            else:
                step = self.script.next_tick(now_s, self.buffer.queued_bytes > 0)
                if step is None:
                    self.ended_by = "caller"
                    return
                ulaw = step.ulaw
            self.underruns.on_tick(now_s, len(played), caller_speaking=ulaw != silence_ff)
            sent = ulaw.translate(_FF_TO_7F)
            payload = self.payloads.get(sent)
            if payload is None:
                payload = self.payloads[sent] = base64.b64encode(sent).decode("ascii")
            self.send(client_frame(fast_media(self.messages, payload)))
            self.frame_sent_s.append(time.monotonic())
            self.inbound += sent
            tick += 1

    def on_text(self, text: str) -> None:
        import time

        now_s = time.monotonic()
        try:
            message = parse_server_message(text, self.stream_sid)
        except ProtocolViolation:
            self.violations += 1
            return
        if message.event == "media":
            self.media_received += 1
            self.media_bytes_received += len(message.ulaw)
            self.replies.on_media(now_s, len(message.ulaw), self.buffer.queued_bytes > 0)
            self.underruns.on_media(now_s)
            self.buffer.enqueue_media(message.ulaw)
            self.waiter.note_media_received(now_s)
        elif message.event == "mark":
            self.marks_received += 1
            if self.buffer.enqueue_mark(message.mark_name):
                self._echo_mark(message.mark_name, now_s, played=True)
        else:
            self.clears_received += 1
            names = self.buffer.clear()
            self.replies.on_clear()
            self.underruns.on_clear()
            for name in names:
                self._echo_mark(name, now_s, played=False)

    def _echo_mark(self, name: str, now_s: float, played: bool) -> None:
        self.send_text(self.messages.mark(name))
        self.marks_echoed += 1
        if played:
            self.replies.on_mark_echo(now_s)

    def caller_ends(self, turns: list[dict]) -> list[tuple[int, int, float]]:
        """(turn index, end_ms, monotonic time the frame holding end_ms was sent) of each caller turn."""
        ends = []
        for index, turn in enumerate(turns):
            if turn.get("speaker") != "caller" or not isinstance(turn.get("end_ms"), (int, float)):
                continue
            frame = frame_index_for_ms(int(turn["end_ms"]), self.first_timestamp_ms)
            if frame < len(self.frame_sent_s):
                ends.append((index, int(turn["end_ms"]), self.frame_sent_s[frame]))
        return ends


class LoadFork(_Stream):
    """One listen-only ``<Start><Stream>`` fork playing a pre-built ``ForkPlan`` in real time.

    Burst ``b`` (ticks ``b*burst_ticks`` …) is sent when its last tick is due (Twilio cannot send
    audio before it was captured): with ``burst_ticks`` 1, one send every 20 ms.

    Attributes (results): ``send_lateness_s`` (how late each burst's send began, s: the client's
    own lag); ``send_blocked_s`` (how long each ``sendall`` took, s: the server not reading);
    ``bursts_sent``; ``ticks_sent``; ``stream_started_s`` / ``media_ended_s`` (monotonic times of the
    first and after the last media sent); ``violations`` (any message from the server: Twilio error
    31924); ``error``; ``ended_by``.
    """

    fork = True

    def __init__(self, base_url: str, plan: ForkPlan, start_at_s: float):
        super().__init__(base_url, "/forward-call", start_at_s)
        self.plan = plan
        self.call_sid = plan.call_sid
        self.send_lateness_s = array("d")
        self.send_blocked_s = array("d")
        self.bursts_sent = 0
        self.ticks_sent = 0
        self.media_ended_s: float | None = None

    def run(self) -> None:
        """Place the fork and stream the plan to the end; never raises (``error`` says what failed)."""
        import time

        import gevent

        plan = self.plan
        gevent.sleep(max(0.0, self.start_at_s - time.monotonic()))
        try:
            twiml = self._answer_and_connect(plan.call_sid, plan.account_sid)
        except Exception as exc:  # noqa: BLE001 - the fork failed to start
            self.error = f"could not connect: {exc}"
            return
        if tuple(twiml.tracks) != plan.tracks:
            self.error = f"TwiML tracks {twiml.tracks} differ from the plan's {plan.tracks}"
            self.sock.close()
            return
        messages = TwilioMessages(plan.stream_sid, plan.account_sid, plan.call_sid, plan.first_timestamp_ms)
        sids = (plan.account_sid, plan.call_sid, plan.stream_sid)
        reader = None
        try:
            self.send_text(messages.connected())
            self.send_text(messages.start(twiml.parameters, plan.tracks))
            self._status_callback(twiml, "stream-started", sids)
            reader = gevent.spawn(self._read_loop)
            t0 = self.stream_started_s = time.monotonic()
            tick_s = FRAME_MS / 1000
            for index, burst in enumerate(plan.bursts):
                last_tick = min(plan.ticks, (index + 1) * plan.burst_ticks) - 1
                deadline_s = t0 + last_tick * tick_s
                now_s = time.monotonic()
                if deadline_s > now_s:
                    gevent.sleep(deadline_s - now_s)
                    now_s = time.monotonic()
                self.send_lateness_s.append(now_s - deadline_s)
                if self.server_closed:
                    self.ended_by = "server"
                    break
                self.send(burst)
                self.send_blocked_s.append(time.monotonic() - now_s)
                self.bursts_sent += 1
                self.ticks_sent = last_tick + 1
            else:
                self.ended_by = "caller"
        except OSError as exc:
            self.error = f"connection lost: {exc!r}"
            self.ended_by = "server"
        finally:
            self.media_ended_s = time.monotonic()
            if reader is not None:
                self._hang_up(reader, plan.stop_frame)
            else:
                self.sock.close()
            self.stream_ended_s = time.monotonic()
            self._status_callback(twiml, "stream-stopped", sids)

    def on_text(self, text: str) -> None:
        self.violations += 1  # a fork is unidirectional: Twilio rejects anything sent back (31924)
