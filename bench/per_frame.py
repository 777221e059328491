"""Benchmark: CPU cost of handling one inbound 20 ms media message, ours and the peers' way.

A real message stream: the μ-law of ``tests/data/jfk.flac`` (11 s, 550 frames) framed
exactly as Twilio sends it (``tools.twilio_sim.messages.TwilioMessages``: JSON text, base64
payload, string ``chunk``/``timestamp``/``sequenceNumber``). Each message is timed on its own
(``time.perf_counter_ns``); every implementation runs the same passes over the stream, interleaved
in the same run, with fresh per-call state each pass. Printed: markdown tables of the median, p95
and mean µs per message.

* **ours**: what ``runtime/call_worker.py`` does per media message, less the socket read and the
  recognition job: ``core.protocol.parse_message``, the stream SID check, the recording add
  (``audio.recording.CallRecorder.add``, what ``CallKeeper.add_audio`` calls; the file writes happen
  every second in a worker thread and are not counted), ``CallSession.receive_event`` (``FrameAssembler``
  μ-law → PCM16, the VAD of the ``VAD`` setting or ``--vad``, ``Endpointer``) and ``actions_to_perform()``.
  Also split by stage.
* **ours, the peers' work only**: ``parse_message``, the recording add, ``ulaw_to_pcm16`` and the VAD,
  without framing, endpointing and turn logic: the work the peer rows do, like for like.
* **ours with plainer parsing** (``--parser-variants``): the **ours** path again with
  ``core.protocol``'s two fast paths swapped for plain code, alone and together: ``json.loads``
  instead of ``_loads`` (``raw_decode``), and ``Media(...)`` instead of ``object.__new__`` plus a
  ``__dict__`` update; to see whether each still pays for its code.
* **pipecat** (``pipecat-ai``): ``TwilioFrameSerializer.deserialize`` awaited in one running event
  loop (as a pipecat transport calls it), then the same WebRTC VAD on 20 ms frames and a bytearray
  append of the frame's PCM (what ``AudioBufferProcessor`` does), at 8 kHz (no resampling) and at
  pipecat's default pipeline input rate, 16 kHz (its soxr VHQ stream resampler). The serializer's
  own work is also timed without an event loop, next to the bare cost of a coroutine.
* **pipecat full**: the same ``deserialize`` and append, but the VAD done pipecat's own way:
  ``VADController.process_frame`` (what ``LLMUserAggregator`` calls on every ``InputAudioRawFrame``)
  over a ``SileroVADAnalyzer()`` with default ``VADParams`` (as pipecat's Twilio examples):
  ``analyze_audio`` hands the frame to the analyzer's one-thread executor, which buffers it, runs the
  Silero ONNX model on each full window (256 samples at 8 kHz, 512 at 16 kHz), the BS.1770 volume of
  the last 400 ms and the QUIET/STARTING/SPEAKING/STOPPING state machine; the controller turns
  state changes into speech events. At 8 kHz (the rate of pipecat's Twilio examples) and 16 kHz
  (its default). The analyzer is also timed without the executor, split into model, volume and
  the rest. pipecat-ai 1.14.0 has no WebRTC VAD analyzer (``pipecat.audio.vad`` holds Silero and
  the commercial Krisp VIVA and ai-coustics Quail ones).
* **twilio-phone-calls 2.1**: ``json.loads``, its pydantic ``StreamMediaMessage.model_validate`` and
  its ``twilio_mulaw_str__to__np_pcm_wav`` (base64 + ``audioop.ulaw2lin`` to 8-bit PCM), widened to
  PCM16 for the same WebRTC VAD, and the same bytearray append. Its package ``__init__`` imports
  torch, whisper and coqui-tts for features not measured here, so only the modules of this code
  path are loaded (``twilio_pydantic`` and ``audio.audio_conversions``), without that ``__init__``.

Setup (a separate venv: the peers pin soundfile 0.13 / soxr 1.0, which conflict with
requirements.txt; twilio-phone-calls pins torch, an old twilio and pytest, hence ``--no-deps``)::

    python3 -m venv .bench-venv
    .bench-venv/bin/pip install -r bench/peers-requirements.txt
    .bench-venv/bin/pip install --no-deps twilio-phone-calls==2.1
    .bench-venv/bin/python bench/per_frame.py [--passes 20] [--audio tests/data/jfk.flac] [--parser-variants]
                                              [--vad hybrid|webrtc|silero]

Any interpreter with our requirements runs it too; a peer that is not installed is reported as
missing and ours is still measured.
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import dataclasses
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from time import perf_counter_ns

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import webrtcvad  # noqa: E402

from audio.codec import ulaw_to_pcm16  # noqa: E402
from audio.endpointing import EndpointingConfig  # noqa: E402
from audio.recording import CallRecorder  # noqa: E402
from audio.hybrid_vad import HybridVad  # noqa: E402
from audio.silero_vad import SileroVad  # noqa: E402
from audio.vad import WebRtcVad  # noqa: E402
from audio.constants import FRAME_MS, MULAW_SAMPLE_RATE  # noqa: E402
from core import protocol  # noqa: E402
from core.session import CallSession, SessionConfig, Transcribe  # noqa: E402
from core.settings import Settings, load_settings  # noqa: E402
from tools.twilio_sim.audio_files import load_audio_ulaw  # noqa: E402
from tools.twilio_sim.frames import split_frames  # noqa: E402
from tools.twilio_sim.messages import TwilioMessages  # noqa: E402

SAMPLE_RATE = MULAW_SAMPLE_RATE
TARGET_US = 20.0
DEFAULT_AUDIO = REPO / "tests" / "data" / "jfk.flac"


# --- the message stream ------------------------------------------------------------------


def build_stream(audio_path: Path) -> tuple[TwilioMessages, str, list[str]]:
    """Twilio's ``start`` and one ``media`` message per 20 ms of ``audio_path`` (μ-law 8 kHz)."""
    ulaw = load_audio_ulaw(str(audio_path))
    messages = TwilioMessages("MZ" + "1" * 32, "AC" + "2" * 32, "CA" + "3" * 32)
    start = messages.start({"From": "+15550100", "To": "+15550199"})
    return messages, start, [messages.media(frame) for frame in split_frames(ulaw)]


# EndpointingConfig field -> Settings attribute, as ``runtime.services.Services.session_config`` maps them
# (that module imports the speech engines, which the benchmark venv does not have).
_ENDPOINTING_SETTINGS = {
    "start_ms": "speech_start_ms",
    "stop_ms": "endpoint_silence_ms",
    "pre_roll_ms": "pre_roll_ms",
    "max_utterance_ms": "max_utterance_ms",
    "pause_ms": "speculation_pause_ms",
}


def session_config(settings: Settings) -> SessionConfig:
    """The server's per-call settings at their defaults (as ``Services.session_config``), no greeting."""
    fields = {field.name for field in dataclasses.fields(EndpointingConfig)}
    endpointing = {name: getattr(settings, key) for name, key in _ENDPOINTING_SETTINGS.items() if name in fields and hasattr(settings, key)}
    return SessionConfig(
        endpointing=EndpointingConfig(**endpointing),
        greeting="",  # a greeting would stay pending (nothing synthesizes here)
        max_call_ms=settings.max_call_duration_s * 1000,
        idle_nudge_ms=settings.idle_nudge_s * 1000,
        idle_hangup_ms=settings.idle_hangup_s * 1000,
    )


# --- ours --------------------------------------------------------------------------------


class Ours:
    """Our inbound path, as ``CallWorker._read_loop`` runs it for a media message."""

    name = "ours"

    def __init__(self, start_text: str, messages: list[str], workdir: Path, vad: str | None = None) -> None:
        self.settings = load_settings({"VAD": vad} if vad else {})
        self.config = session_config(self.settings)
        self.start_text = start_text
        self.messages = messages
        self.workdir = workdir
        self.passes = 0
        self.utterances = 0

    def _new_call(self, is_speech=None):
        self.passes += 1
        session = CallSession(self.config, is_speech or self._new_vad().is_speech)
        recorder = CallRecorder(self.workdir / f"call{self.passes}")
        session.receive_event(protocol.parse_message(self.start_text))
        session.actions_to_perform()
        return session, recorder

    def _new_vad(self) -> WebRtcVad | HybridVad | SileroVad:
        """The VAD a call gets (``VAD``, as ``runtime.call_worker`` makes it)."""
        if self.settings.vad == "hybrid":
            return HybridVad(mode=self.settings.vad_mode, sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)
        if self.settings.vad == "silero":
            return SileroVad(sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)
        return WebRtcVad(mode=self.settings.vad_mode, sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)

    def run(self, times: list[int]) -> None:
        """One pass; appends each message's ns to ``times``."""
        session, recorder = self._new_call()
        parse, Media, tracks, stream_sid = protocol.parse_message, protocol.Media, session.start.tracks, session.stream_sid
        transcribes = 0
        for text in self.messages:
            t0 = perf_counter_ns()
            if isinstance(text, bytes):
                continue
            event = parse(text)
            sid = getattr(event, "stream_sid", None)
            if sid is not None and sid != stream_sid:
                continue
            if isinstance(event, Media) and event.track in tracks:
                recorder.add(event.track, event.timestamp_ms, event.payload)
            session.receive_event(event)
            actions = session.actions_to_perform()
            times.append(perf_counter_ns() - t0)
            transcribes += sum(type(action) is Transcribe for action in actions)
        recorder.close()  # file I/O: in a worker thread in the server, not timed
        self.utterances = transcribes

    def run_peers_work(self, times: list[int]) -> None:
        """One pass of only the work the peers do: parse, record, decode, VAD (no framing, endpointing, turns)."""
        session, recorder = self._new_call()  # the session only supplies start.tracks here
        parse, Media, tracks = protocol.parse_message, protocol.Media, session.start.tracks
        is_speech = self._new_vad().is_speech
        for text in self.messages:
            t0 = perf_counter_ns()
            event = parse(text)
            if isinstance(event, Media) and event.track in tracks:
                recorder.add(event.track, event.timestamp_ms, event.payload)
                is_speech(ulaw_to_pcm16(event.payload))
            times.append(perf_counter_ns() - t0)
        recorder.close()

    def run_staged(self, stages: dict[str, list[int]]) -> None:
        """One pass timing each message's stages separately.

        Inside ``receive_event``, the frame assembler's ``push`` (μ-law decode + framing) and the VAD
        are timed by wrappers; the rest is the endpointer and the session's turn logic (and the
        wrappers' own overhead, about 0.1 µs).
        """
        vad = self._new_vad().is_speech
        vad_ns = [0]

        def timed_vad(frame: bytes) -> bool:
            t0 = perf_counter_ns()
            voiced = vad(frame)
            vad_ns[0] += perf_counter_ns() - t0
            return voiced

        session, recorder = self._new_call(timed_vad)
        assembler = getattr(session, "_frames", None)  # private: the finer split is skipped if it moves
        push_ns = [0]
        if assembler is not None and hasattr(assembler, "push"):
            push = assembler.push

            def timed_push(ulaw: bytes, timestamp_ms: int):
                t0 = perf_counter_ns()
                frames = push(ulaw, timestamp_ms)
                push_ns[0] += perf_counter_ns() - t0
                return frames

            assembler.push = timed_push
        parse, Media, tracks, stream_sid = protocol.parse_message, protocol.Media, session.start.tracks, session.stream_sid
        for text in self.messages:
            vad_ns[0] = push_ns[0] = 0
            t0 = perf_counter_ns()
            event = parse(text)
            sid = getattr(event, "stream_sid", None)
            if sid is not None and sid != stream_sid:
                continue
            t1 = perf_counter_ns()
            if isinstance(event, Media) and event.track in tracks:
                recorder.add(event.track, event.timestamp_ms, event.payload)
            t2 = perf_counter_ns()
            session.receive_event(event)
            session.actions_to_perform()
            t3 = perf_counter_ns()
            stages["parse"].append(t1 - t0)
            stages["record"].append(t2 - t1)
            stages["session"].append(t3 - t2)
            stages["framing"].append(push_ns[0])
            stages["vad"].append(vad_ns[0])
            stages["endpointing"].append(t3 - t2 - push_ns[0] - vad_ns[0])
        recorder.close()


# --- pipecat ------------------------------------------------------------------------------


def load_pipecat():
    """Import pipecat's Twilio serializer, or return the reason it is unavailable."""
    if importlib.util.find_spec("pipecat") is None:
        return None, "pipecat-ai is not installed"
    try:
        from loguru import logger

        logger.remove()  # pipecat logs a banner at import; keep warnings
        logger.add(sys.stderr, level="WARNING")
        from pipecat.processors.frame_processor import FrameProcessorSetup
        from pipecat.serializers.twilio import TwilioFrameSerializer
    except Exception as exc:  # ImportError, or a broken install
        return None, f"{type(exc).__name__}: {exc}"
    return (TwilioFrameSerializer, FrameProcessorSetup), None


class Pipecat:
    """``TwilioFrameSerializer.deserialize`` + WebRTC VAD + bytearray recording, pipecat's way."""

    def __init__(self, classes, start_text: str, messages: list[str], sample_rate: int, vad_mode: int) -> None:
        self.serializer_class, self.setup_class = classes
        self.start_text = start_text
        self.messages = messages
        self.sample_rate = sample_rate
        self.vad_mode = vad_mode
        self.frame_bytes = sample_rate * FRAME_MS // 1000 * 2
        self.loop = asyncio.new_event_loop()

    def _serializer(self):
        params = self.serializer_class.InputParams(auto_hang_up=False)
        serializer = self.serializer_class(stream_sid="MZ" + "1" * 32, params=params)
        # setup() reads only audio_in_sample_rate (the pipeline's input rate).
        setup = self.setup_class(clock=None, task_manager=None, pipeline_worker=None, audio_in_sample_rate=self.sample_rate)
        self.loop.run_until_complete(serializer.setup(setup))
        self.loop.run_until_complete(serializer.deserialize(self.start_text))
        return serializer

    def run(self, times: list[int]) -> None:
        """One pass of the full inbound work, every message awaited in one running event loop."""
        self.loop.run_until_complete(self._run(self._serializer(), times))

    async def _run(self, serializer, times: list[int]) -> None:
        vad = webrtcvad.Vad(self.vad_mode)
        rate, frame_bytes = self.sample_rate, self.frame_bytes
        pending = bytearray()  # re-framing for the VAD: at 16 kHz the resampler returns ~95 ms blocks
        recording = bytearray()
        for text in self.messages:
            t0 = perf_counter_ns()
            frame = await serializer.deserialize(text)
            if frame is not None:
                audio = frame.audio
                recording.extend(audio)
                pending.extend(audio)
                while len(pending) >= frame_bytes:
                    vad.is_speech(bytes(pending[:frame_bytes]), rate)
                    del pending[:frame_bytes]
            times.append(perf_counter_ns() - t0)

    def run_deserialize(self, times: list[int]) -> None:
        """One pass of ``deserialize`` alone, awaited in one running event loop."""
        self.loop.run_until_complete(self._run_deserialize(self._serializer(), times))

    async def _run_deserialize(self, serializer, times: list[int]) -> None:
        deserialize = serializer.deserialize
        for text in self.messages:
            t0 = perf_counter_ns()
            await deserialize(text)
            times.append(perf_counter_ns() - t0)

    def run_without_loop(self, times: list[int]) -> None:
        """One pass of ``deserialize`` driven by ``coroutine.send(None)``: the serializer's own work.

        Its awaits (the resampler) never suspend, so the coroutine finishes on the first send.
        """
        deserialize = self._serializer().deserialize
        for text in self.messages:
            t0 = perf_counter_ns()
            coroutine = deserialize(text)
            try:
                coroutine.send(None)
            except StopIteration:
                pass
            times.append(perf_counter_ns() - t0)

    def close(self) -> None:
        self.loop.close()


def load_pipecat_vad():
    """Import pipecat's ``SileroVADAnalyzer`` and ``VADController``, or return the reason they are unavailable.

    The Silero model ships in the pipecat-ai wheel (``pipecat/audio/vad/data/silero_vad.onnx``) and
    runs on onnxruntime, a pipecat-ai requirement: nothing is downloaded.
    """
    if importlib.util.find_spec("pipecat") is None:
        return None, "pipecat-ai is not installed"
    try:
        from pipecat.audio.vad.silero import SileroVADAnalyzer
        from pipecat.audio.vad.vad_analyzer import VADState
        from pipecat.audio.vad.vad_controller import VADController
    except Exception as exc:  # ImportError (onnxruntime missing), or a broken install
        return None, f"{type(exc).__name__}: {exc}"
    return (SileroVADAnalyzer, VADController, VADState), None


class PipecatFull:
    """``deserialize`` + pipecat's own VAD (``VADController`` over ``SileroVADAnalyzer``) + recording.

    ``pipecat`` provides the serializer, its event loop and the pipeline sample rate.
    """

    def __init__(self, pipecat: Pipecat, vad_classes) -> None:
        self.pipecat = pipecat
        self.analyzer_class, self.controller_class, self.state_class = vad_classes
        self.loop = pipecat.loop
        self.speech_starts = 0  # on_speech_started events in the last full pass (a sanity check)
        self._frames: list[bytes] | None = None

    def _analyzer(self):
        """A fresh analyzer as the examples build it: ``SileroVADAnalyzer()``, default ``VADParams``."""
        analyzer = self.analyzer_class()
        analyzer.set_sample_rate(self.pipecat.sample_rate)  # what VADController.setup does
        return analyzer

    async def _controller(self):
        controller = self.controller_class(self.analyzer_class())
        setup = self.pipecat.setup_class(
            clock=None, task_manager=None, pipeline_worker=None, audio_in_sample_rate=self.pipecat.sample_rate
        )
        await controller.setup(setup)  # sets the analyzer's sample rate; start() (idle timer) is not needed

        async def count_start(_controller):
            self.speech_starts += 1

        controller.add_event_handler("on_speech_started", count_start)
        return controller

    def run(self, times: list[int]) -> None:
        """One pass: every message deserialized, recorded and given to the VAD controller, in one loop."""
        serializer = self.pipecat._serializer()
        self.speech_starts = 0
        controller = self.loop.run_until_complete(self._controller())
        try:
            self.loop.run_until_complete(self._run(serializer, controller, times))
        finally:
            self.loop.run_until_complete(controller.cleanup())  # shuts the analyzer's executor down

    async def _run(self, serializer, controller, times: list[int]) -> None:
        deserialize, process = serializer.deserialize, controller.process_frame
        recording = bytearray()
        for text in self.messages:
            t0 = perf_counter_ns()
            frame = await deserialize(text)
            if frame is not None:  # None: not media, or the resampler returned nothing yet
                recording.extend(frame.audio)
                await process(frame)
            times.append(perf_counter_ns() - t0)

    @property
    def messages(self) -> list[str]:
        return self.pipecat.messages

    def frames(self) -> list[bytes]:
        """The PCM of every deserialized media message (decoded once, outside the timings)."""
        if self._frames is None:
            serializer = self.pipecat._serializer()
            frames = [self.loop.run_until_complete(serializer.deserialize(text)) for text in self.messages]
            self._frames = [frame.audio for frame in frames if frame is not None]
        return self._frames

    def run_analyzer(self, times: list[int]) -> None:
        """One pass of ``SileroVADAnalyzer._run_analyzer`` per message's PCM, in this thread (no executor)."""
        analyzer = self._analyzer()
        analyze = analyzer._run_analyzer
        for audio in self.frames():
            t0 = perf_counter_ns()
            analyze(audio)
            times.append(perf_counter_ns() - t0)
        self.loop.run_until_complete(analyzer.cleanup())

    def run_analyzer_staged(self, stages: dict[str, list[int]]) -> None:
        """One instrumented pass of ``_run_analyzer``: per message, ns in the Silero model
        (``voice_confidence``), in the volume (``_get_smoothed_volume``) and in the rest."""
        analyzer = self._analyzer()
        spent = {"model": 0, "volume": 0}

        def timed(name, function):
            def wrapper(*args):
                t0 = perf_counter_ns()
                result = function(*args)
                spent[name] += perf_counter_ns() - t0
                return result
            return wrapper

        analyzer.voice_confidence = timed("model", analyzer.voice_confidence)
        analyzer._get_smoothed_volume = timed("volume", analyzer._get_smoothed_volume)
        analyze = analyzer._run_analyzer
        for audio in self.frames():
            spent["model"] = spent["volume"] = 0
            t0 = perf_counter_ns()
            analyze(audio)
            total = perf_counter_ns() - t0
            stages["model"].append(spent["model"])
            stages["volume"].append(spent["volume"])
            stages["state"].append(total - spent["model"] - spent["volume"])
        self.loop.run_until_complete(analyzer.cleanup())

    def run_executor_hop(self, times: list[int]) -> None:
        """One pass of what ``analyze_audio`` adds around the analyzer: ``await run_in_executor`` of
        a no-op on a one-thread pool, from the running loop."""
        self.loop.run_until_complete(self._run_executor_hop(times))

    async def _run_executor_hop(self, times: list[int]) -> None:
        loop = asyncio.get_running_loop()
        executor = ThreadPoolExecutor(max_workers=1)
        try:
            for audio in self.frames():
                t0 = perf_counter_ns()
                await loop.run_in_executor(executor, len, audio)
                times.append(perf_counter_ns() - t0)
        finally:
            executor.shutdown()


async def _identity(value):
    return value


def run_bare_coroutine(messages: list[str], times: list[int]) -> None:
    """One pass creating and finishing an empty coroutine per message: what ``async`` costs by itself."""
    for text in messages:
        t0 = perf_counter_ns()
        coroutine = _identity(text)
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        times.append(perf_counter_ns() - t0)


# --- twilio-phone-calls -----------------------------------------------------------------------


def load_twilio_phone_calls():
    """Load twilio-phone-calls' pydantic models and audio conversions without its package ``__init__``.

    Returns ``((StreamMediaMessage, twilio_mulaw_str__to__np_pcm_wav, AudioSampleBuffer), None)`` or
    ``(None, reason)``.
    """
    try:
        spec = importlib.util.find_spec("twilio_phone_calls")
        if spec is None or not spec.submodule_search_locations:
            return None, "twilio-phone-calls is not installed"
        root = Path(list(spec.submodule_search_locations)[0])
        for name, folder in (("twilio_phone_calls", root), ("twilio_phone_calls.audio", root / "audio")):
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = [str(folder)]
                sys.modules[name] = package
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # audioop
            warnings.filterwarnings("ignore", "Couldn't find ffmpeg", RuntimeWarning)  # pydub, not used here
            models = importlib.import_module("twilio_phone_calls.twilio_pydantic")
            conversions = importlib.import_module("twilio_phone_calls.audio.audio_conversions")
            buffers = importlib.import_module("twilio_phone_calls.audio.audio_sample_buffer")
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return (models.StreamMediaMessage, conversions.twilio_mulaw_str__to__np_pcm_wav, buffers.AudioSampleBuffer), None


class TwilioPhoneCalls:
    """twilio-phone-calls 2.1's media message handling + WebRTC VAD + bytearray recording."""

    def __init__(self, functions, messages: list[str], vad_mode: int) -> None:
        self.model, self.to_pcm, self.buffer_class = functions
        self.messages = messages
        self.vad_mode = vad_mode

    def run(self, times: list[int]) -> None:
        """One pass: parse, validate, convert, widen to PCM16 for the VAD, VAD, record."""
        import numpy as np

        loads, validate, to_pcm, int16 = json.loads, self.model.model_validate, self.to_pcm, np.int16
        vad = webrtcvad.Vad(self.vad_mode)
        recording = bytearray()
        for text in self.messages:
            t0 = perf_counter_ns()
            message = loads(text)
            if message["event"] == "media":
                media = validate(message)
                pcm8 = to_pcm(media.media.payload)  # int8 samples (audioop.ulaw2lin width 1)
                recording.extend(pcm8)
                pcm16 = (pcm8.astype(int16) << 8).tobytes()  # WebRTC VAD needs 16-bit PCM
                vad.is_speech(pcm16, SAMPLE_RATE)
            times.append(perf_counter_ns() - t0)

    def run_conversion(self, times: list[int]) -> None:
        """One pass of the package's own work: json.loads, model_validate, the conversion function."""
        loads, validate, to_pcm = json.loads, self.model.model_validate, self.to_pcm
        for text in self.messages:
            t0 = perf_counter_ns()
            message = loads(text)
            if message["event"] == "media":
                to_pcm(validate(message).media.payload)
            times.append(perf_counter_ns() - t0)

    def run_own_buffer(self, times: list[int]) -> None:
        """One pass of what ``TwilioPhoneCall._receive_media_message`` does (its own pause detection
        on a growing buffer instead of a VAD), minus the sends."""
        loads, validate, to_pcm = json.loads, self.model.model_validate, self.to_pcm
        buffer = self.buffer_class()
        for text in self.messages:
            t0 = perf_counter_ns()
            message = loads(text)
            if message["event"] == "media":
                chunk = to_pcm(validate(message).media.payload)
                had_started = buffer.check_has_started()
                buffer.append(chunk)
                _just_started = (not had_started) and buffer.check_has_started()
                if buffer.check_has_finished():
                    buffer.crop_audio()
                    buffer = self.buffer_class()
            times.append(perf_counter_ns() - t0)


# --- parser fast paths ----------------------------------------------------------------------------


def _parse_media_plain(message: dict) -> protocol.Media:
    """``core.protocol._parse_media``'s fast path with a plain ``Media(...)``; other shapes go to it."""
    media = message.get("media")
    if type(media) is dict:
        get = media.get
        payload_b64, timestamp, chunk, track = get("payload"), get("timestamp"), get("chunk"), get("track")
        stream_sid, sequence = message.get("streamSid"), message.get("sequenceNumber")
        if (type(payload_b64) is str and type(timestamp) is str and type(chunk) is str and type(track) is str
                and type(stream_sid) is str and type(sequence) is str):
            try:
                timestamp_ms, chunk_number, sequence_number = int(timestamp), int(chunk), int(sequence)
                payload = binascii.a2b_base64(payload_b64, strict_mode=True)
            except ValueError:
                pass
            else:
                if timestamp_ms >= 0:
                    return protocol.Media(
                        stream_sid=stream_sid, track=track or "inbound", chunk=chunk_number,
                        timestamp_ms=timestamp_ms, payload=payload, sequence_number=sequence_number,
                    )
    return protocol._parse_media(message)


_PARSER_TODAY = (protocol._loads, protocol._parse_media)
PARSER_VARIANTS = {
    "ours, `json.loads` for `raw_decode`": (json.loads, protocol._parse_media),
    "ours, `Media(...)` for `object.__new__`": (protocol._loads, _parse_media_plain),
    "ours, both plain": (json.loads, _parse_media_plain),
}


def with_parser(variant: tuple, run):
    """``run`` (a pass function) with ``core.protocol``'s JSON decoder and media parser swapped for ``variant``."""

    def run_with(times: list[int]) -> None:
        protocol._loads, protocol._PARSERS["media"] = variant
        try:
            run(times)
        finally:
            protocol._loads, protocol._PARSERS["media"] = _PARSER_TODAY

    return run_with


# --- statistics and report -----------------------------------------------------------------------


def summarize(times_ns: list[int]) -> tuple[float, float, float]:
    """(median, p95, mean) in µs."""
    ordered = sorted(times_ns)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered) / 1000, p95 / 1000, statistics.fmean(ordered) / 1000


def timer_overhead_ns(samples: int = 20000) -> float:
    """Median ns between two back-to-back ``perf_counter_ns`` calls (included in every figure)."""
    deltas = []
    for _ in range(samples):
        t0 = perf_counter_ns()
        deltas.append(perf_counter_ns() - t0)
    return statistics.median(deltas)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_table() -> list[str]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    rows = [
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} ({usable} usable by this process)"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})"),
        ("OS", platform.platform()),
    ]
    for package in ("numpy", "webrtcvad-wheels", "soxr", "pipecat-ai", "onnxruntime", "loudness", "twilio-phone-calls", "pydantic"):
        rows.append((package, version(package)))
    lines = ["| machine | |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return lines


def result_table(rows: list[tuple[str, str, list[int]]], reference_us: float | None) -> list[str]:
    lines = [
        "| path | work per 20 ms message | median µs | p95 µs | mean µs | median vs ours |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, work, times in rows:
        median, p95, mean = summarize(times)
        ratio = f"{median / reference_us:.1f}×" if reference_us else "–"
        lines.append(f"| {name} | {work} | {median:.1f} | {p95:.1f} | {mean:.1f} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=20, help="passes over the message stream per path (default 20)")
    parser.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="speech file (default tests/data/jfk.flac)")
    parser.add_argument("--parser-variants", action="store_true", help="also time ours with core.protocol's fast paths swapped for plain code")
    parser.add_argument("--vad", choices=("hybrid", "webrtc", "silero"), help="ours with this VAD setting (default: the settings' default)")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")

    _, start_text, messages = build_stream(args.audio)
    pipecat_classes, pipecat_missing = load_pipecat()
    pipecat_vad_classes, pipecat_vad_missing = load_pipecat_vad() if pipecat_classes else (None, None)
    tpc_functions, tpc_missing = load_twilio_phone_calls()
    vad_mode = load_settings({}).vad_mode

    with tempfile.TemporaryDirectory(prefix="per_frame_") as tmp:
        ours = Ours(start_text, messages, Path(tmp), args.vad)
        # name -> (description, pass function); every pass function appends ns per message.
        paths: dict[str, tuple[str, object]] = {}
        stage: dict[str, list[int]] = {name: [] for name in ("parse", "record", "session", "framing", "vad", "endpointing")}
        paths["ours"] = ("parse + recording add + decode, VAD, endpointing", ours.run)
        paths["ours, the peers' work only"] = ("parse + recording add + decode + VAD (no framing, endpointing, turns)", ours.run_peers_work)
        pipecat_8k = pipecat_16k = None
        full_8k = full_16k = None
        if pipecat_classes:
            pipecat_8k = Pipecat(pipecat_classes, start_text, messages, 8000, vad_mode)
            pipecat_16k = Pipecat(pipecat_classes, start_text, messages, 16000, vad_mode)
            paths["pipecat, 8 kHz pipeline"] = ("`await deserialize` + VAD + PCM append", pipecat_8k.run)
            paths["pipecat, 16 kHz pipeline (its default)"] = ("same, deserialize resamples to 16 kHz (soxr VHQ)", pipecat_16k.run)
        if pipecat_vad_classes:
            full_8k = PipecatFull(pipecat_8k, pipecat_vad_classes)
            full_16k = PipecatFull(pipecat_16k, pipecat_vad_classes)
            paths["pipecat full, 8 kHz (its Twilio examples)"] = ("`await deserialize` + `SileroVADAnalyzer` state machine (via `VADController`, on its executor thread) + PCM append", full_8k.run)
            paths["pipecat full, 16 kHz (its default)"] = ("same, deserialize resamples to 16 kHz, Silero on 512-sample windows", full_16k.run)
        tpc = None
        if tpc_functions:
            tpc = TwilioPhoneCalls(tpc_functions, messages, vad_mode)
            paths["twilio-phone-calls 2.1"] = ("json + pydantic + its μ-law→PCM8 + PCM16 widen + VAD + append", tpc.run)
        details: dict[str, tuple[str, object]] = {}
        if pipecat_8k:
            details["pipecat serializer, 8 kHz"] = ("`await deserialize` alone, one event loop", pipecat_8k.run_deserialize)
            details["pipecat serializer, 8 kHz, no loop"] = ("deserialize coroutine driven by `send(None)`", pipecat_8k.run_without_loop)
            details["pipecat serializer, 16 kHz"] = ("`await deserialize` alone (with resampling)", pipecat_16k.run_deserialize)
            details["an empty coroutine"] = ("create + `send(None)` of `async def f(x): return x`", lambda t: run_bare_coroutine(messages, t))
        if full_8k:
            details["pipecat Silero analyzer, 8 kHz, no executor"] = ("`SileroVADAnalyzer._run_analyzer` on the message's PCM, in the caller's thread", full_8k.run_analyzer)
            details["pipecat executor hop"] = ("`await run_in_executor` of a no-op on a 1-thread pool (what `analyze_audio` adds)", full_8k.run_executor_hop)
        if tpc:
            details["twilio-phone-calls conversion"] = ("json + `model_validate` + `twilio_mulaw_str__to__np_pcm_wav`", tpc.run_conversion)
            details["twilio-phone-calls own buffer"] = ("conversion + its `AudioSampleBuffer` pause detection (grows per utterance)", tpc.run_own_buffer)

        parsers: dict[str, tuple[str, object]] = {}
        if args.parser_variants:
            parsers["ours"] = paths["ours"]
            for name, variant in PARSER_VARIANTS.items():
                parsers[name] = ("the ours path, parsed with plainer code", with_parser(variant, ours.run))
        everything = {**paths, **details, **parsers}
        times: dict[str, list[int]] = {name: [] for name in everything}
        for name, (_, run) in everything.items():  # warm-up pass, not counted
            run([])
        ours.run_staged({name: [] for name in stage})
        vad_stage: dict[str, list[int]] = {name: [] for name in ("model", "volume", "state")}
        if full_8k:
            full_8k.run_analyzer_staged({name: [] for name in vad_stage})
        for _ in range(args.passes):
            for name, (_, run) in everything.items():
                gc.collect()
                run(times[name])
            gc.collect()
            ours.run_staged(stage)
            if full_8k:
                gc.collect()
                full_8k.run_analyzer_staged(vad_stage)
        for path in (pipecat_8k, pipecat_16k):
            if path:
                path.close()

    overhead = timer_overhead_ns()
    ours_median = summarize(times["ours"])[0]
    print(f"## Per-frame cost of inbound media ({len(messages)} media messages of {args.audio.name} × {args.passes} passes)\n")
    print("\n".join(machine_table()))
    print()
    for name, reason in (("pipecat-ai", pipecat_missing), ("pipecat-ai's Silero VAD", pipecat_vad_missing), ("twilio-phone-calls", tpc_missing)):
        if reason:
            print(f"**{name} missing: not measured** ({reason}). Install it in a separate venv: see this script's docstring.\n")
    print("\n".join(result_table([(name, work, times[name]) for name, (work, _) in paths.items()], ours_median)))
    print()
    print("### Ours by stage\n")
    staged = [
        ("parse", "`parse_message` (JSON, base64, fields) + stream SID check", stage["parse"]),
        ("recording add", "`CallRecorder.add` (queue the μ-law; written every 1 s in a thread)", stage["record"]),
        ("decode + VAD + endpointing", "`CallSession.receive_event` + `actions_to_perform`", stage["session"]),
    ]
    if any(stage["framing"]):
        staged += [
            ("… of which decode + framing", "`FrameAssembler.push`: μ-law → PCM16, 20 ms frames on the media clock", stage["framing"]),
            ("… of which VAD", "the VAD's `is_speech` on the frame (`VAD`, `--vad`)", stage["vad"]),
            ("… of which endpointing + turns", "the rest: `Endpointer.push`, the session's turn logic, actions", stage["endpointing"]),
        ]
    print("\n".join(result_table(staged, ours_median)))
    if details:
        print()
        print("### Peers' parts\n")
        peer_rows = []
        for name, (work, _) in details.items():
            peer_rows.append((name, work, times[name]))
            if name == "pipecat Silero analyzer, 8 kHz, no executor":
                peer_rows += [
                    ("… of which Silero model", "`voice_confidence`: ONNX on each full 256-sample window (5 messages in 8)", vad_stage["model"]),
                    ("… of which volume", "`_get_smoothed_volume`: BS.1770 loudness of the last 400 ms, per window", vad_stage["volume"]),
                    ("… of which buffering + state machine", "the rest of `_run_analyzer`", vad_stage["state"]),
                ]
        print("\n".join(result_table(peer_rows, ours_median)))
    if parsers:
        print()
        print("### Parser fast paths\n")
        print("\n".join(result_table([(name, work, times[name]) for name, (work, _) in parsers.items()], ours_median)))
    print()
    print(f"Each figure includes one `perf_counter_ns` pair ({overhead:.0f} ns median here). "
          f"Recognition jobs ours started per pass (utterances and speculative pauses; not run, not timed): {ours.utterances}.", end="")
    if full_8k:
        print(f" Speech starts pipecat's `SileroVADAnalyzer` reported per pass: {full_8k.speech_starts} at 8 kHz, "
              f"{full_16k.speech_starts} at 16 kHz.", end="")
    print()
    verdicts = [f"ours median {ours_median:.1f} µs per frame: {'within' if ours_median <= TARGET_US else 'OVER'} the {TARGET_US:.0f} µs target"]
    for name in paths:
        if not name.startswith("ours"):
            peer = summarize(times[name])[0]
            verdicts.append(f"{'faster' if ours_median < peer else 'NOT faster'} than {name} ({peer:.1f} µs)")
    print("\n" + "; ".join(verdicts) + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
