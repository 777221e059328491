"""End a call for real through Twilio's REST API (when credentials are configured).

Closing the media stream ends ``<Connect>``; with nothing after ``</Connect>`` Twilio then ends
the call (TwiML ``<Connect>``). A TwiML Bin or another app may have verbs after it, so when
``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` are set the server also updates the call to
``Status=completed`` (Twilio's Call resource), which hangs up whatever the TwiML says.
"""

from __future__ import annotations

import logging

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

log = logging.getLogger(__name__)


def make_client(account_sid: str, auth_token: str, http_client=None) -> Client | None:
    """A REST client, or ``None`` unless both credentials are set."""
    if not (account_sid and auth_token):
        return None
    return Client(account_sid, auth_token, http_client=http_client)


def complete_call(client: Client, call_sid: str) -> str:
    """Hang up ``call_sid`` (blocking: run it in a thread). Returns what happened, for the log.

    A call that has already ended (HTTP 404, Twilio error 20404) is not an error.
    """
    try:
        call = client.calls(call_sid).update(status="completed")
    except TwilioRestException as exc:
        if exc.status == 404:
            return "already ended"
        raise
    return f"status {call.status}"
