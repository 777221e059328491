"""Tests for tools/twilio_sim/messages.py (pure), against the message fixtures in tests/data/twilio/."""

import base64
import json
import re
from pathlib import Path

import pytest

from tools.twilio_sim.messages import (UNIDIRECTIONAL_VIOLATION, ProtocolViolation, TwilioMessages,
                                       parse_server_message, random_sid)

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"

STREAM_SID = "MZ" + "ab" * 16
ACCOUNT_SID = "AC" + "cd" * 16
CALL_SID = "CA" + "ef" * 16


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def shape(value):
    """Key structure and leaf types of a JSON value (lists keep their element shapes)."""
    if isinstance(value, dict):
        return {key: shape(sub) for key, sub in value.items()}
    if isinstance(value, list):
        return [shape(sub) for sub in value]
    return type(value).__name__


@pytest.mark.parametrize("prefix", ["CA", "AC", "MZ"])
def test_random_sid_matches_twilio_pattern(prefix):
    sids = {random_sid(prefix) for _ in range(20)}
    assert len(sids) == 20
    assert all(re.fullmatch(prefix + "[0-9a-f]{32}", sid) for sid in sids)


def test_twilio_messages_match_fixture_shapes_and_counters():
    messages = TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID, first_timestamp_ms=52)
    connected = json.loads(messages.connected())
    start = json.loads(messages.start({"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}))
    ulaw_1, ulaw_2 = bytes(range(160)), bytes(range(95, 255))
    media_1 = json.loads(messages.media(ulaw_1))
    dtmf = json.loads(messages.dtmf("7"))
    media_2 = json.loads(messages.media(ulaw_2))
    mark = json.loads(messages.mark("reply-1"))
    stop = json.loads(messages.stop())

    assert connected == fixture("connected.json")
    assert shape(start) == shape(fixture("start_bidirectional.json"))
    assert shape(media_1) == shape(fixture("media_inbound.json"))
    assert shape(dtmf) == shape(fixture("dtmf.json"))
    assert shape(mark) == shape(fixture("mark.json"))
    assert shape(stop) == shape(fixture("stop.json"))

    sequence = [m["sequenceNumber"] for m in (start, media_1, dtmf, media_2, mark, stop)]
    assert sequence == ["1", "2", "3", "4", "5", "6"]
    assert (media_1["media"]["chunk"], media_1["media"]["timestamp"]) == ("1", "52")
    assert (media_2["media"]["chunk"], media_2["media"]["timestamp"]) == ("2", "72")
    assert base64.b64decode(media_1["media"]["payload"]) == ulaw_1
    assert base64.b64decode(media_2["media"]["payload"]) == ulaw_2
    assert media_1["media"]["track"] == "inbound" and dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert start["start"]["tracks"] == ["inbound"]
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["start"]["customParameters"]["RemoteParty"] == "Bob"
    assert {start["streamSid"], start["start"]["streamSid"], media_1["streamSid"], stop["streamSid"]} == {STREAM_SID}
    assert stop["stop"] == {"accountSid": ACCOUNT_SID, "callSid": CALL_SID}
    assert mark["mark"] == {"name": "reply-1"}


def outbound(name: str) -> dict:
    """A server-message fixture with our stream SID."""
    message = fixture(name)
    message["streamSid"] = STREAM_SID
    return message


def test_validator_accepts_the_three_fixture_messages():
    media = parse_server_message(json.dumps(outbound("out_media.json")), STREAM_SID)
    assert media.event == "media"
    assert media.ulaw == base64.b64decode(fixture("out_media.json")["media"]["payload"])
    assert len(media.ulaw) == 160
    mark = parse_server_message(json.dumps(outbound("out_mark.json")), STREAM_SID)
    assert (mark.event, mark.mark_name) == ("mark", "my label")
    assert parse_server_message(json.dumps(outbound("out_clear.json")), STREAM_SID).event == "clear"


def _mutations():
    media = outbound("out_media.json")
    cases = {
        "binary frame": json.dumps(media).encode(),
        "not JSON": "{event: media}",
        "JSON array": json.dumps([media]),
        "unknown event": json.dumps({"event": "hangup", "streamSid": STREAM_SID}),
        "missing event": json.dumps({"streamSid": STREAM_SID}),
        "typo playload": json.dumps({**media, "media": {"playload": media["media"]["payload"]}}),
        "extra top-level field": json.dumps({**media, "sequenceNumber": "3"}),
        "extra nested field": json.dumps({**media, "media": {**media["media"], "track": "outbound"}}),
        "missing streamSid": json.dumps({"event": "clear"}),
        "wrong streamSid": json.dumps({**media, "streamSid": "MZ" + "00" * 16}),
        "payload not a string": json.dumps({**media, "media": {"payload": 5}}),
        "media not an object": json.dumps({**media, "media": "abc"}),
        "payload not base64": json.dumps({**media, "media": {"payload": "not base64!"}}),
        "payload empty": json.dumps({**media, "media": {"payload": ""}}),
        "mark name empty": json.dumps({**outbound("out_mark.json"), "mark": {"name": ""}}),
        "mark name number": json.dumps({**outbound("out_mark.json"), "mark": {"name": 1}}),
        "clear with payload": json.dumps({**outbound("out_clear.json"), "media": media["media"]}),
        # Twilio's own inbound messages carry sequenceNumber/track/...: not valid from a server.
        "inbound mark echo": json.dumps({**fixture("mark.json"), "streamSid": STREAM_SID}),
        "inbound media": json.dumps({**fixture("media_inbound.json"), "streamSid": STREAM_SID}),
    }
    return list(cases.items())


@pytest.mark.parametrize("case, data", _mutations(), ids=[case for case, _ in _mutations()])
def test_validator_rejects_what_twilio_rejects(case, data):
    with pytest.raises(ProtocolViolation):
        parse_server_message(data, STREAM_SID)


def test_fork_start_announces_the_tracks_like_the_fixture():
    messages = TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID)
    expected = fixture("start_fork_both_tracks.json")
    start = json.loads(messages.start(expected["start"]["customParameters"], ["inbound", "outbound"]))
    assert shape(start) == shape(expected)
    assert start["start"]["tracks"] == expected["start"]["tracks"] == ["inbound", "outbound"]
    assert json.loads(TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID).start({}, ["outbound"]))["start"][
        "tracks"] == ["outbound"]
    with pytest.raises(ValueError):
        TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID).start({}, ["both"])
    with pytest.raises(ValueError):
        TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID).start({}, [])


def test_both_tracks_share_the_sequence_and_timestamps_but_count_chunks_per_track():
    messages = TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID, first_timestamp_ms=52)
    messages.start({}, ["inbound", "outbound"])
    sent = []
    for tick in range(3):
        assert messages.next_timestamp_ms == 52 + 20 * tick
        for track in ("inbound", "outbound"):
            sent.append(json.loads(messages.media(bytes([tick]) * 160, track)))
    assert messages.next_timestamp_ms == 112
    assert shape(sent[1]) == shape(fixture("media_outbound.json"))
    assert [m["sequenceNumber"] for m in sent] == ["2", "3", "4", "5", "6", "7"]
    assert [m["media"]["track"] for m in sent] == ["inbound", "outbound"] * 3
    assert [m["media"]["chunk"] for m in sent] == ["1", "1", "2", "2", "3", "3"]
    assert [m["media"]["timestamp"] for m in sent] == ["52", "52", "72", "72", "92", "92"]
    assert [base64.b64decode(m["media"]["payload"])[0] for m in sent] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        messages.media(bytes(160), "inbound_track")


def test_outbound_only_fork_clock_follows_the_outbound_track():
    messages = TwilioMessages(STREAM_SID, ACCOUNT_SID, CALL_SID, first_timestamp_ms=20)
    messages.start({}, ["outbound"])
    messages.media(bytes(160), "outbound")
    assert messages.next_timestamp_ms == 40
    assert json.loads(messages.media(bytes(160), "outbound"))["media"]["timestamp"] == "40"


@pytest.mark.parametrize("case, data", _mutations()[:3] + [
    ("valid media", json.dumps(outbound("out_media.json"))),
    ("valid mark", json.dumps(outbound("out_mark.json"))),
    ("valid clear", json.dumps(outbound("out_clear.json"))),
])
def test_unidirectional_stream_rejects_every_message_with_31924(case, data):
    if case.startswith("valid"):
        parse_server_message(data, STREAM_SID)  # accepted on a bidirectional stream
    with pytest.raises(ProtocolViolation, match=re.escape(UNIDIRECTIONAL_VIOLATION)) as error:
        parse_server_message(data, STREAM_SID, unidirectional=True)
    assert "31924" in str(error.value)
    if case.startswith("valid"):
        assert repr(json.loads(data)["event"]) in str(error.value)
