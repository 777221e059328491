"""Outbound calls over HTTP: POST /api/calls through the twilio library to the REST API stand-in (a
real socket), the webhook that connects the placed call's stream, and Twilio's progress and
answering-machine detection callbacks, signed."""

import json
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from app import create_app
from core.outbound import CallRequest, OutboundOptions
from core.dial_targets import check_dial_target, is_e164, is_sip_address
from tools.twilio_sim.rest_api import TwilioApi

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
TOKEN = "auth-token"
PUBLIC = "http://calls.example.com"
OURS = "+15550100"


@pytest.fixture
def api():
    with TwilioApi(ACCOUNT_SID, TOKEN, verified_numbers=frozenset({"+15550199", "sip:desk@pbx.example.com"})) as api:
        yield api


@pytest.fixture
def app(app_settings, api):
    return create_app({**app_settings, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": TOKEN,
                       "TWILIO_API_BASE_URL": api.url, "PUBLIC_URL": PUBLIC, "TWILIO_PHONE_NUMBER": OURS,
                       "DASHBOARD_PASSWORD": "pw", "OUTBOUND_RESPONDERS": "examples.front_desk:respond"})


LOGIN = {"Authorization": "Basic YWRtaW46cHc="}  # admin:pw


def post_json(client, body, headers=LOGIN):
    return client.post("/api/calls", data=json.dumps(body), headers={**headers, "Content-Type": "application/json"})


def signed_post(client, path, fields):
    url = PUBLIC + path
    signature = RequestValidator(TOKEN).compute_signature(url, fields)
    split = urlsplit(url)
    return client.post(split.path + ("?" + split.query if split.query else ""), data=fields,
                       headers={"X-Twilio-Signature": signature, "Host": "calls.example.com"})


def test_placing_a_call_asks_twilio_with_the_webhook_progress_and_machine_detection(app, api):
    client = app.test_client()
    response = post_json(client, {"to": "+15550199", "greeting": "Hi Ann, this is the clinic.",
                                  "parameters": {"name": "Ann", "when": "Tuesday 3 pm"}})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["to"] == "+15550199" and body["from"] == OURS and body["status"] == "queued"
    [request] = api.requests
    form = request.form
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json" and request.account_sid == ACCOUNT_SID
    assert (form["To"], form["From"], form["Method"]) == ("+15550199", OURS, "POST")
    url = urlsplit(form["Url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == PUBLIC + "/outbound-call"
    assert dict(parse_qsl(url.query)) == {"amd": "1", "greeting": "Hi Ann, this is the clinic.", "p.name": "Ann",
                                          "p.when": "Tuesday 3 pm"}
    assert form["StatusCallback"] == PUBLIC + "/call-status" and form["StatusCallbackMethod"] == "POST"
    assert form["MachineDetection"] == "DetectMessageEnd" and form["AsyncAmd"] == "true"
    assert form["AsyncAmdStatusCallback"] == PUBLIC + "/amd-status" and form["MachineDetectionTimeout"] == "30"
    stored = app.extensions["callstream"].store.get_call(body["call_sid"])
    assert (stored.direction, stored.from_number, stored.to_number) == ("outbound", OURS, "+15550199")
    assert stored.started_at is not None and stored.ended_at is None

    # The webhook Twilio then requests (signed over the whole URL, query included) connects the stream.
    answered = signed_post(client, url.path + "?" + url.query,
                           {"CallSid": body["call_sid"], "From": OURS, "To": "+15550199", "Direction": "outbound-api",
                            "AccountSid": ACCOUNT_SID})
    assert answered.status_code == 200, answered.data
    stream = ET.fromstring(answered.data).find("Connect/Stream")
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["callstream_direction"] == "outbound" and parameters["callstream_amd"] == "1"
    assert parameters["callstream_greeting"] == "Hi Ann, this is the clinic."
    assert parameters["name"] == "Ann" and parameters["CallSid"] == body["call_sid"]
    options = OutboundOptions.from_stream_parameters(parameters)
    assert options.greeting == "Hi Ann, this is the clinic." and dict(options.parameters) == {"name": "Ann", "when": "Tuesday 3 pm"}


def test_twilios_refusals_and_bad_requests_are_clear_4xx_json(app, api, app_settings):
    client = app.test_client()
    cases = [
        ({"to": "+15550142"}, 400, "21219"),  # a trial account calling an unverified number
        ({"to": "555-0199"}, 400, "E.164"),
        ({"to": "+15550199", "from": "me"}, 400, "from must be an E.164"),
        ({"to": "+15550199", "responder": "os:system"}, 400, "OUTBOUND_RESPONDERS"),
        ({"to": "+15550199", "greeting": "x" * 401}, 400, "at most 400"),
        ({"to": "+15550199", "parameters": {"callstream_token": "x"}}, 400, "reserved"),
        ({"to": "+15550199", "parameters": {"n": 1}}, 400, "string"),
        ({"to": "+15550199", "machine_detection": "yes"}, 400, "true or false"),
        ({"to": "+15550199", "colour": "red"}, 400, "unknown field"),
        (["+15550199"], 400, "JSON object"),
    ]
    for body, status, words in cases:
        response = post_json(client, body)
        assert response.status_code == status and words in json.dumps(response.get_json()), (body, response.get_json())
    assert len(api.requests) == 1  # only the unverified number reached Twilio
    assert post_json(client, {"to": "+15550199"}, headers={}).status_code == 401  # the dashboard login
    form_post = client.post("/api/calls", data={"to": "+15550199"}, headers=LOGIN)  # what a cross-site form can send
    assert form_post.status_code == 415 and len(api.requests) == 1

    no_credentials = create_app({**app_settings, "DASHBOARD_PASSWORD": "pw", "PUBLIC_URL": PUBLIC, "TWILIO_PHONE_NUMBER": OURS})
    response = post_json(no_credentials.test_client(), {"to": "+15550199"})
    assert response.status_code == 400 and "TWILIO_ACCOUNT_SID" in response.get_json()["error"]
    wrong_token = create_app({**app_settings, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "wrong",
                              "TWILIO_API_BASE_URL": api.url, "PUBLIC_URL": PUBLIC, "DASHBOARD_PASSWORD": "pw"})
    response = post_json(wrong_token.test_client(), {"to": "+15550199", "from": OURS})
    assert response.status_code == 400 and response.get_json()["twilio_code"] == 20003
    unreachable = create_app({**app_settings, "TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": TOKEN,
                              "TWILIO_API_BASE_URL": "http://127.0.0.1:9", "PUBLIC_URL": PUBLIC, "DASHBOARD_PASSWORD": "pw"})
    assert post_json(unreachable.test_client(), {"to": "+15550199", "from": OURS}).status_code == 502


def test_progress_and_machine_detection_callbacks_are_kept_on_the_call(app, api):
    client = app.test_client()
    call_sid = post_json(client, {"to": "+15550199", "machine_detection": False}).get_json()["call_sid"]
    assert "MachineDetection" not in api.requests[0].form
    for status in ("initiated", "ringing", "in-progress"):
        assert signed_post(client, "/call-status", {"CallSid": call_sid, "CallStatus": status}).status_code == 204
    assert signed_post(client, "/amd-status", {"CallSid": call_sid, "AnsweredBy": "machine_end_beep",
                                               "MachineDetectionDuration": "4210"}).status_code == 204
    store = app.extensions["callstream"].store
    assert store.answered_by(call_sid) == "machine_end_beep"
    call = store.get_call(call_sid)
    assert [(e.event, e.name) for e in call.status_events] == [
        ("call-initiated", None), ("call-ringing", None), ("call-in-progress", None),
        ("answered-by", "machine_end_beep after 4210 ms")]
    assert call.ended_at is None
    assert signed_post(client, "/call-status", {"CallSid": call_sid, "CallStatus": "no-answer"}).status_code == 204
    assert store.get_call(call_sid).ended_at is not None  # it never streamed: ended here
    # Unsigned, or not Twilio's values: refused.
    assert client.post("/amd-status", data={"CallSid": call_sid, "AnsweredBy": "human"}).status_code == 403
    assert signed_post(client, "/amd-status", {"CallSid": call_sid, "AnsweredBy": "robot"}).status_code == 400
    assert signed_post(client, "/call-status", {"CallSid": "../x", "CallStatus": "ringing"}).status_code == 400


def test_call_request_and_options_round_trip():
    call = CallRequest.from_json({"to": "sip:desk@pbx.example.com", "from": "+15550100", "voicemail_message": "Call us.",
                                  "responder": "a:b", "parameters": {"id": "42"}},
                                 default_from="", machine_detection=True, allowed_responders=["a:b"])
    assert call.to == "sip:desk@pbx.example.com" and call.options.machine_detection
    query = dict(parse_qsl(call.options.query()))
    assert OutboundOptions.from_query(query) == call.options
    parameters = {**call.options.stream_parameters(), "callstream_token": "t", "From": "+15550100"}
    assert OutboundOptions.from_stream_parameters(parameters) == call.options
    assert OutboundOptions.from_stream_parameters({"From": "+1555"}) is None  # an inbound call
    with pytest.raises(ValueError, match="TWILIO_PHONE_NUMBER"):
        CallRequest.from_json({"to": "+15550199"}, default_from="", machine_detection=True, allowed_responders=[])
    with pytest.raises(ValueError, match="amd"):
        OutboundOptions.from_query({"amd": "maybe"})
    # Out-of-bounds values in a stream's parameters fall back to the settings instead of failing the stream.
    loose = OutboundOptions.from_stream_parameters({"callstream_direction": "outbound", "callstream_greeting": "x" * 999,
                                                     "bad name": "v"})
    assert loose.greeting is None and dict(loose.parameters) == {}


def test_dial_targets():
    assert is_e164("+15551234567") and not is_e164("15551234567") and not is_e164("+0555") and not is_e164("+1" + "5" * 15)
    assert is_sip_address("sip:desk@pbx.example.com;transport=tls") and is_sip_address("sips:a.b@10.0.0.1:5061")
    for bad in ("sip:desk", "sip:<x>@h", "sip:a b@h", "tel:+1555", "sip:a@" + "h" * 300, "+1555;x"):
        assert not is_sip_address(bad) and not is_e164(bad)
        with pytest.raises(ValueError):
            check_dial_target(bad)
    assert check_dial_target(" +15551234567 ") == "+15551234567"


def test_an_oversized_body_is_refused_before_it_is_read(app, api):
    response = app.test_client().post("/api/calls", data=b"{" + b" " * 70_000 + b"}",
                                      headers={**LOGIN, "Content-Type": "application/json"})
    assert response.status_code == 413 and api.requests == []
