"""callstream: a phone call talks to a Python function over Twilio Media Streams.

Run ``python app.py`` (gevent server on ``$PORT``, default 5050) or, on a PaaS,
``gunicorn -k gevent -w 1 'app:create_app()'`` (see Procfile). Configuration comes from
environment variables and a ``.env`` file; see ``core/settings.py`` and docs/configuration.md.
"""

if __name__ == "__main__":  # patch before anything imports socket/threading (gunicorn's worker does it itself)
    from gevent import monkey

    monkey.patch_all()

import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from dotenv import load_dotenv
from gevent import monkey
from flask import Flask

from audio.echo import load_webrtc
from audio.silero_vad import load_model as load_silero_vad
from audio.stream_format import MULAW_8K
from core.responder import ResponderConfigError, echo, load_responder
from core.settings import ECHO_RESPONDERS, Settings, SettingsError, load_settings
from handlers import api, outbound, pages, voice
from runtime import hub_monitor, metrics, retention
from handlers.media import sock
from runtime.blocking import set_background_nice
from runtime.heap import freeze_start_up_heap
from runtime.log_locks import use_native_logging_locks
from runtime.server import make_server
from handlers.signatures import SignatureChecker, install as install_signature_check
from runtime.twilio_rest import make_client
from runtime.instance_keeper import InstanceKeeper
from runtime.services import Services
from responders.llm import make_llm_responder
from speech.recognition import make_recognizer
from speech.synthesis import make_synthesizer
from store.calls import CallStore
from store.database import database_url, make_engine, upgrade_schema

log = logging.getLogger("callstream")

MAX_REQUEST_BYTES = 64 * 1024
"""Largest HTTP request body: Twilio's webhooks are forms of a few kB, ``POST /api/calls`` a small JSON object."""


def make_responder(settings: Settings):
    """The responder ``RESPONDER`` names: ``echo`` (the default), ``llm``, or ``module:function``.

    Raises:
        core.responder.ResponderConfigError: not importable, or the ``LLM_*`` settings are unusable.
    """
    spec = settings.responder
    if spec in ECHO_RESPONDERS:
        return echo
    if spec == "llm":
        try:
            return make_llm_responder(settings)
        except ValueError as exc:
            raise ResponderConfigError(f"RESPONDER=llm: {exc}") from None
    return load_responder(spec)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app: settings, speech engines (loaded and warmed once), routes.

    Args:
        test_config: typed overrides of settings (e.g. ``{"WARM_UP": False}``), applied after
            the environment; a name that is not a setting raises ``SettingsError``. The resulting
            ``core.settings.Settings`` is ``app.config["CALLSTREAM"]`` (and ``Services.settings``).

    Raises:
        core.settings.SettingsError: an environment variable does not parse, or ``APP_ENV=production``
            without a signing secret or without ``DASHBOARD_PASSWORD``.
        core.responder.ResponderConfigError: ``RESPONDER`` cannot be imported.
        speech.errors.EngineConfigError: an unknown engine name.
    """
    load_dotenv()  # a .env file in the working directory; real environment variables win
    settings = load_settings(os.environ, test_config)
    checker = SignatureChecker([settings.signalwire_signing_key, settings.twilio_auth_token], settings.public_url,
                               settings.stream_bearer_token)
    if settings.app_env == "production" and not checker.enabled and not settings.allow_unsigned_requests:
        raise SettingsError(
            "APP_ENV=production needs TWILIO_AUTH_TOKEN (or SIGNALWIRE_SIGNING_KEY) so that requests are checked; "
            "set ALLOW_UNSIGNED_REQUESTS=true to run without signature checks"
        )
    if settings.app_env == "production" and not settings.dashboard_password:
        raise SettingsError(
            "APP_ENV=production needs DASHBOARD_PASSWORD: the call history, recordings and /metrics are "
            "served only with that login (DASHBOARD_USER, default admin)"
        )
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    use_native_logging_locks()  # engine and threadpool threads log too: gevent locks could hang them
    app = Flask(__name__)
    app.config["CALLSTREAM"] = settings  # the one Settings object; handlers read it from here
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES  # Flask answers 413 past it, before a route reads the body
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": settings.max_message_bytes, "ping_interval": settings.ws_ping_interval_s or None}
    responder = make_responder(settings)
    recognizer_options: dict[str, Any] = {}
    if settings.recognizer == "google":
        recognizer_options = {"key": settings.google_speech_key or None}
    elif settings.recognizer == "whisper":
        recognizer_options = {"num_workers": settings.recognition_workers, "cpu_threads": settings.recognition_cpu_threads,
                              "packing": settings.recognition_packing}
    elif settings.recognizer == "openai":
        recognizer_options = {"base_url": settings.recognizer_base_url, "model": settings.recognizer_model,
                              "api_key": settings.recognizer_api_key, "timeout_s": settings.recognizer_http_timeout_s}
    synthesizer_options: dict[str, Any] = {}
    if settings.synthesizer == "openai":
        synthesizer_options = {"base_url": settings.synthesizer_base_url, "model": settings.synthesizer_model,
                               "voice": settings.synthesizer_voice, "api_key": settings.synthesizer_api_key,
                               "response_format": settings.synthesizer_response_format,
                               "timeout_s": settings.synthesizer_http_timeout_s}
    services = Services(
        settings=settings,
        recognizer=make_recognizer(settings.recognizer, language=settings.language, **recognizer_options),
        synthesizer=make_synthesizer(settings.synthesizer, **synthesizer_options),
        responder=responder,
        outbound_responders={spec: make_responder(replace(settings, responder=spec))
                             for spec in settings.outbound_responders.split(",") if spec},
        store=open_store(settings),
        fallback_synthesizer=make_synthesizer("piper") if settings.synthesizer != "piper" else None,
        twilio_client=make_client(settings.twilio_account_sid, settings.twilio_auth_token,
                                  api_base_url=settings.twilio_api_base_url),
    )
    instance = InstanceKeeper(services)
    instance.register()  # before any call: other processes then leave this one's calls alone
    recover_unfinished_calls(services, instance)
    if monkey.is_module_patched("socket"):  # the server's hub runs it; an unpatched test app leaves no greenlet behind
        instance.start()
    engines = [services.recognizer, services.synthesizer] if settings.warm_up else []
    if settings.warm_up and services.fallback_synthesizer is not None:
        engines.append(services.fallback_synthesizer)
    for engine in engines:
        try:
            engine.warm_up()
        except Exception as exc:  # an online engine offline: calls will report it per turn
            log.warning("warm-up of %s failed: %s", engine.name, exc)
    if settings.echo_cancellation:
        load_webrtc()  # not on the event loop in the first call that needs it
    if settings.vad in ("silero", "hybrid"):
        load_silero_vad()  # likewise
    if settings.warm_up and settings.greeting.strip():  # every caller hears it first: a burst of callers would queue for it
        services.phrases.prefill(services.synthesizer.name, MULAW_8K, services.synthesizer.synthesize, [settings.greeting])
    set_background_nice(settings.background_nice)  # after the warm-up started the engines' thread pools
    metrics.track_engine_backlog(lambda: services.backlog_core_s)
    app.extensions["callstream"] = services
    install_signature_check(app, checker, voice.STREAM_PATH)
    if not checker.enabled:
        log.warning("TWILIO_AUTH_TOKEN is not set: requests are not checked for Twilio's signature")
    app.register_blueprint(api.bp)
    app.register_blueprint(outbound.api_bp)
    app.register_blueprint(outbound.bp)
    app.register_blueprint(voice.bp)
    app.register_blueprint(pages.bp)
    sock.init_app(app)
    hub_monitor.start_for_server(settings.hub_block_threshold_ms)  # once per process; not in unpatched test runs
    retention.start_for_server(services)  # RETENTION_DAYS; likewise
    log.info("ready: recognizer=%s synthesizer=%s responder=%s", settings.recognizer, settings.synthesizer, settings.responder)
    if settings.overload_reply_budget_ms:
        log.info("admission control: a turn costs %.2f core-s here, %.1f cores, %.2f s of engine time per first reply "
                 "(OVERLOAD_REPLY_BUDGET_MS - ENDPOINT_SILENCE_MS)", services.turn_core_s, services.admission.cores,
                 services.admission.budget_s)
    return app


def open_store(settings: Settings) -> CallStore:
    """Connect to ``DATABASE_URL`` (default: SQLite ``callstream.db`` here) and bring its schema up to date."""
    engine = make_engine(database_url(settings.database_url or None, Path("callstream.db").resolve()))
    upgrade_schema(engine)
    return CallStore(engine)


def recover_unfinished_calls(services: Services, instance: InstanceKeeper | None = None) -> None:
    """At start-up: file the calls that gone processes left (pending or crashed), end their open calls.

    Calls and recording folders of processes still running on the same store are left alone
    (``runtime.recovery``). A pending call is filed with its saved final record and real end
    time; a crashed call ends at its start + its recording's length, else at its process's last
    heartbeat. Register the process first (``InstanceKeeper.register``).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store is unreachable.
    """
    instance = instance or InstanceKeeper(services)
    result = instance.recover()
    if result.filed or result.ended:
        log.warning("recovered %d call folder(s) and ended %d call(s) left by gone processes", len(result.filed), len(result.ended))


def shut_down(server, services: Services, grace_s: float) -> None:
    """Stop taking calls, let active calls go on for ``grace_s``, then end them; everything is saved."""
    import gevent

    services.draining = True
    server.close()  # no new connections; calls in progress go on
    log.info("shutting down: %d call(s) in progress, waiting up to %.0f s", services.active_calls, grace_s)
    deadline = time.monotonic() + grace_s
    while services.active_calls and time.monotonic() < deadline:
        gevent.sleep(0.1)
    for worker in list(services.workers):
        worker.end("the server is shutting down")
    deadline = time.monotonic() + 15
    while services.active_calls and time.monotonic() < deadline:  # their records and recordings are saved
        gevent.sleep(0.1)
    server.stop(timeout=1)
    log.info("shut down with %d call(s) still open", services.active_calls)


def main() -> None:
    """``python app.py``: serve on ``$PORT`` with gevent's WSGI server; SIGTERM/SIGINT shut down gracefully."""
    import signal

    import gevent
    from gevent.event import Event

    app = create_app()
    freeze_start_up_heap()  # full collections would otherwise walk the whole start-up heap on the hub
    server = make_server(app, "0.0.0.0", app.config["CALLSTREAM"].port)
    server.start()
    log.info("listening on http://0.0.0.0:%d (webhook: /incoming-call, stream: /media-stream)", server.server_port)
    stopping = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stopping.set)
    stopping.wait()
    shut_down(server, app.extensions["callstream"], app.config["CALLSTREAM"].shutdown_grace_s)


if __name__ == "__main__":
    main()
