"""Inputs a session holds back for a tentative (speculative) turn until the endpoint confirms it.

While the caller pauses, the turn's transcript, a reply that would end or change the call, and
its synthesized speech must not be acted on: the caller may go on speaking. They wait in the
turn's queue; if the pause becomes the endpoint, ``replay_order`` gives them back in the order
the session replays them, else they are dropped with the turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from core.sentences import Reply


@dataclass(frozen=True)
class DeferredTranscript:
    """``receive_transcript``'s arguments: ``text`` (``None`` on error), ``error``, recognition time in ms."""

    text: str | None
    error: str | None
    elapsed_ms: int | None


@dataclass(frozen=True)
class DeferredReply:
    """``receive_reply``'s arguments for a reply that fails, hangs up or is blank."""

    text: Reply | None
    error: str | None
    elapsed_ms: int | None
    hang_up: bool
    transfer_to: str | None = None


@dataclass(frozen=True)
class DeferredSpeech:
    """``receive_speech``'s arguments: sentence ``index`` of ``reply_id`` in wire format, synthesis time in ms."""

    reply_id: int
    index: int
    audio: bytes
    elapsed_ms: int | None


@dataclass(frozen=True)
class DeferredSpeechFailure:
    """``receive_speech_failed``'s arguments."""

    reply_id: int
    error: str


@dataclass(frozen=True)
class DeferredPromptFailure:
    """``receive_prompt_failed``'s arguments: prompt ``index`` of ``reply_id`` could not be loaded."""

    reply_id: int
    index: int
    error: str


@dataclass(frozen=True)
class DeferredReplyEnd:
    """``receive_reply_end``'s arguments: the end of a streaming reply."""

    error: str | None
    hang_up: bool
    transfer_to: str | None = None


DeferredInput = Union[DeferredTranscript, DeferredReply, DeferredSpeech, DeferredSpeechFailure, DeferredPromptFailure,
                      DeferredReplyEnd]

# The transcript first (it asks for the reply), then the reply, its speech, and the end of its
# stream last: a stream can end before its last sentence is synthesized.
_RANK = {DeferredTranscript: 0, DeferredReply: 1, DeferredSpeech: 2, DeferredSpeechFailure: 2, DeferredPromptFailure: 2,
         DeferredReplyEnd: 3}


def replay_order(inputs: list[DeferredInput]) -> list[DeferredInput]:
    """Return ``inputs`` in replay order: by kind as above, each kind in arrival order."""
    return sorted(inputs, key=lambda item: _RANK[type(item)])
