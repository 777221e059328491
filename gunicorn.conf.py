"""gunicorn settings for callstream on a PaaS (the Procfile runs ``gunicorn -c gunicorn.conf.py 'app:create_app()'``).

Read by gunicorn's master before the app exists, so only ``core.settings`` (pure) is imported here;
values come from the same environment variables (and ``.env``) as the app's, parsed the same way.
A Twilio media stream is one WebSocket that lasts as long as the call: nothing here may time out a
long request, and a restart (SIGTERM, on every deploy) must let calls finish or end them cleanly.
See docs/deploy.md for why each number is what it is.
"""

import math
import os
import secrets

from dotenv import load_dotenv

from core.settings import load_settings

load_dotenv()  # like create_app(): a .env file in the working directory; real environment variables win
_settings = load_settings(os.environ)

# Time after SHUTDOWN_GRACE_S to hang up the calls still going and save their records and recordings.
END_CALLS_S = 4

# Heroku-style routers hand the dyno its port in $PORT; listen on every interface.
bind = [f"0.0.0.0:{_settings.port}"]

# gevent: one greenlet per connection, so hundreds of long-lived WebSockets fit in one process.
worker_class = "gevent"

# Peak memory of one worker: ~450 MB of speech models after start-up, ~800 MB at 25 calls (docs/benchmarks.md).
WORKER_MEMORY_MB = 800


def worker_count(requested: int, cores: int, memory_mb: int) -> int:
    """``WEB_CONCURRENCY``, at most one worker per core and per ``WORKER_MEMORY_MB``, at least one.

    Each worker loads its own models and shares the cores: workers beyond the cores add no capacity,
    and Heroku's buildpack sets ``WEB_CONCURRENCY`` for 256 MB processes (4 on a 1 GB dyno).
    """
    return max(1, min(requested, cores, memory_mb // WORKER_MEMORY_MB))


def machine_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_memory_mb() -> int:
    """The memory this process may use: the container's cgroup limit, else the machine's RAM, MB."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # cgroup v2, v1
        try:
            with open(path) as limit:
                text = limit.read().strip()
        except OSError:
            continue
        if text.isdigit():  # v2 says "max" when unlimited; v1 a huge number (min() drops it)
            limits.append(int(text))
    return min(limits) // (1024 * 1024)


# WEB_CONCURRENCY (default 1) worker processes, each a whole server with its own models: see worker_count.
workers = worker_count(_settings.web_concurrency, machine_cores(), machine_memory_mb())

# The gevent worker monkey-patches before loading the app; a preloaded app would be imported unpatched.
preload_app = False

# A call holds a WebSocket plus brief webhooks; callers over MAX_CALLS must still get in to hear BUSY_MESSAGE.
worker_connections = max(1000, 2 * _settings.max_calls + 100)

# A heartbeat with gevent, not a request limit (hour-long streams are fine); also bounds the ~7 s boot.
timeout = 120

# SIGKILL backstop after post_worker_init's shutdown (29 s by default: Heroku SIGKILLs at 30 s); whole seconds.
graceful_timeout = math.ceil(_settings.shutdown_grace_s) + END_CALLS_S

# Idle keep-alive connections delay the exit on SIGTERM; Twilio sends one webhook per call, so reuse gains little.
keepalive = 2

# Never recycle the worker: a restart cuts every call in progress and reloads the models.
max_requests = 0

# The router terminates TLS: trust its X-Forwarded-Proto (as Heroku's buildpack does); FORWARDED_ALLOW_IPS wins.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "*")

# Logs go to the platform's log stream: access log on stdout, gunicorn's own on stderr.
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()

# One line per request; a /media-stream line is written when its call ends, with the call's length.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# gunicorn >= 25's control socket has one path per user: unused on a dyno, contended by two local servers.
control_socket_disable = True


def on_starting(server):
    """In the master, before the workers start: say how many, and give them one stream-token key.

    A call's webhook and its media stream may reach different workers; the stream is admitted with
    a token the webhook made (``core.call_tokens``). The token key comes from the signing secret;
    without any secret each process would make a random one, so the master makes it once here
    (as ``STREAM_BEARER_TOKEN``, which keys the tokens when no signing secret is set) and every
    worker inherits it. Several dynos need a secret they share: ``TWILIO_AUTH_TOKEN`` (production).
    """
    if workers < _settings.web_concurrency:
        server.log.warning("WEB_CONCURRENCY=%d, starting %d worker(s): at most one per core and per %d MB (%d cores, %d MB)",
                           _settings.web_concurrency, workers, WORKER_MEMORY_MB, machine_cores(), machine_memory_mb())
    if not (_settings.twilio_auth_token or _settings.signalwire_signing_key or _settings.stream_bearer_token):
        os.environ["STREAM_BEARER_TOKEN"] = secrets.token_urlsafe(32)


def post_worker_init(worker):
    """In the worker, once the app is loaded: on SIGTERM, shut calls down as ``python app.py`` does;
    give admission control this worker's share of the cores.

    gunicorn alone would let connections run for ``graceful_timeout`` and then kill them mid-call;
    ``app.shut_down`` instead stops taking calls (new ones hear BUSY_MESSAGE on a reused connection),
    lets calls go on for ``SHUTDOWN_GRACE_S``, then ends them so records and recordings are saved.
    Also freezes the start-up heap, as ``python app.py`` does (``runtime/heap.py``).
    """
    import gevent

    from runtime.heap import freeze_start_up_heap

    freeze_start_up_heap()
    # The workers' engines share the machine's cores: admission control counts this one's share.
    admission = worker.wsgi.extensions["callstream"].admission
    admission.cores = max(0.5, admission.cores / workers)
    if workers > 1:
        worker.log.info("admission control: this worker counts %.1f of the machine's cores (%d workers)", admission.cores, workers)
    gevent.spawn(_shut_down_on_exit, worker)


class _ListenerClosedByGunicorn:
    """``app.shut_down`` closes and stops its server; gunicorn's worker does both itself."""

    def close(self):
        pass

    def stop(self, timeout=None):
        pass


def _shut_down_on_exit(worker):
    import gevent

    from app import shut_down  # the module gunicorn already imported for 'app:create_app()'

    while worker.alive:  # gunicorn's SIGTERM handler clears it
        gevent.sleep(0.1)
    app = worker.wsgi
    shut_down(_ListenerClosedByGunicorn(), app.extensions["callstream"], app.config["CALLSTREAM"].shutdown_grace_s)
