"""Twilio or SignalWire: what the simulated platform does differently, in one object.

SignalWire's cXML ``<Stream>`` is "compatible with Twilio's" [SW-AGENT]; the differences the
simulator plays (protocol.md §9) are: UUID SIDs, its messages (``SignalWireMessages``), the
``codec`` attribute choosing μ-law 8 kHz or L16 at 16/24 kHz, webhook signatures in
``X-SignalWire-Signature`` keyed with the project's signing key [SW-VALID], and a WebSocket
upgrade that carries no signature, only ``Authorization: Bearer`` when the TwiML sets
``authBearerToken`` [SW-STREAM]. Everything else (webhook form fields, TwiML, playback, marks,
``clear``, status callbacks) is Twilio's.

Pure: no I/O. The ``twilio`` library is imported when a request is signed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tools.twilio_sim.media_format import MULAW_8K, MediaFormat, media_format_for_codec
from tools.twilio_sim.messages import SignalWireMessages, TwilioMessages, random_sid, random_uuid_sid
from tools.twilio_sim.twiml import TwimlStream


@dataclass(frozen=True)
class RequestSigner:
    """Sign requests the way the platform does: base64 HMAC-SHA1 of the URL plus the sorted POST
    parameters (``twilio.request_validator.RequestValidator``) [protocol.md §6.1, §9].

    Attributes:
        header: "X-Twilio-Signature" or "X-SignalWire-Signature".
        key: the Twilio auth token or the SignalWire signing key.
    """

    header: str
    key: str

    def headers(self, url: str, params: dict[str, str]) -> dict[str, str]:
        """Return the signature header for a request to ``url`` with POST ``params`` (``{}`` for GET/WebSocket)."""
        from twilio.request_validator import RequestValidator

        return {self.header: RequestValidator(self.key).compute_signature(url, params)}


class TwilioDialect:
    """Twilio's side of a call [T-WS, T-STREAM, T-SEC]: ``MZ``/``CA``/``AC`` SIDs, μ-law 8 kHz only,
    ``X-Twilio-Signature`` on webhooks and on the WebSocket upgrade."""

    name = "twilio"
    platform = "Twilio"
    signature_header = "X-Twilio-Signature"
    user_agent: str | None = "TwilioProxy/1.1"

    def new_sids(self) -> tuple[str, str, str]:
        """Return fresh (call SID, account SID, stream SID)."""
        return random_sid("CA"), random_sid("AC"), random_sid("MZ")

    def choose_media_format(self, twiml_codec: str | None, fallback_codec: str | None = None
                            ) -> tuple[MediaFormat, str | None]:
        """Return the stream's format and a note to print (or None).

        Twilio streams μ-law 8 kHz whatever the TwiML says: it has no ``codec`` attribute.
        """
        note = None
        if twiml_codec:
            note = f"<Stream codec={twiml_codec!r}>: Twilio has no codec attribute; the stream is μ-law 8 kHz"
        return MULAW_8K, note

    def messages(self, stream_sid: str, account_sid: str, call_sid: str, first_timestamp_ms: int,
                 media_format: MediaFormat = MULAW_8K) -> TwilioMessages:
        """Return the message builder for one stream.

        Raises:
            ValueError: a format other than μ-law 8 kHz.
        """
        if media_format != MULAW_8K:
            raise ValueError(f"Twilio streams are μ-law 8 kHz only, not {media_format.label}")
        return TwilioMessages(stream_sid, account_sid, call_sid, first_timestamp_ms)

    def signer(self, key: str | None) -> RequestSigner | None:
        """Return the signer for ``key`` (None when there is no key: requests go unsigned)."""
        return RequestSigner(self.signature_header, key) if key else None

    def websocket_headers(self, twiml: TwimlStream, signer: RequestSigner | None) -> dict[str, str]:
        """Return the extra headers of the WebSocket upgrade.

        Twilio signs the ``<Stream url>`` exactly as written, with empty params [protocol.md §6.2].
        """
        return signer.headers(twiml.url, {}) if signer is not None else {}


class SignalWireDialect(TwilioDialect):
    """SignalWire's cXML side of a call [SW-STREAM, SW-VALID, protocol.md §9]."""

    name = "signalwire"
    platform = "SignalWire"
    signature_header = "X-SignalWire-Signature"
    user_agent = None  # undocumented: the HTTP client's own

    def new_sids(self) -> tuple[str, str, str]:
        """Return fresh (call SID, account SID, stream SID), all UUIDs."""
        return random_uuid_sid(), random_uuid_sid(), random_uuid_sid()

    def choose_media_format(self, twiml_codec: str | None, fallback_codec: str | None = None
                            ) -> tuple[MediaFormat, str | None]:
        """Return the stream's format and a note to print (or None).

        The TwiML's ``codec`` decides, as on SignalWire. ``fallback_codec`` (``callsim --codec``)
        is used only when the TwiML has none, to try a server's L16 handling before its TwiML asks
        for it; when both are given and differ, the TwiML wins and the note says so.

        Raises:
            ValueError: a codec SignalWire does not document (``media_format_for_codec``).
        """
        if twiml_codec:
            note = None
            if fallback_codec and fallback_codec != twiml_codec:
                note = f"--codec {fallback_codec} ignored: the TwiML asks for codec={twiml_codec!r}"
            return media_format_for_codec(twiml_codec), note
        if fallback_codec:
            note = f"the TwiML has no codec: using --codec {fallback_codec} (SignalWire itself would send μ-law 8 kHz)"
            return media_format_for_codec(fallback_codec), note
        return MULAW_8K, None

    def messages(self, stream_sid: str, account_sid: str, call_sid: str, first_timestamp_ms: int,
                 media_format: MediaFormat = MULAW_8K) -> SignalWireMessages:
        """Return the message builder for one stream in ``media_format``."""
        return SignalWireMessages(stream_sid, account_sid, call_sid, first_timestamp_ms, media_format)

    def websocket_headers(self, twiml: TwimlStream, signer: RequestSigner | None) -> dict[str, str]:
        """Return the extra headers of the WebSocket upgrade.

        SignalWire documents no signature on the upgrade, only ``Authorization: Bearer <token>``
        when the ``<Stream>`` has ``authBearerToken`` [SW-STREAM, protocol.md §9].
        """
        if twiml.auth_bearer_token:
            return {"Authorization": f"Bearer {twiml.auth_bearer_token}"}
        return {}


TWILIO = TwilioDialect()
SIGNALWIRE = SignalWireDialect()
DIALECTS = {dialect.name: dialect for dialect in (TWILIO, SIGNALWIRE)}
