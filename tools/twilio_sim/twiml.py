"""The voice webhook as Twilio calls it, and the TwiML ``<Stream>`` it answers with.

Pure: no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit, urlunsplit

# TwiML <Stream track> -> the ``start.tracks`` Twilio announces [T-STREAM "track", T-WS; protocol.md §2.2, §4.2].
STREAM_TRACKS = {
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both_tracks": ("inbound", "outbound"),
}
DEFAULT_TRACK = "inbound_track"
DIAL_NOUNS = ("Number", "Client", "Sip", "Conference", "Queue", "Application")


class TwimlError(ValueError):
    """The voice webhook's TwiML has no usable ``<Stream>`` for the requested mode."""


@dataclass(frozen=True)
class TwimlStream:
    """What Twilio takes from the TwiML answer.

    Attributes:
        url: the ``<Stream url>`` as written (relative URLs resolved later).
        parameters: ``<Parameter name value>`` pairs, in document order (become ``start.customParameters``).
        say: texts of ``<Say>`` verbs before the stream's verb (Twilio speaks them before streaming).
        verb: "Connect" (bidirectional) or "Start" (unidirectional fork).
        track: the ``track`` attribute: "inbound_track" (default), "outbound_track" or "both_tracks".
        status_callback: the ``statusCallback`` attribute as written, or None.
        status_callback_method: "POST" (default) or "GET".
        name: the ``name`` attribute, or None.
        dial: the targets of the ``<Dial>`` verbs after the stream, in order: the ``<Dial>`` text, or
            ``Noun:value`` for a nested noun (e.g. "Number:+15551234567"). Not simulated.
        codec: SignalWire's ``codec`` attribute as written ("L16@16000h", "L16@24000h"), or None
            (μ-law 8 kHz). Twilio has no such attribute [SW-STREAM, protocol.md §9].
        auth_bearer_token: SignalWire's ``authBearerToken`` attribute, or None: sent as
            ``Authorization: Bearer …`` on the WebSocket upgrade [SW-STREAM].
    """

    url: str
    parameters: dict[str, str]
    say: list[str]
    verb: str = "Connect"
    track: str = DEFAULT_TRACK
    status_callback: str | None = None
    status_callback_method: str = "POST"
    name: str | None = None
    dial: list[str] = field(default_factory=list)
    codec: str | None = None
    auth_bearer_token: str | None = None

    @property
    def tracks(self) -> list[str]:
        """The ``start.tracks`` Twilio sends for this stream: e.g. ["inbound", "outbound"] for both_tracks."""
        return list(STREAM_TRACKS[self.track])


def parse_twiml(text: str, fork: bool = False) -> TwimlStream:
    """Find the stream in a TwiML document [T-STREAM, protocol.md §4].

    Args:
        text: the webhook response body, e.g. ``<Response><Say>Hi</Say><Connect><Stream
            url="wss://host/media-stream"><Parameter name="From" value="+1..."/></Stream>
            </Connect></Response>``, or for a fork ``<Response><Start><Stream url="wss://host/media-stream"
            track="both_tracks" statusCallback="https://host/stream-status"/></Start><Dial>+1555…</Dial>
            </Response>``.
        fork: look for the unidirectional ``<Start><Stream>`` instead of the bidirectional
            ``<Connect><Stream>``.

    Returns:
        The first matching stream: URL, parameters, attributes, the ``<Say>`` texts before it and,
        for a fork, the ``<Dial>`` targets after it.

    Raises:
        TwimlError: not XML, root is not ``<Response>``; in the default mode no ``<Connect><Stream>``
            (a ``<Start><Stream>`` fork cannot carry the bot's audio) or a track other than
            inbound_track (Twilio error 31941); in fork mode no ``<Start><Stream>``, or a
            ``<Connect><Stream>`` (bidirectional, not a fork), or an unknown track (31941); a stream
            without ``url``, a ``<Parameter>`` without name, or a statusCallbackMethod other than GET/POST.
    """
    root = _response(text)
    if fork and root.find("Connect/Stream") is not None:
        raise TwimlError("--fork expects a <Start><Stream> (listen-only fork) but the TwiML has a <Connect><Stream> "
                         "(a bidirectional stream): use the normal mode (/incoming-call) for it")
    wanted = "Start" if fork else "Connect"
    say = []
    verbs = list(root)
    for position, verb in enumerate(verbs):
        if verb.tag == "Say":
            say.append((verb.text or "").strip())
        elif verb.tag == wanted:
            stream = verb.find("Stream")
            if stream is None:
                continue
            dial = _dial_targets(verbs[position + 1:]) if fork else []
            return _read_stream(stream, wanted, say, dial)
    if fork:
        raise TwimlError("TwiML has no <Start><Stream> (the listen-only fork --fork expects)")
    if root.find("Start/Stream") is not None:
        raise TwimlError("TwiML has <Start><Stream> (a one-way fork) but no <Connect><Stream>; use --fork for a fork")
    raise TwimlError("TwiML has no <Connect><Stream>")


def _read_stream(stream: ElementTree.Element, verb: str, say: list[str], dial: list[str]) -> TwimlStream:
    url = (stream.get("url") or "").strip()
    if not url:
        raise TwimlError(f"<{verb}><Stream> has no url attribute")
    track = stream.get("track", DEFAULT_TRACK)
    if verb == "Connect" and track != "inbound_track":
        raise TwimlError(f"<Connect><Stream track={track!r}>: only inbound_track is allowed with <Connect> "
                         "(Twilio error 31941)")
    if track not in STREAM_TRACKS:
        raise TwimlError(f"<Stream track={track!r}> is not one of {sorted(STREAM_TRACKS)} (Twilio error 31941)")
    method = stream.get("statusCallbackMethod", "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(f"<Stream statusCallbackMethod={method!r}> is not GET or POST")
    parameters = {}
    for parameter in stream.findall("Parameter"):
        name = parameter.get("name")
        if name is None:
            raise TwimlError("<Parameter> without a name attribute")
        parameters[name] = parameter.get("value", "")
    callback = (stream.get("statusCallback") or "").strip() or None
    return TwimlStream(url, parameters, say, verb=verb, track=track, status_callback=callback,
                       status_callback_method=method, name=stream.get("name") or None, dial=dial,
                       codec=(stream.get("codec") or "").strip() or None,
                       auth_bearer_token=stream.get("authBearerToken") or None)


def _dial_targets(verbs: list[ElementTree.Element]) -> list[str]:
    targets = []
    for verb in verbs:
        if verb.tag != "Dial":
            continue
        nouns = [noun for noun in verb if noun.tag in DIAL_NOUNS]
        if nouns:
            targets.extend(f"{noun.tag}:{(noun.text or '').strip()}" for noun in nouns)
        else:
            targets.append((verb.text or "").strip())
    return targets


def _resolve(url: str, webhook_url: str, secure: str, plain: str) -> tuple[str, bool]:
    """Resolve ``url`` against the webhook, map http(s) to the wanted schemes, downgrade TLS for plain http."""
    webhook = urlsplit(webhook_url)
    parts = urlsplit(urljoin(webhook_url, url))
    scheme = parts.scheme
    if secure == "wss":
        scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
    if scheme not in (secure, plain):
        raise ValueError(scheme)
    downgraded = False
    if scheme == secure and webhook.scheme == "http":
        scheme, downgraded = plain, True
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")), downgraded


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
    try:
        return _resolve(stream_url, webhook_url, "wss", "ws")
    except ValueError:
        raise TwimlError(f"stream URL {stream_url!r} is not wss:// (Twilio error 31922)") from None


def status_callback_urls(callback_url: str, webhook_url: str) -> tuple[str, str, bool]:
    """Choose the URLs for the stream's status callback requests.

    Twilio's docs ask for an absolute URL [T-STREAM]; a relative one is resolved against the
    webhook URL, as Twilio does for other TwiML URLs. Like ``websocket_url``, an ``https://``
    callback is requested over plain ``http://`` when the webhook itself was plain ``http://``
    (a local server without TLS), while the signature stays computed over the URL Twilio would
    request (the resolved ``https://`` one) [protocol.md §6.1].

    Args:
        callback_url: ``<Stream statusCallback>`` from the TwiML.
        webhook_url: the voice webhook URL that returned the TwiML.

    Returns:
        (URL to request, URL to sign, whether it was downgraded from https to http).

    Raises:
        TwimlError: the callback URL's scheme is not http/https.
    """
    try:
        request_url, downgraded = _resolve(callback_url, webhook_url, "https", "http")
    except ValueError:
        raise TwimlError(f"statusCallback URL {callback_url!r} is not http(s)://") from None
    signed_url = urljoin(webhook_url, callback_url).split("#", 1)[0]
    return request_url, signed_url, downgraded


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


def dial_targets(text: str) -> list[str]:
    """The ``<Dial>`` targets of a whole TwiML document (e.g. the ``Twiml`` of a REST update that
    transfers a call), as in ``TwimlStream.dial``: the ``<Dial>`` text, or ``Noun:value``.

    Raises:
        TwimlError: not XML, or the root is not ``<Response>``.
    """
    root = _response(text)
    return _dial_targets(list(root))


def _response(text: str) -> ElementTree.Element:
    """The ``<Response>`` root of a TwiML document.

    Raises:
        TwimlError: not XML, or another root.
    """
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise TwimlError(f"TwiML is not XML: {error}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root is <{root.tag}>, expected <Response>")
    return root
