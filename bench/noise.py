"""Background noise on the caller's line: word error rate and false speech starts, with and without noise suppression.

Issue #14 part 4. The caller's line is built as callsim ``--noise`` builds it
(``tools.twilio_sim.noise.LineNoise``): real speech (``tests/data/jfk.flac``, ``sr_english.wav``)
μ-law encoded at 8 kHz, with ``LEAD_S`` of the caller waiting before it and ``TAIL_S`` after, and a
real noise recording (``tests/data/noise/``: street traffic, babble, music) looped under all of it
at 10 and 5 dB SNR to the speech's active level; then μ-law decoded, as the server receives it.
Each noise is started at ``--offsets`` different points of the recording.

That audio goes through the server's sans-I/O path without a server: an optional noise
suppressor on the 8 kHz PCM (where ``core.session``'s ``_on_media`` applies the echo canceller),
WebRTC VAD (``VAD_MODE``) and ``audio.endpointing.Endpointer`` with the settings' defaults (as
``runtime.services.session_config`` builds them), and each utterance it ends is transcribed by
the server's recognizer (``WhisperRecognizer``, faster-whisper tiny.en). Measured:

* WER through the endpointer: the utterances' texts joined, against the reference (``tools.wer``);
  errors over reference words, summed over files and offsets;
* WER of the recognizer alone: the whole clip (lead and tail included) transcribed at once;
* endpoints: in how many clips the endpointer ended the caller's utterance by itself (``ENDPOINT_SILENCE_MS``
  of non-speech; an utterance not cut at ``MAX_UTTERANCE_MS`` whose last voiced frame is at most 0.5 s
  before the speech's end) within the ``TAIL_S`` after the speech, rather than only at the end of the clip;
* false speech starts: ``--minutes`` of noise alone, at the level it has under jfk.flac at that
  SNR, through the same path: utterance starts per minute, those whose voiced span (first to
  last voiced frame) reaches ``BARGE_IN_MIN_MS``, i.e. that would stop the bot talking over them,
  and the share of the time spent inside an utterance (a noise the VAD takes for speech throughout
  gives one utterance per ``MAX_UTTERANCE_MS``);
* the VAD alone on each noise at absolute levels (RMS, dBFS, μ-law): the share of 20 ms frames it
  calls speech, to see where it stops hearing each noise.

Suppressors: none; WebRTC's noise suppressor in ``livekit``'s ``AudioProcessingModule`` (already a
dependency, for ``audio.echo``) at 8 kHz; ``webrtc-noise-gain`` (WebRTC NS, 16 kHz only: soxr up and
down around it) at level 2 (and 4 with ``--strong``), auto gain off. Both run causally in 10 ms blocks from the start
of the call, so they learn the noise during the lead-in as a server would during the greeting.
``webrtc-noise-gain`` is not a dependency: the benchmark skips it unless it is importable
(``pip install webrtc-noise-gain==1.3.0``).

Usage::

    python bench/noise.py [--offsets 3] [--minutes 1] [--snrs 10,5] [--strong]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from audio.codec import ulaw_to_pcm16  # noqa: E402
from audio.endpointing import Endpointer, EndpointingConfig, SpeechStarted, UtteranceEnded  # noqa: E402
from audio.resample import resample  # noqa: E402
from audio.vad import WebRtcVad  # noqa: E402
from core.settings import load_settings  # noqa: E402
from speech.recognition import WhisperRecognizer  # noqa: E402
from tests.phone import reference_text  # noqa: E402
from tools.twilio_sim.audio_files import read_audio  # noqa: E402
from tools.twilio_sim.media_format import MULAW_8K  # noqa: E402
from tools.twilio_sim.noise import LineNoise, speech_level  # noqa: E402
from tools.wer import normalize_text, word_error_rate  # noqa: E402

RATE = 8000
FRAME_MS = 20
FRAME_BYTES = RATE * FRAME_MS // 1000 * 2
DATA = REPO / "tests" / "data"
SPEECH = ("jfk.flac", "sr_english.wav")
NOISES = ("street", "babble", "music")
SNRS_DB = (10, 5)
LEAD_S, TAIL_S = 2.0, 1.5  # the caller waiting before speaking, and after

Suppressor = Callable[[bytes], bytes]  # the whole inbound PCM16 8 kHz stream in, the same length out (causal)


def livekit_ns(pcm: bytes) -> bytes:
    """WebRTC NS from ``livekit.rtc.AudioProcessingModule(noise_suppression=True)`` at 8 kHz, 10 ms blocks."""
    from livekit.rtc import AudioFrame, AudioProcessingModule

    apm = AudioProcessingModule(noise_suppression=True)
    block = RATE // 100 * 2
    out = bytearray()
    for start in range(0, len(pcm) - block + 1, block):
        frame = AudioFrame(pcm[start:start + block], RATE, 1, block // 2)
        apm.process_stream(frame)  # in place
        out += bytes(frame.data)
    return bytes(out)


def noise_gain_ns(level: int) -> Suppressor:
    """``webrtc_noise_gain.AudioProcessor(0, level)`` (WebRTC NS, no gain) at 16 kHz, soxr 8 → 16 → 8 kHz."""
    def suppress(pcm: bytes) -> bytes:
        from webrtc_noise_gain import AudioProcessor

        processor = AudioProcessor(0, level)
        wide = resample(np.frombuffer(pcm, dtype="<i2"), RATE, 16000).astype("<i2").tobytes()
        out = b"".join(processor.Process10ms(wide[start:start + 320]).audio
                       for start in range(0, len(wide) - 319, 320))
        return resample(np.frombuffer(out, dtype="<i2"), 16000, RATE).astype("<i2").tobytes()

    return suppress


def suppressors(strong: bool) -> dict[str, Suppressor | None]:
    found: dict[str, Suppressor | None] = {"none": None, "livekit APM NS (8 kHz)": livekit_ns}
    try:
        import webrtc_noise_gain  # noqa: F401
    except ImportError:
        print("webrtc-noise-gain is not installed: skipped", file=sys.stderr)
        return found
    found["webrtc-noise-gain NS 2 (16 kHz)"] = noise_gain_ns(2)
    if strong:
        found["webrtc-noise-gain NS 4 (16 kHz)"] = noise_gain_ns(4)
    return found


def endpointing_config() -> tuple[EndpointingConfig, int, int]:
    """The endpointing, VAD mode and barge-in span a call gets with the default settings."""
    s = load_settings({})
    config = EndpointingConfig(start_ms=s.speech_start_ms, stop_ms=s.endpoint_silence_ms, pre_roll_ms=s.pre_roll_ms,
                               max_utterance_ms=s.max_utterance_ms, sample_rate=RATE, frame_ms=FRAME_MS)
    return config, s.vad_mode, s.barge_in_min_ms


def caller_line(payload: bytes, noise: np.ndarray | None, level: float, snr_db: float) -> bytes:
    """The caller's μ-law ``payload`` with the lead and tail, under ``noise`` (None: clean); PCM16 8 kHz."""
    silence = MULAW_8K.silence_frame
    frames = [silence] * round(LEAD_S * 50) + [payload[i:i + 160].ljust(160, b"\xff")
                                                for i in range(0, len(payload), 160)] + [silence] * round(TAIL_S * 50)
    if noise is not None:
        line = LineNoise(noise, level, snr_db, MULAW_8K)
        frames = [line.mix(frame) for frame in frames]
    return ulaw_to_pcm16(b"".join(frames))


def endpoint(pcm: bytes, config: EndpointingConfig, vad_mode: int) -> tuple[list[int], list]:
    """Run the VAD and the endpointer over ``pcm``: (start times in ms, ended utterances: ``forced`` when cut at
    ``max_utterance_ms`` or still open at the end of ``pcm``)."""
    endpointer = Endpointer(config, WebRtcVad(mode=vad_mode, sample_rate=RATE, frame_ms=FRAME_MS).is_speech)
    starts, utterances = [], []
    events = []
    for index in range(len(pcm) // FRAME_BYTES):
        events += endpointer.push(pcm[index * FRAME_BYTES:(index + 1) * FRAME_BYTES], index * FRAME_MS)
    events += endpointer.finish()
    for event in events:
        if isinstance(event, SpeechStarted):
            starts.append(event.voice_start_ms)
        elif isinstance(event, UtteranceEnded):
            utterances.append(event.utterance)
    return starts, utterances


def errors(reference: str, hypothesis: str) -> tuple[float, int]:
    words = len(normalize_text(reference).split())
    return word_error_rate(reference, hypothesis) * words, words


def print_vad_alone(noises: dict[str, np.ndarray], vad_mode: int, levels_dbfs=(-25, -35, -45, -55)) -> None:
    """Print the share of 20 ms frames the VAD calls speech on each noise (8 kHz floats) at RMS levels in dBFS."""
    print(f"\nVAD alone (mode {vad_mode}) on each noise, RMS at the level given (μ-law): share of 20 ms frames "
          "voiced:\n")
    print("| noise | " + " | ".join(f"{level} dBFS" for level in levels_dbfs) + " |")
    print("|---|" + "---|" * len(levels_dbfs))
    for noise_name, whole in noises.items():
        unit = whole / np.sqrt(np.mean(whole ** 2))
        cells = []
        for level in levels_dbfs:
            pcm = ulaw_to_pcm16(MULAW_8K.encode(unit * 10 ** (level / 20)))
            vad = WebRtcVad(mode=vad_mode, sample_rate=RATE, frame_ms=FRAME_MS)
            voiced = [vad.is_speech(pcm[start:start + FRAME_BYTES])
                      for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
            cells.append(f"{np.mean(voiced):.0%}")
        print(f"| {noise_name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offsets", type=int, default=3, help="noise start points per condition (default 3)")
    parser.add_argument("--snrs", type=lambda text: [float(v) for v in text.split(",")], default=list(SNRS_DB),
                        help="SNRs in dB, comma-separated (default 10,5)")
    parser.add_argument("--strong", action="store_true", help="also webrtc-noise-gain at its strongest level, 4")
    parser.add_argument("--minutes", type=float, default=1.0, help="noise alone per false-start run (default 1)")
    args = parser.parse_args()
    config, vad_mode, barge_in_min_ms = endpointing_config()
    recognizer = WhisperRecognizer(num_workers=1)
    recognizer.warm_up()
    kinds = suppressors(args.strong)
    speech = {name: read_audio(str(DATA / name)).encode(MULAW_8K) for name in SPEECH}
    levels = {name: speech_level(np.frombuffer(ulaw_to_pcm16(payload), dtype="<i2") / 32768, RATE)
              for name, payload in speech.items()}
    noises = {name: read_audio(str(DATA / "noise" / f"{name}.flac")).at_rate(RATE).astype(np.float64)
              for name in NOISES}
    conditions = [("clean", None, None)] + [(name, name, snr) for name in NOISES for snr in args.snrs]
    started = time.monotonic()

    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"VAD mode {vad_mode}, endpointing {config}; {args.offsets} noise offsets\n")
    print("WER (errors / reference words over jfk.flac and sr_english.wav, "
          f"{args.offsets} noise offsets), through the endpointer | recognizer alone | clips endpointed:\n")
    print("| condition | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for label, noise_name, snr_db in conditions:
        cells = []
        for suppress in kinds.values():
            totals = np.zeros(5)  # endpointer errors, recognizer-alone errors, words, clips endpointed, clips
            for offset_index in range(args.offsets if noise_name else 1):
                for name, payload in speech.items():
                    noise = None
                    if noise_name:
                        whole = noises[noise_name]
                        noise = np.roll(whole, -offset_index * len(whole) // args.offsets)
                    pcm = caller_line(payload, noise, levels[name], snr_db)
                    if suppress is not None:
                        pcm = suppress(pcm)
                    _, utterances = endpoint(pcm, config, vad_mode)
                    speech_end_ms = LEAD_S * 1000 + len(payload) / 8  # μ-law: 8 bytes per ms
                    endpointed = any(not u.forced and u.end_ms >= speech_end_ms - 500 for u in utterances)
                    said = " ".join(recognizer.transcribe(u.pcm, RATE) for u in utterances)
                    reference = reference_text(name)
                    via_endpointer, words = errors(reference, said)
                    alone, _ = errors(reference, recognizer.transcribe(pcm, RATE))
                    totals += (via_endpointer, alone, words, endpointed, 1)
            cells.append(f"{totals[0] / totals[2]:.0%} \\| {totals[1] / totals[2]:.0%} \\| "
                         f"{totals[3]:.0f}/{totals[4]:.0f}")
        print(f"| {label}{f' {snr_db:g} dB' if snr_db is not None else ''} | " + " | ".join(cells) + " |", flush=True)

    seconds = args.minutes * 60
    print(f"\nFalse speech starts on noise alone ({args.minutes:g} min each, at its level under jfk.flac at that SNR): "
          f"starts per minute / of them with a voiced span >= {barge_in_min_ms} ms (would stop the bot) / "
          "share of the time inside an utterance:\n")
    print("| noise | " + " | ".join(kinds) + " |")
    print("|---|" + "---|" * len(kinds))
    for noise_name in NOISES:
        for snr_db in args.snrs:
            line = LineNoise(noises[noise_name], levels["jfk.flac"], snr_db, MULAW_8K)  # looped
            payload = b"".join(line.mix(MULAW_8K.silence_frame) for _ in range(int(seconds * 1000 / FRAME_MS)))
            pcm = ulaw_to_pcm16(payload)
            cells = []
            for suppress in kinds.values():
                heard = pcm if suppress is None else suppress(pcm)
                starts, utterances = endpoint(heard, config, vad_mode)
                long = sum(u.end_ms - u.voice_start_ms >= barge_in_min_ms for u in utterances)
                inside = sum(u.end_ms - u.start_ms for u in utterances) / (seconds * 1000)
                cells.append(f"{len(starts) / args.minutes:.1f} / {long / args.minutes:.1f} / {inside:.0%}")
            print(f"| {noise_name} {snr_db:g} dB | " + " | ".join(cells) + " |", flush=True)
    print_vad_alone(noises, vad_mode)
    print(f"\n({time.monotonic() - started:.0f} s)")
    recognizer.close()


if __name__ == "__main__":
    main()
