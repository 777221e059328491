"""Audio prompts (``core.responder.Play``): files decoded once into a stream's wire format, and kept.

A responder may play a recording (hold music, a jingle, a recorded announcement) instead of
synthesized speech. ``load_prompt`` reads any file ``soundfile`` reads (WAV, FLAC, OGG, MP3…),
mixes it to mono, resamples it with soxr to the stream's rate and encodes it as the stream is
(μ-law 8 kHz, or L16 at 16/24 kHz), block by block, so a long file never sits in memory as
float samples. ``PromptCache`` keeps the result by absolute path, modification time, size and
stream format: a prompt is decoded once per format, and a file replaced on disk is read again.

Blocking (file reads, CPU): the call worker runs ``PromptCache.load`` in a thread
(``runtime.blocking.run_blocking``); the cache is shared by every call and thread-safe.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict

import numpy as np
import soundfile as sf
from gevent.monkey import get_original

from audio.codec import array_to_pcm16, array_to_ulaw
from audio.resample import StreamResampler
from audio.stream_format import StreamFormat

PROMPT_MAX_S = 600
"""Longest prompt, in seconds of audio (10 minutes: 4.8 MB of μ-law, 28.8 MB of L16 at 24 kHz)."""

PROMPT_CACHE_BYTES = 64 * 1024 * 1024
"""Wire audio the cache keeps, in bytes, least recently used out first."""

PROMPT_LOAD_TIMEOUT_S = 20.0
"""How long a call waits for a prompt to load (a 600 s FLAC decodes in well under that)."""

_BLOCK_S = 10  # decoded and converted this many seconds at a time

_allocate_lock = get_original("_thread", "allocate_lock")  # a real lock: taken in threadpool threads


class PromptError(Exception):
    """A prompt cannot be played: not found, not a regular file, not decodable, empty or too long."""


def resolve_prompt_path(path: str | os.PathLike) -> str:
    """The absolute path of prompt ``path`` (relative to the working directory), checked to be a regular file.

    Raises:
        PromptError: it does not exist, cannot be examined, or is a directory or another
            non-regular file (a FIFO would block the reading thread forever).
    """
    absolute = os.path.abspath(os.fspath(path))
    try:
        mode = os.stat(absolute).st_mode
    except FileNotFoundError:
        raise PromptError(f"prompt file not found: {absolute}") from None
    except OSError as exc:
        raise PromptError(f"prompt file {absolute}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise PromptError(f"prompt path is a directory: {absolute}")
    if not stat.S_ISREG(mode):
        raise PromptError(f"prompt path is not a regular file: {absolute}")
    return absolute


def load_prompt(path: str | os.PathLike, wire: StreamFormat, *, max_s: float = PROMPT_MAX_S) -> bytes:
    """Read and convert an audio file to a stream's wire format (blocking; no cache).

    Args:
        path: any file ``soundfile`` (libsndfile) reads, any rate and channel count;
            relative to the working directory or absolute.
        wire: the stream's format.
        max_s: longest audio accepted, in seconds.

    Returns:
        Mono audio in ``wire``'s format, no header: μ-law (1 byte per sample) or L16
        little-endian (2 bytes), at ``wire.sample_rate``; about ``duration × sample_rate``
        samples. Channels are averaged.

    Raises:
        PromptError: see ``resolve_prompt_path``; the file cannot be decoded, holds no audio,
            or is longer than ``max_s``.
    """
    absolute = resolve_prompt_path(path)
    encode = array_to_ulaw if wire.is_ulaw else array_to_pcm16
    pieces: list[bytes] = []
    try:
        with sf.SoundFile(absolute) as audio:
            rate, channels = audio.samplerate, audio.channels
            max_frames = int(max_s * rate)
            too_long = PromptError(f"prompt {absolute} is longer than {max_s:g} s")
            if audio.frames > max_frames:  # the header says so (MP3: an estimate; checked again below)
                raise too_long
            resampler = StreamResampler(rate, wire.sample_rate, dtype="float32")
            frames = 0
            while True:
                block = audio.read(_BLOCK_S * rate, dtype="float32", always_2d=True)
                if not len(block):
                    break
                frames += len(block)
                if frames > max_frames:
                    raise too_long
                mono = block[:, 0] if channels == 1 else block.mean(axis=1, dtype=np.float32)
                pieces.append(encode(resampler.process(mono)))
            pieces.append(encode(resampler.flush()))
    except (sf.SoundFileError, RuntimeError, OSError) as exc:  # libsndfile's errors, or a read failing midway
        raise PromptError(f"cannot decode prompt {absolute}: {exc}") from None
    if not frames:
        raise PromptError(f"prompt {absolute} holds no audio")
    return b"".join(pieces)


class PromptCache:
    """Wire audio of prompts, by (absolute path, mtime, size, stream format), least recently used out first.

    Args:
        max_bytes: wire audio kept, in bytes; a prompt larger than that is converted each time.
        max_s: longest prompt accepted, in seconds (``load_prompt``).

    Thread-safe (a native lock; loads run in threads). Concurrent loads of one prompt decode it
    once: the others wait for it.
    """

    def __init__(self, max_bytes: int = PROMPT_CACHE_BYTES, max_s: float = PROMPT_MAX_S) -> None:
        self.max_bytes = max_bytes
        self.max_s = max_s
        self._audio: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = _allocate_lock()
        self._loading: dict[tuple, object] = {}  # key → lock held by the thread decoding it
        self.hits = 0
        self.loads = 0  # files decoded

    def load(self, path: str | os.PathLike, wire: StreamFormat) -> bytes:
        """The wire audio of prompt ``path`` in ``wire``'s format: from the cache, or read and converted.

        Blocking (``os.stat``, and on a miss the whole file): run it in a thread.

        Returns:
            As ``load_prompt``.

        Raises:
            PromptError: as ``load_prompt`` (failures are not cached: a file fixed on disk plays next time).
        """
        absolute = resolve_prompt_path(path)
        try:
            info = os.stat(absolute)
        except OSError as exc:  # removed since it was resolved
            raise PromptError(f"prompt file {absolute}: {exc.strerror or exc}") from None
        key = (absolute, info.st_mtime_ns, info.st_size, wire)
        with self._lock:
            audio = self._get(key)
            if audio is not None:
                return audio
            loading = self._loading.setdefault(key, _allocate_lock())
        with loading:  # one thread decodes; the others find its result once it lets go
            with self._lock:
                audio = self._get(key)
                if audio is not None:
                    return audio
            try:
                audio = load_prompt(absolute, wire, max_s=self.max_s)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self.loads += 1
                self._put(key, audio)
                self._loading.pop(key, None)
        return audio

    def _get(self, key: tuple) -> bytes | None:
        audio = self._audio.get(key)
        if audio is not None:
            self._audio.move_to_end(key)
            self.hits += 1
        return audio

    def _put(self, key: tuple, audio: bytes) -> None:
        if len(audio) > self.max_bytes:
            return
        for old in [k for k in self._audio if k[0] == key[0] and k[3] == key[3]]:  # an older version of the file
            self._bytes -= len(self._audio.pop(old))
        self._audio[key] = audio
        self._bytes += len(audio)
        while self._bytes > self.max_bytes:
            _, evicted = self._audio.popitem(last=False)
            self._bytes -= len(evicted)

    @property
    def size_bytes(self) -> int:
        """Wire audio held, in bytes."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._audio)
