"""End a call for real through Twilio's REST API (when credentials are configured).

Closing the media stream ends ``<Connect>``; with nothing after ``</Connect>`` Twilio then ends
the call (TwiML ``<Connect>``). A TwiML Bin or another app may have verbs after it, so when
``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` are set the server also updates the call to
``Status=completed`` (Twilio's Call resource), which hangs up whatever the TwiML says.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

log = logging.getLogger(__name__)


class RebasedHttpClient(TwilioHttpClient):
    """The twilio library's HTTP client, sending every request to ``base_url`` (scheme, host and
    port) instead of Twilio's hosts: for a stand-in of the REST API in tests and the simulator.

    Args:
        base_url: e.g. ``http://127.0.0.1:8011``; its path, if any, is ignored.

    Raises:
        ValueError: ``base_url`` is not an http(s) URL with a host.
    """

    def __init__(self, base_url: str, **kwargs) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        super().__init__(**kwargs)
        self.base = (parts.scheme, parts.netloc)

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        return super().request(method, urlunsplit((*self.base, parts.path, parts.query, parts.fragment)), *args, **kwargs)


def make_client(account_sid: str, auth_token: str, http_client=None, api_base_url: str = "") -> Client | None:
    """A REST client, or ``None`` unless both credentials are set. ``api_base_url`` (``""``:
    Twilio's own) sends its requests to a stand-in (``RebasedHttpClient``)."""
    if not (account_sid and auth_token):
        return None
    if http_client is None and api_base_url:
        http_client = RebasedHttpClient(api_base_url)
    return Client(account_sid, auth_token, http_client=http_client)


def complete_call(client: Client, call_sid: str) -> str:
    """Hang up ``call_sid`` (blocking: run it in a thread). Returns what happened, for the log.

    A call that has already ended (HTTP 404, Twilio error 20404) is not an error.
    """
    try:
        call = client.calls(call_sid).update(status="completed")
    except TwilioRestException as exc:
        if exc.status == 404:
            return "already ended"
        raise
    return f"status {call.status}"
