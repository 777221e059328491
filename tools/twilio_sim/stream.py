"""One Media Stream played as Twilio would, in real time over a WebSocket (runs under gevent).

``SimulatedCall`` is a bidirectional ``<Connect><Stream>`` conversation with a bot;
``SimulatedFork`` a unidirectional ``<Start><Stream>`` fork of a forwarded call.
Importing this module imports no gevent, socket or threading: the runtime imports
them when a call runs, after ``callsim.main`` has monkey-patched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tools.twilio_sim.echo import EchoPath
from tools.twilio_sim.frames import FRAME_MS, frame_index_for_ms
from tools.twilio_sim.latency import ReplyTracker
from tools.twilio_sim.messages import ProtocolViolation, ServerMessage, TwilioMessages, parse_server_message
from tools.twilio_sim.noise import LineNoise
from tools.twilio_sim.playback import PlaybackBuffer
from tools.twilio_sim.script import CallerScript, ForkScript, SpokenItem, TurnWaiter

STOP_GRACE_S = 1.0  # after sending stop, time the server gets to close the socket itself


@dataclass
class Counts:
    """Message counts for the report."""

    media_sent: int = 0
    media_sent_inbound: int = 0
    media_sent_outbound: int = 0
    dtmf_sent: int = 0
    media_received: int = 0
    media_received_bytes: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    clears_received: int = 0
    violations: int = 0
    late_ticks: int = 0
    max_tick_lateness_ms: float = 0.0


class _MediaStream:
    """What every stream does as Twilio: the 20 ms clock, receiving and validating, hanging up.

    The sending loop runs in the calling greenlet on absolute 20 ms deadlines from
    a monotonic clock (late ticks are caught up, never skipped) and calls
    ``_send_tick`` once per tick; a second greenlet receives and validates server
    messages so the clock never waits on a receive. Requires gevent monkey
    patching (``callsim.main`` does it).

    The stream's audio format is ``messages.media_format`` (μ-law 8 kHz on Twilio; SignalWire's
    codec otherwise): the script's frames, the server's media and ``heard`` are all in it.

    Args:
        ws: an open websocket-client ``WebSocket``.
        messages: message builder holding the SIDs and counters (``TwilioMessages`` or
            ``SignalWireMessages``).
        custom_parameters: the TwiML ``<Parameter>``s, sent in ``start``.
        tracks: ``start.tracks``.
        verbose: print every server message.
        on_stream_event: called with "stream-started" right after ``start`` is sent and with
            "stream-stopped" once the stream is over (after ``stop``, or when the server
            closed the socket); it must not block (the status callbacks run in greenlets).
        noise: background noise on the caller's line, in ``messages.media_format``, added to every
            inbound media message (the script's silence included); None: none.

    Raises:
        ValueError: ``noise`` is not in the stream's format.
    """

    unidirectional = False

    def __init__(self, ws, messages: TwilioMessages, custom_parameters: dict[str, str], tracks: list[str],
                 verbose: bool = False, on_stream_event: Callable[[str], None] | None = None,
                 noise: LineNoise | None = None):
        import threading

        self.ws = ws
        self.messages = messages
        self.custom_parameters = custom_parameters
        self.tracks = list(tracks)
        self.verbose = verbose
        self.on_stream_event = on_stream_event
        self.counts = Counts()
        self.violations: list[dict] = []
        self.media_format = messages.media_format
        if noise is not None and noise.media_format != self.media_format:
            raise ValueError(f"noise is in {noise.media_format.label}, the stream in {self.media_format.label}")
        self.noise = noise
        self.heard = bytearray()  # what the caller heard, in media_format, one 20 ms frame per tick
        self.frame_sent_s: list[float] = []  # monotonic send time of tick n's media
        self.ended_by: str | None = None
        self.failure: str | None = None  # set if the receiving greenlet crashed
        self._send_lock = threading.Lock()  # gevent-patched: keeps sequence numbers in send order
        self._t0: float | None = None
        self._server_closed = False
        self._stopping = False
        self._platform_ending: str | None = None  # end_by_platform's reason

    @property
    def spoken(self) -> list[SpokenItem]:
        """The script's audio items in the order they were sent (tick clock)."""
        return self.script.spoken

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

    def _send_media(self, payload: bytes, track: str) -> None:
        self._send(self.messages.media, payload, track)
        self.counts.media_sent += 1
        if track == "inbound":
            self.counts.media_sent_inbound += 1
        else:
            self.counts.media_sent_outbound += 1

    def _with_line_noise(self, payload: bytes) -> bytes:
        """The caller's inbound frame with the line's background noise, if any."""
        return payload if self.noise is None else self.noise.mix(payload)

    def end_by_platform(self, reason: str) -> None:
        """End the stream from the platform's side at the next tick (Twilio sends ``stop`` and closes),
        e.g. when the call's TwiML was replaced by a REST update (a transfer). Safe from any greenlet."""
        self._platform_ending = reason

    def _stream_event(self, event: str) -> None:
        if self.on_stream_event is not None:
            self.on_stream_event(event)

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
                message = parse_server_message(data, self.messages.stream_sid, unidirectional=self.unidirectional,
                                               media_format=self.media_format)
            except ProtocolViolation as error:
                self._violation(now_s, str(error), data if isinstance(data, str) else repr(data[:80]))
                continue
            self._apply(message, now_s)

    def _violation(self, now_s: float, error: str, raw: str) -> None:
        self.counts.violations += 1
        self.violations.append({"at_ms": self.clock_ms(now_s), "error": error, "message": raw[:300]})
        self.log(now_s, f"PROTOCOL VIOLATION: {error}")

    def _apply(self, message: ServerMessage, now_s: float) -> None:
        raise NotImplementedError

    # -- sending --

    def _send_tick(self, now_s: float) -> bool:
        """Send this tick's messages; return False (sending nothing) once the script is over."""
        raise NotImplementedError

    def run(self) -> None:
        """Send connected/start, run the script in real time, then stop and close."""
        import time

        import gevent
        import websocket

        self._send(self.messages.connected)
        self._send(self.messages.start, self.custom_parameters, self.tracks)
        self._stream_event("stream-started")
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
                if self._platform_ending is not None:
                    self.ended_by = "platform"
                    self.log(now_s, f"platform: {self._platform_ending}; stream stops")
                    break
                if not self._send_tick(now_s):
                    if self.script.final_note:
                        self.log(now_s, self.script.final_note)
                    self.ended_by = "caller"
                    break
                self.frame_sent_s.append(now_s)
                frame += 1
        except KeyboardInterrupt:
            self.ended_by = "caller (interrupted)"
        except (websocket.WebSocketConnectionClosedException, OSError) as error:
            self.ended_by = "server"  # the socket died under us: wrap up with what we have
            self.log(time.monotonic(), f"connection lost: {error!r}")
        finally:
            self._hang_up(receiver)

    def _hang_up(self, receiver) -> None:
        """Send ``stop`` (unless the server hung up), report stream-stopped, then close the socket.

        Twilio sends ``stop`` and closes [T-WS]; a server usually closes first on
        ``stop``, so give it ``STOP_GRACE_S`` before closing from this side. Only
        one greenlet reads the socket at a time.
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
        self._stream_event("stream-stopped")
        if self.ended_by != "server":
            receiver.join(timeout=STOP_GRACE_S)
        # ws.close() reads the peer's close frame: never while the receiver is reading too.
        receiver.kill(timeout=1)
        try:
            self.ws.close(timeout=2)  # no-op if the server's close frame was already answered
        except (websocket.WebSocketException, OSError):
            pass
        self.ws.shutdown()


class SimulatedCall(_MediaStream):
    """Run one bidirectional Media Stream as Twilio (or SignalWire) would: send the caller's audio, play the bot's.

    ``heard`` is the bot's audio as played to the caller (silence when nothing is queued).
    ``script`` must frame its audio in ``messages.media_format``. With ``echo``, every inbound
    media message (the script's silence included) carries the echo of the bot's audio played
    ``echo.delay_ms`` earlier: a speakerphone. With ``noise``, every inbound media message also
    carries the line's background noise (after the echo: both reach the same microphone).

    Args:
        ws: an open websocket-client ``WebSocket``.
        messages: message builder holding the SIDs and counters.
        custom_parameters: the TwiML ``<Parameter>``s, sent in ``start``.
        script: the caller's behaviour.
        waiter: the script's ``TurnWaiter``.
        verbose: print every server message.
        on_stream_event: see ``_MediaStream``.
        echo: the bot's voice leaking into the caller's microphone, in ``messages.media_format``;
            None: none (the script's frames are sent as they are).
        noise: see ``_MediaStream``.

    Raises:
        ValueError: ``echo`` or ``noise`` is not in the stream's format.
    """

    def __init__(self, ws, messages: TwilioMessages, custom_parameters: dict[str, str],
                 script: CallerScript, waiter: TurnWaiter, verbose: bool = False,
                 on_stream_event: Callable[[str], None] | None = None, echo: EchoPath | None = None,
                 noise: LineNoise | None = None):
        super().__init__(ws, messages, custom_parameters, ["inbound"], verbose, on_stream_event, noise)
        if echo is not None and echo.media_format != self.media_format:
            raise ValueError(f"echo is in {echo.media_format.label}, the stream in {self.media_format.label}")
        self.script = script
        self.waiter = waiter
        self.echo = echo
        self.buffer = PlaybackBuffer()
        self.replies = ReplyTracker()

    def _apply(self, message: ServerMessage, now_s: float) -> None:
        if message.event == "media":
            self.counts.media_received += 1
            self.counts.media_received_bytes += len(message.payload)
            started = self.replies.on_media(now_s, len(message.payload), self.buffer.queued_bytes > 0)
            if started is not None:
                self.log(now_s, f"bot: reply {started.index} starts")
            self.buffer.enqueue_media(message.payload)
            self.waiter.note_media_received(now_s)
            if self.verbose:
                self.log(now_s, f"<- media {len(message.payload)} B (queued {self.buffer.queued_bytes} B)")
        elif message.event == "mark":
            self.counts.marks_received += 1
            if self.verbose:
                self.log(now_s, f"<- mark {message.mark_name!r}")
            if self.buffer.enqueue_mark(message.mark_name):
                self._echo_mark(message.mark_name, now_s, played=True)
        else:
            self.counts.clears_received += 1
            dropped_ms = self.buffer.queued_bytes * 1000 // self.media_format.bytes_per_second
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

    def _send_tick(self, now_s: float) -> bool:
        tick = self.script.next_tick(now_s, self.buffer.queued_bytes > 0)
        if tick is None:
            return False
        if tick.note:
            self.log(now_s, tick.note)
        played = self._play_tick(now_s)
        for digit in tick.digits:
            self._send(self.messages.dtmf, digit)
            self.counts.dtmf_sent += 1
        self._send_media(self._with_line_noise(self._with_speaker_echo(tick.payload, played)), "inbound")
        return True

    def _with_speaker_echo(self, payload: bytes, played: bytes) -> bytes:
        """The caller's frame as their microphone picks it up: with the echo of the bot's audio, if any."""
        if self.echo is None:
            return payload
        self.echo.played(played)  # this tick's playback first: a delay of 0 echoes within the tick
        return self.echo.mix(payload)

    def _play_tick(self, now_s: float) -> bytes:
        """Play one tick of the bot's audio into ``heard``; return the payload bytes played (``b""``: none)."""
        timestamp_ms = self.messages.next_timestamp_ms
        frame_bytes = self.media_format.frame_bytes
        played, reached = self.buffer.tick(frame_bytes)
        self.heard += played + bytes([self.media_format.silence_byte]) * (frame_bytes - len(played))
        if played:
            self.waiter.note_audio_played(now_s)
            self.replies.on_played(timestamp_ms)
        for name in reached:
            self._echo_mark(name, now_s, played=True)
        return played

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


class SimulatedFork(_MediaStream):
    """Run one unidirectional ``<Start><Stream>`` fork as Twilio would: stream both sides, accept nothing back.

    Every 20 ms one media message per track in ``tracks`` (silence when that
    side is not talking), all carrying the same timestamp. Any message from the
    server is a protocol violation (Twilio error 31924) [T-ERR-31924, protocol.md §3].
    ``heard`` is the callee's audio (the outbound track as sent, whether or not it is
    streamed): what the caller heard.

    Args:
        ws: an open websocket-client ``WebSocket``.
        messages: message builder holding the SIDs and counters.
        custom_parameters: the TwiML ``<Parameter>``s, sent in ``start``.
        tracks: ``start.tracks`` from the TwiML track (``TwimlStream.tracks``).
        script: both sides' items.
        verbose: print every server message.
        on_stream_event: see ``_MediaStream``.
        noise: background noise on the caller's line (the inbound track); see ``_MediaStream``.
    """

    unidirectional = True

    def __init__(self, ws, messages: TwilioMessages, custom_parameters: dict[str, str], tracks: list[str],
                 script: ForkScript, verbose: bool = False, on_stream_event: Callable[[str], None] | None = None,
                 noise: LineNoise | None = None):
        super().__init__(ws, messages, custom_parameters, tracks, verbose, on_stream_event, noise)
        self.script = script

    def _apply(self, message: ServerMessage, now_s: float) -> None:
        raise AssertionError("parse_server_message accepts nothing on a unidirectional stream")

    def _send_tick(self, now_s: float) -> bool:
        tick = self.script.next_tick()
        if tick is None:
            return False
        if tick.note:
            self.log(now_s, tick.note)
        inbound = self._with_line_noise(tick.inbound)  # the caller's line is noisy whether or not it is streamed
        for track in self.tracks:
            self._send_media(inbound if track == "inbound" else tick.outbound, track)
        self.heard += tick.outbound
        return True
