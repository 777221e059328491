"""The per-call state machine of a listen-only fork (``<Start><Stream>``).

Sans-I/O like ``core.session.CallSession``: feed parsed messages and transcripts, drain
``actions_to_perform()``. A fork never sends anything on the socket (Twilio rejects any message
on a unidirectional stream with error 31924, protocol.md §8); it endpoints each track on its own
and transcribes it: the inbound track is the ``"caller"``, the outbound track (what Twilio plays
to the caller: the other party of a ``<Dial>``) the ``"callee"``, on one media-clock timeline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from audio.endpointing import Endpointer, EndpointingConfig, UtteranceEnded
from audio.framing import FrameAssembler
from audio.stream_format import MULAW_8K, StreamFormat
from core.protocol import Event, Media, Start, Stop, UnknownEvent
from core.records import CallRecord, Turn
from core.session import EndCall, Transcribe

log = logging.getLogger(__name__)

SPEAKERS = {"inbound": "caller", "outbound": "callee"}


def is_fork(start: Start) -> bool:
    """Tell a listen-only fork from a bidirectional stream by its ``start`` message.

    A ``<Start><Stream track="both_tracks">`` (or ``outbound_track``) fork announces the
    ``outbound`` track, which a ``<Connect><Stream>`` never carries (T-STREAM: "you can only
    receive the inbound_track"). An inbound-only fork looks like a bidirectional stream, so it
    must say ``<Parameter name="mode" value="fork"/>``.
    """
    return "outbound" in start.tracks or start.custom_parameters.get("mode", "").lower() == "fork"


@dataclass
class _Track:
    speaker: str
    frames: FrameAssembler
    endpointer: Endpointer


class ListenSession:
    """State machine of one listen-only fork.

    Args:
        endpointing: utterance detection settings, used for each track; ``sample_rate`` must
            be ``stream_format.processing_rate``.
        make_vad: returns a new voice activity function (one per track: the detector keeps state).
        stream_format: the wire audio of the stream (``audio.stream_format``).

    Raises:
        ValueError: the endpointing rate does not match the stream format.
    """

    def __init__(self, endpointing: EndpointingConfig, make_vad: Callable[[], Callable[[bytes], bool]],
                 stream_format: StreamFormat = MULAW_8K) -> None:
        if endpointing.sample_rate != stream_format.processing_rate:
            raise ValueError(f"endpointing at {endpointing.sample_rate} Hz, but {stream_format} is analysed at {stream_format.processing_rate} Hz")
        self.config = endpointing
        self.stream_format = stream_format
        self._make_vad = make_vad
        self.record: CallRecord | None = None
        self.start: Start | None = None
        self.stream_sid: str | None = None
        self.stopped = False
        self._tracks: dict[str, _Track] = {}
        self._pending: dict[int, tuple[str, int, int]] = {}  # turn id → (speaker, start_ms, end_ms)
        self._next_turn_id = 1
        self._actions: list = []

    @property
    def frames_lost(self) -> int:
        """Inbound frames (all tracks) missing from the media clock so far (filled with silence)."""
        return sum(track.frames.filled_frames for track in self._tracks.values())

    def actions_to_perform(self) -> list:
        """Return and forget the actions produced since the last call (only ``Transcribe`` and ``EndCall``)."""
        actions, self._actions = self._actions, []
        return actions

    def receive_event(self, event: Event) -> None:
        """Handle one parsed Twilio message; ``mark`` and ``dtmf`` do not occur on forks and are ignored."""
        if isinstance(event, Media):
            self._on_media(event)
        elif isinstance(event, Start):
            self._on_start(event)
        elif isinstance(event, Stop):
            if not self.stopped:  # a repeated stop changes nothing
                self._on_stop()
        elif isinstance(event, UnknownEvent):
            log.info("ignoring unknown event %r", event.event)

    def receive_transcript(
        self, turn_id: int, text: str | None, error: str | None = None, *, elapsed_ms: int | None = None
    ) -> None:
        """Record the transcript of one utterance (``""`` = nothing recognized: no turn)."""
        pending = self._pending.pop(turn_id, None)
        if pending is None or self.record is None:
            return
        speaker, start_ms, end_ms = pending
        text = (text or "").strip()
        if error is None and not text:
            return
        turn = Turn(speaker, text, start_ms, end_ms)
        if error is not None:
            turn.extra["error"] = error
        if elapsed_ms is not None:
            turn.extra["latency_ms"] = {"recognition": elapsed_ms}
        self.record.add_turn(turn)

    def close(self) -> None:
        """The socket ended; same as ``stop`` if Twilio did not send one."""
        if not self.stopped:
            self._on_stop()

    def _on_start(self, event: Start) -> None:
        if self.start is not None or self.stopped:
            log.warning("ignoring a start message after %s", "start" if self.start else "stop")
            return
        self.start, self.stream_sid = event, event.stream_sid
        params = event.custom_parameters
        self.record = CallRecord(event.call_sid, event.stream_sid, params.get("From"), params.get("To"), mode="fork")
        for track in event.tracks:
            if track in SPEAKERS:
                self._tracks[track] = _Track(
                    SPEAKERS[track],
                    FrameAssembler(frame_ms=self.config.frame_ms, stream_format=self.stream_format),
                    Endpointer(self.config, self._make_vad()),
                )

    def _on_media(self, event: Media) -> None:
        track = self._tracks.get(event.track)
        if track is None or self.stopped or event.timestamp_ms < 0:
            return
        for frame in track.frames.push(event.payload, event.timestamp_ms):
            for ep_event in track.endpointer.push(frame.pcm, frame.timestamp_ms):
                if isinstance(ep_event, UtteranceEnded):
                    self._transcribe(track, ep_event)

    def _on_stop(self) -> None:
        self.stopped = True
        for track in self._tracks.values():
            for ep_event in track.endpointer.finish():
                self._transcribe(track, ep_event)
        self._actions.append(EndCall())

    def _transcribe(self, track: _Track, event: UtteranceEnded) -> None:
        utt = event.utterance
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        self._pending[turn_id] = (track.speaker, utt.voice_start_ms, utt.end_ms)
        self._actions.append(Transcribe(turn_id, utt.pcm, self.config.sample_rate))
