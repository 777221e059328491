"""Synthesized audio in a stream's wire format, and a cache of the fixed phrases.

The greeting, the busy message, the apology, the idle nudge and the goodbyes are the same words on
every call: synthesizing them per call spends the engines' time when it is scarcest (a burst of
callers all hear the greeting within seconds: 25 greetings are about 7 core-seconds of piper).
``PhraseCache`` keeps each of their sentences' wire audio per engine and stream format; nothing
a caller said or a responder answered is ever cached (it may be personal data), only the phrases
the settings configure.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from audio.stream_format import StreamFormat
from core.sentences import split_sentences

log = logging.getLogger(__name__)


def synthesize_for_stream(wire: StreamFormat, synthesize: Callable, text: str) -> bytes:
    """Synthesize ``text`` and convert it to the stream's wire format: soxr to its rate, then
    μ-law or L16 (runs in a thread).

    Returns:
        The wire bytes: μ-law (1 byte per sample) or L16 little-endian, mono, at ``wire.sample_rate``.
    """
    audio = synthesize(text)
    return wire.encode(audio.samples, audio.sample_rate)


class PhraseCache:
    """Wire audio of the fixed phrases' sentences, by (engine name, stream format, sentence).

    Args:
        phrases: the fixed texts (greeting, apology, …); each is split into sentences as a reply is
            (``core.sentences.split_sentences``), since the call worker synthesizes sentence by sentence.

    Only touched from the gevent hub (the call workers' greenlets), so it needs no lock. Bounded by
    the number of phrases × engines × stream formats (at most a few dozen entries of a few KB).
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self.sentences = frozenset(s for text in phrases if text.strip() for s in split_sentences(text))
        self._audio: dict[tuple[str, StreamFormat, str], bytes] = {}
        self.hits = 0

    def get(self, engine_name: str, wire: StreamFormat, sentence: str) -> bytes | None:
        """The cached wire audio of ``sentence``, or None (not a fixed phrase, or not synthesized yet)."""
        audio = self._audio.get((engine_name, wire, sentence))
        if audio is not None:
            self.hits += 1
        return audio

    def put(self, engine_name: str, wire: StreamFormat, sentence: str, audio: bytes) -> None:
        """Keep ``audio`` if ``sentence`` is one of the fixed phrases' sentences (else do nothing)."""
        if sentence in self.sentences and audio:
            self._audio[(engine_name, wire, sentence)] = audio

    def __len__(self) -> int:
        return len(self._audio)

    def prefill(self, engine_name: str, wire: StreamFormat, synthesize: Callable, texts: Iterable[str]) -> None:
        """Synthesize the sentences of ``texts`` now (start-up, before any call), in the calling thread.

        A sentence that fails to synthesize is logged and left out; a call will try it again.
        """
        for text in texts:
            for sentence in split_sentences(text) if text.strip() else ():
                if (engine_name, wire, sentence) in self._audio:
                    continue
                try:
                    self.put(engine_name, wire, sentence, synthesize_for_stream(wire, synthesize, sentence))
                except Exception as exc:  # an online voice offline at start-up: calls will say it later
                    log.warning("could not synthesize the fixed phrase %r with %s: %s", sentence, engine_name, exc)
