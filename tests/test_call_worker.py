"""The gevent shell of one call, with a fake socket and fake engines (the real ones are in test_e2e)."""

import gc
import json
import threading
import time
from pathlib import Path

import gevent
import soundfile as sf
import numpy as np
import pytest
from gevent.queue import Queue
from simple_websocket import ConnectionClosed

from audio.codec import array_to_ulaw
from core.call_tokens import TOKEN_PARAMETER, derive_key, make_token
from audio.resample import resample
from core.responder import echo
from core.settings import load_settings
from runtime.call_worker import CallWorker
from runtime.services import Services
from speech.engine_queue import CancelToken, Priority
from speech.errors import RecognitionError
from speech.synthesis import SynthesizedAudio

STREAM_SID = "MZ00000000000000000000000000000002"
CALL_SID = "CA00000000000000000000000000000002"
SILENT = b"\xff" * 160
AUTH_TOKEN = "test-auth-token"  # the services' signing secret: stream tokens are derived from it
CORPUS = Path(__file__).resolve().parent / "data"


def phone_ulaw(name: str) -> bytes:
    """A corpus file as Twilio would carry it: mono, 8 kHz, μ-law."""
    samples, sample_rate = sf.read(CORPUS / name, dtype="int16", always_2d=True)
    return array_to_ulaw(resample(samples[:, 0], sample_rate, 8000))


SPEECH = phone_ulaw("sr_english.wav")  # "one two three", 2.7 s


class FakeSocket:
    """A flask-sock-like socket: ``receive`` pops scripted messages, ``send`` records."""

    def __init__(self) -> None:
        self.inbox: Queue = Queue()
        self.sent: list[dict] = []
        self.connected = True

    def receive(self, timeout=None):
        try:
            item = self.inbox.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        if item is ConnectionClosed or not self.connected:
            self.connected = False
            raise ConnectionClosed()
        return item

    def send(self, text):
        self.sent.append(json.loads(text))

    def close(self, *args):
        if self.connected:
            self.connected = False
            self.inbox.put(ConnectionClosed)  # like a real socket: receive() ends


class FakeRecognizer:
    name = "fake"

    def __init__(self, text="hello there", fail=False):
        self.text, self.fail, self.calls = text, fail, 0

    def transcribe(self, pcm, sample_rate, **queue_options):
        self.calls += 1
        if self.fail:
            raise RuntimeError("engine down")
        return self.text

    def warm_up(self):
        pass


class FakeSynthesizer:
    name = "fake"

    def synthesize(self, text, **queue_options):
        return SynthesizedAudio(np.full(16000 * len(text.split()) // 10, 1000, dtype=np.int16), 16000)  # 0.1 s per word

    def warm_up(self):
        pass


@pytest.fixture
def services(sqlite_store, tmp_path):
    """Services with fake engines, a real SQLite store and recordings in ``tmp_path``."""

    def make(recognizer=None, responder=echo, **settings):
        # The scripts feed media 10x faster than real time: allow them to run ahead of the clock.
        # Their utterances and pauses are counted for one fixed endpoint (ENDPOINT_SILENCE_MS):
        # the end-of-turn policy has its own tests (test_turn_end.py, the e2e tests).
        values = load_settings({}, {"GREETING": "", "RECORDINGS_DIR": str(tmp_path / "recordings"), "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                                    "MAX_MEDIA_AHEAD_S": 60.0, "ENDPOINT_COMPLETE_MS": 0, **settings})
        return Services(values, recognizer or FakeRecognizer(), FakeSynthesizer(), responder, sqlite_store)

    return make


def media(timestamp_ms, payload):
    import base64

    return json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": STREAM_SID,
                       "media": {"track": "inbound", "chunk": "1", "timestamp": str(timestamp_ms),
                                 "payload": base64.b64encode(payload).decode()}})


START = json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": STREAM_SID,
                    "start": {"streamSid": STREAM_SID, "accountSid": "AC1", "callSid": CALL_SID, "tracks": ["inbound"],
                              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                              "customParameters": {"From": "+15550001", "To": "+15550002",
                                                   TOKEN_PARAMETER: make_token(derive_key(AUTH_TOKEN), CALL_SID, time.time())}}})
STOP = json.dumps({"event": "stop", "sequenceNumber": "99", "streamSid": STREAM_SID, "stop": {"accountSid": "AC1", "callSid": CALL_SID}})


class Script:
    """Feeds the fake socket in (media-clock) real time, 20 ms per chunk, but 10× faster."""

    def __init__(self, ws):
        self.ws, self.timestamp_ms = ws, 20

    def send(self, audio):
        for offset in range(0, len(audio), 160):
            self.ws.inbox.put(media(self.timestamp_ms, audio[offset:offset + 160]))
            self.timestamp_ms += 20
            gevent.sleep(0.002)

    def pause(self, duration_ms):
        self.send(SILENT * (duration_ms // 20))


def say_one_utterance(ws, svc):
    """Start a worker, say "one two three" on its call, and wait for the first reply's mark; return the job."""
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    script = Script(ws)
    script.send(SPEECH)
    script.pause(1000)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    return job


def run_worker(ws, svc):
    worker = CallWorker(ws, svc)
    return worker, gevent.spawn(worker.run)


def test_a_turn_end_to_end_through_the_shell(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
    ws.inbox.put(START)
    script = Script(ws)
    script.pause(200)
    script.send(SPEECH)
    script.pause(1500)
    with gevent.Timeout(5):
        while not any(m["event"] == "mark" for m in ws.sent):
            gevent.sleep(0.01)
    events = [m["event"] for m in ws.sent]
    # "You said: hello there": 4 words = 0.4 s of audio = 20 media messages of 20 ms, then a mark.
    assert events[-1] == "mark" and events.count("media") == 20
    ws.inbox.put(json.dumps({"event": "mark", "sequenceNumber": "50", "streamSid": STREAM_SID, "mark": ws.sent[-1]["mark"]}))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert job.dead and svc.active_calls == 0
    record = svc.store.get_call(CALL_SID).to_json()
    assert [(t["speaker"], t["text"]) for t in record["turns"]] == [("caller", "hello there"), ("bot", "You said: hello there")]
    assert record["started_at"] and record["ended_at"]
    assert all(set(m) == {"event", "streamSid", "media"} for m in ws.sent if m["event"] == "media")


def test_bad_messages_and_binary_frames_do_not_end_the_call(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    for bad in ["not json", b"\x00\x01", '{"event": "media"}', '{"event": "closed"}', "[]"]:
        ws.inbox.put(bad)
    ws.inbox.put(START)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert job.dead and job.exception is None
    assert svc.store.get_call(CALL_SID) is not None


@pytest.mark.parametrize("failure", ["recognizer", "responder"])
def test_engine_and_responder_failures_keep_the_call_going(failure, services):
    def broken_responder(text, call):
        raise ValueError("bug in user code")

    recognizer = FakeRecognizer(fail=failure == "recognizer")
    responder = broken_responder if failure == "responder" else echo
    ws, svc = FakeSocket(), services(recognizer=recognizer, responder=responder, APOLOGY_MESSAGE="Sorry about that.")
    job = say_one_utterance(ws, svc)
    assert not job.dead and recognizer.calls >= 1  # speculative transcriptions at pauses count too
    assert [m["event"] for m in ws.sent].count("media") == 15  # one apology: "Sorry about that.", 3 words = 0.3 s
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert job.dead and job.exception is None
    turns = svc.store.get_call(CALL_SID).to_json()["turns"]
    assert turns[-1]["speaker"] == "bot" and turns[-1]["text"] == "Sorry about that."
    assert all(t["text"] != "You said: " for t in turns)  # the failure never reached the responder as speech


class FailingSynthesizer(FakeSynthesizer):
    name = "gtts"

    def synthesize(self, text, **queue_options):
        raise ConnectionError("gTTS unreachable")


def test_an_online_voice_failure_falls_back_to_the_offline_voice(services):
    ws, svc = FakeSocket(), services(GREETING="Hello there, caller!")
    svc.fallback_synthesizer, svc.synthesizer = svc.synthesizer, FailingSynthesizer()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    assert [m["event"] for m in ws.sent].count("media") == 15  # the greeting, from the fallback voice
    ws.inbox.put(STOP)
    job.join(timeout=5)


class StuckSocket(FakeSocket):
    def send(self, text):
        gevent.sleep(60)  # a half-dead connection: the send never completes


def test_a_half_dead_socket_ends_the_call_after_the_send_timeout(services):
    ws, svc = StuckSocket(), services(GREETING="Hello there!", SEND_TIMEOUT_S=0.3)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    job.join(timeout=5)
    assert job.dead and job.exception is None and svc.active_calls == 0
    assert svc.store.get_call(CALL_SID).to_json()["ended_at"] is not None


def test_socket_closed_without_stop_finalizes_the_call(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    Script(ws).send(SPEECH[:8000])
    ws.inbox.put(ConnectionClosed)
    job.join(timeout=10)
    assert job.dead
    record = svc.store.get_call(CALL_SID).to_json()
    assert record["ended_at"] is not None
    assert [t["text"] for t in record["turns"]] == ["hello there"]  # the last utterance was transcribed for the record


def test_a_fork_transcribes_both_tracks_and_never_sends(services):
    ws, svc = FakeSocket(), services(GREETING="This greeting must not be sent on a fork.")
    worker, job = run_worker(ws, svc)
    start = json.loads(START)
    start["start"]["tracks"] = ["inbound", "outbound"]
    ws.inbox.put(json.dumps(start))
    timestamp_ms = 20
    silence = SILENT * 50
    for inbound, outbound in ((SPEECH, SILENT * (len(SPEECH) // 160)), (silence, silence),
                              (SILENT * (len(SPEECH) // 160), SPEECH), (silence, silence)):
        for offset in range(0, len(inbound), 160):
            for track, audio in (("inbound", inbound), ("outbound", outbound)):
                message = json.loads(media(timestamp_ms, audio[offset:offset + 160]))
                message["media"]["track"] = track
                ws.inbox.put(json.dumps(message))
            timestamp_ms += 20
            gevent.sleep(0.001)
    ws.inbox.put(STOP)
    job.join(timeout=10)
    assert job.dead and job.exception is None
    assert ws.sent == []
    record = svc.store.get_call(CALL_SID).to_json()
    assert record["mode"] == "fork"
    assert [(t["speaker"], t["text"]) for t in record["turns"]] == [("caller", "hello there"), ("callee", "hello there")]


def wait_for(condition, timeout_s=5):
    with gevent.Timeout(timeout_s):
        while not condition():
            gevent.sleep(0.01)


def echo_marks(ws, seen):
    for message in ws.sent[seen:]:
        if message["event"] == "mark":
            ws.inbox.put(json.dumps({"event": "mark", "sequenceNumber": "9", "streamSid": STREAM_SID, "mark": message["mark"]}))
    return len(ws.sent)


def test_a_call_over_max_calls_hears_the_busy_message_then_is_hung_up(services):
    ws, svc = FakeSocket(), services(MAX_CALLS=0, BUSY_MESSAGE="All lines are busy, goodbye.", GREETING="Hello there!")
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    # 5 words of fake speech = 0.5 s = 25 media messages, then the mark; the greeting was never sent
    assert [m["event"] for m in ws.sent].count("media") == 25
    assert ws.connected  # not before the goodbye has played
    echo_marks(ws, 0)
    job.join(timeout=5)
    assert job.dead and not ws.connected
    turns = svc.store.get_call(CALL_SID).to_json()["turns"]
    assert [(t["speaker"], t["text"]) for t in turns] == [("bot", "All lines are busy, goodbye.")]


def test_a_fork_over_max_calls_just_ends(services):
    ws, svc = FakeSocket(), services(MAX_CALLS=0)
    worker, job = run_worker(ws, svc)
    start = json.loads(START)
    start["start"]["tracks"] = ["inbound", "outbound"]
    ws.inbox.put(json.dumps(start))
    job.join(timeout=5)
    assert job.dead and not ws.connected and ws.sent == []


def test_the_call_time_limit_says_goodbye_and_hangs_up(services):
    ws, svc = FakeSocket(), services(MAX_CALL_DURATION_S=1)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    Script(ws).pause(1100)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    echo_marks(ws, 0)
    job.join(timeout=5)
    assert job.dead and not ws.connected
    assert svc.store.get_call(CALL_SID).to_json()["turns"][-1]["text"] == "We have reached the time limit for this call. Goodbye."


def test_messages_for_another_stream_are_dropped(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    other = json.loads(media(20, SPEECH[:160]))
    other["streamSid"] = "MZ99999999999999999999999999999999"
    for _ in range(3):
        ws.inbox.put(json.dumps(other))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert worker.dropped == {"message for another stream": 3}


def test_a_flood_on_one_call_does_not_starve_the_hub(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    for index in range(20000):
        ws.inbox.put("{not json" if index % 2 else '{"event": "media", "media": {"timestamp": "x"}}')
    # The server freezes its start-up heap (runtime/heap.py); without that, one full collection of this
    # test process's heap (about 55 ms) lands inside the flood and is not the worker's doing.
    gc.collect()
    gc.freeze()
    gaps, last = [], [time.perf_counter()]

    def ticker():
        while True:
            gevent.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

    tick = gevent.spawn(ticker)
    try:
        wait_for(lambda: ws.inbox.qsize() == 0, timeout_s=30)
    finally:
        gc.unfreeze()
    tick.kill()
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert sum(worker.dropped.values()) == 20000
    assert max(gaps) < 0.05, f"the hub was blocked for {max(gaps) * 1000:.0f} ms"


def test_hanging_up_also_completes_the_call_through_the_rest_api(services):
    from tests.test_twilio_rest import RecordingHttpClient
    from runtime.twilio_rest import make_client

    http = RecordingHttpClient()
    ws, svc = FakeSocket(), services(MAX_CALLS=0, BUSY_MESSAGE="Busy.")
    svc.twilio_client = make_client("AC0123", "secret", http_client=http)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    echo_marks(ws, 0)
    job.join(timeout=5)
    wait_for(lambda: http.requests)
    assert http.requests[0][1].endswith(f"/Calls/{CALL_SID}.json") and http.requests[0][2] == {"Status": "completed"}


@pytest.mark.parametrize("busy", [False, True])
def test_speculative_recognition_runs_unless_the_recognizer_is_busy(busy, services):
    """Pauses in "one two three" start speculative recognitions; with every core busy none is started."""
    recognizer = FakeRecognizer(text="one two three")
    ws, svc = FakeSocket(), services(recognizer=recognizer)
    if busy:
        svc.recognitions_running = 1000  # as if other calls kept every core recognizing
    job = say_one_utterance(ws, svc)
    assert (recognizer.calls == 1) if busy else (recognizer.calls >= 2)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    [bot] = [t for t in svc.store.get_call(CALL_SID).to_json()["turns"] if t["speaker"] == "bot"]
    assert bot["text"] == "You said: one two three"
    assert bot["latency_ms"].get("speculative") == (None if busy else 1)
    assert svc.recognitions_running == (1000 if busy else 0)


def test_a_streaming_responder_is_spoken_sentence_by_sentence_while_it_runs(services):
    released = threading.Event()
    pieces_given = []

    def streaming(text, call):
        for piece in ["Hello there", ", my friend. ", "Second part"]:
            pieces_given.append(piece)
            yield piece
        released.wait(5)  # a thread, as a slow model would block it; the first sentence is spoken meanwhile
        yield " is here."

    ws, svc = FakeSocket(), services(responder=streaming)
    job = say_one_utterance(ws, svc)
    assert [m["event"] for m in ws.sent].count("media") == 20  # "Hello there, my friend." only: 4 words, 0.4 s
    released.set()
    wait_for(lambda: [m["event"] for m in ws.sent].count("mark") == 2)
    assert [m["event"] for m in ws.sent].count("media") == 40  # then "Second part is here.": 0.4 s more
    for mark in [m for m in ws.sent if m["event"] == "mark"]:
        ws.inbox.put(json.dumps({"event": "mark", "sequenceNumber": "50", "streamSid": STREAM_SID, "mark": mark["mark"]}))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    turns = svc.store.get_call(CALL_SID).to_json()["turns"]
    assert turns[-1]["speaker"] == "bot" and turns[-1]["text"] == "Hello there, my friend. Second part is here."
    assert turns[-1]["latency_ms"]["responder"] >= 0


def test_a_stalled_stream_times_out_into_the_apology(services):
    def stalling(text, call):
        yield "Let me think about that. "
        time.sleep(1.5)  # in an engine thread, like a model that stalls
        yield "Too late."

    ws, svc = FakeSocket(), services(responder=stalling, RESPONDER_TIMEOUT_S=0.5, APOLOGY_MESSAGE="Sorry about that.")
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    script = Script(ws)
    script.send(SPEECH)
    script.pause(1000)
    wait_for(lambda: [m["event"] for m in ws.sent].count("mark") == 2)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    bot = svc.store.get_call(CALL_SID).to_json()["turns"][-1]
    assert bot["text"] == "Let me think about that. Sorry about that."
    assert bot["error"] == "responder timeout"  # the category; the details are in the log only


# -- admission, deadlines and bounds (issue #11) ---------------------------------------------


def start_message(call_sid=CALL_SID, stream_sid=STREAM_SID, token="valid", tracks=("inbound",)):
    """A start message; ``token="valid"`` gives a fresh token for ``call_sid``, None none at all."""
    params = {"From": "+15550001", "To": "+15550002"}
    if token == "valid":
        token = make_token(derive_key(AUTH_TOKEN), call_sid, time.time())
    if token is not None:
        params[TOKEN_PARAMETER] = token
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid,
                       "start": {"streamSid": stream_sid, "accountSid": "AC1", "callSid": call_sid, "tracks": list(tracks),
                                 "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                                 "customParameters": params}})


def assert_refused(ws, job, svc, tmp_path, call_sid=CALL_SID):
    job.join(timeout=5)
    assert job.dead and not ws.connected and ws.sent == []
    assert svc.store.get_call(call_sid) is None
    assert list(tmp_path.rglob("*.wav")) == []
    assert (svc.active_calls, svc.pending_streams, svc.workers) == (0, 0, set())
    assert svc.live_calls == {"conversation": set(), "fork": set()}


@pytest.mark.parametrize("token", [
    None,
    "",
    "1.2",
    make_token(derive_key(AUTH_TOKEN), "CA" + "f" * 32, time.time()),  # another call's
    make_token(derive_key("someone-elses-secret"), CALL_SID, time.time()),
    make_token(derive_key(AUTH_TOKEN), CALL_SID, time.time() - 3600),  # expired
], ids=["none", "empty", "malformed", "another-calls", "another-key", "expired"])  # fixed ids: pytest-xdist's workers must collect the same names
def test_a_stream_without_a_valid_token_for_its_call_is_refused(services, tmp_path, token, caplog):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(start_message(token=token))
    ws.inbox.put(media(20, SPEECH[:160]))
    assert_refused(ws, job, svc, tmp_path)
    assert any("refusing stream" in r.getMessage() for r in caplog.records)


def test_the_fixed_bearer_token_admits_a_hand_written_twiml_stream(services):
    ws, svc = FakeSocket(), services(STREAM_BEARER_TOKEN="owner-secret-0123456789")
    worker, job = run_worker(ws, svc)
    ws.inbox.put(start_message(token="owner-secret-0123456789"))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert svc.store.get_call(CALL_SID) is not None


@pytest.mark.parametrize("call_sid", ["..", "../..", ".", "CA1", "/tmp/x"])
def test_a_start_naming_a_path_is_refused_and_nothing_is_written(services, tmp_path, call_sid):
    """Even with the owner's fixed token (which is good for any call SID), ``..`` never becomes a folder."""
    ws, svc = FakeSocket(), services(STREAM_BEARER_TOKEN="owner-secret-0123456789", RECORDINGS_STORE="database")
    (tmp_path / "keep.txt").write_text("precious")
    worker, job = run_worker(ws, svc)
    ws.inbox.put(start_message(call_sid=call_sid, token="owner-secret-0123456789"))
    ws.inbox.put(media(20, SPEECH[:160]))
    ws.inbox.put(STOP)
    assert_refused(ws, job, svc, tmp_path, call_sid)
    assert (tmp_path / "keep.txt").read_text() == "precious"


def test_a_second_stream_for_a_live_call_is_refused_but_its_fork_is_not(services, tmp_path):
    svc = services()
    first, second, fork = FakeSocket(), FakeSocket(), FakeSocket()
    _, first_job = run_worker(first, svc)
    first.inbox.put(START)
    wait_for(lambda: svc.active_calls == 1)
    _, second_job = run_worker(second, svc)
    second.inbox.put(start_message(stream_sid="MZ" + "e" * 32))  # a valid token, but the call is taken
    second_job.join(timeout=5)
    assert second_job.dead and not second.connected and first.connected and svc.active_calls == 1
    _, fork_job = run_worker(fork, svc)
    fork.inbox.put(start_message(stream_sid="MZ" + "d" * 32, tracks=("inbound", "outbound")))
    wait_for(lambda: svc.active_calls == 2)
    assert svc.live_calls == {"conversation": {CALL_SID}, "fork": {CALL_SID}}
    first.inbox.put(STOP)
    fork.inbox.put(STOP.replace(STREAM_SID, "MZ" + "d" * 32))
    first_job.join(timeout=5)
    fork_job.join(timeout=5)
    assert svc.live_calls == {"conversation": set(), "fork": set()} and svc.active_calls == 0


def test_one_message_stamped_27_hours_ahead_is_dropped_and_the_call_goes_on(services, tmp_path):
    ws, svc = FakeSocket(), services(MAX_MEDIA_AHEAD_S=5.0)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    for index in range(25):  # 0.5 s of audio, then the jump, then 0.5 s more: fed in real time
        ws.inbox.put(media(20 + 20 * index, SPEECH[160 * index:160 * (index + 1)]))
        gevent.sleep(0.02)
    ws.inbox.put(media(27 * 3600 * 1000, SPEECH[:160]))
    for index in range(25, 50):
        ws.inbox.put(media(20 + 20 * index, SPEECH[160 * index:160 * (index + 1)]))
        gevent.sleep(0.02)
    ws.inbox.put(STOP)
    job.join(timeout=10)
    assert worker.dropped == {"media stamped ahead of the clock": 1}
    folder = tmp_path / "recordings" / CALL_SID
    written_bytes = sum(p.stat().st_size for p in folder.iterdir())
    print(f"a message 27 h ahead among 1 s of audio: {written_bytes} bytes written")
    assert written_bytes < 100_000, f"{written_bytes} bytes written"  # 1 s of audio: 8 kB per mono track, 32 kB stereo
    with sf.SoundFile(folder / "inbound.wav") as inbound:
        assert 50 * 160 <= inbound.frames <= 51 * 160 + 160  # the audio after the jump was recorded too
    assert svc.store.get_call(CALL_SID).to_json()["ended_at"]


def test_media_in_real_time_is_never_dropped_by_the_clock_bound(services):
    ws, svc = FakeSocket(), services(MAX_MEDIA_AHEAD_S=0.5)  # even a tight bound: Twilio's pace passes
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    for index in range(40):
        ws.inbox.put(media(20 * index, SILENT))
        gevent.sleep(0.02)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert worker.dropped == {}


def test_a_socket_that_never_starts_is_closed_after_the_start_timeout(services, tmp_path):
    ws, svc = FakeSocket(), services(START_TIMEOUT_S=0.3)
    worker, job = run_worker(ws, svc)
    ws.inbox.put('{"event": "connected", "protocol": "Call", "version": "1.0.0"}')
    gevent.sleep(0.1)
    assert svc.pending_streams == 1 and svc.active_calls == 0  # connected, not a call yet
    job.join(timeout=2)
    assert job.dead and not ws.connected
    assert (svc.pending_streams, svc.active_calls) == (0, 0)


def test_a_started_stream_that_goes_silent_is_ended_and_saved_after_the_media_timeout(services, tmp_path):
    ws, svc = FakeSocket(), services(MEDIA_TIMEOUT_S=0.4)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    Script(ws).send(SPEECH[:1600])
    began = time.monotonic()
    job.join(timeout=3)
    assert job.dead and time.monotonic() - began < 2
    record = svc.store.get_call(CALL_SID).to_json()
    assert record["ended_at"] and {r["kind"] for r in record["recordings"]} == {"inbound", "outbound", "stereo"}
    assert svc.active_calls == 0 and svc.live_calls["conversation"] == set()


def test_over_max_pending_streams_a_new_socket_is_closed_at_once(services):
    svc = services(MAX_PENDING_STREAMS=2, START_TIMEOUT_S=5)
    waiting = [FakeSocket() for _ in range(2)]
    jobs = [run_worker(ws, svc)[1] for ws in waiting]
    wait_for(lambda: svc.pending_streams == 2)
    extra = FakeSocket()
    extra_job = run_worker(extra, svc)[1]
    extra_job.join(timeout=2)
    assert extra_job.dead and not extra.connected and svc.pending_streams == 2
    waiting[0].inbox.put(START)  # a started call leaves the pending count and counts against MAX_CALLS
    wait_for(lambda: svc.active_calls == 1 and svc.pending_streams == 1)
    waiting[0].inbox.put(STOP)
    waiting[1].close()
    for job in jobs:
        job.join(timeout=5)
    assert (svc.pending_streams, svc.active_calls) == (0, 0)


def test_a_bad_dtmf_digit_is_dropped_and_the_call_goes_on(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    for digit in ["12", "x", "1" * 60000, ""]:
        ws.inbox.put(json.dumps({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": digit}}))
    ws.inbox.put(json.dumps({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"track": "inbound_track", "digit": "#"}}))
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))  # "#" reached the responder, which answered
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert worker.dropped == {"bad message": 4}
    turns = svc.store.get_call(CALL_SID).to_json()["turns"]
    assert turns[0]["dtmf"] == "#"


@pytest.mark.parametrize("log_transcripts", [False, True])
def test_words_are_logged_only_with_log_transcripts(services, caplog, log_transcripts):
    ws, svc = FakeSocket(), services(LOG_TRANSCRIPTS=log_transcripts)
    caplog.set_level("INFO")
    job = say_one_utterance(ws, svc)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert ("hello there" in text) is log_transcripts
    assert "recognized 11 characters" in text or log_transcripts


def test_production_does_not_log_words_unless_asked():
    assert load_settings({"APP_ENV": "production"}).log_transcripts is False
    assert load_settings({"APP_ENV": "production", "LOG_TRANSCRIPTS": "true"}).log_transcripts is True
    assert load_settings({}).log_transcripts is True


@pytest.mark.parametrize("failure,category", [("recognizer", "recognition failed"), ("responder", "responder failed")])
def test_an_engines_own_error_text_stays_in_the_log(services, caplog, failure, category):
    class LeakyRecognizer(FakeRecognizer):
        def transcribe(self, pcm, sample_rate, **queue_options):
            raise RuntimeError("401 for key sk-SECRET at https://internal.example/v1")

    def leaky_streaming_responder(text, call):
        yield "Let me see. I know this one. "
        time.sleep(0.3)  # in an engine thread: the first sentence is spoken meanwhile
        raise RuntimeError("401 for key sk-SECRET at https://internal.example/v1")

    ws, svc = FakeSocket(), services(recognizer=LeakyRecognizer() if failure == "recognizer" else None,
                                     responder=leaky_streaming_responder if failure == "responder" else echo,
                                     APOLOGY_MESSAGE="Sorry.")
    job = say_one_utterance(ws, svc)
    wait_for(lambda: "raised" in caplog.text or failure == "recognizer")
    gevent.sleep(0.1)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    turns = svc.store.get_call(CALL_SID).to_json()["turns"]
    assert "sk-SECRET" not in json.dumps(turns)
    assert [t["error"] for t in turns if "error" in t] == [category]
    assert "sk-SECRET" in caplog.text  # for the operator


def test_a_stream_whose_parameters_were_dropped_is_admitted_by_the_upgrades_bearer_token(services):
    ws, svc = FakeSocket(), services()
    token = make_token(derive_key(AUTH_TOKEN), CALL_SID, time.time())
    worker = CallWorker(ws, svc, bearer_token=token)
    job = gevent.spawn(worker.run)
    ws.inbox.put(start_message(token=None))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert svc.store.get_call(CALL_SID) is not None
    ws, svc = FakeSocket(), services()
    refused = gevent.spawn(CallWorker(ws, svc, bearer_token=make_token(derive_key(AUTH_TOKEN), "CA" + "f" * 32, time.time())).run)
    ws.inbox.put(start_message(token=None))
    refused.join(timeout=5)
    assert not ws.connected and ws.sent == []


class RecordingEngines:
    """A recognizer and a synthesizer that note the queue options each call got."""

    name = "recording"

    def __init__(self):
        self.recognitions, self.sentences = [], []

    def transcribe(self, pcm, sample_rate, **queue_options):
        self.recognitions.append(queue_options)
        return "hello there. how are you today"

    def synthesize(self, text, **queue_options):
        self.sentences.append((text, queue_options))
        return FakeSynthesizer().synthesize(text)

    def warm_up(self):
        pass


def test_engine_work_is_queued_by_deadline_and_given_up_when_not_wanted(services):
    engines = RecordingEngines()
    svc = services(recognizer=engines, SPECULATION_PAUSE_MS=0)
    svc.synthesizer = engines
    ws = FakeSocket()
    job = say_one_utterance(ws, svc)
    wait_for(lambda: len(engines.sentences) >= 2)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert [options["priority"] for options in engines.recognitions] == [Priority.CRITICAL]
    (first, first_options), (later, later_options) = engines.sentences[:2]
    assert first.startswith("You said") and first_options["priority"] == Priority.CRITICAL
    assert later_options["priority"] == Priority.SOON  # needed only once the first sentence has played
    # Every engine call carried a token, cancelled once its job was over (a queued item is then skipped).
    tokens = [o["cancel"] for o in engines.recognitions] + [o["cancel"] for _, o in engines.sentences]
    assert all(isinstance(token, CancelToken) and token.cancelled for token in tokens)


class CountingSynthesizer(FakeSynthesizer):
    def __init__(self):
        self.texts = []

    def synthesize(self, text, **queue_options):
        self.texts.append(text)
        return super().synthesize(text)


def test_fixed_phrases_are_synthesized_once_and_what_callers_say_never_cached(services):
    svc = services(GREETING="Hello there. Say something.")
    svc.synthesizer = CountingSynthesizer()
    for _ in range(2):
        ws = FakeSocket()
        job = say_one_utterance(ws, svc)
        ws.inbox.put(STOP)
        job.join(timeout=5)
        assert job.dead
    texts = svc.synthesizer.texts
    assert texts.count("Hello there.") == 1 and texts.count("Say something.") == 1  # the second call's came from the cache
    assert texts.count("You said: hello there") >= 2  # a reply is the caller's words: synthesized each time
    assert svc.phrases.hits == 2 and len(svc.phrases) == 2


def test_a_call_counts_in_admission_control_from_its_start_until_it_ends(services):
    ws, svc = FakeSocket(), services()
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    wait_for(lambda: svc.active_calls == 1)
    decision = svc.admission.decide(time.monotonic(), 0.0, 1.0)
    assert (decision.fresh, decision.settled) == (1, 0)  # its first turn is still to come
    script = Script(ws)
    script.send(SPEECH)
    script.pause(1000)
    wait_for(lambda: any(m["event"] == "mark" for m in ws.sent))
    decision = svc.admission.decide(time.monotonic(), 0.0, 1.0)
    assert (decision.fresh, decision.settled) == (0, 1)  # its first reply is ready: its turns now spread out
    ws.inbox.put(STOP)
    job.join(timeout=5)
    decision = svc.admission.decide(time.monotonic(), 0.0, 1.0)
    assert (decision.fresh, decision.settled) == (0, 0)


def test_a_speculative_recognition_is_promoted_when_its_pause_becomes_the_endpoint(services, monkeypatch):
    # The slow fake's killed jobs sleep on in their threads: do not let them decline speculation.
    monkeypatch.setattr(Services, "recognizer_busy", property(lambda self: False))
    promoted = []

    class SlowRecognizer(FakeRecognizer):
        def transcribe(self, pcm, sample_rate, **queue_options):
            queue_options["cancel"]._promote = promoted.append  # what an engine queue would do with it
            self.priorities.append(queue_options["priority"])
            time.sleep(0.5)  # still "queued" when the endpoint comes (the script runs 10x real time)
            return super().transcribe(pcm, sample_rate)

    recognizer = SlowRecognizer()
    recognizer.priorities = []
    ws, svc = FakeSocket(), services(recognizer=recognizer)
    job = say_one_utterance(ws, svc)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    # Every recognition here starts in a pause; only the one whose pause became the endpoint was promoted.
    assert len(recognizer.priorities) >= 1 and set(recognizer.priorities) == {Priority.SPECULATIVE}
    assert promoted == [Priority.CRITICAL]


def test_with_other_calls_on_the_line_speculation_waits_for_an_idle_recognizer(services, monkeypatch):
    monkeypatch.setattr("runtime.services.usable_cores", lambda: 2)
    svc = services()
    svc.active_calls, svc.recognitions_running = 1, 1
    assert not svc.recognizer_busy  # alone: up to one recognition per core
    svc.recognitions_running = 2
    assert svc.recognizer_busy
    svc.active_calls, svc.recognitions_running = 3, 1
    assert svc.recognizer_busy  # others may need the engine threads for their finished turns
    svc.recognitions_running = 0
    assert not svc.recognizer_busy

    class RemoteRecognizer(FakeRecognizer):
        def cost_core_s(self, audio_s):
            return 0.0  # the work runs elsewhere

    svc.recognizer, svc.recognitions_running = RemoteRecognizer(), 50
    assert not svc.recognizer_busy


def street_noise_ulaw(level_dbfs: float, seconds: float) -> bytes:
    """Real street traffic (tests/data/noise/street.flac) at an RMS of ``level_dbfs``, μ-law 8 kHz."""
    samples, rate = sf.read(Path(__file__).parent / "data" / "noise" / "street.flac", dtype="float64")
    narrow = resample(samples, rate, 8000)[: int(seconds * 8000)]
    return array_to_ulaw(narrow * 10 ** (level_dbfs / 20) / np.sqrt(np.mean(narrow ** 2)))


@pytest.mark.parametrize("vad,speech_in_noise", [("webrtc", True), ("silero", False), ("hybrid", False)])
def test_vad_setting_chooses_the_detector(services, vad, speech_in_noise):
    # Street noise 10 dB under the caller's speech: WebRTC VAD takes it for speech, Silero VAD does not,
    # nor WebRTC confirmed by Silero (the default; docs/benchmarks.md, "Silero VAD"); they hear the
    # caller's "one two three" after it.
    recognizer = FakeRecognizer()
    ws, svc = FakeSocket(), services(recognizer=recognizer, VAD=vad)
    worker, job = run_worker(ws, svc)
    ws.inbox.put(START)
    script = Script(ws)
    script.send(street_noise_ulaw(-25, 3.0))
    wait_for(ws.inbox.empty)
    assert worker.session._endpointer.in_speech is speech_in_noise
    if not speech_in_noise:
        script.pause(1000)
        script.send(SPEECH)
        script.pause(1000)
        wait_for(lambda: recognizer.calls > 0)
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert job.dead and job.exception is None


def test_a_recognition_cancelled_before_it_ran_is_an_empty_result_not_an_error(services):
    # What the engine queue raises for an item its caller gave up on (a continuation, a hang-up).
    class Cancelled(FakeRecognizer):
        def transcribe(self, pcm, sample_rate, **queue_options):
            raise RecognitionError("whisper: cancelled before it ran")

    s = services(recognizer=Cancelled())
    token = CancelToken()
    with pytest.raises(RecognitionError):  # still wanted: a real failure
        s.recognize(b"\0\0" * 160, 8000, cancel=token)
    token.cancel()
    assert s.recognize(b"\0\0" * 160, 8000, cancel=token) == ""
    assert s.recognitions_running == 0
