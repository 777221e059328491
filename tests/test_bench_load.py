"""The load benchmark's pure helpers (bench/load_client.py, bench/load.py): message text, WebSocket
framing, lost-frame and underrun accounting, fork plans, log and /proc parsing."""

import base64
import json
import os
from pathlib import Path

import pytest
from wsproto.frame_protocol import FrameProtocol, Opcode

from audio.codec import ulaw_to_pcm16
from bench.load import (
    load_utterances, metric, metric_delta, proc_cpu_ticks, proc_memory_kb, scan_log, split_at_long_pause,
)
from bench.load_client import (
    SILENCE_FRAME, UnderrunMeter, build_fork_plan, client_frame, distinguishable, fast_media, fork_schedule,
    frames_lost, percentile,
)
from tools.twilio_sim.audio_files import load_audio_ulaw
from tools.twilio_sim.messages import TwilioMessages

DATA = Path(__file__).parent / "data"


def server_side_frames(data: bytes):
    """Parse bytes as a server does (masked client frames required)."""
    protocol = FrameProtocol(client=False, extensions=[])
    protocol.receive_bytes(data)
    return list(protocol.received_frames())


def test_fast_media_is_the_same_text_as_twilio_messages():
    reference = TwilioMessages("MZ" + "1" * 32, "AC" + "2" * 32, "CA" + "3" * 32, first_timestamp_ms=52)
    fast = TwilioMessages("MZ" + "1" * 32, "AC" + "2" * 32, "CA" + "3" * 32, first_timestamp_ms=52)
    reference.start({}, ("inbound", "outbound"))
    fast.start({}, ("inbound", "outbound"))
    for index, track in enumerate(["inbound", "outbound", "inbound", "outbound", "inbound"]):
        ulaw = bytes([index]) * 160
        expected = reference.media(ulaw, track)
        got = fast_media(fast, base64.b64encode(ulaw).decode(), track)
        assert got == expected
    assert fast.mark("m") == reference.mark("m")  # counters advanced alike


@pytest.mark.parametrize("length", [0, 125, 126, 300, 65535, 65536, 70000])
def test_client_frame_is_a_masked_text_frame_a_server_accepts(length):
    text = "é" * (length // 2) + "a" * (length % 2)
    frame = client_frame(text)
    assert frame[1] & 0x80  # masked, as RFC 6455 requires of a client
    (parsed,) = server_side_frames(frame)
    assert parsed.opcode is Opcode.TEXT and parsed.message_finished
    assert parsed.payload == text


def test_client_frames_back_to_back_parse_as_separate_messages():
    frames = server_side_frames(client_frame("one") + client_frame("two" * 100))
    assert [f.payload for f in frames] == ["one", "two" * 100]


def test_distinguishable_keeps_the_samples_and_drops_the_gap_fill_byte():
    ulaw = bytes(range(256)) * 2
    changed = distinguishable(ulaw)
    assert 0xFF not in changed
    assert ulaw_to_pcm16(changed) == ulaw_to_pcm16(ulaw)
    assert SILENCE_FRAME == distinguishable(b"\xff" * 160)


def test_frames_lost_counts_gap_filled_missing_and_misplaced_frames():
    sent = b"".join(bytes([0x10 + i]) * 160 for i in range(5))
    start = 160  # first timestamp 20 ms
    recorded = b"\xff" * start + sent
    assert frames_lost(sent, recorded, start) == 0
    with_gap = recorded[:start + 320] + b"\xff" * 160 + recorded[start + 480:]
    assert frames_lost(sent, with_gap, start) == 1
    assert frames_lost(sent, recorded[:start + 400], start) == 3  # frame 2 cut short, 3 and 4 missing
    assert frames_lost(sent, b"\xff" * 80 + recorded, start) == 5  # everything 10 ms late


def test_underrun_meter_counts_only_gaps_inside_a_reply():
    meter = UnderrunMeter()
    meter.on_tick(0.00, 0, caller_speaking=True)
    meter.on_tick(0.02, 0, caller_speaking=False)  # waiting: no reply yet, not a gap
    meter.on_media(0.05)
    meter.on_tick(0.06, 160, caller_speaking=False)
    meter.on_tick(0.08, 80, caller_speaking=False)  # ran dry 10 ms into this tick: at 0.09
    meter.on_tick(0.10, 0, caller_speaking=False)
    meter.on_media(0.15)  # the next sentence, 60 ms late
    assert meter.gaps_s == [pytest.approx(0.06)]
    meter.on_tick(0.16, 160, caller_speaking=False)
    meter.on_tick(0.18, 0, caller_speaking=False)  # the reply is over ...
    meter.on_tick(0.20, 0, caller_speaking=True)  # ... and the caller speaks: no underrun
    meter.on_media(0.30)  # the next reply starts: not a gap either
    assert len(meter.gaps_s) == 1


def test_underrun_meter_ignores_a_clear_and_audio_arriving_before_the_buffer_ran_dry():
    meter = UnderrunMeter()
    meter.on_media(0.0)
    meter.on_tick(0.02, 100, caller_speaking=False)  # dry at 0.0325
    meter.on_media(0.03)  # arrived in time
    meter.on_tick(0.04, 0, caller_speaking=False)
    meter.on_clear()
    meter.on_media(0.5)
    assert meter.gaps_s == []


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.95) == 95
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.95) == 7
    assert percentile([], 0.5) is None


def test_fork_schedule_lays_out_utterances_and_pauses():
    short, long = b"\x01" * 400, b"\x02" * 1000  # 3 and 7 frames (padded)
    frames, spoken = fork_schedule([short, long], ticks=25, first_pause_ticks=2, pause_ticks=[4], rotation=1)
    assert len(frames) == 25
    assert frames[:2] == [SILENCE_FRAME] * 2
    assert spoken == [(2, 9), (13, 16)]  # long first (rotation 1), then short; the third one does not fit
    assert frames[2] == b"\x02" * 160 and frames[13] == b"\x01" * 160
    assert frames[15] == b"\x01" * 80 + b"\x7f" * 80  # padding is distinguishable silence too
    assert all(frame == SILENCE_FRAME for frame in frames[9:13])
    assert all(len(frame) == 160 for frame in frames)


def test_build_fork_plan_makes_twilio_messages_in_bursts():
    ticks = 7
    inbound = [bytes([i + 1]) * 160 for i in range(ticks)]
    outbound = [SILENCE_FRAME] * ticks
    plan = build_fork_plan(("inbound", "outbound"), {"inbound": inbound, "outbound": outbound}, burst_ticks=3)
    assert plan.ticks == ticks and len(plan.bursts) == 3
    messages = [json.loads(f.payload) for burst in plan.bursts for f in server_side_frames(burst)]
    assert len(messages) == 2 * ticks
    assert [m["sequenceNumber"] for m in messages] == [str(n) for n in range(2, 2 + 2 * ticks)]  # 1 is start
    assert [m["media"]["track"] for m in messages[:4]] == ["inbound", "outbound", "inbound", "outbound"]
    assert [m["media"]["timestamp"] for m in messages[:4]] == ["20", "20", "40", "40"]
    assert {m["streamSid"] for m in messages} == {plan.stream_sid}
    assert base64.b64decode(messages[4]["media"]["payload"]) == inbound[2]
    assert len(server_side_frames(plan.bursts[-1])) == 2  # 7 ticks = 3 + 3 + 1
    (stop,) = server_side_frames(plan.stop_frame)
    assert json.loads(stop.payload)["sequenceNumber"] == str(2 + 2 * ticks)


def test_build_fork_plan_refuses_bad_input():
    with pytest.raises(ValueError):
        build_fork_plan(("inbound",), {"inbound": [SILENCE_FRAME]}, burst_ticks=0)
    with pytest.raises(ValueError):
        build_fork_plan(("inbound", "outbound"), {"inbound": [SILENCE_FRAME], "outbound": []}, burst_ticks=1)


def test_split_at_long_pause_cuts_real_speech_only_at_long_pauses():
    ulaw = load_audio_ulaw(str(DATA / "sr_english.wav"))  # "one two three", about 0.5 s between words
    assert split_at_long_pause(ulaw, min_pause_ms=700) == [ulaw]
    parts = split_at_long_pause(ulaw, min_pause_ms=400)
    assert len(parts) == 3 and b"".join(parts) == ulaw


def test_load_utterances_from_a_corpus_folder(tmp_path):
    (tmp_path / "jfk.flac").symlink_to(DATA / "sr_english.wav")  # stands in: no long pause, one part
    (tmp_path / "sr_english.wav").symlink_to(DATA / "sr_english.wav")
    utterances = load_utterances(tmp_path)
    assert [name for name, _ in utterances] == ["jfk.flac", "sr_english.wav"]
    assert all(0xFF not in ulaw for _, ulaw in utterances)


def test_scan_log_counts_warnings_synthesis_and_what_blocked_the_hub(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(
        "2026-01-01 00:00:00,000 INFO runtime.call_worker: [CAab12] reply 1: sentence 1/2, 1200 ms of audio "
        "synthesized in 300 ms\n"
        "2026-01-01 00:00:00,000 INFO runtime.call_worker: [CAab12] reply 1: sentence 2/2, 800 ms of audio "
        "synthesized in 200 ms\n"
        "2026-01-01 00:00:01,000 WARNING runtime.hub_monitor: gevent hub blocked for 120 ms (threshold 20 ms); "
        "blocked in (innermost last):\n"
        '  File "/x/gevent/hub.py", line 647, in run\n'
        "    loop.run()\n"
        '  File "/x/audio/vad.py", line 40, in is_speech\n'
        "    return self._vad.is_speech(frame)\n"
        '  File "<string>", line 2, in __init__\n'
        "2026-01-01 00:00:02,000 WARNING runtime.call_worker: [CAab12] a send took over 5 s\n"
        "2026-01-01 00:00:03,000 WARNING runtime.call_worker: [CAcd34] a send took over 5 s\n"
    )
    result = scan_log(log)
    assert result["synthesized_ms"] == {"CAab12": 2000}
    assert result["blocked_in"] == {"audio/vad.py, line 40, in is_speech": 1}
    assert result["warnings"]["WARNING a send took over N s"] == 2


def test_metric_helpers_read_scraped_samples():
    before = {("callstream_media_messages_total", (("direction", "out"),)): 10.0}
    after = {("callstream_media_messages_total", (("direction", "out"),)): 25.0,
             ("callstream_hub_block_max_seconds", ()): 0.07}
    assert metric(after, "callstream_hub_block_max_seconds") == 0.07
    assert metric_delta(before, after, "callstream_media_messages_total", direction="out") == 15.0
    assert metric_delta(before, after, "callstream_frames_lost_total") is None
    assert metric(None, "anything") is None


def test_proc_readers_on_this_process():
    busy = sum(range(200_000))  # some CPU so the counters are not all zero
    process_ticks, main_ticks = proc_cpu_ticks(os.getpid())
    assert busy and process_ticks >= main_ticks >= 0
    memory = proc_memory_kb(os.getpid())
    assert memory["VmHWM"] >= memory["VmRSS"] > 1000


def test_fork_schedule_without_utterances_is_all_silence():
    frames, spoken = fork_schedule([], ticks=10, first_pause_ticks=3, pause_ticks=[4], rotation=0)
    assert frames == [SILENCE_FRAME] * 10 and spoken == []
