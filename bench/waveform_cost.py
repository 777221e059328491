"""Cost of drawing a call's waveform picture (``audio.waveform.waveform_svg``), by call length.

The picture is drawn once per call when its recordings are filed, in a worker thread. Usage::

    python bench/waveform_cost.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio.waveform import waveform_svg  # noqa: E402

RATE = 8000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"stereo 8 kHz noise, a turn every 5 s; best of {args.runs}.\n")
    print("| call | turns | SVG size | time (best) |\n|---|---|---|---|")
    for minutes in (1, 10, 60):
        audio = (rng.standard_normal((minutes * 60 * RATE, 2)) * 4000).astype(np.int16)
        turns = [{"speaker": "caller" if i % 2 else "bot", "text": f"turn {i}", "start_ms": i * 5000,
                  "end_ms": i * 5000 + 4000} for i in range(minutes * 12)]
        waveform_svg(audio[:RATE], RATE, turns[:1])  # warm-up
        runs = []
        for _ in range(args.runs):
            began = time.perf_counter()
            svg = waveform_svg(audio, RATE, turns)
            runs.append((time.perf_counter() - began) * 1000)
        print(f"| {minutes} min | {len(turns)} | {len(svg) / 1000:.0f} kB | {min(runs):.0f} ms |")


if __name__ == "__main__":
    main()
