"""Split a reply into sentences so the first one can play while the rest is synthesized.

A reply is text, an audio prompt (``core.responder.Play``), or a list of both; its items are
its texts' sentences and its prompts, in order, each played and marked on its own.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence, Union

from core.responder import Play

ReplyItem = Union[str, Play]
"""One item of a reply: a sentence to synthesize, or a prompt to play."""

Reply = Union[str, Play, Sequence[ReplyItem]]
"""What a responder may return (besides ``None``): text, a prompt, or a list or tuple of both."""

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


def split_reply(reply: Reply | None) -> list[ReplyItem]:
    """The items of ``reply``: each text split as by :func:`split_sentences`, each ``Play`` kept as one item.

    A list or tuple's texts are split one by one (a sentence never spans two of them); blank
    texts and ``None`` in it are left out. ``[]`` for ``None`` or a blank reply.
    """
    if reply is None:
        return []
    if isinstance(reply, (str, Play)):
        reply = (reply,)
    items: list[ReplyItem] = []
    for part in reply:
        if isinstance(part, Play):
            items.append(part)
        elif part is not None:
            items.extend(split_sentences(str(part)))
    return items


def item_text(item: ReplyItem) -> str:
    """How an item shows in the call record: a sentence as it is, a prompt as ``[played hold.wav]``."""
    return item.transcript if isinstance(item, Play) else item


def reply_text(items: Iterable[ReplyItem]) -> str:
    """The record text of a reply's items: their texts joined with single spaces."""
    return " ".join(item_text(item) for item in items)


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
    collapsed. A ``Play`` pushed ends the text before it: that text comes out as a piece (however
    short or unfinished), then the ``Play`` itself. Sans-I/O: push with :meth:`push`, then call
    :meth:`finish` once.
    """

    def __init__(self, *, max_chars: int = 200, min_chars: int = 12, first_max_chars: int = 60) -> None:
        self.max_chars = max_chars
        self.min_chars = min_chars
        self.first_max_chars = first_max_chars
        self._buffer = ""
        self._emitted = 0

    def push(self, text: str | Play) -> list[ReplyItem]:
        """Add ``text`` (any length, may split words) and return the pieces it completed, in order.

        A ``Play``: the text waiting is flushed as a piece, followed by the ``Play``.
        """
        if isinstance(text, Play):
            pieces: list[ReplyItem] = list(self.finish())
            self._emitted += 1
            return pieces + [text]
        self._buffer += text
        pieces = []
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
