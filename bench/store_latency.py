"""Benchmark: call store latency on SQLite and PostgreSQL.

The app re-saves a call in progress about once a second (the whole record: the call row and all
its turns). This measures ``CallStore.save_call`` for a call with 10 turns (re-saving the same
call, and saving a new call each time), ``get_call`` and ``list_calls``, ``--saves`` times each,
on a SQLite file and on a throwaway database of the local PostgreSQL (127.0.0.1:5432), and prints
a markdown table (median and p95, ms).

Usage: python bench/store_latency.py [--saves 200] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from core.records import CallRecord, Turn  # noqa: E402
from store import CallStore, make_engine, upgrade_schema  # noqa: E402

TURNS = 10


def record(call_sid: str) -> dict:
    call = CallRecord(call_sid, "MZ" + call_sid[2:], "+15550001", "+15550002", "2026-11-21T07:00:00.000+00:00")
    for index in range(TURNS):
        speaker = "caller" if index % 2 == 0 else "bot"
        turn = Turn(speaker, f"turn {index} with a sentence of ordinary length in it", index * 3000, index * 3000 + 2500)
        if speaker == "bot":
            turn.latency_ms = {"endpoint": 600, "recognition": 500, "responder": 0, "synthesis": 80, "total": 1200}
        call.turns.append(turn)
    return call.to_json()


def timed(func, count: int) -> tuple[float, float]:
    times = []
    for index in range(count):
        began = time.perf_counter()
        func(index)
        times.append((time.perf_counter() - began) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.95 * len(times)))]


def measure(url: str, count: int) -> dict[str, tuple[float, float]]:
    engine = make_engine(url)
    upgrade_schema(engine)
    store = CallStore(engine)
    for index in range(20):  # warm-up: connections, statement caches
        store.save_call(record(f"CAwarm{index}"))
    results = {
        f"save_call, same call re-saved ({TURNS} turns)": timed(lambda i: store.save_call(record("CAbench")), count),
        f"save_call, a new call each time ({TURNS} turns)": timed(lambda i: store.save_call(record(f"CAnew{i}")), count),
        "get_call": timed(lambda i: store.get_call("CAbench"), count),
        "list_calls (20 a page)": timed(lambda i: store.list_calls(per_page=20), count),
    }
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres", help="admin URL")
    args = parser.parse_args()
    columns = {"SQLite": measure(f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}", args.saves)}
    name = f"callstream_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        columns["PostgreSQL"] = measure(args.postgres.rsplit("/", 1)[0] + f"/{name}", args.saves)
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"{args.saves} operations each; ms, median / p95.\n")
    print("| operation | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    for operation in next(iter(columns.values())):
        cells = [f"{c[operation][0]:.2f} / {c[operation][1]:.2f}" for c in columns.values()]
        print(f"| {operation} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
