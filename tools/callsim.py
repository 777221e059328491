"""Simulate Twilio's (or SignalWire's) side of a phone call against a callstream server.

One command plays the whole loop: the voice webhook, the TwiML answer, the
bidirectional Media Stream (``<Connect><Stream>``) and the caller's audio, in
real time, while modelling Twilio's playback buffer for the bot's audio. With
``--fork`` it plays a forwarded call's listen-only ``<Start><Stream>`` fork instead
(both sides of the call streamed, nothing accepted back; see "Fork mode").

Usage::

    python tools/callsim.py [--url http://127.0.0.1:5050] [options] ITEM...
    python tools/callsim.py --fork [--gap-s 0.8] [--tail-s 2.0] [options] ITEM...
    python tools/callsim.py --signalwire [--codec L16@16000h] [--signing-key KEY] [options] ITEM...
    python tools/callsim.py --echo-db -20 [--echo-delay-ms 160] [options] ITEM...
    python tools/callsim.py --noise FILE:SNR [options] ITEM...

ITEM is the script, played in order (fork mode: see "Fork mode" below):

* ``PATH``         an audio file soundfile can read (wav, flac, ogg...), mixed to
                   mono, soxr-resampled to 8 kHz and μ-law encoded (SignalWire L16:
                   to 16/24 kHz PCM, see below), then spoken as 20 ms media messages.
* ``dtmf:DIGITS``  one ``dtmf`` message per digit (0-9, ``*``, ``#``), 100 ms apart.
* ``silence:SECONDS``  that much μ-law silence.
* ``interrupt:SECONDS``  barge in: the wait before the next item ends once the bot's
                   reply has played for SECONDS (instead of waiting until it is quiet).
* ``over:SECONDS:FILE``  a backchannel or a cough: during the wait before the next item,
                   once the bot's reply has played for SECONDS, the caller says FILE over it,
                   then goes on waiting until the bot is quiet (not a barge-in: the next
                   item waits as usual). Several in one wait are said in order of SECONDS;
                   one whose time never comes (the reply stopped first) is not said, and
                   the timeline says so. FILE may contain colons.
* ``callee:PATH``  (``--fork`` only) an audio file the dialled party speaks, on the
                   outbound track.

Before the first item (unless ``--no-wait-greeting``), between items and after
the last one, the caller keeps sending μ-law silence (0xFF, as a phone line
does) until the bot is quiet: no bot audio queued in the playback buffer, none
received or played for ``--quiet-s``, at least ``--min-wait-s`` spent waiting,
and, after an audio or DTMF item, a reply has started. ``--turn-timeout-s`` bounds
every wait. Then it sends ``stop`` and closes the socket.

Without ``--url`` the server runs in this process: ``app.create_app()`` served
by ``app.make_server(app, "127.0.0.1", 0)`` from the repository root.

Fork mode (``--fork``): a forwarded call with a listen-only fork. The voice
webhook is ``{url}/forward-call`` (same form fields) and must answer with a
unidirectional ``<Start><Stream>`` (its ``url``, ``track`` — default
``inbound_track`` —, ``statusCallback``, ``statusCallbackMethod``, ``name`` and
``<Parameter>``s are read; the ``<Dial>`` target is printed, not dialled). The
``start`` message's ``tracks`` follow ``track`` (inbound_track → ["inbound"],
outbound_track → ["outbound"], both_tracks → ["inbound","outbound"]). Every
20 ms one media message per track is sent (μ-law silence when that side is
quiet), all with the same timestamp. ITEMs are the caller's (inbound track), plus
``callee:PATH``, an audio file the dialled party speaks (outbound track); they
play one after another, ``--gap-s`` apart, then ``--tail-s`` of silence, then
``stop``. ``dtmf:``, ``interrupt:`` and ``over:`` items are refused (Twilio sends no DTMF on
a fork; there is no bot to interrupt), and ``callee:`` items are refused without
``--fork``. Any message from the server is a protocol violation (Twilio error
31924: nothing may be sent on a unidirectional stream).

Status callbacks (both modes): when the ``<Stream>`` has ``statusCallback``,
``stream-started`` is sent right after the ``start`` message, ``stream-stopped``
after ``stop`` (or when the server closed the socket), and ``stream-error`` if
the WebSocket could not be opened: a form-encoded POST (or a GET with
``statusCallbackMethod="GET"``) with AccountSid, CallSid, StreamSid, StreamName,
StreamEvent, Timestamp (ISO 8601 UTC) [protocol.md §5], signed like the webhook
with ``--auth-token``. A relative URL resolves against the webhook URL; an
``https://`` one is requested over ``http://`` when the webhook is plain
``http://``. A 404 answer is noted (an older server); other failures go in the
report's errors (exit code 1) without stopping the call.

SignalWire (``--signalwire``): SignalWire's cXML variant of the same call [protocol.md §9,
fixtures ``signalwire_*.json``]. The webhook form has the same fields; every SID is a UUID.
Messages: ``connected`` version "0.2.0"; ``start`` without a top-level streamSid, with
``customParameters`` only when the ``<Stream>`` has ``<Parameter>``s, and ``mediaFormat`` from
the codec; ``media`` without streamSid; ``dtmf`` as ``{streamSid, dtmf{duration (ms, a number),
digit}}``; mark echoes without sequenceNumber; ``stop`` as ``{event, sequenceNumber}``. The
``<Stream codec>`` attribute chooses the audio both ways: none is μ-law 8 kHz; ``L16@16000h`` /
``L16@24000h`` is 16-bit little-endian PCM at 16 / 24 kHz (640 / 960 bytes per 20 ms message;
audio files are soxr-resampled to that rate, no μ-law on the way), and the server's media must be
whole L16 samples (decoded as PCM16 for playback and ``--out``). ``--codec`` applies only when the
TwiML has no codec (to try a server's L16 path before its TwiML asks for it); when the TwiML has
one, it wins. ``--signing-key`` signs the webhook and the status callbacks with
``X-SignalWire-Signature`` (Twilio's HMAC scheme) [SW-VALID]; the WebSocket upgrade is not signed
(SignalWire documents no signature there) and carries ``Authorization: Bearer`` when the
``<Stream>`` has ``authBearerToken`` [SW-STREAM]. ``--codec``/``--signing-key`` without
``--signalwire``, or ``--auth-token`` with it, are bad arguments. Everything else (playback
buffer, marks, clear, waits, latency, forks, status callbacks) is as for Twilio.

Speakerphone echo (``--echo-db DB``, conversations only): the bot's audio as played to the
caller leaks back into their microphone, ``--echo-delay-ms`` (default 160, 0..2000; it need not
be a multiple of 20) later and ``DB`` dB (<= 0; -20 is a tenth of the amplitude) below it, added in
linear PCM to every inbound media message, the silence the caller sends while waiting included
(``tools.twilio_sim.echo.EchoPath``). Without ``--echo-db`` the caller's frames are sent as
they are. ``--echo-db`` with ``--fork`` is a bad argument (a fork has no bot audio).

Background noise (``--noise FILE:SNR``, both modes): a recording (any file soundfile reads, e.g. the
real street, babble and music in ``tests/data/noise/``) is mixed to mono, soxr-resampled to the
stream's rate and looped under every inbound media message the caller sends (speech, the silence
while waiting, DTMF ticks; with ``--echo-db`` on top of the echo), added in linear PCM like the echo
(``tools.twilio_sim.noise.LineNoise``). SNR is in dB relative to the caller's *active speech level*:
the RMS of the 20 ms frames of the script's (caller's) audio items, as the stream carries them,
whose own RMS is within 30 dB of the loudest frame, so pauses do not count; the noise's level is
the RMS of the whole recording at the stream's rate. SNR must be within -20..60; FILE must be
readable and not all silence, and the script needs an audio item (the level's reference): otherwise
it is a bad argument (exit code 2). Without ``--noise`` the line is clean.

Outbound calls and transfers (``--answer``, ``--voicemail FILE``, ``--api-port PORT``): callsim runs a
stand-in of Twilio's REST API (``tools.twilio_sim.rest_api``) checking ``--account-sid`` and
``--auth-token``. With ``--answer`` it plays the called party of a call the server places: it waits
for the server's ``calls.create`` (without ``--url`` it starts the server pointed at the stand-in and
places one through ``POST /api/calls``), POSTs the call's progress to its ``StatusCallback``
(initiated, ringing, in-progress, and completed at the end), requests the ``Url`` webhook with
``Direction=outbound-api`` and plays the ITEMs at once as the person who answered; the simulated
answering-machine detection POSTs ``AnsweredBy=human`` to ``AsyncAmdStatusCallback`` 1.2 s after
the first item (``MachineDetectionSpeechEndThreshold``), or, with ``--voicemail FILE``, plays FILE
and a 1 kHz beep and POSTs ``machine_end_beep`` when the beep ends (``tools.twilio_sim.platform``).
In any mode, a REST update of the call with new ``Twiml`` (a transfer) ends the stream as Twilio
does (``stop``); its ``<Dial>`` targets go in the report's ``transfers``, and ``ended_by`` is
``platform``.

Outputs: what the caller heard (``--out``, PCM16 mono WAV at the stream's rate: 8 kHz, or 16/24 kHz
with an L16 codec; sample 0 is
the timestamp of the first media message sent: the bot's audio as played or,
with ``--fork``, the callee's audio as sent on the outbound track), the
conversation from ``GET /api/calls/<CallSid>`` (with the dashboard login when the
server has one: ``--dashboard-password`` or ``$DASHBOARD_PASSWORD``), a summary line with the median
voice-to-voice latency (conversation only), and with ``--json`` a
machine-readable report (see ``tools.twilio_sim.report.build_report``) that also
gives when each audio item was sent (``spoken``) and the status callbacks.

Latency: a bot *reply* starts with the first outbound media message after a
``clear``, or after ``REPLY_GAP_S`` (``tools.twilio_sim.latency``) without
outbound media while nothing was queued for playback. For each caller turn in
the call record, the first reply that starts before the next caller turn ends is
paired with it;
``voice_to_voice_ms`` is the wall-clock time from sending the media message
whose 20 ms contain the turn's ``end_ms`` to the arrival of that reply's first
media message, and ``first_mark_echo_ms`` the time to the first mark echoed by
playback after it (the caller has heard the start).
Exit code: 0 for a completed call, 1 on errors (webhook or connection failure,
no ``<Connect><Stream>`` in the TwiML — ``<Start><Stream>`` with ``--fork`` —, a
failed status callback, protocol violations with ``--strict``), 2 for bad arguments.

Protocol facts come from ``docs/protocol.md`` (Twilio Media Streams, T-WS) and
the message fixtures in ``tests/data/twilio/``. This file is the command line; the
simulator is the package ``tools.twilio_sim`` (its docstring maps the modules).
The pure parts (``PlaybackBuffer``, ``parse_server_message``, ``parse_twiml``,
``parse_script``, ``TwilioMessages``, ``SignalWireMessages``, ``MediaFormat``, ``EchoPath``, ``LineNoise``, the
dialects ``TWILIO``/``SIGNALWIRE``, ``CallerScript``, ``ForkScript``, ``TurnWaiter``,
``ReplyTracker``, ``pair_latencies``, ``status_callback_form``) do no I/O and read no clock; importing this
module or the package imports no gevent, socket or threading, so ``main`` can
monkey-patch first.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script, only tools/ is on sys.path; main imports tools.twilio_sim
    sys.path.insert(0, str(REPO_ROOT))


def build_arg_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    from tools.twilio_sim.echo import ECHO_DELAY_MS_DEFAULT, ECHO_DELAY_MS_MAX
    from tools.twilio_sim.media_format import L16_CODECS

    parser = argparse.ArgumentParser(
        prog="callsim",
        description="Simulate Twilio's side of a call (voice webhook + bidirectional Media Stream) against a\n"
                    "callstream server, in real time. Before the first item (unless --no-wait-greeting), between\n"
                    "items and after the last one, the caller sends silence until the bot is quiet:\n"
                    "nothing queued for playback, no bot audio for --quiet-s, at least --min-wait-s waited and,\n"
                    "after an audio or dtmf item, a reply started; --turn-timeout-s bounds each wait.\n"
                    "With --fork: a forwarded call (URL/forward-call, <Start><Stream> listen-only fork, <Dial>):\n"
                    "caller items and callee:PATH items play one after another on the inbound and outbound\n"
                    "tracks, --gap-s apart, then --tail-s of silence and stop; the server may send nothing.\n"
                    "A <Stream statusCallback> gets stream-started/stream-stopped callbacks in both modes.\n"
                    "With --signalwire: SignalWire's variant (UUID SIDs, its message shapes, X-SignalWire-Signature);\n"
                    "the TwiML's <Stream codec=\"L16@16000h\"|\"L16@24000h\"> switches both directions to 16-bit\n"
                    "little-endian PCM at 16/24 kHz (--codec: the same when the TwiML has no codec).\n"
                    "With --echo-db: a speakerphone; the bot's audio, as played, leaks back into the caller's\n"
                    "microphone --echo-delay-ms later and --echo-db dB lower (silence frames included).\n"
                    "With --noise FILE:SNR: FILE looped under everything the caller sends, SNR dB below the\n"
                    "active level of the caller's speech.",
        epilog="Examples:\n"
               "  python tools/callsim.py tests/data/jfk.flac\n"
               "  python tools/callsim.py --url http://127.0.0.1:5050 hello.wav dtmf:12# silence:2 bye.wav\n"
               "  python tools/callsim.py --no-wait-greeting --json report.json question.wav\n"
               "  python tools/callsim.py --fork --json report.json caller_q.wav callee:answer.wav\n"
               "  python tools/callsim.py --signalwire --codec L16@16000h --signing-key KEY hello.wav\n"
               "  python tools/callsim.py --echo-db -20 --echo-delay-ms 170 question.wav\n"
               "  python tools/callsim.py --noise tests/data/noise/babble.flac:5 tests/data/jfk.flac\n"
               "  python tools/callsim.py tests/data/jfk.flac over:1.5:tests/data/backchannel/uhuh.flac\n"
               "Exit code: 0 completed call, 1 error (webhook/connection, no <Connect><Stream> (<Start><Stream> "
               "with --fork), a failed status callback, violations with --strict), 2 bad arguments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("script", nargs="*", metavar="ITEM",
                        help="the script in order: an audio FILE (the caller speaks it), dtmf:DIGITS (100 ms apart), "
                             "silence:SECONDS, interrupt:SECONDS (talk over the reply after it played that long), "
                             "or over:SECONDS:FILE (say FILE over the reply after it played that long, then wait "
                             "on: a backchannel); "
                             "with --fork: FILE, callee:FILE (the dialled party speaks it) and silence:SECONDS")
    parser.add_argument("--url", help="server base URL (voice webhook = URL/incoming-call, or URL/forward-call "
                                      "with --fork); default: start app.create_app() in this process")
    parser.add_argument("--fork", action="store_true",
                        help="a forwarded call with a listen-only <Start><Stream> fork (webhook URL/forward-call): "
                             "one media message per TwiML track every 20 ms, items played one after another; "
                             "any message from the server is a violation (Twilio error 31924)")
    parser.add_argument("--gap-s", type=float, default=0.8,
                        help="--fork: silence between items, seconds (default %(default)s)")
    parser.add_argument("--tail-s", type=float, default=2.0,
                        help="--fork: silence after the last item before stop, seconds (default %(default)s)")
    parser.add_argument("--from", dest="from_number", default="+15551230001",
                        help="caller number (default %(default)s)")
    parser.add_argument("--to", dest="to_number", default="+15559870002", help="called number (default %(default)s)")
    parser.add_argument("--quiet-s", type=float, default=1.5,
                        help="bot silence that ends a wait, seconds (default %(default)s)")
    parser.add_argument("--min-wait-s", type=float, default=0.0, help="minimum wait, seconds (default %(default)s)")
    parser.add_argument("--turn-timeout-s", type=float, default=20.0,
                        help="maximum wait for the bot, seconds (default %(default)s)")
    parser.add_argument("--no-wait-greeting", action="store_true",
                        help="speak the first item at once instead of waiting for the bot (tests barge-in)")
    parser.add_argument("--first-timestamp-ms", type=int, default=20,
                        help="media.timestamp of the first media message (default %(default)s)")
    parser.add_argument("--auth-token", help="sign the webhook, the WebSocket upgrade and the status callbacks with "
                                             "X-Twilio-Signature using this auth token")
    parser.add_argument("--signalwire", action="store_true",
                        help="play SignalWire instead of Twilio: UUID SIDs, SignalWire's message shapes "
                             "(protocol.md §9), the <Stream codec> attribute, X-SignalWire-Signature")
    parser.add_argument("--codec", choices=sorted(L16_CODECS),
                        help="--signalwire: stream this codec (16-bit little-endian PCM at 16/24 kHz) when the "
                             "TwiML <Stream> has no codec attribute; the TwiML's codec wins when it has one")
    parser.add_argument("--signing-key", help="--signalwire: sign the webhook and the status callbacks with "
                                              "X-SignalWire-Signature using this signing key (the WebSocket "
                                              "upgrade is not signed: SignalWire documents no signature there)")
    parser.add_argument("--echo-db", type=_echo_db, default=None, metavar="DB",
                        help="speakerphone: the bot's audio, as played, echoes into every inbound media message "
                             "(silence included) DB dB below it (<= 0, e.g. -20; default: no echo; not with --fork)")
    parser.add_argument("--echo-delay-ms", type=_echo_delay_ms, default=ECHO_DELAY_MS_DEFAULT, metavar="MS",
                        help=f"with --echo-db: the echo's delay after playback, ms (0..{ECHO_DELAY_MS_MAX}, "
                             "any whole number, not only multiples of 20; default %(default)s)")
    parser.add_argument("--noise", type=_noise, default=None, metavar="FILE:SNR",
                        help="background noise on the caller's line: FILE (any audio soundfile reads) looped under "
                             "every inbound media message (silence included), SNR dB below the caller's active speech "
                             "level (RMS of the script audio's 20 ms frames within 30 dB of the loudest), "
                             "e.g. tests/data/noise/street.flac:10")
    parser.add_argument("--answer", action="store_true",
                        help="play the called party of a call the server places (POST /api/calls) through a stand-in of "
                             "Twilio's REST API: with --url, wait for the server (its TWILIO_API_BASE_URL must be the "
                             "stand-in's, --api-port) to place one; without, start the server pointed at the stand-in "
                             "and place one through POST /api/calls. The ITEMs are the person who answers (spoken at "
                             "once: 'Hello?'), unless --voicemail; needs --auth-token")
    parser.add_argument("--voicemail", metavar="FILE",
                        help="--answer: a voicemail answers: FILE is its greeting, then a 1 kHz beep; answering-machine "
                             "detection says machine_end_beep when the beep ends; then the ITEMs (if any)")
    parser.add_argument("--api-port", type=int, default=None,
                        help="run the REST API stand-in on this port (0: any) for transfers and hang-ups through the "
                             "API; --answer runs it anyway")
    parser.add_argument("--account-sid", default=None,
                        help="the account SID of the call and of the REST API stand-in (default: a random AC… SID); "
                             "must be the server's TWILIO_ACCOUNT_SID for the stand-in to accept its requests")
    parser.add_argument("--answer-timeout-s", type=float, default=60.0,
                        help="--answer with --url: how long to wait for the server to place a call (default %(default)s)")
    parser.add_argument("--dashboard-password", default=None,
                        help="the server's DASHBOARD_PASSWORD, to read the call record from /api/calls (default: "
                             "$DASHBOARD_PASSWORD; user $DASHBOARD_USER or admin)")
    parser.add_argument("--out", default="callsim-heard.wav",
                        help="WAV of what the caller heard, PCM16 mono at the stream's rate (8 kHz; 16/24 kHz with "
                             "an L16 codec): the bot's audio as played or, with --fork, the callee's audio as sent "
                             "on the outbound track (default %(default)s)")
    parser.add_argument("--json", dest="json_path", help="write a machine-readable report to this path")
    parser.add_argument("--strict", action="store_true", help="exit 1 if the server sent any invalid message")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every message from the server")
    return parser


def _echo_db(text: str) -> float:
    """``--echo-db``: a finite level in dB, <= 0 (an echo is never louder than what was played)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value <= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of dB <= 0, got {text!r}")
    return value


def _echo_delay_ms(text: str) -> int:
    """``--echo-delay-ms``: whole milliseconds within 0..ECHO_DELAY_MS_MAX."""
    from tools.twilio_sim.echo import ECHO_DELAY_MS_MAX

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of ms: {text!r}") from None
    if not 0 <= value <= ECHO_DELAY_MS_MAX:
        raise argparse.ArgumentTypeError(f"must be within 0..{ECHO_DELAY_MS_MAX} ms, got {text!r}")
    return value


def _noise(text: str) -> tuple[str, float]:
    """``--noise``: FILE:SNR (the file is read before the call: an unreadable one is a bad argument too)."""
    from tools.twilio_sim.noise import parse_noise_arg

    try:
        return parse_noise_arg(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point: monkey-patch for gevent first, then parse arguments and run the call."""
    from gevent import monkey

    monkey.patch_all()
    from tools.twilio_sim.call import run

    parser = build_arg_parser()
    args = parser.parse_args(argv)
    return run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
