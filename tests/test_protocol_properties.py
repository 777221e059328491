"""Property-based tests of ``core.protocol``: the parser on any input, the builders' round trips.

The parser sits between the socket and the session: whatever arrives (garbage, truncation,
mistyped fields, a SignalWire variant), it must return one of the event dataclasses with
fields of the declared types, or raise ``ProtocolError``, which the worker logs and skips.
Any other exception would end the call (``runtime/call_worker.py`` catches only
``ProtocolError``). Inputs are generated, or are mutations of Twilio's own examples
(``tests/data/twilio``).
"""

import base64
import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from core import protocol
from core.protocol import (
    Connected,
    Dtmf,
    Mark,
    Media,
    MediaFormat,
    ProtocolError,
    Start,
    Stop,
    UnknownEvent,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"
INBOUND_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*.json") if not p.name.startswith("out_") and "envelope" not in p.name
)
EVENT_TYPES = (Connected, Start, Media, Dtmf, Mark, Stop, UnknownEvent)
EVENT_NAMES = ["connected", "start", "media", "dtmf", "mark", "stop", "clear", "closed", ""]

# database=None: no .hypothesis/ folder in the repo; failures found so far are pinned with @example.
FAST = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def fixture(name: str) -> dict:
    """A fixture with Twilio's placeholder SIDs ("MZ" + 30 X) made real-shaped ("MZ" + 32 hex)."""
    return json.loads((FIXTURES / name).read_text().replace("X" * 30, "0123456789abcdef" * 2))


def captured_messages() -> list[dict]:
    lines = (FIXTURES / "captured_connect_basic_2020.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


SEED_MESSAGES = [fixture(name) for name in INBOUND_FIXTURES] + captured_messages()


def parse_or_protocol_error(text):
    """Parse ``text``; return the event, or None for ``ProtocolError``. Anything else propagates."""
    try:
        event = protocol.parse_message(text)
    except ProtocolError as exc:
        assert str(exc), "a ProtocolError says why"
        return None
    assert_well_typed(event)
    return event


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_opt(value, check) -> bool:
    return value is None or check(value)


def assert_well_typed(event) -> None:
    """Every field has the type the dataclass declares (the session relies on it)."""
    assert isinstance(event, EVENT_TYPES), type(event)
    string = lambda v: isinstance(v, str)  # noqa: E731
    if isinstance(event, Connected):
        assert string(event.protocol) and string(event.version)
    elif isinstance(event, Start):
        assert string(event.stream_sid) and string(event.account_sid) and string(event.call_sid)
        assert isinstance(event.tracks, tuple) and all(string(t) for t in event.tracks)
        fmt = event.media_format
        assert isinstance(fmt, MediaFormat)
        assert string(fmt.encoding) and is_int(fmt.sample_rate) and is_int(fmt.channels)
        assert isinstance(event.custom_parameters, dict)
        assert all(string(k) and string(v) for k, v in event.custom_parameters.items())
        assert is_opt(event.sequence_number, is_int)
    elif isinstance(event, Media):
        assert is_opt(event.stream_sid, string) and string(event.track) and event.track
        assert is_opt(event.chunk, is_int) and is_int(event.timestamp_ms)
        assert isinstance(event.payload, bytes) and is_opt(event.sequence_number, is_int)
    elif isinstance(event, Dtmf):
        assert is_opt(event.stream_sid, string) and string(event.digit)
        assert is_opt(event.track, string) and is_opt(event.duration_ms, is_int)
        assert is_opt(event.sequence_number, is_int)
    elif isinstance(event, Mark):
        assert is_opt(event.stream_sid, string) and string(event.name)
        assert is_opt(event.sequence_number, is_int)
    elif isinstance(event, Stop):
        assert is_opt(event.stream_sid, string) and is_opt(event.account_sid, string)
        assert is_opt(event.call_sid, string) and is_opt(event.sequence_number, is_int)
    elif isinstance(event, UnknownEvent):
        assert string(event.event)


# --- strategies ----------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "5", "-3", " 7 ", "1_000", "0x10", "5.0", "NaN", "inbound", "outbound", "/w==", "@@"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

# Message-shaped objects: a known event name and the keys Twilio uses, with values of any type.
FIELD_KEYS = [
    "streamSid", "sequenceNumber", "protocol", "version", "start", "media", "dtmf", "mark", "stop",
    "accountSid", "callSid", "tracks", "mediaFormat", "customParameters", "track", "chunk",
    "timestamp", "payload", "digit", "duration", "name", "encoding", "sampleRate", "channels",
]
field_keys = st.sampled_from(FIELD_KEYS) | st.text(max_size=8)
shaped_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(field_keys, children, max_size=6),
    max_leaves=25,
)
message_like = st.builds(
    lambda event, rest: {**rest, "event": event},
    st.sampled_from(EVENT_NAMES[:6]) | st.sampled_from(EVENT_NAMES) | st.text(max_size=6) | json_values,
    st.dictionaries(field_keys, shaped_values, max_size=6),
)

# Nearly valid messages: every field Twilio or SignalWire uses, each right-typed, mistyped or absent.
ABSENT = object()
digits = st.integers(-5, 10**6).map(str)
b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())


def maybe(right):
    return st.one_of(right, right, json_values, st.just(ABSENT))


def obj(**fields):
    return st.fixed_dictionaries({k: maybe(v) for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not ABSENT}
    )


sid = st.sampled_from(["MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "7d56cc11-536d-4a45-b4fb-ed3d55be843b"]) | st.text(max_size=8)
BODIES = {
    "connected": obj(protocol=st.just("Call"), version=st.just("1.0.0")),
    "start": obj(start=obj(
        streamSid=sid, accountSid=sid, callSid=sid,
        tracks=st.lists(st.sampled_from(["inbound", "outbound"]), max_size=3),
        mediaFormat=obj(encoding=st.just("audio/x-mulaw"), sampleRate=st.integers(0, 48000) | digits, channels=st.integers(0, 2)),
        customParameters=st.dictionaries(st.text(max_size=5), st.text(max_size=5) | json_values, max_size=3),
    )),
    "media": obj(media=obj(
        track=st.sampled_from(["inbound", "outbound"]), chunk=digits | st.integers(), timestamp=digits | st.integers(), payload=b64,
    )),
    "dtmf": obj(dtmf=obj(track=st.just("inbound_track"), digit=st.sampled_from(list("0123456789*#")), duration=st.integers() | digits)),
    "mark": obj(mark=obj(name=st.text(max_size=10))),
    "stop": obj(stop=obj(accountSid=sid, callSid=sid)),
}
nearly_valid = st.sampled_from(sorted(BODIES)).flatmap(
    lambda event: st.tuples(BODIES[event], obj(streamSid=sid, sequenceNumber=digits | st.integers())).map(
        lambda parts: {"event": event, **parts[0], **parts[1]}
    )
)


def paths(obj, prefix=()):
    """Every (path, value) in a JSON object, the root included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from paths(value, prefix + (index,))


def get_parent(obj, path):
    for key in path[:-1]:
        obj = obj[key]
    return obj


def retype(value, draw):
    """The same content in another JSON type: a number as a string and vice versa, wrapped, ..."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return draw(st.sampled_from([len(value), [value], {"v": value}, None, True, float(len(value))]))
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        as_float = float(value) if value == value and abs(value) < 1e300 else 0.5  # (float(10**4000) overflows)
        return draw(st.sampled_from([str(value), [value], None, bool(value), as_float]))
    if isinstance(value, list):
        return draw(st.sampled_from([value[0] if value else None, {"0": value}, json.dumps(value)]))
    if isinstance(value, dict):
        return draw(st.sampled_from([list(value.values()), json.dumps(value), None, "", 0]))
    return draw(st.sampled_from(["", "null", 0, [], {}]))


@st.composite
def mutated_fixtures(draw):
    """A real message (fixture or 2020 capture) with a few random mutations applied."""
    message = copy.deepcopy(draw(st.sampled_from(SEED_MESSAGES)))
    for _ in range(draw(st.integers(1, 4))):
        all_paths = [p for p, _ in paths(message)]
        path = draw(st.sampled_from(all_paths))
        kind = draw(st.sampled_from(["drop", "retype", "replace", "huge", "unicode", "nest", "add"]))
        if not path:  # the root
            if kind in ("replace", "retype"):
                message = draw(json_values) if kind == "replace" else retype(message, draw)
                if not isinstance(message, (dict, list)):
                    break
            continue
        parent = get_parent(message, path)
        key = path[-1]
        value = parent[key]
        if kind == "drop":
            del parent[key]
        elif kind == "retype":
            parent[key] = retype(value, draw)
        elif kind == "replace":
            parent[key] = draw(json_values)
        elif kind == "huge":
            parent[key] = draw(st.sampled_from([10**30, -(10**30), str(10**4000), "9" * 5000, 1e308, -1e308, 2**63, -(2**63) - 1]))
        elif kind == "unicode":
            parent[key] = draw(st.text(min_size=1, max_size=10))
        elif kind == "nest":
            depth = draw(st.integers(1, 50))
            for _ in range(depth):
                value = [value]
            parent[key] = value
        elif kind == "add" and isinstance(value, dict):
            value[draw(field_keys)] = draw(shaped_values)
    return message


@st.composite
def garbled_text(draw, messages=mutated_fixtures()):
    """The JSON text of a message, then truncated, spliced with garbage, or re-encoded."""
    text = json.dumps(draw(messages), ensure_ascii=draw(st.booleans()))
    kind = draw(st.sampled_from(["as is", "truncate", "insert", "delete", "bytes", "bad bytes"]))
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif kind == "insert":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.text(max_size=8) | st.sampled_from(['"', "{", "}", "[", ",", ":", "\\", "\\u", "\x00"])) + text[at:]
    elif kind == "delete":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + text[at + draw(st.integers(1, 5)):]
    elif kind == "bytes":
        return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "utf-16-le", "utf-32", "utf-8-sig"])))
    elif kind == "bad bytes":
        data = text.encode()
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return text


# --- 1. the parser never raises anything but ProtocolError --------------------------------


@FAST
@given(st.text())
@example("")
@example("null")
@example('"event"')
@example('{"event": null}')
@example('{"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", "customParameters": {"a": [1, {"b": null}]}}}')
def test_parse_any_text_returns_an_event_or_raises_protocol_error(text):
    parse_or_protocol_error(text)


@FAST
@given(st.binary())
@example(b"\xff\xfe{")
@example(b"\xef\xbb\xbf{\"event\": \"stop\"}")
@example(b"\x00\x00\x00{")
def test_parse_any_bytes_returns_an_event_or_raises_protocol_error(data):
    parse_or_protocol_error(data)


@FAST
@given(json_values)
def test_parse_any_json_value_returns_an_event_or_raises_protocol_error(value):
    parse_or_protocol_error(json.dumps(value))


@FAST
@given(message_like)
@example({"event": "start", "start": {"streamSid": "MZ1", "callSid": "CA1", "mediaFormat": {"sampleRate": True}}})
@example({"event": "media", "media": {"payload": "", "timestamp": "1" * 5000}})
@example({"event": "media", "media": {"payload": "é", "timestamp": "1"}})
@example({"event": "media", "media": {"payload": "AAA", "timestamp": "1"}})
@example({"event": "dtmf", "dtmf": {"digit": "1", "duration": 2.5}})
@example({"event": "stop", "stop": []})
@example({"event": "stop", "stop": "x"})
def test_parse_message_shaped_objects_returns_an_event_or_raises_protocol_error(message):
    parse_or_protocol_error(json.dumps(message))


@FAST
@given(nearly_valid)
def test_parse_nearly_valid_messages_returns_an_event_or_raises_protocol_error(message):
    parse_or_protocol_error(json.dumps(message))


@FAST
@given(mutated_fixtures())
def test_parse_mutated_fixtures_returns_an_event_or_raises_protocol_error(message):
    parse_or_protocol_error(json.dumps(message))


@FAST
@given(garbled_text())
def test_parse_garbled_fixture_text_returns_an_event_or_raises_protocol_error(text):
    parse_or_protocol_error(text)


@pytest.mark.parametrize("name", INBOUND_FIXTURES)
def test_every_inbound_fixture_parses_to_its_event_type(name):
    """The seeds of the mutations are valid: a mutation that fails tests the parser, not the seed."""
    raw = fixture(name)
    event = parse_or_protocol_error(json.dumps(raw))
    assert event is not None and type(event).__name__.lower() == raw["event"]


@FAST
@given(json_values.filter(lambda v: isinstance(v, (dict, list))))
def test_text_and_its_utf8_bytes_parse_alike(value):
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot be sent as UTF-8 at all
        assume(False)
    assert parse_or_protocol_error(text) == parse_or_protocol_error(text.encode("utf-8"))


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# Was a bug found by this property (fixed): parse_message lets RecursionError escape on deeply nested JSON (json.loads recursion)
@settings(max_examples=20, deadline=None)
@given(depth=st.integers(min_value=2_000, max_value=200_000), where=st.sampled_from(["root", "field"]))
@example(depth=100_000, where="root")
@example(depth=100_000, where="field")
def test_deeply_nested_json_is_a_protocol_error(depth, where):
    """A text message of ~2 kB of ``[`` crashes the worker's read loop (it catches only ProtocolError)."""
    if where == "root":
        text = nested(depth)
    else:
        text = '{"event": "start", "start": ' + nested(depth) + "}"
    parse_or_protocol_error(text)


# --- 2. builders and round trips ------------------------------------------------------------

sids = st.text(max_size=40) | st.sampled_from(["MZXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", "7d56cc11-536d-4a45-b4fb-ed3d55be843b"])
uuid_sids = st.uuids().map(str)
call_sids = st.binary(min_size=16, max_size=16).map(lambda b: "CA" + b.hex()) | uuid_sids
stream_sids = st.binary(min_size=16, max_size=16).map(lambda b: "MZ" + b.hex()) | uuid_sids


def key_shape(obj):
    """The nested key structure of a JSON object (values dropped)."""
    if isinstance(obj, dict):
        return {k: key_shape(v) for k, v in obj.items()}
    return type(obj).__name__


@FAST
@given(sids, st.binary(max_size=2000))
def test_media_message_has_exactly_twilios_keys_and_carries_the_audio(stream_sid, ulaw):
    message = json.loads(protocol.media_message(stream_sid, ulaw))
    assert key_shape(message) == key_shape(fixture("out_media.json"))
    assert message["event"] == "media" and message["streamSid"] == stream_sid
    assert base64.b64decode(message["media"]["payload"], validate=True) == ulaw


@FAST
@given(sids, st.text())
def test_mark_message_has_exactly_twilios_keys_and_its_echo_parses_back(stream_sid, name):
    text = protocol.mark_message(stream_sid, name)
    message = json.loads(text)
    assert key_shape(message) == key_shape(fixture("out_mark.json"))
    assert message["mark"]["name"] == name and message["streamSid"] == stream_sid
    # Twilio echoes the same object (plus sequenceNumber) when playback reaches it.
    assert protocol.parse_message(text) == Mark(stream_sid, name, None)
    echo = {**message, "sequenceNumber": "7"}
    assert protocol.parse_message(json.dumps(echo)) == Mark(stream_sid, name, 7)


@FAST
@given(sids)
def test_clear_message_has_exactly_twilios_keys(stream_sid):
    message = json.loads(protocol.clear_message(stream_sid))
    assert key_shape(message) == key_shape(fixture("out_clear.json"))
    assert message == {"event": "clear", "streamSid": stream_sid}


def number(value: int, as_string: bool):
    return str(value) if as_string else value


@FAST
@given(
    stream_sid=st.none() | sids,
    track=st.sampled_from(["inbound", "outbound"]) | st.text(min_size=1, max_size=10),
    chunk=st.none() | st.integers(min_value=0, max_value=2**40),
    timestamp_ms=st.integers(min_value=0, max_value=2**53),
    payload=st.binary(max_size=2000),
    sequence_number=st.none() | st.integers(min_value=0, max_value=2**40),
    strings=st.lists(st.booleans(), min_size=3, max_size=3),
)
def test_inbound_media_round_trips(stream_sid, track, chunk, timestamp_ms, payload, sequence_number, strings):
    """Numbers as JSON strings (Twilio) or JSON numbers (SignalWire) come back as the same ints."""
    media = {"track": track, "timestamp": number(timestamp_ms, strings[0]), "payload": base64.b64encode(payload).decode()}
    if chunk is not None:
        media["chunk"] = number(chunk, strings[1])
    message = {"event": "media", "media": media}
    if stream_sid is not None:
        message["streamSid"] = stream_sid
    if sequence_number is not None:
        message["sequenceNumber"] = number(sequence_number, strings[2])
    event = protocol.parse_message(json.dumps(message))
    assert event == Media(stream_sid, track, chunk, timestamp_ms, payload, sequence_number)


# Was a bug found by this property (fixed): parse_message accepts a negative media.timestamp; the worker then passes it to CallRecorder.add, which raises ValueError
@settings(max_examples=50, deadline=None, database=None)
@given(timestamp_ms=st.integers(max_value=-1), as_string=st.booleans())
@example(timestamp_ms=-20, as_string=True)
def test_a_negative_media_timestamp_is_a_protocol_error(timestamp_ms, as_string):
    """``media.timestamp`` is "milliseconds from the start of the stream" (T-WS), never negative.
    ``runtime/call_worker.py`` hands it to the recording (``CallRecorder.add`` raises ValueError
    on a negative start, ending the call from the read loop) and to the session (whose media clock
    then runs below the bot turns it already stamped)."""
    message = {"event": "media", "media": {"timestamp": number(timestamp_ms, as_string), "payload": ""}}
    with pytest.raises(ProtocolError):
        protocol.parse_message(json.dumps(message))


@FAST
@given(
    stream_sid=stream_sids,
    call_sid=call_sids,
    account_sid=sids,
    tracks=st.lists(st.sampled_from(["inbound", "outbound"]) | st.text(max_size=8), min_size=1, max_size=3),
    sample_rate=st.integers(min_value=1, max_value=96000),
    channels=st.integers(min_value=1, max_value=8),
    params=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=5),
    as_string=st.booleans(),
)
def test_start_round_trips(stream_sid, call_sid, account_sid, tracks, sample_rate, channels, params, as_string):
    message = {
        "event": "start",
        "sequenceNumber": number(1, as_string),
        "start": {
            "streamSid": stream_sid, "accountSid": account_sid, "callSid": call_sid, "tracks": tracks,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": number(sample_rate, as_string), "channels": channels},
            "customParameters": params,
        },
        "streamSid": stream_sid,
    }
    event = protocol.parse_message(json.dumps(message))
    assert event == Start(stream_sid, account_sid, call_sid, tuple(tracks), MediaFormat("audio/x-mulaw", sample_rate, channels), params, 1)


@FAST
@given(
    stream_sid=st.none() | sids,
    digit=st.sampled_from(list("0123456789*#")),
    track=st.none() | st.just("inbound_track"),
    duration_ms=st.none() | st.integers(min_value=0, max_value=10**6),
    sequence_number=st.none() | st.integers(min_value=0, max_value=10**9),
    as_string=st.booleans(),
)
def test_dtmf_round_trips(stream_sid, digit, track, duration_ms, sequence_number, as_string):
    dtmf = {"digit": digit}
    if track is not None:
        dtmf["track"] = track
    if duration_ms is not None:
        dtmf["duration"] = number(duration_ms, as_string)
    message = {"event": "dtmf", "dtmf": dtmf}
    if stream_sid is not None:
        message["streamSid"] = stream_sid
    if sequence_number is not None:
        message["sequenceNumber"] = number(sequence_number, as_string)
    assert protocol.parse_message(json.dumps(message)) == Dtmf(stream_sid, digit, track, duration_ms, sequence_number)


@FAST
@given(stream_sid=st.none() | sids, account_sid=st.none() | sids, call_sid=st.none() | sids, empty=st.booleans())
def test_stop_round_trips(stream_sid, account_sid, call_sid, empty):
    stop = {} if empty else {k: v for k, v in (("accountSid", account_sid), ("callSid", call_sid)) if v is not None}
    message = {"event": "stop", "stop": stop}
    if stream_sid is not None:
        message["streamSid"] = stream_sid
    expected = Stop(stream_sid, None, None) if empty else Stop(stream_sid, account_sid, call_sid)
    assert protocol.parse_message(json.dumps(message)) == expected


@FAST
@given(st.text().filter(lambda e: e not in ("connected", "start", "media", "dtmf", "mark", "stop")), json_values)
def test_unknown_events_are_returned_not_raised(event, extra):
    assert protocol.parse_message(json.dumps({"event": event, "extra": extra})) == UnknownEvent(event)


@FAST
@given(call_sid=st.text(max_size=40) | st.sampled_from(["..", "CA..", "/", "CA" + "0" * 32 + "/.."]), stream_sid=stream_sids)
def test_a_start_parses_only_with_a_call_sid_that_is_safe_as_a_folder_name(call_sid, stream_sid):
    """Whatever ``callSid`` a start names, a parsed start's SID is a plain name: letters, digits, dashes."""
    message = {"event": "start", "start": {"streamSid": stream_sid, "callSid": call_sid}}
    event = parse_or_protocol_error(json.dumps(message))
    if event is not None:
        assert event.call_sid not in ("", ".", "..") and all(c.isascii() and (c.isalnum() or c == "-") for c in event.call_sid)
        assert len(event.call_sid) in (34, 36)
