"""Turn timestamped media chunks into fixed VAD frames on the media clock.

Twilio sends inbound audio as μ-law 8000 Hz mono chunks, each with
``media.timestamp``: "Presentation Timestamp in Milliseconds from the start of
the stream" (Twilio Media Streams docs, "media" message; protocol.md §2.3). The
first timestamp is not 0 (it was 52 in a 2020 capture), chunks were observed to
be 160 bytes (20 ms), but sizes are not documented, and some calls skip silent
chunks (protocol.md §7 "Timing and framing"; §10 item 15). SignalWire streams
with ``codec="L16@16000h"``/``"L16@24000h"`` carry PCM16 LE at 16/24 kHz instead,
in 20 ms chunks too (protocol.md §9; ``audio.stream_format``). So this module:

* re-cuts chunks of any size into fixed ``frame_ms`` frames (a remainder waits
  for the next chunk);
* keeps its own media clock, starting at the first chunk's timestamp and
  advancing by the audio actually received;
* fills a gap (a chunk that starts at least half a frame later than expected)
  with PCM silence, up to ``max_gap_fill_ms``; a longer jump resynchronises the
  clock to the new timestamp without filling;
* accepts chunks whose timestamp goes backwards (overlap, duplicate) and places
  their audio at the clock's current position;
* for a 24 kHz stream, resamples the frames to 16 kHz (the WebRTC VAD does not
  take 24 kHz) with one soxr stream per clock segment, so the output is
  continuous and each 16 kHz frame covers exactly the media time of its 24 kHz
  frame. The filter holds output back (11 ms on average at soxr "LQ"), so such
  frames come out one or two chunks later than they would at 8 or 16 kHz.

Frame timestamps therefore lie on a grid ``first_timestamp + k * frame_ms``,
restarted only at a clock jump.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from audio.codec import ulaw_to_pcm16
from audio.constants import FRAME_MS, MULAW_SAMPLE_RATE, VAD_FRAME_MS, VAD_SAMPLE_RATES
from audio.errors import AudioFormatError
from audio.resample import StreamResampler
from audio.stream_format import MULAW_8K, StreamFormat

RESAMPLE_QUALITY = "LQ"
"""soxr recipe for 24 → 16 kHz frames: flat to 6 kHz, over 100 dB stopband, and it holds back
half the output "HQ" does (180 vs 358 samples on average), which is latency before every
end of speech is seen. Analysis (VAD, recognition) needs no more."""
_new = object.__new__


@dataclass(frozen=True)
class Frame:
    """One fixed-length VAD frame.

    Attributes:
        pcm: ``frame_ms`` of PCM16 signed little-endian mono at the assembler's sample rate.
        timestamp_ms: Media time of the frame's first sample, in ms on Twilio's
            ``media.timestamp`` clock.
        filled: True when the whole frame is synthesized silence (zeros) standing
            in for missing audio; False when it holds any received audio.
    """

    pcm: bytes
    timestamp_ms: int
    filled: bool


class FrameAssembler:
    """Re-cut timestamped chunks of wire audio into fixed PCM16 frames, filling gaps with silence.

    Sans-I/O: feed chunks with :meth:`push` in arrival order and use the frames it
    returns; at the end of the stream, :meth:`finish` returns what is held back. One
    instance per inbound track.

    Args:
        frame_ms: Frame duration in ms: 10, 20 or 30 (the WebRTC VAD's sizes).
        sample_rate: Without ``stream_format``: the sample rate of μ-law chunks and of
            the frames, in Hz: 8000 for Twilio (also 16000, 32000 or 48000); no
            resampling. With ``stream_format``: leave it out, or give the frames' rate
            (``stream_format.processing_rate``). Default: 8000.
        max_gap_fill_ms: Longest gap, in ms, filled with silence; a longer
            forward jump of the timestamp resynchronises the clock instead.
        stream_format: The chunks' wire format (``audio.stream_format``): μ-law 8 kHz,
            or L16 at 8, 16 or 24 kHz. Frames come out at its ``processing_rate``
            (24 kHz is resampled to 16 kHz). Default: μ-law at ``sample_rate``.

    Attributes:
        sample_rate: Sample rate of the emitted frames, in Hz.
        stream_format: The wire format, or None for μ-law at a rate other than 8000
            given by ``sample_rate`` alone.
        filled_frames: Number of frames emitted with ``filled=True``.
        clock_jumps: Number of forward jumps longer than ``max_gap_fill_ms``.
        overlaps: Number of chunks whose timestamp was earlier than the end of
            the previous chunk (previous timestamp + its duration, rounded down to
            whole ms).

    Raises:
        AudioFormatError: ``frame_ms`` or ``sample_rate`` is not supported, or
            ``sample_rate`` is not ``stream_format.processing_rate``.
        ValueError: ``max_gap_fill_ms`` is negative.
    """

    def __init__(
        self,
        frame_ms: int = FRAME_MS,
        sample_rate: int | None = None,
        max_gap_fill_ms: int = 2000,
        *,
        stream_format: StreamFormat | None = None,
    ) -> None:
        if frame_ms not in VAD_FRAME_MS:
            raise AudioFormatError(f"frame_ms must be one of {VAD_FRAME_MS}, got {frame_ms!r}")
        if stream_format is None:
            wire_rate = MULAW_SAMPLE_RATE if sample_rate is None else sample_rate
            if wire_rate not in VAD_SAMPLE_RATES:
                raise AudioFormatError(f"sample_rate must be one of {VAD_SAMPLE_RATES} Hz, got {sample_rate!r}")
            if wire_rate == MULAW_SAMPLE_RATE:
                stream_format = MULAW_8K
            out_rate, is_ulaw = wire_rate, True
        else:
            wire_rate, out_rate, is_ulaw = stream_format.sample_rate, stream_format.processing_rate, stream_format.is_ulaw
            if sample_rate is not None and sample_rate != out_rate:
                raise AudioFormatError(f"{stream_format} gives frames at {out_rate} Hz, not sample_rate={sample_rate!r}")
        if max_gap_fill_ms < 0:
            raise ValueError(f"max_gap_fill_ms must be >= 0, got {max_gap_fill_ms}")
        self.frame_ms = frame_ms
        self.sample_rate = out_rate
        self.stream_format = stream_format
        self.max_gap_fill_ms = max_gap_fill_ms
        self._decode = ulaw_to_pcm16 if is_ulaw else stream_format.decode
        # The clock and the frame grid count samples at the wire rate.
        self._samples_per_ms = wire_rate // 1000
        self._frame_samples = frame_ms * self._samples_per_ms
        self._frame_bytes = 2 * self._frame_samples  # a frame at the wire rate, as PCM16
        self._max_gap_samples = max_gap_fill_ms * self._samples_per_ms
        self._resampler = None if out_rate == wire_rate else _FrameResampler(wire_rate, out_rate, frame_ms)
        # Size of a wire chunk that is exactly one frame; -1 disables push()'s fast path.
        self._fast_chunk_bytes = -1 if self._resampler else self._frame_samples * (1 if is_ulaw else 2)
        # The clock counts samples, so chunks that are not a whole number of ms stay exact.
        self._expected_sample: int | None = None  # where the next chunk's audio goes
        self._stated_end_sample: int | None = None  # previous chunk's timestamp + duration
        # PCM not yet emitted; it ends at _expected_sample and starts on the frame grid.
        self._buffer = bytearray()
        self.filled_frames = 0
        self.clock_jumps = 0
        self.overlaps = 0

    @property
    def frame_bytes(self) -> int:
        """Size of one emitted frame in bytes (PCM16 at ``sample_rate``)."""
        return 2 * self.frame_ms * (self.sample_rate // 1000)

    @property
    def expected_timestamp_ms(self) -> int | None:
        """Media time in ms where the next chunk is expected to start (None before the first push).

        This is the assembler's clock: the previous chunk's placement plus its
        duration (rounded down to whole ms when chunks are not whole ms long).
        After an overlap it runs ahead of the timestamps Twilio stated.
        """
        if self._expected_sample is None:
            return None
        return self._expected_sample // self._samples_per_ms

    def push(self, wire: bytes, timestamp_ms: int) -> list[Frame]:
        """Add one chunk and return the frames it completes.

        Args:
            wire: The chunk's audio in the wire format (Twilio: the base64-decoded
                ``media.payload``, G.711 μ-law 8000 Hz mono), any length (L16: an
                even number of bytes). An empty chunk is ignored.
            timestamp_ms: The chunk's ``media.timestamp`` as an int, in ms (Twilio
                sends it as a JSON string: convert it first).

        Returns:
            The completed frames in media-time order (possibly none): first
            silence frames (``filled=True``) for a gap before this chunk, then the
            frames holding its audio. A remainder shorter than a frame is kept
            for the next push (and, at 24 kHz, the output the resampler holds back).

        Raises:
            TypeError: ``timestamp_ms`` is not an int.
            AudioFormatError: an L16 chunk of an odd number of bytes (nothing is changed).
        """
        if type(timestamp_ms) is int:
            start = timestamp_ms * self._samples_per_ms
            if (start == self._expected_sample == self._stated_end_sample and len(wire) == self._fast_chunk_bytes
                    and not self._buffer):
                # The usual case: a one-frame chunk right where the previous one ended, nothing
                # pending. The general path below gives the same frame (no gap, no overlap).
                self._expected_sample = self._stated_end_sample = start + self._frame_samples
                # Frame(...) without the frozen dataclass's object.__setattr__ per field: the same object.
                frame = _new(Frame)
                frame.__dict__.update(pcm=self._decode(wire), timestamp_ms=timestamp_ms, filled=False)
                return [frame]
        elif isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
            raise TypeError(f"timestamp_ms must be an int, got {type(timestamp_ms).__name__}")
        if not wire:
            return []
        frames = self._place(self._decode(wire), timestamp_ms)
        if self._resampler is not None:
            return self._resampler.process(frames)
        return frames

    def finish(self) -> list[Frame]:
        """End the stream: return the frames still held back.

        These are the pending partial frame, completed with silence (``filled=False``),
        and, at 24 kHz, the resampler's tail. Call it at the stream's ``stop`` to keep
        the last ms of audio; without it they are dropped. A later :meth:`push` starts
        a new clock at its chunk's timestamp (counters are kept).

        Returns:
            The frames in media-time order (possibly none), on the same grid as before.
        """
        frames = self._pad_remainder()
        if self._resampler is not None:
            frames = self._resampler.process(frames) + self._resampler.drain()
        self._expected_sample = self._stated_end_sample = None
        return frames

    def _place(self, pcm: bytes, timestamp_ms: int) -> list[Frame]:
        """Put one decoded chunk (PCM16 at the wire rate) on the clock; return frames at the wire rate."""
        frames: list[Frame] = []
        num_samples = len(pcm) // 2
        start = timestamp_ms * self._samples_per_ms
        gap_samples = 0
        if self._expected_sample is None:
            self._expected_sample = start
        else:
            # Timestamps are whole ms, so a chunk that ends mid-ms is followed by one
            # stamped up to 1 ms early: compare in whole ms to not count that.
            if timestamp_ms < self._stated_end_sample // self._samples_per_ms:
                self.overlaps += 1
            delta = start - self._expected_sample
            if 2 * delta >= self._frame_samples:
                # A jump shorter than a frame would pad the remainder over the new chunk's frames.
                if delta <= max(self._max_gap_samples, self._frame_samples):
                    gap_samples = delta
                else:
                    self.clock_jumps += 1
                    frames.extend(self._pad_remainder())
                    self._expected_sample = start
            # Otherwise (jitter under half a frame, or a backwards timestamp) the
            # audio goes on at the clock's position.
        self._stated_end_sample = start + num_samples

        remainder_bytes = len(self._buffer)
        buffer_start = self._expected_sample - remainder_bytes // 2
        self._expected_sample += gap_samples + num_samples
        if not remainder_bytes and not gap_samples:
            # Nothing pending, no gap: cut the frames straight from the decoded chunk, without
            # copying it through the buffer. None is filled.
            fb = self._frame_bytes
            count = len(pcm) // fb
            for i in range(count):
                timestamp = (buffer_start + i * self._frame_samples) // self._samples_per_ms
                frames.append(Frame(pcm[i * fb:(i + 1) * fb], timestamp, False))
            self._buffer.extend(memoryview(pcm)[count * fb:])
            return frames
        if gap_samples:
            self._buffer.extend(bytes(2 * gap_samples))
        self._buffer.extend(pcm)

        fb = self._frame_bytes
        fill_end = remainder_bytes + 2 * gap_samples  # silence occupies [remainder_bytes, fill_end)
        count = len(self._buffer) // fb
        for i in range(count):
            lo = i * fb
            filled = lo >= remainder_bytes and lo + fb <= fill_end
            self.filled_frames += filled
            timestamp = (buffer_start + i * self._frame_samples) // self._samples_per_ms
            frames.append(Frame(bytes(self._buffer[lo:lo + fb]), timestamp, filled))
        del self._buffer[:count * fb]
        return frames

    def _pad_remainder(self) -> list[Frame]:
        """Complete a pending partial frame with silence (before the clock jumps, or at the end)."""
        if not self._buffer:
            return []
        buffer_start = self._expected_sample - len(self._buffer) // 2
        pcm = bytes(self._buffer) + bytes(self._frame_bytes - len(self._buffer))
        self._buffer.clear()
        return [Frame(pcm, buffer_start // self._samples_per_ms, False)]


class _FrameResampler:
    """Resample wire-rate frames to frames of the same ``frame_ms`` at ``out_rate``.

    Frames of one clock segment (timestamps ``frame_ms`` apart) go through one soxr
    stream, so the audio stays continuous; at a break in the timestamps (a clock jump)
    the stream is drained and restarted, so no audio crosses the jump. The k-th frame
    out of a segment covers the media time of the k-th frame in, and takes its
    timestamp and ``filled`` flag; a filled frame comes out as exact zeros. Output is
    held back until the resampler has produced a whole frame.
    """

    def __init__(self, in_rate: int, out_rate: int, frame_ms: int) -> None:
        self._resampler = StreamResampler(in_rate, out_rate, "int16", quality=RESAMPLE_QUALITY)
        self._frame_ms = frame_ms
        self._out_frame_bytes = 2 * frame_ms * (out_rate // 1000)
        self._out = bytearray()  # resampled PCM16 LE not yet emitted, from the first pending frame on
        self._pending: deque[tuple[int, bool]] = deque()  # (timestamp_ms, filled) of frames in, not yet out
        self._next_ms: int | None = None  # timestamp the next frame of this segment has

    def process(self, frames: list[Frame]) -> list[Frame]:
        """Feed wire-rate frames (media-time order) and return the output frames that are complete."""
        out: list[Frame] = []
        for frame in frames:
            if frame.timestamp_ms != self._next_ms and self._next_ms is not None:
                out.extend(self.drain())
            self._pending.append((frame.timestamp_ms, frame.filled))
            self._next_ms = frame.timestamp_ms + self._frame_ms
            samples = np.frombuffer(frame.pcm, dtype="<i2").astype(np.int16, copy=False)
            self._out += self._resampler.process(samples).astype("<i2", copy=False).tobytes()
            self._emit(out)
        return out

    def drain(self) -> list[Frame]:
        """End the segment: return its remaining frames and reset the resampler."""
        out: list[Frame] = []
        self._out += self._resampler.flush().astype("<i2", copy=False).tobytes()
        self._emit(out)
        if self._pending:  # soxr rounded the length down: complete the last frame with silence
            self._out += bytes(self._out_frame_bytes * len(self._pending) - len(self._out))
            self._emit(out)
        self._out.clear()  # or rounded it up: drop the excess
        self._next_ms = None
        return out

    def _emit(self, out: list[Frame]) -> None:
        size = self._out_frame_bytes
        while self._pending and len(self._out) >= size:
            timestamp_ms, filled = self._pending.popleft()
            pcm = bytes(size) if filled else bytes(self._out[:size])
            del self._out[:size]
            out.append(Frame(pcm, timestamp_ms, filled))
