"""A WAV file written in place: random-access writes, a valid header after every flush.

The stdlib ``wave`` module writes PCM only and only sequentially, and soundfile cannot
rewrite a header, so this module writes the RIFF/WAVE container itself (Microsoft
"Multimedia Programming Interface and Data Specifications 1.0", 1991: RIFF chunks,
``WAVE_FORMAT_PCM``; RFC 2361 for ``WAVE_FORMAT_MULAW`` = 0x0007). Layouts, all
integers little-endian:

* ``"pcm16"``: ``RIFF`` size ``WAVE`` | ``fmt `` 16: tag 1, channels, rate, bytes/s,
  block align, 16 bits | ``data`` size, samples. 44-byte header.
* ``"ulaw"`` (G.711 μ-law, 8 bits): ``RIFF`` size ``WAVE`` | ``fmt `` 18: tag 7, channels,
  rate, bytes/s, block align, 8 bits, cbSize 0 | ``fact`` 4: samples per channel |
  ``data`` size, samples. 58-byte header. Non-PCM formats need the 18-byte ``fmt ``
  (with cbSize) and a ``fact`` chunk (Microsoft, "fact chunk").

``data`` is always the last chunk. A chunk of odd size is followed by one pad byte that
its size does not count but the RIFF size does (RIFF spec); only mono μ-law can be odd.

Crash safety: every write goes to the file at once (the tail of a write may sit in
Python's buffer until the next seek or ``flush()``), so after a SIGKILL the file holds at
least everything written before the last ``flush()``, and more data than the header says.
``repair_header`` sets the sizes from the file's length.

A *frame* here is soundfile's and ``wave``'s: one sample for every channel.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio.constants import MULAW_SAMPLE_RATE
from audio.errors import AudioFormatError

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_MULAW = 0x0007

ENCODINGS = ("ulaw", "pcm16")
# encoding -> (format tag, sample width in bytes, silence byte)
_FORMATS = {"ulaw": (WAVE_FORMAT_MULAW, 1, 0xFF), "pcm16": (WAVE_FORMAT_PCM, 2, 0x00)}
_ENCODING_BY_FORMAT = {(tag, width): name for name, (tag, width, _) in _FORMATS.items()}
_MAX_DATA_BYTES = 0xFFFF_FFFF - 64  # RIFF sizes are 32-bit
_SILENCE_BLOCK_BYTES = 64 * 1024


@dataclass(frozen=True)
class WavInfo:
    """What a WAV header says.

    Attributes:
        encoding: ``"ulaw"`` or ``"pcm16"``.
        channels: number of interleaved channels.
        sample_rate: frames per second, in Hz.
        num_frames: frames the ``data`` chunk's size declares (not what the file holds).
        data_offset: byte offset of the first sample (the header's length).
        fact_offset: byte offset of the ``fact`` chunk's sample count, or ``None``.
    """

    encoding: str
    channels: int
    sample_rate: int
    num_frames: int
    data_offset: int
    fact_offset: int | None

    @property
    def frame_bytes(self) -> int:
        """Bytes per frame (``channels`` × sample width)."""
        return self.channels * _FORMATS[self.encoding][1]


def _build_header(encoding: str, channels: int, sample_rate: int, num_frames: int) -> bytes:
    """Return the whole header (up to the first sample) for ``num_frames`` frames."""
    tag, width, _ = _FORMATS[encoding]
    block_align = channels * width
    data_bytes = num_frames * block_align
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block_align, block_align, 8 * width)
    chunks = []
    if tag == WAVE_FORMAT_PCM:
        chunks.append(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
    else:
        fmt += struct.pack("<H", 0)  # cbSize: no extra format bytes
        chunks.append(b"fmt " + struct.pack("<I", len(fmt)) + fmt)
        chunks.append(b"fact" + struct.pack("<II", 4, num_frames))
    chunks.append(b"data" + struct.pack("<I", data_bytes))
    body = b"".join(chunks)
    riff_bytes = 4 + len(body) + data_bytes + (data_bytes & 1)
    return b"RIFF" + struct.pack("<I", riff_bytes) + b"WAVE" + body


class WavWriter:
    """A μ-law or PCM16 WAV file written at any frame position while it grows.

    Not thread-safe: one thread at a time may call its methods.

    Args:
        path: file to create (truncated if it exists).
        encoding: ``"ulaw"`` (G.711 μ-law, 1 byte per sample) or ``"pcm16"`` (signed
            16-bit little-endian).
        channels: interleaved channels, >= 1.
        sample_rate: frames per second, in Hz.

    Raises:
        AudioFormatError: unknown ``encoding``, or ``channels``/``sample_rate`` < 1.
        OSError: the file cannot be created.
    """

    def __init__(self, path: Path, *, encoding: str, channels: int, sample_rate: int = MULAW_SAMPLE_RATE) -> None:
        if encoding not in _FORMATS:
            raise AudioFormatError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        if channels < 1 or sample_rate < 1:
            raise AudioFormatError(f"need channels >= 1 and sample_rate >= 1, got {channels}, {sample_rate}")
        self.path = Path(path)
        self.encoding = encoding
        self.channels = channels
        self.sample_rate = sample_rate
        _, width, silence = _FORMATS[encoding]
        self._frame_bytes = channels * width
        self._silence = bytes([silence]) * _SILENCE_BLOCK_BYTES
        self._num_frames = 0
        self._flushed_frames = -1
        header = _build_header(encoding, channels, sample_rate, 0)
        self._header_bytes = len(header)
        self._file = open(self.path, "w+b")  # closed by close()
        self._file.write(header)
        self._file.flush()  # a valid (empty) WAV from the start
        self._flushed_frames = 0

    @property
    def num_frames(self) -> int:
        """Frames in the file (the end of the furthest write), flushed or not."""
        return self._num_frames

    @property
    def closed(self) -> bool:
        """True after ``close()``."""
        return self._file.closed

    def write_at(self, frame_index: int, data: bytes) -> None:
        """Write whole frames at ``frame_index``, overwriting what is there.

        A gap between the current end and ``frame_index`` is filled with silence (μ-law
        0xFF, PCM 0). The header is not updated until ``flush()``.

        Args:
            frame_index: first frame to write (frame = one sample per channel), >= 0.
            data: interleaved frames in the file's encoding; ``len(data)`` must be a
                multiple of ``channels`` × sample width. Any bytes-like object.

        Raises:
            ValueError: ``frame_index`` < 0, or the file is closed.
            AudioFormatError: ``data`` is not whole frames, or the file would exceed the
                4 GiB RIFF limit.
        """
        data = memoryview(data).cast("B")
        if frame_index < 0:
            raise ValueError(f"frame_index must be >= 0, got {frame_index}")
        if len(data) % self._frame_bytes:
            raise AudioFormatError(f"{len(data)} bytes is not a whole number of {self._frame_bytes}-byte frames")
        if not data:
            return
        end = frame_index + len(data) // self._frame_bytes
        if end * self._frame_bytes > _MAX_DATA_BYTES:
            raise AudioFormatError(f"a WAV file cannot hold {end} frames of {self._frame_bytes} bytes")
        file = self._file
        if frame_index > self._num_frames:
            file.seek(self._offset(self._num_frames))
            self._write_silence((frame_index - self._num_frames) * self._frame_bytes)
        else:
            file.seek(self._offset(frame_index))
        file.write(data)
        self._num_frames = max(self._num_frames, end)

    def write_channel_at(self, frame_index: int, channel: int, samples: bytes) -> None:
        """Write one channel of consecutive frames, keeping the other channels (PCM16 only).

        Reads the frames already in the file that the write overlaps, replaces the
        channel's samples and writes them back. Beyond the current end, the other
        channels are 0 (silence). Writes that extend the end need no read.

        Args:
            frame_index: first frame to write, >= 0.
            channel: channel index, 0 (left) to ``channels - 1``.
            samples: PCM16 LE mono, one sample per frame.

        Raises:
            AudioFormatError: the file is not PCM16, or ``samples`` has an odd length.
            ValueError: bad ``channel`` or ``frame_index``, or the file is closed.
        """
        if self.encoding != "pcm16":
            raise AudioFormatError(f"write_channel_at needs a pcm16 file, this one is {self.encoding}")
        if not 0 <= channel < self.channels:
            raise ValueError(f"channel must be in [0, {self.channels}), got {channel}")
        if frame_index < 0:
            raise ValueError(f"frame_index must be >= 0, got {frame_index}")
        if len(samples) % 2:
            raise AudioFormatError(f"PCM16 needs an even number of bytes, got {len(samples)}")
        count = len(samples) // 2
        if count == 0:
            return
        frames = np.zeros((count, self.channels), dtype="<i2")
        overlap = min(count, self._num_frames - frame_index)
        if overlap > 0:
            self._file.seek(self._offset(frame_index))
            wanted = overlap * self._frame_bytes
            got = self._file.readinto(frames.reshape(-1).view(np.uint8)[:wanted])
            if got != wanted:
                raise OSError(f"{self.path}: short read ({got} of {wanted} bytes)")
        frames[:, channel] = np.frombuffer(samples, dtype="<i2")
        self.write_at(frame_index, frames.reshape(-1).view(np.uint8))

    def flush(self) -> None:
        """Make the file a valid WAV of ``num_frames`` frames and hand it to the OS.

        Rewrites the sizes in the header (RIFF, ``fact``, ``data``), adds the pad byte
        after an odd-sized ``data`` chunk, and flushes Python's buffer (no ``fsync``: a
        killed process loses nothing, a power cut may).

        Raises:
            ValueError: the file is closed.
        """
        file = self._file
        if self._num_frames != self._flushed_frames:
            file.seek(0)
            file.write(_build_header(self.encoding, self.channels, self.sample_rate, self._num_frames))
            data_bytes = self._num_frames * self._frame_bytes
            if data_bytes & 1:
                # RIFF pad byte; the next write past the end overwrites it
                file.seek(self._header_bytes + data_bytes)
                file.write(b"\x00")
            self._flushed_frames = self._num_frames
        file.flush()

    def close(self) -> None:
        """Flush and close the file. Calling it again does nothing."""
        if self._file.closed:
            return
        try:
            self.flush()
        finally:
            self._file.close()

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _offset(self, frame_index: int) -> int:
        return self._header_bytes + frame_index * self._frame_bytes

    def _write_silence(self, num_bytes: int) -> None:
        while num_bytes > 0:
            block = min(num_bytes, len(self._silence))
            self._file.write(self._silence[:block])
            num_bytes -= block


def read_info(path: Path) -> WavInfo:
    """Parse the header of a μ-law or PCM16 WAV file (chunks up to ``data``).

    Args:
        path: a WAV file.

    Returns:
        The header's format and declared size; the file itself may hold more or less.

    Raises:
        AudioFormatError: not RIFF/WAVE, no ``fmt ``/``data`` chunk, or an encoding other
            than μ-law (tag 7, 8 bits) or PCM (tag 1, 16 bits).
        OSError: the file cannot be read.
    """
    with open(path, "rb") as file:
        head = file.read(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a RIFF/WAVE file")
    position, fmt, fact_offset = 12, None, None
    while position + 8 <= len(head):
        chunk_id = head[position : position + 4]
        (chunk_bytes,) = struct.unpack_from("<I", head, position + 4)
        if chunk_id == b"fmt " and position + 8 + 16 <= len(head):
            fmt = struct.unpack_from("<HHIIHH", head, position + 8)
        elif chunk_id == b"fact":
            fact_offset = position + 8
        elif chunk_id == b"data":
            if fmt is None:
                raise AudioFormatError(f"{path}: data chunk before fmt chunk")
            tag, channels, sample_rate, _, block_align, bits = fmt
            encoding = _ENCODING_BY_FORMAT.get((tag, bits // 8))
            if encoding is None or bits % 8 or channels < 1 or block_align != channels * bits // 8:
                raise AudioFormatError(f"{path}: unsupported format tag {tag}, {bits} bits, {channels} channels")
            return WavInfo(encoding, channels, sample_rate, chunk_bytes // block_align, position + 8, fact_offset)
        position += 8 + chunk_bytes + (chunk_bytes & 1)
    raise AudioFormatError(f"{path}: no data chunk in the first {len(head)} bytes")


def repair_header(path: Path) -> int:
    """Fix the sizes in the header of a WAV file whose writer died before closing it.

    The ``data`` chunk is taken to run to the end of the file (it is the last chunk), cut
    to whole frames; a trailing partial frame is truncated. A byte after an odd-sized
    ``data`` chunk that the header already declares is taken as the RIFF pad byte. The
    RIFF size, the ``fact`` sample count and the ``data`` size are rewritten in place.

    Args:
        path: a μ-law or PCM16 WAV file (as written by ``WavWriter``).

    Returns:
        The number of frames the file now holds.

    Raises:
        AudioFormatError: the header cannot be parsed (see ``read_info``).
        OSError: the file cannot be read or written.
    """
    info = read_info(path)
    declared_bytes = info.num_frames * info.frame_bytes
    available_bytes = max(os.path.getsize(path) - info.data_offset, 0)
    if declared_bytes & 1 and available_bytes == declared_bytes + 1:
        available_bytes = declared_bytes  # the last flush's pad byte, not a sample
    num_frames = available_bytes // info.frame_bytes
    data_bytes = num_frames * info.frame_bytes
    with open(path, "r+b") as file:
        file.truncate(info.data_offset + data_bytes)
        if data_bytes & 1:
            file.seek(info.data_offset + data_bytes)
            file.write(b"\x00")
        file.seek(4)
        file.write(struct.pack("<I", info.data_offset - 8 + data_bytes + (data_bytes & 1)))
        if info.fact_offset is not None:
            file.seek(info.fact_offset)
            file.write(struct.pack("<I", num_frames))
        file.seek(info.data_offset - 4)
        file.write(struct.pack("<I", data_bytes))
    return num_frames
