"""Tests for tools/twilio_sim/twiml.py (pure)."""

import re

import pytest

from tools.twilio_sim.twiml import TwimlError, parse_twiml, webhook_form, websocket_url

ACCOUNT_SID = "AC" + "cd" * 16
CALL_SID = "CA" + "ef" * 16


CONTRACT_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Hello &amp; welcome</Say><Connect>'
    '<Stream url="wss://example.test:5050/media-stream"><Parameter name="From" value="+15551230001"/>'
    '<Parameter name="To" value="+15559870002"/><Parameter name="CallSid" value="CA123"/></Stream>'
    "</Connect></Response>"
)


def test_parse_twiml_reads_contract_document():
    stream = parse_twiml(CONTRACT_TWIML)
    assert stream.url == "wss://example.test:5050/media-stream"
    assert list(stream.parameters.items()) == [("From", "+15551230001"), ("To", "+15559870002"), ("CallSid", "CA123")]
    assert stream.say == ["Hello & welcome"]


def test_parse_twiml_reads_twilio_library_output():
    from twilio.twiml.voice_response import Connect, VoiceResponse

    response = VoiceResponse()
    response.say("Connecting")
    connect = Connect()
    stream = connect.stream(url="wss://host.example/media-stream")
    stream.parameter(name="token", value='a&b<"c"')
    response.append(connect)
    parsed = parse_twiml(str(response))
    assert parsed.url == "wss://host.example/media-stream"
    assert parsed.parameters == {"token": 'a&b<"c"'}
    assert parsed.say == ["Connecting"]


@pytest.mark.parametrize("text, message", [
    ("<Response><Say>hi</Say><Hangup/></Response>", "no <Connect><Stream>"),
    ('<Response><Start><Stream url="wss://h/s"/></Start></Response>', "<Start><Stream>"),
    ("<Response><Connect><Stream/></Connect></Response>", "no url"),
    ('<Response><Connect><Stream url="wss://h/s"><Parameter value="v"/></Stream></Connect></Response>', "name"),
    ("not xml at all", "not XML"),
    ('<Reply><Connect><Stream url="wss://h/s"/></Connect></Reply>', "<Reply>"),
])
def test_parse_twiml_fails_clearly(text, message):
    with pytest.raises(TwimlError, match=re.escape(message)):
        parse_twiml(text)


def test_parse_twiml_skips_connect_without_stream():
    text = '<Response><Connect><Room>r</Room></Connect><Connect><Stream url="wss://h/s"/></Connect></Response>'
    assert parse_twiml(text).url == "wss://h/s"
    assert parse_twiml(text).parameters == {}


@pytest.mark.parametrize("stream_url, webhook_url, expected", [
    ("wss://127.0.0.1:5050/media-stream", "http://127.0.0.1:5050/incoming-call",
     ("ws://127.0.0.1:5050/media-stream", True)),
    ("wss://abc.ngrok.app/media-stream", "https://abc.ngrok.app/incoming-call",
     ("wss://abc.ngrok.app/media-stream", False)),
    ("/media-stream", "http://localhost:8000/incoming-call", ("ws://localhost:8000/media-stream", False)),
    ("/media-stream", "https://h.example/incoming-call", ("wss://h.example/media-stream", False)),
    ("ws://127.0.0.1:9/s", "http://127.0.0.1:9/incoming-call", ("ws://127.0.0.1:9/s", False)),
])
def test_websocket_url_downgrades_only_for_plain_http(stream_url, webhook_url, expected):
    assert websocket_url(stream_url, webhook_url) == expected


def test_websocket_url_rejects_other_schemes():
    with pytest.raises(TwimlError, match="31922"):
        websocket_url("ftp://h/s", "http://h/incoming-call")


def test_webhook_form_has_twilio_fields():
    form = webhook_form(CALL_SID, ACCOUNT_SID, "+15551230001", "+15559870002")
    assert form["CallSid"] == CALL_SID and form["AccountSid"] == ACCOUNT_SID
    assert form["From"] == form["Caller"] == "+15551230001"
    assert form["To"] == form["Called"] == "+15559870002"
    assert (form["CallStatus"], form["Direction"], form["ApiVersion"]) == ("ringing", "inbound", "2010-04-01")
    assert all(isinstance(value, str) and value for value in form.values())
