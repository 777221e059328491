"""Benchmark: how many concurrent calls one web process carries when the engines are services.

Issue #13, part 5. The web process runs ``RECOGNIZER=openai`` and ``SYNTHESIZER=openai``
against a stub of an OpenAI-compatible speech server that answers after a fixed delay
(``--transcribe-ms``, default 300, with a fixed text; ``--speech-ms``, default 150, per sentence
with ``--audio-ms`` of a 24 kHz tone as ``pcm``). A stub is right here: this measures the web
process (media path, HTTP clients, engine threads, resampling and encoding of the replies), not
recognition. The stub runs in its own process (``tests/engine_server.py`` with stub engines, a
thread per connection), so its CPU is not the web process's.

The load is ``bench/load.py`` (``--forks none``; its conversations: real speech from the corpus,
greeting, echo replies, Twilio's playback buffer modelled; voice-to-voice, hub blocks, CPU and
memory of the server) with ``--server-env`` pointing the server at the stub. Arguments after
``--`` go to bench/load.py as they are.

Usage: python bench/remote_engines.py [--conversations 25,50,100] [--transcribe-ms 300]
       [--speech-ms 150] [--audio-ms 1500] [--out /tmp/remote_engines.md] [-- more load.py args]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

STUB_TEXT = "one two three"


def serve(port: int, transcribe_ms: int, speech_ms: int, audio_ms: int) -> None:
    """The stub engine server: answers each request after its fixed delay; prints its URL."""
    import numpy as np

    from tests.engine_server import PCM_SAMPLE_RATE, EngineServer

    samples = int(PCM_SAMPLE_RATE * audio_ms / 1000)
    tone = (np.sin(2 * np.pi * 220 * np.arange(samples) / PCM_SAMPLE_RATE) * 6000).astype(np.int16)

    def transcribe(pcm: bytes, sample_rate: int) -> str:
        time.sleep(transcribe_ms / 1000)
        return STUB_TEXT

    def synthesize(text: str):
        time.sleep(speech_ms / 1000)
        return tone, PCM_SAMPLE_RATE

    server = EngineServer(transcribe, synthesize)
    server._server.request_queue_size = 1024
    with server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", default="25,50,100", help="concurrent conversations per level")
    parser.add_argument("--transcribe-ms", type=int, default=300, help="stub's delay per transcription, ms")
    parser.add_argument("--speech-ms", type=int, default=150, help="stub's delay per sentence, ms")
    parser.add_argument("--audio-ms", type=int, default=1500, help="audio per synthesized sentence, ms")
    parser.add_argument("--out", type=Path, default=Path("/tmp/remote_engines.md"))
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)  # internal: run the stub
    args, rest = parser.parse_known_args()
    if args.serve is not None:
        serve(args.serve, args.transcribe_ms, args.speech_ms, args.audio_ms)
        return
    rest = [item for item in rest if item != "--"]
    stub = subprocess.Popen(
        [sys.executable, __file__, "--serve", "0", "--transcribe-ms", str(args.transcribe_ms),
         "--speech-ms", str(args.speech_ms), "--audio-ms", str(args.audio_ms)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        url = stub.stdout.readline().strip()
        if not url.startswith("http://"):
            sys.exit(f"the stub engine server did not start ({url!r})")
        print(f"stub engine server at {url} (transcription {args.transcribe_ms} ms, speech {args.speech_ms} ms "
              f"for {args.audio_ms} ms of audio)", file=sys.stderr)
        server_env = ["RECOGNIZER=openai", f"RECOGNIZER_BASE_URL={url}", "SYNTHESIZER=openai",
                      f"SYNTHESIZER_BASE_URL={url}", "RECOGNIZER_MODEL=stub", "SYNTHESIZER_MODEL=stub"]
        command = [sys.executable, "bench/load.py", "--conversations", args.conversations, "--forks", "none",
                   "--out", str(args.out)]
        for item in server_env:
            command += ["--server-env", item]
        command += rest
        print("$ " + " ".join(command), file=sys.stderr, flush=True)
        result = subprocess.run(command, cwd=REPO)
    finally:
        stub.terminate()
        stub.wait(timeout=10)
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
