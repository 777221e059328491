"""The actions a session asks its worker to perform (``CallSession``, ``ListenSession``).

Plain frozen data: the worker (``runtime.call_worker``) drains them from
``actions_to_perform()`` and carries them out in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from core.records import Turn
from core.sentences import ReplyItem


@dataclass(frozen=True)
class Send:
    """Send ``text`` on the socket (in order). ``reply_id`` tags reply audio so a barge-in
    can drop what is still queued in the worker."""

    text: str
    reply_id: int | None = None


@dataclass(frozen=True)
class Transcribe:
    """Recognize ``pcm`` (PCM16 LE mono, ``sample_rate`` Hz), then call ``receive_transcript``.

    ``speculative``: the turn is tentative (the caller paused, the endpoint is not decided);
    the worker may skip it under load and call ``speculation_declined`` instead.
    """

    turn_id: int
    pcm: bytes
    sample_rate: int
    speculative: bool = False


@dataclass(frozen=True)
class Respond:
    """Ask the responder for a reply to ``text`` (speech) or ``dtmf`` (digits), then call
    ``receive_reply``. ``pending_turn``: the caller's turn when it is not in the call record
    yet (a speculative turn); the responder's history should end with it."""

    turn_id: int
    text: str
    dtmf: str | None = None
    pending_turn: Turn | None = None


@dataclass(frozen=True)
class Speak:
    """Synthesize ``sentences`` in order; call ``receive_speech(reply_id, index, audio)`` for
    each as soon as it is ready (the first plays while the rest is synthesized).
    A ``Play`` item is not synthesized: its file is loaded in the stream's wire format instead
    (``runtime.prompts``), or ``receive_prompt_failed(reply_id, index, error)`` called.
    ``first_index``: the index of ``sentences[0]`` in the reply; a streamed reply gets one
    ``Speak`` per new sentence, to be synthesized after the reply's earlier ones.
    ``offline_voice``: use the offline engine (apologies must not depend on the network)."""

    reply_id: int
    sentences: tuple[ReplyItem, ...]
    offline_voice: bool = False
    first_index: int = 0


@dataclass(frozen=True)
class Cancel:
    """Abandon pending work (transcription, responder, synthesis) of these turns/replies."""

    turn_ids: tuple[int, ...] = ()
    reply_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class EndCall:
    """The stream is over: finish pending transcriptions (bounded) and release the call."""


@dataclass(frozen=True)
class RecordPlayed:
    """Bot audio that played at Twilio, in the stream's wire format, placed at media time ``start_ms``.

    Placed when a mark echo says it played (it ended at the echo), or, on a barge-in
    ``clear`` or ``stop``, the part that played before it; audio removed by ``clear`` is not
    in it. For the call recording's outbound track.
    """

    start_ms: int
    audio: bytes


@dataclass(frozen=True)
class HangUp:
    """End the call now: close the socket (the goodbye, if any, has played).

    ``transfer_to``: a cold transfer instead (its announcement has played): redirect the live
    call to ``<Dial>transfer_to</Dial>`` through Twilio's REST API; the stream then ends.
    """

    reason: str
    transfer_to: str | None = None


Action = Union[Send, Transcribe, Respond, Speak, Cancel, EndCall, RecordPlayed, HangUp]
