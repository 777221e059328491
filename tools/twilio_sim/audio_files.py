"""Audio files: the caller's script audio in (as stream media), what the caller heard out (as WAV)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tools.twilio_sim.frames import SAMPLE_RATE
from tools.twilio_sim.media_format import MULAW_8K, MediaFormat
from tools.twilio_sim.repo import add_repo_root_to_sys_path
from tools.twilio_sim.script import ScriptItem, parse_script

if TYPE_CHECKING:
    import numpy as np


def _import_repo_audio():
    """Import the repository's ``audio.codec`` and ``audio.resample`` modules (repo root on sys.path)."""
    add_repo_root_to_sys_path()
    from audio import codec, resample

    return codec, resample


@dataclass(frozen=True)
class SourceAudio:
    """An audio file as read, before it is put in a stream's format.

    Attributes:
        samples: 1-D float32 array, mono (channels averaged), nominal range [-1, 1].
        sample_rate: the file's rate, Hz.
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate

    def at_rate(self, sample_rate: int) -> np.ndarray:
        """Return the samples soxr-resampled (``audio.resample``) to ``sample_rate`` Hz: 1-D float32, [-1, 1]."""
        _, resample = _import_repo_audio()
        if self.sample_rate == sample_rate:
            return self.samples
        return resample.resample(self.samples, self.sample_rate, sample_rate)

    def encode(self, media_format: MediaFormat = MULAW_8K) -> bytes:
        """Return the audio as media payload bytes: soxr-resampled (``audio.resample``) to the format's
        rate, then encoded (μ-law by ``audio.codec.array_to_ulaw``, or L16 little-endian)."""
        return media_format.encode(self.at_rate(media_format.sample_rate))


def read_audio(path: str) -> SourceAudio:
    """Read an audio file soundfile can read (wav, flac, ogg...) and mix it to mono.

    Raises:
        soundfile.LibsndfileError / OSError: the file cannot be read.
    """
    import soundfile

    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    return SourceAudio(samples.mean(axis=1), sample_rate)


def load_audio(path: str, media_format: MediaFormat = MULAW_8K) -> bytes:
    """Read an audio file and return it as media payload bytes in ``media_format``, mono.

    Raises:
        soundfile.LibsndfileError / OSError: the file cannot be read.
    """
    return read_audio(path).encode(media_format)


def load_audio_ulaw(path: str) -> bytes:
    """Read an audio file and return it as Twilio media: G.711 μ-law, 8 kHz, mono.

    Channels are averaged; the rate is converted with soxr (``audio.resample``);
    encoding is ``audio.codec.array_to_ulaw``.

    Raises:
        soundfile.LibsndfileError / OSError: the file cannot be read.
    """
    return load_audio(path, MULAW_8K)


def ulaw_to_pcm(ulaw: bytes) -> bytes:
    """Decode G.711 μ-law bytes to PCM16 little-endian mono bytes (``audio.codec``)."""
    codec, _ = _import_repo_audio()
    return codec.ulaw_to_pcm16(ulaw)


def write_wav(path: str, pcm: bytes, sample_rate: int = SAMPLE_RATE) -> None:
    """Write PCM16 little-endian mono bytes to a WAV file."""
    import wave

    with wave.open(path, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


def load_script(tokens: list[str], fork: bool = False) -> tuple[list[ScriptItem], dict[str, SourceAudio]]:
    """Parse the script (``parse_script(tokens, fork)``) and read its audio files before the call.

    The audio is put in the stream's format once the TwiML has chosen it (``SourceAudio.encode``).

    Returns:
        (items, ``SourceAudio`` keyed by ``ScriptItem.path``).

    Raises:
        ValueError: a bad item or an unreadable audio file.
    """
    items = parse_script(tokens, fork=fork)
    audio = {}
    for item in items:
        if item.path is not None and item.path not in audio:
            try:
                audio[item.path] = read_audio(item.path)
            except Exception as error:  # soundfile raises LibsndfileError/TypeError/RuntimeError, not only OSError
                raise ValueError(f"cannot read audio {item.path!r}: {error}") from None
            source = audio[item.path]
            print(f"loaded {item.path}: {source.duration_s:.2f} s at {source.sample_rate} Hz")
    return items, audio


def encode_script_audio(audio: dict[str, SourceAudio], media_format: MediaFormat) -> dict[str, bytes]:
    """Put every script file in the stream's format: payload bytes keyed by path (``SourceAudio.encode``)."""
    return {path: source.encode(media_format) for path, source in audio.items()}
