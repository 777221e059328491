"""Deploy files against the code: app.json, .python-version, Procfile, gunicorn.conf.py, tools/quickstart.py.

The quickstart runs against a real local HTTP server that answers like an ngrok agent.
"""

import json
import logging
import math
import os
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import gevent
import pytest
from gunicorn.app.base import Application

from core.admission import Admission
from core.settings import SETTINGS, load_settings
from tools import quickstart

REPO = Path(__file__).resolve().parents[1]
SETTING_NAMES = {setting.name for setting in SETTINGS}
HEROKU_SIGKILL_AFTER_S = 30  # Dev Center, "Dyno Shutdown Behavior": SIGKILL 30 s after SIGTERM
# Top-level keys of Heroku's app.json schema (Dev Center, "app.json Schema").
APP_JSON_KEYS = {"name", "description", "keywords", "website", "repository", "logo", "success_url", "scripts",
                 "env", "formation", "addons", "buildpacks", "environments", "stack", "image"}


def app_json() -> dict:
    return json.loads((REPO / "app.json").read_text())


# -- app.json ------------------------------------------------------------------------------------


def test_app_json_has_only_schema_keys_and_a_valid_name():
    manifest = app_json()
    assert set(manifest) <= APP_JSON_KEYS
    assert re.fullmatch(r"[a-zA-Z-_.]{3,30}", manifest["name"])
    assert manifest["description"] and len(manifest["description"]) <= 140
    assert manifest["buildpacks"] == [{"url": "heroku/python"}]
    assert manifest["formation"]["web"]["quantity"] == 1  # one process per dyno holds the models


def test_app_json_env_names_real_settings_and_their_values_parse():
    env = app_json()["env"]
    assert set(env) <= SETTING_NAMES, f"not settings: {set(env) - SETTING_NAMES}"
    for name, entry in env.items():
        assert entry["description"].strip(), name
        assert set(entry) <= {"description", "value", "required", "generator"}, name
        if "value" in entry:
            load_settings({name: entry["value"]})  # raises SettingsError on a value the app would refuse


def test_app_json_keeps_calls_and_recordings_in_postgres():
    manifest = app_json()
    # The add-on attached as DATABASE sets DATABASE_URL (a setting), so app.json must not set it itself.
    assert {"plan": "heroku-postgresql", "as": "DATABASE"} in manifest["addons"]
    assert "DATABASE_URL" in SETTING_NAMES and "DATABASE_URL" not in manifest["env"]
    assert load_settings({"RECORDINGS_STORE": manifest["env"]["RECORDINGS_STORE"]["value"]}).recordings_store == "database"


def test_app_json_production_asks_for_a_signing_secret():
    env = app_json()["env"]
    assert load_settings({"APP_ENV": env["APP_ENV"]["value"]}).app_env == "production"
    # production refuses to start without one of these (app.create_app): the deploy form must offer both.
    assert {"TWILIO_AUTH_TOKEN", "SIGNALWIRE_SIGNING_KEY"} <= set(env)
    assert env["METRICS_TOKEN"]["generator"] == "secret"


def test_app_json_grace_fits_in_herokus_shutdown_window(monkeypatch):
    grace = app_json()["env"]["SHUTDOWN_GRACE_S"]["value"]
    monkeypatch.setenv("SHUTDOWN_GRACE_S", grace)
    assert load_gunicorn_config().graceful_timeout < HEROKU_SIGKILL_AFTER_S


# -- .python-version and Procfile ----------------------------------------------------------------


def test_python_version_file_names_a_supported_major_version():
    # Heroku reads .python-version (runtime.txt is deprecated); a major version gets security patches.
    assert re.fullmatch(r"3\.(11|12|13)\n?", (REPO / ".python-version").read_text())
    assert not (REPO / "runtime.txt").exists()


def test_procfile_runs_gunicorn_with_the_config_file():
    web = [line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:")]
    assert web == ["web: gunicorn -c gunicorn.conf.py 'app:create_app()'"]


# -- gunicorn.conf.py ------------------------------------------------------------------------------


class ConfigOnly(Application):
    """gunicorn's own config loading (defaults, then the file), without starting anything."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__()

    def load_config(self):
        self.file_values = self.load_config_from_file(str(self.path))  # the module's names, END_CALLS_S too

    def load(self):
        raise AssertionError("not started in tests")


def load_gunicorn_config():
    return ConfigOnly(REPO / "gunicorn.conf.py").cfg


def gunicorn_end_calls_s() -> float:
    return ConfigOnly(REPO / "gunicorn.conf.py").file_values["END_CALLS_S"]


def default_environment(monkeypatch):
    """The settings gunicorn.conf.py reads, at their defaults (set, so that a local .env cannot change them)."""
    defaults = {s.name: s.default for s in SETTINGS}
    for name in ("PORT", "WEB_CONCURRENCY", "SHUTDOWN_GRACE_S", "MAX_CALLS", "LOG_LEVEL"):
        monkeypatch.setenv(name, str(defaults[name]))
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def documented_gunicorn_settings() -> dict[str, str]:
    """The ``| `setting` | `value` | why |`` rows of docs/deploy.md's gunicorn table."""
    text = (REPO / "docs" / "deploy.md").read_text()
    table = text.split("## gunicorn settings", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", table, flags=re.M))


def shown(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def test_gunicorn_config_is_what_the_docs_say(monkeypatch):
    default_environment(monkeypatch)
    cfg = load_gunicorn_config()
    documented = documented_gunicorn_settings()
    assert len(documented) >= 12
    for name, value in documented.items():
        assert shown(cfg.settings[name].get()) == value, name
    assert cfg.worker_class_str == "gevent"
    assert cfg.post_worker_init.__module__ == "__config__"  # the file's hook, not gunicorn's no-op default


def test_gunicorn_config_follows_the_environment(monkeypatch):
    monkeypatch.setenv("PORT", "6123")
    monkeypatch.setenv("SHUTDOWN_GRACE_S", "10.5")
    monkeypatch.setenv("MAX_CALLS", "1000")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")
    cfg = load_gunicorn_config()
    assert cfg.bind == ["0.0.0.0:6123"]
    assert cfg.graceful_timeout == math.ceil(10.5) + gunicorn_end_calls_s()
    assert cfg.worker_connections == 2 * 1000 + 100
    assert cfg.forwarded_allow_ips == ["10.0.0.1"]


def gunicorn_file_value(name: str):
    return ConfigOnly(REPO / "gunicorn.conf.py").file_values[name]


def test_gunicorn_workers_follow_web_concurrency_up_to_the_cores_and_memory(monkeypatch):
    default_environment(monkeypatch)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    cfg = load_gunicorn_config()
    cores, memory_mb = gunicorn_file_value("machine_cores")(), gunicorn_file_value("machine_memory_mb")()
    assert cfg.workers == min(2, cores, memory_mb // 800) >= 1  # this machine: 2 cores, 24 GB
    worker_count = gunicorn_file_value("worker_count")
    # Heroku's Python buildpack sets WEB_CONCURRENCY, unless it is a config var, to min(2 × cores + 1, MB / 256):
    # 2 on 512 MB dynos, 4 on standard-2x (1 GB), 5 on performance-m (2.5 GB, 2 cores), 17 on performance-l (8 cores).
    assert worker_count(2, 8, 512) == 1
    assert worker_count(4, 2, 1024) == 1  # two workers of ~450 MB would not fit with their calls
    assert worker_count(5, 2, 2560) == 2
    assert worker_count(17, 8, 14336) == 8
    assert worker_count(1, 8, 14336) == 1  # the default
    assert worker_count(3, 4, 4096) == 3


class FakeArbiter:
    def __init__(self):
        self.warnings = []
        self.log = SimpleNamespace(warning=lambda *args: self.warnings.append(args[0] % args[1:]))


def test_without_a_secret_gunicorns_workers_share_one_stream_token_key(monkeypatch):
    # A call's webhook and its stream may reach different workers: the stream's token must be one the
    # other worker accepts. With no signing secret each process would key its tokens at random.
    from runtime.services import Services

    default_environment(monkeypatch)
    for name in ("TWILIO_AUTH_TOKEN", "SIGNALWIRE_SIGNING_KEY", "STREAM_BEARER_TOKEN"):
        monkeypatch.setenv(name, "")  # restored after the test: on_starting sets one
    monkeypatch.setenv("WEB_CONCURRENCY", "64")
    arbiter = FakeArbiter()
    cfg = load_gunicorn_config()
    cfg.on_starting(arbiter)
    key = os.environ["STREAM_BEARER_TOKEN"]
    assert len(key) >= 40
    assert arbiter.warnings and arbiter.warnings[0].startswith(f"WEB_CONCURRENCY=64, starting {cfg.workers} worker(s)")

    def worker():  # what each forked worker's create_app builds from the inherited environment
        return Services(settings=load_settings(os.environ), recognizer=None, synthesizer=None, responder=None, store=None)

    first, second = worker(), worker()
    call_sid, now = "CA" + "0" * 32, time.time()
    assert second.call_tokens.check(call_sid, {"callstream_token": first.call_tokens.make(call_sid, now)}, now) is None
    assert second.call_tokens.check("CA" + "1" * 32, {"callstream_token": first.call_tokens.make(call_sid, now)}, now)

    monkeypatch.setenv("STREAM_BEARER_TOKEN", "")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "a-real-auth-token")  # the secret keys the tokens: nothing to add
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    arbiter = FakeArbiter()
    load_gunicorn_config().on_starting(arbiter)
    assert os.environ["STREAM_BEARER_TOKEN"] == "" and arbiter.warnings == []


def test_post_worker_init_ends_calls_after_the_grace_once_gunicorn_stops(monkeypatch):
    # Unit test of the hook's wiring with stand-ins for gunicorn's worker and the app's services;
    # the real thing (gunicorn, a call, SIGTERM) is tests/test_e2e.py's test_sigterm_lets_calls_finish_then_exits_cleanly
    # (gunicorn: the call finishes in the grace; python app.py, same shutdown code: the grace ends it).
    default_environment(monkeypatch)
    ended, frozen = [], []
    monkeypatch.setattr("runtime.heap.freeze_start_up_heap", lambda: frozen.append(True))

    class Call:
        def end(self, reason):
            ended.append(reason)
            services.workers.discard(self)
            services.active_calls -= 1

    call = Call()
    services = SimpleNamespace(draining=False, active_calls=1, workers={call}, admission=Admission(cores=2.0, budget_s=1.5))
    worker = SimpleNamespace(alive=True, log=logging.getLogger("gunicorn.error"), wsgi=SimpleNamespace(extensions={"callstream": services},
                                                              config={"CALLSTREAM": load_settings({}, {"SHUTDOWN_GRACE_S": 1.0})}))
    config = load_gunicorn_config()
    config.post_worker_init(worker)
    assert frozen == [True]  # the start-up heap, as python app.py does (runtime/heap.py)
    assert services.admission.cores == max(0.5, 2.0 / config.workers)  # this worker's share of the engines' cores
    gevent.sleep(0.3)
    assert not services.draining and not ended  # running: nothing happens
    worker.alive = False  # what gunicorn's SIGTERM handler does
    gevent.sleep(0.3)
    assert services.draining and not ended  # no new calls; the call goes on during the grace
    deadline = time.monotonic() + 5
    while not ended and time.monotonic() < deadline:
        gevent.sleep(0.05)
    assert ended == ["the server is shutting down"] and services.active_calls == 0


# -- tools/quickstart.py -----------------------------------------------------------------------------


class NgrokLikeServer:
    """A real HTTP server on a free port: ``/api/tunnels`` answers like an ngrok agent, ``/`` like callstream."""

    def __init__(self):
        self.tunnels_body: str = "{}"
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = agent.tunnels_body if self.path == "/api/tunnels" else '{"status": "ok", "service": "callstream"}'
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.api_url = f"http://127.0.0.1:{self.port}/api/tunnels"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve_tunnels(self, *tunnels: dict) -> None:
        self.tunnels_body = json.dumps({"tunnels": list(tunnels), "uri": "/api/tunnels"})


def ngrok_tunnel(public_url: str, addr: str, proto: str = "https") -> dict:
    """A tunnel as the agent lists it (ngrok docs, Agent API, "List tunnels")."""
    return {"name": "command_line", "uri": "/api/tunnels/command_line", "public_url": public_url, "proto": proto,
            "config": {"addr": addr, "inspect": True}}


@pytest.fixture
def agent():
    fake = NgrokLikeServer()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_quickstart(capsys, *args):
    code = quickstart.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def twiml_in(output: str) -> ET.Element:
    return ET.fromstring(output[output.index("<Response>") : output.index("</Response>") + len("</Response>")])


def test_quickstart_prints_the_webhooks_cli_command_and_fork_twiml_bin(agent, capsys, monkeypatch):
    public_url = "https://d95211d2.ngrok.app"
    agent.serve_tunnels(ngrok_tunnel(public_url, f"http://localhost:{agent.port}"))
    monkeypatch.setenv("PUBLIC_URL", public_url)
    code, out, err = run_quickstart(capsys, "--ngrok-api", agent.api_url, "--port", str(agent.port),
                                    "--number", "+15551234567", "--forward-to", "+15557654321")
    assert code == 0 and err == ""
    assert "WARNING" not in out  # the "server" answered on the tunnel's port, PUBLIC_URL matches
    assert f"export PUBLIC_URL={public_url}\n" in out
    assert f"     {public_url}/incoming-call " in out and f"     {public_url}/forward-call " in out
    command = f"twilio phone-numbers:update +15551234567 --voice-url={public_url}/incoming-call --voice-method=POST"
    assert f"     {command}\n" in out
    response = twiml_in(out)
    stream = response.find("Start/Stream")
    assert stream.get("url") == "wss://d95211d2.ngrok.app/media-stream"
    assert stream.get("track") == "both_tracks"
    assert stream.get("statusCallback") == f"{public_url}/stream-status"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == quickstart.BIN_PARAMETERS
    assert response.find("Dial").text == "+15557654321"


def test_quickstart_picks_the_https_tunnel_to_the_servers_port(agent, capsys, monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", "https://old.ngrok.app")
    agent.serve_tunnels(
        ngrok_tunnel("http://plain.ngrok.app", f"http://localhost:{agent.port}", proto="http"),
        ngrok_tunnel("https://other.ngrok.app", "http://localhost:3000"),
        ngrok_tunnel("https://ours.ngrok.app", f"localhost:{agent.port}"),
    )
    code, out, _ = run_quickstart(capsys, "--ngrok-api", agent.api_url, "--port", str(agent.port))
    assert code == 0
    assert out.startswith(f"ngrok tunnel: https://ours.ngrok.app -> localhost:{agent.port}\n")
    assert "WARNING: PUBLIC_URL is https://old.ngrok.app, not this tunnel" in out  # signatures would fail
    assert "twilio phone-numbers:update +1XXXXXXXXXX --voice-url=https://ours.ngrok.app/incoming-call" in out
    assert "Replace +1XXXXXXXXXX" in out


def test_quickstart_warns_when_the_local_server_is_not_running(agent, capsys, monkeypatch):
    monkeypatch.setenv("PUBLIC_URL", "https://abc.ngrok.app")
    closed_port = free_port()
    agent.serve_tunnels(ngrok_tunnel("https://abc.ngrok.app", f"http://localhost:{closed_port}"))
    code, out, _ = run_quickstart(capsys, "--ngrok-api", agent.api_url, "--port", str(closed_port))
    assert code == 0
    assert f"WARNING: nothing answers at http://127.0.0.1:{closed_port}" in out


def test_quickstart_fails_without_an_https_tunnel(agent, capsys):
    agent.serve_tunnels(ngrok_tunnel("tcp://0.tcp.ngrok.io:12345", "localhost:5050", proto="tcp"))
    code, out, err = run_quickstart(capsys, "--ngrok-api", agent.api_url, "--no-check")
    assert code == 1 and out == ""
    assert "ngrok has no https tunnel (tunnels: tcp://0.tcp.ngrok.io:12345)" in err and "ngrok http" in err


def test_quickstart_fails_when_no_agent_runs(capsys):
    api_url = f"http://127.0.0.1:{free_port()}/api/tunnels"
    code, out, err = run_quickstart(capsys, "--ngrok-api", api_url, "--no-check")
    assert code == 1 and out == ""
    assert f"no ngrok agent answers at {api_url}" in err


def test_quickstart_fails_on_an_answer_that_is_not_a_tunnel_list(agent, capsys):
    agent.tunnels_body = "<html>not the agent</html>"
    code, _, err = run_quickstart(capsys, "--ngrok-api", agent.api_url, "--no-check")
    assert code == 1 and "did not answer JSON" in err


def test_quickstart_refuses_a_malformed_number(capsys):
    with pytest.raises(SystemExit) as exit_info:
        quickstart.main(["--number", "5551234567"])
    assert exit_info.value.code == 2 and "E.164" in capsys.readouterr().err


@pytest.mark.parametrize("addr,port", [("5050", 5050), ("localhost:5050", 5050), ("http://localhost:5050", 5050),
                                       ("https://localhost:8443", 8443), ("http://localhost", 80), ("file:///srv", None)])
def test_forwarded_port_reads_ngrok_addr_forms(addr, port):
    assert quickstart.forwarded_port(addr) == port


def test_several_https_tunnels_and_none_on_the_port_is_an_error():
    tunnels = {"tunnels": [ngrok_tunnel("https://a.ngrok.app", "localhost:3000"),
                           ngrok_tunnel("https://b.ngrok.app", "localhost:4000")]}
    with pytest.raises(quickstart.QuickstartError, match="none forwards to port 5050"):
        quickstart.choose_tunnel(tunnels, 5050)


def test_docs_fork_twiml_bin_is_what_the_quickstart_prints():
    page = (REPO / "docs" / "forks.md").read_text()
    section = page.split("**TwiML Bin for fork mode**", 1)[1]
    shown_xml = section.split("```xml\n", 1)[1].split("```", 1)[0].strip()
    assert shown_xml == quickstart.fork_twiml_bin("https://YOUR-HOST.ngrok.app", "+15557654321")
