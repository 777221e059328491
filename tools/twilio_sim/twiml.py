"""The voice webhook as Twilio calls it, and the TwiML ``<Connect><Stream>`` it answers with.

Pure: no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit


class TwimlError(ValueError):
    """The voice webhook's TwiML has no usable ``<Connect><Stream>``."""


@dataclass(frozen=True)
class TwimlStream:
    """What Twilio takes from the TwiML answer.

    Attributes:
        url: the ``<Stream url>`` as written (relative URLs resolved later).
        parameters: ``<Parameter name value>`` pairs, in document order (become ``start.customParameters``).
        say: texts of ``<Say>`` verbs before ``<Connect>`` (Twilio speaks them before streaming).
    """

    url: str
    parameters: dict[str, str]
    say: list[str]


def parse_twiml(text: str) -> TwimlStream:
    """Find the bidirectional stream in a TwiML document [T-STREAM, protocol.md §4].

    Args:
        text: the webhook response body, e.g. ``<Response><Say>Hi</Say><Connect><Stream
            url="wss://host/media-stream"><Parameter name="From" value="+1..."/></Stream>
            </Connect></Response>``.

    Returns:
        The first ``<Connect><Stream>``'s URL and parameters, and the ``<Say>`` texts before it.

    Raises:
        TwimlError: not XML, root is not ``<Response>``, no ``<Connect><Stream>``
            (a ``<Start><Stream>`` fork cannot carry the bot's audio), or no ``url``.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise TwimlError(f"TwiML is not XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root is <{root.tag}>, expected <Response>")
    say = []
    for verb in root:
        if verb.tag == "Say":
            say.append((verb.text or "").strip())
        elif verb.tag == "Connect":
            stream = verb.find("Stream")
            if stream is None:
                continue
            url = (stream.get("url") or "").strip()
            if not url:
                raise TwimlError("<Connect><Stream> has no url attribute")
            parameters = {}
            for parameter in stream.findall("Parameter"):
                name = parameter.get("name")
                if name is None:
                    raise TwimlError("<Parameter> without a name attribute")
                parameters[name] = parameter.get("value", "")
            return TwimlStream(url, parameters, say)
    if root.find("Start/Stream") is not None:
        raise TwimlError("TwiML has <Start><Stream> (a one-way fork) but no <Connect><Stream>")
    raise TwimlError("TwiML has no <Connect><Stream>")


def websocket_url(stream_url: str, webhook_url: str) -> tuple[str, bool]:
    """Choose the URL to open for the stream.

    Twilio only connects with ``wss`` [T-STREAM]. Local test servers have no TLS,
    so when the webhook was plain ``http://`` the same host, port and path are
    opened with ``ws://``. A relative stream URL is resolved against the webhook URL.

    Args:
        stream_url: ``<Stream url>`` from the TwiML.
        webhook_url: the voice webhook URL that returned the TwiML.

    Returns:
        (URL to connect to, whether it was downgraded from wss to ws).

    Raises:
        TwimlError: the stream URL's scheme is not ws/wss (Twilio error 31922).
    """
    webhook = urlsplit(webhook_url)
    absolute = urljoin(webhook_url, stream_url)
    parts = urlsplit(absolute)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise TwimlError(f"stream URL {stream_url!r} is not wss:// (Twilio error 31922)")
    downgraded = False
    if scheme == "wss" and webhook.scheme == "http":
        scheme, downgraded = "ws", True
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")), downgraded


def webhook_form(call_sid: str, account_sid: str, from_number: str, to_number: str) -> dict[str, str]:
    """Return the form fields Twilio POSTs to the voice URL for a ringing inbound call.

    A realistic subset of Twilio's voice webhook parameters (values for the
    location fields are fixed sample values).
    """
    caller_location = {"City": "SAN FRANCISCO", "State": "CA", "Zip": "94105", "Country": "US"}
    called_location = {"City": "NEW YORK", "State": "NY", "Zip": "10001", "Country": "US"}
    form = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }
    for key, value in caller_location.items():
        form["From" + key] = value
        form["Caller" + key] = value
    for key, value in called_location.items():
        form["To" + key] = value
        form["Called" + key] = value
    return form
