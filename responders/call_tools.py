"""The language model's built-in tools, which act on the call: ``end_call`` and ``transfer_call``.

They are not run: a call to one becomes a piece of the streaming reply that the call worker acts
on, ``core.responder.Goodbye`` (say it, then hang up) or ``core.responder.Transfer`` (announce,
then redirect the live call to the target). ``LLM_BUILTIN_TOOLS`` chooses which are offered.

A transfer target comes from the model, which may have taken it from the caller's words, so it
is checked (``core.dial_targets.normalize_dial_target``): an E.164 number (spaces, dashes, dots and
parentheses are dropped) or a ``sip:`` address, and one of ``LLM_TRANSFER_TARGETS``. A target
that fails gets an error back to the model instead of a transfer.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from core.dial_targets import normalize_dial_target
from core.responder import Goodbye, ToolCall, Transfer

END_CALL, TRANSFER_CALL = "end_call", "transfer_call"
BUILTIN_TOOLS = (END_CALL, TRANSFER_CALL)
DEFAULT_GOODBYE = "Goodbye!"


def parse_targets(text: str) -> tuple[str, ...]:
    """A comma-separated list of targets (``LLM_TRANSFER_TARGETS``), normalized; ``()`` for ``""``.

    Raises:
        ValueError: an entry is not a target (``normalize_dial_target``).
    """
    return tuple(normalize_dial_target(part) for part in text.split(",") if part.strip())


class CallTools:
    """The built-in tools offered to the model, and what a call to one does.

    Args:
        names: which to offer, of :data:`BUILTIN_TOOLS`.
        transfer_targets: the only targets ``transfer_call`` may use (normalized); ``()``: any
            valid target. They are also listed to the model, as the target's ``enum``.

    Raises:
        ValueError: an unknown name.
    """

    def __init__(self, names: Iterable[str] = BUILTIN_TOOLS, transfer_targets: tuple[str, ...] = ()) -> None:
        self.names = tuple(names)
        unknown = set(self.names) - set(BUILTIN_TOOLS)
        if unknown:
            raise ValueError(f"unknown built-in tool(s) {', '.join(sorted(unknown))}; there are {', '.join(BUILTIN_TOOLS)}")
        self.transfer_targets = tuple(transfer_targets)

    def __contains__(self, name: str) -> bool:
        return name in self.names

    @property
    def specs(self) -> list[dict]:
        """Their ``tools`` entries for a chat completions request."""
        specs = []
        if END_CALL in self.names:
            specs.append(_spec(END_CALL, "Hang up: end the phone call after your reply, when the caller says goodbye "
                               "or has nothing more to ask.", {
                "message": {"type": "string", "description": "Your last words to the caller, if you have not said "
                            "goodbye yet, e.g. 'Thanks for calling, goodbye!'"},
            }, []))
        if TRANSFER_CALL in self.names:
            target: dict[str, Any] = {"type": "string",
                                      "description": "Where to: a phone number in E.164 form (+15551234567) or a sip: address."}
            if self.transfer_targets:
                target["enum"] = list(self.transfer_targets)
            specs.append(_spec(TRANSFER_CALL, "Transfer the caller to a person or another line; this call then ends.", {
                "target": target,
                "announcement": {"type": "string", "description": "What to tell the caller first, e.g. 'Connecting "
                                 "you to our sales team now.'"},
            }, ["target"]))
        return specs

    def act(self, name: str, arguments: Mapping[str, Any], *, spoke: bool) -> tuple[ToolCall, Goodbye | Transfer | None]:
        """The record of a call to built-in tool ``name`` and the piece that carries it out.

        Args:
            name: one of ``self.names``.
            arguments: the model's parsed arguments.
            spoke: text of this reply was already streamed (then an ``end_call`` without a
                message adds no goodbye of its own).

        Returns:
            ``(record, piece)``; ``piece`` is ``None`` when the arguments were refused
            (``record.error`` says why, and the model should be told).
        """
        if name == END_CALL:
            message = arguments.get("message")
            if not isinstance(message, str) or not message.strip():
                # The worker skips empty pieces, so a bare goodbye is a space: still a Goodbye, saying nothing more.
                message = " " if spoke else DEFAULT_GOODBYE
            return _record(name, arguments, "the call ends after this reply"), Goodbye(message)
        target, announcement = arguments.get("target"), arguments.get("announcement") or ""
        if not isinstance(target, str) or not isinstance(announcement, str):
            return _record(name, arguments, error="target and announcement must be strings"), None
        try:
            target = normalize_dial_target(target)
        except ValueError as exc:
            return _record(name, arguments, error=str(exc)), None
        if self.transfer_targets and target not in self.transfer_targets:
            return _record(name, arguments, error=f"{target} is not an allowed transfer target; allowed: "
                           f"{', '.join(self.transfer_targets)}"), None
        return _record(name, arguments, f"transferring the call to {target}"), Transfer(target, announcement.strip())


def _spec(name: str, description: str, properties: dict, required: list[str]) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required, "additionalProperties": False}}}


def _record(name: str, arguments: Mapping[str, Any], result: str | None = None, error: str | None = None) -> ToolCall:
    return ToolCall(name, dict(arguments), None if result is None else json.dumps(result), error, 0)
