"""Per-call stream tokens: bind a media stream to the webhook that answered its call.

Anyone who can open ``/media-stream`` could otherwise name any call SID in ``start`` and
overwrite that call's record and recording, or hang it up. The voice webhook (signed by
Twilio) puts a token for its ``CallSid`` in the TwiML as ``<Parameter name="callstream_token">``;
Twilio hands ``<Parameter>``s back to the socket as ``start.customParameters`` (protocol.md
§4.3, which also suggests this defence), and the worker checks it once, at ``start``.

Token: ``"<expiry, Unix s>.<HMAC-SHA256(key, "<call SID>.<expiry>"), 64 hex digits>"``, about 75
characters (Twilio's limit is 500 for a parameter's name and value together). The key is
derived from the signing secret (``HMAC-SHA256(secret, KEY_LABEL)``: ``TWILIO_AUTH_TOKEN``,
``SIGNALWIRE_SIGNING_KEY``), so every process of one deployment accepts the others' tokens;
without them ``runtime.services`` uses ``STREAM_BEARER_TOKEN`` as the secret, and with no secret
at all a random key per process is used (a single-process development server).

A hand-written TwiML Bin or LaML Bin cannot compute an HMAC: it may carry the fixed
``STREAM_BEARER_TOKEN`` in the same parameter instead. That binds the stream to the owner's
TwiML, not to one call.

Pure: no clock reads; time comes in as ``now_s`` (Unix time, s).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence

TOKEN_PARAMETER = "callstream_token"
"""The ``<Parameter>`` name (and ``start.customParameters`` key) that carries the token."""
TOKEN_LIFETIME_S = 300
"""How long after the webhook the stream may start: Twilio starts it at once, but a ``<Say>``
(``TWIML_GREETING``) may play first."""
CLOCK_SKEW_S = 60
"""Expiry further ahead than ``TOKEN_LIFETIME_S`` that is still accepted (another process's clock)."""
KEY_LABEL = b"callstream stream token key v1"


def derive_key(secret: str) -> bytes:
    """The token key of one signing secret: ``HMAC-SHA256(secret, KEY_LABEL)`` (32 bytes)."""
    return hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def make_token(key: bytes, call_sid: str, now_s: float, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
    """A token for ``call_sid`` that expires ``lifetime_s`` after ``now_s`` (Unix time, s)."""
    expiry_s = int(now_s) + lifetime_s
    return f"{expiry_s}.{_mac(key, call_sid, expiry_s)}"


def verify_token(keys: Sequence[bytes], call_sid: str, token: str, now_s: float) -> str | None:
    """Check ``token`` for ``call_sid`` at ``now_s`` (Unix time, s).

    Returns:
        ``None`` if one of ``keys`` made it for this call SID and it has not expired; else
        the reason to log (never the token itself).
    """
    expiry, _, mac = token.partition(".")
    # ASCII only: str.isdigit() takes "²", and compare_digest() raises on non-ASCII text
    if not token.isascii() or not expiry.isdigit() or len(expiry) > 12 or len(mac) != 64:
        return "the stream token is malformed"
    expiry_s = int(expiry)
    if not any(hmac.compare_digest(mac.encode(), _mac(key, call_sid, expiry_s).encode()) for key in keys):
        return "the stream token was not made for this call"
    if now_s > expiry_s:
        return f"the stream token expired {now_s - expiry_s:.0f} s ago"
    if expiry_s - now_s > TOKEN_LIFETIME_S + CLOCK_SKEW_S:
        return "the stream token expires too far in the future"
    return None


class CallTokens:
    """Make and check the stream tokens of one deployment.

    Args:
        secrets: the signing secrets (``TWILIO_AUTH_TOKEN``, ``SIGNALWIRE_SIGNING_KEY``); empty
            ones are skipped. Tokens are made with the first, accepted from any. None: a random
            key (tokens are then valid in this process only).
        bearer_token: ``STREAM_BEARER_TOKEN``, also accepted in the parameter; ``""`` for none.
    """

    def __init__(self, secrets: Sequence[str], bearer_token: str = "") -> None:
        self._keys = [derive_key(secret) for secret in secrets if secret] or [_secrets.token_bytes(32)]
        self._bearer = bearer_token.encode()

    def make(self, call_sid: str, now_s: float) -> str:
        """The token to put in the TwiML answering ``call_sid`` at ``now_s`` (Unix time, s)."""
        return make_token(self._keys[0], call_sid, now_s)

    def check(self, call_sid: str, custom_parameters: Mapping[str, str], now_s: float, bearer_token: str = "") -> str | None:
        """Check the ``start`` of a stream for ``call_sid``.

        Args:
            custom_parameters: ``start.customParameters``.
            now_s: Unix time, s.
            bearer_token: a token the WebSocket upgrade carried (SignalWire's ``authBearerToken``,
                ``handlers.signatures.call_token_in_bearer``), tried when the parameter is absent
                or wrong; ``""`` for none.

        Returns:
            ``None`` if ``TOKEN_PARAMETER`` (or the bearer token) holds a valid token for this
            call or ``STREAM_BEARER_TOKEN``; else the reason to log.
        """
        candidates = [t for t in (custom_parameters.get(TOKEN_PARAMETER), bearer_token) if t]
        if not candidates:
            return f"no {TOKEN_PARAMETER} parameter (the stream was not answered by this server's webhook)"
        reasons = []
        for token in candidates:
            if self._bearer and hmac.compare_digest(token.encode(), self._bearer):
                return None
            reason = verify_token(self._keys, call_sid, token, now_s)
            if reason is None:
                return None
            reasons.append(reason)
        return reasons[0]


def _mac(key: bytes, call_sid: str, expiry_s: int) -> str:
    return hmac.new(key, f"{call_sid}.{expiry_s}".encode(), hashlib.sha256).hexdigest()
