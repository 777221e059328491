"""A stand-in for Twilio's REST API: a real HTTP server on 127.0.0.1 that the twilio library is
pointed at (the server's ``TWILIO_API_BASE_URL``, or ``runtime.twilio_rest.make_client(...,
api_base_url=api.url)``), recording what it was asked. The tests use it, and callsim runs it to
place the calls the server asks for (``--answer``) and to receive transfers.

It answers the Call resource the way Twilio documents it (API version 2010-04-01, form-encoded
requests, HTTP basic auth with the account SID and auth token, JSON answers):

* ``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``: create a call (``To``, ``From`` and ``Url``
  or ``Twiml`` required, else 400, error 21205); a ``To`` that is neither E.164 nor ``sip:``: 400,
  error 21211 ("Invalid 'To' Phone Number"); with ``verified_numbers`` set (a trial account), any
  other ``To``: 400, error 21219 ("The number is unverified"). Answers 201 with a new ``CA…`` SID,
  ``status`` ``queued``, then calls ``on_create(call_sid, form)`` in a new thread;
* ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``: update a call (``Status``,
  ``Twiml``, ``Url``); 404 (error 20404) for a SID it has not created or been told of; then
  ``on_update(call_sid, form)``;
* anything else: 404. Wrong credentials: 401 (error 20003).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qs

_TO = re.compile(r"\+[1-9][0-9]{1,14}|sips?:\S+")
_CALLS = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls(?:/(CA[0-9a-f]{32}))?\.json$")


@dataclass
class ApiRequest:
    method: str
    path: str
    form: dict[str, str]
    account_sid: str | None  # the basic-auth user name


@dataclass
class TwilioApi:
    """Run with ``with TwilioApi(account_sid, auth_token) as api:``; ``api.url`` is its base URL.

    ``port``: 0 for any free one. ``on_create``/``on_update``: called with the call SID and the
    request's form after the answer is sent (in its own thread: it may run a whole call).
    """

    account_sid: str
    auth_token: str
    port: int = 0
    verified_numbers: frozenset[str] | None = None
    on_create: Callable[[str, dict[str, str]], None] | None = None
    on_update: Callable[[str, dict[str, str]], None] | None = None
    requests: list[ApiRequest] = field(default_factory=list)
    calls: dict[str, dict[str, str]] = field(default_factory=dict)  # call SID -> its resource

    def __enter__(self) -> TwilioApi:
        import threading  # here, not at import: callsim monkey-patches for gevent first
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                user, password = _basic_auth(self.headers.get("Authorization", ""))
                api.requests.append(ApiRequest("POST", self.path, form, user))
                if (user, password) != (api.account_sid, api.auth_token):
                    return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                match = _CALLS.match(self.path)
                if match is None or match.group(1) != api.account_sid:
                    return self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
                call_sid = match.group(2)
                if call_sid is None:
                    if not form.get("To") or not form.get("From") or not (form.get("Url") or form.get("Twiml")):
                        return self._answer(400, {"code": 21205, "message": "To, From and Url or Twiml are required", "status": 400})
                    if not _TO.fullmatch(form["To"]):
                        return self._answer(400, {"code": 21211, "message": f"Invalid 'To' Phone Number: {form['To'][:40]}", "status": 400})
                    if api.verified_numbers is not None and form["To"] not in api.verified_numbers:
                        return self._answer(400, {"code": 21219, "message": f"The number {form['To'][:40]} is unverified. "
                                                  "Trial accounts may only make calls to verified numbers.", "status": 400})
                    call_sid = "CA" + secrets.token_hex(16)
                    api.calls[call_sid] = {"sid": call_sid, "account_sid": api.account_sid, "to": form["To"],
                                           "from": form["From"], "status": "queued", "direction": "outbound-api"}
                    self._answer(201, api.calls[call_sid])
                    return api._notify(api.on_create, call_sid, form)
                call = api.calls.get(call_sid)
                if call is None:
                    return self._answer(404, {"code": 20404, "message": f"Call {call_sid} not found", "status": 404})
                if "Status" in form:
                    call["status"] = form["Status"]
                self._answer(200, call)
                return api._notify(api.on_update, call_sid, form)

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @staticmethod
    def _notify(callback, call_sid: str, form: dict[str, str]) -> None:
        if callback is not None:
            import threading

            threading.Thread(target=callback, args=(call_sid, dict(form)), daemon=True).start()

    def add_call(self, call_sid: str, status: str = "in-progress") -> None:
        """A call Twilio knows of (an inbound call the server is streaming)."""
        self.calls[call_sid] = {"sid": call_sid, "account_sid": self.account_sid, "status": status, "direction": "inbound"}


def _basic_auth(header: str) -> tuple[str | None, str | None]:
    if not header.startswith("Basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return user, password
