"""REST hang-up through the twilio library, with a recording HTTP client in place of the network, and
over a real socket to the REST API stand-in (tools/twilio_sim/rest_api.py)."""

import logging

from twilio.http import HttpClient
from twilio.http.response import Response

import pytest
from twilio.base.exceptions import TwilioRestException

from runtime.twilio_rest import RebasedHttpClient, complete_call, make_client
from tools.twilio_sim.rest_api import TwilioApi

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
CALL_SID = "CA" + "fedcba9876543210" * 2


class RecordingHttpClient(HttpClient):
    def __init__(self, status=200, body='{"sid": "CA1", "status": "completed"}'):
        super().__init__(logging.getLogger("twilio.http_client"), False)
        self.requests, self.status, self.body = [], status, body

    def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False):
        self.requests.append((method, uri, dict(data or {}), auth))
        return Response(self.status, self.body)


def test_no_client_without_both_credentials():
    assert make_client("AC1", "") is None and make_client("", "token") is None


def test_complete_call_posts_status_completed():
    http = RecordingHttpClient()
    client = make_client("AC0123", "secret", http_client=http)
    assert complete_call(client, "CA42") == "status completed"
    [(method, uri, data, auth)] = http.requests
    assert method == "POST" and uri.endswith("/2010-04-01/Accounts/AC0123/Calls/CA42.json")
    assert data == {"Status": "completed"} and auth == ("AC0123", "secret")


def test_a_call_that_already_ended_is_fine():
    http = RecordingHttpClient(404, '{"code": 20404, "message": "The requested resource was not found", "status": 404}')
    assert complete_call(make_client("AC0123", "secret", http_client=http), "CA42") == "already ended"


def test_complete_call_over_a_socket_to_the_api_stand_in():
    with TwilioApi(ACCOUNT_SID, "secret") as api:
        api.add_call(CALL_SID)
        client = make_client(ACCOUNT_SID, "secret", api_base_url=api.url)
        assert complete_call(client, CALL_SID) == "status completed"
        assert complete_call(client, "CA" + "1" * 32) == "already ended"  # Twilio's 404
        [first, second] = api.requests
        assert first.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{CALL_SID}.json"
        assert first.form == {"Status": "completed"} and first.account_sid == ACCOUNT_SID
        assert api.calls[CALL_SID]["status"] == "completed"
        with pytest.raises(TwilioRestException) as failure:
            complete_call(make_client(ACCOUNT_SID, "wrong", api_base_url=api.url), CALL_SID)
        assert failure.value.status == 401 and failure.value.code == 20003


def test_calls_create_through_the_stand_in():
    with TwilioApi(ACCOUNT_SID, "secret") as api:
        client = make_client(ACCOUNT_SID, "secret", api_base_url=api.url)
        call = client.calls.create(to="+15551234567", from_="+15557654321", twiml="<Response/>")
        assert call.sid in api.calls and call.status == "queued" and call.direction == "outbound-api"
        assert api.requests[0].form == {"To": "+15551234567", "From": "+15557654321", "Twiml": "<Response/>"}
        with pytest.raises(TwilioRestException) as failure:
            client.calls.create(to="+15551234567", from_="+15557654321")  # neither Url nor Twiml
        assert failure.value.status == 400


@pytest.mark.parametrize("base_url", ["", "ftp://127.0.0.1", "127.0.0.1:8000"])
def test_a_base_url_must_be_http(base_url):
    with pytest.raises(ValueError):
        RebasedHttpClient(base_url)
