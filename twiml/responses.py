"""TwiML documents, built with the twilio helper library (pure functions returning XML text)."""

from __future__ import annotations

from collections.abc import Mapping

from twilio.twiml.voice_response import Connect, VoiceResponse

# Twilio: "The combined length of each <Parameter> name and value attributes must be under
# 500 characters" (TwiML <Stream>, protocol.md §4.3).
MAX_PARAMETER_CHARS = 499


def connect_stream(stream_url: str, *, parameters: Mapping[str, str] | None = None, greeting: str = "") -> str:
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

    Returns:
        The TwiML document as XML text.

    Raises:
        ValueError: ``stream_url`` is not ``wss://`` or has a query string.
    """
    if not stream_url.startswith("wss://"):
        raise ValueError(f"stream URL must start with wss:// (Twilio error 31922), got {stream_url!r}")
    if "?" in stream_url:
        raise ValueError(f"stream URL must not have a query string (Twilio error 31920), got {stream_url!r}")
    response = VoiceResponse()
    if greeting:
        response.say(greeting)
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in (parameters or {}).items():
        if value is None:
            continue
        value = str(value)[: max(0, MAX_PARAMETER_CHARS - len(name))]
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)
