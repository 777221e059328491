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
from tools.twilio_sim.platform import SPEECH_END_THRESHOLD_MS, OutboundCall
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


def start_in_process_server(settings: dict[str, str] | None = None):
    """Start the repository's app on 127.0.0.1; return (server, base URL).

    Args:
        settings: environment settings for it (``--answer``: the REST API stand-in's); with
            ``PUBLIC_URL`` it listens on that URL's port, else on an ephemeral one.
    """
    import os
    from urllib.parse import urlsplit

    add_repo_root_to_sys_path()
    from app import create_app, make_server

    os.environ.update(settings or {})
    port = urlsplit(os.environ["PUBLIC_URL"]).port if settings and "PUBLIC_URL" in settings else 0
    server = make_server(create_app(), "127.0.0.1", port)
    server.start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_rest_api(args: argparse.Namespace, outcome: CallOutcome):
    """Run the REST API stand-in (``--api-port``; ``--answer`` alone: any free port) for this call:
    it accepts the server's ``create`` (``--answer``) and reports transfers (a ``Twiml`` update of
    this call with a ``<Dial>``) by ending the stream as Twilio would."""
    from tools.twilio_sim.rest_api import TwilioApi
    from tools.twilio_sim.twiml import dial_targets

    def on_update(call_sid: str, form: dict[str, str]) -> None:
        session = outcome.session
        if call_sid != outcome.call_sid:
            return
        if "Twiml" in form:
            try:
                targets = dial_targets(form["Twiml"])
            except TwimlError as error:
                outcome.errors.append(f"REST update with bad TwiML: {error}")
                return
            outcome.transfers.append({"twiml": form["Twiml"], "dial": targets,
                                      "at_ms": session.clock_ms(_now()) if session is not None else None})
            print(f"REST update: the call's TwiML is replaced; <Dial> {targets} (not dialled)", flush=True)
            if session is not None:
                session.end_by_platform(f"transferred to {', '.join(targets) or 'no <Dial>'}")
        elif form.get("Status") == "completed" and session is not None:
            session.end_by_platform("the call was completed through the REST API")

    api = TwilioApi(outcome.account_sid, args.auth_token or "", port=args.api_port or 0, on_update=on_update)
    api.__enter__()
    print(f"Twilio REST API stand-in on {api.url} (account {outcome.account_sid})", flush=True)
    return api


def _now() -> float:
    import time

    return time.monotonic()


def _rest_api_settings(args: argparse.Namespace, outcome: CallOutcome, api) -> dict[str, str]:
    """The in-process server's settings that point it at the stand-in (none without one)."""
    if api is None:
        return {}
    return {"TWILIO_ACCOUNT_SID": outcome.account_sid, "TWILIO_AUTH_TOKEN": args.auth_token or "",
            "TWILIO_API_BASE_URL": api.url, "PUBLIC_URL": f"http://127.0.0.1:{_free_port()}",
            "TWILIO_PHONE_NUMBER": args.from_number}


def _wait_for_outbound_call(args: argparse.Namespace, outcome: CallOutcome, api, in_process: bool) -> OutboundCall:
    """The call the server asks the stand-in to place: placed here through ``POST /api/calls`` when
    the server runs in this process, else waited for (``--answer-timeout-s``).

    Raises:
        CallError: no call was asked for in time, or ``POST /api/calls`` failed.
    """
    import time

    if in_process:
        import requests

        body = {"to": args.to_number}
        response = requests.post(outcome.base_url + "/api/calls", json=body, timeout=30,
                                 auth=dashboard_auth(getattr(args, "dashboard_password", None)))
        print(f"POST {outcome.base_url}/api/calls {body} -> HTTP {response.status_code} {response.text[:200]}")
        if response.status_code != 201:
            raise CallError(f"POST /api/calls failed: HTTP {response.status_code} {response.text[:300]}")
    else:
        print(f"waiting up to {args.answer_timeout_s:g} s for the server to place a call "
              f"(its TWILIO_API_BASE_URL must be {api.url})", flush=True)
    deadline_s = time.monotonic() + args.answer_timeout_s
    while time.monotonic() < deadline_s:
        created = [r for r in api.requests if r.path.endswith("/Calls.json")]
        sids = [sid for sid, call in api.calls.items() if call.get("direction") == "outbound-api"]
        if created and sids:
            form = created[0].form
            print(f"the server placed call {sids[0]} to {form.get('To')} from {form.get('From')} "
                  f"(machine detection {form.get('MachineDetection', 'off')})", flush=True)
            return OutboundCall(sids[0], form)
        time.sleep(0.05)
    raise CallError(f"no call was placed through the REST API stand-in within {args.answer_timeout_s:g} s")


def _voicemail_greeting(path: str) -> str:
    """The voicemail's greeting ``path`` followed by its beep (``platform.beep_pcm``), as one
    temporary WAV file at the greeting's rate (one script item: nothing waits between them); its path."""
    import tempfile

    import numpy as np

    from tools.twilio_sim.platform import beep_pcm

    greeting = read_audio(path)
    samples = np.concatenate([greeting.samples, beep_pcm(greeting.sample_rate)])
    pcm = np.clip(np.rint(samples * 32767), -32768, 32767).astype("<i2").tobytes()
    handle = tempfile.NamedTemporaryFile(prefix="callsim-voicemail-", suffix=".wav", delete=False)
    handle.close()
    write_wav(handle.name, pcm, greeting.sample_rate)
    return handle.name


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
               noise: SourceAudio | None = None, outbound: OutboundCall | None = None) -> None:
    """Run the whole call against ``outcome.base_url``, filling ``outcome``.

    Args:
        args: the parsed command line (``callsim.build_arg_parser``).
        outcome: the call's SIDs, script, dialect and mode; filled in.
        sources: the script's audio files as read (``load_script``), put in the stream's format here.
        noise: the ``--noise`` recording as read, or None.
        outbound: a call the server placed (``--answer``): its webhook URL and fields, its progress
            and answering-machine detection callbacks (``tools.twilio_sim.platform``).

    Raises:
        CallError: the call could not be placed or streamed.
    """
    fork = outcome.mode == "fork"
    dialect = DIALECTS[outcome.dialect]
    signer = dialect.signer(args.signing_key if args.signalwire else args.auth_token)
    if outbound is not None:
        webhook_url, form = outbound.webhook_url, outbound.webhook_form(outcome.account_sid)
        for status in ("initiated", "ringing", "in-progress"):
            outbound.send_status(status, outcome.account_sid, signer)
    else:
        webhook_url = outcome.base_url.rstrip("/") + (FORK_WEBHOOK_PATH if fork else WEBHOOK_PATH)
        form = webhook_form(outcome.call_sid, outcome.account_sid, args.from_number, args.to_number)
    print(f"POST {webhook_url.split('?')[0]} (CallSid {outcome.call_sid}, From {form['From']}, To {form['To']})")
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
    on_stream_event = sender
    if outbound is not None and outbound.machine_detection:
        on_stream_event = _with_machine_detection(sender, outbound, outcome, signer, _amd_decision(args, sources, outcome))
    messages = dialect.messages(outcome.stream_sid, outcome.account_sid, outcome.call_sid, args.first_timestamp_ms,
                                media_format)
    if fork:
        script = ForkScript(outcome.items, audio, gap_s=args.gap_s, tail_s=args.tail_s, media_format=media_format)
        session = SimulatedFork(ws, messages, twiml.parameters, twiml.tracks, script, verbose=args.verbose,
                                on_stream_event=on_stream_event, noise=line_noise)
    else:
        waiter = TurnWaiter(args.quiet_s, args.min_wait_s, args.turn_timeout_s)
        script = CallerScript(outcome.items, audio, waiter, wait_first=not args.no_wait_greeting and outbound is None,
                              media_format=media_format)
        session = SimulatedCall(ws, messages, twiml.parameters, script, waiter, verbose=args.verbose,
                                on_stream_event=on_stream_event, echo=_echo_path(args, media_format), noise=line_noise)
    outcome.session = session
    session.run()
    if outbound is not None:
        outbound.send_status("completed", outcome.account_sid, signer)
        outcome.platform_callbacks = outbound.callbacks
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


def _amd_decision(args: argparse.Namespace, sources: dict[str, SourceAudio], outcome: CallOutcome) -> tuple[str, float]:
    """What the answering-machine detection says, and when (s after the stream starts): a voicemail
    (``--voicemail``) when its greeting and beep have played; a person ``SPEECH_END_THRESHOLD_MS``
    after their first words (the script's first audio item, spoken at once), or after silence."""
    audio_items = [item for item in outcome.items if item.kind == "audio"]
    if getattr(args, "voicemail", None):  # the greeting and its beep are the first item
        return "machine_end_beep", sources[audio_items[0].path].duration_s
    first_words_s = sources[audio_items[0].path].duration_s if audio_items else 0.0
    return "human", first_words_s + SPEECH_END_THRESHOLD_MS / 1000


def _with_machine_detection(sender, outbound: OutboundCall, outcome: CallOutcome, signer,
                            decision: tuple[str, float]):
    """``on_stream_event`` that also starts the detection's timer when the stream starts."""
    import gevent

    answered_by, after_s = decision

    def detect() -> None:
        gevent.sleep(after_s)
        session = outcome.session
        if session is not None and session.ended_by is None:
            print(f"answering-machine detection: {answered_by} after {after_s:.2f} s", flush=True)
            outcome.answered_by = answered_by
            outbound.send_answered_by(answered_by, round(after_s * 1000), outcome.account_sid, signer)

    def on_stream_event(event: str, error: str | None = None) -> None:
        if sender is not None:
            sender(event, error)
        if event == "stream-started":
            gevent.spawn(detect)

    return on_stream_event


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
    if args.answer and (args.fork or args.signalwire):
        parser.error("--answer plays a call placed through Twilio's REST API: not with --fork or --signalwire")
    if getattr(args, "voicemail", None) and not args.answer:
        parser.error("--voicemail is what answers a placed call: it needs --answer")
    if args.answer and not args.auth_token:
        parser.error("--answer needs --auth-token: the REST API stand-in checks the server's credentials with it")
    tokens = list(args.script)
    if getattr(args, "voicemail", None):
        try:
            tokens = [_voicemail_greeting(args.voicemail)] + tokens
        except Exception as error:  # soundfile raises LibsndfileError/TypeError/RuntimeError, not only OSError
            parser.error(f"--voicemail: cannot read audio {args.voicemail!r}: {error}")
    try:
        items, sources = load_script(tokens, fork=args.fork)
    except ValueError as error:
        parser.error(str(error))
    noise = _read_noise(args, items, parser)
    dialect = DIALECTS["signalwire" if args.signalwire else "twilio"]
    call_sid, account_sid, stream_sid = dialect.new_sids()
    outcome = CallOutcome(call_sid, args.account_sid or account_sid, stream_sid, items, args.first_timestamp_ms,
                          base_url=args.url, mode="fork" if args.fork else "conversation", dialect=dialect.name)
    server, api = None, None
    try:
        if args.answer or args.api_port is not None:
            api = _start_rest_api(args, outcome)
        if outcome.base_url is None:
            print("starting the server in this process (app.create_app)...", flush=True)
            server, outcome.base_url = start_in_process_server(_rest_api_settings(args, outcome, api))
            print(f"server listening on {outcome.base_url}")
        outbound = None
        if args.answer:
            outbound = _wait_for_outbound_call(args, outcome, api, in_process=server is not None)
            outcome.call_sid, outcome.direction = outbound.call_sid, "outbound"
        elif api is not None:
            api.add_call(outcome.call_sid)  # the server may transfer or end this call through the API
        place_call(args, outcome, sources, noise, outbound)
    except CallError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        outcome.errors.append(str(error))
    finally:
        if server is not None:
            server.stop(timeout=2)
        if api is not None:
            api.__exit__(None, None, None)

    report = build_report(outcome)
    if outcome.session is not None:
        print_summary(report)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
        print(f"report: {args.json_path}")
    return 0 if report["ok"] else 1
