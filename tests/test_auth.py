"""The dashboard login (handlers/auth.py): pure checks, and every call-data route of the app behind it."""

import base64
import json
from pathlib import Path

import pytest

from app import create_app
from core.settings import SettingsError
from handlers.auth import access_denied, basic_matches, bearer_matches, is_loopback

REPO = Path(__file__).resolve().parents[1]
REMOTE = {"REMOTE_ADDR": "203.0.113.7"}


def basic(user, password, encoding="utf-8"):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode(encoding)).decode("ascii")


# -- pure checks ----------------------------------------------------------------------------------


def test_basic_matches_only_the_right_user_and_password():
    assert basic_matches(basic("admin", "s3cret"), "admin", "s3cret")
    assert basic_matches(basic("admin", "s3cret").replace("Basic", "basic"), "admin", "s3cret")
    assert basic_matches(basic("admin", "pa:ss"), "admin", "pa:ss")  # a colon in the password
    for header in (None, "", basic("admin", "wrong"), basic("root", "s3cret"), basic("admin", "s3cret "), basic("admin", "s3cre"),
                   "Bearer s3cret", "Basic", "Basic !!!notbase64", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert not basic_matches(header, "admin", "s3cret"), header
    assert not basic_matches(basic("admin", ""), "admin", "")  # no password set: nobody logs in


def test_non_ascii_credentials_compare_as_bytes_and_never_raise():
    # A browser sends UTF-8; WSGI hands the header over as latin-1 text.
    assert basic_matches(basic("jürgen", "pässwörd€"), "jürgen", "pässwörd€")
    assert not basic_matches(basic("jürgen", "pässwörd", "latin-1"), "jürgen", "pässwörd")  # we ask for UTF-8
    for header in ("Basic \xe9\xe9\xe9", "Basic \u20ac\u20ac", "Bearer \xe9t\xe9", "Bearer \u20ac", "\udcff"):
        assert not basic_matches(header, "admin", "s3cret")
        assert not bearer_matches(header, "t0ken")
    raw = "t\xf6ken"  # a non-ASCII METRICS_TOKEN, sent as UTF-8 bytes, decoded by WSGI as latin-1
    assert bearer_matches("Bearer " + raw.encode("utf-8").decode("latin-1"), raw)


def test_bearer_matches():
    assert bearer_matches("Bearer t0k", "t0k") and bearer_matches("bearer  t0k ", "t0k")
    for header in (None, "Bearer t0", "Bearer ", "Token t0k", basic("admin", "t0k")):
        assert not bearer_matches(header, "t0k")
    assert not bearer_matches("Bearer ", "")


@pytest.mark.parametrize("address,expected", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.1", False), ("203.0.113.7", False), ("::ffff:10.0.0.1", False), ("fe80::1%eth0", False),
    ("", False), (None, False), ("localhost", False),
])
def test_is_loopback(address, expected):
    assert is_loopback(address) is expected


def test_access_denied_decisions():
    common = {"headers": {}, "user": "admin"}
    # Development, nothing set: this machine only, and not through a proxy.
    assert access_denied(authorization=None, remote_addr="127.0.0.1", password="", **common) is None
    assert "DASHBOARD_PASSWORD" in access_denied(authorization=None, remote_addr="10.1.1.1", password="", **common)
    assert access_denied(authorization=None, remote_addr="127.0.0.1", password="", headers={"X-Forwarded-For": "198.51.100.1"},
                         user="admin") is not None
    # A password: everyone logs in, this machine too.
    assert access_denied(authorization=None, remote_addr="127.0.0.1", password="pw", **common) is not None
    assert access_denied(authorization=basic("admin", "pw"), remote_addr="10.1.1.1", password="pw", **common) is None
    # A token route: either credential.
    assert access_denied(authorization="Bearer tk", remote_addr="10.1.1.1", password="pw", token="tk", **common) is None
    assert access_denied(authorization=basic("admin", "pw"), remote_addr="10.1.1.1", password="pw", token="tk", **common) is None
    assert access_denied(authorization="Bearer tk", remote_addr="10.1.1.1", password="pw", **common) is not None
    assert access_denied(authorization=None, remote_addr="127.0.0.1", password="", token="tk", **common) is not None


# -- the app --------------------------------------------------------------------------------------


@pytest.fixture
def locked(app_settings):
    """An app with a dashboard password and a stored call with a recording."""
    app = create_app({**app_settings, "DASHBOARD_PASSWORD": "s3cret", "METRICS_TOKEN": "scrape-me"})
    store = app.extensions["callstream"].store
    store.save_call({"call_sid": "CAsecret", "from": "+15550001111", "to": "+15550002222", "mode": "conversation",
                     "started_at": "2026-11-21T07:00:00.000+00:00", "ended_at": "2026-11-21T07:01:00.000+00:00",
                     "turns": [{"speaker": "caller", "text": "my card number is 1234", "start_ms": 0, "end_ms": 900}]})
    store.save_recording("CAsecret", "stereo", duration_ms=10, size_bytes=4, data=b"RIFF")
    return app


CALL_DATA_URLS = ["/calls", "/calls?page=2", "/calls/CAsecret", "/calls/CAnope", "/api/calls", "/api/calls/CAsecret",
                  "/api/calls/CAnope", "/api/calls/CAsecret/recording.wav", "/api/calls/CAsecret/recording/stereo.wav",
                  "/api/calls/CAnope/recording/inbound.wav", "/metrics"]


@pytest.mark.parametrize("path", CALL_DATA_URLS)
@pytest.mark.parametrize("authorization", [None, basic("admin", "wrong"), basic("root", "s3cret"), "Basic \xe9\xe9",
                                           "Bearer wrong", "Bearer \xe9t\xe9"])
def test_call_data_needs_the_login_before_anything_is_looked_up(locked, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    for environ in ({}, REMOTE):  # with a password, this machine logs in too
        response = locked.test_client().get(path, headers=headers, environ_base=environ)
        assert response.status_code == 401, (path, authorization)  # never a 404 that tells which calls exist
        assert response.headers["WWW-Authenticate"] == 'Basic realm="callstream", charset="UTF-8"'
        assert b"1234" not in response.data and b"CAsecret" not in response.data and b"+1555" not in response.data


def test_the_right_login_serves_everything(locked):
    client = locked.test_client()
    auth = {"Authorization": basic("admin", "s3cret")}
    assert client.get("/calls", headers=auth, environ_base=REMOTE).status_code == 200
    assert "my card number" in client.get("/calls/CAsecret", headers=auth, environ_base=REMOTE).get_data(as_text=True)
    assert client.get("/calls/CAnope", headers=auth, environ_base=REMOTE).status_code == 404
    assert client.get("/api/calls/CAsecret", headers=auth, environ_base=REMOTE).get_json()["from"] == "+15550001111"
    assert client.get("/api/calls/CAsecret/recording.wav", headers=auth, environ_base=REMOTE).data == b"RIFF"
    # /metrics: the dashboard login or the scraper's token.
    assert client.get("/metrics", headers=auth, environ_base=REMOTE).status_code == 200
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me"}, environ_base=REMOTE).status_code == 200
    # The token is for /metrics only.
    assert client.get("/api/calls", headers={"Authorization": "Bearer scrape-me"}, environ_base=REMOTE).status_code == 401


def test_health_stays_open_and_shows_no_call_data(locked):
    response = locked.test_client().get("/", environ_base=REMOTE)
    assert response.status_code == 200
    assert set(response.get_json()) == {"status", "service", "active_calls", "recognizer", "synthesizer"}
    assert b"CAsecret" not in response.data


def test_every_route_of_the_history_blueprints_is_protected_unless_listed_open(locked):
    """A new route on the pages or api blueprint is protected without anyone remembering to."""
    open_endpoints = {"api.health"}
    client = locked.test_client()
    checked = 0
    for rule in locked.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in ("api", "pages") or rule.endpoint in open_endpoints:
            continue
        path = rule.rule
        for argument in rule.arguments:
            path = path.replace(f"<{argument}>", "stereo" if argument == "kind" else "CAsecret")
        for method in rule.methods - {"OPTIONS"}:
            response = client.open(path, method=method, environ_base=REMOTE)
            assert response.status_code == 401, (method, path)
            checked += 1
    assert checked >= 7


def test_development_without_a_password_serves_this_machine_only(app_settings):
    app = create_app(app_settings)
    app.extensions["callstream"].store.save_call({"call_sid": "CAlocal", "turns": []})
    client = app.test_client()
    assert client.get("/api/calls/CAlocal").status_code == 200  # the test client is 127.0.0.1
    assert client.get("/calls", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    for path in ("/calls", "/calls/CAlocal", "/api/calls", "/api/calls/CAlocal", "/metrics"):
        response = client.get(path, environ_base=REMOTE)
        assert response.status_code == 401, path
        assert "DASHBOARD_PASSWORD" in response.get_data(as_text=True) and response.get_data(as_text=True).count("\n") == 1
        # Through a proxy on this machine, every visitor would look local: not served either.
        assert client.get(path, headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 401
    assert client.get("/", environ_base=REMOTE).status_code == 200


def test_production_refuses_to_start_without_a_dashboard_password(app_settings):
    production = {**app_settings, "APP_ENV": "production", "TWILIO_AUTH_TOKEN": "twilio-token"}
    with pytest.raises(SettingsError, match="DASHBOARD_PASSWORD"):
        create_app(production)
    create_app({**production, "DASHBOARD_PASSWORD": "pw"})


def test_app_json_generates_the_dashboard_password():
    env = json.loads((REPO / "app.json").read_text())["env"]
    assert env["DASHBOARD_PASSWORD"]["generator"] == "secret"


# -- the clients that read the call history (callsim, bench/load.py) ----------------------------------


def test_dashboard_auth_comes_from_the_option_or_the_environment():
    from tools.twilio_sim.call import dashboard_auth

    assert dashboard_auth(environ={}) is None
    assert dashboard_auth(environ={"DASHBOARD_PASSWORD": "pw"}) == ("admin", "pw")
    assert dashboard_auth(environ={"DASHBOARD_PASSWORD": "pw", "DASHBOARD_USER": "ops"}) == ("ops", "pw")
    assert dashboard_auth("opt", environ={"DASHBOARD_PASSWORD": "pw"}) == ("admin", "opt")


def test_callsim_reads_the_call_record_with_the_login(locked):
    import threading

    from werkzeug.serving import make_server

    from tools.twilio_sim.call import fetch_call_record

    server = make_server("127.0.0.1", 0, locked, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        record, error = fetch_call_record(base, "CAsecret", wait_s=0)
        assert record is None and "HTTP 401" in error
        record, error = fetch_call_record(base, "CAsecret", wait_s=0, auth=("admin", "s3cret"))
        assert error is None and record["turns"][0]["text"] == "my card number is 1234"
    finally:
        server.shutdown()
        thread.join(timeout=5)
