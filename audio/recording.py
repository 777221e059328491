"""Call recordings written while the call goes on, aligned on the stream's media clock.

One directory per call (conversation or listen-only fork) holds three WAV files:

* ``inbound.wav``: mono, the caller's audio as the stream carries it: μ-law
  (WAVE_FORMAT_MULAW) for Twilio, PCM16 for SignalWire's L16 streams;
* ``outbound.wav``: mono, the same encoding, the bot's audio (conversation) or the
  callee's (fork: Twilio's ``outbound`` track);
* ``stereo.wav``: 2-channel PCM16, left = inbound, right = outbound.

All three are at the stream's wire rate (``audio.stream_format.StreamFormat``: 8000 Hz for
μ-law; 8000, 16 000 or 24 000 Hz for L16), so the recording is the audio exactly as sent.

Sample 0 of every file is media time 0 ms (Twilio's ``media.timestamp``, "Presentation
Timestamp in Milliseconds from the start of the stream", protocol.md): audio at ``t`` ms
starts at sample ``t * sample_rate // 1000``. Gaps are silence. Audio arrives out of
order: the bot's audio is placed where it played, known only when its mark is echoed,
seconds after later inbound audio was recorded, so the files are written at random
positions (``audio.wavfile``).

Threads: ``add()`` runs on the event loop and only appends to a deque; ``flush()`` and
``close()`` do the file I/O and block, so the caller runs them in a worker thread, one
at a time (they must not overlap each other). ``add()`` may run while they do: deque
``append``/``popleft`` are atomic, so no lock is needed.

Crash safety: the files are valid WAVs after every ``flush()``. A process killed before
``close()`` leaves no ``finalized`` marker; ``CallRecorder.recover()`` then repairs the
headers and keeps at least everything written up to the last flush.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from audio.constants import MULAW_SAMPLE_RATE
from audio.errors import AudioFormatError
from audio.stream_format import MULAW, MULAW_8K, StreamFormat
from audio.wavfile import WavInfo, WavWriter, read_info, repair_header

log = logging.getLogger(__name__)

FINALIZED_MARKER = "finalized"
"""Name of the empty file ``close()``/``recover()`` write once the files are complete."""

TRACKS = ("inbound", "outbound")
KINDS = ("inbound", "outbound", "stereo")
_STEREO_CHANNEL = {"inbound": 0, "outbound": 1}
# kind -> (file name, channels); mono files take the stream's encoding, stereo is PCM16
_FILES = {
    "inbound": ("inbound.wav", 1),
    "outbound": ("outbound.wav", 1),
    "stereo": ("stereo.wav", 2),
}


@dataclass(frozen=True)
class RecordingFile:
    """One finished recording file.

    Attributes:
        kind: ``"inbound"``, ``"outbound"`` or ``"stereo"``.
        path: the WAV file.
        duration_ms: its length in ms of media time (from media time 0).
        size_bytes: its size on disk, header included.
    """

    kind: str
    path: Path
    duration_ms: int
    size_bytes: int


class CallRecorder:
    """Records both tracks of one call into ``directory`` as the call goes.

    Args:
        directory: created if missing; ``inbound.wav``, ``outbound.wav`` and
            ``stereo.wav`` in it are overwritten, a stale ``finalized`` marker removed.
        stream_format: the wire format of the audio passed to ``add()`` (default
            ``MULAW_8K``, Twilio's). μ-law is kept as μ-law in the mono files, L16 as PCM16.
        sample_rate: without ``stream_format``, the rate in Hz of μ-law audio passed to
            ``add()`` (default 8000); with it, leave it out or give its rate.

    Attributes:
        directory: the call's directory.
        stream_format: the wire format recorded (``MULAW_8K`` also when μ-law at another
            rate was given by ``sample_rate`` alone).
        sample_rate: the files' rate in Hz (the wire rate).
        finalized: True once ``close()`` has written the ``finalized`` marker.

    Raises:
        AudioFormatError: ``sample_rate`` is not ``stream_format.sample_rate``.
        OSError: the directory or the files cannot be created.
    """

    def __init__(
        self, directory: Path, *, stream_format: StreamFormat | None = None, sample_rate: int | None = None
    ) -> None:
        if stream_format is None:
            stream_format = MULAW_8K
            self.sample_rate = MULAW_SAMPLE_RATE if sample_rate is None else sample_rate
        else:
            if sample_rate is not None and sample_rate != stream_format.sample_rate:
                raise AudioFormatError(f"{stream_format} is {stream_format.sample_rate} Hz, not sample_rate={sample_rate}")
            self.sample_rate = stream_format.sample_rate
        self.directory = Path(directory)
        self.stream_format = stream_format
        self._mono_encoding = "ulaw" if stream_format.encoding == MULAW else "pcm16"
        self._bytes_per_sample = stream_format.bytes_per_sample
        self.finalized = False
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / FINALIZED_MARKER).unlink(missing_ok=True)
        self._queue: deque[tuple[str, int, bytes]] = deque()
        self._closed = False
        self._files: list[RecordingFile] = []
        self._writers: dict[str, WavWriter] = {}
        try:
            for kind, (name, channels) in _FILES.items():
                encoding = self._mono_encoding if channels == 1 else "pcm16"
                self._writers[kind] = WavWriter(
                    self.directory / name, encoding=encoding, channels=channels, sample_rate=self.sample_rate
                )
        except BaseException:
            for writer in self._writers.values():
                writer.close()
            raise

    def add(self, track: str, start_ms: int, audio: bytes) -> None:
        """Queue audio of one track for the next ``flush()``. Cheap: no I/O, no decoding.

        Audio added to the same track later overwrites earlier audio where they overlap.
        Audio added after ``close()`` is ignored.

        Args:
            track: ``"inbound"`` or ``"outbound"``.
            start_ms: media time of its first sample, in ms (Twilio's ``media.timestamp``
                for inbound; when it played, for the bot's audio), >= 0.
            audio: wire bytes in ``stream_format`` (μ-law, or L16 = PCM16 LE) at
                ``sample_rate``, mono; not copied, so do not mutate it. An odd last byte
                of L16 is dropped when written.

        Raises:
            ValueError: unknown ``track`` or negative ``start_ms``.
        """
        if track not in _STEREO_CHANNEL:
            raise ValueError(f"track must be 'inbound' or 'outbound', got {track!r}")
        if start_ms < 0:
            raise ValueError(f"start_ms must be >= 0, got {start_ms}")
        if not self._closed:
            self._queue.append((track, start_ms, audio))

    def flush(self) -> None:
        """Write everything queued and make the three files valid WAVs. Blocking file I/O.

        Contiguous chunks of a track (each starting where the previous one ended, in the
        order added) are joined first, so 20 ms chunks become one write per file, and one
        read-modify-write of the stereo file (no read when they extend its end). Does
        nothing after ``close()``.

        Raises:
            OSError: a write failed (the queued audio taken so far is lost).
        """
        if self._closed:
            return
        self._write_queued()
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> list[RecordingFile]:
        """Flush, close the files and write the ``finalized`` marker.

        Calling it again returns the same list.

        Returns:
            The inbound, outbound and stereo files, in that order.

        Raises:
            OSError: a write failed (the marker is then not written; ``recover()`` can
                repair the directory).
        """
        if self._closed:
            return list(self._files)
        self._closed = True
        try:
            self._write_queued()
        finally:
            for writer in self._writers.values():
                writer.close()
        self._files = [
            _describe(kind, writer.path, writer.num_frames, self.sample_rate) for kind, writer in self._writers.items()
        ]
        _write_marker(self.directory)
        self.finalized = True
        return list(self._files)

    @staticmethod
    def recover(directory: Path) -> list[RecordingFile]:
        """Repair the recordings of a call whose process died before ``close()``.

        For a directory without the ``finalized`` marker, fixes each file's header sizes
        from its length (``audio.wavfile.repair_header``) and writes the marker. A file
        cut short inside its header (killed while being created) holds no audio and is
        rewritten as an empty WAV, in the format of the call's other files (the mono
        file's encoding and rate; μ-law 8 kHz if no header survived). A finalized
        directory is only described. Works for every stream format: the headers say it.

        Args:
            directory: a call's recording directory.

        Returns:
            The files present among inbound, outbound and stereo, in that order.

        Raises:
            AudioFormatError: a file is not a WAV this module writes.
            OSError: the files cannot be read or written.
        """
        directory = Path(directory)
        finalized = (directory / FINALIZED_MARKER).exists()
        infos: dict[str, WavInfo] = {}
        for kind, (name, _) in _FILES.items():
            try:
                infos[kind] = read_info(directory / name)
            except (AudioFormatError, FileNotFoundError):
                pass
        files = []
        for kind, (name, channels) in _FILES.items():
            path = directory / name
            if not path.exists():
                continue
            if finalized:
                info = read_info(path)
                num_frames, sample_rate = info.num_frames, info.sample_rate
            else:
                try:
                    num_frames = repair_header(path)
                    sample_rate = read_info(path).sample_rate
                except AudioFormatError:
                    if os.path.getsize(path) >= 64:  # larger than any header this module writes
                        raise
                    log.warning("recording %s: header cut short, rewritten empty", path)
                    encoding, sample_rate = _surviving_format(channels, infos)
                    WavWriter(path, encoding=encoding, channels=channels, sample_rate=sample_rate).close()
                    num_frames = 0
            files.append(_describe(kind, path, num_frames, sample_rate))
        if not finalized:
            _write_marker(directory)
        return files

    def _write_queued(self) -> None:
        runs: dict[str, list[list]] = {track: [] for track in TRACKS}  # [start_frame, chunks, end_frame]
        pop = self._queue.popleft
        width = self._bytes_per_sample
        while True:
            try:
                track, start_ms, audio = pop()
            except IndexError:
                break
            num_samples = len(audio) // width
            if not num_samples:
                continue
            if width > 1 and len(audio) % width:
                audio = audio[: num_samples * width]  # a torn L16 sample: not whole, not recordable
            start = start_ms * self.sample_rate // 1000
            track_runs = runs[track]
            if track_runs and track_runs[-1][2] == start:
                run = track_runs[-1]
                run[1].append(audio)
                run[2] += num_samples
            else:
                track_runs.append([start, [audio], start + num_samples])
        stereo = self._writers["stereo"]
        decode = self.stream_format.decode
        for track, track_runs in runs.items():
            writer = self._writers[track]
            for start, chunks, _ in track_runs:
                audio = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                writer.write_at(start, audio)
                stereo.write_channel_at(start, _STEREO_CHANNEL[track], decode(audio))


def _surviving_format(channels: int, infos: dict[str, WavInfo]) -> tuple[str, int]:
    """(encoding, sample_rate) for a file of ``channels`` rewritten empty, from the headers that parse."""
    mono = [info for kind, info in infos.items() if info.channels == 1 and kind != "stereo"]
    if mono:
        encoding, sample_rate = mono[0].encoding, mono[0].sample_rate
    elif "stereo" in infos:  # μ-law streams are 8 kHz only; any other rate is L16
        sample_rate = infos["stereo"].sample_rate
        encoding = "ulaw" if sample_rate == MULAW_8K.sample_rate else "pcm16"
    else:
        encoding, sample_rate = "ulaw", MULAW_8K.sample_rate
    return ("pcm16" if channels == 2 else encoding), sample_rate


def _describe(kind: str, path: Path, num_frames: int, sample_rate: int) -> RecordingFile:
    return RecordingFile(kind, path, num_frames * 1000 // sample_rate, os.path.getsize(path))


def _write_marker(directory: Path) -> None:
    (directory / FINALIZED_MARKER).touch()
