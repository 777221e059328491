"""Split a reply into sentences so the first one can play while the rest is synthesized."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, *, max_chars: int = 200, min_chars: int = 12) -> list[str]:
    """Split ``text`` into sentences for synthesis.

    Sentences shorter than ``min_chars`` are joined to the next one (so "Yes. I can." is one
    piece and piper does not start a new breath for two words); sentences longer than
    ``max_chars`` are cut at clause punctuation (, ; :) where possible.

    Args:
        text: the reply text.
        max_chars: longest piece before clause splitting, in characters.
        min_chars: shortest piece kept on its own, in characters.

    Returns:
        The pieces in order, stripped, never empty strings. ``[]`` for blank text.
    """
    pieces = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    merged: list[str] = []
    carry = ""
    for piece in pieces:
        carry = f"{carry} {piece}".strip() if carry else piece
        if len(carry) >= min_chars:
            merged.append(carry)
            carry = ""
    if carry:
        if merged and len(carry) < min_chars:
            merged[-1] = f"{merged[-1]} {carry}"
        else:
            merged.append(carry)
    result: list[str] = []
    for sentence in merged:
        result.extend(_cut_long(sentence, max_chars))
    return result


def _cut_long(sentence: str, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    current = ""
    for clause in _CLAUSE_END.split(sentence):
        candidate = f"{current} {clause}".strip() if current else clause
        if current and len(candidate) > max_chars:
            parts.append(current)
            current = clause
        else:
            current = candidate
    if current:
        parts.append(current)
    return parts
