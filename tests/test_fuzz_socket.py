"""Socket-level fuzzing: mutated Twilio messages on several connections beside a normal call.

At least 10,000 mutated messages (bad JSON, missing and mistyped fields, bad base64, odd payload
sizes, timestamp jumps, binary frames, wrong stream SIDs, repeated starts and stops, unknown events)
go to the real server over 4 concurrent WebSockets while callsim places a normal call on real speech.
The normal call's transcript must be unchanged and the server must stay up.
"""

import base64
import copy
import json
import random
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
import websocket

from tests.test_e2e import ONE_TWO_THREE, free_port, run_callsim, start_server, stop_server, turns
from tools.wer import word_error_rate

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent / "data" / "twilio"
CONNECTIONS = 4
MESSAGES_PER_CONNECTION = 2600



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``python app.py`` without admission control: the flood's connections are admitted calls that
    never speak, which it would rightly count as callers about to speak and refuse the normal call."""
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    process, url = start_server([sys.executable, "app.py"], log_path, free_port(), OVERLOAD_REPLY_BUDGET_MS="0")
    yield url
    stop_server(process)

def fixtures() -> list[dict]:
    names = ["connected.json", "start_bidirectional.json", "media_inbound.json", "dtmf.json", "mark.json", "stop.json",
             "signalwire_start.json", "signalwire_dtmf.json", "start_fork_both_tracks.json", "media_outbound.json"]
    # Twilio's placeholder SIDs made real-shaped, as in admitted_start: mutations then reach the call.
    return [json.loads((FIXTURES / name).read_text().replace("X" * 30, "0" * 32)) for name in names]


WEIRD_VALUES = [None, 0, -1, 2**63, 1.5, "", "x" * 300, [], {}, [1, "a"], {"a": {"b": None}}, True, "∞", "\x00"]


def mutate(rng: random.Random, message: dict) -> str | bytes:
    """One mutation of a real message: the server must treat the result as bad input, never crash."""
    message = copy.deepcopy(message)
    choice = rng.randrange(12)
    paths = [(message, k) for k in message] + [(v, k) for v in message.values() if isinstance(v, dict) for k in v]
    if choice == 0 and paths:  # drop a field
        parent, key = rng.choice(paths)
        parent.pop(key, None)
    elif choice == 1 and paths:  # a field of the wrong type
        parent, key = rng.choice(paths)
        parent[key] = rng.choice(WEIRD_VALUES)
    elif choice == 2:  # payload that is not base64, or of an odd size
        media = message.setdefault("media", {})
        media["payload"] = rng.choice(["@@not-base64@@", base64.b64encode(rng.randbytes(rng.randrange(0, 999))).decode(), "QUJD="])
        media.setdefault("timestamp", str(rng.randrange(0, 10**6)))
        message["event"] = "media"
    elif choice == 3:  # timestamps that jump, repeat or run backwards
        message = {"event": "media", "streamSid": message.get("streamSid"), "media": {
            "track": "inbound", "chunk": "1", "timestamp": str(rng.choice([0, 5, 10**9, -40, 2**40])),
            "payload": base64.b64encode(rng.randbytes(160)).decode()}}
    elif choice == 4:
        return rng.randbytes(rng.randrange(1, 500))  # a binary frame
    elif choice == 5:
        text = json.dumps(message)
        return text[: rng.randrange(len(text))]  # truncated JSON
    elif choice == 6:
        message["event"] = rng.choice(["closed", "close", "hello", "", "MEDIA", "clear"])
    elif choice == 7:
        message["streamSid"] = "MZ" + rng.randbytes(16).hex()  # another stream
    elif choice == 8:
        return json.dumps(rng.choice(WEIRD_VALUES))  # valid JSON, not an object
    elif choice == 9:  # a big (but allowed) media message
        message = {"event": "media", "media": {"track": "inbound", "timestamp": "20",
                                               "payload": base64.b64encode(rng.randbytes(30000)).decode()}}
    elif choice == 10:
        return json.dumps(message).replace('"', "'")  # not JSON at all
    return json.dumps(message)


def admitted_start(url: str, call_sid: str) -> dict:
    """A start the server admits: real-shaped SIDs and the stream token its webhook gives this call."""
    twiml = ET.fromstring(requests.post(url + "/incoming-call", data={"CallSid": call_sid}, timeout=10).text)
    parameters = {p.get("name"): p.get("value") for p in twiml.iter("Parameter")}
    stream_sid = "MZ" + "0" * 32  # the SID of the fixtures' messages, made real-shaped in fixtures()
    return {"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
        "streamSid": stream_sid, "accountSid": "AC" + "0" * 32, "callSid": call_sid, "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}, "customParameters": parameters}}


def flood(url: str, seed: int, sent: list[int]) -> None:
    rng = random.Random(seed)
    messages = fixtures()
    start = admitted_start(url, f"CA{seed:032x}")
    ws = None
    count = 0
    while count < MESSAGES_PER_CONNECTION:
        try:
            if ws is None:
                ws = websocket.create_connection(url.replace("http", "ws") + "/media-stream", timeout=10)
                ws.send(json.dumps(start))
            payload = mutate(rng, rng.choice(messages))
            if isinstance(payload, bytes):
                ws.send_binary(payload)
            else:
                ws.send(payload)
            count += 1
            time.sleep(0.003)  # spread over the normal call (about 10 s per connection)
        except (websocket.WebSocketException, OSError):
            ws = None  # the server ended that call (a mutated stop, an oversized message): reconnect
    sent.append(count)
    if ws is not None:
        ws.close()


def test_ten_thousand_mutated_messages_beside_a_normal_call(server, tmp_path):
    sent: list[int] = []
    threads = [threading.Thread(target=flood, args=(server, seed, sent)) for seed in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    report, _ = run_callsim(tmp_path, ONE_TWO_THREE, ONE_TWO_THREE, url=server)
    for thread in threads:
        thread.join(timeout=300)
    print(f"mutated messages sent: {sum(sent)} over {CONNECTIONS} connections beside 1 normal call")
    assert sum(sent) >= 10_000
    callers = turns(report, "caller")
    assert [word_error_rate("one two three", t["text"]) for t in callers] == [0, 0]
    assert requests.get(server + "/", timeout=5).json()["status"] == "ok"
