"""Frame-level voice activity detection with Silero VAD (the model faster-whisper ships).

Model facts (Silero VAD, https://github.com/snakers4/silero-vad, v6; and how faster-whisper
1.2 runs it in ``faster_whisper/vad.py``): the ONNX file ``faster_whisper/assets/silero_vad_v6.onnx``
is a 16 kHz-only export. Its inputs are ``input`` float32 ``[windows, 576]`` — a 512-sample
window (32 ms at 16 kHz) preceded by the last 64 samples of the previous window (zeros before
the first) — and the recurrent state ``h`` and ``c`` float32 ``[1, 1, 128]``; its outputs are
``speech_probs`` (one speech probability in [0, 1] per window) and the next ``hn``, ``cn``.
Unlike the upstream export it has no ``sr`` input and refuses 256 + 32 samples, so 8 kHz audio
(the phone line) is upsampled to 16 kHz here (soxr, ``audio.resample.StreamResampler``, "QQ"
quality: 0.25 ms of delay; the phone band is under 4 kHz anyway). The upstream threshold rule is
kept: speech from a probability of 0.5 on, and it lasts until one falls under 0.35
(``threshold - 0.15``, ``neg_threshold`` in faster-whisper's ``VadOptions``).

The 20 ms frames of the server are buffered into 32 ms windows, so the answer for a frame is the
decision of the last complete window (audio up to 32 ms old; at 8 kHz the upsampler holds back
another 0.25 ms); the first frame answers False.

Cost: one window per 32 ms of audio; see docs/benchmarks.md ("Silero VAD") for the time per
20 ms frame. The model (1.2 MB) is loaded once per process, with one intra-op and one inter-op
thread; the recurrent state lives in each :class:`SileroVad`, one per call.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from audio.constants import FRAME_MS, MULAW_SAMPLE_RATE, VAD_FRAME_MS
from audio.errors import AudioFormatError
from audio.resample import StreamResampler

MODEL_SAMPLE_RATE = 16000
WINDOW_SAMPLES = 512  # per model run, at MODEL_SAMPLE_RATE (32 ms)
CONTEXT_SAMPLES = 64  # of the previous window, prepended to each
STATE_SHAPE = (1, 1, 128)
SAMPLE_RATES = (8000, 16000)
THRESHOLD = 0.5
NEG_THRESHOLD = 0.35


def default_model_path() -> Path:
    """``silero_vad_v6.onnx`` in the installed faster-whisper package (found without importing it).

    Raises:
        FileNotFoundError: faster-whisper is not installed or has no such asset.
    """
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("faster-whisper is not installed: no Silero VAD model")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"no Silero VAD model at {path}")
    return path


@functools.lru_cache(maxsize=4)
def _session(model_path: str):
    """One onnxruntime session per model file and process; ``run`` is safe to call concurrently."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return onnxruntime.InferenceSession(model_path, providers=["CPUExecutionProvider"], sess_options=options)


def load_model(model_path: str | Path | None = None) -> None:
    """Load the model now (about 70 ms, once per process), not in the first call that needs it.

    Raises:
        FileNotFoundError: No model file.
    """
    _session(str(_model_file(model_path)))


def _model_file(model_path: str | Path | None) -> Path:
    """``model_path``, or the default; raises ``FileNotFoundError`` if it is not a file."""
    path = Path(model_path) if model_path is not None else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"no Silero VAD model at {path}")
    return path


class SileroVad:
    """Classify fixed-length PCM16 frames of one stream as speech or non-speech with Silero VAD.

    Keeps the model's recurrent state, the previous window's context and the partial window
    between frames: feed the frames of one stream in order and use one instance per stream.

    Args:
        sample_rate: Sample rate of the frames in Hz: 8000 (upsampled to 16 kHz for the
            model) or 16000.
        frame_ms: Frame duration in ms: 10, 20 or 30.
        threshold: Speech probability from which a window is speech.
        neg_threshold: Speech probability under which speech ends; between the two the
            previous decision holds. Must be at most ``threshold``.
        model_path: The ONNX model; default :func:`default_model_path`.

    Raises:
        AudioFormatError: ``sample_rate`` or ``frame_ms`` is not one of the values above.
        ValueError: The thresholds are not ``0 <= neg_threshold <= threshold <= 1``.
        FileNotFoundError: No model file.
    """

    def __init__(self, sample_rate: int = MULAW_SAMPLE_RATE, frame_ms: int = FRAME_MS,
                 threshold: float = THRESHOLD, neg_threshold: float = NEG_THRESHOLD,
                 model_path: str | Path | None = None) -> None:
        if sample_rate not in SAMPLE_RATES or isinstance(sample_rate, bool):
            raise AudioFormatError(f"sample_rate must be one of {SAMPLE_RATES} Hz, got {sample_rate!r}")
        if frame_ms not in VAD_FRAME_MS or isinstance(frame_ms, bool):
            raise AudioFormatError(f"frame_ms must be one of {VAD_FRAME_MS}, got {frame_ms!r}")
        if not 0 <= neg_threshold <= threshold <= 1:
            raise ValueError(f"need 0 <= neg_threshold <= threshold <= 1, got {neg_threshold}, {threshold}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.threshold = threshold
        self.neg_threshold = neg_threshold
        self._frame_bytes = sample_rate * frame_ms // 1000 * 2
        self._run = _session(str(_model_file(model_path))).run
        self._upsampler = (StreamResampler(sample_rate, MODEL_SAMPLE_RATE, dtype="float32", quality="QQ")
                           if sample_rate != MODEL_SAMPLE_RATE else None)
        self._h = np.zeros(STATE_SHAPE, np.float32)
        self._c = np.zeros(STATE_SHAPE, np.float32)
        # The model's input row: previous context, then the window being filled.
        self._row = np.zeros((1, CONTEXT_SAMPLES + WINDOW_SAMPLES), np.float32)
        self._filled = 0  # samples of the current window in self._row
        self._speech = False
        self.probability = 0.0
        """Speech probability of the last complete window (0.0 before the first)."""

    @property
    def frame_bytes(self) -> int:
        """Size of one frame in bytes (PCM16: 2 bytes per sample)."""
        return self._frame_bytes

    def is_speech(self, frame: bytes) -> bool:
        """Tell whether the stream is in speech as of this frame.

        Args:
            frame: Exactly one frame, ``frame_bytes`` bytes of PCM16 signed little-endian
                mono at ``sample_rate`` Hz.

        Returns:
            The decision of the last complete 32 ms window (False before the first).

        Raises:
            AudioFormatError: ``frame`` is not exactly ``frame_bytes`` long.
        """
        if len(frame) != self._frame_bytes:
            raise AudioFormatError(
                f"a {self.frame_ms} ms frame at {self.sample_rate} Hz is {self._frame_bytes} bytes, got {len(frame)}"
            )
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) * np.float32(1 / 32768)
        if self._upsampler is not None:
            samples = self._upsampler.process(samples)
        row = self._row
        while samples.size:
            take = min(WINDOW_SAMPLES - self._filled, samples.size)
            start = CONTEXT_SAMPLES + self._filled
            row[0, start:start + take] = samples[:take]
            samples = samples[take:]
            self._filled += take
            if self._filled == WINDOW_SAMPLES:
                self._decide()
        return self._speech

    def _decide(self) -> None:
        """Run the model on the full window, keep its state and the next context, apply the thresholds."""
        probabilities, self._h, self._c = self._run(None, {"input": self._row, "h": self._h, "c": self._c})
        self.probability = probability = float(probabilities.reshape(-1)[0])
        self._row[0, :CONTEXT_SAMPLES] = self._row[0, -CONTEXT_SAMPLES:]
        self._filled = 0
        if probability >= self.threshold:
            self._speech = True
        elif probability < self.neg_threshold:
            self._speech = False
