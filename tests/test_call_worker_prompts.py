"""Audio prompts through the gevent shell: a responder's Play loaded from a real file (in a thread,
once), sent and marked like a sentence; a missing file leaves the call going."""

import json

import numpy as np
import soundfile as sf

from core.responder import Goodbye, Play
from tests import test_call_worker
from tests.test_call_worker import CALL_SID, STOP, STREAM_SID, FakeSocket, echo_marks, say_one_utterance, wait_for

services = test_call_worker.services  # the fixture: fake engines, a real store


def write_tone(path, duration_s, sample_rate=16000):
    t = np.arange(round(duration_s * sample_rate)) / sample_rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate)
    return str(path)


def events(ws):
    return [m["event"] for m in ws.sent]


def finish(ws, job, svc):
    """Echo every mark, stop the call and return its bot turns."""
    for message in [m for m in ws.sent if m["event"] == "mark"]:
        ws.inbox.put(json.dumps({"event": "mark", "sequenceNumber": "50", "streamSid": STREAM_SID, "mark": message["mark"]}))
    ws.inbox.put(STOP)
    job.join(timeout=5)
    assert job.dead and job.exception is None
    return [t for t in svc.store.get_call(CALL_SID).to_json()["turns"] if t["speaker"] == "bot"]


def test_a_prompt_in_a_list_reply_is_loaded_once_and_sent_between_the_sentences(services, tmp_path):
    prompt = write_tone(tmp_path / "hold.wav", 1.0)
    svc = services(responder=lambda text, call: ["Please hold.", Play(prompt), "Thanks for waiting."])
    for call in range(2):
        ws = FakeSocket()
        job = say_one_utterance(ws, svc)
        wait_for(lambda: events(ws).count("mark") == 3)
        # Fake voice: 0.1 s a word, 20 ms a message: 2 words, the 1 s prompt, 3 words.
        assert events(ws) == ["media"] * 10 + ["mark"] + ["media"] * 50 + ["mark"] + ["media"] * 15 + ["mark"]
        [bot] = finish(ws, job, svc)
        assert bot["text"] == "Please hold. [played hold.wav] Thanks for waiting." and "error" not in bot
    assert svc.prompts.loads == 1 and svc.prompts.hits >= 1  # the second call's came from the cache


def test_a_missing_prompt_is_left_out_and_the_call_goes_on(services, tmp_path):
    missing = str(tmp_path / "nowhere.wav")
    svc = services(responder=lambda text, call: ["Please hold.", Play(missing), "Thanks for waiting."])
    ws = FakeSocket()
    job = say_one_utterance(ws, svc)
    wait_for(lambda: events(ws).count("mark") == 2)
    assert events(ws) == ["media"] * 10 + ["mark"] + ["media"] * 15 + ["mark"]
    assert not job.dead
    [bot] = finish(ws, job, svc)
    assert bot["text"] == "Please hold. Thanks for waiting." and bot["error"] == "prompt failed"


def test_a_streaming_responder_may_yield_a_prompt(services, tmp_path):
    prompt = write_tone(tmp_path / "jingle.flac", 0.5, sample_rate=44100)

    def streaming(text, call):
        yield "One moment"
        yield Play(prompt)
        yield " Here it is."

    svc = services(responder=streaming)
    ws = FakeSocket()
    job = say_one_utterance(ws, svc)
    wait_for(lambda: events(ws).count("mark") == 3)
    assert events(ws) == ["media"] * 10 + ["mark"] + ["media"] * 25 + ["mark"] + ["media"] * 15 + ["mark"]
    [bot] = finish(ws, job, svc)
    assert bot["text"] == "One moment [played jingle.flac] Here it is."


def test_a_goodbye_in_a_list_hangs_up_once_the_prompt_after_it_has_played(services, tmp_path):
    prompt = write_tone(tmp_path / "chime.wav", 0.2)
    svc = services(responder=lambda text, call: [Goodbye("Thanks, bye."), Play(prompt)])
    ws = FakeSocket()
    job = say_one_utterance(ws, svc)
    wait_for(lambda: events(ws).count("mark") == 2)
    assert ws.connected  # not before the goodbye and its chime have played
    echo_marks(ws, 0)
    job.join(timeout=5)
    assert job.dead and not ws.connected
    bot = svc.store.get_call(CALL_SID).to_json()["turns"][-1]
    assert bot["text"] == "Thanks, bye. [played chime.wav]"
