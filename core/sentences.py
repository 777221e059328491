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


class SentenceStream:
    """Split a reply that arrives in pieces (a streaming responder's chunks) into sentences.

    The incremental form of :func:`split_sentences`, with the same rules where they can be
    applied without seeing the rest of the text: a sentence is complete once the whitespace
    after its ``.``/``!``/``?`` has arrived; pieces shorter than ``min_chars`` wait for the
    next sentence; a piece longer than ``max_chars`` with no sentence end yet is cut at its last
    clause boundary (, ; :); and while nothing has been emitted, a buffer longer than
    ``first_max_chars`` gives up its first clause, so synthesis starts before the first
    sentence is finished. Unlike :func:`split_sentences`, a short last sentence is not joined to
    the one before it (that one may already be playing).

    Joined with single spaces, the pieces are the text pushed with its whitespace runs
    collapsed. Sans-I/O: push text with :meth:`push`, then call :meth:`finish` once.
    """

    def __init__(self, *, max_chars: int = 200, min_chars: int = 12, first_max_chars: int = 60) -> None:
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.first_max_chars = first_max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        """Add ``text`` (any length, may split words) and return the pieces it completed, in order."""
        self._buffer += text
        pieces: list[str] = []
        while True:
            piece = self._next_piece()
            if piece is None:
                return pieces
            pieces.append(piece)

    def finish(self) -> list[str]:
        """The text is complete: return what is left as pieces (``[]`` if only whitespace)."""
        rest, self._buffer = " ".join(self._buffer.split()), ""
        pieces = _cut_long(rest, self.max_chars) if rest else []
        self._emitted += len(pieces)
        return pieces

    def _next_piece(self) -> str | None:
        buffer = self._buffer
        for match in _SENTENCE_END.finditer(buffer):
            if len(buffer[: match.start()].strip()) >= self.min_chars:
                return self._take(match.end())
        if self._emitted == 0 and len(buffer.strip()) > self.first_max_chars:
            for match in _CLAUSE_END.finditer(buffer):  # the first clause of at least two words
                if len(buffer[: match.start()].split()) >= 2:
                    return self._take(match.end())
        if len(buffer.strip()) > self.max_chars:
            cut = None  # the last clause boundary that keeps the piece within max_chars
            for match in _CLAUSE_END.finditer(buffer):
                length = len(buffer[: match.start()].strip())
                if length >= self.min_chars and (cut is None or length <= self.max_chars):
                    cut = match.end()
            if cut is not None:
                return self._take(cut)
        return None

    def _take(self, end: int) -> str:
        piece, self._buffer = " ".join(self._buffer[:end].split()), self._buffer[end:]
        self._emitted += 1
        return piece
