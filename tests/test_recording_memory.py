"""Recordings are streamed, and the waveform is drawn once and stored: a page view or a download of a
one-hour call costs a bounded amount of memory (tracemalloc: Python and numpy allocations, all threads).
"""

import io
import tracemalloc
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import soundfile as sf

from app import create_app
from audio.recording import RecordingFile
from audio.waveform import ENVELOPE_COLUMNS, Envelope, envelope_of, envelope_of_wav, envelope_svg, waveform_svg
from runtime.call_keeper import file_recordings
from store.recording_io import file_reader

RATE = 8000
MB = 1_000_000
PEAK_LIMIT_BYTES = 20 * MB


def write_stereo_wav(path, seconds, seed=0):
    """A PCM16 stereo WAV of noise bursts, written a minute at a time (the test itself stays small)."""
    rng = np.random.default_rng(seed)
    minute = (rng.standard_normal((60 * RATE, 2)) * 3000).astype(np.int16)
    minute[: 20 * RATE, 1] = 0  # the bot is quiet for the first 20 s of each minute
    with sf.SoundFile(path, "w", samplerate=RATE, channels=2, subtype="PCM_16", format="WAV") as wav:
        for _ in range(int(seconds // 60)):
            wav.write(minute)
        wav.write(minute[: int(seconds % 60 * RATE)])
    return path


@pytest.fixture
def app(app_settings):
    return create_app(app_settings)


@pytest.fixture
def store(app):
    return app.extensions["callstream"].store


def save_call(store, call_sid, seconds, **recording):
    store.save_call({"call_sid": call_sid, "mode": "conversation", "started_at": "2026-11-21T07:00:00.000+00:00",
                     "ended_at": "2026-11-21T08:00:00.000+00:00",
                     "turns": [{"speaker": "caller" if i % 2 else "bot", "text": f"turn {i}", "start_ms": i * 30_000,
                                "end_ms": i * 30_000 + 20_000} for i in range(int(seconds // 30))]})
    store.save_recording(call_sid, "stereo", duration_ms=int(seconds * 1000), **recording)


def peak_bytes(action):
    """Peak of traced memory while ``action()`` runs, above what was allocated before it."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        return tracemalloc.get_traced_memory()[1] - before, result
    finally:
        tracemalloc.stop()


def download(client, url):
    """GET a download and read its body as a client would, without keeping it: (status, headers, bytes, streamed)."""
    response = client.get(url)
    size = sum(len(chunk) for chunk in response.iter_encoded())
    return response.status_code, response.headers, size, response.is_streamed


# -- a one-hour call -------------------------------------------------------------------------------


@pytest.fixture
def hour_call(tmp_path, store):
    path = write_stereo_wav(tmp_path / "stereo.wav", 3600)
    save_call(store, "CA896c55cc5e46fab38ce9f51ebf7bfcd3", 3600, size_bytes=path.stat().st_size, path=str(path))
    return path


def test_page_view_of_a_one_hour_call_draws_it_in_bounded_memory_and_stores_it(app, store, hour_call):
    client = app.test_client()
    assert store.waveform("CA896c55cc5e46fab38ce9f51ebf7bfcd3") is None  # filed before waveforms were stored: drawn at the first view
    peak, response = peak_bytes(lambda: client.get("/calls/CA896c55cc5e46fab38ce9f51ebf7bfcd3"))
    print(f"\nfirst view of a 1 h call page ({hour_call.stat().st_size / MB:.0f} MB stereo WAV): peak +{peak / MB:.1f} MB")
    assert response.status_code == 200 and b'class="envelope"' in response.data
    assert peak < PEAK_LIMIT_BYTES  # decoding it whole: +230 MB (int16 samples + the file's bytes)
    assert Envelope.from_json(store.waveform("CA896c55cc5e46fab38ce9f51ebf7bfcd3")).num_frames == 3600 * RATE

    hour_call.unlink()  # later views draw the stored envelope: the recording is not read again
    peak, again = peak_bytes(lambda: client.get("/calls/CA896c55cc5e46fab38ce9f51ebf7bfcd3"))
    print(f"later views: peak +{peak / MB:.1f} MB")
    svg = lambda html: html[html.index(b"<svg"):html.index(b"</svg>")]  # noqa: E731
    assert again.status_code == 200 and svg(again.data) == svg(response.data)
    assert peak < 5 * MB


def test_download_of_a_one_hour_recording_is_streamed_from_the_folder(app, hour_call):
    client = app.test_client()
    peak, (status, headers, size, streamed) = peak_bytes(lambda: download(client, "/api/calls/CA896c55cc5e46fab38ce9f51ebf7bfcd3/recording.wav"))
    print(f"\ndownload of a 1 h stereo WAV ({size / MB:.0f} MB) from the folder: peak +{peak / MB:.1f} MB")
    assert status == 200 and streamed and headers["Content-Type"] == "audio/wav"
    assert int(headers["Content-Length"]) == size == hour_call.stat().st_size
    assert peak < PEAK_LIMIT_BYTES


def test_download_from_the_database_reads_the_blob_in_slices(app, store, tmp_path):
    wav = write_stereo_wav(tmp_path / "ten-minutes.wav", 600).read_bytes()  # 19 MB
    save_call(store, "CAd77d5e503ad1439f585ac494268b351b", 600, size_bytes=len(wav), data=wav)
    client = app.test_client()
    peak, (status, headers, size, streamed) = peak_bytes(lambda: download(client, "/api/calls/CAd77d5e503ad1439f585ac494268b351b/recording.wav"))
    print(f"\ndownload of a 10 min stereo WAV ({size / MB:.0f} MB) from the database: peak +{peak / MB:.1f} MB")
    assert status == 200 and streamed and int(headers["Content-Length"]) == size == len(wav)
    assert peak < 5 * MB  # the blob is 19 MB
    assert client.get("/api/calls/CAd77d5e503ad1439f585ac494268b351b/recording.wav").data == wav  # the same bytes, in order
    peak, page = peak_bytes(lambda: client.get("/calls/CAd77d5e503ad1439f585ac494268b351b"))  # the waveform, decoded from slices of the blob
    assert page.status_code == 200 and b'class="envelope"' in page.data and peak < 5 * MB


def test_a_recording_reader_seeks_and_reads_like_a_file(store, tmp_path):
    data = bytes(range(256)) * 5000
    store.save_recording("CAecae13117d6f0584c25a9da6c8f8415e", "inbound", duration_ms=1, size_bytes=len(data), data=data)
    (tmp_path / "f.bin").write_bytes(data)
    for reader in (store.recording_reader("CAecae13117d6f0584c25a9da6c8f8415e", "inbound"), file_reader(tmp_path / "f.bin")):
        with reader:
            assert reader.size_bytes == len(data)
            assert reader.read(10) == data[:10]
            reader.seek(-7, io.SEEK_END)
            assert reader.read() == data[-7:] and reader.read(5) == b""
            reader.seek(1000)
            assert b"".join(reader.chunks(4096)) == data[1000:]
    assert store.recording_reader("CAecae13117d6f0584c25a9da6c8f8415e", "stereo") is None and store.recording_reader("CA4101bef8794fed986e95dfb54850c68b", "inbound") is None


# -- the envelope -------------------------------------------------------------------------------------


def test_the_streamed_envelope_is_the_in_memory_one_and_draws_the_same_picture(tmp_path):
    path = write_stereo_wav(tmp_path / "s.wav", 75.3, seed=3)
    samples, _ = sf.read(path, dtype="int16", always_2d=True)
    streamed = envelope_of_wav(str(path), block_frames=777)  # blocks that do not line up with the columns
    whole = envelope_of(samples, RATE)
    assert streamed.run_frames == whole.run_frames and streamed.num_frames == len(samples)
    for lane in (0, 1):
        assert np.array_equal(streamed.highs[lane], whole.highs[lane]) and np.array_equal(streamed.lows[lane], whole.lows[lane])
    assert len(streamed.highs[0]) <= ENVELOPE_COLUMNS
    turns = [{"speaker": "caller", "text": "hi", "start_ms": 1000, "end_ms": 2000}]
    assert envelope_svg(streamed, turns) == envelope_svg(whole, turns)
    in_memory = waveform_svg(samples, RATE, turns)  # the old way: the same picture, give or take a column of rounding
    assert abs(in_memory.count(" L") - envelope_svg(streamed, turns).count(" L")) <= 0.01 * in_memory.count(" L")
    restored = Envelope.from_json(streamed.to_json())
    assert envelope_svg(restored, turns) == envelope_svg(streamed, turns)
    ET.fromstring(envelope_svg(restored, turns))
    with file_reader(path) as reader:  # a file object (the database reader's interface) decodes the same
        assert np.array_equal(envelope_of_wav(reader).highs[1], streamed.highs[1])


def test_a_mono_file_is_drawn_on_the_callers_lane(tmp_path):
    mono = (np.sin(np.arange(RATE) / 5) * 8000).astype(np.int16)
    sf.write(tmp_path / "m.wav", mono, RATE, subtype="PCM_16")
    envelope = envelope_of_wav(str(tmp_path / "m.wav"))
    assert envelope.highs[0].max() > 7000 and envelope.highs[1].max() == 0 == envelope.lows[1].min()


@pytest.mark.parametrize("bad", [None, {}, {"version": 2}, {"version": 1, "sample_rate": 8000, "num_frames": 10,
                                 "run_frames": 5, "highs": [[1], [1]], "lows": [[1], [1]]}])
def test_a_bad_stored_envelope_is_refused(bad):
    from audio.errors import AudioFormatError

    with pytest.raises(AudioFormatError):
        Envelope.from_json(bad)


def test_filing_the_recordings_stores_the_waveform_before_database_mode_removes_the_files(app, store, tmp_path):
    folder = tmp_path / "recordings" / "CAe92c73ee75f6fddeffd02823f0eddffb"
    folder.mkdir(parents=True)
    stereo = write_stereo_wav(folder / "stereo.wav", 12)
    save_call(store, "CAe92c73ee75f6fddeffd02823f0eddffb", 12, size_bytes=stereo.stat().st_size, path=str(stereo))
    file_recordings(store, "CAe92c73ee75f6fddeffd02823f0eddffb", [RecordingFile("stereo", stereo, 12_000, stereo.stat().st_size)], in_database=True)
    assert not folder.exists()
    stored = Envelope.from_json(store.waveform("CAe92c73ee75f6fddeffd02823f0eddffb"))
    assert stored.num_frames == 12 * RATE
    html = app.test_client().get("/calls/CAe92c73ee75f6fddeffd02823f0eddffb").data
    assert b'class="envelope"' in html


def test_filing_goes_on_when_the_stereo_file_does_not_decode(store, tmp_path):
    bad = tmp_path / "stereo.wav"
    bad.write_bytes(b"RIFF....not a wave")
    file_recordings(store, "CAbae60998ffe4923b131e3d6e4c19993e", [RecordingFile("stereo", bad, 0, bad.stat().st_size)], in_database=False)
    assert store.recording("CAbae60998ffe4923b131e3d6e4c19993e", "stereo") is not None and store.waveform("CAbae60998ffe4923b131e3d6e4c19993e") is None
