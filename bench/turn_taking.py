"""End of turn: fragment answers against waiting, on labelled pause points of real speech (issue #14 part 3).

``--build`` makes ``tests/data/pause_points.tsv`` from the speech files in ``tests/data``: each
file goes through the phone path (soxr to 8 kHz, μ-law and back) and the server's VAD (WebRTC
mode 3, 20 ms frames). Every file is one caller turn, so:

* a *natural* pause point is each silence of at least ``SPECULATION_PAUSE_MS`` (200) between
  the file's first and last voiced frames: *incomplete*, with its measured length;
* a *hesitation* point is each word end inside the turn (whisper tiny.en's word timestamps on
  the whole file) that is not already a natural pause: *incomplete*; where a caller stops to
  think mid-sentence, its length is whatever they take;
* the end of the last voiced frame is *complete*.

At each point the server's recognizer transcribes the audio from 300 ms before the first voiced
frame (the endpointer's pre-roll) up to the point: what speculative recognition has at that
pause. Transcripts vary a little between runs of whisper, so the file is a snapshot.

Without ``--build`` it reads the snapshot and scores end-of-turn policies (``core.turn_end``) as
if the reply were ready the moment the policy allows it (a fast pipeline, the worst case for
fragments):

* *fragments*: a natural pause longer than the silence the policy required (the reply would
  start while the caller still had more to say; the session then treats the caller's next
  words as a barge-in), and hesitation points answered within a hesitation of 500 and 1000 ms;
* *wait on complete turns*: the silence required at complete points (the end-of-turn part of
  voice-to-voice latency), median and max.

Policies: one fixed endpoint of 600 ms (before issue #14) and of 300 ms; ``core.turn_end``
with the defaults, for a caller's first turn and for a later turn of a caller who has not
paused mid-turn before.

``--calls`` also runs the whole server (``python app.py``) against callsim under each condition
(clean; the bot's echo at −20 and −10 dB, 160 ms late, with and without
``ECHO_CANCELLATION``; real street noise at 10 and 5 dB SNR) with one script of real speech:
"one two three", a real "uh-huh" over the reply 1.5 s in, JFK, a barge-in 1 s into the reply
("go forward ten meters"), the ARCTIC prompt and the cards. From each call's report:

* *false barge-ins*: ``clear`` messages beyond the one the script's barge-in should cause, per
  minute of bot speech (the bot turns' durations);
* *barge-in reaction*: the interrupted bot turn's end (the ``clear``) after the first voiced
  frame of the caller turn that talked over it, media clock;
* *fragment answers*: bot replies that started while the caller was still saying a script item;
* voice to voice (callsim's wall clock, caller's last voiced frame to the first reply audio),
  median and p95.

Usage::

    python bench/turn_taking.py [--build] [--calls]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.backchannel import words_of  # noqa: E402
from core.turn_end import TurnEndConfig, TurnEndPolicy  # noqa: E402

DATA = REPO / "tests" / "data"
POINTS = DATA / "pause_points.tsv"
SPEECH_FILES = (
    "jfk.flac", "sr_english.wav", "numbers.flac", "goforward.flac", "arctic_a0007.flac",
    *(f"cards_00{n}.flac" for n in range(1, 6)),
    *(f"librivox_ss01_{n}.flac" for n in ("0870", "0880", "0890", "0920", "0930")),
)
FRAME_MS = 20
PHONE_RATE = 8000
NATURAL_MIN_MS = 200  # SPECULATION_PAUSE_MS: shorter pauses never reach a decision
PRE_ROLL_MS = 300
HESITATIONS_MS = (500, 1000)
FIELDS = ("file", "point_ms", "label", "kind", "pause_ms", "transcript")


@dataclass(frozen=True)
class PausePoint:
    file: str
    point_ms: int  # end of the last voiced frame (natural, complete) or of a word (hesitation)
    label: str  # "complete" | "incomplete"
    kind: str  # "natural" | "hesitation" | "end"
    pause_ms: int | None  # measured silence of a natural pause
    transcript: str


def read_points(path: Path = POINTS) -> list[PausePoint]:
    """The labelled pause points of ``path`` (tab-separated, ``FIELDS``)."""
    with open(path, newline="") as f:
        return [PausePoint(r["file"], int(r["point_ms"]), r["label"], r["kind"],
                           int(r["pause_ms"]) if r["pause_ms"] else None, r["transcript"])
                for r in csv.DictReader(f, delimiter="\t")]


def build(path: Path = POINTS) -> None:
    """Measure the pause points of ``SPEECH_FILES`` and write them to ``path``."""
    import numpy as np

    from audio.resample import resample
    from audio.vad import WebRtcVad
    from speech.recognition import WhisperRecognizer
    from tests.phone import phone_round_trip, read_mono

    recognizer = WhisperRecognizer()
    recognizer.warm_up()
    frame_samples = PHONE_RATE * FRAME_MS // 1000
    rows = []
    for name in SPEECH_FILES:
        samples, rate = read_mono(DATA / name)
        pcm = np.frombuffer(phone_round_trip(samples, rate), dtype="<i2")
        vad = WebRtcVad(mode=3, sample_rate=PHONE_RATE, frame_ms=FRAME_MS)  # one per call: it adapts to the line
        voiced = [vad.is_speech(pcm[i : i + frame_samples].tobytes())
                  for i in range(0, len(pcm) - frame_samples + 1, frame_samples)]
        frames = [i for i, v in enumerate(voiced) if v]
        first, last = frames[0], frames[-1]
        natural = []  # (start_ms, length_ms) of each silence inside the turn
        i = first
        while i <= last:
            if voiced[i]:
                i += 1
                continue
            j = i
            while not voiced[j]:
                j += 1
            if (j - i) * FRAME_MS >= NATURAL_MIN_MS:
                natural.append((i * FRAME_MS, (j - i) * FRAME_MS))
            i = j
        whole = resample(pcm, PHONE_RATE, 16000).astype(np.float32) / 32768.0
        segments, _ = recognizer.model().transcribe(whole, beam_size=5, word_timestamps=True, language="en")
        word_ends = [round(w.end * 1000 / FRAME_MS) * FRAME_MS for s in segments for w in s.words][:-1]
        points = [(start, "incomplete", "natural", length) for start, length in natural]
        points += [(end, "incomplete", "hesitation", None) for end in word_ends
                   if first * FRAME_MS < end < last * FRAME_MS
                   and not any(start - FRAME_MS * 5 <= end <= start + length for start, length in natural)]
        points.append(((last + 1) * FRAME_MS, "complete", "end", None))
        begin = max(0, first * FRAME_MS - PRE_ROLL_MS) * PHONE_RATE // 1000
        for point_ms, label, kind, pause_ms in sorted(points):
            audio = pcm[begin : point_ms * PHONE_RATE // 1000].tobytes()
            text = recognizer.transcribe(audio, PHONE_RATE)
            rows.append(PausePoint(name, point_ms, label, kind, pause_ms, text))
            print(f"{name} {point_ms:6d} {label:10s} {kind:10s} {pause_ms or '':>5} {text!r}", file=sys.stderr)
    recognizer.close()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(FIELDS)
        for p in rows:
            writer.writerow([p.file, p.point_ms, p.label, p.kind, "" if p.pause_ms is None else p.pause_ms, p.transcript])


def score(points: list[PausePoint], required_ms) -> dict[str, object]:
    """Fragments and waits of one policy. ``required_ms(point, earlier_pauses_ms) -> int`` is the
    silence it requires before answering ``point``, having seen the caller go on after each of
    ``earlier_pauses_ms`` (the natural pauses before it in the same file: the session keeps a
    caller's pause history). Points with no words are never answered and are left out."""
    natural = [p for p in points if p.kind == "natural" and words_of(p.transcript)]
    hesitations = [p for p in points if p.kind == "hesitation" and words_of(p.transcript)]
    complete = [p for p in points if p.label == "complete"]

    def required(point: PausePoint) -> int:
        earlier = [p.pause_ms for p in natural if p.file == point.file and p.point_ms < point.point_ms]
        return required_ms(point, earlier)

    waits = [required(p) for p in complete]
    return {
        "natural": sum(1 for p in natural if required(p) < p.pause_ms),
        "natural_of": len(natural),
        **{f"hesitation_{h}": sum(1 for p in hesitations if required(p) < h) for h in HESITATIONS_MS},
        "hesitation_of": len(hesitations),
        "wait_median": statistics.median(waits),
        "wait_max": max(waits),
    }


def policies(config: TurnEndConfig):
    """(name, required_ms) of each policy compared."""
    def turn_end(answered_turns: int):
        def required(point: PausePoint, earlier_pauses_ms: list[int]) -> int:
            policy = TurnEndPolicy(config)
            for _ in range(answered_turns):
                policy.observe_answered_turn()
            for pause_ms in earlier_pauses_ms:
                policy.observe_continued_pause(pause_ms)
            return policy.required_silence_ms(point.transcript)[0]
        return required

    name = f"`core.turn_end` {config.complete_ms}/{config.undecided_ms}/{config.incomplete_ms}"
    return [
        ("one fixed endpoint, 600 ms (before)", lambda p, earlier: 600),
        ("one fixed endpoint, 300 ms", lambda p, earlier: 300),
        (f"{name}, the caller's first turn", turn_end(0)),
        (f"{name}, a later turn", turn_end(1)),
    ]


CALL_SCRIPT = ("sr_english.wav", "over:1.5:backchannel/uhuh.flac", "jfk.flac", "interrupt:1.0", "goforward.flac",
               "arctic_a0007.flac", "cards_005.flac")
CALL_CONDITIONS = (  # (name, callsim options, server settings)
    ("clean", (), {}),
    ("echo −20 dB, `ECHO_CANCELLATION=false`", ("--echo-db", "-20"), {"ECHO_CANCELLATION": "false"}),
    ("echo −20 dB", ("--echo-db", "-20"), {}),
    ("echo −10 dB", ("--echo-db", "-10"), {}),
    ("street noise 10 dB SNR", ("--noise", "noise/street.flac:10"), {}),
    ("street noise 5 dB SNR", ("--noise", "noise/street.flac:5"), {}),
)


def call_metrics(report: dict) -> dict[str, float | int | None]:
    """False barge-ins, barge-in reaction, fragments and voice to voice of one callsim report."""
    turns = report["call"]["turns"]
    bots = [t for t in turns if t["speaker"] == "bot" and t["end_ms"] is not None]
    callers = [t for t in turns if t["speaker"] == "caller" and "dtmf" not in t]
    bot_minutes = sum(t["end_ms"] - t["start_ms"] for t in bots) / 60000
    interrupted = [t for t in bots if t.get("interrupted")]
    reactions = []
    for bot in interrupted:
        over = [c for c in callers if bot["start_ms"] <= c["start_ms"] <= bot["end_ms"]]
        if over:
            reactions.append(bot["end_ms"] - over[0]["start_ms"])
    expected_clears = sum(1 for item in report["script"] if item.startswith("interrupt:"))
    spoken = [(s["start_ms"], s["end_ms"]) for s in report["spoken"] if s["speaker"] == "caller"]
    fragments = sum(1 for bot in bots if any(start + 100 < bot["start_ms"] < end - 100 for start, end in spoken))
    latencies = [e["voice_to_voice_ms"] for e in report["latency"] if e["voice_to_voice_ms"] is not None]
    return {
        "false_per_min": max(0, report["counts"]["clears_received"] - expected_clears) / bot_minutes if bot_minutes else 0.0,
        "reaction_ms": reactions[0] if reactions else None,
        "fragments": fragments,
        "v2v_median": statistics.median(latencies) if latencies else None,
        "v2v_p95": max(latencies) if latencies else None,  # few replies per call: the slowest
        "callers": len(callers),
    }


def run_calls() -> None:
    """Run ``CALL_SCRIPT`` once per condition against a fresh server and print the table."""
    import json
    import subprocess
    import tempfile

    from bench.voice_to_voice import start_server

    def in_data(item: str) -> str:  # "over:1.5:backchannel/uhuh.flac", "noise/street.flac:10", "jfk.flac"
        if item.startswith("over:"):
            seconds, path = item[len("over:"):].split(":", 1)
            return f"over:{seconds}:{DATA / path}"
        if item.startswith(("interrupt:", "-")):  # "--echo-db", "-20"
            return item
        path, _, snr = item.partition(":")
        return str(DATA / path) + (f":{snr}" if snr else "")

    print("\n| condition | false barge-ins per min of bot speech | barge-in reaction | fragment answers | "
          "caller turns (of 5) | voice to voice, median / slowest |\n|---|---|---|---|---|---|")
    for name, options, settings in CALL_CONDITIONS:
        work = Path(tempfile.mkdtemp(prefix="bench-turns-"))
        process, url = start_server(work / "server.log", **settings)
        try:
            report_path = work / "report.json"
            subprocess.run([sys.executable, "tools/callsim.py", "--url", url, "--json", str(report_path),
                            *map(in_data, options), *map(in_data, CALL_SCRIPT)],
                           cwd=REPO, check=True, capture_output=True, timeout=600)
            m = call_metrics(json.loads(report_path.read_text()))
        finally:
            process.terminate()
            process.wait(timeout=30)
        reaction = "–" if m["reaction_ms"] is None else f"{m['reaction_ms']} ms"
        v2v = "–" if m["v2v_median"] is None else f"{m['v2v_median']:.0f} / {m['v2v_p95']:.0f} ms"
        print(f"| {name} | {m['false_per_min']:.1f} | {reaction} | {m['fragments']} | {m['callers']} | {v2v} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help=f"re-measure {POINTS.relative_to(REPO)} first (whisper)")
    parser.add_argument("--calls", action="store_true", help="also run whole calls under each condition (about 6 min)")
    args = parser.parse_args()
    if args.build:
        build()
    points = read_points()
    files = len({p.file for p in points})
    print(f"{len(points)} pause points from {files} files: "
          f"{sum(p.label == 'complete' for p in points)} complete, {sum(p.kind == 'natural' for p in points)} natural "
          f"pauses, {sum(p.kind == 'hesitation' for p in points)} hesitation points\n")
    print("| policy | fragments at natural pauses | hesitation answered within 500 ms | within 1000 ms | "
          "wait on complete turns, median / max |")
    print("|---|---|---|---|---|")
    for name, required in policies(TurnEndConfig()):
        s = score(points, required)
        print(f"| {name} | {s['natural']} of {s['natural_of']} | {s['hesitation_500']} of {s['hesitation_of']} | "
              f"{s['hesitation_1000']} of {s['hesitation_of']} | {s['wait_median']:.0f} / {s['wait_max']} ms |")
    if args.calls:
        run_calls()


if __name__ == "__main__":
    main()
