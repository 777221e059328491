"""Place an outbound call through a running callstream server (``POST /api/calls``).

Usage::

    python tools/call.py +15551234567 [--from +15557654321] [--greeting "Hi, this is …"]
        [--voicemail-message "…"] [--responder examples.appointment_reminder:respond]
        [--param name=Ann --param when="Tuesday at 3 pm"] [--no-machine-detection]
        [--url http://127.0.0.1:5050]

The server needs ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``PUBLIC_URL`` (the https://
address Twilio reaches it at) and a caller ID (``TWILIO_PHONE_NUMBER`` or ``--from``). The
dashboard login is ``$DASHBOARD_USER`` (default ``admin``) and ``$DASHBOARD_PASSWORD``. It prints
the new call's SID; the call then runs like an inbound one, and ``GET /api/calls/<sid>`` shows it.

Exit code: 0 placed; 1 the server (or Twilio, through it) refused, with its error; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import requests


def build_arg_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="call", description="Place an outbound call through callstream's POST /api/calls.")
    parser.add_argument("to", help="the number to call (E.164, e.g. +15551234567) or a SIP address")
    parser.add_argument("--from", dest="from_number", help="caller ID (E.164); default: the server's TWILIO_PHONE_NUMBER")
    parser.add_argument("--greeting", help="what the bot says once a person answers (default: the server's GREETING)")
    parser.add_argument("--voicemail-message", help="what an answering machine hears after its beep "
                                                    "(default: the server's VOICEMAIL_MESSAGE)")
    parser.add_argument("--responder", help="one of the server's OUTBOUND_RESPONDERS for this call (default: RESPONDER)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a value for the responder (CallContext.custom_parameters); repeatable")
    parser.add_argument("--no-machine-detection", action="store_true",
                        help="do not ask Twilio for answering-machine detection (default: the server's MACHINE_DETECTION)")
    parser.add_argument("--url", default=os.environ.get("CALLSTREAM_URL", "http://127.0.0.1:5050"),
                        help="the server's base URL (default: $CALLSTREAM_URL or %(default)s)")
    return parser


def request_body(args: argparse.Namespace) -> dict:
    """The JSON body of ``POST /api/calls`` for these arguments.

    Raises:
        ValueError: a ``--param`` without ``=``.
    """
    body: dict = {"to": args.to}
    for key, value in (("from", args.from_number), ("greeting", args.greeting),
                       ("voicemail_message", args.voicemail_message), ("responder", args.responder)):
        if value is not None:
            body[key] = value
    if args.no_machine_detection:
        body["machine_detection"] = False
    parameters = {}
    for pair in args.param:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"--param must look like NAME=VALUE, got {pair!r}")
        parameters[name] = value
    if parameters:
        body["parameters"] = parameters
    return body


def main(argv: list[str] | None = None) -> int:
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    try:
        body = request_body(args)
    except ValueError as error:
        parser.error(str(error))
    password = os.environ.get("DASHBOARD_PASSWORD", "")
    auth = (os.environ.get("DASHBOARD_USER") or "admin", password) if password else None
    url = args.url.rstrip("/") + "/api/calls"
    try:
        response = requests.post(url, json=body, auth=auth, timeout=30)
    except requests.RequestException as error:
        print(f"POST {url} failed: {error}", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:300]}
    if response.status_code != 201:
        print(f"HTTP {response.status_code}: {answer.get('error', answer)}", file=sys.stderr)
        return 1
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
