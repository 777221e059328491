"""Check that webhooks and the media stream's WebSocket upgrade really come from Twilio (or SignalWire).

Twilio signs every request with ``X-Twilio-Signature``: base64 HMAC-SHA1 of the full URL plus
the sorted POST parameters, keyed with the account's auth token (protocol.md §6.1). The
WebSocket upgrade of a media stream is signed too, over the ``wss://`` URL exactly as written
in the TwiML, with no parameters; Twilio's security page says to also try it with a trailing
``/`` (§6.2). SignalWire signs cXML webhooks the same way with the project's signing key, in
``X-SignalWire-Signature`` (``X-Twilio-Signature`` as an alias) (§9). The maths is the
``twilio`` library's ``RequestValidator``.

Behind ngrok or a proxy the scheme, host or port the server sees differ from what Twilio
signed: set ``PUBLIC_URL`` and the URL is rebuilt from it.

SignalWire does not sign the WebSocket upgrade; it sends ``Authorization: Bearer <token>`` when
the ``<Stream>`` has ``authBearerToken`` (§9). The webhook answer to a SignalWire request puts a
*stream token* there: ``v1.<issued_s>.<nonce>.<HMAC-SHA256 of the rest, keyed with a secret>``,
accepted for ``STREAM_TOKEN_MAX_AGE_S`` after it was issued (SignalWire opens the stream right
after it reads the TwiML). A hand-written LaML Bin cannot compute one, so a fixed
``STREAM_BEARER_TOKEN`` is accepted too. The nonce of a stream token made for a call carries
that call's stream token (``core.call_tokens``, its ``.`` written ``-``), so the stream stays
bound to its call even if SignalWire dropped the ``<Parameter>`` that also carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from handlers.auth import header_bytes

SIGNATURE_HEADERS = ("X-Twilio-Signature", "X-SignalWire-Signature")
STREAM_TOKEN_MAX_AGE_S = 300
_TOKEN_VERSION = "v1"


class SignatureChecker:
    """Validates request signatures against one or more secrets (Twilio auth token, SignalWire key).

    Args:
        secrets: the keys to try; a request passes if any of them signed it.
        public_url: ``PUBLIC_URL`` (e.g. ``https://abc.ngrok.app``) or ``""``.
        stream_bearer_token: a fixed token also accepted as ``Authorization: Bearer`` on the
            stream upgrade (``STREAM_BEARER_TOKEN``), or ``""``.
    """

    def __init__(self, secrets: Sequence[str], public_url: str = "", stream_bearer_token: str = "") -> None:
        self._secrets = [secret.encode() for secret in secrets if secret]
        self._validators = [RequestValidator(secret) for secret in secrets if secret]
        self.public_url = public_url.rstrip("/")
        self._fixed_token = stream_bearer_token

    @property
    def enabled(self) -> bool:
        """True when at least one secret is configured."""
        return bool(self._validators)

    def check_webhook(
        self, *, method: str, scheme: str, host: str, path: str, query_string: str,
        form: Mapping | None, headers: Mapping[str, str],
    ) -> str | None:
        """Check an HTTP webhook (voice URL, stream status callback).

        Args:
            method: ``GET`` or ``POST``.
            scheme, host: as the request arrived (``X-Forwarded-Proto`` already applied), used
                when ``PUBLIC_URL`` is unset.
            path: the request path; query_string: the raw query string (not re-encoded), "" if none.
            form: the POST parameters (a Werkzeug ``MultiDict`` keeps repeated keys).
            headers: the request headers.

        Returns:
            ``None`` if a configured secret signed it, else the reason to log.
        """
        signature = _signature(headers)
        if signature is None:
            return "no X-Twilio-Signature header"
        base = self.public_url or f"{scheme}://{host}"
        url = base + path + (f"?{query_string}" if query_string else "")
        params = form if method == "POST" else {}
        if any(v.validate(url, params, signature) for v in self._validators):
            return None
        return f"signature does not match {url} (set PUBLIC_URL to the URL Twilio calls)"

    def check_websocket(self, *, host: str, path: str, headers: Mapping[str, str], now_s: float) -> str | None:
        """Check the WebSocket upgrade of a media stream: Twilio's signature of the ``wss://`` URL
        (empty params, with or without ``/``), or SignalWire's ``Authorization: Bearer`` stream token.

        Args:
            now_s: the current Unix time, s (a stream token expires).

        Returns:
            ``None`` if a configured secret signed it, else the reason to log.
        """
        signature = _signature(headers)
        if signature is None:
            bearer = headers.get("Authorization", "")
            if bearer.startswith("Bearer "):
                return self.check_stream_token(bearer[len("Bearer "):].strip(), now_s)
            return "no X-Twilio-Signature header (nor a SignalWire bearer token) on the WebSocket upgrade"
        public_host = urlsplit(self.public_url).netloc if self.public_url else host
        url = f"wss://{public_host}{path}"
        for candidate in (url, url + "/"):
            if any(v.validate(candidate, {}, signature) for v in self._validators):
                return None
        return f"signature does not match {url} (set PUBLIC_URL to the host in the TwiML)"


    def make_stream_token(self, now_s: float, call_token: str = "") -> str:
        """A token for ``<Stream authBearerToken=…>`` (SignalWire), signed with the first secret.

        Args:
            call_token: the call's stream token (``core.call_tokens``, ``"<digits>.<hex>"``), carried
                as the nonce; ``""``: a random nonce.

        Raises:
            ValueError: no secret is configured.
        """
        if not self._secrets:
            raise ValueError("no secret to sign a stream token with")
        nonce = call_token.replace(".", "-") if call_token else _secrets.token_hex(8)
        body = f"{_TOKEN_VERSION}.{int(now_s)}.{nonce}"
        return f"{body}.{_mac(self._secrets[0], body)}"

    def check_stream_token(self, token: str, now_s: float) -> str | None:
        """``None`` if ``token`` is ``STREAM_BEARER_TOKEN`` or a stream token a secret signed less
        than ``STREAM_TOKEN_MAX_AGE_S`` ago; else the reason to log."""
        # Compared as bytes: hmac.compare_digest raises TypeError on non-ASCII str (a 500, not a 403).
        if self._fixed_token and hmac.compare_digest(header_bytes(token), self._fixed_token.encode("utf-8", "surrogatepass")):
            return None
        body, _, mac = token.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or parts[0] != _TOKEN_VERSION or not (parts[1].isascii() and parts[1].isdigit()):
            return "the bearer token is not a stream token (nor STREAM_BEARER_TOKEN)"
        if not any(hmac.compare_digest(header_bytes(mac), _mac(secret, body).encode()) for secret in self._secrets):
            return "the stream token's signature does not match"
        age_s = now_s - int(parts[1])
        if not -5 <= age_s <= STREAM_TOKEN_MAX_AGE_S:
            return f"the stream token was issued {age_s:.0f} s ago (accepted for {STREAM_TOKEN_MAX_AGE_S} s)"
        return None


def call_token_in_bearer(bearer: str) -> str:
    """The call's stream token carried by a SignalWire stream token's nonce, else ``bearer`` itself
    (a per-call token or ``STREAM_BEARER_TOKEN`` sent as the bearer); ``""`` for none. Unverified:
    ``core.call_tokens`` checks it against the call SID at ``start``."""
    parts = bearer.split(".")
    if len(parts) == 4 and parts[0] == _TOKEN_VERSION and "-" in parts[2]:
        return parts[2].replace("-", ".", 1)
    return bearer


def _mac(secret: bytes, body: str) -> str:
    return hmac.new(secret, body.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _signature(headers: Mapping[str, str]) -> str | None:
    for name in SIGNATURE_HEADERS:
        value = headers.get(name)
        if value:
            return value
    return None


SIGNED_WEBHOOKS = ("/incoming-call", "/forward-call", "/stream-status", "/outbound-call", "/call-status", "/amd-status")


def install(app, checker: SignatureChecker, stream_path: str) -> None:
    """Reject unsigned requests to the webhooks and the stream upgrade with 403, before any route runs.

    For the WebSocket route this runs before flask-sock answers the upgrade, so a forged
    upgrade never becomes a socket (Twilio then logs 31920 for a misconfigured server).
    """
    import logging
    import time

    from flask import Response, request

    log = logging.getLogger(__name__)

    app.extensions["signature_checker"] = checker

    @app.before_request
    def verify_signature():
        if not checker.enabled:
            return None
        if request.path == stream_path:
            reason = checker.check_websocket(host=request.host, path=request.path, headers=request.headers, now_s=time.time())
        elif request.path in SIGNED_WEBHOOKS:
            reason = checker.check_webhook(
                method=request.method,
                scheme=request.headers.get("X-Forwarded-Proto", request.scheme),
                host=request.host,
                path=request.path,
                query_string=request.query_string.decode("latin-1"),
                form=request.form,
                headers=request.headers,
            )
        else:
            return None
        if reason is None:
            return None
        log.warning("403 %s %s from %s: %s", request.method, request.path, request.remote_addr, reason)
        return Response("Forbidden: the request signature is missing or wrong.\n", status=403, mimetype="text/plain")
