"""Login for the call history, the recordings and ``/metrics``: HTTP Basic, or a bearer token for ``/metrics``.

Who may read what (the settings are ``DASHBOARD_USER``, ``DASHBOARD_PASSWORD``, ``METRICS_TOKEN``):

* with ``DASHBOARD_PASSWORD`` set, a request must carry ``Authorization: Basic`` with that user
  and password; ``/metrics`` also accepts ``Authorization: Bearer <METRICS_TOKEN>``;
* with no credential configured for the route (development), only loopback clients
  (``127.0.0.0/8``, ``::1``) that did not come through a proxy (no ``Forwarded``/``X-Forwarded-For``
  /``X-Real-IP`` header) are served: a reverse proxy on the same machine would otherwise make
  every visitor look local;
* anything else is ``401`` with ``WWW-Authenticate: Basic realm="callstream"``.

The checks are pure functions of the header values (:func:`access_denied`); :func:`require_login`
installs them as a ``before_request`` hook on a blueprint, so every route of the blueprint is
protected unless named as open, and the hook runs before the route looks anything up (a wrong
password is a ``401``, never a ``404`` that would tell which calls exist). Secrets are compared
as bytes with :func:`hmac.compare_digest` (constant time; non-ASCII input never raises).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Mapping

from flask import Response, current_app, request

REALM = "callstream"
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def header_bytes(value: str) -> bytes:
    """A header value back to the bytes that were sent (WSGI decodes headers as latin-1); never raises."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server: any text, compared as UTF-8
        return value.encode("utf-8", "surrogatepass")


def _secret_bytes(value: str) -> bytes:
    return value.encode("utf-8", "surrogatepass")


def _credentials(authorization: str | None, scheme: str) -> bytes | None:
    """The credentials after ``<scheme> `` in an ``Authorization`` header (scheme case-insensitive), or ``None``."""
    given, _, credentials = (authorization or "").strip().partition(" ")
    if given.lower() != scheme:
        return None
    return header_bytes(credentials.strip())


def basic_matches(authorization: str | None, user: str, password: str) -> bool:
    """Tell whether an ``Authorization: Basic <base64(user:password)>`` header carries ``user`` and ``password``.

    The decoded credentials are compared as bytes with the UTF-8 of ``user`` and ``password``
    (what browsers send), both in constant time. Always ``False`` when ``password`` is empty.
    Never raises: a missing, malformed or non-ASCII header is simply ``False``.
    """
    encoded = _credentials(authorization, "basic")
    if not password or encoded is None:
        return False
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    given_user, colon, given_password = decoded.partition(b":")
    if not colon:
        return False
    user_ok = hmac.compare_digest(given_user, _secret_bytes(user))
    password_ok = hmac.compare_digest(given_password, _secret_bytes(password))
    return user_ok and password_ok


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Tell whether an ``Authorization: Bearer <token>`` header carries ``token`` (bytes, constant time).

    Always ``False`` when ``token`` is empty. Never raises (non-ASCII headers included).
    """
    given = _credentials(authorization, "bearer")
    if not token or given is None:
        return False
    return hmac.compare_digest(given, _secret_bytes(token))


def is_loopback(remote_addr: str | None) -> bool:
    """True for ``127.0.0.0/8``, ``::1`` and an IPv4-mapped loopback (``::ffff:127.0.0.1``); False for anything else."""
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def access_denied(
    *,
    authorization: str | None,
    remote_addr: str | None,
    headers: Mapping[str, str],
    user: str,
    password: str,
    token: str = "",
) -> str | None:
    """Decide one request.

    Args:
        authorization: the ``Authorization`` header, or ``None``.
        remote_addr: the peer's address (``request.remote_addr``).
        headers: the request headers (only the proxy headers are looked at).
        user, password: ``DASHBOARD_USER`` and ``DASHBOARD_PASSWORD`` (empty: no Basic login).
        token: a bearer token also accepted (``METRICS_TOKEN`` on ``/metrics``), or ``""``.

    Returns:
        ``None`` to serve the request, else the one-line reason for the ``401``.
    """
    if password and basic_matches(authorization, user, password):
        return None
    if token and bearer_matches(authorization, token):
        return None
    if not password and not token:
        if is_loopback(remote_addr) and not any(headers.get(name) for name in PROXY_HEADERS):
            return None
        return ("Unauthorized: the call history is served only to this machine until DASHBOARD_PASSWORD is set "
                "(then log in as DASHBOARD_USER).")
    if password and token:
        return "Unauthorized: log in with DASHBOARD_USER and DASHBOARD_PASSWORD, or send Authorization: Bearer <METRICS_TOKEN>."
    if token:
        return "Unauthorized: send Authorization: Bearer <METRICS_TOKEN>."
    return "Unauthorized: log in with DASHBOARD_USER and DASHBOARD_PASSWORD."


def require_login(blueprint, *, open_endpoints: Iterable[str] = (), token_endpoints: Mapping[str, str] | None = None) -> None:
    """Protect every route of ``blueprint`` with :func:`access_denied`, before the route runs.

    Call it once, where the blueprint is defined (before it is registered on any app); the hook
    reads the settings from ``current_app.config["CALLSTREAM"]`` (``core.settings.Settings``) at each request.

    Args:
        blueprint: a ``flask.Blueprint``.
        open_endpoints: endpoints served to anyone (e.g. ``"api.health"``); every other route is protected.
        token_endpoints: ``{endpoint: Settings attribute}``: that setting's value is also accepted as a
            bearer token on that endpoint (``{"api.prometheus_metrics": "metrics_token"}``).
    """
    open_set = frozenset(open_endpoints)
    token_settings = dict(token_endpoints or {})

    @blueprint.before_request
    def _require_login():
        if request.endpoint in open_set:
            return None
        settings = current_app.config["CALLSTREAM"]
        setting = token_settings.get(request.endpoint or "")
        reason = access_denied(
            authorization=request.headers.get("Authorization"),
            remote_addr=request.remote_addr,
            headers=request.headers,
            user=settings.dashboard_user,
            password=settings.dashboard_password,
            token=getattr(settings, setting) if setting else "",
        )
        if reason is None:
            return None
        challenges = []
        token_set = bool(setting and getattr(settings, setting))
        if settings.dashboard_password or not token_set:
            challenges.append(("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'))
        if token_set:
            challenges.append(("WWW-Authenticate", f'Bearer realm="{REALM}"'))
        return Response(reason + "\n", status=401, mimetype="text/plain", headers=challenges)
