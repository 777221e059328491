"""The shapes of call and stream SIDs: what the server accepts before a SID names a file or a folder.

* Twilio: a two-letter prefix and 32 hex digits: calls ``CA…``, streams ``MZ…`` (Twilio's
  REST API reference gives the patterns ``^CA[0-9a-fA-F]{32}$`` and ``^MZ[0-9a-fA-F]{32}$``,
  protocol.md §2.2; real SIDs are lowercase).
* SignalWire: every SID is a UUID in text form, e.g. ``76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad``
  (protocol.md §9, fixture ``signalwire_start.json``).

Nothing else is a SID: a ``start`` naming anything else is refused (``core.protocol``), so a
call SID can never be ``..``, contain a ``/``, or reach a header unescaped.
"""

from __future__ import annotations

import re

_HEX32 = "[0-9a-fA-F]{32}"
_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_CALL_SID = re.compile(f"CA{_HEX32}|{_UUID}")
_STREAM_SID = re.compile(f"MZ{_HEX32}|{_UUID}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def is_call_sid(value: object) -> bool:
    """True for a Twilio call SID (``CA`` + 32 hex digits) or a SignalWire UUID."""
    return isinstance(value, str) and _CALL_SID.fullmatch(value) is not None


def is_stream_sid(value: object) -> bool:
    """True for a Twilio stream SID (``MZ`` + 32 hex digits) or a SignalWire UUID."""
    return isinstance(value, str) and _STREAM_SID.fullmatch(value) is not None


def filename_part(call_sid: str) -> str:
    """``call_sid`` as it may appear in a file name or a ``Content-Disposition`` header.

    A real SID is returned unchanged; anything else has every character other than
    ``A-Z a-z 0-9 _ -`` replaced by ``_`` (no quote, slash, dot or control character survives),
    and is cut to 64 characters. Never empty (``"unknown"``).
    """
    if is_call_sid(call_sid):
        return call_sid
    return _UNSAFE.sub("_", str(call_sid))[:64] or "unknown"
