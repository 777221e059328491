"""Parsing and building Media Streams messages against Twilio's own examples (../shared/twilio)."""

import base64
import json
from pathlib import Path

import pytest

from core import protocol
from core.protocol import Connected, Dtmf, Mark, Media, ProtocolError, Start, Stop, UnknownEvent

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "twilio"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_connected():
    assert protocol.parse_message(fixture_text("connected.json")) == Connected("Call", "1.0.0")


def test_start_bidirectional():
    event = protocol.parse_message(fixture_text("start_bidirectional.json"))
    assert isinstance(event, Start)
    assert event.stream_sid == "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert event.call_sid == "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert event.account_sid == "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    assert event.tracks == ("inbound",)
    assert event.media_format.encoding == "audio/x-mulaw"
    assert (event.media_format.sample_rate, event.media_format.channels) == (8000, 1)
    assert event.custom_parameters == {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}
    assert event.sequence_number == 1


def test_start_fork_both_tracks():
    event = protocol.parse_message(fixture_text("start_fork_both_tracks.json"))
    assert event.tracks == ("inbound", "outbound")


@pytest.mark.parametrize("name,track", [("media_inbound.json", "inbound"), ("media_outbound.json", "outbound")])
def test_media_numbers_are_strings_on_the_wire(name, track):
    raw = json.loads(fixture_text(name))
    event = protocol.parse_message(fixture_text(name))
    assert isinstance(event, Media)
    assert event.track == track
    assert event.timestamp_ms == int(raw["media"]["timestamp"])
    assert event.chunk == int(raw["media"]["chunk"])
    assert event.sequence_number == int(raw["sequenceNumber"])
    assert event.payload == base64.b64decode(raw["media"]["payload"])
    assert len(event.payload) == 160


def test_dtmf_mark_stop():
    assert protocol.parse_message(fixture_text("dtmf.json")) == Dtmf(
        "MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "1", "inbound_track", None, 5
    )
    assert protocol.parse_message(fixture_text("mark.json")) == Mark("MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "my label", 4)
    stop = protocol.parse_message(fixture_text("stop.json"))
    assert stop == Stop("MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 5)


def test_real_2020_capture_parses():
    lines = fixture_text("captured_connect_basic_2020.jsonl").splitlines()
    events = [protocol.parse_message(line) for line in lines if line.strip()]
    assert [type(e).__name__ for e in events] == ["Connected", "Start", "Media", "Mark", "Mark"]
    assert events[2].timestamp_ms == 52 and len(events[2].payload) == 160
    assert events[1].stream_sid == "9e7ee906-377b-408f-a852-eebfb834422a"  # a UUID: SID formats are not enforced


def test_signalwire_variants_parse():
    start = protocol.parse_message(fixture_text("signalwire_start.json"))
    assert isinstance(start, Start) and start.custom_parameters == {}
    dtmf = protocol.parse_message(fixture_text("signalwire_dtmf.json"))
    assert isinstance(dtmf, Dtmf) and dtmf.track is None and dtmf.duration_ms is not None
    assert isinstance(protocol.parse_message(fixture_text("signalwire_connected.json")), Connected)
    assert protocol.parse_message('{"event": "stop", "sequenceNumber": "9"}') == Stop(None, None, None, 9)


@pytest.mark.parametrize("name,builder", [
    ("out_media.json", lambda raw: protocol.media_message(raw["streamSid"], base64.b64decode(raw["media"]["payload"]))),
    ("out_mark.json", lambda raw: protocol.mark_message(raw["streamSid"], raw["mark"]["name"])),
    ("out_clear.json", lambda raw: protocol.clear_message(raw["streamSid"])),
])
def test_outbound_messages_match_twilio_examples_exactly(name, builder):
    raw = json.loads(fixture_text(name))
    assert json.loads(builder(raw)) == raw


def test_unknown_event_is_returned_not_raised():
    assert protocol.parse_message('{"event": "closed"}') == UnknownEvent("closed")


@pytest.mark.parametrize("text,reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ("{}", "missing 'event'"),
    ('{"event": "media", "streamSid": "MZ1"}', "missing object 'media'"),
    ('{"event": "media", "media": {"timestamp": "5", "payload": "@@@"}}', "not base64"),
    ('{"event": "media", "media": {"timestamp": "five", "payload": ""}}', "timestamp"),
    ('{"event": "media", "media": {"timestamp": "5"}}', "payload"),
    ('{"event": "start", "start": {"streamSid": "MZ1"}}', "callSid"),
    ('{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", "tracks": "inbound"}}', "tracks"),
    ('{"event": "mark", "mark": {"name": 3}}', "name"),
    ('{"event": "dtmf", "dtmf": {}}', "digit"),
])
def test_bad_messages_raise_protocol_error_with_the_reason(text, reason):
    with pytest.raises(ProtocolError, match=reason):
        protocol.parse_message(text)
