"""Tests for the pure parts of tools/callsim.py (no network, no gevent)."""

import base64
import json
import random
import re
import subprocess
import sys
import wave
from pathlib import Path

import pytest
import soundfile

from tools import callsim
from tools.callsim import (
    FRAME_BYTES,
    CallerScript,
    PlaybackBuffer,
    ProtocolViolation,
    ReplyTracker,
    TurnWaiter,
    TwilioMessages,
    TwimlError,
    frame_index_for_ms,
    pair_latencies,
    parse_script,
    parse_server_message,
    parse_twiml,
    websocket_url,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "twilio"
CORPUS = SHARED / "corpus"
REPO_ROOT = Path(__file__).resolve().parents[1]

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


# ---------------------------------------------------------------- import hygiene


def test_import_does_not_pull_in_network_or_threading_modules():
    code = ("import sys, tools.callsim; "
            "print([m for m in ('gevent', 'websocket', 'requests', 'socket', 'threading') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- script


def test_parse_script_reads_each_kind_in_order():
    items = parse_script(["a.wav", "dtmf:12*#", "silence:2.5", "dir/b.flac"])
    assert [item.kind for item in items] == ["audio", "dtmf", "silence", "audio"]
    assert items[0].path == "a.wav" and items[3].path == "dir/b.flac"
    assert items[1].digits == "12*#"
    assert items[2].seconds == 2.5
    assert [item.token for item in items] == ["a.wav", "dtmf:12*#", "silence:2.5", "dir/b.flac"]


@pytest.mark.parametrize("token", ["dtmf:", "dtmf:12x", "dtmf:1 2", "silence:", "silence:abc",
                                   "silence:0", "silence:-1", "silence:nan", "silence:inf", ""])
def test_parse_script_rejects_bad_items(token):
    with pytest.raises(ValueError):
        parse_script([token])


def test_split_frames_pads_last_frame_with_ulaw_silence():
    ulaw = bytes(range(200)) * 2  # 400 bytes
    frames = callsim.split_frames(ulaw)
    assert [len(frame) for frame in frames] == [160, 160, 160]
    assert b"".join(frames)[:400] == ulaw
    assert frames[-1][80:] == b"\xff" * 80


# ---------------------------------------------------------------- TwiML


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
    form = callsim.webhook_form(CALL_SID, ACCOUNT_SID, "+15551230001", "+15559870002")
    assert form["CallSid"] == CALL_SID and form["AccountSid"] == ACCOUNT_SID
    assert form["From"] == form["Caller"] == "+15551230001"
    assert form["To"] == form["Called"] == "+15559870002"
    assert (form["CallStatus"], form["Direction"], form["ApiVersion"]) == ("ringing", "inbound", "2010-04-01")
    assert all(isinstance(value, str) and value for value in form.values())


@pytest.mark.parametrize("prefix", ["CA", "AC", "MZ"])
def test_random_sid_matches_twilio_pattern(prefix):
    sids = {callsim.random_sid(prefix) for _ in range(20)}
    assert len(sids) == 20
    assert all(re.fullmatch(prefix + "[0-9a-f]{32}", sid) for sid in sids)


# ---------------------------------------------------------------- messages Twilio sends


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


# ---------------------------------------------------------------- messages the server sends


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


# ---------------------------------------------------------------- playback buffer


def test_playback_buffer_empty_tick_plays_nothing():
    buffer = PlaybackBuffer()
    assert buffer.tick() == (b"", [])
    assert buffer.queued_bytes == 0


def test_playback_buffer_plays_in_order_and_reaches_mark_after_audio():
    buffer = PlaybackBuffer()
    audio = bytes(random.Random(1).randrange(256) for _ in range(400))
    buffer.enqueue_media(audio[:250])
    buffer.enqueue_media(audio[250:])
    assert buffer.enqueue_mark("end") is False
    assert buffer.queued_bytes == 400 and buffer.pending_marks == ["end"]
    first, second, third = buffer.tick(), buffer.tick(), buffer.tick()
    assert (first[1], second[1], third[1]) == ([], [], ["end"])
    assert first[0] + second[0] + third[0] == audio
    assert [len(first[0]), len(second[0]), len(third[0])] == [160, 160, 80]
    assert buffer.queued_bytes == 0 and buffer.tick() == (b"", [])


def test_playback_buffer_mark_on_tick_boundary_is_reached_with_that_tick():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"\x01" * 160)
    buffer.enqueue_mark("m")
    assert buffer.tick() == (b"\x01" * 160, ["m"])


def test_playback_buffer_mark_with_nothing_queued_is_reached_at_once():
    buffer = PlaybackBuffer()
    assert buffer.enqueue_mark("now") is True
    assert buffer.pending_marks == []
    assert buffer.tick() == (b"", [])


def test_playback_buffer_tick_crosses_chunks_and_marks():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"a" * 100)
    buffer.enqueue_mark("between")
    buffer.enqueue_media(b"b" * 100)
    assert buffer.tick() == (b"a" * 100 + b"b" * 60, ["between"])
    assert buffer.queued_bytes == 40


def test_playback_buffer_clear_drops_audio_and_returns_marks():
    buffer = PlaybackBuffer()
    buffer.enqueue_media(b"x" * 500)
    buffer.enqueue_mark("one")
    buffer.enqueue_media(b"y" * 500)
    buffer.enqueue_mark("two")
    buffer.tick()
    assert buffer.clear() == ["one", "two"]
    assert buffer.queued_bytes == 0 and buffer.pending_marks == []
    assert buffer.tick() == (b"", [])
    assert buffer.enqueue_mark("after") is True


@pytest.mark.parametrize("seed", range(5))
def test_playback_buffer_random_schedule_is_exact(seed):
    rng = random.Random(seed)
    buffer = PlaybackBuffer()
    sent = bytearray()
    mark_positions = {}  # name -> byte offset at which it was queued
    for index in range(40):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 700)))
        buffer.enqueue_media(chunk)
        sent += chunk
        if rng.random() < 0.4:
            name = f"m{index}"
            assert buffer.enqueue_mark(name) is False
            mark_positions[name] = len(sent)
    played = bytearray()
    reached_at = {}
    while buffer.queued_bytes or buffer.pending_marks:
        audio, marks = buffer.tick(FRAME_BYTES)
        played += audio
        for name in marks:
            reached_at[name] = len(played)
    assert played == sent
    # Each mark is reached on the tick that plays the last byte before it.
    for name, position in mark_positions.items():
        assert reached_at[name] >= position
        assert reached_at[name] - position < FRAME_BYTES


# ---------------------------------------------------------------- waiting for the bot


def test_turn_waiter_needs_quiet_time_and_min_wait():
    waiter = TurnWaiter(quiet_s=1.5, min_wait_s=2.0, timeout_s=20.0)
    waiter.start(10.0)
    assert waiter.poll(11.49, audio_queued=False) is None
    assert waiter.poll(11.99, audio_queued=False) is None  # quiet long enough, but min wait not reached
    assert waiter.poll(12.0, audio_queued=False) == "quiet"


def test_turn_waiter_counts_quiet_from_last_bot_audio():
    waiter = TurnWaiter(quiet_s=1.5, min_wait_s=0.0, timeout_s=20.0)
    waiter.start(0.0)
    waiter.note_media_received(0.5)
    assert waiter.poll(1.0, audio_queued=True) is None
    waiter.note_audio_played(3.0)  # playback of the queued audio ends at 3.0 s
    assert waiter.poll(4.4, audio_queued=False) is None
    assert waiter.poll(4.5, audio_queued=False) == "quiet"


def test_turn_waiter_expecting_a_reply_waits_for_media_or_timeout():
    waiter = TurnWaiter(quiet_s=1.0, min_wait_s=0.0, timeout_s=5.0)
    waiter.note_media_received(-1.0)  # media from before the wait does not count as the reply
    waiter.start(0.0, expect_reply=True)
    assert waiter.poll(3.0, audio_queued=False) is None
    waiter.note_media_received(3.2)
    assert waiter.poll(4.1, audio_queued=False) is None
    assert waiter.poll(4.2, audio_queued=False) == "quiet"
    waiter.start(10.0, expect_reply=True)
    assert waiter.poll(14.9, audio_queued=False) is None
    assert waiter.poll(15.0, audio_queued=False) == "timeout"


def test_turn_waiter_poll_before_start_is_an_error():
    with pytest.raises(RuntimeError):
        TurnWaiter(1.0, 0.0, 5.0).poll(0.0, audio_queued=False)


def run_script(script, bot_media_at=(), queued_until=None, max_ticks=10_000):
    """Drive a CallerScript with a fake 20 ms clock; return the ticks it produced."""
    ticks = []
    for n in range(max_ticks):
        now_s = n * 0.02
        for at_s in bot_media_at:
            if abs(at_s - now_s) < 0.01:
                script._waiter.note_media_received(now_s)
        queued = queued_until is not None and now_s < queued_until
        if queued:
            script._waiter.note_audio_played(now_s)  # the runtime does this on ticks that play bot audio
        tick = script.next_tick(now_s, queued)
        if tick is None:
            return ticks
        ticks.append((now_s, tick))
    raise AssertionError("script did not finish")


def test_caller_script_plays_items_between_waits():
    audio = bytes(range(256)) * 2  # 512 bytes -> 4 frames
    waiter = TurnWaiter(quiet_s=0.5, min_wait_s=0.0, timeout_s=3.0)
    items = parse_script(["silence:0.1", "dtmf:12", "x.wav"])
    script = CallerScript(items, {"x.wav": audio}, waiter, wait_first=True)
    ticks = run_script(script, bot_media_at=[0.6, 1.5])
    frames = [tick.ulaw for _, tick in ticks]
    assert all(len(frame) == FRAME_BYTES for frame in frames)
    notes = [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]
    # Greeting wait 0.5 s, silence 5 frames, wait 0.5 s, DTMF 2 x 5 frames, wait for the reply (media at
    # 1.5 s, quiet 0.5 s), the 4 audio frames, then a final wait that times out (no reply).
    assert notes[0] == (0.0, "waiting for the bot")
    assert notes[1] == (0.5, "bot quiet; caller: silence:0.1")
    assert notes[2] == (0.6, "waiting for the bot")
    assert notes[3][1] == "bot quiet; caller: dtmf:12"
    assert notes[4][1] == "waiting for the bot to reply"
    assert notes[5] == (2.0, "bot quiet; caller: x.wav")
    assert notes[6] == (2.08, "waiting for the bot to reply")
    assert ticks[-1][0] == pytest.approx(2.08 + 3.0 - 0.02)
    assert script.final_note == "wait timed out after 3 s"
    digits = [(round(now_s, 2), tick.digits) for now_s, tick in ticks if tick.digits]
    dtmf_start = notes[3][0]
    assert digits == [(dtmf_start, ["1"]), (round(dtmf_start + 0.1, 2), ["2"])]
    spoken = b"".join(tick.ulaw for now_s, tick in ticks if 2.0 <= now_s < 2.07)
    assert spoken == b"".join(callsim.split_frames(audio))


def test_caller_script_without_greeting_wait_speaks_first():
    waiter = TurnWaiter(quiet_s=0.21, min_wait_s=0.0, timeout_s=1.0)
    ticks = run_script(CallerScript(parse_script(["silence:0.04"]), {}, waiter, wait_first=False))
    assert ticks[0][1].note == "caller: silence:0.04"
    assert len(ticks) == 2 + 11  # 2 silence frames, then the final quiet wait: ticks 0.04 ... 0.24 s


def test_caller_script_waits_while_bot_audio_is_queued():
    waiter = TurnWaiter(quiet_s=0.2, min_wait_s=0.0, timeout_s=10.0)
    ticks = run_script(CallerScript([], {}, waiter), queued_until=1.0)
    # Last bot audio played on the 0.98 s tick; the wait ends 0.2 s later.
    assert ticks[-1][0] == pytest.approx(0.98 + 0.2 - 0.02, abs=0.021)


def test_caller_script_interrupt_talks_over_the_reply_after_it_played_that_long():
    audio = bytes(160)
    waiter = TurnWaiter(quiet_s=0.5, min_wait_s=0.0, timeout_s=5.0)
    items = parse_script(["a.wav", "interrupt:0.3", "b.wav"])
    assert items[1].kind == "interrupt" and items[1].seconds == 0.3
    script = CallerScript(items, {"a.wav": audio, "b.wav": audio}, waiter, wait_first=False)
    ticks = run_script(script, bot_media_at=[0.5], queued_until=2.0)
    notes = [(round(now_s, 2), tick.note) for now_s, tick in ticks if tick.note]
    assert notes[0] == (0.0, "caller: a.wav")
    # The wait starts on the 0.02 s tick; bot audio is first heard after it (0.04 s); 0.3 s later the caller
    # barges in, long before the bot is quiet (2.0 s).
    assert notes[1] == (0.02, "waiting for the bot to reply")
    assert notes[2] == (0.34, "interrupting the bot; caller: b.wav")


def test_caller_script_requires_audio_for_audio_items():
    with pytest.raises(ValueError):
        CallerScript(parse_script(["missing.wav"]), {}, TurnWaiter(1, 0, 1))


# ---------------------------------------------------------------- replies and latency


def test_reply_tracker_splits_on_gap_and_clear():
    tracker = ReplyTracker(gap_s=0.4)
    assert tracker.on_media(1.00, 160, audio_queued=False).index == 1
    assert tracker.on_media(1.02, 160, audio_queued=True) is None
    assert tracker.on_media(1.60, 160, audio_queued=True) is None  # long gap but audio still queued
    tracker.on_played(1040)
    tracker.on_played(1060)
    tracker.on_mark_echo(2.0)
    tracker.on_mark_echo(2.5)
    assert tracker.on_media(2.30, 160, audio_queued=False).index == 2  # gap 0.7 s and nothing queued
    tracker.on_clear()
    assert tracker.on_media(2.31, 160, audio_queued=False).index == 3  # after a clear
    first = tracker.replies[0]
    assert (first.media_messages, first.ulaw_bytes, first.heard_ms, first.first_mark_echo_s) == (3, 480, 1040, 2.0)


@pytest.mark.parametrize("end_ms, expected", [(20, 0), (21, 0), (40, 0), (41, 1), (60, 1), (61, 2), (0, 0)])
def test_frame_index_for_ms_picks_the_frame_holding_the_end(end_ms, expected):
    assert frame_index_for_ms(end_ms, first_timestamp_ms=20) == expected


def test_pair_latencies_pairs_each_turn_with_the_next_reply():
    tracker = ReplyTracker()
    tracker.on_media(0.5, 160, False)  # greeting, before any caller turn
    tracker.on_media(5.2, 160, False)  # reply to turn 1
    tracker.on_mark_echo(6.0)
    tracker.on_media(9.0, 160, False)  # second part of reply to turn 1 (nothing unpaired before it)
    # turn 3 gets no reply before turn 5 ends; turn 5's reply arrives at 20.3
    tracker.on_media(20.3, 160, False)
    caller_ends = [(1, 4000, 4.0), (3, 12000, 12.0), (5, 19000, 19.0)]
    result = pair_latencies(caller_ends, tracker.replies)
    assert [(r["caller_turn"], r["reply"], r["voice_to_voice_ms"], r["first_mark_echo_ms"]) for r in result] == [
        (1, 2, 1200, 2000), (3, None, None, None), (5, 4, 1300, None)]
    assert callsim.median_or_none([r["voice_to_voice_ms"] for r in result]) == 1250
    assert callsim.median_or_none([None]) is None


# ---------------------------------------------------------------- audio files


def test_load_audio_ulaw_converts_real_speech_to_8k_mono():
    path = CORPUS / "jfk.flac"  # 44.1 kHz stereo
    info = soundfile.info(str(path))
    ulaw = callsim.load_audio_ulaw(str(path))
    assert abs(len(ulaw) - info.duration * 8000) <= 2
    pcm = callsim.ulaw_to_pcm(ulaw)
    assert len(pcm) == 2 * len(ulaw)
    import numpy as np

    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples ** 2)) > 300  # speech, not silence


def test_write_wav_round_trips(tmp_path):
    pcm = callsim.ulaw_to_pcm(bytes(range(256)))
    out = tmp_path / "heard.wav"
    callsim.write_wav(str(out), pcm)
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.readframes(wav.getnframes()) == pcm
