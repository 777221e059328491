"""Twilio request signatures on webhooks and on the WebSocket upgrade."""

import pytest
from twilio.request_validator import RequestValidator

from app import create_app
from core.settings import SettingsError
from handlers.signatures import SignatureChecker

TOKEN = "12345"


def test_twilios_documented_example_signature():
    # protocol.md §6.1 (Twilio's security page): this URL, these params, token 12345.
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234", "From": "+14158675310", "To": "+18005551212"}
    checker = SignatureChecker([TOKEN])
    headers = {"X-Twilio-Signature": "L/OH5YylLD5NRKLltdqwSvS0BnU="}
    ok = dict(method="POST", scheme="https", host="example.com", path="/myapp.php", query_string="foo=1&bar=2", form=params)
    assert checker.check_webhook(**ok, headers=headers) is None
    assert "does not match" in checker.check_webhook(**{**ok, "form": {**params, "Digits": "1235"}}, headers=headers)
    assert checker.check_webhook(**ok, headers={}) == "no X-Twilio-Signature header"


def sign(url, params=None, token=TOKEN):
    return RequestValidator(token).compute_signature(url, params or {})


def test_websocket_upgrade_is_checked_against_the_wss_url_with_or_without_a_slash():
    checker = SignatureChecker([TOKEN], public_url="https://abc.ngrok.app")
    for signed in ("wss://abc.ngrok.app/media-stream", "wss://abc.ngrok.app/media-stream/"):
        assert checker.check_websocket(host="127.0.0.1:5050", path="/media-stream", headers={"X-Twilio-Signature": sign(signed)}, now_s=0) is None
    wrong = {"X-Twilio-Signature": sign("https://abc.ngrok.app/media-stream")}  # https is not what Twilio signs
    assert "does not match wss://abc.ngrok.app/media-stream" in checker.check_websocket(host="h", path="/media-stream", headers=wrong, now_s=0)


def test_signalwire_signing_key_and_header():
    checker = SignatureChecker(["", "PSKsecret"])
    headers = {"X-SignalWire-Signature": sign("https://h/incoming-call", {"CallSid": "x"}, "PSKsecret")}
    assert checker.check_webhook(method="POST", scheme="https", host="h", path="/incoming-call", query_string="", form={"CallSid": "x"}, headers=headers) is None


@pytest.fixture
def signed_app(app_settings):
    return create_app({**app_settings, "TWILIO_AUTH_TOKEN": TOKEN, "PUBLIC_URL": "https://abc.ngrok.app"})


def test_webhooks_need_a_valid_signature(signed_app, caplog):
    client = signed_app.test_client()
    form = {"CallSid": "CA1", "From": "+15550001", "To": "+15550002"}
    assert client.post("/incoming-call", data=form).status_code == 403
    assert "no X-Twilio-Signature header" in caplog.text
    good = {"X-Twilio-Signature": sign("https://abc.ngrok.app/incoming-call", form)}
    assert client.post("/incoming-call", data=form, headers=good).status_code == 200
    assert client.post("/incoming-call", data={**form, "From": "+1999"}, headers=good).status_code == 403
    # GET: the parameters are in the signed URL's query string
    url = "https://abc.ngrok.app/forward-call?CallSid=CA1&From=%2B15550001"
    assert client.get("/forward-call?CallSid=CA1&From=%2B15550001", headers={"X-Twilio-Signature": sign(url)}).status_code == 200
    status = {"CallSid": "CA" + "1" * 32, "StreamEvent": "stream-started"}
    assert client.post("/stream-status", data=status).status_code == 403
    assert client.post("/stream-status", data=status, headers={"X-Twilio-Signature": sign("https://abc.ngrok.app/stream-status", status)}).status_code == 204
    assert client.get("/").status_code == 200  # the health check and pages are not Twilio's


def test_unsigned_websocket_upgrade_is_refused_before_the_handshake(signed_app):
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}
    assert signed_app.test_client().get("/media-stream", headers=headers).status_code == 403


def test_production_refuses_to_start_without_a_token(app_settings):
    production = {**app_settings, "APP_ENV": "production", "DASHBOARD_PASSWORD": "pw"}  # that check: tests/test_auth.py
    with pytest.raises(SettingsError, match="TWILIO_AUTH_TOKEN"):
        create_app(production)
    create_app({**production, "ALLOW_UNSIGNED_REQUESTS": True})
    create_app({**production, "TWILIO_AUTH_TOKEN": TOKEN})


def test_signalwire_stream_tokens_are_signed_short_lived_and_checked_on_the_upgrade():
    checker = SignatureChecker(["signing-key"], "https://abc.ngrok.app")
    token = checker.make_stream_token(now_s=1_000_000)
    upgrade = {"Authorization": f"Bearer {token}"}
    assert checker.check_websocket(host="h", path="/media-stream", headers=upgrade, now_s=1_000_010) is None
    assert "issued 301 s ago" in checker.check_websocket(host="h", path="/media-stream", headers=upgrade, now_s=1_000_301)
    other = SignatureChecker(["another-key"]).make_stream_token(now_s=1_000_000)
    assert "signature does not match" in checker.check_stream_token(other, now_s=1_000_010)
    assert "not a stream token" in checker.check_stream_token("hello", now_s=1_000_010)
    assert "nor a SignalWire bearer token" in checker.check_websocket(host="h", path="/media-stream", headers={}, now_s=0)
    fixed = SignatureChecker(["signing-key"], stream_bearer_token="bin-token")
    assert fixed.check_stream_token("bin-token", now_s=0) is None and fixed.check_stream_token("bin-tokem", now_s=0) is not None


@pytest.mark.parametrize("token", ["v1.1000000.abcdef.\xe9\xe9", "\xe9t\xe9", "v1.\xb2.abcdef.00", "v1.1000000.abcdef.\u20ac"])
def test_non_ascii_bearer_tokens_are_refused_not_raised(token):
    checker = SignatureChecker(["signing-key"], stream_bearer_token="bin-token")
    assert checker.check_stream_token(token, now_s=1_000_010) is not None
    headers = {"Authorization": f"Bearer {token}"}
    assert checker.check_websocket(host="h", path="/media-stream", headers=headers, now_s=1_000_010) is not None


def test_non_ascii_bearer_or_signature_is_a_403(signed_app):
    client = signed_app.test_client()
    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version": "13", "Authorization": "Bearer v1.1000000.abcdef.\xe9\xe9"}
    assert client.get("/media-stream", headers=headers).status_code == 403  # was a 500 (TypeError)
    del headers["Authorization"]
    assert client.get("/media-stream", headers={**headers, "X-Twilio-Signature": "\xe9\xe9"}).status_code == 403
    assert client.post("/incoming-call", data={"CallSid": "CA1"}, headers={"X-Twilio-Signature": "\xe9t\xe9"}).status_code == 403
