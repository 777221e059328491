"""Tests for tools/twilio_sim/twiml.py (pure)."""

import re

import pytest

from tools.twilio_sim.twiml import TwimlError, parse_twiml, status_callback_urls, webhook_form, websocket_url

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


FORK_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?><Response><Start>'
    '<Stream url="wss://example.test/media-stream" track="both_tracks" name="fork-1" '
    'statusCallback="https://example.test/stream-status"><Parameter name="From" value="+15551230001"/></Stream>'
    "</Start><Dial>+15557654321</Dial></Response>"
)


def test_parse_twiml_fork_reads_start_stream_attributes_and_dial():
    stream = parse_twiml(FORK_TWIML, fork=True)
    assert (stream.verb, stream.url, stream.track, stream.name) == (
        "Start", "wss://example.test/media-stream", "both_tracks", "fork-1")
    assert stream.tracks == ["inbound", "outbound"]
    assert (stream.status_callback, stream.status_callback_method) == ("https://example.test/stream-status", "POST")
    assert stream.parameters == {"From": "+15551230001"}
    assert stream.dial == ["+15557654321"]
    assert stream.say == []


def test_parse_twiml_fork_reads_twilio_library_output():
    from twilio.twiml.voice_response import Dial, Start, VoiceResponse

    response = VoiceResponse()
    response.say("Connecting you")
    start = Start()
    stream = start.stream(url="wss://h.example/media-stream", track="outbound_track",
                          status_callback="/stream-status", status_callback_method="GET")
    stream.parameter(name="token", value="t&1")
    response.append(start)
    dial = Dial()
    dial.number("+15550001111")
    dial.sip("sip:bob@example.com")
    response.append(dial)
    parsed = parse_twiml(str(response), fork=True)
    assert parsed.say == ["Connecting you"]
    assert (parsed.track, parsed.tracks) == ("outbound_track", ["outbound"])
    assert (parsed.status_callback, parsed.status_callback_method) == ("/stream-status", "GET")
    assert parsed.parameters == {"token": "t&1"}
    assert parsed.dial == ["Number:+15550001111", "Sip:sip:bob@example.com"]


def test_parse_twiml_fork_defaults_to_the_inbound_track_and_no_callback():
    stream = parse_twiml('<Response><Start><Stream url="wss://h/s"/></Start></Response>', fork=True)
    assert (stream.track, stream.tracks, stream.status_callback, stream.name, stream.dial) == (
        "inbound_track", ["inbound"], None, None, [])


def test_parse_twiml_connect_reads_status_callback_too():
    text = ('<Response><Connect><Stream url="wss://h/s" statusCallback="https://h/stream-status" '
            'statusCallbackMethod="get"/></Connect></Response>')
    stream = parse_twiml(text)
    assert (stream.verb, stream.tracks, stream.status_callback, stream.status_callback_method) == (
        "Connect", ["inbound"], "https://h/stream-status", "GET")


@pytest.mark.parametrize("text, fork, message", [
    (CONTRACT_TWIML, True, "<Connect><Stream> (a bidirectional stream)"),
    (FORK_TWIML.replace("<Start>", "<Connect>").replace("</Start>", "</Connect>"), True, "bidirectional"),
    ("<Response><Dial>+15557654321</Dial></Response>", True, "no <Start><Stream>"),
    ('<Response><Start><Stream url="wss://h/s" track="both"/></Start></Response>', True, "31941"),
    ('<Response><Connect><Stream url="wss://h/s" track="both_tracks"/></Connect></Response>', False, "31941"),
    ('<Response><Start><Stream url="wss://h/s" statusCallbackMethod="PUT"/></Start></Response>', True, "GET or POST"),
    ("<Response><Start><Stream/></Start></Response>", True, "<Start><Stream> has no url"),
])
def test_parse_twiml_modes_fail_clearly(text, fork, message):
    with pytest.raises(TwimlError, match=re.escape(message)):
        parse_twiml(text, fork=fork)


@pytest.mark.parametrize("callback, webhook_url, expected", [
    ("https://h.example/stream-status", "https://h.example/forward-call",
     ("https://h.example/stream-status", "https://h.example/stream-status", False)),
    ("https://127.0.0.1:5050/stream-status", "http://127.0.0.1:5050/forward-call",
     ("http://127.0.0.1:5050/stream-status", "https://127.0.0.1:5050/stream-status", True)),
    ("/stream-status", "http://127.0.0.1:5050/forward-call",
     ("http://127.0.0.1:5050/stream-status", "http://127.0.0.1:5050/stream-status", False)),
    ("status?x=1", "https://h.example/calls/forward-call",
     ("https://h.example/calls/status?x=1", "https://h.example/calls/status?x=1", False)),
])
def test_status_callback_urls_resolve_and_downgrade_like_the_stream(callback, webhook_url, expected):
    assert status_callback_urls(callback, webhook_url) == expected


def test_status_callback_urls_reject_other_schemes():
    with pytest.raises(TwimlError, match="statusCallback"):
        status_callback_urls("wss://h/stream-status", "http://h/forward-call")
