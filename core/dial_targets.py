"""Phone numbers and SIP addresses a call may be placed to or transferred to, checked before they reach Twilio.

A number is E.164: ``+``, then 7 to 15 digits, the first not 0 (ITU-T E.164 allows at most 15;
the shortest numbers in use, e.g. Niue's, have 7; Twilio's ``To``/``From`` and ``<Number>`` take
this form). ``normalize_dial_target`` also takes one written with spaces, dots, dashes or
parentheses, as a language model or a person may write it. A SIP address is ``sip:user@host`` with an optional port and
``;param=value`` parameters (TwiML ``<Dial><Sip>``), at most ``MAX_SIP_CHARS`` characters, with no
spaces, quotes or angle brackets (it goes into TwiML and logs).
"""

from __future__ import annotations

import re

MAX_SIP_CHARS = 255
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_NUMBER_PUNCTUATION = re.compile(r"[\s().-]")
_SIP = re.compile(r"sips?:[A-Za-z0-9._~%!$&'()*+,;=:-]+@[A-Za-z0-9.-]+(:[0-9]{1,5})?(;[A-Za-z0-9._=-]+)*", re.IGNORECASE)


def is_e164(text: str) -> bool:
    """True for an E.164 number such as ``+15551234567``."""
    return bool(_E164.fullmatch(text))


def is_sip_address(text: str) -> bool:
    """True for ``sip:user@host[:port][;param=value…]`` (or ``sips:``), at most ``MAX_SIP_CHARS`` long."""
    return len(text) <= MAX_SIP_CHARS and bool(_SIP.fullmatch(text))


def normalize_dial_target(text: str) -> str:
    """``text`` as a dial target: ``+15551234567`` (also from ``+1 (555) 123-4567``), or a SIP
    address with its scheme in lower case (``SIP:desk@pbx`` → ``sip:desk@pbx``).

    Raises:
        ValueError: neither an E.164 number nor a SIP address.
    """
    value = text.strip() if isinstance(text, str) else ""
    scheme, colon, rest = value.partition(":")
    if colon and scheme.lower() in ("sip", "sips") and is_sip_address(value):
        return f"{scheme.lower()}:{rest}"
    number = _NUMBER_PUNCTUATION.sub("", value)
    if is_e164(number):
        return number
    raise ValueError(f"{str(text)[:40]!r} is not an E.164 number (+ and 7 to 15 digits, e.g. +15551234567) or a sip: address")


def check_phone_number(text: str, what: str) -> str:
    """Return ``text`` stripped if it is an E.164 number.

    Raises:
        ValueError: naming ``what`` (e.g. ``"to"``) and showing at most 40 characters of ``text``.
    """
    value = text.strip() if isinstance(text, str) else ""
    if not is_e164(value):
        raise ValueError(f"{what} must be an E.164 number such as +15551234567, got {str(text)[:40]!r}")
    return value


def check_dial_target(text: str, what: str = "transfer target") -> str:
    """Return ``text`` stripped if it is an E.164 number or a SIP address.

    Raises:
        ValueError: neither (the message names ``what``).
    """
    value = text.strip() if isinstance(text, str) else ""
    if not (is_e164(value) or is_sip_address(value)):
        raise ValueError(f"{what} must be an E.164 number (+15551234567) or a SIP address (sip:agent@pbx.example.com), "
                         f"got {str(text)[:40]!r}")
    return value
