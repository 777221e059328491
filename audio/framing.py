"""Turn Twilio media chunks into fixed VAD frames on the media clock.

Twilio sends inbound audio as μ-law 8000 Hz mono chunks, each with
``media.timestamp``: "Presentation Timestamp in Milliseconds from the start of
the stream" (Twilio Media Streams docs, "media" message; protocol.md §2.3). The
first timestamp is not 0 (it was 52 in a 2020 capture), chunks were observed to
be 160 bytes (20 ms), but sizes are not documented, and some calls skip silent
chunks (protocol.md §7 "Timing and framing"; §10 item 15). So this module:

* re-cuts chunks of any size into fixed ``frame_ms`` frames (a remainder waits
  for the next chunk);
* keeps its own media clock, starting at the first chunk's timestamp and
  advancing by the audio actually received;
* fills a gap (a chunk that starts at least half a frame later than expected)
  with PCM silence, up to ``max_gap_fill_ms``; a longer jump resynchronises the
  clock to the new timestamp without filling;
* accepts chunks whose timestamp goes backwards (overlap, duplicate) and places
  their audio at the clock's current position.

Frame timestamps therefore lie on a grid ``first_timestamp + k * frame_ms``,
restarted only at a clock jump.
"""

from dataclasses import dataclass

from audio.codec import ulaw_to_pcm16
from audio.errors import AudioFormatError

SAMPLE_RATES = (8000, 16000, 32000, 48000)
FRAME_MS = (10, 20, 30)
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
    """Re-cut timestamped μ-law chunks into fixed PCM16 frames, filling gaps with silence.

    Sans-I/O: feed chunks with :meth:`push` in arrival order and use the frames it
    returns. One instance per inbound track.

    Args:
        frame_ms: Frame duration in ms: 10, 20 or 30 (the WebRTC VAD's sizes).
        sample_rate: Sample rate of the μ-law chunks and of the frames, in Hz:
            8000 for Twilio (also 16000, 32000 or 48000). No resampling is done.
        max_gap_fill_ms: Longest gap, in ms, filled with silence; a longer
            forward jump of the timestamp resynchronises the clock instead.

    Attributes:
        filled_frames: Number of frames emitted with ``filled=True``.
        clock_jumps: Number of forward jumps longer than ``max_gap_fill_ms``.
        overlaps: Number of chunks whose timestamp was earlier than the end of
            the previous chunk (previous timestamp + its duration, rounded down to
            whole ms).

    Raises:
        AudioFormatError: ``frame_ms`` or ``sample_rate`` is not supported.
        ValueError: ``max_gap_fill_ms`` is negative.
    """

    def __init__(self, frame_ms: int = 20, sample_rate: int = 8000, max_gap_fill_ms: int = 2000) -> None:
        if frame_ms not in FRAME_MS:
            raise AudioFormatError(f"frame_ms must be one of {FRAME_MS}, got {frame_ms!r}")
        if sample_rate not in SAMPLE_RATES:
            raise AudioFormatError(f"sample_rate must be one of {SAMPLE_RATES} Hz, got {sample_rate!r}")
        if max_gap_fill_ms < 0:
            raise ValueError(f"max_gap_fill_ms must be >= 0, got {max_gap_fill_ms}")
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self.max_gap_fill_ms = max_gap_fill_ms
        self._samples_per_ms = sample_rate // 1000
        self._frame_samples = frame_ms * self._samples_per_ms
        self._frame_bytes = 2 * self._frame_samples
        self._max_gap_samples = max_gap_fill_ms * self._samples_per_ms
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
        """Size of one emitted frame in bytes (PCM16)."""
        return self._frame_bytes

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

    def push(self, ulaw: bytes, timestamp_ms: int) -> list[Frame]:
        """Add one chunk and return the frames it completes.

        Args:
            ulaw: The chunk's audio, G.711 μ-law at ``sample_rate`` Hz mono, any
                length (Twilio: the base64-decoded ``media.payload``). An empty
                chunk is ignored.
            timestamp_ms: The chunk's ``media.timestamp`` as an int, in ms (Twilio
                sends it as a JSON string: convert it first).

        Returns:
            The completed frames in media-time order (possibly none): first
            silence frames (``filled=True``) for a gap before this chunk, then the
            frames holding its audio. A remainder shorter than a frame is kept
            for the next push.

        Raises:
            TypeError: ``timestamp_ms`` is not an int.
        """
        if type(timestamp_ms) is int:
            start = timestamp_ms * self._samples_per_ms
            if (start == self._expected_sample == self._stated_end_sample and len(ulaw) == self._frame_samples
                    and not self._buffer):
                # The usual case: a one-frame chunk right where the previous one ended, nothing
                # pending. The general path below gives the same frame (no gap, no overlap).
                self._expected_sample = self._stated_end_sample = start + len(ulaw)
                # Frame(...) without the frozen dataclass's object.__setattr__ per field: the same object.
                frame = _new(Frame)
                frame.__dict__.update(pcm=ulaw_to_pcm16(ulaw), timestamp_ms=timestamp_ms, filled=False)
                return [frame]
        elif isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, int):
            raise TypeError(f"timestamp_ms must be an int, got {type(timestamp_ms).__name__}")
        if not ulaw:
            return []
        frames: list[Frame] = []
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
        self._stated_end_sample = start + len(ulaw)

        remainder_bytes = len(self._buffer)
        buffer_start = self._expected_sample - remainder_bytes // 2
        pcm = ulaw_to_pcm16(ulaw)
        self._expected_sample += gap_samples + len(ulaw)
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
        """Complete a pending partial frame with silence before the clock jumps."""
        if not self._buffer:
            return []
        buffer_start = self._expected_sample - len(self._buffer) // 2
        pcm = bytes(self._buffer) + bytes(self._frame_bytes - len(self._buffer))
        self._buffer.clear()
        return [Frame(pcm, buffer_start // self._samples_per_ms, False)]
