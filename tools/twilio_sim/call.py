"""Placing a whole simulated call: server, voice webhook, Media Stream, call record and report.

Network code (requests, websocket-client, gevent), imported inside the
functions so that ``callsim.main`` can monkey-patch first; ``run`` is the
command's body.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from tools.twilio_sim.audio_files import SourceAudio, encode_script_audio, load_script, read_audio, write_wav
from tools.twilio_sim.dialect import DIALECTS, TWILIO, RequestSigner, TwilioDialect
from tools.twilio_sim.echo import EchoPath
from tools.twilio_sim.latency import pair_latencies
from tools.twilio_sim.media_format import MediaFormat
from tools.twilio_sim.noise import LineNoise, speech_level
from tools.twilio_sim.report import CallOutcome, build_report, print_conversation, print_summary
from tools.twilio_sim.repo import add_repo_root_to_sys_path
from tools.twilio_sim.script import CallerScript, ForkScript, TurnWaiter
from tools.twilio_sim.status_callback import callback_request, judge_response, status_callback_form
from tools.twilio_sim.stream import SimulatedCall, SimulatedFork
from tools.twilio_sim.twiml import (TwimlError, TwimlStream, parse_twiml, status_callback_urls, webhook_form,
                                    websocket_url)

WEBHOOK_PATH = "/incoming-call"  # conversation: answers with <Connect><Stream>
FORK_WEBHOOK_PATH = "/forward-call"  # --fork: answers with <Start><Stream> and <Dial>
API_CALL_PATH = "/api/calls/{call_sid}"
CALLBACK_TIMEOUT_S = 15.0  # Twilio's default webhook timeout


class CallError(Exception):
    """The call could not be placed or streamed (exit code 1)."""


def start_in_process_server():
    """Start the repository's app on 127.0.0.1 with an ephemeral port; return (server, base URL)."""
    add_repo_root_to_sys_path()
    from app import create_app, make_server

    server = make_server(create_app(), "127.0.0.1", 0)
    server.start()
    return server, f"http://127.0.0.1:{server.server_port}"


def dashboard_auth(password: str | None = None, environ: dict | None = None) -> tuple[str, str] | None:
    """The server's dashboard login for ``requests`` (``auth=``): ``(DASHBOARD_USER, password)``.

    Args:
        password: ``--dashboard-password``; ``None``: ``DASHBOARD_PASSWORD`` from the environment
            (the same variable the server reads, so an in-process server and callsim agree).

    Returns:
        ``None`` when there is no password (a development server serves this machine without one).
    """
    import os

    environ = os.environ if environ is None else environ
    password = environ.get("DASHBOARD_PASSWORD", "") if password is None else password
    if not password:
        return None
    return environ.get("DASHBOARD_USER") or "admin", password


def fetch_call_record(base_url: str, call_sid: str, wait_s: float = 3.0,
                      auth: tuple[str, str] | None = None) -> tuple[dict | None, str | None]:
    """GET the call record, retrying until it has ``ended_at`` (or ``wait_s`` passes).

    Args:
        auth: the dashboard login (:func:`dashboard_auth`), sent as HTTP Basic; ``None`` for none.

    Returns:
        (record or None, error text or None).
    """
    import time

    import requests

    url = base_url.rstrip("/") + API_CALL_PATH.format(call_sid=call_sid)
    deadline_s = time.monotonic() + wait_s
    record, error = None, None
    while True:
        try:
            response = requests.get(url, timeout=5, auth=auth)
            if response.status_code == 200:
                record, error = response.json(), None
                if record.get("ended_at"):
                    return record, None
            else:
                error = f"GET {url} -> HTTP {response.status_code}"
        except (requests.RequestException, ValueError) as exc:
            error = f"GET {url} failed: {exc}"
        if time.monotonic() >= deadline_s:
            return record, error
        time.sleep(0.2)


def request_headers(dialect: TwilioDialect, signer: RequestSigner | None, url: str,
                    params: dict[str, str]) -> dict[str, str]:
    """The platform's headers on a webhook or status callback: its User-Agent and, with a signer, the signature."""
    headers = {"User-Agent": dialect.user_agent} if dialect.user_agent else {}
    if signer is not None:
        headers.update(signer.headers(url, params))
    return headers


def answer_call(webhook_url: str, form: dict[str, str], signer: RequestSigner | None, fork: bool = False,
                dialect: TwilioDialect = TWILIO) -> TwimlStream:
    """POST the voice webhook like Twilio (or SignalWire) and return the stream from its TwiML.

    Args:
        webhook_url: ``{url}/incoming-call``, or ``{url}/forward-call`` with ``fork``.
        form: fields from ``webhook_form``.
        signer: signs the request (``X-Twilio-Signature`` or ``X-SignalWire-Signature``), or None.
        fork: expect a ``<Start><Stream>`` fork instead of a ``<Connect><Stream>``.
        dialect: the platform (``dialect.TWILIO`` or ``dialect.SIGNALWIRE``).

    Raises:
        CallError: connection failure, non-200 answer, or TwiML without the expected stream
            (see ``parse_twiml``).
    """
    import requests

    headers = request_headers(dialect, signer, webhook_url, form)
    try:
        response = requests.post(webhook_url, data=form, headers=headers, timeout=30)
    except requests.RequestException as error:
        raise CallError(f"voice webhook failed: {error}") from None
    if response.status_code != 200:
        raise CallError(f"voice webhook returned HTTP {response.status_code}: {response.text[:300]}")
    try:
        return parse_twiml(response.text, fork=fork)
    except TwimlError as error:
        raise CallError(f"{error}\nTwiML was: {response.text[:500]}") from None


def open_stream(ws_url: str, headers: dict[str, str]):
    """Open the Media Stream WebSocket (blocking, no timeout once open).

    Args:
        ws_url: URL to connect to (ws:// or wss://).
        headers: extra upgrade headers (``TwilioDialect.websocket_headers``: Twilio's signature
            over the TwiML ``<Stream url>`` [protocol.md §6.2], or SignalWire's bearer token).

    Raises:
        CallError: the connection or handshake failed.
    """
    import websocket

    headers = [f"{name}: {value}" for name, value in headers.items()]
    try:
        ws = websocket.create_connection(ws_url, timeout=10, header=headers)
    except (websocket.WebSocketException, OSError) as error:
        raise CallError(f"WebSocket connection to {ws_url} failed: {error}") from None
    ws.settimeout(None)
    return ws


class StatusCallbackSender:
    """Send a stream's status callbacks as Twilio (or SignalWire) does, without blocking the media clock.

    Each event is sent from its own greenlet, after the previous event's request
    finished (so the server sees them in order); ``results`` collects the outcomes.
    Requires gevent monkey patching.

    Args:
        twiml: the stream (``status_callback`` must be set), for the URL, method and name.
        webhook_url: the voice webhook URL (relative callback URLs resolve against it).
        outcome: the call's SIDs.
        signer: signs each request like the voice webhook, or None.
        dialect: the platform.

    Raises:
        TwimlError: the callback URL is not http(s).
    """

    def __init__(self, twiml: TwimlStream, webhook_url: str, outcome: CallOutcome, signer: RequestSigner | None,
                 dialect: TwilioDialect = TWILIO):
        self.request_url, self.signed_url, downgraded = status_callback_urls(twiml.status_callback, webhook_url)
        if downgraded:
            print(f"statusCallback {twiml.status_callback} -> requesting {self.request_url} "
                  "(webhook is plain http://, no TLS)")
        self.method = twiml.status_callback_method
        self.name = twiml.name
        self.outcome = outcome
        self.signer = signer
        self.dialect = dialect
        self.results: list[dict] = []
        self._last = None  # greenlet of the latest event

    def __call__(self, event: str, error: str | None = None) -> None:
        """Send ``event`` (a StreamEvent) in the background, stamped now; ``error`` becomes StreamError."""
        from datetime import datetime, timezone

        import gevent

        self._last = gevent.spawn(self._send, event, datetime.now(timezone.utc), error, self._last)

    def join(self, timeout_s: float = 2 * CALLBACK_TIMEOUT_S + 5) -> None:
        """Wait for every callback sent so far."""
        if self._last is not None:
            self._last.join(timeout=timeout_s)

    def _send(self, event: str, moment, error: str | None, previous) -> None:
        import requests

        if previous is not None:
            previous.join()
        outcome = self.outcome
        form = status_callback_form(outcome.account_sid, outcome.call_sid, outcome.stream_sid, self.name, event,
                                    moment, error)
        request = callback_request(self.method, self.request_url, self.signed_url, form)
        headers = request_headers(self.dialect, self.signer, request.signed_url, request.form)
        status_code, failure = None, None
        try:
            response = requests.request(request.method, request.url, data=request.form or None, headers=headers,
                                        timeout=CALLBACK_TIMEOUT_S)
            status_code = response.status_code
        except requests.RequestException as exc:
            failure = str(exc)
        text, failed = judge_response(status_code, failure)
        self.results.append({"event": event, "method": request.method, "url": self.request_url,
                             "status_code": status_code, "error": failure, "failed": failed})
        print(f"status callback {event}: {request.method} {self.request_url} -> {text}", flush=True)


def _collect_callbacks(sender: StatusCallbackSender | None, outcome: CallOutcome) -> None:
    """Wait for the status callbacks; put their outcomes in the report and failures in its errors."""
    if sender is None:
        return
    sender.join()
    outcome.status_callbacks = list(sender.results)
    for result in sender.results:
        if result["failed"]:
            what = f"HTTP {result['status_code']}" if result["status_code"] is not None else result["error"]
            outcome.errors.append(f"status callback {result['event']} ({result['method']} {result['url']}): {what}")


def _print_fork_plan(twiml: TwimlStream, outcome: CallOutcome) -> None:
    print(f"TwiML <Start><Stream track={twiml.track!r}>: start.tracks {twiml.tracks}")
    for target in twiml.dial:
        print(f"TwiML <Dial>: {target} (the dialled party is simulated by the callee: items)")
    if not twiml.dial:
        print("note: no <Dial> after <Start><Stream> (the callee: items are played anyway)")
    for track, who in (("inbound", "caller"), ("outbound", "callee")):
        items = [item.token for item in outcome.items if item.kind == "audio" and item.track == track]
        if items and track not in twiml.tracks:
            print(f"note: the {who}'s items {items} are played but not streamed (track={twiml.track!r})")


def _choose_media_format(dialect: TwilioDialect, twiml: TwimlStream, codec: str | None,
                         outcome: CallOutcome) -> MediaFormat:
    """Set ``outcome.media_format`` from the TwiML's codec (or ``--codec``); print why when it matters."""
    try:
        outcome.media_format, note = dialect.choose_media_format(twiml.codec, codec)
    except ValueError as error:
        raise CallError(str(error)) from None
    if note:
        print(f"note: {note}")
    if dialect is not TWILIO:
        print(f"stream audio: {outcome.media_format.encoding} at {outcome.media_format.sample_rate} Hz "
              f"({outcome.media_format.frame_bytes} bytes per 20 ms media message)")
    return outcome.media_format


def _echo_path(args: argparse.Namespace, media_format: MediaFormat) -> EchoPath | None:
    """The speakerphone echo ``--echo-db``/``--echo-delay-ms`` ask for, in the stream's format (None: no echo)."""
    if args.echo_db is None:
        return None
    print(f"caller's microphone: the bot's audio echoes back at {args.echo_db:g} dB, {args.echo_delay_ms} ms later")
    return EchoPath(args.echo_db, args.echo_delay_ms, media_format)


def _line_noise(args: argparse.Namespace, noise: SourceAudio | None, outcome: CallOutcome, audio: dict[str, bytes],
                media_format: MediaFormat) -> LineNoise | None:
    """The background noise ``--noise FILE:SNR`` asks for, in the stream's format (None: no noise).

    The speech level is that of the caller's audio items as the stream carries them
    (``noise.speech_level`` of their payloads decoded again, one after another).

    Raises:
        CallError: the caller's audio items are silent (no level to set the SNR against).
    """
    if noise is None:
        return None
    import numpy as np

    paths = dict.fromkeys(item.path for item in outcome.items if item.kind == "audio" and item.track == "inbound")
    speech = np.frombuffer(media_format.to_pcm16(b"".join(audio[path] for path in paths)), dtype="<i2")
    level = speech_level(speech / 32768, media_format.sample_rate)
    try:
        line = LineNoise(noise.at_rate(media_format.sample_rate), level, args.noise[1], media_format)
    except ValueError as error:
        raise CallError(f"--noise: {error}") from None
    print(f"caller's line: {args.noise[0]} looped at {args.noise[1]:g} dB SNR (speech active level "
          f"{20 * math.log10(level):.1f} dBFS)")
    return line


def place_call(args: argparse.Namespace, outcome: CallOutcome, sources: dict[str, SourceAudio],
               noise: SourceAudio | None = None) -> None:
    """Run the whole call against ``outcome.base_url``, filling ``outcome``.

    Args:
        args: the parsed command line (``callsim.build_arg_parser``).
        outcome: the call's SIDs, script, dialect and mode; filled in.
        sources: the script's audio files as read (``load_script``), put in the stream's format here.
        noise: the ``--noise`` recording as read, or None.

    Raises:
        CallError: the call could not be placed or streamed.
    """
    fork = outcome.mode == "fork"
    dialect = DIALECTS[outcome.dialect]
    signer = dialect.signer(args.signing_key if args.signalwire else args.auth_token)
    webhook_url = outcome.base_url.rstrip("/") + (FORK_WEBHOOK_PATH if fork else WEBHOOK_PATH)
    form = webhook_form(outcome.call_sid, outcome.account_sid, args.from_number, args.to_number)
    print(f"POST {webhook_url} (CallSid {outcome.call_sid}, From {args.from_number}, To {args.to_number})")
    outcome.twiml = twiml = answer_call(webhook_url, form, signer, fork=fork, dialect=dialect)
    for text in twiml.say:
        print(f"TwiML <Say>: {text!r} ({dialect.platform} speaks this before streaming; not simulated)")
    if fork:
        _print_fork_plan(twiml, outcome)
    media_format = _choose_media_format(dialect, twiml, args.codec, outcome)
    audio = encode_script_audio(sources, media_format)
    try:
        outcome.ws_url, outcome.downgraded = websocket_url(twiml.url, webhook_url)
    except TwimlError as error:
        raise CallError(str(error)) from None
    if outcome.downgraded:
        print(f"stream URL {twiml.url} -> connecting to {outcome.ws_url} (webhook is plain http://, no TLS)")
    sender = None
    if twiml.status_callback:
        try:
            sender = StatusCallbackSender(twiml, webhook_url, outcome, signer, dialect)
        except TwimlError as error:
            print(f"ERROR: {error}; no status callbacks are sent", file=sys.stderr)
            outcome.errors.append(str(error))
    print(f"WebSocket {outcome.ws_url} (StreamSid {outcome.stream_sid}, parameters {twiml.parameters})")
    try:
        ws = open_stream(outcome.ws_url, dialect.websocket_headers(twiml, signer))
    except CallError as error:
        if sender is not None:  # a stream that could not connect is reported as stream-error [protocol.md §5]
            sender("stream-error", error=str(error).splitlines()[0][:200])
            _collect_callbacks(sender, outcome)
        raise

    line_noise = _line_noise(args, noise, outcome, audio, media_format)
    messages = dialect.messages(outcome.stream_sid, outcome.account_sid, outcome.call_sid, args.first_timestamp_ms,
                                media_format)
    if fork:
        script = ForkScript(outcome.items, audio, gap_s=args.gap_s, tail_s=args.tail_s, media_format=media_format)
        session = SimulatedFork(ws, messages, twiml.parameters, twiml.tracks, script, verbose=args.verbose,
                                on_stream_event=sender, noise=line_noise)
    else:
        waiter = TurnWaiter(args.quiet_s, args.min_wait_s, args.turn_timeout_s)
        script = CallerScript(outcome.items, audio, waiter, wait_first=not args.no_wait_greeting,
                              media_format=media_format)
        session = SimulatedCall(ws, messages, twiml.parameters, script, waiter, verbose=args.verbose,
                                on_stream_event=sender, echo=_echo_path(args, media_format), noise=line_noise)
    outcome.session = session
    session.run()
    if session.failure:
        outcome.errors.append(session.failure)
    _collect_callbacks(sender, outcome)

    write_wav(args.out, media_format.to_pcm16(bytes(session.heard)), media_format.sample_rate)
    outcome.heard_wav = args.out
    what = "the callee's audio (outbound track as sent)" if fork else "the bot's audio as played"
    print(f"\nheard audio: {args.out} ({what}, {len(session.heard) / media_format.bytes_per_second:.2f} s, "
          f"sample 0 = timestamp {args.first_timestamp_ms} ms)")

    outcome.record, outcome.record_error = fetch_call_record(
        outcome.base_url, outcome.call_sid, auth=dashboard_auth(getattr(args, "dashboard_password", None)))
    if outcome.record is not None:
        print_conversation(outcome.record)
        if not fork:
            caller_ends = session.caller_end_send_times(outcome.record.get("turns") or [])
            outcome.latency = pair_latencies(caller_ends, session.replies.replies)
    else:
        print(f"\nno call record: {outcome.record_error}")
    if session.violations:
        text = f"{len(session.violations)} protocol violation(s) by the server"
        print(text)
        if args.strict:
            outcome.errors.append(text)


def _read_noise(args: argparse.Namespace, items: list, parser: argparse.ArgumentParser) -> SourceAudio | None:
    """Read the ``--noise`` file before the call; a bad file, or a script with nothing to set its level, is a bad
    argument (``parser.error``: exit code 2)."""
    noise = getattr(args, "noise", None)
    if noise is None:
        return None
    if not any(item.kind == "audio" and item.track == "inbound" for item in items):
        parser.error("--noise sets its level relative to the caller's speech: the script needs an audio item")
    try:
        source = read_audio(noise[0])
    except Exception as error:  # soundfile raises LibsndfileError/TypeError/RuntimeError, not only OSError
        parser.error(f"--noise: cannot read audio {noise[0]!r}: {error}")
    if not len(source.samples) or not source.samples.any():
        parser.error(f"--noise: {noise[0]!r} is empty or all silence")
    print(f"loaded noise {noise[0]}: {source.duration_s:.2f} s at {source.sample_rate} Hz")
    return source


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Place the call described by ``args``; return the exit code. Needs gevent patching done."""
    if args.quiet_s < 0 or args.min_wait_s < 0 or args.turn_timeout_s <= 0 or args.first_timestamp_ms < 0:
        parser.error("--quiet-s, --min-wait-s and --first-timestamp-ms must be >= 0, --turn-timeout-s > 0")
    if not (args.gap_s >= 0 and args.tail_s >= 0) or math.inf in (args.gap_s, args.tail_s):
        parser.error("--gap-s and --tail-s must be finite numbers >= 0")
    if not args.signalwire and (args.codec or args.signing_key):
        parser.error("--codec and --signing-key need --signalwire (Twilio streams μ-law 8 kHz and signs with "
                     "--auth-token)")
    if args.fork and args.echo_db is not None:
        parser.error("--echo-db needs a conversation: a fork has no bot audio to echo")
    if args.signalwire and args.auth_token:
        parser.error("--auth-token signs like Twilio; SignalWire signs with the project's signing key: "
                     "use --signing-key")
    try:
        items, sources = load_script(args.script, fork=args.fork)
    except ValueError as error:
        parser.error(str(error))
    noise = _read_noise(args, items, parser)
    dialect = DIALECTS["signalwire" if args.signalwire else "twilio"]
    outcome = CallOutcome(*dialect.new_sids(), items, args.first_timestamp_ms,
                          base_url=args.url, mode="fork" if args.fork else "conversation", dialect=dialect.name)
    server = None
    try:
        if outcome.base_url is None:
            print("starting the server in this process (app.create_app)...", flush=True)
            server, outcome.base_url = start_in_process_server()
            print(f"server listening on {outcome.base_url}")
        place_call(args, outcome, sources, noise)
    except CallError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        outcome.errors.append(str(error))
    finally:
        if server is not None:
            server.stop(timeout=2)

    report = build_report(outcome)
    if outcome.session is not None:
        print_summary(report)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
        print(f"report: {args.json_path}")
    return 0 if report["ok"] else 1
