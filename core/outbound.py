"""The options of an outbound call, checked once and carried from ``POST /api/calls`` to the call's stream.

They travel in three forms, each built here from the one before (no I/O):

1. the API's JSON body (``CallRequest.from_json``): ``to``, ``from``, ``greeting``,
   ``voicemail_message``, ``responder``, ``machine_detection``, ``parameters``;
2. the query string of the webhook URL given to Twilio (``OutboundOptions.query``): Twilio signs
   the whole URL, so with signatures on, nobody else can change them on the way;
3. ``callstream_*`` ``<Parameter>``s of the ``<Stream>`` (``OutboundOptions.stream_parameters``),
   which Twilio hands back in the ``start`` message's ``customParameters`` (TwiML ``<Stream>``:
   each name plus value under 500 characters), read by the call worker
   (``OutboundOptions.from_stream_parameters``).

A responder named by a call must be one of ``OUTBOUND_RESPONDERS``: the stream's parameters are
not trusted for it (a stream is bound to its call, but an unsigned development server takes any
webhook), so the worker checks the name again.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from core.dial_targets import check_dial_target, check_phone_number

OUTBOUND_PATH = "/outbound-call"
"""The webhook of placed calls (``handlers/voice.py``)."""
CALL_STATUS_PATH = "/call-status"
"""The placed call's ``StatusCallback`` (``handlers/outbound.py``)."""
AMD_STATUS_PATH = "/amd-status"
"""The ``AsyncAmdStatusCallback`` (``handlers/outbound.py``)."""

PARAMETER_PREFIX = "callstream_"
MAX_TEXT_CHARS = 400
"""Longest ``greeting`` or ``voicemail_message``: with its parameter name, under Twilio's 500."""
MAX_PARAMETERS = 10
MAX_PARAMETER_NAME_CHARS = 40
MAX_PARAMETER_VALUE_CHARS = 200
_PARAMETER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_REQUEST_KEYS = {"to", "from", "greeting", "voicemail_message", "responder", "machine_detection", "parameters"}


@dataclass(frozen=True)
class OutboundOptions:
    """What one placed call does differently from the server's settings.

    Attributes:
        greeting: said once a person answers; ``None``: ``GREETING``.
        voicemail_message: said to an answering machine after its beep; ``None``: ``VOICEMAIL_MESSAGE``.
        responder: a name from ``OUTBOUND_RESPONDERS``; ``None``: ``RESPONDER``.
        machine_detection: ask Twilio for answering-machine detection.
        parameters: up to ``MAX_PARAMETERS`` name/value strings for the responder
            (``CallContext.custom_parameters``); names are letters, digits and ``_``, not
            starting with ``callstream_``.
    """

    greeting: str | None = None
    voicemail_message: str | None = None
    responder: str | None = None
    machine_detection: bool = True
    parameters: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("greeting", "voicemail_message"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_CHARS):
                raise ValueError(f"{name} must be text of at most {MAX_TEXT_CHARS} characters")
        if self.responder is not None and (not isinstance(self.responder, str) or not self.responder):
            raise ValueError("responder must be a responder's name")
        if not isinstance(self.machine_detection, bool):
            raise ValueError("machine_detection must be true or false")
        _check_parameters(self.parameters)

    def query(self) -> str:
        """The webhook URL's query string (``urlencode``d): ``greeting``, ``voicemail``,
        ``responder``, ``amd`` (``1``/``0``) and ``p.<name>`` for each parameter."""
        pairs = [("amd", "1" if self.machine_detection else "0")]
        pairs += [(key, value) for key, value in (("greeting", self.greeting), ("voicemail", self.voicemail_message),
                                                  ("responder", self.responder)) if value is not None]
        pairs += [(f"p.{name}", value) for name, value in self.parameters.items()]
        return urlencode(pairs)

    @classmethod
    def from_query(cls, args: Mapping[str, str]) -> OutboundOptions:
        """Read ``query()``'s fields back (unknown keys are ignored).

        Raises:
            ValueError: a value out of bounds (see the class).
        """
        amd = args.get("amd", "1")
        if amd not in ("0", "1"):
            raise ValueError("amd must be 0 or 1")
        parameters = {key[2:]: value for key, value in args.items() if key.startswith("p.")}
        return cls(greeting=args.get("greeting"), voicemail_message=args.get("voicemail"), responder=args.get("responder"),
                   machine_detection=amd == "1", parameters=parameters)

    def stream_parameters(self) -> dict[str, str]:
        """The ``<Parameter>``s that carry these options to the stream (``callstream_direction`` =
        ``outbound`` marks the call as placed)."""
        carried = {"direction": "outbound", "amd": "1" if self.machine_detection else "0", "greeting": self.greeting,
                   "voicemail": self.voicemail_message, "responder": self.responder}
        return {PARAMETER_PREFIX + k: v for k, v in carried.items() if v is not None} | dict(self.parameters)

    @classmethod
    def from_stream_parameters(cls, custom_parameters: Mapping[str, str]) -> OutboundOptions | None:
        """The options of a placed call from its ``start.customParameters``; ``None`` for any other call.

        Values out of bounds are dropped (the server's settings apply), never raised: a stream
        must not fail over them.
        """
        if custom_parameters.get(PARAMETER_PREFIX + "direction") != "outbound":
            return None
        get = custom_parameters.get
        parameters = {k: v for k, v in custom_parameters.items() if not k.startswith(PARAMETER_PREFIX)
                      and k not in ("From", "To", "CallSid")}
        try:
            _check_parameters(parameters)
        except ValueError:
            parameters = {}
        return cls(greeting=_bounded(get(PARAMETER_PREFIX + "greeting")), voicemail_message=_bounded(get(PARAMETER_PREFIX + "voicemail")),
                   responder=get(PARAMETER_PREFIX + "responder") or None, machine_detection=get(PARAMETER_PREFIX + "amd") != "0",
                   parameters=parameters)


@dataclass(frozen=True)
class CallRequest:
    """A checked ``POST /api/calls`` body.

    Attributes:
        to: the number (E.164) or SIP address to call.
        from_number: the caller ID (E.164): the body's ``from``, else ``TWILIO_PHONE_NUMBER``.
        options: the rest.
    """

    to: str
    from_number: str
    options: OutboundOptions

    @classmethod
    def from_json(cls, body: Any, *, default_from: str, machine_detection: bool,
                  allowed_responders: Collection[str]) -> CallRequest:
        """Check the body of ``POST /api/calls``.

        Args:
            body: the parsed JSON.
            default_from: ``TWILIO_PHONE_NUMBER`` (``""``: the body must name ``from``).
            machine_detection: ``MACHINE_DETECTION``, for a body that does not say.
            allowed_responders: ``OUTBOUND_RESPONDERS``.

        Raises:
            ValueError: the first problem found, in words for the API's 400 answer.
        """
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object such as {\"to\": \"+15551234567\"}")
        unknown = set(body) - _REQUEST_KEYS
        if unknown:
            raise ValueError(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}; "
                             f"expected {', '.join(sorted(_REQUEST_KEYS))}")
        to = check_dial_target(body.get("to", ""), "to")
        from_number = body.get("from") or default_from
        if not from_number:
            raise ValueError("from is missing and TWILIO_PHONE_NUMBER is not set: name your Twilio number")
        from_number = check_phone_number(from_number, "from")
        responder = body.get("responder")
        if responder is not None and responder not in allowed_responders:
            allowed = ", ".join(allowed_responders) or "none: set OUTBOUND_RESPONDERS"
            raise ValueError(f"responder {str(responder)[:80]!r} is not one of OUTBOUND_RESPONDERS ({allowed})")
        parameters = body.get("parameters") or {}
        options = OutboundOptions(greeting=body.get("greeting"), voicemail_message=body.get("voicemail_message"),
                                  responder=responder, machine_detection=body.get("machine_detection", machine_detection),
                                  parameters=parameters)
        return cls(to, from_number, options)


def _check_parameters(parameters: Any) -> None:
    if not isinstance(parameters, Mapping):
        raise ValueError("parameters must be an object of names to strings")
    if len(parameters) > MAX_PARAMETERS:
        raise ValueError(f"at most {MAX_PARAMETERS} parameters")
    for name, value in parameters.items():
        if not (isinstance(name, str) and _PARAMETER_NAME.fullmatch(name) and len(name) <= MAX_PARAMETER_NAME_CHARS):
            raise ValueError(f"parameter name {str(name)[:50]!r}: letters, digits and _, starting with a letter, "
                             f"at most {MAX_PARAMETER_NAME_CHARS} characters")
        if name.startswith(PARAMETER_PREFIX) or name in ("From", "To", "CallSid"):
            raise ValueError(f"parameter name {name!r} is reserved")
        if not isinstance(value, str) or len(value) > MAX_PARAMETER_VALUE_CHARS:
            raise ValueError(f"parameter {name!r} must be a string of at most {MAX_PARAMETER_VALUE_CHARS} characters")


def _bounded(text: str | None) -> str | None:
    return text if text is not None and len(text) <= MAX_TEXT_CHARS else None
