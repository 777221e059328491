"""Word error rate with a text normaliser, for scoring transcripts against references.

The normaliser makes "1, 2, 3." and "One two three" the same words, so the
score counts recognition errors rather than formatting choices.
"""

import re

import jiwer

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand"))

# A number: digits with optional thousands separators ("1,000") and decimals ("2.5").
# "1, 2, 3" stays three numbers because the separator must be followed by exactly 3 digits.
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?")
_APOSTROPHES = re.compile(r"['’]")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def _integer_words(n: int) -> str:
    """Spell a non-negative integer in English words ("123" → "one hundred twenty three")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {_integer_words(rest)}" if rest else "")
    for scale, word in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{_integer_words(high)} {word}" + (f" {_integer_words(rest)}" if rest else "")
    raise AssertionError("unreachable")


def _number_words(match: re.Match[str]) -> str:
    whole, _, fraction = match.group().replace(",", "").partition(".")
    words = _integer_words(int(whole))
    if fraction:
        words += " point " + " ".join(_ONES[int(digit)] for digit in fraction)
    return f" {words} "


def normalize_text(text: str) -> str:
    """Normalise a transcript for WER: lower case, digits → words, no punctuation.

    Apostrophes are dropped inside words ("don't" → "dont"); every other non-letter,
    non-digit character separates words. Numbers are spelled out ("1, 2, 3." →
    "one two three", "1,000" → "one thousand", "2.5" → "two point five").

    Args:
        text: any transcript or reference.

    Returns:
        Words separated by single spaces ("" if there are none).
    """
    text = _APOSTROPHES.sub("", text.lower())
    text = _NUMBER.sub(_number_words, text)
    return " ".join(_NON_WORD.sub(" ", text).split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Return the word error rate of ``hypothesis`` against ``reference`` after normalising both.

    WER = (substitutions + deletions + insertions) / number of reference words (jiwer).

    Args:
        reference: the correct text.
        hypothesis: the recognised text ("" counts as deleting every word).

    Returns:
        WER ≥ 0.0 (can exceed 1.0 with many insertions).

    Raises:
        ValueError: ``reference`` has no words after normalising (WER is undefined).
    """
    ref = normalize_text(reference)
    if not ref:
        raise ValueError("reference has no words; WER is undefined")
    return float(jiwer.wer(ref, normalize_text(hypothesis)))
