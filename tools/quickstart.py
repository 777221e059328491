"""ngrok quickstart: print what to paste into the Twilio console for the tunnel that is running.

Usage::

    python app.py                        # terminal 1: the server, on $PORT (5050)
    ngrok http 5050                      # terminal 2: the tunnel
    python tools/quickstart.py [--number +15551234567] [--forward-to +15557654321]

It asks the running ngrok agent for its public ``https://`` URL (the agent's local API,
``GET http://127.0.0.1:4040/api/tunnels``, answers ``{"tunnels": [{"public_url":
"https://….ngrok.app", "proto": "https", "config": {"addr": "http://localhost:5050"}}, …]}``),
checks that the local server answers ``GET /``, and prints: the ``PUBLIC_URL`` to export,
the webhook URLs for the Twilio console, the ``twilio`` CLI command that sets the number's
voice URL, and a TwiML Bin for a listen-only fork (``<Start><Stream>``) with the host filled in.

Exit code: 0 printed; 1 no ngrok agent, or no ``https`` tunnel; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from xml.dom import minidom

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script, only tools/ is on sys.path; the TwiML comes from twiml/
    sys.path.insert(0, str(REPO_ROOT))

from twiml.responses import fork_and_dial  # noqa: E402

NGROK_API_URL = "http://127.0.0.1:4040/api/tunnels"  # the agent's default web_addr
DEFAULT_PORT = 5050  # core.settings: PORT
NUMBER_PLACEHOLDER = "+1XXXXXXXXXX"
# What the voice webhook passes on to the stream (handlers/voice.py); TwiML Bins fill {{Name}} from the call.
# A Bin cannot compute the per-call stream token (core.call_tokens): it carries STREAM_BEARER_TOKEN instead.
BEARER_PLACEHOLDER = "YOUR-STREAM-BEARER-TOKEN"
BIN_PARAMETERS = {"From": "{{From}}", "To": "{{To}}", "CallSid": "{{CallSid}}", "callstream_token": BEARER_PLACEHOLDER}
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_NUMBER_SID = re.compile(r"^PN[0-9a-fA-F]{32}$")


class QuickstartError(Exception):
    """Nothing to print: the ngrok agent is not running, answers oddly, or has no https tunnel."""


@dataclass(frozen=True)
class Tunnel:
    public_url: str  # "https://abc.ngrok.app", no trailing slash
    forwards_to: str  # the agent's config.addr: "http://localhost:5050", "localhost:5050" or "5050"

    @property
    def local_port(self) -> int | None:
        """The local port the tunnel forwards to, or None when ``forwards_to`` names none."""
        return forwarded_port(self.forwards_to)


def forwarded_port(addr: str) -> int | None:
    """The port of an ngrok ``config.addr``: ``"5050"``, ``"localhost:5050"``, ``"http://localhost:5050"``.

    A URL without a port means its scheme's (80 for http, 443 for https). None when there is none.
    """
    addr = addr.strip()
    if addr.isdigit():
        return int(addr)
    parts = urlsplit(addr if "://" in addr else f"tcp://{addr}")
    try:
        if parts.port is not None:
            return parts.port
    except ValueError:  # "host:notaport"
        return None
    return {"http": 80, "https": 443}.get(parts.scheme)


def choose_tunnel(tunnels_json: dict, port: int | None = None) -> Tunnel:
    """Pick the ``https`` tunnel from the agent's ``GET /api/tunnels`` answer.

    Args:
        tunnels_json: the parsed answer, ``{"tunnels": [{"public_url", "proto", "config": {"addr"}}, ...]}``.
        port: the local server's port: among several https tunnels, the one forwarding there wins.

    Raises:
        QuickstartError: the answer is not a tunnel list, no tunnel is ``https`` (Twilio needs a
            ``wss://`` stream with a real certificate), or several are and none forwards to ``port``.
    """
    entries = tunnels_json.get("tunnels") if isinstance(tunnels_json, dict) else None
    if not isinstance(entries, list):
        raise QuickstartError(f"the ngrok agent's answer has no tunnel list: {str(tunnels_json)[:200]}")
    https = [
        Tunnel(str(t["public_url"]).rstrip("/"), str((t.get("config") or {}).get("addr", "")))
        for t in entries
        if isinstance(t, dict) and str(t.get("public_url", "")).startswith("https://")
    ]
    if not https:
        found = ", ".join(str(t.get("public_url")) for t in entries if isinstance(t, dict)) or "none"
        raise QuickstartError(
            f"ngrok has no https tunnel (tunnels: {found}); Twilio needs wss:// with a real certificate. "
            f"Start one with: ngrok http {port or DEFAULT_PORT}"
        )
    matching = [t for t in https if port is not None and t.local_port == port]
    if matching:
        return matching[0]
    if len(https) == 1:
        return https[0]
    listed = ", ".join(f"{t.public_url} -> {t.forwards_to}" for t in https)
    raise QuickstartError(f"several https tunnels and none forwards to port {port}: {listed}; pass --port")


def fetch_tunnels(api_url: str = NGROK_API_URL, timeout_s: float = 3.0) -> dict:
    """``GET`` the ngrok agent's tunnel list (JSON).

    Raises:
        QuickstartError: nothing answers at ``api_url``, an HTTP error, or an answer that is not JSON.
    """
    try:
        response = requests.get(api_url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise QuickstartError(
            f"no ngrok agent answers at {api_url} ({type(exc).__name__}). Start one in another terminal: "
            f"ngrok http {DEFAULT_PORT} (or pass --ngrok-api if its web_addr is elsewhere)"
        ) from None
    if response.status_code != 200:
        raise QuickstartError(f"{api_url} answered HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()
    except ValueError:
        raise QuickstartError(f"{api_url} did not answer JSON: {response.text[:200]}") from None


def check_local_server(base_url: str, timeout_s: float = 3.0) -> str | None:
    """``GET {base_url}/``: None when the server answers ``{"status": "ok"}``, else what is wrong."""
    try:
        response = requests.get(base_url.rstrip("/") + "/", timeout=timeout_s)
        body = response.json()
    except requests.RequestException as exc:
        return f"nothing answers at {base_url} ({type(exc).__name__}): start the server with `python app.py`"
    except ValueError:
        return f"{base_url} answered, but not with callstream's health JSON (HTTP {response.status_code})"
    if response.status_code != 200 or not isinstance(body, dict) or body.get("status") != "ok":
        return f"{base_url} answered HTTP {response.status_code}: {str(body)[:200]}"
    return None


def webhook_urls(public_url: str) -> dict[str, str]:
    """The server's public URLs: ``conversation`` and ``fork`` voice webhooks, ``stream`` and ``status``."""
    base = public_url.rstrip("/")
    host = urlsplit(base).netloc
    return {
        "conversation": f"{base}/incoming-call",
        "fork": f"{base}/forward-call",
        "stream": f"wss://{host}/media-stream",
        "status": f"{base}/stream-status",
    }


def twilio_cli_command(number: str, voice_url: str) -> str:
    """The ``twilio`` CLI command that sets ``number``'s voice URL (POST), shell-quoted.

    Args:
        number: the Twilio number, E.164 (``+15551234567``) or its ``PN…`` SID.
        voice_url: the webhook, e.g. ``https://abc.ngrok.app/incoming-call``.
    """
    return f"twilio phone-numbers:update {shlex.quote(number)} --voice-url={shlex.quote(voice_url)} --voice-method=POST"


def fork_twiml_bin(public_url: str, forward_to: str) -> str:
    """A TwiML Bin for a listen-only fork: ``<Start><Stream track="both_tracks">`` then ``<Dial>``.

    The same document ``/forward-call`` answers (``twiml.responses.fork_and_dial``), with the
    webhook's values as TwiML Bin templates (``{{From}}``…), indented for pasting.
    """
    urls = webhook_urls(public_url)
    xml = fork_and_dial(urls["stream"], status_callback_url=urls["status"], forward_to=forward_to, parameters=BIN_PARAMETERS)
    return minidom.parseString(xml).toprettyxml(indent="  ").split("\n", 1)[1].strip()


def instructions(tunnel: Tunnel, *, number: str = NUMBER_PLACEHOLDER, forward_to: str = NUMBER_PLACEHOLDER,
                 configured_public_url: str = "", server_problem: str | None = None) -> str:
    """The text to print: what to export, paste and run for ``tunnel``.

    Args:
        tunnel: the ngrok tunnel in use.
        number: the Twilio number to configure (E.164 or ``PN…`` SID), or a placeholder.
        forward_to: the number a fork dials, or a placeholder.
        configured_public_url: ``PUBLIC_URL`` as set in this environment / ``.env`` (``""``: unset).
        server_problem: what ``check_local_server`` found wrong, if anything.
    """
    urls = webhook_urls(tunnel.public_url)
    lines = [f"ngrok tunnel: {tunnel.public_url} -> {tunnel.forwards_to or '?'}", ""]
    if server_problem:
        lines += [f"WARNING: {server_problem}", ""]
    if configured_public_url and configured_public_url.rstrip("/") != tunnel.public_url:
        lines += [f"WARNING: PUBLIC_URL is {configured_public_url}, not this tunnel: Twilio's signatures will fail "
                  "(403) and the stream URL will point elsewhere. Export the value below and restart the server.", ""]
    lines += [
        "1. Tell the server its public URL (signature checks and stream URLs use it), then restart it:",
        f"     export PUBLIC_URL={tunnel.public_url}",
        "",
        "2. Point your number's voice webhook here (HTTP POST). Twilio console: Phone Numbers > Manage >",
        "   Active numbers > your number > Voice Configuration > A call comes in: Webhook,",
        f"     {urls['conversation']}    (the bot answers and talks)",
        f"     {urls['fork']}     (listen-only fork: transcribes while the call goes to FORWARD_TO)",
        "   or with the twilio CLI (https://www.twilio.com/docs/twilio-cli):",
        f"     {twilio_cli_command(number, urls['conversation'])}",
        "   SignalWire: set the number to handle calls with LaML/cXML webhooks and paste the same URL as its",
        "   incoming-call webhook (or set VoiceUrl through its Twilio-compatible REST API); set SIGNALWIRE_SIGNING_KEY.",
        "",
        "3. Call the number: you hear the greeting; say something; the call appears at "
        f"{tunnel.public_url}/calls.",
        "",
        "Fork mode without a webhook on this server: a TwiML Bin (Twilio console > TwiML Bins > Create),",
        "then set the number's \"A call comes in\" to that TwiML Bin. Set STREAM_BEARER_TOKEN on the server to a long",
        f"random value and put the same value in place of {BEARER_PLACEHOLDER} (the server refuses streams without it):",
        "",
        fork_twiml_bin(tunnel.public_url, forward_to),
    ]
    if NUMBER_PLACEHOLDER in (number, forward_to):
        lines += ["", f"Replace {NUMBER_PLACEHOLDER} with real numbers, or pass --number / --forward-to."]
    return "\n".join(lines)


def _twilio_number(text: str) -> str:
    if text == NUMBER_PLACEHOLDER or _E164.match(text) or _NUMBER_SID.match(text):
        return text
    raise argparse.ArgumentTypeError(f"expected an E.164 number such as +15551234567 (or a PN… SID), got {text!r}")


def _dial_target(text: str) -> str:
    if text == NUMBER_PLACEHOLDER or _E164.match(text) or text.startswith("sip:"):
        return text
    raise argparse.ArgumentTypeError(f"expected an E.164 number such as +15557654321 or a sip: address, got {text!r}")


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv()  # PORT, PUBLIC_URL and FORWARD_TO as the server in this directory sees them
    parser = argparse.ArgumentParser(
        description="Print the Twilio console settings for the ngrok tunnel in front of a local callstream server.",
        epilog="Example: ngrok http 5050 & python tools/quickstart.py --number +15551234567",
    )
    parser.add_argument("--ngrok-api", default=NGROK_API_URL, help="the ngrok agent's tunnel list (default %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or DEFAULT_PORT),
                        help="the local server's port (default: $PORT or %(default)s)")
    parser.add_argument("--number", type=_twilio_number, default=NUMBER_PLACEHOLDER,
                        help="your Twilio number, E.164 or PN… SID, for the twilio CLI command")
    parser.add_argument("--forward-to", type=_dial_target, default=os.environ.get("FORWARD_TO") or NUMBER_PLACEHOLDER,
                        help="the number a fork dials, for the TwiML Bin (default: $FORWARD_TO)")
    parser.add_argument("--no-check", action="store_true", help="do not check that the local server answers")
    args = parser.parse_args(argv)
    try:
        tunnel = choose_tunnel(fetch_tunnels(args.ngrok_api), args.port)
    except QuickstartError as exc:
        print(f"quickstart: {exc}", file=sys.stderr)
        return 1
    problem = None if args.no_check else check_local_server(f"http://127.0.0.1:{args.port}")
    if tunnel.local_port not in (None, args.port):
        problem = (problem + "; " if problem else "") + f"the tunnel forwards to port {tunnel.local_port}, not {args.port}"
    print(instructions(tunnel, number=args.number, forward_to=args.forward_to,
                       configured_public_url=os.environ.get("PUBLIC_URL", ""), server_problem=problem))
    return 0


if __name__ == "__main__":
    sys.exit(main())
