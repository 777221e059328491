"""Background noise on the caller's line: word error rate and false speech starts, with and without noise suppression.

Issue #14 part 4. The caller's line is built as callsim ``--noise`` builds it
(``tools.twilio_sim.noise.LineNoise``): real speech (``tests/data/jfk.flac``, ``sr_english.wav``)
μ-law encoded at 8 kHz, with ``LEAD_S`` of the caller waiting before it and ``TAIL_S`` after, and a
real noise recording (``tests/data/noise/``: street traffic, babble, music) looped under all of it
at 10 and 5 dB SNR to the speech's active level; then μ-law decoded, as the server receives it.
Each noise is started at ``--offsets`` different points of the recording.

That audio goes through the server's sans-I/O path without a server: an optional noise
suppressor on the 8 kHz PCM (where ``core.session``'s ``_on_media`` applies the echo canceller),
the VAD (``--vad``, below) and ``audio.endpointing.Endpointer`` with the settings' defaults (as
``runtime.services.session_config`` builds them), and each utterance it ends is transcribed by
the server's recognizer (``WhisperRecognizer``, faster-whisper tiny.en). Measured:

* WER through the endpointer: the utterances' texts joined, against the reference (``tools.wer``);
  errors over reference words, summed over files and offsets;
* WER of the recognizer alone: the whole clip (lead and tail included) transcribed at once;
* WER of the turn: the utterances' audio joined and transcribed at once, as ``core.session`` transcribes
  a turn the caller went on with (a VAD that hears the pauses splits a sentence into utterances that
  whisper gets wrong one by one: "And so am I fellow America." for "And so my fellow Americans");
* endpoints: in how many clips the endpointer ended the caller's utterance by itself (``ENDPOINT_SILENCE_MS``
  of non-speech; the last utterance is not cut at ``MAX_UTTERANCE_MS`` nor still open at the end of the clip,
  and its last voiced frame is at most 1 s before the speech's end) within the ``TAIL_S`` after the speech;
* false speech starts: ``--minutes`` of noise alone, at the level it has under jfk.flac at that
  SNR, through the same path: utterance starts per minute, those whose voiced span (first to
  last voiced frame) reaches ``BARGE_IN_MIN_MS``, i.e. that would stop the bot talking over them,
  and the share of the time spent inside an utterance (a noise the VAD takes for speech throughout
  gives one utterance per ``MAX_UTTERANCE_MS``);
* the VAD alone on each noise at absolute levels (RMS, dBFS, μ-law): the share of 20 ms frames it
  calls speech, to see where it stops hearing each noise;
* clean speech, every speech file of ``tests/data/manifest.tsv`` on the phone line: each VAD's utterances,
  first voice start, last end, when that endpoint was decided, and the WER (no words lost);
* each VAD's cost per 20 ms frame.

VADs (``--vad``, comma-separated): ``webrtc`` (``audio.vad.WebRtcVad``, ``VAD_MODE``), ``silero``
(``audio.silero_vad.SileroVad``) and ``hybrid`` (``audio.hybrid_vad.HybridVad``, the default ``VAD``); with more than one, every table has a column per VAD and suppressor.

Suppressors: none; WebRTC's noise suppressor in ``livekit``'s ``AudioProcessingModule`` (already a
dependency, for ``audio.echo``) at 8 kHz; ``webrtc-noise-gain`` (WebRTC NS, 16 kHz only: soxr up and
down around it) at level 2 (and 4 with ``--strong``), auto gain off. Both run causally in 10 ms blocks from the start
of the call, so they learn the noise during the lead-in as a server would during the greeting.
``webrtc-noise-gain`` is not a dependency: the benchmark skips it unless it is importable
(``pip install webrtc-noise-gain==1.3.0``).

Usage::

    python bench/noise.py [--offsets 3] [--minutes 1] [--snrs 10,5] [--strong] [--vad webrtc,silero]
                          [--no-suppression] [--skip wer,starts,alone,clean,cost]
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
from audio.hybrid_vad import HybridVad  # noqa: E402
from audio.resample import resample  # noqa: E402
from audio.silero_vad import SileroVad  # noqa: E402
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
VadFactory = Callable[[], Callable[[bytes], bool]]  # a new per-call VAD's is_speech


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


def vads(names: list[str], vad_mode: int) -> dict[str, VadFactory]:
    """The VADs asked for (``webrtc``: ``WebRtcVad`` at ``vad_mode``; ``silero``: ``SileroVad``; ``hybrid``:
    ``HybridVad``, WebRTC confirmed by Silero on a noisy line), by label."""
    factories = {
        "webrtc": (f"WebRTC VAD {vad_mode}", lambda: WebRtcVad(mode=vad_mode, sample_rate=RATE, frame_ms=FRAME_MS).is_speech),
        "silero": ("Silero VAD", lambda: SileroVad(sample_rate=RATE, frame_ms=FRAME_MS).is_speech),
        "hybrid": (f"WebRTC VAD {vad_mode} + Silero", lambda: HybridVad(mode=vad_mode, sample_rate=RATE, frame_ms=FRAME_MS).is_speech),
    }
    return dict(factories[name] for name in names)


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


def endpoint(pcm: bytes, config: EndpointingConfig, make_vad: VadFactory) -> tuple[list[int], list]:
    """Run a new VAD and the endpointer over ``pcm``: (start times in ms, ended utterances: ``forced`` when cut at
    ``max_utterance_ms`` or still open at the end of ``pcm``)."""
    endpointer = Endpointer(config, make_vad())
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


def print_vad_alone(noises: dict[str, np.ndarray], detectors: dict[str, VadFactory],
                    levels_dbfs=(-25, -35, -45, -55)) -> None:
    """Print the share of 20 ms frames each VAD calls speech on each noise (8 kHz floats) at RMS levels in dBFS."""
    print("\nVAD alone on each noise, RMS at the level given (μ-law): share of 20 ms frames voiced:\n")
    print("| noise | VAD | " + " | ".join(f"{level} dBFS" for level in levels_dbfs) + " |")
    print("|---|---|" + "---|" * len(levels_dbfs))
    for noise_name, whole in noises.items():
        unit = whole / np.sqrt(np.mean(whole ** 2))
        for vad_label, make_vad in detectors.items():
            cells = []
            for level in levels_dbfs:
                pcm = ulaw_to_pcm16(MULAW_8K.encode(unit * 10 ** (level / 20)))
                is_speech = make_vad()
                voiced = [is_speech(pcm[start:start + FRAME_BYTES])
                          for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
                cells.append(f"{np.mean(voiced):.0%}")
            print(f"| {noise_name} | {vad_label} | " + " | ".join(cells) + " |")


def clean_speech_files() -> list[str]:
    """The speech recordings of ``tests/data/manifest.tsv`` (those at the top level of ``tests/data``)."""
    rows = (DATA / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [row.split("\t")[0] for row in rows if row and "/" not in row.split("\t")[0]]


def print_clean_timing(config: EndpointingConfig, detectors: dict[str, VadFactory],
                       recognizer: WhisperRecognizer) -> None:
    """Print, per clean speech file on the phone line, each VAD's utterances: count, first voice start, last end,
    and when the endpoint was decided (ms from the clip start; the speech starts at ``LEAD_S``), and the WER of
    their transcripts joined and of their audio joined (first syllables cut off or words lost show here)."""
    labels = list(detectors)
    print(f"\nClean speech ({LEAD_S:g} s of line silence before, {TAIL_S:g} s after), through the endpointer: "
          "utterances / first voice start / last end / last endpoint decided, ms / WER (utterances one by one \\| "
          "their audio joined, as one turn):\n")
    print("| file | " + " | ".join(labels) + " |" + (" Δ start \\| Δ end \\| Δ decided |" if len(labels) == 2 else ""))
    print("|---|" + "---|" * (len(labels) + (len(labels) == 2)))
    totals = {label: np.zeros(3) for label in labels}  # errors one by one, as one turn, words
    references = dict(row.split("\t")[::8] for row in (DATA / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:])
    for name in clean_speech_files():
        payload = read_audio(str(DATA / name)).encode(MULAW_8K)
        pcm = caller_line(payload, None, 0.0, 0.0)
        cells, marks = [], []
        for label, make_vad in detectors.items():
            endpointer = Endpointer(config, make_vad())
            events = []
            for index in range(len(pcm) // FRAME_BYTES):
                events += endpointer.push(pcm[index * FRAME_BYTES:(index + 1) * FRAME_BYTES], index * FRAME_MS)
            events += endpointer.finish()
            ended = [e for e in events if isinstance(e, UtteranceEnded)]
            if not ended:
                cells.append("0")
                marks.append(None)
                continue
            first, last = ended[0].utterance, ended[-1]
            mark = (first.voice_start_ms, last.utterance.end_ms, last.detected_ms)
            forced = " (forced)" if any(e.utterance.forced for e in ended) else ""
            said = " ".join(recognizer.transcribe(e.utterance.pcm, RATE) for e in ended)
            file_errors, words = errors(references[name], said)
            as_turn, _ = errors(references[name], recognizer.transcribe(b"".join(e.utterance.pcm for e in ended), RATE))
            totals[label] += (file_errors, as_turn, words)
            cells.append(f"{len(ended)} / {mark[0]} / {mark[1]} / {mark[2]}{forced} / "
                         f"{file_errors / words:.0%} \\| {as_turn / words:.0%}")
            marks.append(mark)
        delta = ""
        if len(marks) == 2:
            delta = (" " + " \\| ".join(f"{b - a:+d}" for a, b in zip(*marks)) + " |"
                     if None not in marks else " – |")
        print(f"| {name} | " + " | ".join(cells) + " |" + delta, flush=True)
    print("\nWER over these files, utterances one by one | as one turn: "
          + ", ".join(f"{label} {total[0] / total[2]:.1%} | {total[1] / total[2]:.1%}" for label, total in totals.items()))


def print_frame_cost(detectors: dict[str, VadFactory], seconds: float = 20.0) -> None:
    """Print each VAD's time per 20 ms frame on ``seconds`` of jfk.flac on the phone line (best of 3 runs)."""
    payload = read_audio(str(DATA / "jfk.flac")).encode(MULAW_8K)
    pcm = ulaw_to_pcm16(payload * int(np.ceil(seconds * 8000 / len(payload))))[: int(seconds * RATE) * 2]
    frames = [pcm[start:start + FRAME_BYTES] for start in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    print("\nCost per 20 ms frame at 8 kHz (best of 3 passes over "
          f"{seconds:g} s of jfk.flac, one thread):\n")
    for label, make_vad in detectors.items():
        best = float("inf")
        for _ in range(3):
            is_speech = make_vad()
            started = time.perf_counter()
            for frame in frames:
                is_speech(frame)
            best = min(best, time.perf_counter() - started)
        print(f"- {label}: {best / len(frames) * 1e6:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--offsets", type=int, default=3, help="noise start points per condition (default 3)")
    parser.add_argument("--snrs", type=lambda text: [float(v) for v in text.split(",")], default=list(SNRS_DB),
                        help="SNRs in dB, comma-separated (default 10,5)")
    parser.add_argument("--strong", action="store_true", help="also webrtc-noise-gain at its strongest level, 4")
    parser.add_argument("--minutes", type=float, default=1.0, help="noise alone per false-start run (default 1)")
    parser.add_argument("--vad", type=lambda text: text.split(","), default=["webrtc"],
                        help="VADs, comma-separated: webrtc, silero, hybrid (default webrtc)")
    parser.add_argument("--no-suppression", action="store_true", help="only without a noise suppressor")
    parser.add_argument("--skip", type=lambda text: text.split(","), default=[],
                        help="sections to skip, comma-separated: wer, starts, alone, clean, cost")
    args = parser.parse_args()
    config, vad_mode, barge_in_min_ms = endpointing_config()
    detectors = vads(args.vad, vad_mode)
    recognizer = WhisperRecognizer(num_workers=1)
    recognizer.warm_up()
    kinds = {"none": None} if args.no_suppression else suppressors(args.strong)
    columns = {(f"{vad_label}, {kind}" if len(detectors) > 1 else kind): (make_vad, suppress)
               for vad_label, make_vad in detectors.items() for kind, suppress in kinds.items()}
    speech = {name: read_audio(str(DATA / name)).encode(MULAW_8K) for name in SPEECH}
    levels = {name: speech_level(np.frombuffer(ulaw_to_pcm16(payload), dtype="<i2") / 32768, RATE)
              for name, payload in speech.items()}
    noises = {name: read_audio(str(DATA / "noise" / f"{name}.flac")).at_rate(RATE).astype(np.float64)
              for name in NOISES}
    conditions = [("clean", None, None)] + [(name, name, snr) for name in NOISES for snr in args.snrs]
    started = time.monotonic()
    alone_errors: dict[bytes, float] = {}  # the recognizer alone does not depend on the VAD

    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"VADs {', '.join(detectors)}, endpointing {config}; {args.offsets} noise offsets\n")
    if "wer" not in args.skip:
        print("WER (errors / reference words over jfk.flac and sr_english.wav, "
              f"{args.offsets} noise offsets), through the endpointer (utterances transcribed one by one | "
              "their audio joined, as one turn) | recognizer alone | clips endpointed:\n")
        print("| condition | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
    for label, noise_name, snr_db in conditions if "wer" not in args.skip else ():
        cells = []
        for make_vad, suppress in columns.values():
            totals = np.zeros(6)  # endpointer, turn and recognizer-alone errors, words, clips endpointed, clips
            for offset_index in range(args.offsets if noise_name else 1):
                for name, payload in speech.items():
                    noise = None
                    if noise_name:
                        whole = noises[noise_name]
                        noise = np.roll(whole, -offset_index * len(whole) // args.offsets)
                    pcm = caller_line(payload, noise, levels[name], snr_db)
                    if suppress is not None:
                        pcm = suppress(pcm)
                    _, utterances = endpoint(pcm, config, make_vad)
                    speech_end_ms = LEAD_S * 1000 + len(payload) / 8  # μ-law: 8 bytes per ms
                    # The last utterance holds the speech's end (jfk.flac's last 0.5 s is the crowd) and silence ended it.
                    endpointed = bool(utterances) and not utterances[-1].forced and utterances[-1].end_ms >= speech_end_ms - 1000
                    said = " ".join(recognizer.transcribe(u.pcm, RATE) for u in utterances)
                    reference = reference_text(name)
                    via_endpointer, words = errors(reference, said)
                    # As core.session transcribes a turn the caller went on with: its utterances' audio joined.
                    as_turn, _ = errors(reference, recognizer.transcribe(b"".join(u.pcm for u in utterances), RATE))
                    if pcm not in alone_errors:
                        alone_errors[pcm] = errors(reference, recognizer.transcribe(pcm, RATE))[0]
                    totals += (via_endpointer, as_turn, alone_errors[pcm], words, endpointed, 1)
            cells.append(" \\| ".join(f"{value / totals[3]:.0%}" for value in totals[:3])
                         + f" \\| {totals[4]:.0f}/{totals[5]:.0f}")
        print(f"| {label}{f' {snr_db:g} dB' if snr_db is not None else ''} | " + " | ".join(cells) + " |", flush=True)

    seconds = args.minutes * 60
    if "starts" not in args.skip:
        print(f"\nFalse speech starts on noise alone ({args.minutes:g} min each, at its level under jfk.flac at that "
              f"SNR): starts per minute / of them with a voiced span >= {barge_in_min_ms} ms (would stop the bot) / "
              "share of the time inside an utterance:\n")
        print("| noise | " + " | ".join(columns) + " |")
        print("|---|" + "---|" * len(columns))
    for noise_name in NOISES if "starts" not in args.skip else ():
        for snr_db in args.snrs:
            line = LineNoise(noises[noise_name], levels["jfk.flac"], snr_db, MULAW_8K)  # looped
            payload = b"".join(line.mix(MULAW_8K.silence_frame) for _ in range(int(seconds * 1000 / FRAME_MS)))
            pcm = ulaw_to_pcm16(payload)
            cells = []
            for make_vad, suppress in columns.values():
                heard = pcm if suppress is None else suppress(pcm)
                starts, utterances = endpoint(heard, config, make_vad)
                long = sum(u.end_ms - u.voice_start_ms >= barge_in_min_ms for u in utterances)
                inside = sum(u.end_ms - u.start_ms for u in utterances) / (seconds * 1000)
                cells.append(f"{len(starts) / args.minutes:.1f} / {long / args.minutes:.1f} / {inside:.0%}")
            print(f"| {noise_name} {snr_db:g} dB | " + " | ".join(cells) + " |", flush=True)
    if "alone" not in args.skip:
        print_vad_alone(noises, detectors)
    if "clean" not in args.skip:
        print_clean_timing(config, detectors, recognizer)
    if "cost" not in args.skip:
        print_frame_cost(detectors)
    print(f"\n({time.monotonic() - started:.0f} s)")
    recognizer.close()


if __name__ == "__main__":
    main()
