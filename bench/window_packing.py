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

``--burst 5,10`` measures the recognizer instead: N of those utterances submitted at once from
N threads to ``WhisperRecognizer`` (2 engine threads, the server's default) with packing on and
off, alternately, ``--rounds`` times: core-seconds of the burst, each utterance's completion time
from the burst's start, and its text against its single run.

Usage::

    python bench/window_packing.py [--packs 10] [--runs 3] [--seed 1] [--save results.json]
    python bench/window_packing.py --burst 5,10 [--rounds 4]
    python bench/window_packing.py --word-cost [--rounds 4]

``--word-cost`` measures what the decoding modes cost, alternating them on the same audio:
single utterances without timestamps (production), with timestamp tokens, with word
timestamps too; and packs of 4 with 2 s gaps with and without word timestamps.
"""

from __future__ import annotations

import argparse
import json
import threading
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speech.recognition import WhisperRecognizer, _audio_data, _float_samples  # noqa: E402
from speech.window_packing import MIN_WORD_S, Span, Word, pack, packed_duration_s, split_each, words_of  # noqa: E402
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
        if word.end_s - word.start_s < MIN_WORD_S:
            found.add("word of no length")
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
    parser.add_argument("--load", type=Path, help="report on a --save file again (other --overhang-s) without decoding")
    parser.add_argument("--burst", help="comma-separated burst sizes: measure the recognizer under bursts instead")
    parser.add_argument("--rounds", type=int, default=4, help="bursts per size and variant (--burst), repeats (--word-cost)")
    parser.add_argument("--word-cost", action="store_true", help="measure the cost of timestamps and word timestamps instead")
    args = parser.parse_args()
    if args.word_cost:
        word_cost(args)
        return
    if args.burst:
        burst([int(n) for n in args.burst.split(",")], args)
        return
    if args.load:
        saved = json.loads(args.load.read_text())
        report(saved["pieces"], saved["packs"], args)
        return

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
                })
                print(f"size {size} pack {pack_index} gap {gap_s:g}: {cost:.2f} core-s, "
                      f"doubts {sorted(doubts(words, spans, args.overhang_s))}", file=sys.stderr, flush=True)
    recognizer.close()
    if args.save:
        args.save.write_text(json.dumps({"pieces": [{k: v for k, v in p.items() if k != "samples"} for p in pieces],
                                         "packs": records}, indent=1))
    report(pieces, records, args)


def run_burst(recognizer: WhisperRecognizer, utterances: list[np.ndarray]) -> tuple[float, list[float], list[str]]:
    """Submit every utterance at once, each from its own thread; (core-s, completion s of each, texts)."""
    start = threading.Barrier(len(utterances) + 1)
    done_s = [0.0] * len(utterances)
    texts = [""] * len(utterances)

    def one(index: int) -> None:
        start.wait()
        texts[index] = recognizer._run(utterances[index])
        done_s[index] = time.perf_counter() - began

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(utterances))]
    for thread in threads:
        thread.start()
    cpu0 = time.process_time()
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    return time.process_time() - cpu0, done_s, texts


def burst(sizes: list[int], args) -> None:
    pieces = corpus_pieces()
    variants = {"off": WhisperRecognizer(), "on": WhisperRecognizer(packing=True)}
    for recognizer in variants.values():
        recognizer.warm_up()
    singles = {}
    model = variants["off"].model()
    for index, piece in enumerate(pieces):
        singles[index] = clean(" ".join(s.text for s in decode(model, piece["samples"], SINGLE_OPTIONS)[0]))
    rng = np.random.default_rng(args.seed)
    rows = {}
    loads = []
    for size in sizes:
        for round_index in range(args.rounds):
            chosen = [int(i) for i in rng.choice(len(pieces), size, replace=False)]
            order = ("off", "on") if round_index % 2 == 0 else ("on", "off")  # alternate: the load drifts
            for name in order:
                recognizer = variants[name]
                packs0, packed0, unpacked0 = recognizer.packs, recognizer.packed_utterances, recognizer.unpacked_utterances
                loads.append(os.getloadavg()[0])
                cpu_s, done_s, texts = run_burst(recognizer, [pieces[i]["samples"] for i in chosen])
                row = rows.setdefault((size, name), {"cpu": [], "done": [], "same": 0, "same_norm": 0, "n": 0,
                                                     "packs": 0, "packed": 0, "unpacked": 0, "errors": 0.0, "words": 0})
                row["cpu"].append(cpu_s)
                row["done"].extend(done_s)
                row["packs"] += recognizer.packs - packs0
                row["packed"] += recognizer.packed_utterances - packed0
                row["unpacked"] += recognizer.unpacked_utterances - unpacked0
                for text, i in zip(texts, chosen):
                    row["n"] += 1
                    row["same"] += text == singles[i]
                    row["same_norm"] += normalize_text(text) == normalize_text(singles[i])
                    row["errors"] += wer_errors(pieces[i]["reference"], text)
                    row["words"] += len(normalize_text(pieces[i]["reference"]).split())
                print(f"burst {size} round {round_index} packing {name}: {cpu_s:.2f} core-s, "
                      f"last done {max(done_s):.2f} s", file=sys.stderr, flush=True)
    for recognizer in variants.values():
        recognizer.close()
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"WhisperRecognizer defaults (2 engine threads, {variants['on'].cpu_threads} CPU threads each), "
          f"packing gap {variants['on'].packing_gap_s:g} s; {args.rounds} bursts per row, on and off alternately; "
          f"load average (1 min) before a burst: {min(loads):.1f}-{max(loads):.1f}.\n")
    print("| burst | packing | core-s per burst (median) | core-s per utterance | completion s: p50 / p95 / max | "
          "packs / utterances from them / sent back to run alone | texts identical to single run | normalised identical | WER |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (size, name), row in rows.items():
        done = sorted(row["done"])
        p95 = done[min(len(done) - 1, int(0.95 * len(done)))]
        cpu = statistics.median(row["cpu"])
        print(f"| {size} | {name} | {cpu:.2f} | {cpu / size:.2f} | {statistics.median(done):.2f} / {p95:.2f} / "
              f"{done[-1]:.2f} | {row['packs']} / {row['packed']} / {row['unpacked']} | {row['same']}/{row['n']} | "
              f"{row['same_norm']}/{row['n']} | {row['errors'] / row['words']:.3f} |")


def word_cost(args) -> None:
    recognizer = WhisperRecognizer(num_workers=1)
    recognizer.warm_up()
    model = recognizer.model()
    pieces = corpus_pieces()
    rng = np.random.default_rng(args.seed)
    modes = {"single, no timestamps (production)": SINGLE_OPTIONS,
             "single, timestamps": PACK_OPTIONS_NO_WORDS,
             "single, timestamps + word timestamps": PACK_OPTIONS}
    costs: dict[str, list[float]] = {name: [] for name in [*modes, "pack of 4 (2 s gaps), timestamps",
                                                           "pack of 4 (2 s gaps), timestamps + word timestamps"]}
    for _ in range(args.rounds):
        for piece in pieces:
            for name, options in modes.items():
                costs[name].append(decode(model, piece["samples"], options)[1])
        for _ in range(5):
            chosen = [int(i) for i in rng.choice(len(pieces), 4, replace=False)]
            samples, _ = pack([pieces[i]["samples"] for i in chosen], 2.0)
            costs["pack of 4 (2 s gaps), timestamps"].append(decode(model, samples, PACK_OPTIONS_NO_WORDS)[1])
            costs["pack of 4 (2 s gaps), timestamps + word timestamps"].append(decode(model, samples, PACK_OPTIONS)[1])
    recognizer.close()
    print(f"{args.rounds} rounds, each mode alternately on the same audio; load average {os.getloadavg()[0]:.1f}.\n")
    print("| decode | runs | core-s: median | mean |\n|---|---|---|---|")
    for name, values in costs.items():
        print(f"| {name} | {len(values)} | {statistics.median(values):.3f} | {statistics.mean(values):.3f} |")


def apply_rules(record: dict, overhang_s: float) -> None:
    """Add the naive split, the whole-pack rule and the per-utterance rule to a pack's record."""
    spans = [Span(*span) for span in record["spans"]]
    words = [Word(*word) for word in record["words"]]
    decode_doubt = any(t > 0 for t in record["temperatures"]) or record["windows"] > 1
    record["naive"] = naive_split(words, spans)
    record["each"] = [None] * len(spans) if decode_doubt else split_each(words, spans, max_overhang_s=overhang_s)
    record["rule"] = None if None in record["each"] else record["each"]
    record["doubts"] = sorted(doubts(words, spans, overhang_s) | ({"decode: temperature > 0 or 2nd window"} if decode_doubt else set()))


def report(pieces: list[dict], records: list[dict], args) -> None:
    for record in records:
        apply_rules(record, args.overhang_s)
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; whisper tiny.en int8, "
          f"1 engine thread; {len(pieces)} utterances ({min(p['duration_s'] for p in pieces):.1f}-"
          f"{max(p['duration_s'] for p in pieces):.1f} s), {len(records) // (len(SIZES) * len(GAPS_S))} packs per cell, "
          f"seed {args.seed}; max overhang {args.overhang_s:g} s; load average {os.getloadavg()[0]:.2f} at the end.\n")
    single_mean = statistics.mean(p["single_cost"] for p in pieces)
    ref_words = sum(len(normalize_text(p["reference"]).split()) for p in pieces)
    single_errors = sum(wer_errors(p["reference"], p["single"]) for p in pieces)
    print(f"Single runs: {single_mean:.2f} core-s per utterance (mean of medians); corpus WER {single_errors / ref_words:.3f} "
          f"({single_errors:.0f} errors / {ref_words} words). Each utterance decoded alone with timestamps and word "
          f"timestamps: text identical to the production single run for "
          f"{sum(p['single_words'] == p['single'] for p in pieces)} of {len(pieces)}, normalised identical for "
          f"{sum(normalize_text(p['single_words']) == normalize_text(p['single']) for p in pieces)}, corpus WER "
          f"{sum(wer_errors(p['reference'], p['single_words']) for p in pieces) / ref_words:.3f}.\n")

    def same(text: str, i: int) -> tuple[bool, bool]:
        return text == pieces[i]["single"], normalize_text(text) == normalize_text(pieces[i]["single"])

    print("| utterances | gap s | window s | core-s per pack | per utterance vs single | without word timestamps: core-s per pack | "
          "naive split: identical / normalised identical | whole-pack rule: packs fell back | its split texts: identical / normalised | "
          "per-utterance rule: in doubt | its split texts: identical / normalised | core-s per utterance with its fallbacks, vs single |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for gap_s in GAPS_S:
            cell = [r for r in records if r["size"] == size and r["gap_s"] == gap_s]
            if not cell:
                continue
            per_pack = statistics.mean(r["cost"] for r in cell)
            singles = statistics.mean(sum(pieces[i]["single_cost"] for i in r["pieces"]) for r in cell)
            no_words = [r["cost_no_words"] for r in cell if r["cost_no_words"] is not None]
            naive = [same(t, i) for r in cell for t, i in zip(r["naive"], r["pieces"])]
            whole = [same(t, i) for r in cell if r["rule"] for t, i in zip(r["rule"], r["pieces"])]
            each = [same(t, i) for r in cell for t, i in zip(r["each"], r["pieces"]) if t is not None]
            in_doubt = sum(t is None for r in cell for t in r["each"])
            with_fallback = statistics.mean(
                r["cost"] + sum(pieces[i]["single_cost"] for t, i in zip(r["each"], r["pieces"]) if t is None) for r in cell)
            no_words_text = f"{statistics.mean(no_words):.2f}" if no_words else "—"
            print(f"| {size} | {gap_s:g} | {statistics.mean(r['window_s'] for r in cell):.1f} | {per_pack:.2f} | "
                  f"{per_pack / singles:.2f} | {no_words_text} | "
                  f"{sum(a for a, _ in naive)} / {sum(b for _, b in naive)} of {len(naive)} | "
                  f"{sum(r['rule'] is None for r in cell)}/{len(cell)} | "
                  f"{sum(a for a, _ in whole)} / {sum(b for _, b in whole)} of {len(whole)} | "
                  f"{in_doubt}/{size * len(cell)} | {sum(a for a, _ in each)} / {sum(b for _, b in each)} of {len(each)} | "
                  f"{with_fallback / size:.2f}, {with_fallback / singles:.2f} |")
    print("\nWhy (packs in doubt, a pack can have several reasons):\n")
    reasons: dict[str, int] = {}
    for r in records:
        for reason in r["doubts"]:
            reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
        print(f"- {reason}: {count} of {len(records)}")
    print("\nPer gap, per-utterance rule (in doubt: decoded alone, the single run's text):\n")
    print("| gap s | utterances | in doubt | from the pack | identical to single run | normalised identical | "
          "corpus WER: single runs / with packing | core-s with fallbacks / single runs |")
    print("|---|---|---|---|---|---|---|---|")
    for gap_s in GAPS_S:
        cell = [r for r in records if r["gap_s"] == gap_s]
        errors_single = errors_packed = words = total = doubtful = identical = normalised = 0
        cost = single_cost = 0.0
        for r in cell:
            cost += r["cost"]
            for text, i in zip(r["each"], r["pieces"]):
                piece = pieces[i]
                total += 1
                single_cost += piece["single_cost"]
                if text is None:
                    doubtful += 1
                    cost += piece["single_cost"]
                    text = piece["single"]
                a, b = same(text, i)
                identical += a
                normalised += b
                errors_single += wer_errors(piece["reference"], piece["single"])
                errors_packed += wer_errors(piece["reference"], text)
                words += len(normalize_text(piece["reference"]).split())
        print(f"| {gap_s:g} | {total} | {doubtful} | {total - doubtful} | {identical} | {normalised} | "
              f"{errors_single / words:.3f} / {errors_packed / words:.3f} | {cost / single_cost:.2f} |")
    print("\nBy utterance length, all gaps, per-utterance rule:\n")
    print("| utterance | in packs | in doubt | from the pack | identical to single run | normalised identical |")
    print("|---|---|---|---|---|---|")
    for low_s, high_s in ((0.0, 1.5), (1.5, 3.0), (3.0, 99.0)):
        taken = [(t, i) for r in records for t, i in zip(r["each"], r["pieces"]) if low_s <= pieces[i]["duration_s"] < high_s]
        split_out = [same(t, i) for t, i in taken if t is not None]
        print(f"| {low_s:g}-{high_s:g} s | {len(taken)} | {len(taken) - len(split_out)} | {len(split_out)} | "
              f"{sum(a for a, _ in split_out)} | {sum(b for _, b in split_out)} |".replace("-99 s", " s and longer"))
    print("\nTexts taken from a pack (per-utterance rule) that differ from the single run, with how often:\n")
    differ: dict[tuple[str, str, str], int] = {}
    for r in records:
        for text, i in zip(r["each"], r["pieces"]):
            if text is not None and text != pieces[i]["single"]:
                key = (pieces[i]["name"], text, pieces[i]["single"])
                differ[key] = differ.get(key, 0) + 1
    for (name, text, single), count in sorted(differ.items(), key=lambda item: (-item[1], item[0])):
        mark = "" if normalize_text(text) == normalize_text(single) else " (words differ)"
        print(f"- {name}: {text!r} vs {single!r}: {count}{mark}")


if __name__ == "__main__":
    main()
