"""Benchmark: word error rate and turn latency of simulated calls on real speech.

Starts ``python app.py`` (default offline engines) on a free port, places ``--runs`` simulated
calls per corpus file with ``tools/callsim.py``, and prints markdown tables:

* word error rate of each file's caller transcript (after the μ-law round trip), against the
  manifest's reference text;
* voice-to-voice latency measured by callsim (wall clock: the caller's last voiced frame, as the
  server's turn ``end_ms`` says, to the first reply media message), median / p95 / min / max;
* the server's own per-stage latency (``latency_ms`` of each reply in the call record).

With ``--llm RATE`` the server answers with ``RESPONDER=llm`` against a local chat completions
server (``tests/llm_server.py``) that streams ``LLM_REPLY`` at RATE tokens per second over
server-sent events, like a model server would; ``--whole-reply`` uses the same model but waits for
its whole reply before speaking (``bench/whole_reply.py``), the baseline that streaming beats.

Usage: python bench/voice_to_voice.py [--runs 3] [--corpus tests/data] [--llm RATE [--whole-reply]] [FILE ...]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.wer import word_error_rate  # noqa: E402

STAGES = ("endpoint", "recognition", "responder", "synthesis", "total", "first_mark")
STAGE_NAMES = {
    "endpoint": "endpoint wait (last voiced frame → endpoint decided)",
    "recognition": "recognition (engine time)",
    "responder": "responder",
    "synthesis": "synthesis of the first sentence",
    "total": "first reply media sent (after the last voiced frame)",
    "first_mark": "first sentence heard (its mark echoed)",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LLM_REPLY = ("Sure, I can help with that. Our office opens at nine in the morning and closes at five "
             "in the evening. Is there anything else you would like to know?")


def start_server(log_path: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **settings, "PORT": str(port), "LOG_LEVEL": "info",
           "DATABASE_URL": f"sqlite:///{log_path.parent / 'calls.db'}", "RECORDINGS_DIR": str(log_path.parent / "recordings")}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/", timeout=1).ok:
                return process, url
        except requests.RequestException:  # refused, or accepted but the worker is still loading
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start; see {log_path}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    if not values:
        return "– | – | – | – | 0"
    return (f"{statistics.median(values):.0f} | {percentile(values, 0.95):.0f} | {min(values):.0f} | "
            f"{max(values):.0f} | {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="calls per file (default 3)")
    parser.add_argument("--corpus", type=Path, default=REPO / "tests" / "data", help="folder with manifest.tsv")
    parser.add_argument("--turns", type=int, default=1, help="caller turns per call: the file spoken this many times (default 1)")
    parser.add_argument("--llm", type=float, metavar="RATE", help="answer with RESPONDER=llm from a local server streaming RATE tokens/s")
    parser.add_argument("--whole-reply", action="store_true", help="with --llm: speak only once the whole reply has arrived")
    parser.add_argument("files", nargs="*", help="corpus file names (default: every file in the manifest)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        settings = {}
        if args.llm:
            from tests.llm_server import ChatServer, tokens

            llm = stack.enter_context(ChatServer(lambda messages, index: LLM_REPLY, token_delay_s=1 / args.llm))
            settings = {"RESPONDER": "bench.whole_reply:respond" if args.whole_reply else "llm",
                        "LLM_BASE_URL": llm.url, "LLM_MODEL": "bench"}
            print(f"LLM: a local server streams a {len(tokens(LLM_REPLY))}-token reply at {args.llm:g} tokens/s; "
                  f"{'whole reply (no streaming)' if args.whole_reply else 'streamed'}", file=sys.stderr)
        run(args, settings)


def run(args: argparse.Namespace, settings: dict[str, str]) -> None:
    with open(args.corpus / "manifest.tsv", newline="") as f:
        # The speech files (noise/ and backchannel/ hold sounds to mix in, not turns).
        references = {row["file"]: row["reference_text"] for row in csv.DictReader(f, delimiter="\t")
                      if "/" not in row["file"] and row["reference_text"]}
    files = args.files or list(references)
    work = Path(tempfile.mkdtemp(prefix="bench-v2v-"))
    process, url = start_server(work / "server.log", **settings)
    wers: dict[str, list[float]] = {name: [] for name in files}
    voice_to_voice: list[float] = []
    stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
    speculative = 0
    try:
        for run in range(args.runs):
            for name in files:
                report_path = work / f"{name}.{run}.json"
                command = [sys.executable, "tools/callsim.py", "--url", url, "--json", str(report_path),
                           "--out", str(work / f"{name}.{run}.wav")] + [str(args.corpus / name)] * args.turns
                subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=300)
                report = json.loads(report_path.read_text())
                turns = report["call"]["turns"]
                transcript = " ".join(t["text"] for t in turns if t["speaker"] == "caller" and "dtmf" not in t)
                wers[name].append(word_error_rate(" ".join([references[name]] * args.turns), transcript))
                voice_to_voice += [e["voice_to_voice_ms"] for e in report["latency"] if e["voice_to_voice_ms"] is not None]
                for turn in turns:
                    latency = turn.get("latency_ms", {})
                    speculative += bool(latency.get("speculative"))
                    for stage in STAGES:
                        if stage in latency:
                            stages[stage].append(latency[stage])
                print(f"run {run + 1}/{args.runs} {name}: WER {wers[name][-1]:.3f}, transcript {transcript!r}", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=10)

    endpointing = ", ".join(f"{name}={os.environ.get(name, 'default')}" for name in ("ENDPOINT_COMPLETE_MS", "SPECULATION_PAUSE_MS"))
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.runs} call(s) per file, {args.turns} turn(s) each; default engines (whisper tiny.en, piper), "
          f"{endpointing}; {speculative} of {len(stages['total'])} replies used a speculative transcript"
          + (f"; RESPONDER={settings['RESPONDER']} at {args.llm:g} tokens/s" if settings else "") + ".\n")
    print("| file | word error rate (per call) |\n|---|---|")
    for name in files:
        print(f"| {name} | {', '.join(f'{w:.3f}' for w in wers[name])} |")
    print("\n| latency, ms | median | p95 | min | max | n |\n|---|---|---|---|---|---|")
    print(f"| voice-to-voice (callsim, wall clock) | {summary(voice_to_voice)} |")
    for stage in STAGES:
        print(f"| server: {STAGE_NAMES[stage]} | {summary(stages[stage])} |")


if __name__ == "__main__":
    main()
