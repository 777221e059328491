"""The per-call state machine of a listen-only fork (``<Start><Stream>``).

Sans-I/O like ``core.session.CallSession``, with the same lifecycle (``core.stream_session``): feed
parsed messages and transcripts, drain ``actions_to_perform()``. A fork never sends anything on the socket (Twilio rejects any message
on a unidirectional stream with error 31924, protocol.md §8); it endpoints each track on its own
and transcribes it: the inbound track is the ``"caller"``, the outbound track (what Twilio plays
to the caller: the other party of a ``<Dial>``) the ``"callee"``, on one media-clock timeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from audio.endpointing import Endpointer, EndpointingConfig, UtteranceEnded
from audio.framing import FrameAssembler
from audio.stream_format import MULAW_8K, StreamFormat
from core.actions import EndCall, HangUp, Transcribe
from core.protocol import Media, Start
from core.records import Turn
from core.stream_session import Phase, StreamSession

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


@dataclass(frozen=True)
class _PendingUtterance:
    speaker: str
    start_ms: int
    end_ms: int


class ListenSession(StreamSession):
    """State machine of one listen-only fork.

    Args:
        endpointing: utterance detection settings, used for each track; ``sample_rate`` must
            be ``stream_format.processing_rate``.
        make_vad: returns a new voice activity function (one per track: the detector keeps state).
        stream_format: the wire audio of the stream (``audio.stream_format``).

    Raises:
        ValueError: the endpointing rate does not match the stream format.
    """

    mode = "fork"

    def __init__(self, endpointing: EndpointingConfig, make_vad: Callable[[], Callable[[bytes], bool]],
                 stream_format: StreamFormat = MULAW_8K) -> None:
        if endpointing.sample_rate != stream_format.processing_rate:
            raise ValueError(f"endpointing at {endpointing.sample_rate} Hz, but {stream_format} is analysed at {stream_format.processing_rate} Hz")
        super().__init__()
        self.config = endpointing
        self.stream_format = stream_format
        self._make_vad = make_vad
        self._tracks: dict[str, _Track] = {}
        self._pending: dict[int, _PendingUtterance] = {}  # by turn id
        self._next_turn_id = 1

    @property
    def frames_lost(self) -> int:
        """Inbound frames (all tracks) missing from the media clock so far (filled with silence)."""
        return sum(track.frames.filled_frames for track in self._tracks.values())

    def receive_transcript(
        self, turn_id: int, text: str | None, error: str | None = None, *, elapsed_ms: int | None = None
    ) -> None:
        """Record the transcript of one utterance (``""`` = nothing recognized: no turn)."""
        pending = self._pending.pop(turn_id, None)
        if pending is None or self.record is None:
            return
        text = (text or "").strip()
        if error is None and not text:
            return
        latency_ms = {"recognition": elapsed_ms} if elapsed_ms is not None else None
        self.record.add_turn(Turn(pending.speaker, text, pending.start_ms, pending.end_ms, error=error, latency_ms=latency_ms))

    def hang_up(self, goodbye: str, reason: str) -> None:
        """End the call for ``reason`` at once (``HangUp``): a fork cannot speak, so ``goodbye`` is
        not said. Does nothing before ``start``, while hanging up or after ``stop``."""
        if self.phase is not Phase.STREAMING:
            return
        self.phase = Phase.HANGING_UP
        self._actions.append(HangUp(reason))

    def _on_start(self, event: Start) -> None:
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
        for track in self._tracks.values():
            for ep_event in track.endpointer.finish():
                self._transcribe(track, ep_event)
        self._actions.append(EndCall())

    def _transcribe(self, track: _Track, event: UtteranceEnded) -> None:
        utt = event.utterance
        turn_id = self._next_turn_id
        self._next_turn_id += 1
        self._pending[turn_id] = _PendingUtterance(track.speaker, utt.voice_start_ms, utt.end_ms)
        self._actions.append(Transcribe(turn_id, utt.pcm, self.config.sample_rate))
