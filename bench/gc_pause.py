"""How long a full garbage collection blocks the server, with and without the frozen start-up heap.

Builds the app as ``python app.py`` does (engines loaded and warmed), then times ``gc.collect()``
(a full, generation-2 collection: it runs on the gevent hub, so every call waits for it) before
and after ``runtime.heap.freeze_start_up_heap``. Usage::

    python bench/gc_pause.py [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def full_collection_ms(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from gevent import monkey

    monkey.patch_all()
    import app
    from runtime.heap import freeze_start_up_heap

    work = Path(tempfile.mkdtemp(prefix="gc-pause-"))
    app.create_app({"DATABASE_URL": f"sqlite:///{work / 'calls.db'}", "RECORDINGS_DIR": str(work / "recordings")})
    gc.collect()
    tracked = len(gc.get_objects())
    before = full_collection_ms(args.runs)
    frozen = freeze_start_up_heap()
    after = full_collection_ms(args.runs)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.runs} full collections each.\n")
    print("| start-up heap | objects scanned | full collection, median (max) |\n|---|---|---|")
    print(f"| tracked (default) | {tracked:,} | {statistics.median(before):.1f} ms ({max(before):.1f}) |")
    print(f"| frozen (`runtime/heap.py`) | {len(gc.get_objects()):,} ({frozen:,} frozen) | "
          f"{statistics.median(after):.1f} ms ({max(after):.1f}) |")


if __name__ == "__main__":
    main()
