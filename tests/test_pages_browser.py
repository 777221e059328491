"""The call page in a real headless Chromium, served by the real server on a real call store.

A call is stored (SQLite in a temp folder) with a stereo recording made from real speech:
``tests/data/sr_english.wav`` ("one two three") resampled to 8 kHz and μ-law round-tripped on
the left channel, a synthetic voiced reply on the right. The server runs as a subprocess on a
free port; Chromium (Debian's ``chromium``) renders ``/calls/<sid>`` with ``--dump-dom`` and
``--screenshot``, and the PNG is decoded here (zlib + numpy) to check that the transcript
block, the player and the waveform are drawn.
"""

import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio.codec import array_to_ulaw, ulaw_to_array
from audio.resample import resample
from audio.waveform import format_clock
from store import CallStore, make_engine, upgrade_schema
from tests.test_pages import Page

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="/usr/bin/chromium is missing: apt-get install -y chromium (Debian package)"
)

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "data" / "sr_english.wav"
RATE = 8000
CALL_SID = "CAbrowser0000000000000000000000001"
SPEECH_AT_MS = 1000
REPLY_AT_MS = 4500
WINDOW = (1200, 1600)
# Colours the page's CSS and the SVG use (templates/call.html, templates/base.html, audio/waveform.py).
TRANSCRIPT_BG = (0xFE, 0xF3, 0xC7)
PLAYER_BG = (0xDB, 0xEA, 0xFE)
SITE_HEADER = (0x0F, 0x17, 0x2A)
CALLER = (0x25, 0x63, 0xEB)
BOT = (0x16, 0xA3, 0x4A)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def voiced_spans_ms(samples, frame_ms=20, threshold=500):
    """First and last 20 ms frame whose RMS exceeds ``threshold``, as (start_ms, end_ms)."""
    frame = RATE * frame_ms // 1000
    frames = samples[: len(samples) // frame * frame].reshape(-1, frame).astype(np.float64)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > threshold)
    return int(loud[0] * frame_ms), int((loud[-1] + 1) * frame_ms)


def make_recording():
    """Stereo int16 at 8 kHz: real speech on the left, a synthetic reply on the right; and the turn spans."""
    speech, speech_rate = sf.read(SPEECH, dtype="int16")
    speech_8k = ulaw_to_array(array_to_ulaw(resample(speech, speech_rate, RATE)))  # as it crossed the phone line
    t = np.arange(2 * RATE) / RATE
    envelope = np.clip(np.sin(np.pi * 3 * t), 0, None) ** 0.5  # three "syllables"
    reply = (sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6)) * envelope * 6000).astype(np.int16)
    total = 8 * RATE
    left, right = np.zeros(total, np.int16), np.zeros(total, np.int16)
    left[SPEECH_AT_MS * 8 : SPEECH_AT_MS * 8 + len(speech_8k)] = speech_8k
    right[REPLY_AT_MS * 8 : REPLY_AT_MS * 8 + len(reply)] = reply
    return np.column_stack([left, right]), voiced_spans_ms(left), voiced_spans_ms(right)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server (``python app.py``) on a free port, with one call in its store; yields its base URL."""
    tmp = tmp_path_factory.mktemp("pages_browser")
    url = f"sqlite:///{tmp / 'calls.db'}"
    stereo, caller_ms, bot_ms = make_recording()
    files = tmp / "files"
    files.mkdir()
    sf.write(files / "stereo.wav", stereo, RATE, subtype="PCM_16")
    sf.write(files / "inbound.wav", stereo[:, 0], RATE, subtype="ULAW")
    engine = make_engine(url)
    upgrade_schema(engine)
    store = CallStore(engine)
    store.save_call({
        "call_sid": CALL_SID, "stream_sid": "MZbrowser000000000000000000000001", "from": "+15550001111",
        "to": "+15550002222", "started_at": "2026-11-21T07:00:00.000+00:00", "ended_at": "2026-11-21T07:00:08.500+00:00",
        "mode": "conversation",
        "turns": [
            {"speaker": "caller", "text": "One, two, three.", "start_ms": caller_ms[0], "end_ms": caller_ms[1]},
            {"speaker": "bot", "text": "You said: One, two, three.", "start_ms": bot_ms[0], "end_ms": bot_ms[1],
             "latency_ms": {"endpoint": 600, "recognition": 240, "responder": 1, "synthesis": 95, "total": 900}},
        ],
    })
    for kind in ("stereo", "inbound"):
        path = files / f"{kind}.wav"
        store.save_recording(CALL_SID, kind, duration_ms=8000, size_bytes=path.stat().st_size, path=path)
    engine.dispose()

    port = free_port()
    env = {**os.environ, "PORT": str(port), "WARM_UP": "false", "DATABASE_URL": url,
           "RECORDINGS_DIR": str(tmp / "recordings"), "LOG_LEVEL": "WARNING"}
    if "pages.bp" in (ROOT / "app.py").read_text():
        command = [sys.executable, "app.py"]
    else:  # app.py does not register the pages yet: serve create_app() + pages the way main() does
        command = [sys.executable, "-c", (
            "from gevent import monkey; monkey.patch_all()\n"
            "import os, app; from handlers import pages; from runtime.server import make_server\n"
            "a = app.create_app(); a.register_blueprint(pages.bp)\n"
            "make_server(a, '127.0.0.1', int(os.environ['PORT'])).serve_forever()\n")]
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/calls/{CALL_SID}", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not serve the call page; log:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield {"base": base, "tmp": tmp, "caller_ms": caller_ms, "bot_ms": bot_ms}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a fresh profile folder."""
    profile = tmp / f"profile-{time.monotonic_ns()}"
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}", *args]
    try:
        return subprocess.run(command, capture_output=True, timeout=90, check=True)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def read_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) to ``(height, width, 3)`` uint8.

    PNG spec (W3C, 2nd edition): chunks ``IHDR``/``IDAT``/``IEND``, zlib data, one filter
    byte per scanline (0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth).
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat.append(body)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    rows = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(height, stride + 1)
    image = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = rows[y, 0], rows[y, 1:]
        if kind == 0:
            current = line.copy()
        elif kind == 1:  # Sub: a running sum along the row, per channel
            current = (np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.int64) % 256).astype(np.uint8).ravel()
        elif kind == 2:
            current = line + prior  # uint8 arithmetic wraps mod 256, as PNG wants
        else:  # Average and Paeth depend on the byte just decoded: byte by byte
            out, filtered, up = bytearray(stride), line.tobytes(), prior.tobytes()
            for i in range(stride):
                a = out[i - bpp] if i >= bpp else 0
                b = up[i]
                if kind == 3:
                    predictor = (a + b) >> 1
                else:
                    c = up[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    predictor = a if pa <= pb and pa <= pc else b if pb <= pc else c
                out[i] = (filtered[i] + predictor) & 0xFF
            current = np.frombuffer(bytes(out), np.uint8)
        image[y] = current
        prior = current
    return image.reshape(height, width, bpp)[:, :, :3]


def colour_mask(image, rgb, tolerance=0):
    return (np.abs(image.astype(np.int16) - np.array(rgb, np.int16)) <= tolerance).all(axis=2)


def bbox(mask):
    """(top, bottom, left, right) of the True pixels, inclusive."""
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max(), xs.min(), xs.max()


def blend(over, under, alpha):
    return tuple(round(alpha * o + (1 - alpha) * u) for o, u in zip(over, under))


def test_dom_has_the_transcript_player_and_waveform(server):
    page_url = f"{server['base']}/calls/{CALL_SID}"
    dom = chromium(server["tmp"], "--dump-dom", page_url).stdout.decode()
    page = Page(dom)
    transcript = page.text_by_id["transcript"]
    assert f"{format_clock(server['caller_ms'][0])} caller One, two, three." in transcript
    assert f"{format_clock(server['bot_ms'][0])} bot You said: One, two, three. latency 900 ms" in transcript
    (audio,) = page.find("audio")
    src = f"/api/calls/{CALL_SID}/recording.wav"
    assert audio["id"] == "player" and audio["src"] == src and audio["preload"] == "none" and "controls" in audio
    assert [t for t, a in page.tags if t == "svg"] == ["svg"]
    assert len([a for t, a in page.tags if t == "rect" and "turn" in (a.get("class") or "")]) == 2
    # The player's source is served (handlers/api.py) and is the stereo recording.
    with urllib.request.urlopen(server["base"] + src, timeout=10) as response:
        samples, rate = sf.read(io.BytesIO(response.read()), dtype="int16", always_2d=True)
    assert rate == RATE and samples.shape == (8 * RATE, 2)


def test_screenshot_shows_the_transcript_player_and_waveform(server):
    shot = server["tmp"] / "call.png"
    started = time.perf_counter()
    chromium(server["tmp"], f"--screenshot={shot}", f"--window-size={WINDOW[0]},{WINDOW[1]}", f"{server['base']}/calls/{CALL_SID}")
    render_s = time.perf_counter() - started
    started = time.perf_counter()
    image = read_png(shot.read_bytes())
    decode_s = time.perf_counter() - started
    print(f"\nchromium screenshot {render_s:.2f} s, PNG decode {decode_s:.2f} s; screenshot at {shot}")
    assert image.shape == (WINDOW[1], WINDOW[0], 3)
    assert colour_mask(image[:20, :200], SITE_HEADER).mean() > 0.5  # the dark site header, top left
    assert (image[-50:] == 255).all()  # the page ends on white: nothing overflows past the content

    transcript = colour_mask(image, TRANSCRIPT_BG)
    player = colour_mask(image, PLAYER_BG)
    assert transcript.sum() > 20_000 and player.sum() > 20_000, (transcript.sum(), player.sum())
    t_top, t_bottom, t_left, t_right = bbox(transcript)
    p_top, p_bottom, p_left, p_right = bbox(player)
    assert p_bottom < t_top  # player above the transcript
    assert t_right - t_left > 0.6 * WINDOW[0] and p_right - p_left > 0.6 * WINDOW[0]  # full-width blocks
    # The player block holds the native audio control (not its background colour, mostly grey).
    inside = image[p_top:p_bottom, p_left:p_right]
    assert (~colour_mask(inside, PLAYER_BG)).mean() > 0.3
    # Speakers are colour-coded in the transcript: a blue caller badge and a green bot badge.
    block = image[t_top:t_bottom, t_left:t_right]
    assert colour_mask(block, CALLER).sum() > 100 and colour_mask(block, BOT).sum() > 100
    # Between them, the waveform: the caller's turn shaded over the top lane, the bot's over the bottom one,
    # and inside the caller's shade the speech envelope (dark blue under the translucent shade).
    wave = image[p_bottom:t_top]
    caller_shade = colour_mask(wave, blend(CALLER, (0xF8, 0xFA, 0xFC), 0.22), tolerance=2)
    bot_shade = colour_mask(wave, blend(BOT, (0xF1, 0xF5, 0xF9), 0.22), tolerance=2)
    speech = colour_mask(wave, blend(CALLER, (0x1E, 0x3A, 0x8A), 0.22), tolerance=3)
    assert caller_shade.sum() > 5_000 and bot_shade.sum() > 5_000 and speech.sum() > 200
    c_top, c_bottom, c_left, c_right = bbox(caller_shade)
    b_top, b_bottom, b_left, b_right = bbox(bot_shade)
    assert c_bottom < b_top + 2  # caller lane above the bot lane
    assert c_right < b_left  # the caller spoke before the bot replied
    # Shade widths in proportion to the turns' durations (same px per ms on both lanes).
    (c0, c1), (b0, b1) = server["caller_ms"], server["bot_ms"]
    assert (c_right - c_left) / (b_right - b_left) == pytest.approx((c1 - c0) / (b1 - b0), rel=0.05)
    s_top, s_bottom, s_left, s_right = bbox(speech)
    assert c_left <= s_left and s_right <= c_right and c_top <= s_top and s_bottom <= c_bottom
