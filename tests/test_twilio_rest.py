"""REST hang-up through the twilio library, with a recording HTTP client in place of the network."""

import logging

from twilio.http import HttpClient
from twilio.http.response import Response

from runtime.twilio_rest import complete_call, make_client


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
