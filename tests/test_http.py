"""HTTP routes through Flask's test client: health, TwiML webhook, call record API."""

import time
import xml.etree.ElementTree as ET

import pytest

from app import create_app
from core.call_tokens import TOKEN_PARAMETER
from core.records import CallRecord, Turn

CALL_SID = "CA" + "0123456789abcdef" * 2


@pytest.fixture
def app(app_settings):
    return create_app({**app_settings, "TWIML_GREETING": "Connecting you now."})


@pytest.fixture
def client(app):
    return app.test_client()


def test_health(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "service": "callstream", "active_calls": 0, "recognizer": "whisper", "synthesizer": "piper"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_incoming_call_connects_a_stream_on_the_request_host(client, method):
    fields = {"CallSid": CALL_SID, "From": "+15550001", "To": "+15550002", "AccountSid": "AC1"}
    if method == "POST":
        response = client.post("/incoming-call", data=fields, headers={"Host": "abc.ngrok.app"})
    else:
        response = client.get("/incoming-call", query_string=fields, headers={"Host": "abc.ngrok.app"})
    assert response.status_code == 200 and response.mimetype == "text/xml"
    root = ET.fromstring(response.data)
    assert root.find("Say").text == "Connecting you now."
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://abc.ngrok.app/media-stream"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    token = parameters.pop(TOKEN_PARAMETER)
    assert parameters == {"From": "+15550001", "To": "+15550002", "CallSid": CALL_SID}
    tokens = client.application.extensions["callstream"].call_tokens
    assert tokens.check(CALL_SID, {TOKEN_PARAMETER: token}, time.time()) is None  # the stream of this call may start
    assert tokens.check("CA" + "f" * 32, {TOKEN_PARAMETER: token}, time.time()) is not None  # no other


def test_a_webhook_without_a_real_call_sid_gets_no_stream_token(client):
    for fields in ({}, {"CallSid": "../x"}, {"CallSid": "CA123"}):
        stream = ET.fromstring(client.post("/incoming-call", data=fields).data).find("Connect/Stream")
        assert TOKEN_PARAMETER not in {p.get("name") for p in stream.findall("Parameter")}


def test_tokens_made_by_one_process_are_accepted_by_another_with_the_same_auth_token(app_settings):
    settings = {**app_settings, "TWILIO_AUTH_TOKEN": "shared-secret"}
    webhook, stream = create_app(settings), create_app(settings)
    token = webhook.extensions["callstream"].call_tokens.make(CALL_SID, time.time())
    assert stream.extensions["callstream"].call_tokens.check(CALL_SID, {TOKEN_PARAMETER: token}, time.time()) is None


def test_public_url_sets_the_stream_host(app_settings):
    client = create_app({**app_settings, "PUBLIC_URL": "https://calls.example.com"}).test_client()
    root = ET.fromstring(client.post("/incoming-call", data={"CallSid": "CA1"}, headers={"Host": "10.0.0.5:5050"}).data)
    assert root.find("Connect/Stream").get("url") == "wss://calls.example.com/media-stream"
    assert root.find("Say") is None


def test_call_api(app, client):
    store = app.extensions["callstream"].store
    assert client.get("/api/calls").get_json() == {"calls": [], "page": 1, "per_page": 20, "total": 0, "pages": 0}
    assert client.get("/api/calls/CAnope").status_code == 404
    record = CallRecord("CA1", "MZ1", "+15550001", "+15550002", "2026-11-21T07:00:00.000+00:00")
    record.turns.append(Turn("caller", "hello", 420, 1400))
    store.save_call(record.to_json())
    store.save_call(CallRecord("CA2", "MZ2", started_at="2026-11-21T07:05:00.000+00:00").to_json())
    data = client.get("/api/calls/CA1").get_json()
    assert data == {"call_sid": "CA1", "stream_sid": "MZ1", "from": "+15550001", "to": "+15550002",
                    "started_at": "2026-11-21T07:00:00.000+00:00", "ended_at": None, "mode": "conversation",
                    "direction": "inbound", "answered_by": None, "transferred_to": None,
                    "turns": [{"speaker": "caller", "text": "hello", "start_ms": 420, "end_ms": 1400}],
                    "status_events": [], "recordings": []}
    listing = client.get("/api/calls").get_json()
    assert [c["call_sid"] for c in listing["calls"]] == ["CA2", "CA1"] and listing["total"] == 2
    assert [c["call_sid"] for c in client.get("/api/calls?per_page=1&page=2").get_json()["calls"]] == ["CA1"]
    assert client.get("/api/calls?per_page=x").status_code == 400
    assert client.get("/api/calls?page=0").status_code == 400


def test_recording_downloads(app, client):
    store = app.extensions["callstream"].store
    store.save_call(CallRecord("CA3", "MZ3").to_json())
    assert client.get("/api/calls/CA3/recording.wav").status_code == 404
    store.save_recording("CA3", "stereo", duration_ms=1, size_bytes=4, data=b"RIFF")
    response = client.get("/api/calls/CA3/recording.wav")
    assert response.status_code == 200 and response.mimetype == "audio/wav" and response.data == b"RIFF"
    assert client.get("/api/calls/CA3").get_json()["recordings"][0]["url"] == "/api/calls/CA3/recording.wav"
    assert client.get("/api/calls/CA3/recording/bogus.wav").status_code == 404


def test_forward_call_forks_both_tracks_and_dials(app_settings):
    client = create_app({**app_settings, "FORWARD_TO": "+15557654321"}).test_client()
    response = client.post("/forward-call", data={"CallSid": CALL_SID, "From": "+15550001", "To": "+15550002"}, headers={"Host": "abc.ngrok.app"})
    root = ET.fromstring(response.data)
    assert [child.tag for child in root] == ["Start", "Dial"]
    stream = root.find("Start/Stream")
    assert stream.get("url") == "wss://abc.ngrok.app/media-stream" and stream.get("track") == "both_tracks"
    assert stream.get("statusCallback") == "https://abc.ngrok.app/stream-status"
    assert root.find("Dial").text == "+15557654321"
    assert {p.get("name") for p in stream.findall("Parameter")} == {"From", "To", "CallSid", TOKEN_PARAMETER}


def test_forward_call_without_forward_to_says_so_and_hangs_up(client):
    root = ET.fromstring(client.post("/forward-call", data={"CallSid": "CA9"}).data)
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert "not set up to forward calls" in root.find("Say").text


def test_stream_status_events_are_stored_on_the_call(app, client):
    fields = {"AccountSid": "AC1", "CallSid": CALL_7, "StreamSid": STREAM_7, "StreamName": "MZ7", "Timestamp": "2026-11-21T07:00:00Z"}
    assert client.post("/stream-status", data={**fields, "StreamEvent": "stream-started"}).status_code == 204
    assert client.post("/stream-status", data={**fields, "StreamEvent": "stream-error", "StreamError": "Handshake failed"}).status_code == 204
    events = client.get(f"/api/calls/{CALL_7}").get_json()["status_events"]
    assert events == [
        {"event": "stream-started", "error": None, "timestamp": "2026-11-21T07:00:00Z", "name": "MZ7"},
        {"event": "stream-error", "error": "Handshake failed", "timestamp": "2026-11-21T07:00:00Z", "name": "MZ7"},
    ]
    assert client.post("/stream-status", data={"CallSid": CALL_7}).status_code == 400


CALL_7, STREAM_7 = "CA" + "7" * 32, "MZ" + "7" * 32


@pytest.mark.parametrize("fields", [
    {"CallSid": "..", "StreamEvent": "stream-started"},
    {"CallSid": "CA" + "7" * 200, "StreamEvent": "stream-started"},
    {"CallSid": CALL_7, "StreamSid": "../x", "StreamEvent": "stream-started"},
    {"CallSid": CALL_7, "StreamEvent": "s" * 33},
])
def test_a_status_callback_with_a_bad_sid_or_event_is_refused_and_stores_nothing(app, client, fields):
    assert client.post("/stream-status", data=fields).status_code == 400
    assert client.get("/api/calls").get_json()["total"] == 0


def test_webhooks_over_max_calls(app_settings):
    client = create_app({**app_settings, "MAX_CALLS": 0, "FORWARD_TO": "+15557654321", "BUSY_MESSAGE": "Busy, goodbye."}).test_client()
    root = ET.fromstring(client.post("/incoming-call", data={"CallSid": "CA1"}).data)
    assert [child.tag for child in root] == ["Say", "Hangup"] and root.find("Say").text == "Busy, goodbye."
    root = ET.fromstring(client.post("/forward-call", data={"CallSid": "CA2"}).data)
    assert [child.tag for child in root] == ["Dial"]  # forwarded, without the fork


@pytest.mark.parametrize("route, path", [("/incoming-call", "Connect/Stream"), ("/forward-call", "Start/Stream")])
def test_signalwire_webhooks_get_the_configured_codec_and_twilio_ones_never(app_settings, route, path):
    client = create_app({**app_settings, "SIGNALWIRE_CODEC": "L16@16000h", "FORWARD_TO": "+15550003"}).test_client()
    twilio = {"CallSid": "CA123", "AccountSid": "AC" + "0" * 32, "From": "+15550001", "To": "+15550002"}
    signalwire = {"CallSid": "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad", "AccountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5",
                  "From": "+15550001", "To": "+15550002"}
    streams = {name: ET.fromstring(client.post(route, data=fields).data).find(path)
               for name, fields in (("twilio", twilio), ("signalwire", signalwire))}
    assert streams["twilio"].get("codec") is None
    assert streams["signalwire"].get("codec") == "L16@16000h"
    signed = ET.fromstring(client.post(route, data=twilio, headers={"X-SignalWire-Signature": "x"}).data).find(path)
    assert signed.get("codec") == "L16@16000h"  # (unchecked here: no signing key is set)


@pytest.mark.parametrize("call_sid", ['CA3"; filename="evil.exe', "CA3\r\nSet-Cookie: x=1", "..%2F..%2Fetc"])
def test_a_download_name_never_carries_the_url_unescaped(app, client, call_sid):
    store = app.extensions["callstream"].store
    store.save_call(CallRecord(call_sid, "MZ3").to_json())
    store.save_recording(call_sid, "stereo", duration_ms=1, size_bytes=4, data=b"RIFF")
    response = client.get(f"/api/calls/{call_sid}/recording.wav")
    if response.status_code == 200:
        disposition = response.headers["Content-Disposition"]
        name = disposition.split('filename="', 1)[1]
        assert name.count('"') == 1 and name.endswith('-stereo.wav"') and "\r" not in name and "\n" not in name
        assert set(name[:-len('-stereo.wav"')]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def test_a_real_call_sid_is_the_download_name(app, client):
    store = app.extensions["callstream"].store
    store.save_call(CallRecord(CALL_SID, "MZ3").to_json())
    store.save_recording(CALL_SID, "stereo", duration_ms=1, size_bytes=4, data=b"RIFF")
    response = client.get(f"/api/calls/{CALL_SID}/recording.wav")
    assert response.headers["Content-Disposition"] == f'inline; filename="{CALL_SID}-stereo.wav"'


@pytest.mark.parametrize("signing_key", ["", "sw-signing-key"])
def test_a_signalwire_answer_also_carries_the_call_token_in_its_bearer_token(app_settings, signing_key):
    from handlers.signatures import call_token_in_bearer

    app = create_app({**app_settings, "SIGNALWIRE_SIGNING_KEY": signing_key, "ALLOW_UNSIGNED_REQUESTS": True})
    call_sid = "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad"
    checker = app.extensions["signature_checker"]
    fields = {"CallSid": call_sid, "AccountSid": "b08dacad-2f6c-4de1-93d6-cc732e0c69c5"}
    if signing_key:  # the webhook must be signed: sign it as SignalWire does
        from twilio.request_validator import RequestValidator
        headers = {"X-SignalWire-Signature": RequestValidator(signing_key).compute_signature("http://localhost/incoming-call", fields)}
    else:
        headers = {}
    response = app.test_client().post("/incoming-call", data=fields, headers=headers)
    stream = ET.fromstring(response.data).find("Connect/Stream")
    bearer = stream.get("authBearerToken")
    tokens = app.extensions["callstream"].call_tokens
    assert tokens.check(call_sid, {}, time.time(), bearer_token=call_token_in_bearer(bearer)) is None
    if signing_key:
        assert checker.check_stream_token(bearer, time.time()) is None  # still passes the upgrade check


def test_stream_sockets_are_pinged_unless_turned_off(app_settings):
    assert create_app(app_settings).config["SOCK_SERVER_OPTIONS"]["ping_interval"] == 25
    assert create_app({**app_settings, "WS_PING_INTERVAL_S": 0}).config["SOCK_SERVER_OPTIONS"]["ping_interval"] is None


def _conversation_webhooks(client, count):
    """POST /incoming-call for ``count`` new calls; return the responses."""
    return [client.post("/incoming-call", data={"CallSid": f"CA{index:032x}", "From": "+15550001"}) for index in range(count)]


@pytest.mark.parametrize("answer", ["busy", "503"])
def test_calls_that_would_wait_past_the_reply_budget_are_refused_at_the_webhook(app_settings, answer):
    app = create_app({**app_settings, "OVERLOAD_REPLY_BUDGET_MS": 1500, "OVERLOAD_ANSWER": answer, "BUSY_MESSAGE": "Busy, goodbye."})
    services = app.extensions["callstream"]
    turn_core_s = services.turn_core_s
    assert turn_core_s > 0.3  # local engines: a turn costs this machine's cores
    # The budget left once a first turn's silence has passed: 1500 - 600 ms.
    assert services.admission.budget_s == pytest.approx(0.9)
    fits = max(1, int(services.admission.cores * 0.9 // turn_core_s))  # first turns that land together within it
    responses = _conversation_webhooks(app.test_client(), fits + 2)
    admitted = [r for r in responses if r.status_code == 200 and ET.fromstring(r.data).find("Connect/Stream") is not None]
    refused = responses[len(admitted):]
    assert len(admitted) == fits and len(refused) == 2
    for response in refused:
        if answer == "503":
            assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        else:
            root = ET.fromstring(response.data)
            assert [child.tag for child in root] == ["Say", "Hangup"] and root.find("Say").text == "Busy, goodbye."
    metrics_text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'callstream_calls_refused_total{reason="overload"}' in metrics_text
    assert "callstream_engine_backlog_core_seconds" in metrics_text


def test_admission_control_is_off_with_a_zero_budget(app_settings):
    assert app_settings["OVERLOAD_REPLY_BUDGET_MS"] == 0
    client = create_app(app_settings).test_client()
    assert all(ET.fromstring(r.data).find("Connect/Stream") is not None for r in _conversation_webhooks(client, 20))
