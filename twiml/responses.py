"""TwiML documents, built with the twilio helper library (pure functions returning XML text)."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, Dial, Start, VoiceResponse

# Twilio: "The combined length of each <Parameter> name and value attributes must be under
# 500 characters" (TwiML <Stream>, protocol.md §4.3).
MAX_PARAMETER_CHARS = 499
# SignalWire <Stream codec>: "Possible Values: L16@24000h & L16@16000h" (protocol.md §9, SW-STREAM).
SIGNALWIRE_CODECS = ("L16@16000h", "L16@24000h")


def connect_stream(stream_url: str, *, parameters: Mapping[str, str] | None = None, greeting: str = "", codec: str = "",
                   auth_bearer_token: str = "") -> str:
    """Answer a call with an optional ``<Say>`` then a bidirectional ``<Connect><Stream>``.

    Nothing follows ``</Connect>``, so the call ends when the server closes the socket
    (TwiML ``<Connect>``: "If there is no further verb, Twilio will end the phone call").

    Args:
        stream_url: absolute ``wss://`` URL of the media stream, without a query string
            (Twilio drops or rejects query strings: error 31920).
        parameters: ``<Parameter>`` name/value pairs; Twilio passes them to the socket as
            ``start.customParameters``. Pairs whose name plus value reach 500 characters
            are truncated to fit.
        greeting: text for Twilio's own ``<Say>`` before the stream; ``""`` for none.
        codec: SignalWire only: the ``codec`` attribute, ``"L16@16000h"`` or ``"L16@24000h"``
            (linear PCM both ways, protocol.md §9); ``""`` for μ-law 8 kHz (no attribute).
        auth_bearer_token: SignalWire only: ``authBearerToken``, sent back as
            ``Authorization: Bearer …`` on the WebSocket upgrade (§9); ``""`` for none.

    Returns:
        The TwiML document as XML text.

    Raises:
        ValueError: ``stream_url`` is not ``wss://`` or has a query string.
    """
    _check_stream_url(stream_url)
    response = VoiceResponse()
    if greeting:
        response.say(greeting)
    connect = Connect()
    stream = connect.stream(url=stream_url, **_signalwire_attributes(codec, auth_bearer_token))
    _add_parameters(stream, parameters)
    response.append(connect)
    return str(response)


def fork_and_dial(
    stream_url: str, *, status_callback_url: str, forward_to: str, parameters: Mapping[str, str] | None = None, codec: str = "",
    auth_bearer_token: str = "",
) -> str:
    """Fork the call's audio to a listen-only stream, then connect the caller to ``forward_to``.

    ``<Start><Stream track="both_tracks">`` streams both sides (the caller on the inbound
    track, the dialled party on the outbound track) while Twilio goes on to the ``<Dial>``
    (TwiML ``<Stream>``: "Twilio immediately continues with the next TwiML instruction").

    Args:
        stream_url: absolute ``wss://`` URL of the media stream, without a query string.
        status_callback_url: absolute URL for stream-started/stopped/error callbacks (POST).
        forward_to: the number (E.164) or SIP address to dial.
        parameters: ``<Parameter>`` name/value pairs for ``start.customParameters``.
        codec, auth_bearer_token: SignalWire only, as in :func:`connect_stream`.

    Raises:
        ValueError: a bad ``stream_url``, or an empty ``forward_to``.
    """
    _check_stream_url(stream_url)
    if not forward_to.strip():
        raise ValueError("forward_to is empty")
    response = VoiceResponse()
    start = Start()
    stream = start.stream(url=stream_url, track="both_tracks", status_callback=status_callback_url, status_callback_method="POST",
                          **_signalwire_attributes(codec, auth_bearer_token))
    _add_parameters(stream, parameters)
    response.append(start)
    response.append(_dial(forward_to))
    return str(response)


def dial(forward_to: str) -> str:
    """Connect the caller to ``forward_to`` (E.164 number or SIP address), nothing else: the TwiML
    of ``/forward-call`` when busy, and of a cold transfer (``core.responder.Transfer``)."""
    response = VoiceResponse()
    response.append(_dial(forward_to))
    return str(response)


def _dial(target: str) -> Dial:
    """``<Dial>number</Dial>``, or ``<Dial><Sip>…</Sip></Dial>`` for a ``sip:``/``sips:`` address
    (TwiML ``<Dial>`` takes a bare number as its text, but a SIP URI only inside ``<Sip>``)."""
    target = target.strip()
    if target.lower().startswith(("sip:", "sips:")):
        dial_verb = Dial()
        dial_verb.sip(target)
        return dial_verb
    return Dial(target)


def say_and_hang_up(text: str) -> str:
    """Speak ``text`` with Twilio's ``<Say>`` and end the call."""
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)


def _signalwire_attributes(codec: str, auth_bearer_token: str) -> dict[str, str]:
    if codec and codec not in SIGNALWIRE_CODECS:
        raise ValueError(f"codec must be one of {', '.join(SIGNALWIRE_CODECS)} (SignalWire <Stream>), got {codec!r}")
    attributes = {"codec": codec} if codec else {}
    if auth_bearer_token:
        attributes["authBearerToken"] = auth_bearer_token
    return attributes


def _check_stream_url(stream_url: str) -> None:
    if not stream_url.startswith("wss://"):
        raise ValueError(f"stream URL must start with wss:// (Twilio error 31922), got {stream_url!r}")
    if "?" in stream_url:
        raise ValueError(f"stream URL must not have a query string (Twilio error 31920), got {stream_url!r}")


def _add_parameters(stream, parameters: Mapping[str, str] | None) -> None:
    for name, value in (parameters or {}).items():
        if value is None:
            continue
        value = str(value)[: max(0, MAX_PARAMETER_CHARS - len(name))]
        stream.parameter(name=name, value=value)
