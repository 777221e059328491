"""Tests for audio.recording: per-call WAV files written as the call goes, on the media clock."""

import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.codec import array_to_ulaw, pcm16_to_ulaw, ulaw_to_array
from audio.errors import AudioFormatError
from audio.recording import FINALIZED_MARKER, CallRecorder, RecordingFile
from audio.stream_format import MULAW_8K, StreamFormat, stream_format
from tests.phone import CORPUS, phone_corpus, read_mono

REPO = Path(__file__).resolve().parents[1]
CHUNK_MS = 20
CHUNK_BYTES = 160  # 20 ms of μ-law at 8 kHz


def tone_ulaw(duration_ms: int, frequency_hz: float) -> bytes:
    """A μ-law sine tone at 8 kHz (amplitude 0.3)."""
    t = np.arange(duration_ms * 8) / 8000
    return array_to_ulaw(0.3 * np.sin(2 * np.pi * frequency_hz * t))


def add_chunks(recorder: CallRecorder, track: str, start_ms: int, ulaw: bytes) -> None:
    """Add ``ulaw`` as 20 ms chunks at their media timestamps, as the worker does."""
    for offset in range(0, len(ulaw), CHUNK_BYTES):
        recorder.add(track, start_ms + offset // 8, ulaw[offset : offset + CHUNK_BYTES])


def placed(total_ms: int, *parts: tuple[int, bytes]) -> bytes:
    """μ-law silence of ``total_ms`` with each (start_ms, ulaw) part written over it in order."""
    track = bytearray(b"\xff" * (total_ms * 8))
    for start_ms, ulaw in parts:
        track[start_ms * 8 : start_ms * 8 + len(ulaw)] = ulaw
    return bytes(track)


def read_files(directory: Path) -> dict[str, np.ndarray]:
    """Read the three files with soundfile, checking formats; int16 arrays (stereo: frames × 2)."""
    result = {}
    for kind, subtype, channels in (("inbound", "ULAW", 1), ("outbound", "ULAW", 1), ("stereo", "PCM_16", 2)):
        path = directory / f"{kind}.wav"
        info = sf.info(path)
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", subtype, 8000, channels)
        samples, _ = sf.read(path, dtype="int16", always_2d=True)
        result[kind] = samples[:, 0] if channels == 1 else samples
    return result


def assert_track(samples: np.ndarray, expected_ulaw: bytes) -> None:
    assert len(samples) == len(expected_ulaw)
    assert np.array_equal(samples, ulaw_to_array(expected_ulaw))


def test_bot_audio_placed_later_at_an_earlier_time(tmp_path):
    caller, bot = tone_ulaw(2000, 300), tone_ulaw(1000, 1200)
    recorder = CallRecorder(tmp_path / "call")
    add_chunks(recorder, "inbound", 0, caller[: 1500 * 8])
    recorder.flush()
    add_chunks(recorder, "outbound", 400, bot)  # its mark echoed after inbound reached 1500 ms
    add_chunks(recorder, "inbound", 1500, caller[1500 * 8 :])
    recorder.flush()
    files = read_files(tmp_path / "call")
    assert_track(files["inbound"], caller)
    assert_track(files["outbound"], placed(1400, (400, bot)))
    assert_track(files["stereo"][:, 0], caller)
    assert_track(files["stereo"][:, 1], placed(2000, (400, bot)))
    recorder.close()


def test_bot_reply_beyond_the_inbound_end_keeps_both_channels(tmp_path):
    caller, bot = tone_ulaw(3000, 250), tone_ulaw(1500, 900)
    recorder = CallRecorder(tmp_path / "call")
    add_chunks(recorder, "inbound", 0, caller[: 1000 * 8])
    recorder.flush()
    add_chunks(recorder, "outbound", 800, bot)  # 800..2300 ms, past the inbound end
    recorder.flush()
    add_chunks(recorder, "inbound", 1000, caller[1000 * 8 :])  # inbound continues under the reply
    files = {file.kind: file for file in recorder.close()}
    samples = read_files(tmp_path / "call")
    assert_track(samples["stereo"][:, 0], caller)
    assert_track(samples["stereo"][:, 1], placed(3000, (800, bot)))
    assert_track(samples["inbound"], caller)
    assert_track(samples["outbound"], placed(2300, (800, bot)))
    assert files["stereo"].duration_ms == 3000 and files["outbound"].duration_ms == 2300


def test_gaps_are_silence_and_later_audio_overwrites_earlier(tmp_path):
    first, second, third = tone_ulaw(100, 500), tone_ulaw(60, 700), tone_ulaw(40, 2000)
    recorder = CallRecorder(tmp_path / "call")
    recorder.add("inbound", 200, first)
    recorder.add("inbound", 500, second)  # gap 300..500 ms
    recorder.add("inbound", 240, third)  # added later, overlaps the first
    recorder.flush()
    samples = read_files(tmp_path / "call")
    expected = placed(560, (200, first), (500, second), (240, third))
    assert_track(samples["inbound"], expected)
    assert_track(samples["stereo"][:, 0], expected)
    assert not samples["stereo"][:, 1].any() and len(samples["outbound"]) == 0
    raw = (tmp_path / "call" / "inbound.wav").read_bytes()
    assert raw[58 : 58 + 200 * 8] == b"\xff" * 1600  # μ-law silence code in the file itself


def test_files_valid_after_every_flush(tmp_path):
    caller = tone_ulaw(1000, 440)
    recorder = CallRecorder(tmp_path / "call")
    read_files(tmp_path / "call")  # valid (empty) from the start
    for second in range(1, 4):
        add_chunks(recorder, "inbound", (second - 1) * 1000, caller)
        recorder.flush()
        samples = read_files(tmp_path / "call")
        assert_track(samples["inbound"], caller * second)
        assert len(samples["stereo"]) == second * 8000
    recorder.close()


def test_close_writes_marker_and_describes_files(tmp_path):
    directory = tmp_path / "nested" / "call"
    recorder = CallRecorder(directory)
    assert directory.is_dir() and not recorder.finalized
    add_chunks(recorder, "inbound", 0, tone_ulaw(1000, 300))
    add_chunks(recorder, "outbound", 200, tone_ulaw(500, 600))
    files = recorder.close()
    assert recorder.finalized and (directory / FINALIZED_MARKER).exists()
    assert [file.kind for file in files] == ["inbound", "outbound", "stereo"]
    assert files == [
        RecordingFile("inbound", directory / "inbound.wav", 1000, 58 + 8000),
        RecordingFile("outbound", directory / "outbound.wav", 700, 58 + 5600),
        RecordingFile("stereo", directory / "stereo.wav", 1000, 44 + 32000),
    ]
    assert all(file.size_bytes == file.path.stat().st_size for file in files)
    recorder.add("inbound", 1000, tone_ulaw(100, 300))  # after close: ignored
    assert recorder.close() == files
    assert CallRecorder.recover(directory) == files  # finalized: only described
    assert len(read_files(directory)["inbound"]) == 8000


def test_add_validates_track_and_time(tmp_path):
    recorder = CallRecorder(tmp_path / "call")
    with pytest.raises(ValueError):
        recorder.add("both", 0, b"\xff")
    with pytest.raises(ValueError):
        recorder.add("inbound", -20, b"\xff")
    recorder.add("outbound", 0, b"")  # empty chunks are harmless
    assert all(file.duration_ms == 0 for file in recorder.close())


def test_add_from_another_thread_while_flushing(tmp_path):
    """add() on one thread, flush() on another, no lock: nothing is lost or misplaced."""
    caller, bot = tone_ulaw(6000, 350), tone_ulaw(3000, 800)
    recorder = CallRecorder(tmp_path / "call")

    def produce():
        add_chunks(recorder, "inbound", 0, caller[: 4000 * 8])
        add_chunks(recorder, "outbound", 1000, bot)
        add_chunks(recorder, "inbound", 4000, caller[4000 * 8 :])

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive():
        recorder.flush()
    producer.join()
    recorder.close()
    samples = read_files(tmp_path / "call")
    assert_track(samples["inbound"], caller)
    assert_track(samples["stereo"][:, 1], placed(6000, (1000, bot)))


CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from audio.recording import CallRecorder
caller, bot = bytes.fromhex({caller!r}), bytes.fromhex({bot!r})
recorder = CallRecorder(Path({directory!r}))
for i in range(0, 8000, 160):  # 1 s of caller audio
    recorder.add("inbound", i // 8, caller[i:i + 160])
for i in range(0, len(bot), 160):  # the bot's reply, placed at 300 ms
    recorder.add("outbound", 300 + i // 8, bot[i:i + 160])
recorder.flush()
for i in range(8000, len(caller), 160):  # more, never flushed
    recorder.add("inbound", i // 8, caller[i:i + 160])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_recover_after_sigkill_keeps_everything_up_to_the_last_flush(tmp_path):
    directory = tmp_path / "call"
    caller, bot = tone_ulaw(1500, 330), tone_ulaw(400, 950)
    script = CRASH_SCRIPT.format(repo=str(REPO), caller=caller.hex(), bot=bot.hex(), directory=str(directory))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert not (directory / FINALIZED_MARKER).exists()
    files = {file.kind: file for file in CallRecorder.recover(directory)}
    assert (directory / FINALIZED_MARKER).exists()
    samples = read_files(directory)
    flushed = 8000  # samples up to the flush
    assert len(samples["inbound"]) >= flushed and files["inbound"].duration_ms >= 1000
    assert_track(samples["inbound"][:flushed], caller[:flushed])
    assert_track(samples["outbound"], placed(700, (300, bot)))
    assert_track(samples["stereo"][:flushed, 0], caller[:flushed])
    assert_track(samples["stereo"][:flushed, 1], placed(1000, (300, bot)))
    assert files["stereo"].size_bytes == (directory / "stereo.wav").stat().st_size


def test_recover_rewrites_a_file_cut_inside_its_header(tmp_path):
    directory = tmp_path / "call"
    recorder = CallRecorder(directory)
    add_chunks(recorder, "inbound", 0, tone_ulaw(200, 300))
    recorder.flush()
    (directory / "outbound.wav").write_bytes(b"RIFF")  # as if killed while creating it
    files = {file.kind: file for file in CallRecorder.recover(directory)}
    assert files["inbound"].duration_ms == 200 and files["outbound"].duration_ms == 0
    assert sf.info(directory / "outbound.wav").subtype == "ULAW"


def test_real_speech_in_20ms_chunks_comes_back_identical(tmp_path):
    """jfk.flac as the caller and sr_english.wav as the bot, through the phone chain."""
    caller_pcm = np.frombuffer(phone_corpus("jfk.flac"), dtype="<i2")
    bot_pcm = np.frombuffer(phone_corpus("sr_english.wav"), dtype="<i2")
    caller, bot = pcm16_to_ulaw(caller_pcm.tobytes()), pcm16_to_ulaw(bot_pcm.tobytes())
    bot_start_ms = 3000
    recorder = CallRecorder(tmp_path / "call")
    for index, offset in enumerate(range(0, len(caller), CHUNK_BYTES)):
        recorder.add("inbound", offset // 8, caller[offset : offset + CHUNK_BYTES])
        if offset // 8 == bot_start_ms + 1500:  # the reply's mark echoes 1.5 s after it started
            add_chunks(recorder, "outbound", bot_start_ms, bot)
        if index % 50 == 49:
            recorder.flush()  # once a second, as the worker does
    recorder.close()
    samples = read_files(tmp_path / "call")
    assert np.array_equal(samples["inbound"], caller_pcm)  # the μ-law round trip is exact
    assert np.array_equal(samples["stereo"][:, 0], caller_pcm)
    right = np.zeros(len(caller_pcm), dtype=np.int16)
    right[bot_start_ms * 8 : bot_start_ms * 8 + len(bot_pcm)] = bot_pcm
    assert np.array_equal(samples["stereo"][:, 1], right)
    assert np.array_equal(samples["outbound"][bot_start_ms * 8 :], bot_pcm)


# --- SignalWire L16 streams (protocol.md §9): PCM16 files at the wire rate ----------------------------


def l16_tone(fmt: StreamFormat, duration_ms: int, frequency_hz: float) -> bytes:
    """An L16 sine tone at the format's rate (amplitude 0.3)."""
    t = np.arange(duration_ms * fmt.sample_rate // 1000) / fmt.sample_rate
    return fmt.encode(0.3 * np.sin(2 * np.pi * frequency_hz * t), fmt.sample_rate)


def add_l16_chunks(recorder: CallRecorder, track: str, start_ms: int, wire: bytes) -> None:
    """Add L16 as 20 ms chunks at their media timestamps."""
    per_ms = recorder.stream_format.bytes_per_ms
    for offset in range(0, len(wire), 20 * per_ms):
        recorder.add(track, start_ms + offset // per_ms, wire[offset : offset + 20 * per_ms])


def read_l16_files(directory: Path, rate: int) -> dict[str, np.ndarray]:
    """Read the three files of an L16 call, checking every one is PCM16 at ``rate``."""
    result = {}
    for kind, channels in (("inbound", 1), ("outbound", 1), ("stereo", 2)):
        info = sf.info(directory / f"{kind}.wav")
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", rate, channels)
        samples, _ = sf.read(directory / f"{kind}.wav", dtype="int16", always_2d=True)
        result[kind] = samples[:, 0] if channels == 1 else samples
    return result


def as_array(wire: bytes) -> np.ndarray:
    return np.frombuffer(wire, dtype="<i2")


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_l16_call_is_recorded_as_pcm16_at_the_wire_rate(tmp_path, rate):
    fmt = stream_format("audio/x-L16", rate, 1)
    caller = fmt.encode(*read_mono(CORPUS / "sr_english.wav"))  # real speech, 2.7 s
    bot = l16_tone(fmt, 800, 700)
    recorder = CallRecorder(tmp_path / "call", stream_format=fmt)
    assert recorder.sample_rate == rate
    add_l16_chunks(recorder, "inbound", 0, caller[: 1000 * fmt.bytes_per_ms])
    recorder.flush()
    add_l16_chunks(recorder, "outbound", 500, bot)  # placed once its mark echoes
    add_l16_chunks(recorder, "inbound", 1000, caller[1000 * fmt.bytes_per_ms :])
    files = {file.kind: file for file in recorder.close()}
    samples = read_l16_files(tmp_path / "call", rate)
    caller_ms = len(caller) // fmt.bytes_per_ms
    assert np.array_equal(samples["inbound"], as_array(caller))  # PCM16 kept bit for bit
    assert np.array_equal(samples["stereo"][:, 0], as_array(caller))
    right = np.zeros(len(as_array(caller)), dtype=np.int16)
    right[rate // 2 : rate // 2 + len(as_array(bot))] = as_array(bot)
    assert np.array_equal(samples["stereo"][:, 1], right)
    assert np.array_equal(samples["outbound"][rate // 2 :], as_array(bot)) and not samples["outbound"][: rate // 2].any()
    assert files["inbound"].duration_ms == caller_ms and files["outbound"].duration_ms == 1300
    assert files["inbound"].size_bytes == 44 + len(caller)


def test_odd_l16_chunk_loses_only_its_last_byte(tmp_path):
    fmt = stream_format("audio/x-L16", 16000, 1)
    tone = l16_tone(fmt, 40, 500)
    recorder = CallRecorder(tmp_path / "call", stream_format=fmt)
    recorder.add("inbound", 0, tone[:641])  # a torn sample at the end
    recorder.add("inbound", 20, tone[640:])
    recorder.close()
    assert np.array_equal(read_l16_files(tmp_path / "call", 16000)["inbound"], as_array(tone))


def test_recorder_format_arguments(tmp_path):
    assert CallRecorder(tmp_path / "a").stream_format is MULAW_8K
    assert CallRecorder(tmp_path / "b", sample_rate=8000).sample_rate == 8000
    with pytest.raises(AudioFormatError):
        CallRecorder(tmp_path / "c", stream_format=stream_format("audio/x-L16", 24000), sample_rate=8000)


L16_CRASH_SCRIPT = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from audio.recording import CallRecorder
from audio.stream_format import stream_format
import numpy as np
fmt = stream_format("audio/x-L16", 24000, 1)
caller = fmt.encode(0.3 * np.sin(2 * np.pi * 330 * np.arange(36000) / 24000), 24000)  # l16_tone(fmt, 1500, 330)
recorder = CallRecorder(Path({directory!r}), stream_format=fmt)
for i in range(0, 48000, 960):  # 1 s of caller audio
    recorder.add("inbound", i // 48, caller[i:i + 960])
recorder.flush()
for i in range(48000, len(caller), 960):  # more, never flushed
    recorder.add("inbound", i // 48, caller[i:i + 960])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_l16_recover_after_sigkill(tmp_path):
    directory = tmp_path / "call"
    fmt = stream_format("audio/x-L16", 24000, 1)
    caller = l16_tone(fmt, 1500, 330)
    script = L16_CRASH_SCRIPT.format(repo=str(REPO), directory=str(directory))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    files = {file.kind: file for file in CallRecorder.recover(directory)}
    assert (directory / FINALIZED_MARKER).exists()
    samples = read_l16_files(directory, 24000)
    flushed = 24000  # samples up to the flush
    assert len(samples["inbound"]) >= flushed and files["inbound"].duration_ms >= 1000
    assert np.array_equal(samples["inbound"][:flushed], as_array(caller)[:flushed])
    assert np.array_equal(samples["stereo"][:flushed, 0], as_array(caller)[:flushed])


def test_l16_recover_rewrites_a_cut_file_in_the_calls_format(tmp_path):
    directory = tmp_path / "call"
    fmt = stream_format("audio/x-L16", 16000, 1)
    recorder = CallRecorder(directory, stream_format=fmt)
    add_l16_chunks(recorder, "inbound", 0, l16_tone(fmt, 200, 300))
    recorder.flush()
    (directory / "outbound.wav").write_bytes(b"RIFF")  # as if killed while creating it
    (directory / "stereo.wav").write_bytes(b"RIFF\x00")
    files = {file.kind: file for file in CallRecorder.recover(directory)}
    assert files["inbound"].duration_ms == 200 and files["outbound"].duration_ms == 0
    assert files["stereo"].duration_ms == 0
    for kind, channels in (("outbound", 1), ("stereo", 2)):
        info = sf.info(directory / f"{kind}.wav")
        assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", 16000, channels)
