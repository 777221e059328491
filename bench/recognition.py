"""Benchmark: whisper recognition, one utterance and several submitted together.

Real speech from tests/data after the telephone round trip (soxr to 8 kHz, G.711
μ-law encode and decode), as the server receives it: sr_english.wav ("one two three",
2.7 s), jfk.flac (11 s) and jfk.flac cut at its pauses into four phrases.

Prints markdown tables:

1. Single utterance, where the time goes (median of ``--repeat`` runs, ms): soxr and
   ``AudioData``, SpeechRecognition's WAV round trip (before only), feature extraction,
   encoder (one 30 s window), the whole ``transcribe`` call, and what is left of it for
   the decoder and the rest (total minus features minus encoder, of the medians),
   before (SR's ``WhisperCompatibleRecognizer``, CTranslate2's default threads: 2
   here, numpy's BLAS on all cores) and after (``WhisperRecognizer``: BLAS on one
   thread), for ``cpu_threads`` 1 and 2.
2. Concurrency 1, 2, 4, 8: that many utterances submitted at the same moment from as
   many threads (as the call worker's threadpool does); total wall time (median of
   ``--rounds``) and per-utterance latency p50/p95 (submit to text, over all rounds),
   for: before (threads call the model concurrently) and after (one at a time per engine
   thread, in arrival order), with one engine thread of 2 CTranslate2 threads or two
   engine threads (``num_workers=2``) of 1 or 2 threads each. "same text" counts the
   utterances whose text equals the one the same recognizer gives it alone.
3. WER of every corpus utterance, before and after.

Usage: python bench/recognition.py [--rounds 5] [--repeat 7] [--concurrency 1 2 4 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from threadpoolctl import ThreadpoolController  # noqa: E402

from speech.recognition import WhisperRecognizer, _audio_data, _bundled_whisper_model_path, _clean, _float_samples  # noqa: E402
from tests.phone import phone_corpus, reference_text  # noqa: E402
from tools.wer import word_error_rate  # noqa: E402

PHONE_RATE = 8000
JFK_PHRASES_S = [(0.0, 2.6), (2.9, 4.8), (4.8, 7.8), (7.8, 11.0)]  # cut in its pauses (energy dips)


def utterances() -> list[tuple[str, bytes]]:
    """Return (name, PCM16 8 kHz after the μ-law round trip) for the benchmark utterances."""
    jfk = phone_corpus("jfk.flac")
    items = [("sr_english 2.7 s", phone_corpus("sr_english.wav"))]
    for start_s, end_s in JFK_PHRASES_S:
        items.append((f"jfk {start_s}-{end_s} s", jfk[int(start_s * PHONE_RATE) * 2 : int(end_s * PHONE_RATE) * 2]))
    items.append(("jfk 11 s", jfk))
    return items


_BLAS = ThreadpoolController()
_BLAS_THREADS_AT_START = max(info["num_threads"] for info in _BLAS.info() if info["user_api"] == "blas")


def blas_threads(count: int) -> None:
    """Set numpy's BLAS threads for the process (the recognizer sets 1 when it loads).

    Call on the main thread only: threadpoolctl lets the first thread that set
    OpenBLAS's threads (here the main thread, when the recognizers load) change it,
    and silently ignores the others.
    """
    _BLAS.limit(limits=count, user_api="blas")


class BeforeWhisper:
    """The recognizer as it was: SR's WhisperCompatibleRecognizer around a WhisperModel, no queue.

    It runs with numpy's BLAS threads as they were before (OpenBLAS's default: one per
    core), which the new recognizer sets to 1 for the whole process when it loads.
    """

    def __init__(self, cpu_threads: int = 0, num_workers: int = 1) -> None:
        from faster_whisper import WhisperModel
        from speech_recognition.recognizers.whisper_local.base import WhisperCompatibleRecognizer
        from speech_recognition.recognizers.whisper_local.faster_whisper import TranscribableAdapter

        self.model = WhisperModel(
            str(_bundled_whisper_model_path()), device="cpu", compute_type="int8",
            cpu_threads=cpu_threads, num_workers=num_workers, local_files_only=True,
        )
        self.recognizer = WhisperCompatibleRecognizer(TranscribableAdapter(self.model))

    def transcribe(self, pcm: bytes, sample_rate: int) -> str:
        audio = _audio_data(pcm, sample_rate)
        text = self.recognizer.recognize(
            audio, language="en", beam_size=1, condition_on_previous_text=False, without_timestamps=True, vad_filter=False
        )
        return _clean(text)

    def warm_up(self) -> None:
        self.transcribe(utterances()[0][1], PHONE_RATE)

    def close(self) -> None:
        pass


def profile(name: str, pcm: bytes, repeat: int, before: BeforeWhisper, after: dict[int, WhisperRecognizer]) -> list[str]:
    """Return markdown rows of the single-utterance breakdown for one utterance.

    Every step of every recognizer is timed once per repetition, in turn, so that load
    from elsewhere on the machine falls on all of them alike; the medians are shown.
    """
    import io

    import soundfile as sf
    from faster_whisper.audio import pad_or_trim

    times: dict[tuple, list[float]] = {}

    def timed(key: tuple, func: Callable[[], object]) -> object:
        began = time.perf_counter()
        result = func()
        times.setdefault(key, []).append((time.perf_counter() - began) * 1000)
        return result

    def wav_round_trip(audio):
        samples, _ = sf.read(io.BytesIO(audio.get_wav_data(convert_rate=16000)))
        return samples.astype(np.float32)

    for _ in range(repeat):
        audio = timed(("soxr",), lambda: _audio_data(pcm, PHONE_RATE))
        timed(("wav",), lambda: wav_round_trip(audio))
        blas_threads(_BLAS_THREADS_AT_START)
        timed(("before",), lambda: before.transcribe(pcm, PHONE_RATE))
        blas_threads(1)
        for threads, recognizer in after.items():
            model = recognizer.model()
            samples = _float_samples(audio)
            features = timed(("features", threads), lambda: model.feature_extractor(samples))
            window = pad_or_trim(features[:, :-1])
            timed(("encode", threads), lambda: model.encode(window))
            timed(("total", threads), lambda: recognizer.transcribe(pcm, PHONE_RATE))
    med = {key: statistics.median(values) for key, values in times.items()}
    rows = [f"| {name} | before (SR wrapper, CTranslate2's default threads) | {med[('soxr',)]:.1f} | {med[('wav',)]:.1f} | | | | {med[('before',)]:.0f} |"]
    for threads in after:
        rest = med[("total", threads)] - med[("features", threads)] - med[("encode", threads)]
        rows.append(
            f"| {name} | after, cpu_threads={threads} | {med[('soxr',)]:.1f} | – | {med[('features', threads)]:.1f} "
            f"| {med[('encode', threads)]:.0f} | {rest:.0f} | {med[('total', threads)]:.0f} |"
        )
    return rows


def together(transcribe: Callable[[bytes, int], str], pcms: list[bytes]) -> tuple[float, list[float], list[str]]:
    """Submit ``pcms`` at the same moment from one thread each; return wall s, latencies s, texts."""
    count = len(pcms)
    barrier = threading.Barrier(count + 1)
    latencies, texts = [0.0] * count, [""] * count
    ends = [0.0] * count

    def call(index: int) -> None:
        barrier.wait()
        began = time.perf_counter()
        texts[index] = transcribe(pcms[index], PHONE_RATE)
        ends[index] = time.perf_counter()
        latencies[index] = ends[index] - began

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return max(ends) - began, latencies, texts


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per concurrency level (default 5)")
    parser.add_argument("--repeat", type=int, default=7, help="runs per single-utterance measurement (default 7)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8])
    args = parser.parse_args()

    items = utterances()
    before = BeforeWhisper()
    before.warm_up()
    after_threads = {threads: WhisperRecognizer(cpu_threads=threads, num_workers=1) for threads in (1, 2)}
    for recognizer in after_threads.values():
        recognizer.warm_up()

    def recognizer(label: str, **options) -> WhisperRecognizer:
        engine = WhisperRecognizer(**options)
        engine.warm_up()
        return engine

    configs = [
        ("after: 1 worker × 2 threads", {"cpu_threads": 2, "num_workers": 1}),
        ("after: 2 workers × 1 thread", {"cpu_threads": 1, "num_workers": 2}),
        ("after: 2 workers × 2 threads (default)", {"cpu_threads": 2, "num_workers": 2}),
    ]
    afters = {label: recognizer(label, **options) for label, options in configs}

    print("### Single utterance\n")
    print(f"Median of {args.repeat} runs, ms. The encoder always runs on a 30 s window (shorter input is padded).\n")
    print("| utterance | recognizer | soxr + AudioData | SR WAV round trip | features | encoder | decoder and rest | transcribe total |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, pcm in (items[0], items[-1]):
        for row in profile(name, pcm, args.repeat, before, after_threads):
            print(row, flush=True)


    modes = [("before: threads call the model at once", before.transcribe)]
    modes += [(label, engine.transcribe) for label, engine in afters.items()]
    alone = {}
    for label, transcribe in modes:
        blas_threads(_BLAS_THREADS_AT_START if transcribe == before.transcribe else 1)
        alone[label] = {pcm: transcribe(pcm, PHONE_RATE) for _, pcm in items}
    print("\n### Utterances submitted together\n")
    print(f"Utterances cycle through {len(items)} real ones (2.7 s, 4 jfk phrases 1.9–3.2 s, 11 s); "
          f"{args.rounds} rounds, the recognizers taking turns within each round; wall = median of rounds; "
          "latency = submit to text, all rounds.\n")
    print("| utterances together | recognizer | wall s | latency p50 s | latency p95 s | utterances/s | same text |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for count in args.concurrency:
        pcms = [items[i % len(items)][1] for i in range(count)]
        walls: dict[str, list[float]] = {label: [] for label, _ in modes}
        latencies: dict[str, list[float]] = {label: [] for label, _ in modes}
        same = dict.fromkeys(walls, 0)
        for round_index in range(args.rounds):
            for label, transcribe in modes[round_index % len(modes) :] + modes[: round_index % len(modes)]:
                blas_threads(_BLAS_THREADS_AT_START if transcribe == before.transcribe else 1)
                wall, lat, texts = together(transcribe, pcms)
                walls[label].append(wall)
                latencies[label].extend(lat)
                same[label] += sum(text == alone[label][pcm] for text, pcm in zip(texts, pcms))
        for label, _ in modes:
            wall = statistics.median(walls[label])
            print(f"| {count} | {label} | {wall:.2f} | {percentile(latencies[label], 0.5):.2f} "
                  f"| {percentile(latencies[label], 0.95):.2f} | {count / wall:.1f} | {same[label]}/{count * args.rounds} |",
                  flush=True)
    print("\n### Accuracy\n")
    print("WER against the reference text (jfk phrases: the words of the full reference they cover).\n")
    jfk_words = reference_text("jfk.flac").split()
    references = {
        items[0][0]: reference_text("sr_english.wav"),
        items[1][0]: " ".join(jfk_words[:5]),
        items[2][0]: " ".join(jfk_words[5:7]),
        items[3][0]: " ".join(jfk_words[7:14]),
        items[4][0]: " ".join(jfk_words[14:]),
        items[5][0]: reference_text("jfk.flac"),
    }
    before_label, default_label = modes[0][0], configs[-1][0]
    print("| utterance | before | after (default) | before text | after text |")
    print("| --- | ---: | ---: | --- | --- |")
    for name, pcm in items:
        old, new = alone[before_label][pcm], alone[default_label][pcm]
        print(f"| {name} | {word_error_rate(references[name], old):.3f} | {word_error_rate(references[name], new):.3f} | {old} | {new} |")
    for engine in (*after_threads.values(), *afters.values()):
        engine.close()


if __name__ == "__main__":
    main()
