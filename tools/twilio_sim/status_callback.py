"""Twilio's stream status callbacks: the request for one stream event, and how its outcome is judged.

Pure: no I/O; the event time comes in as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode

STREAM_EVENTS = ("stream-started", "stream-stopped", "stream-error")  # StreamEvent values [T-STREAM]


@dataclass(frozen=True)
class CallbackRequest:
    """One status callback request as Twilio sends it.

    Attributes:
        method: "POST" (form-encoded body) or "GET" (fields in the query string).
        url: the URL to request (for GET, with the fields appended as a query string).
        signed_url: the URL the ``X-Twilio-Signature`` is computed over (for GET, with the query string).
        form: the POST body fields; ``{}`` for GET (Twilio signs GET requests over the URL alone) [protocol.md §6.1].
        event: the StreamEvent.
    """

    method: str
    url: str
    signed_url: str
    form: dict[str, str]
    event: str


def iso8601_utc(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with milliseconds, e.g. "2024-05-01T12:34:56.789Z".

    Raises:
        ValueError: ``moment`` is naive (no timezone).
    """
    if moment.tzinfo is None:
        raise ValueError("iso8601_utc needs an aware datetime")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_callback_form(account_sid: str, call_sid: str, stream_sid: str, stream_name: str | None, event: str,
                         moment: datetime, error: str | None = None) -> dict[str, str]:
    """Return the fields Twilio sends to a ``<Stream statusCallback>`` [T-STREAM, protocol.md §5].

    Args:
        account_sid, call_sid, stream_sid: the SIDs (``AC…``, ``CA…``, ``MZ…``).
        stream_name: the ``<Stream name>`` attribute, or None ("Defaults to the StreamSid").
        event: one of ``STREAM_EVENTS``.
        moment: when the event happened (aware datetime), sent as ``Timestamp`` in ISO 8601 UTC.
        error: the ``StreamError`` text for "stream-error" (left out when None).

    Returns:
        AccountSid, CallSid, StreamSid, StreamName, StreamEvent, Timestamp and, with ``error``, StreamError.

    Raises:
        ValueError: ``event`` is not a stream event.
    """
    if event not in STREAM_EVENTS:
        raise ValueError(f"StreamEvent {event!r} is not one of {STREAM_EVENTS}")
    form = {
        "AccountSid": account_sid,
        "CallSid": call_sid,
        "StreamSid": stream_sid,
        "StreamName": stream_name or stream_sid,
        "StreamEvent": event,
        "Timestamp": iso8601_utc(moment),
    }
    if error is not None:
        form["StreamError"] = error
    return form


def callback_request(method: str, request_url: str, signed_url: str, form: dict[str, str]) -> CallbackRequest:
    """Lay out a status callback for its method: a form-encoded POST body, or GET query parameters.

    Args:
        method: "POST" or "GET" (``statusCallbackMethod``).
        request_url: the URL to request; signed_url: the URL Twilio signs (see ``twiml.status_callback_urls``).
        form: fields from ``status_callback_form``.

    Raises:
        ValueError: another method.
    """
    if method == "POST":
        return CallbackRequest("POST", request_url, signed_url, dict(form), form["StreamEvent"])
    if method != "GET":
        raise ValueError(f"statusCallbackMethod {method!r} is not GET or POST")
    query = urlencode(form)

    def with_query(url: str) -> str:
        return f"{url}{'&' if '?' in url else '?'}{query}"

    return CallbackRequest("GET", with_query(request_url), with_query(signed_url), {}, form["StreamEvent"])


def judge_response(status_code: int | None, error: str | None) -> tuple[str, bool]:
    """Describe a callback's outcome and whether it counts as a failure for the report.

    Any 2xx is success. 404 means the server has no such route (an older server): noted, not a
    failure. A connection error or any other status is a failure (the call itself goes on: Twilio
    does not end a call because a status callback failed).

    Args:
        status_code: the HTTP status, or None when the request failed.
        error: the request's error text when ``status_code`` is None.

    Returns:
        (a short human-readable outcome, is a failure).
    """
    if status_code is None:
        return f"failed: {error}", True
    if 200 <= status_code < 300:
        return f"HTTP {status_code}", False
    if status_code == 404:
        return "HTTP 404: the server has no status callback route (an older server?); going on", False
    return f"HTTP {status_code}", True
