"""Responders: the Python function a call talks to (text in, text out).

A responder is ``respond(text: str, call: CallContext) -> str | None``. ``text`` is the
caller's transcribed utterance (never a recognition failure); for key presses ``text`` is
``""`` and ``call.dtmf`` holds the digits. Return the reply to speak, or ``None``/``""`` to
stay silent, or ``Goodbye("…")`` to say it and end the call, or ``Transfer(…)`` to hand the caller
to a person; ``Play(…)`` plays an audio file, alone or in a list with text. A streaming responder may
also yield ``ToolCall`` records (not spoken; ``responders.llm`` does). A one-argument ``respond(text)``
also works; it is not called for key presses.
Select one with ``RESPONDER=module:function``.

A responder with no side effects may be marked ``@speculative``: it is then also called
during the caller's pause, before the endpoint is decided, and its reply synthesized ahead,
which takes the responder and synthesis out of the silence the caller waits through. If the
caller speaks on, that reply is thrown away unheard, so do not mark a responder that acts on
what it is told (books, pays, sends).
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional


class Goodbye(str):
    """A reply that ends the call once the caller has heard it: ``return Goodbye("Thanks, bye!")``."""


@dataclass(frozen=True)
class Play:
    """An audio prompt to play as (part of) a reply: ``return Play("prompts/hold.wav")``, or a list
    such as ``["Please hold.", Play("prompts/hold.wav")]``, or a piece of a streaming reply.

    ``path``: any file ``soundfile`` reads (WAV, FLAC, OGG, MP3…), relative to the working
    directory or absolute; it is converted once to the stream's wire format and cached. In the
    transcript it shows as ``[played <file name>]``; marks, barge-in and the recording treat it
    like speech.
    """

    path: str

    @property
    def transcript(self) -> str:
        """How the prompt shows in the call record: ``[played hold.wav]``."""
        return f"[played {os.path.basename(self.path)}]"


@dataclass(frozen=True)
class Transfer:
    """Hand the caller to a person (cold transfer): ``return Transfer("+15551234567", "Connecting you now.")``.

    ``target``: an E.164 number or a SIP address (``sip:…``); ``announcement``: spoken first
    (the caller cannot cut it off), ``""`` for none. The live call is then redirected through
    Twilio's REST API to ``<Dial>target</Dial>`` (needs ``TWILIO_ACCOUNT_SID`` and
    ``TWILIO_AUTH_TOKEN``) and the stream ends.
    """

    target: str
    announcement: str = ""


@dataclass(frozen=True)
class ToolCall:
    """A tool the language model called and what came of it: a piece of a streaming reply
    (``responders.llm`` yields one right after running each tool), for the call record. Not spoken.

    Attributes:
        name: the tool's name (a function of ``LLM_TOOLS``, ``end_call`` or ``transfer_call``).
        arguments: the arguments the model gave, parsed from its JSON (``{}`` when they did not parse).
        result: what the model got back, the result as JSON text; ``None`` on an error.
        error: why the call failed (the tool raised or timed out, bad arguments, unknown name);
            the model got ``{"error": error}``. ``None`` on success.
        elapsed_ms: how long the tool ran, ms (0 for the built-in tools, which only ask for an action).
    """

    name: str
    arguments: dict
    result: str | None
    error: str | None
    elapsed_ms: int

    @property
    def transcript(self) -> str:
        """How the call shows in the call record: ``next_appointment({"name": "Ann"}) -> "Tuesday"``
        (``-> error: …`` when it failed)."""
        outcome = self.result if self.error is None else f"error: {self.error}"
        return f"{self.name}({json.dumps(self.arguments, ensure_ascii=False)}) -> {outcome}"


class ResponderConfigError(ValueError):
    """``RESPONDER`` does not name an importable callable."""


@dataclass(frozen=True)
class CallContext:
    """What a responder knows about the call.

    Attributes:
        call_sid: Twilio call SID (``CA…``).
        stream_sid: media stream SID (``MZ…``).
        from_number: the caller (``From`` of the voice webhook), if known.
        to_number: the called number (``To``), if known.
        custom_parameters: the stream's ``<Parameter>`` values (``start.customParameters``).
        dtmf: the digits pressed for this turn (``None`` for a spoken turn).
        history: earlier turns as ``{"speaker", "text", "start_ms", "end_ms"}`` dicts.
        direction: ``"inbound"`` (the caller dialled in) or ``"outbound"`` (placed by
            ``POST /api/calls``).
        answered_by: on an outbound call with answering-machine detection, Twilio's
            ``AnsweredBy``: ``human``, ``machine_end_beep``, ``machine_end_silence``,
            ``machine_end_other``, ``fax`` or ``unknown``; ``None`` otherwise or before it is known.
    """

    call_sid: str
    stream_sid: str
    from_number: str | None = None
    to_number: str | None = None
    custom_parameters: dict[str, str] = field(default_factory=dict)
    dtmf: str | None = None
    history: tuple[dict, ...] = ()
    direction: str = "inbound"
    answered_by: str | None = None


Responder = Callable[[str, CallContext], Optional[str]]


def speculative(func: Callable) -> Callable:
    """Mark a side-effect-free responder as safe to call before the endpoint (see the module docstring)."""
    func.speculative = True
    return func


def is_speculative(responder: Callable) -> bool:
    """True if ``responder`` was marked with :func:`speculative`."""
    return getattr(responder, "speculative", False) is True


def answers_machines(func: Callable) -> Callable:
    """Mark a responder that decides what an answering machine hears on an outbound call: when
    Twilio's detection says a machine answered (after its beep), it is called once with
    ``text=""`` and ``call.answered_by`` set (``machine_end_beep``…); return ``Goodbye("…")`` to
    leave that message and hang up. Unmarked, the machine hears ``VOICEMAIL_MESSAGE``."""
    func.answers_machines = True
    return func


def is_machine_responder(responder: Callable) -> bool:
    """True if ``responder`` was marked with :func:`answers_machines`."""
    return getattr(responder, "answers_machines", False) is True


@speculative
def echo(text: str, call: CallContext) -> str:
    """The default responder: repeat what the caller said, or the keys they pressed."""
    if call.dtmf:
        return "You pressed " + " ".join(call.dtmf) + "."
    return f"You said: {text}"


def load_responder(spec: str) -> Responder:
    """Import the responder named ``module:function`` (``module.sub:function`` also works).

    Raises:
        ResponderConfigError: malformed spec, module not importable, attribute missing or not
            callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ResponderConfigError(f"RESPONDER must look like 'module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ResponderConfigError(f"RESPONDER {spec!r}: cannot import {module_name!r}: {exc}") from exc
    func = module
    for part in attr.split("."):
        func = getattr(func, part, None)
        if func is None:
            raise ResponderConfigError(f"RESPONDER {spec!r}: {module_name!r} has no attribute {attr!r}")
    if not callable(func):
        raise ResponderConfigError(f"RESPONDER {spec!r} is not callable")
    return _adapt(func)


def _adapt(func: Callable) -> Responder:
    """Accept ``f(text)`` as well as ``f(text, call)``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return func
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params):
        return func

    def one_argument(text: str, call: CallContext) -> str | None:
        return None if call.dtmf else func(text)

    one_argument.speculative = is_speculative(func)
    one_argument.answers_machines = is_machine_responder(func)
    return one_argument
