"""Split a reply into sentences so the first one can play while the rest is synthesized."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) and whitespace.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")


def split_sentences(text: str, *, max_chars: int = 200, min_chars: int = 12, first_max_chars: int = 60) -> list[str]:
    """Split ``text`` into sentences for synthesis.

    Sentences shorter than ``min_chars`` are joined to the next one (so "Yes. I can." is one
    piece and piper does not start a new breath for two words); sentences longer than
    ``max_chars`` are cut at clause punctuation (, ; :) where possible. A first sentence longer
    than ``first_max_chars`` gives up its first clause as a piece of its own, so the caller
    hears the reply start sooner (synthesis time grows with the length of the piece).

    Args:
        text: the reply text.
        max_chars: longest piece before clause splitting, in characters.
        min_chars: shortest piece kept on its own, in characters.
        first_max_chars: longest first piece before its first clause is split off.

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
    if result and len(result[0]) > first_max_chars:
        head, sep, tail = _split_first_clause(result[0])
        if sep:
            result[0:1] = [head, tail]
    return result


def _split_first_clause(sentence: str) -> tuple[str, str, str]:
    """Split at the first clause boundary (, ; :) that leaves at least two words before it."""
    for match in _CLAUSE_END.finditer(sentence):
        head = sentence[: match.start()]
        if len(head.split()) >= 2:
            return head, match.group(), sentence[match.end() :]
    return sentence, "", ""


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
