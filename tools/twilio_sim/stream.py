"""One Media Stream played as Twilio would, in real time over a WebSocket (runs under gevent).

Importing it imports no gevent, socket or threading: the runtime imports them
when a call runs, after ``callsim.main`` has monkey-patched.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.twilio_sim.frames import FRAME_BYTES, FRAME_MS, SAMPLE_RATE, ULAW_SILENCE, frame_index_for_ms
from tools.twilio_sim.latency import ReplyTracker
from tools.twilio_sim.messages import ProtocolViolation, ServerMessage, TwilioMessages, parse_server_message
from tools.twilio_sim.playback import PlaybackBuffer
from tools.twilio_sim.script import CallerScript, TurnWaiter

STOP_GRACE_S = 1.0  # after sending stop, time the server gets to close the socket itself


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
    on a receive. Requires gevent monkey patching (``callsim.main`` does it).

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
