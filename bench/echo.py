"""Echo on a speakerphone: false barge-ins and barge-in reaction, with and without echo handling (issue #14).

The bot's voice (``tests/data/jfk.flac`` after the phone path, as μ-law sent by the server)
leaks back into the caller's track at ``--echo-db`` and ``--delay-ms``; a caller
(``sr_english.wav``, at its recorded level) talks over it ``--caller-at-s`` into the bot's
audio. Each inbound stream runs through a real ``CallSession`` (WebRTC VAD mode 3, the default
endpointing) whose greeting is the bot audio, and the ``clear`` messages it sends are counted:

* *false barge-ins*: clears on the echo alone (no caller);
* *reaction*: from the caller's first voiced frame to the clear, with the caller talking.

Echo conditions: none (a handset), a scaled copy of the bot audio, or the bot audio through a
simulated room and loudspeaker (``tests.test_echo.room_echo_of``). Handling: none; an energy
gate alone (``audio.echo``'s gate, for the whole call: a frame no louder than the loudest bot
audio of the last 500 ms minus 7 dB is silenced); WebRTC AEC3 with the gate while it learns, from
the first frame (before the echo detector); and what ``ECHO_CANCELLATION=true`` runs
(``audio.echo.EchoCanceller``): the gate until ``audio.echo_detect`` has found an echo, then
AEC3 (gated while it learns), or nothing on a line found to carry no echo. Also when the
detector decides, and the CPU per second of bot audio.

Usage::

    python bench/echo.py [--caller-at-s 1.5,6]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio.codec import array_to_ulaw  # noqa: E402
from audio.echo import EchoCanceller  # noqa: E402
from audio.vad import WebRtcVad  # noqa: E402
from tests.test_echo import RATE, echo_of, phone_frames, room_echo_of, run_call, speech  # noqa: E402

CONDITIONS = (  # (echo dB or None for a handset, delay ms, through a room)
    (None, 0, False), (-20, 160, False), (-10, 50, False), (-10, 160, False), (-10, 300, False), (-6, 160, False),
    (-20, 160, True), (-10, 300, True),
)


class _PassThrough:
    def __init__(self, sample_rate: int) -> None:
        pass

    def far(self, pcm: bytes) -> None:
        pass

    def near(self, pcm: bytes) -> bytes:
        return pcm


HANDLING = {
    "none": lambda: None,
    "energy gate alone": lambda: EchoCanceller(RATE, 20, learn_ms=10**9, make_processor=_PassThrough, detect=False),
    "AEC3 + gate while learning (before the detector)": lambda: EchoCanceller(RATE, 20, detect=False),
    "**AEC3 once an echo is found (`ECHO_CANCELLATION=true`)**": lambda: EchoCanceller(RATE, 20),
}


def decided_ms(near, bot_ulaw) -> str:
    """When the echo detector decides, and what (media time from the bot audio's start)."""
    canceller = EchoCanceller(RATE, 20)
    canceller.play(0, b"".join(phone_frames(ulaw_array(bot_ulaw))))
    for i, frame in enumerate(phone_frames(near)):
        canceller.process(frame, i * 20)
        if canceller.detector.state.value != "unknown":
            return f"{canceller.detector.state.value} at {i * 20} ms"
    return "unknown"


def ulaw_array(ulaw: bytes):
    import numpy as np

    from audio.codec import ulaw_to_pcm16
    return np.frombuffer(ulaw_to_pcm16(ulaw), "<i2").astype(np.float64) / 32768


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--caller-at-s", default="1.5,6", help="when the caller starts talking over the bot, s")
    args = parser.parse_args()
    starts_s = [float(x) for x in args.caller_at_s.split(",")]
    bot = speech("jfk.flac")
    bot_ulaw = array_to_ulaw(bot)
    caller = speech("sr_english.wav")
    vad = WebRtcVad(3, RATE, 20)
    first_voiced = next(i for i, frame in enumerate(phone_frames(caller)) if vad.is_speech(frame))
    print(f"Machine: {platform.machine()}, Python {platform.python_version()}; bot {len(bot) / RATE:.1f} s of speech")
    header = "| handling | echo | false barge-ins | " + " | ".join(f"reaction ms, caller at {s:g} s" for s in starts_s) + " |"
    print(header)
    print("|" + "---|" * (3 + len(starts_s)))
    for name, make in HANDLING.items():
        for condition in CONDITIONS:
            near = inbound(bot, *condition)
            false_clears = run_call(near, bot_ulaw, make())
            reactions = []
            for start_s in starts_s:
                talk = near.copy()
                start = int(start_s * RATE)
                n = min(len(caller), len(talk) - start)
                talk[start:start + n] += caller[:n]
                clears = run_call(talk, bot_ulaw, make())
                onset_ms = int(start_s * 1000) + first_voiced * 20
                after = [c - onset_ms for c in clears if c >= onset_ms]
                reactions.append(str(after[0]) if after else "missed")
            print(f"| {name} | {describe(*condition)} | {len(false_clears)} | " + " | ".join(reactions) + " |", flush=True)
    print("\nEcho detector's decision (the echo alone; the caller talking over the bot from 0.5 s):")
    for condition in CONDITIONS:
        near = inbound(bot, *condition)
        talk = near.copy()
        talk[RATE // 2 : RATE // 2 + len(caller)] += caller[: len(talk) - RATE // 2]
        print(f"- {describe(*condition)}: {decided_ms(near, bot_ulaw)}; with the caller: {decided_ms(talk, bot_ulaw)}")
    for label, echo_db in (("with an echo (-10 dB, the canceller runs)", -10),
                           ("on a handset (no echo: the detector alone after the first second)", None)):
        canceller = EchoCanceller(RATE, 20)
        canceller.play(0, b"".join(phone_frames(bot)))
        frames = phone_frames(inbound(bot, echo_db, 160, False))
        cpu0 = time.process_time()
        for i, frame in enumerate(frames):
            canceller.process(frame, i * 20)
        cpu_ms = (time.process_time() - cpu0) * 1000
        print(f"CPU {label}: {cpu_ms / (len(frames) * 0.02):.1f} ms per second of bot audio "
              f"({cpu_ms * 1000 / len(frames):.0f} µs per 20 ms frame)")


def inbound(bot, echo_db: float | None, delay_ms: int, room: bool):
    """The caller's line with the bot's echo alone: nothing on a handset (``echo_db`` None)."""
    if echo_db is None:
        return echo_of(bot, -200, 0, len(bot))
    return (room_echo_of if room else echo_of)(bot, echo_db, delay_ms, len(bot))


def describe(echo_db: float | None, delay_ms: int, room: bool) -> str:
    return "handset (no echo)" if echo_db is None else f"{echo_db} dB, {delay_ms} ms{', room' if room else ''}"


if __name__ == "__main__":
    main()
