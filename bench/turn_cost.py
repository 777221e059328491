"""Core-seconds of one turn, by stage: what one caller's turn costs the machine (issue #13, part 1).

Measures, one job at a time on an otherwise idle process, the CPU time of every thread in this
process (``time.process_time``: user + system, all threads) next to the wall time:

* recognition: ``WhisperRecognizer`` (tiny.en, one engine thread, the server's default threads
  per engine) on prefixes of ``tests/data/jfk.flac`` after the μ-law round trip, 1 to 11 s long;
* synthesis: ``PiperSynthesizer`` on reply sentences of different lengths, per second of speech;
* the media path per second of call comes from ``bench/per_frame.py`` (CPU per 20 ms message).

Usage::

    python bench/turn_cost.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.recognition import WhisperRecognizer  # noqa: E402
from speech.synthesis import PiperSynthesizer  # noqa: E402
from tests.phone import PHONE_SAMPLE_RATE, phone_corpus  # noqa: E402

UTTERANCE_S = (1.0, 2.0, 4.0, 8.0, 11.0)
SENTENCES = (
    "You said: one two three.",
    "Hello! Say something and I will repeat it.",
    "And so, my fellow Americans: ask not what your country can do for you, ask what you can do for your country.",
)


def measure(job, runs: int) -> tuple[float, float]:
    """Median (wall s, CPU s) of ``runs`` calls of ``job()``."""
    walls, cpus = [], []
    for _ in range(runs):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        job()
        walls.append(time.perf_counter() - wall0)
        cpus.append(time.process_time() - cpu0)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    recognizer = WhisperRecognizer(num_workers=1)
    recognizer.warm_up()
    synthesizer = PiperSynthesizer()
    synthesizer.warm_up()
    jfk = phone_corpus("jfk.flac")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"whisper tiny.en on 1 engine thread ({recognizer.cpu_threads or 'default'} CPU threads), piper; "
          f"median of {args.runs}.\n")
    print("| recognition of | wall ms | core-seconds | core-seconds per second of speech |\n|---|---|---|---|")
    for length_s in UTTERANCE_S:
        pcm = jfk[: int(length_s * PHONE_SAMPLE_RATE) * 2]
        wall_s, cpu_s = measure(lambda: recognizer.transcribe(pcm, PHONE_SAMPLE_RATE), args.runs)
        print(f"| {length_s:g} s | {wall_s * 1000:.0f} | {cpu_s:.2f} | {cpu_s / length_s:.2f} |")
    print("\n| synthesis of | speech s | wall ms | core-seconds | core-seconds per second of speech |\n|---|---|---|---|---|")
    for text in SENTENCES:
        audio_s = synthesizer.synthesize(text).duration_ms / 1000
        wall_s, cpu_s = measure(lambda: synthesizer.synthesize(text), args.runs)
        print(f"| {len(text)} characters | {audio_s:.1f} | {wall_s * 1000:.0f} | {cpu_s:.3f} | {cpu_s / audio_s:.3f} |")
    recognizer.close()


if __name__ == "__main__":
    main()
