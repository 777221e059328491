"""Tests for the simulator's SignalWire dialect (pure parts), against SignalWire's fixtures in tests/data/twilio/.

protocol.md §9: UUID SIDs, SignalWire's message shapes, the ``<Stream codec>`` attribute (μ-law 8 kHz,
or L16 little-endian at 16/24 kHz), ``X-SignalWire-Signature``.
"""

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tools.twilio_sim.audio_files import read_audio
from tools.twilio_sim.dialect import SIGNALWIRE, TWILIO
from tools.twilio_sim.media_format import L16_16K, L16_24K, MULAW_8K, media_format_for_codec
from tools.twilio_sim.messages import ProtocolViolation, SignalWireMessages, parse_server_message, random_uuid_sid
from tools.twilio_sim.report import CallOutcome, build_report
from tools.twilio_sim.script import CallerScript, ForkScript, TurnWaiter, parse_script
from tools.twilio_sim.twiml import parse_twiml
from tests.test_twilio_sim_messages import fixture, shape

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"
SPEECH = Path(__file__).resolve().parent / "data" / "sr_english.wav"
UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"




START = fixture("signalwire_start.json")["start"]
STREAM_SID, ACCOUNT_SID, CALL_SID = START["streamSid"], START["accountSid"], START["callSid"]


def signalwire_messages(media_format=MULAW_8K, first_timestamp_ms=20):
    return SignalWireMessages(STREAM_SID, ACCOUNT_SID, CALL_SID, first_timestamp_ms, media_format)


# --- messages ---------------------------------------------------------------------------


def test_connected_start_and_dtmf_match_the_signalwire_fixtures():
    messages = signalwire_messages(L16_24K)
    assert json.loads(messages.connected()) == fixture("signalwire_connected.json")
    assert json.loads(messages.start({})) == fixture("signalwire_start.json")  # L16@24k, no customParameters
    dtmf = json.loads(messages.dtmf("8"))
    expected = fixture("signalwire_dtmf.json")
    assert shape(dtmf) == shape(expected)  # dtmf{duration (a number, ms), digit}; no track, no sequenceNumber
    assert (dtmf["streamSid"], dtmf["dtmf"]["digit"]) == (expected["streamSid"], "8")
    assert dtmf["dtmf"]["duration"] > 0


def test_start_has_custom_parameters_only_when_there_are_some_and_the_codecs_media_format():
    for media_format, encoding, sample_rate in ((MULAW_8K, "audio/x-mulaw", 8000), (L16_16K, "audio/x-L16", 16000),
                                                (L16_24K, "audio/x-L16", 24000)):
        plain = json.loads(signalwire_messages(media_format).start({}))
        assert "customParameters" not in plain["start"] and "streamSid" not in plain
        assert plain["start"]["mediaFormat"] == {"encoding": encoding, "sampleRate": sample_rate, "channels": 1}
    with_parameters = json.loads(signalwire_messages().start({"From": "+15551230001"}, ["inbound", "outbound"]))
    assert with_parameters["start"]["customParameters"] == {"From": "+15551230001"}
    assert with_parameters["start"]["tracks"] == ["inbound", "outbound"]
    expected_keys = set(START) | {"customParameters"}
    assert set(with_parameters["start"]) == expected_keys
    with pytest.raises(ValueError):
        signalwire_messages().start({}, ["both"])


def test_media_mark_and_stop_shapes_and_the_counters():
    messages = signalwire_messages(L16_24K, first_timestamp_ms=41)
    start = json.loads(messages.start({}))
    frames = [bytes([n]) * L16_24K.frame_bytes for n in range(3)]
    media = [json.loads(messages.media(frames[0]))]
    dtmf = json.loads(messages.dtmf("1"))
    media.append(json.loads(messages.media(frames[1])))
    mark = json.loads(messages.mark("reply-1"))
    media.append(json.loads(messages.media(frames[2])))
    stop = json.loads(messages.stop())

    # The media rawEvent of SW-STREAM: no streamSid; numbers as strings like Twilio.
    assert shape(media[0]) == {"event": "str", "sequenceNumber": "str",
                               "media": {"track": "str", "chunk": "str", "timestamp": "str", "payload": "str"}}
    assert mark == {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "reply-1"}}  # no sequenceNumber
    assert stop == {"event": "stop", "sequenceNumber": "5"}  # no stop{} object
    assert "sequenceNumber" not in dtmf
    # sequenceNumber counts the messages that carry one: start 1, media 2-4, stop 5.
    assert [start["sequenceNumber"]] + [m["sequenceNumber"] for m in media] == ["1", "2", "3", "4"]
    assert [(m["media"]["chunk"], m["media"]["timestamp"]) for m in media] == [("1", "41"), ("2", "61"), ("3", "81")]
    assert [base64.b64decode(m["media"]["payload"]) for m in media] == frames
    # SW-STREAM's L16@24k example payload is 1280 base64 characters: 960 bytes, 20 ms.
    assert len(media[0]["media"]["payload"]) == 1280


def test_the_servers_parser_reads_every_signalwire_message():
    from core.protocol import parse_message

    messages = signalwire_messages(L16_16K)
    texts = [messages.connected(), messages.start({"k": "v"}), messages.media(L16_16K.silence_frame),
             messages.dtmf("5"), messages.mark("m"), messages.stop()]
    events = [parse_message(text) for text in texts]
    assert [type(event).__name__ for event in events] == ["Connected", "Start", "Media", "Dtmf", "Mark", "Stop"]
    assert events[1].stream_sid == STREAM_SID and events[1].custom_parameters == {"k": "v"}
    assert (events[1].media_format.encoding, events[1].media_format.sample_rate) == ("audio/x-L16", 16000)
    assert events[2].payload == L16_16K.silence_frame and events[3].digit == "5"


@pytest.mark.parametrize("media_format, frame_bytes", [(MULAW_8K, 160), (L16_16K, 640), (L16_24K, 960)])
def test_server_media_must_be_whole_samples_of_the_codec(media_format, frame_bytes):
    assert media_format.frame_bytes == frame_bytes

    def media(payload: bytes) -> str:
        return json.dumps({"event": "media", "streamSid": STREAM_SID,
                           "media": {"payload": base64.b64encode(payload).decode()}})

    frame = bytes(range(256)) * 4
    assert parse_server_message(media(frame[:frame_bytes]), STREAM_SID, media_format=media_format).payload == \
        frame[:frame_bytes]
    odd = media(frame[:frame_bytes - 1])
    if media_format.sample_width == 1:
        assert parse_server_message(odd, STREAM_SID, media_format=media_format).payload == frame[:frame_bytes - 1]
    else:
        with pytest.raises(ProtocolViolation, match="whole L16"):
            parse_server_message(odd, STREAM_SID, media_format=media_format)
    mark = json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "x"}})
    assert parse_server_message(mark, STREAM_SID, media_format=media_format).mark_name == "x"


# --- SIDs, codec selection, signing ----------------------------------------------------------


def test_signalwire_sids_are_uuids_like_the_fixtures_and_twilio_keeps_its_prefixes():
    for sid in (STREAM_SID, ACCOUNT_SID, CALL_SID, random_uuid_sid(), *SIGNALWIRE.new_sids()):
        assert re.fullmatch(UUID_PATTERN, sid), sid
    assert len(set(SIGNALWIRE.new_sids())) == 3
    call_sid, account_sid, stream_sid = TWILIO.new_sids()
    assert (call_sid[:2], account_sid[:2], stream_sid[:2]) == ("CA", "AC", "MZ")


SIGNALWIRE_TWIML = ('<Response><Connect><Stream url="wss://h/media-stream" codec="L16@24000h" '
                    'authBearerToken="tok-1"><Parameter name="a" value="b"/></Stream></Connect></Response>')


def test_codec_comes_from_the_twiml_and_the_fallback_only_fills_in():
    stream = parse_twiml(SIGNALWIRE_TWIML)
    assert (stream.codec, stream.auth_bearer_token, stream.parameters) == ("L16@24000h", "tok-1", {"a": "b"})
    plain = parse_twiml('<Response><Connect><Stream url="wss://h/media-stream"/></Connect></Response>')
    assert (plain.codec, plain.auth_bearer_token) == (None, None)

    assert SIGNALWIRE.choose_media_format(stream.codec) == (L16_24K, None)
    fmt, note = SIGNALWIRE.choose_media_format(stream.codec, "L16@16000h")
    assert fmt == L16_24K and "ignored" in note  # the TwiML wins
    fmt, note = SIGNALWIRE.choose_media_format(plain.codec, "L16@16000h")
    assert fmt == L16_16K and "--codec L16@16000h" in note
    assert SIGNALWIRE.choose_media_format(None) == (MULAW_8K, None)
    with pytest.raises(ValueError, match="L16@16000h"):
        SIGNALWIRE.choose_media_format("PCMA")
    fmt, note = TWILIO.choose_media_format(stream.codec)  # Twilio has no codec attribute
    assert fmt == MULAW_8K and "Twilio has no codec" in note
    assert media_format_for_codec("") == MULAW_8K
    with pytest.raises(ValueError):
        TWILIO.messages(STREAM_SID, ACCOUNT_SID, CALL_SID, 20, L16_16K)
    assert isinstance(SIGNALWIRE.messages(STREAM_SID, ACCOUNT_SID, CALL_SID, 20, L16_16K), SignalWireMessages)


def test_signalwire_signs_webhooks_with_its_header_and_not_the_websocket_upgrade():
    from handlers.signatures import SignatureChecker

    form = {"CallSid": CALL_SID, "AccountSid": ACCOUNT_SID, "From": "+15551230001"}
    headers = SIGNALWIRE.signer("PSKsecret").headers("https://h.example/incoming-call", form)
    assert list(headers) == ["X-SignalWire-Signature"]
    checker = SignatureChecker(["", "PSKsecret"])  # the server, with SIGNALWIRE_SIGNING_KEY set
    request = dict(method="POST", scheme="https", host="h.example", path="/incoming-call", query_string="", form=form)
    assert checker.check_webhook(**request, headers=headers) is None
    assert "does not match" in checker.check_webhook(**request, headers=SIGNALWIRE.signer("other").headers(
        "https://h.example/incoming-call", form))
    assert SIGNALWIRE.signer(None) is None and SIGNALWIRE.signer("") is None

    stream = parse_twiml(SIGNALWIRE_TWIML)
    signer = SIGNALWIRE.signer("PSKsecret")
    assert SIGNALWIRE.websocket_headers(stream, signer) == {"Authorization": "Bearer tok-1"}
    assert SIGNALWIRE.websocket_headers(parse_twiml(SIGNALWIRE_TWIML.replace(' authBearerToken="tok-1"', "")),
                                        signer) == {}
    assert list(TWILIO.websocket_headers(stream, TWILIO.signer("token"))) == ["X-Twilio-Signature"]


# --- audio: L16 encode/decode, the script's frames, playback ------------------------------------------


def test_l16_is_little_endian_rounded_clipped_and_decodes_to_itself():
    samples = np.array([0.5, -0.5, 1.0, -1.0, 2.0, np.nan, 1 / 32768], dtype=np.float64)
    pcm = L16_16K.encode(samples)
    expected = [16384, -16384, 32767, -32768, 32767, 0, 1]
    assert pcm == b"".join(value.to_bytes(2, "little", signed=True) for value in expected)
    assert L16_24K.to_pcm16(pcm) == pcm
    with pytest.raises(ValueError, match="even"):
        L16_16K.to_pcm16(pcm[:-1])


def test_mulaw_format_is_the_repositorys_codec():
    from audio.codec import array_to_ulaw, ulaw_to_pcm16

    samples = np.linspace(-1, 1, 321, dtype=np.float32)
    assert MULAW_8K.encode(samples) == array_to_ulaw(samples)
    assert MULAW_8K.to_pcm16(bytes(range(256))) == ulaw_to_pcm16(bytes(range(256)))


def test_real_speech_goes_out_wideband_at_the_codec_rate():
    # sr_english.wav (44.1 kHz) sent as L16 keeps what lies above 4 kHz; the 8 kHz μ-law path cannot.
    source = read_audio(str(SPEECH))

    def energy_above_4khz(pcm: bytes, sample_rate: int) -> float:
        spectrum = np.abs(np.fft.rfft(np.frombuffer(pcm, "<i2").astype(np.float64))) ** 2
        frequencies = np.fft.rfftfreq(len(pcm) // 2, 1 / sample_rate)
        return spectrum[frequencies > 4000].sum() / spectrum.sum()

    from audio.resample import resample

    narrow = MULAW_8K.to_pcm16(source.encode(MULAW_8K))
    narrow_16k = resample(np.frombuffer(narrow, "<i2"), 8000, 16000).astype("<i2").tobytes()
    for media_format in (L16_16K, L16_24K):
        pcm = source.encode(media_format)
        assert abs(len(pcm) / media_format.bytes_per_second - source.duration_s) < 0.001
        assert np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float64) ** 2)) > 300  # speech
        assert energy_above_4khz(pcm, media_format.sample_rate) > 10 * energy_above_4khz(narrow_16k, 16000)


def test_scripts_frame_l16_audio_and_pad_with_pcm_silence():
    audio = bytes(range(1, 201)) * 5  # 1000 bytes of L16 16 kHz: 1 full frame + 360 bytes
    waiter = TurnWaiter(quiet_s=0.04, min_wait_s=0.0, timeout_s=1.0)
    script = CallerScript(parse_script(["x.wav", "silence:0.04"]), {"x.wav": audio}, waiter, wait_first=False,
                          media_format=L16_16K)
    ticks = []
    now_s = 0.0
    while (tick := script.next_tick(now_s, audio_queued=False)) is not None:
        ticks.append(tick)
        now_s += 0.02
    assert all(len(tick.payload) == 640 for tick in ticks)
    assert ticks[0].payload + ticks[1].payload[:360] == audio and ticks[1].payload[360:] == bytes(280)
    assert ticks[2].payload == ticks[-1].payload == bytes(640)  # silence is PCM zeros, not μ-law 0xFF
    assert script.spoken[0].duration_ms == 31  # 1000 bytes / 32 bytes per ms

    fork = ForkScript(parse_script(["x.wav", "callee:x.wav"], fork=True), {"x.wav": audio}, gap_s=0, tail_s=0.02,
                      media_format=L16_24K)
    fork_ticks = []
    while (tick := fork.next_tick()) is not None:
        fork_ticks.append(tick)
    # 1000 bytes fill 2 frames at 24 kHz: caller 2 ticks, callee 2 ticks, 1 tick of tail.
    padded = audio + bytes(2 * 960 - len(audio))
    assert [t.inbound for t in fork_ticks] == [padded[:960], padded[960:]] + [bytes(960)] * 3
    assert [t.outbound for t in fork_ticks] == [bytes(960)] * 2 + [padded[:960], padded[960:], bytes(960)]


class FakeSocket:
    """Collects what the stream sends (a fake, only for this unit test)."""

    def __init__(self):
        self.sent = []

    def send(self, text):
        self.sent.append(json.loads(text))


def test_a_signalwire_l16_stream_plays_the_servers_pcm_and_echoes_marks_its_way():
    from tools.twilio_sim.stream import SimulatedCall

    socket = FakeSocket()
    waiter = TurnWaiter(quiet_s=1.0, min_wait_s=0.0, timeout_s=5.0)
    messages = signalwire_messages(L16_16K)
    script = CallerScript([], {}, waiter, media_format=L16_16K)
    call = SimulatedCall(socket, messages, {}, script, waiter)
    call._t0 = 0.0
    reply = (np.sin(np.arange(800) / 5) * 8000).astype("<i2").tobytes()  # 50 ms of PCM16 at 16 kHz
    for text in (json.dumps({"event": "media", "streamSid": STREAM_SID,
                             "media": {"payload": base64.b64encode(reply).decode()}}),
                 json.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "end"}})):
        call._apply(parse_server_message(text, STREAM_SID, media_format=L16_16K), 0.0)
    call._play_tick(0.0)
    call._play_tick(0.02)
    assert socket.sent == []  # 1280 of the 1600 bytes played: the mark waits
    call._play_tick(0.04)
    call._play_tick(0.06)
    assert bytes(call.heard) == reply + bytes(4 * 640 - len(reply))  # played as sent, then PCM silence
    assert socket.sent == [{"event": "mark", "streamSid": STREAM_SID, "mark": {"name": "end"}}]
    assert call.replies.replies[0].ulaw_bytes == len(reply) and call.replies.replies[0].heard_ms == 20


def test_report_names_the_dialect_and_the_stream_format():
    outcome = CallOutcome(*SIGNALWIRE.new_sids(), parse_script(["q.wav"]), 20, dialect="signalwire",
                          media_format=L16_16K, twiml=parse_twiml(SIGNALWIRE_TWIML))
    report = build_report(outcome)
    assert report["dialect"] == "signalwire" and report["twiml"]["codec"] == "L16@24000h"
    assert report["media_format"] == {"encoding": "audio/x-L16", "sample_rate": 16000, "codec": "L16@16000h"}
    assert re.fullmatch(UUID_PATTERN, report["call_sid"])
    twilio = build_report(CallOutcome("CA1", "AC1", "MZ1", [], 20, media_format=MULAW_8K))
    assert twilio["dialect"] == "twilio" and twilio["media_format"]["encoding"] == "audio/x-mulaw"
