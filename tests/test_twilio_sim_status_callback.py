"""Tests for tools/twilio_sim/status_callback.py (pure)."""

import re
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from tools.twilio_sim.status_callback import (STREAM_EVENTS, callback_request, iso8601_utc, judge_response,
                                              status_callback_form)

ACCOUNT_SID = "AC" + "cd" * 16
CALL_SID = "CA" + "ef" * 16
STREAM_SID = "MZ" + "ab" * 16
MOMENT = datetime(2024, 5, 1, 14, 34, 56, 789_123, tzinfo=timezone(timedelta(hours=2)))


def test_iso8601_utc_converts_to_utc_with_milliseconds():
    text = iso8601_utc(MOMENT)
    assert text == "2024-05-01T12:34:56.789Z"
    assert datetime.fromisoformat(text.replace("Z", "+00:00")) == MOMENT.replace(microsecond=789_000)
    with pytest.raises(ValueError):
        iso8601_utc(datetime(2024, 5, 1))


@pytest.mark.parametrize("event", STREAM_EVENTS)
def test_status_callback_form_has_twilios_fields(event):
    form = status_callback_form(ACCOUNT_SID, CALL_SID, STREAM_SID, "fork-1", event, MOMENT)
    assert form == {"AccountSid": ACCOUNT_SID, "CallSid": CALL_SID, "StreamSid": STREAM_SID,
                    "StreamName": "fork-1", "StreamEvent": event, "Timestamp": "2024-05-01T12:34:56.789Z"}


def test_status_callback_form_names_the_stream_by_its_sid_by_default_and_carries_errors():
    form = status_callback_form(ACCOUNT_SID, CALL_SID, STREAM_SID, None, "stream-error", MOMENT, error="refused")
    assert form["StreamName"] == STREAM_SID
    assert form["StreamError"] == "refused"
    with pytest.raises(ValueError, match="StreamEvent"):
        status_callback_form(ACCOUNT_SID, CALL_SID, STREAM_SID, None, "stream-paused", MOMENT)


def test_post_callback_is_a_form_body_signed_like_a_webhook():
    form = status_callback_form(ACCOUNT_SID, CALL_SID, STREAM_SID, None, "stream-started", MOMENT)
    request = callback_request("POST", "http://127.0.0.1:5050/stream-status", "https://127.0.0.1:5050/stream-status",
                               form)
    assert (request.method, request.url, request.event) == ("POST", "http://127.0.0.1:5050/stream-status",
                                                            "stream-started")
    assert request.form == form
    validator = RequestValidator("secret-token")
    signature = validator.compute_signature(request.signed_url, request.form)
    assert validator.validate("https://127.0.0.1:5050/stream-status", form, signature)
    assert not validator.validate("https://127.0.0.1:5050/stream-status", {**form, "StreamEvent": "x"}, signature)


def test_get_callback_puts_the_fields_in_the_query_string_of_both_urls():
    form = status_callback_form(ACCOUNT_SID, CALL_SID, STREAM_SID, "s&1", "stream-stopped", MOMENT)
    request = callback_request("GET", "http://h/status?a=1", "https://h/status?a=1", form)
    assert request.method == "GET" and request.form == {}
    for url, scheme in ((request.url, "http"), (request.signed_url, "https")):
        parts = urlsplit(url)
        assert (parts.scheme, parts.path) == (scheme, "/status")
        assert dict(parse_qsl(parts.query)) == {"a": "1", **form}
    validator = RequestValidator("secret-token")
    # A server validates a GET over its full URL (query included) and no body parameters.
    assert validator.validate(request.signed_url, {}, validator.compute_signature(request.signed_url, {}))
    with pytest.raises(ValueError):
        callback_request("PUT", "http://h/s", "http://h/s", form)


@pytest.mark.parametrize("status_code, error, failed, text", [
    (200, None, False, "HTTP 200"),
    (204, None, False, "HTTP 204"),
    (404, None, False, "older server"),
    (500, None, True, "HTTP 500"),
    (403, None, True, "HTTP 403"),
    (None, "connection refused", True, "failed: connection refused"),
])
def test_judge_response_notes_404_and_fails_the_rest(status_code, error, failed, text):
    outcome, is_failure = judge_response(status_code, error)
    assert is_failure is failed
    assert re.search(re.escape(text), outcome)
