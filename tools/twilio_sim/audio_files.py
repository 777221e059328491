"""Audio files: the caller's script audio in (as Twilio media), what the caller heard out (as WAV)."""

from __future__ import annotations

from tools.twilio_sim.frames import SAMPLE_RATE
from tools.twilio_sim.repo import add_repo_root_to_sys_path
from tools.twilio_sim.script import ScriptItem, parse_script


def _import_repo_audio():
    """Import the repository's ``audio.codec`` and ``audio.resample`` modules (repo root on sys.path)."""
    add_repo_root_to_sys_path()
    from audio import codec, resample

    return codec, resample


def load_audio_ulaw(path: str) -> bytes:
    """Read an audio file and return it as Twilio media: G.711 μ-law, 8 kHz, mono.

    Channels are averaged; the rate is converted with soxr (``audio.resample``);
    encoding is ``audio.codec.array_to_ulaw``.

    Raises:
        soundfile.LibsndfileError / OSError: the file cannot be read.
    """
    import soundfile

    codec, resample = _import_repo_audio()
    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        mono = resample.resample(mono, sample_rate, SAMPLE_RATE)
    return codec.array_to_ulaw(mono)


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


def load_script(tokens: list[str], fork: bool = False) -> tuple[list[ScriptItem], dict[str, bytes]]:
    """Parse the script (``parse_script(tokens, fork)``) and decode its audio files (μ-law 8 kHz) before the call.

    Returns:
        (items, μ-law 8 kHz bytes keyed by ``ScriptItem.path``).

    Raises:
        ValueError: a bad item or an unreadable audio file.
    """
    items = parse_script(tokens, fork=fork)
    audio = {}
    for item in items:
        if item.kind == "audio" and item.path not in audio:
            try:
                audio[item.path] = load_audio_ulaw(item.path)
            except Exception as error:  # soundfile raises LibsndfileError/TypeError/RuntimeError, not only OSError
                raise ValueError(f"cannot read audio {item.path!r}: {error}") from None
            print(f"loaded {item.path}: {len(audio[item.path]) / SAMPLE_RATE:.2f} s at 8 kHz μ-law")
    return items, audio
