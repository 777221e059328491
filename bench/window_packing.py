"""Several calls' utterances in one whisper window: cost and exactness against single runs (issue #13, part 4).

Whisper pads every utterance to a 30 s window, so most of a recognition's cost does not depend
on its length. This packs 2..6 utterances into one window with 1, 1.5, 2 or 3 s of silence
between them (``speech.window_packing.pack``), decodes it once with timestamps and word
timestamps, splits the words back (``speech.window_packing.split``) and compares each
utterance's text with its single run (the production decode: no timestamps).

Utterances: ``tests/data/jfk.flac`` and ``sr_english.wav`` cut at their pauses (20 ms frames
under -33 dBFS for >= 0.24 s, cut in the pause's middle) into phrases; every run of
consecutive phrases 0.8-5.5 s long is one utterance, at full level and at -6 dB, each put
through the phone path (``tests.phone.phone_round_trip``: soxr to 8 kHz, μ-law) and
upsampled to 16 kHz as the recognizer does. Each phrase has a hand-checked reference
(``PHRASES``), so each utterance has one.

Measured per pack: core-seconds (``time.process_time``: all threads of this process) of the
packed decode, against the median of ``--runs`` single runs of each utterance; the texts
from a naive split (word midpoint only) and from the rule (``split``: None = fall back);
the decode's own doubt (a temperature fallback, a second window). Also the core-seconds of
the same pack without word timestamps, for the first ``--cost-packs`` packs of each cell.

Usage::

    python bench/window_packing.py [--packs 10] [--runs 3] [--seed 1] [--save results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.recognition import WhisperRecognizer, _audio_data, _float_samples  # noqa: E402
from speech.window_packing import Span, Word, pack, packed_duration_s, split, words_of  # noqa: E402
from tests.phone import CORPUS, PHONE_SAMPLE_RATE, phone_round_trip, read_mono  # noqa: E402
from tools.wer import normalize_text, word_error_rate  # noqa: E402

# Each file's phrases between its pauses, in order, with their reference text (checked by ear).
PHRASES = {
    "jfk.flac": ["And so my fellow Americans,", "ask", "not", "what your country can do for you,",
                 "ask what you can do for your country."],
    "sr_english.wav": ["one", "two", "three"],
}
LEVELS_DB = (0.0, -6.0)
SIZES = (2, 3, 4, 5, 6)
GAPS_S = (1.0, 1.5, 2.0, 3.0)
PIECE_S = (0.8, 5.5)
FRAME_S = 0.02
PAUSE_DBFS = -33.0
PAUSE_MIN_S = 0.24

SINGLE_OPTIONS = dict(language="en", beam_size=1, condition_on_previous_text=False,
                      without_timestamps=True, vad_filter=False)
PACK_OPTIONS = dict(SINGLE_OPTIONS, without_timestamps=False, word_timestamps=True)
PACK_OPTIONS_NO_WORDS = dict(SINGLE_OPTIONS, without_timestamps=False, word_timestamps=False)


def pause_cuts(samples: np.ndarray, sample_rate: int) -> list[int]:
    """Sample indices of the middles of the pauses in ``samples`` (mono float, [-1, 1])."""
    frame = int(FRAME_S * sample_rate)
    count = len(samples) // frame
    rms = np.sqrt((samples[: count * frame].reshape(count, frame) ** 2).mean(axis=1))
    quiet = 20 * np.log10(rms + 1e-9) < PAUSE_DBFS
    cuts, run_start = [], None
    for index, is_quiet in enumerate([*quiet, False]):
        if is_quiet and run_start is None:
            run_start = index
        elif not is_quiet and run_start is not None:
            # Pauses only between speech: not the leading or trailing silence.
            if (index - run_start) * FRAME_S >= PAUSE_MIN_S and run_start > 0 and index < count:
                cuts.append((run_start + index) // 2 * frame)
            run_start = None
    return cuts


def corpus_pieces() -> list[dict]:
    """The utterances: name, reference text, duration, float32 16 kHz samples after the phone path."""
    pieces = []
    for name, phrases in PHRASES.items():
        samples, sample_rate = read_mono(CORPUS / name)
        cuts = pause_cuts(samples, sample_rate)
        if len(cuts) != len(phrases) - 1:
            raise SystemExit(f"{name}: found {len(cuts)} pauses, expected {len(phrases) - 1}")
        edges = [0, *cuts, len(samples)]
        for first in range(len(phrases)):
            for last in range(first, len(phrases)):
                duration_s = (edges[last + 1] - edges[first]) / sample_rate
                if not PIECE_S[0] <= duration_s <= PIECE_S[1]:
                    continue
                for level_db in LEVELS_DB:
                    part = samples[edges[first]: edges[last + 1]] * 10 ** (level_db / 20)
                    pcm = phone_round_trip(part, sample_rate)
                    pieces.append({
                        "name": f"{name.split('.')[0]}[{first}:{last + 1}]{level_db:+.0f}dB",
                        "reference": " ".join(phrases[first: last + 1]),
                        "duration_s": duration_s,
                        "samples": _float_samples(_audio_data(pcm, PHONE_SAMPLE_RATE)),
                    })
    return pieces


def decode(model, samples: np.ndarray, options: dict) -> tuple[list, float]:
    """Run ``model.transcribe`` to the end; return (segments, core-seconds)."""
    cpu0 = time.process_time()
    segments, _ = model.transcribe(samples, **options)
    segments = list(segments)
    return segments, time.process_time() - cpu0


def clean(text: str) -> str:
    return " ".join(text.split())


def naive_split(words: list[Word], spans: list[Span]) -> list[str]:
    """Each word to the utterance whose zone (to the gaps' middles) holds its midpoint; never in doubt."""
    middles = [(a.end_s + b.start_s) / 2 for a, b in zip(spans, spans[1:])]
    texts: list[list[str]] = [[] for _ in spans]
    for word in words:
        texts[sum(middle <= (word.start_s + word.end_s) / 2 for middle in middles)].append(word.text)
    return [clean("".join(parts)) for parts in texts]


def doubts(words: list[Word], spans: list[Span], overhang_s: float) -> set[str]:
    """Which of split's rules find doubt (the same tests as ``split``, all of them, for the tables)."""
    middles = [(a.end_s + b.start_s) / 2 for a, b in zip(spans, spans[1:])]
    found, owners, counts = set(), {}, [0] * len(spans)
    for word in words:
        if any(word.start_s < middle < word.end_s for middle in middles):
            found.add("crosses a gap's middle")
        mid = (word.start_s + word.end_s) / 2
        owner = sum(middle <= mid for middle in middles)
        if mid < spans[owner].start_s - overhang_s or mid > spans[owner].end_s + overhang_s:
            found.add("midpoint in a gap")
        if owners.setdefault(word.segment, owner) != owner:
            found.add("segment across utterances")
        counts[owner] += 1
    if not all(counts):
        found.add("utterance without words")
    return found


def wer_errors(reference: str, text: str) -> float:
    return word_error_rate(reference, text) * len(normalize_text(reference).split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", type=int, default=10, help="packs per (size, gap) cell")
    parser.add_argument("--runs", type=int, default=3, help="single runs per utterance (median cost)")
    parser.add_argument("--cost-packs", type=int, default=3, help="packs per cell also decoded without word timestamps")
    parser.add_argument("--overhang-s", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", type=Path, help="write every pack's words and texts here (JSON)")
    args = parser.parse_args()

    recognizer = WhisperRecognizer(num_workers=1)
    recognizer.warm_up()
    model = recognizer.model()
    pieces = corpus_pieces()
    for piece in pieces:
        costs = []
        for _ in range(args.runs):
            segments, cost = decode(model, piece["samples"], SINGLE_OPTIONS)
            costs.append(cost)
        piece["single"] = clean(" ".join(s.text for s in segments))
        piece["single_cost"] = statistics.median(costs)
        segments, _ = decode(model, piece["samples"], PACK_OPTIONS)
        piece["single_words"] = clean("".join(w.text for w in words_of(segments)))

    rng = np.random.default_rng(args.seed)
    records = []
    for size in SIZES:
        for pack_index in range(args.packs):
            while True:  # the same utterances for every gap: the pack must fit with the widest
                chosen = [int(i) for i in rng.choice(len(pieces), size, replace=False)]
                if packed_duration_s([pieces[i]["duration_s"] for i in chosen], max(GAPS_S)) <= 29.5:
                    break
            for gap_s in GAPS_S:
                samples, spans = pack([pieces[i]["samples"] for i in chosen], gap_s)
                segments, cost = decode(model, samples, PACK_OPTIONS)
                cost_no_words = None
                if pack_index < args.cost_packs:
                    cost_no_words = decode(model, samples, PACK_OPTIONS_NO_WORDS)[1]
                words = words_of(segments)
                records.append({
                    "size": size, "gap_s": gap_s, "pieces": chosen, "cost": cost,
                    "cost_no_words": cost_no_words, "window_s": spans[-1].end_s,
                    "spans": [[s.start_s, s.end_s] for s in spans],
                    "words": [[w.start_s, w.end_s, w.text, w.segment] for w in words],
                    "temperatures": [s.temperature for s in segments],
                    "windows": len({s.seek for s in segments}),
                    "naive": naive_split(words, spans),
                    "rule": split(words, spans, max_overhang_s=args.overhang_s),
                    "doubts": sorted(doubts(words, spans, args.overhang_s)),
                })
                print(f"size {size} pack {pack_index} gap {gap_s:g}: {cost:.2f} core-s, "
                      f"{'fallback ' + str(records[-1]['doubts']) if records[-1]['rule'] is None else 'split'}",
                      file=sys.stderr, flush=True)
    recognizer.close()
    if args.save:
        args.save.write_text(json.dumps({"pieces": [{k: v for k, v in p.items() if k != "samples"} for p in pieces],
                                         "packs": records}, indent=1))
    report(pieces, records, args)


def report(pieces: list[dict], records: list[dict], args) -> None:
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; whisper tiny.en int8, "
          f"1 engine thread; {len(pieces)} utterances ({min(p['duration_s'] for p in pieces):.1f}-"
          f"{max(p['duration_s'] for p in pieces):.1f} s), {args.packs} packs per cell, seed {args.seed}; "
          f"single runs: median of {args.runs}; load average {os.getloadavg()[0]:.2f}.\n")
    single_mean = statistics.mean(p["single_cost"] for p in pieces)
    single_ref_errors = sum(wer_errors(p["reference"], p["single"]) for p in pieces)
    ref_words = sum(len(normalize_text(p["reference"]).split()) for p in pieces)
    same_with_words = sum(p["single_words"] == p["single"] for p in pieces)
    print(f"Single runs: {single_mean:.2f} core-s per utterance (mean of the medians); corpus WER "
          f"{single_ref_errors / ref_words:.3f} ({single_ref_errors:.0f} errors / {ref_words} words); the same "
          f"utterance decoded alone with timestamps and word timestamps gives the identical text for "
          f"{same_with_words} of {len(pieces)} (normalised: "
          f"{sum(normalize_text(p['single_words']) == normalize_text(p['single']) for p in pieces)}); its corpus WER "
          f"{sum(wer_errors(p['reference'], p['single_words']) for p in pieces) / ref_words:.3f}.\n")
    print("| utterances | gap s | window s (mean) | core-s per pack | core-s per utterance | vs single | "
          "without word timestamps: core-s per pack | naive split: texts identical | naive: normalised identical | "
          "rule: fell back | rule, split: texts identical | normalised identical | identical to single run with timestamps | "
          "decode doubt (temperature > 0 / 2nd window) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for gap_s in GAPS_S:
            cell = [r for r in records if r["size"] == size and r["gap_s"] == gap_s]
            if not cell:
                continue
            per_pack = statistics.mean(r["cost"] for r in cell)
            singles = statistics.mean(sum(pieces[i]["single_cost"] for i in r["pieces"]) for r in cell)
            no_words = [r["cost_no_words"] for r in cell if r["cost_no_words"] is not None]
            texts = [(t, pieces[i]["single"]) for r in cell for t, i in zip(r["naive"], r["pieces"])]
            split_texts = [(t, pieces[i]["single"], pieces[i]["single_words"])
                           for r in cell if r["rule"] for t, i in zip(r["rule"], r["pieces"])]
            fell_back = sum(r["rule"] is None for r in cell)
            no_words_text = f"{statistics.mean(no_words):.2f}" if no_words else "—"
            print(f"| {size} | {gap_s:g} | {statistics.mean(r['window_s'] for r in cell):.1f} | {per_pack:.2f} | "
                  f"{per_pack / size:.2f} | {per_pack / singles:.2f} | {no_words_text} |", end="")
            print(f" {sum(a == b for a, b in texts)}/{len(texts)} | "
                  f"{sum(normalize_text(a) == normalize_text(b) for a, b in texts)}/{len(texts)} | "
                  f"{fell_back}/{len(cell)} | {sum(a == b for a, b, _ in split_texts)}/{len(split_texts)} | "
                  f"{sum(normalize_text(a) == normalize_text(b) for a, b, _ in split_texts)}/{len(split_texts)} | "
                  f"{sum(a == c for a, _, c in split_texts)}/{len(split_texts)} | "
                  f"{sum(any(t > 0 for t in r['temperatures']) for r in cell)} / {sum(r['windows'] > 1 for r in cell)} |")
    print("\nWhy the rule fell back (packs; a pack can have several reasons):\n")
    reasons: dict[str, int] = {}
    for r in records:
        for reason in r["doubts"]:
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"- {reason}: {count} of {len(records)}")
    print("\n| gap s | packs | fell back | utterances split | differ from single run | normalised differ | "
          "corpus WER: single / packed+fallback |")
    print("|---|---|---|---|---|---|---|")
    for gap_s in GAPS_S:
        cell = [r for r in records if r["gap_s"] == gap_s]
        errors_single = errors_packed = words = differ = differ_normalised = split_count = 0
        for r in cell:
            for k, i in enumerate(r["pieces"]):
                piece = pieces[i]
                text = r["rule"][k] if r["rule"] else piece["single"]
                split_count += bool(r["rule"])
                differ += text != piece["single"]
                differ_normalised += normalize_text(text) != normalize_text(piece["single"])
                errors_single += wer_errors(piece["reference"], piece["single"])
                errors_packed += wer_errors(piece["reference"], text)
                words += len(normalize_text(piece["reference"]).split())
        print(f"| {gap_s:g} | {len(cell)} | {sum(r['rule'] is None for r in cell)} | {split_count} | {differ} | {differ_normalised} | "
              f"{errors_single / words:.3f} / {errors_packed / words:.3f} |")
    print("\nTexts that differ from the single run although the rule split the pack:\n")
    for r in records:
        if r["rule"]:
            for k, i in enumerate(r["pieces"]):
                if r["rule"][k] != pieces[i]["single"]:
                    print(f"- {r['size']} utterances, gap {r['gap_s']:g} s, {pieces[i]['name']}: "
                          f"{r['rule'][k]!r} vs {pieces[i]['single']!r}")


if __name__ == "__main__":
    main()
