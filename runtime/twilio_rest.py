"""Twilio's REST API (when credentials are configured): place, transfer and end calls.

* End: closing the media stream ends ``<Connect>``; with nothing after ``</Connect>`` Twilio then
  ends the call (TwiML ``<Connect>``). A TwiML Bin or another app may have verbs after it, so the
  server also updates the call to ``Status=completed`` (Twilio's Call resource), which hangs up
  whatever the TwiML says.
* Place (``place_call``): the Call resource's create, with the webhook that connects the stream,
  a ``StatusCallback`` for the call's progress and, optionally, asynchronous answering-machine
  detection (Twilio's "Answering Machine Detection": ``MachineDetection=DetectMessageEnd``,
  ``AsyncAmd=true``, ``AsyncAmdStatusCallback``).
* Transfer (``redirect_to_dial``): the Call resource's update with new TwiML (``<Dial>``), which
  replaces the call's TwiML; Twilio then ends the media stream (a ``stop`` message).

Every function here blocks on HTTP: run it in a thread (``runtime.blocking.run_blocking``).
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from twiml.responses import dial

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


CALL_PROGRESS_EVENTS = ("initiated", "ringing", "answered", "completed")
"""``StatusCallbackEvent`` of a placed call: every progress event Twilio offers (Call resource)."""


def place_call(client: Client, *, to: str, from_: str, url: str, status_callback: str,
               amd_callback: str | None = None, amd_timeout_s: int = 30) -> str:
    """Create an outbound call whose TwiML comes from ``url`` (POST); return its call SID.

    Args:
        to, from_: E.164 numbers (``to`` may be a SIP address), checked by the caller.
        url: the absolute webhook URL Twilio requests when the call is answered.
        status_callback: absolute URL for the call's progress (``CALL_PROGRESS_EVENTS``, POST).
        amd_callback: with a URL, asynchronous answering-machine detection that waits for the
            end of a voicemail greeting, its result POSTed there; ``None``: no detection.
        amd_timeout_s: ``MachineDetectionTimeout``, s (Twilio: 3 to 59).

    Raises:
        twilio.base.exceptions.TwilioRestException: Twilio refused (``status``, ``code``, ``msg``).
        OSError, requests.RequestException: Twilio could not be reached.
    """
    options = {"to": to, "from_": from_, "url": url, "method": "POST", "status_callback": status_callback,
               "status_callback_method": "POST", "status_callback_event": list(CALL_PROGRESS_EVENTS)}
    if amd_callback:
        options.update(machine_detection="DetectMessageEnd", machine_detection_timeout=amd_timeout_s, async_amd="true",
                       async_amd_status_callback=amd_callback, async_amd_status_callback_method="POST")
    return client.calls.create(**options).sid


def redirect_to_dial(client: Client, call_sid: str, target: str) -> str:
    """Give the live call ``call_sid`` the TwiML ``<Dial>target</Dial>`` (a cold transfer); return
    the call's status for the log.

    Raises:
        twilio.base.exceptions.TwilioRestException: Twilio refused (e.g. 404: the call has ended).
    """
    return client.calls(call_sid).update(twiml=dial(target)).status


def explain_rest_error(exc: TwilioRestException) -> str:
    """A short, safe text for an API error: Twilio's code and message (never the credentials)."""
    code = f" (Twilio error {exc.code})" if exc.code else ""
    return f"Twilio answered HTTP {exc.status}{code}: {str(exc.msg)[:300]}"
