"""handlers/pages.py through Flask's test client, on a real call store (SQLite in a temp folder)."""

import io
import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf

from app import create_app
from handlers import pages

SVG = "{http://www.w3.org/2000/svg}"
VOID = {"meta", "br", "img", "input", "link", "hr", "source", "area", "base", "col", "embed", "track", "wbr"}


class Page(HTMLParser):
    """The start tags of an HTML page, and the text inside each element that has an id."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags = []  # (tag, attrs)
        self._open = []  # [tag, id or None, chunks]
        self.text_by_id = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in VOID:
            self._open.append([tag, attrs.get("id"), []])

    def handle_endtag(self, tag):
        while self._open:
            open_tag, element_id, chunks = self._open.pop()
            if element_id:
                self.text_by_id[element_id] = " ".join(" ".join(chunks).split())
            if self._open:
                self._open[-1][2].extend(chunks)
            if open_tag == tag:
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1][2].append(data)

    def find(self, tag, **attrs):
        return [a for t, a in self.tags if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def with_class(self, name):
        return [(t, a) for t, a in self.tags if name in (a.get("class") or "").split()]


def stereo_wav(duration_s=6.0, sample_rate=8000):
    """PCM16 stereo WAV bytes: a tone on the left from 1 s to 2.5 s, another on the right from 3 s to 5 s."""
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    left = np.where((t >= 1) & (t < 2.5), 9000 * np.sin(2 * np.pi * 300 * t), 0)
    right = np.where((t >= 3) & (t < 5), 9000 * np.sin(2 * np.pi * 500 * t), 0)
    buffer = io.BytesIO()
    sf.write(buffer, np.column_stack([left, right]).astype(np.int16), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


CALL = {
    "call_sid": "CAdetail0001", "stream_sid": "MZdetail0001", "from": "+15550001111", "to": "+15550002222",
    "started_at": "2026-11-21T07:00:00.000+00:00", "ended_at": "2026-11-21T07:01:05.500+00:00", "mode": "conversation",
    "turns": [
        {"speaker": "bot", "text": "Hello! Say something.", "start_ms": 180, "end_ms": 900},
        {"speaker": "caller", "text": "one two three <b>bold</b>", "start_ms": 1000, "end_ms": 2500},
        {"speaker": "bot", "text": "You said: one two three.", "start_ms": 3000, "end_ms": 5000, "interrupted": True,
         "heard": "You said:", "latency_ms": {"endpoint": 600, "recognition": 312.4, "responder": 1, "synthesis": 88, "total": 1010}},
        {"speaker": "caller", "text": "", "dtmf": "42#", "start_ms": 5200, "end_ms": 5200},
        {"speaker": "caller", "text": "", "error": "recognizer timed out", "start_ms": 5400, "end_ms": 5800},
    ],
}


@pytest.fixture
def app(tmp_path):
    app = create_app({"WARM_UP": False, "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
                      "RECORDINGS_DIR": str(tmp_path / "recordings")})
    if "pages" not in app.blueprints:  # until app.py registers it
        app.register_blueprint(pages.bp)
    return app


@pytest.fixture
def store(app):
    return app.extensions["callstream"].store


@pytest.fixture
def client(app):
    return app.test_client()


def save_calls(store, count):
    for i in range(count):
        store.save_call({
            "call_sid": f"CA{i:04d}", "stream_sid": f"MZ{i:04d}", "from": f"+1555000{i:04d}", "to": "+15559990000",
            "started_at": f"2026-11-21T07:{i:02d}:00.000+00:00", "ended_at": f"2026-11-21T07:{i:02d}:42.000+00:00",
            "mode": "fork" if i % 2 else "conversation",
            "turns": [{"speaker": "caller", "text": f"turn {j}", "start_ms": j * 1000, "end_ms": j * 1000 + 500} for j in range(i % 4)],
        })


def call_links(page):
    return [a["href"] for a in page.find("a") if a["href"].startswith("/calls/")]


def test_list_pages_most_recent_first(client, store):
    save_calls(store, 25)
    response = client.get("/calls")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = Page(response.get_data(as_text=True))
    assert call_links(page) == [f"/calls/CA{i:04d}" for i in range(24, 4, -1)]  # 20, newest first
    assert "25 calls, page 1 of 2" in page.text_by_id["calls-count"]
    assert page.find("a", rel="next")[0]["href"] == "/calls?page=2" and page.find("a", rel="prev") == []
    rows = page.text_by_id["calls"]
    assert "2026-11-21 07:24:00 UTC CA0024 +15550000024 +15559990000 0:42 conversation 0" in rows
    assert "2026-11-21 07:23:00 UTC CA0023 +15550000023 +15559990000 0:42 fork 3" in rows

    page = Page(client.get("/calls?page=2").get_data(as_text=True))
    assert call_links(page) == [f"/calls/CA{i:04d}" for i in range(4, -1, -1)]
    assert page.find("a", rel="prev")[0]["href"] == "/calls?page=1" and page.find("a", rel="next") == []


def test_list_empty_past_the_end_and_bad_page(client, store):
    page = Page(client.get("/calls").get_data(as_text=True))
    assert page.text_by_id["no-calls"] == "No calls yet." and "calls" not in page.text_by_id
    save_calls(store, 3)
    page = Page(client.get("/calls?page=7").get_data(as_text=True))
    assert call_links(page) == [] and "No calls on page 7" in page.text_by_id["no-calls"]
    for bad in ("abc", "0", "-3"):
        assert call_links(Page(client.get(f"/calls?page={bad}").get_data(as_text=True))) == ["/calls/CA0002", "/calls/CA0001", "/calls/CA0000"]


def test_a_huge_page_number_is_refused_before_the_database(client, store):
    save_calls(store, 3)
    for huge in ("1000001", "99999999999999999999999"):  # the second overflowed SQLite's OFFSET: a 500
        response = client.get(f"/calls?page={huge}")
        assert response.status_code == 400 and b"page must be from 1 to 1000000" in response.data
    assert client.get("/calls?page=1000000").status_code == 200
    with pytest.raises(ValueError, match="past any call"):  # the store refuses it too, on any back end
        store.list_calls(page=10**20)


def test_detail_header_events_transcript_and_latency(client, store):
    store.save_call(CALL)
    store.add_status_event("CAdetail0001", stream_sid="MZdetail0001", event="stream-started", error=None,
                           timestamp="2026-11-21T07:00:00.100Z", name="conversation")
    store.add_status_event("CAdetail0001", stream_sid="MZdetail0001", event="stream-error", error="31921 Close Error",
                           timestamp="2026-11-21T07:01:05.400Z", name="conversation")
    response = client.get("/calls/CAdetail0001")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    page = Page(html)
    header = page.text_by_id["call-header"]
    for text in ("MZdetail0001", "+15550001111", "+15550002222", "conversation", "2026-11-21 07:00:00 UTC",
                 "2026-11-21 07:01:05 UTC", "Duration 1:05", "Turns 5"):
        assert text in header
    assert page.text_by_id["call-sid"] == "CAdetail0001"
    events = page.text_by_id["status-events"]
    assert "stream-started" in events and "stream-error 2026-11-21T07:01:05.400Z conversation 31921 Close Error" in events

    rows = [a for t, a in page.with_class("turn") if t == "li"]
    assert [a["class"] for a in rows] == ["turn speaker-bot", "turn speaker-caller", "turn speaker-bot",
                                          "turn speaker-caller", "turn speaker-caller"]
    assert [page.text_by_id[a["id"]] for a in rows] == [
        "0:00.2 bot Hello! Say something.",
        "0:01.0 caller one two three <b>bold</b>",
        "0:03.0 bot You said: one two three. interrupted heard: “You said:” "
        "latency 1010 ms (endpoint 600 · recognition 312 · responder 1 · synthesis 88)",
        "0:05.2 caller keys 42#",
        "0:05.4 caller error: recognizer timed out",
    ]
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # escaped, not markup
    assert page.find("kbd")  # the DTMF digits
    # No recordings: no player, no waveform, no recordings list.
    assert page.find("audio") == [] and "<svg" not in html and "recordings" not in page.text_by_id


def test_detail_with_a_stereo_recording_has_the_player_links_and_waveform(client, store):
    store.save_call(CALL)
    wav = stereo_wav()
    store.save_recording("CAdetail0001", "stereo", duration_ms=6000, size_bytes=len(wav), data=wav)
    store.save_recording("CAdetail0001", "inbound", duration_ms=6000, size_bytes=48058, data=b"\0" * 48058)
    html = client.get("/calls/CAdetail0001").get_data(as_text=True)
    page = Page(html)
    (audio,) = page.find("audio")
    assert audio == {"id": "player", "controls": None, "preload": "none", "src": "/api/calls/CAdetail0001/recording.wav"}
    downloads = [a["href"] for a in page.find("a") if "download" in a]
    assert downloads == ["/api/calls/CAdetail0001/recording/inbound.wav", "/api/calls/CAdetail0001/recording.wav"]
    assert "inbound.wav 0:06, 48.1 KB" in page.text_by_id["recordings"]

    svg = ET.fromstring(re.search(r"<svg.*?</svg>", html, re.S).group(0))
    assert svg.get("class") == "waveform"
    rects = [r for r in svg.iter(f"{SVG}rect") if "turn" in (r.get("class") or "")]
    assert len(rects) == 5
    assert [r.find(f"{SVG}title").text for r in rects][1] == "caller 0:01.0–0:02.5: one two three <b>bold</b>"
    # The caller's tone (1–2.5 s) is in the top lane where the caller's turn is marked.
    labels = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "lane-label"]
    assert labels == ["caller", "bot"]


def test_fork_call_labels_the_bottom_lane_callee(client, store):
    call = {**CALL, "call_sid": "CAfork", "mode": "fork",
            "turns": [{"speaker": "callee", "text": "Hello, this is Ann.", "start_ms": 3000, "end_ms": 5000}]}
    store.save_call(call)
    wav = stereo_wav()
    store.save_recording("CAfork", "stereo", duration_ms=6000, size_bytes=len(wav), data=wav)
    html = client.get("/calls/CAfork").get_data(as_text=True)
    svg = ET.fromstring(re.search(r"<svg.*?</svg>", html, re.S).group(0))
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "lane-label"] == ["caller", "callee"]
    (rect,) = [r for r in svg.iter(f"{SVG}rect") if "turn-callee" in (r.get("class") or "")]
    assert float(rect.get("y")) > 0  # bottom lane
    assert [a["class"] for t, a in Page(html).with_class("turn") if t == "li"] == ["turn speaker-callee"]


def test_only_track_recordings_no_player(client, store):
    store.save_call(CALL)
    store.save_recording("CAdetail0001", "outbound", duration_ms=1000, size_bytes=8058, data=b"\0" * 8058)
    html = client.get("/calls/CAdetail0001").get_data(as_text=True)
    page = Page(html)
    assert page.find("audio") == [] and "<svg" not in html
    assert [a["href"] for a in page.find("a") if "download" in a] == ["/api/calls/CAdetail0001/recording/outbound.wav"]


def test_undecodable_stereo_recording_still_renders(client, store):
    store.save_call(CALL)
    store.save_recording("CAdetail0001", "stereo", duration_ms=1000, size_bytes=11, data=b"not a wave!")
    response = client.get("/calls/CAdetail0001")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<svg" not in html and Page(html).find("audio")  # the file is still offered
    assert "one two three" in Page(html).text_by_id["transcript"]


def test_unknown_call_is_a_404_page(client):
    response = client.get("/calls/CAnope")
    assert response.status_code == 404 and response.mimetype == "text/html"
    page = Page(response.get_data(as_text=True))
    assert page.text_by_id["not-found"] == "No such call" and "CAnope" in response.get_data(as_text=True)
    assert page.find("a", href="/calls")


def test_detail_page_cost_for_a_ten_minute_recording(client, store):
    store.save_call({**CALL, "turns": [{"speaker": "caller" if i % 2 else "bot", "text": f"turn {i}", "start_ms": i * 5000,
                                        "end_ms": i * 5000 + 4000} for i in range(120)]})
    wav = stereo_wav(duration_s=600.0)
    store.save_recording("CAdetail0001", "stereo", duration_ms=600_000, size_bytes=len(wav), data=wav)
    client.get("/calls/CAdetail0001")  # warm-up
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        response = client.get("/calls/CAdetail0001")
        runs.append((time.perf_counter() - start) * 1000)
    html = response.get_data(as_text=True)
    print(f"\n/calls/<sid> with a 10 min stereo recording ({len(wav) / 1e6:.1f} MB) and 120 turns: best {min(runs):.0f} ms, "
          f"{len(html) / 1000:.0f} kB of HTML")
    assert response.status_code == 200 and html.count('class="turn turn-') == 120
    assert min(runs) < 1000
