"""Parsing and building Media Streams messages against Twilio's own examples (tests/data/twilio)."""

import base64
import json
from pathlib import Path

import pytest

from core import protocol
from core.protocol import Connected, Dtmf, Mark, Media, ProtocolError, Start, Stop, UnknownEvent

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"


HEX32 = "0123456789abcdef" * 2
PLACEHOLDER = "X" * 30  # Twilio's doc SIDs ("MZ" + 30 X) are shorter than real ones ("MZ" + 32 hex)
STREAM_SID, CALL_SID, ACCOUNT_SID = "MZ" + HEX32, "CA" + HEX32, "AC" + HEX32


def fixture_text(name: str) -> str:
    """A fixture with Twilio's placeholder SIDs made real-shaped: a start naming the placeholder is refused."""
    return (FIXTURES / name).read_text().replace(PLACEHOLDER, HEX32)


def test_connected():
    assert protocol.parse_message(fixture_text("connected.json")) == Connected("Call", "1.0.0")


def test_start_bidirectional():
    event = protocol.parse_message(fixture_text("start_bidirectional.json"))
    assert isinstance(event, Start)
    assert event.stream_sid == STREAM_SID
    assert event.call_sid == CALL_SID
    assert event.account_sid == ACCOUNT_SID
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
        STREAM_SID, "1", "inbound_track", None, 5
    )
    assert protocol.parse_message(fixture_text("mark.json")) == Mark(STREAM_SID, "my label", 4)
    stop = protocol.parse_message(fixture_text("stop.json"))
    assert stop == Stop(STREAM_SID, ACCOUNT_SID, CALL_SID, 5)


def test_real_2020_capture_parses():
    lines = fixture_text("captured_connect_basic_2020.jsonl").splitlines()
    events = [protocol.parse_message(line) for line in lines if line.strip()]
    assert [type(e).__name__ for e in events] == ["Connected", "Start", "Media", "Mark", "Mark"]
    assert events[2].timestamp_ms == 52 and len(events[2].payload) == 160
    assert events[1].stream_sid == "9e7ee906-377b-408f-a852-eebfb834422a"  # Twilio used UUID stream SIDs in 2020: accepted


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
    ('{"event": "dtmf", "dtmf": {"digit": ""}}', "digit"),
    ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "digit"),
    ('{"event": "dtmf", "dtmf": {"digit": "x"}}', "digit"),
    ('{"event": "dtmf", "dtmf": {"digit": "1' + "1" * 60000 + '"}}', "digit"),
])
def test_bad_messages_raise_protocol_error_with_the_reason(text, reason):
    with pytest.raises(ProtocolError, match=reason):
        protocol.parse_message(text)


def start_text(call_sid: str, stream_sid: str = STREAM_SID) -> str:
    return json.dumps({"event": "start", "start": {"streamSid": stream_sid, "callSid": call_sid, "tracks": ["inbound"]}})


@pytest.mark.parametrize("call_sid", ["..", ".", "../../etc", "CA1", "CAXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "CA" + HEX32 + "/..",
                                      "ca" + HEX32, "CA" + HEX32 + "0", "MZ" + HEX32, "", "CA" + HEX32[:-1] + "g", "CA" + HEX32 + "\n"])
def test_a_start_naming_anything_but_a_call_sid_is_refused(call_sid):
    with pytest.raises(ProtocolError, match="start: 'callSid' is not a call SID") as refused:
        protocol.parse_message(start_text(call_sid))
    assert refused.value.event == "start"  # the worker refuses the stream rather than waiting for another start


@pytest.mark.parametrize("stream_sid", ["..", "MZ1", "CA" + HEX32, "MZ" + HEX32 + "/x"])
def test_a_start_naming_anything_but_a_stream_sid_is_refused(stream_sid):
    with pytest.raises(ProtocolError, match="start: 'streamSid' is not a stream SID"):
        protocol.parse_message(start_text(CALL_SID, stream_sid))


@pytest.mark.parametrize("call_sid,stream_sid", [
    (CALL_SID, STREAM_SID),
    ("CA" + HEX32.upper(), "MZ" + HEX32.upper()),  # Twilio's API pattern allows A-F
    ("76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad", "7d56cc11-536d-4a45-b4fb-ed3d55be843b"),  # SignalWire
])
def test_twilio_and_signalwire_sids_are_accepted(call_sid, stream_sid):
    start = protocol.parse_message(start_text(call_sid, stream_sid))
    assert (start.call_sid, start.stream_sid) == (call_sid, stream_sid)


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_dtmf_key_parses(digit):
    assert protocol.parse_message(json.dumps({"event": "dtmf", "dtmf": {"digit": digit}})).digit == digit
