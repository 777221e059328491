"""Placing a whole simulated call: server, voice webhook, Media Stream, call record and report.

Network code (requests, websocket-client, gevent), imported inside the
functions so that ``callsim.main`` can monkey-patch first; ``run`` is the
command's body.
"""

from __future__ import annotations

import argparse
import json
import sys

from tools.twilio_sim.audio_files import load_script, ulaw_to_pcm, write_wav
from tools.twilio_sim.frames import SAMPLE_RATE
from tools.twilio_sim.latency import pair_latencies
from tools.twilio_sim.messages import TwilioMessages, random_sid
from tools.twilio_sim.report import CallOutcome, build_report, print_conversation, print_summary
from tools.twilio_sim.repo import add_repo_root_to_sys_path
from tools.twilio_sim.script import CallerScript, TurnWaiter
from tools.twilio_sim.stream import SimulatedCall
from tools.twilio_sim.twiml import TwimlError, TwimlStream, parse_twiml, webhook_form, websocket_url

WEBHOOK_PATH = "/incoming-call"
API_CALL_PATH = "/api/calls/{call_sid}"


class CallError(Exception):
    """The call could not be placed or streamed (exit code 1)."""


def start_in_process_server():
    """Start the repository's app on 127.0.0.1 with an ephemeral port; return (server, base URL)."""
    add_repo_root_to_sys_path()
    from app import create_app, make_server

    server = make_server(create_app(), "127.0.0.1", 0)
    server.start()
    return server, f"http://127.0.0.1:{server.server_port}"


def fetch_call_record(base_url: str, call_sid: str, wait_s: float = 3.0) -> tuple[dict | None, str | None]:
    """GET the call record, retrying until it has ``ended_at`` (or ``wait_s`` passes).

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
            response = requests.get(url, timeout=5)
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


def answer_call(webhook_url: str, form: dict[str, str], validator) -> TwimlStream:
    """POST the voice webhook like Twilio and return the stream from its TwiML.

    Args:
        webhook_url: ``{url}/incoming-call``.
        form: fields from ``webhook_form``.
        validator: a ``twilio.request_validator.RequestValidator`` to sign with, or None.

    Raises:
        CallError: connection failure, non-200 answer, or TwiML without ``<Connect><Stream>``.
    """
    import requests

    headers = {"User-Agent": "TwilioProxy/1.1"}
    if validator is not None:
        headers["X-Twilio-Signature"] = validator.compute_signature(webhook_url, form)
    try:
        response = requests.post(webhook_url, data=form, headers=headers, timeout=30)
    except requests.RequestException as error:
        raise CallError(f"voice webhook failed: {error}") from None
    if response.status_code != 200:
        raise CallError(f"voice webhook returned HTTP {response.status_code}: {response.text[:300]}")
    try:
        return parse_twiml(response.text)
    except TwimlError as error:
        raise CallError(f"{error}\nTwiML was: {response.text[:500]}") from None


def open_stream(ws_url: str, signed_url: str, validator):
    """Open the Media Stream WebSocket (blocking, no timeout once open).

    Args:
        ws_url: URL to connect to (ws:// or wss://).
        signed_url: the TwiML ``<Stream url>``; Twilio signs it exactly as written,
            with empty params [protocol.md §6.2].
        validator: a ``RequestValidator`` to sign with, or None.

    Raises:
        CallError: the connection or handshake failed.
    """
    import websocket

    headers = []
    if validator is not None:
        headers.append(f"X-Twilio-Signature: {validator.compute_signature(signed_url, {})}")
    try:
        ws = websocket.create_connection(ws_url, timeout=10, header=headers)
    except (websocket.WebSocketException, OSError) as error:
        raise CallError(f"WebSocket connection to {ws_url} failed: {error}") from None
    ws.settimeout(None)
    return ws


def place_call(args: argparse.Namespace, outcome: CallOutcome, audio: dict[str, bytes]) -> None:
    """Run the whole call against ``outcome.base_url``, filling ``outcome``.

    Raises:
        CallError: the call could not be placed or streamed.
    """
    validator = None
    if args.auth_token:
        from twilio.request_validator import RequestValidator

        validator = RequestValidator(args.auth_token)
    webhook_url = outcome.base_url.rstrip("/") + WEBHOOK_PATH
    form = webhook_form(outcome.call_sid, outcome.account_sid, args.from_number, args.to_number)
    print(f"POST {webhook_url} (CallSid {outcome.call_sid}, From {args.from_number}, To {args.to_number})")
    outcome.twiml = twiml = answer_call(webhook_url, form, validator)
    for text in twiml.say:
        print(f"TwiML <Say>: {text!r} (Twilio speaks this before streaming; not simulated)")
    try:
        outcome.ws_url, outcome.downgraded = websocket_url(twiml.url, webhook_url)
    except TwimlError as error:
        raise CallError(str(error)) from None
    if outcome.downgraded:
        print(f"stream URL {twiml.url} -> connecting to {outcome.ws_url} (webhook is plain http://, no TLS)")
    print(f"WebSocket {outcome.ws_url} (StreamSid {outcome.stream_sid}, parameters {twiml.parameters})")
    ws = open_stream(outcome.ws_url, twiml.url, validator)

    waiter = TurnWaiter(args.quiet_s, args.min_wait_s, args.turn_timeout_s)
    script = CallerScript(outcome.items, audio, waiter, wait_first=not args.no_wait_greeting)
    messages = TwilioMessages(outcome.stream_sid, outcome.account_sid, outcome.call_sid, args.first_timestamp_ms)
    outcome.session = session = SimulatedCall(ws, messages, twiml.parameters, script, waiter, verbose=args.verbose)
    session.run()
    if session.failure:
        outcome.errors.append(session.failure)

    write_wav(args.out, ulaw_to_pcm(bytes(session.heard)))
    outcome.heard_wav = args.out
    print(f"\nheard audio: {args.out} ({len(session.heard) / SAMPLE_RATE:.2f} s, "
          f"sample 0 = timestamp {args.first_timestamp_ms} ms)")

    outcome.record, outcome.record_error = fetch_call_record(outcome.base_url, outcome.call_sid)
    if outcome.record is not None:
        print_conversation(outcome.record)
        caller_ends = session.caller_end_send_times(outcome.record.get("turns") or [])
        outcome.latency = pair_latencies(caller_ends, session.replies.replies)
    else:
        print(f"\nno call record: {outcome.record_error}")
    if session.violations:
        text = f"{len(session.violations)} protocol violation(s) by the server"
        print(text)
        if args.strict:
            outcome.errors.append(text)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Place the call described by ``args``; return the exit code. Needs gevent patching done."""
    if args.quiet_s < 0 or args.min_wait_s < 0 or args.turn_timeout_s <= 0 or args.first_timestamp_ms < 0:
        parser.error("--quiet-s, --min-wait-s and --first-timestamp-ms must be >= 0, --turn-timeout-s > 0")
    try:
        items, audio = load_script(args.script)
    except ValueError as error:
        parser.error(str(error))
    outcome = CallOutcome(random_sid("CA"), random_sid("AC"), random_sid("MZ"), items, args.first_timestamp_ms,
                          base_url=args.url)
    server = None
    try:
        if outcome.base_url is None:
            print("starting the server in this process (app.create_app)...", flush=True)
            server, outcome.base_url = start_in_process_server()
            print(f"server listening on {outcome.base_url}")
        place_call(args, outcome, audio)
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
