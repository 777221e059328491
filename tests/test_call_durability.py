"""The end of a call survives database outages and restarts; processes sharing a database leave
each other's calls alone (issue #11, F7 and F10).

Real parts: ``CallKeeper`` + ``CallRecorder`` + ``CallStore`` on a real database. The outages are
real too: PostgreSQL behind ``tests.db_proxy.DatabaseProxy``, cut and restored under a live call.
The restart and multi-process cases run on SQLite and PostgreSQL (see test_store.py for when
PostgreSQL is required); the outage cases need a network database, so PostgreSQL only.
"""

import json
import logging
import os
import socket
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone

import gevent
import pytest
from sqlalchemy import text

import app as app_module
from core.records import CallRecord
from core.settings import load_settings
from runtime import call_folder
from runtime.call_filer import CallFiler
from runtime.call_keeper import CallKeeper, filer_of, recording_dir
from runtime.instance_keeper import InstanceKeeper
from runtime.services import Services
from store.calls import CallStore
from store.database import database_url, make_engine, upgrade_schema
from store.instances import Instance, is_gone
from tests.test_store import pg_admin  # noqa: F401 - fixture
from tests.db_proxy import DatabaseProxy

SIP_FROM = "sip:someone.with.a.long.name@pbx.branch-office.example.com;transport=tls;user=phone"
CHUNK = bytes(range(0, 160))  # 20 ms of μ-law noise
LOG = logging.LoggerAdapter(logging.getLogger("test"), {})


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture
def pg_database(pg_admin):
    """Name of a fresh PostgreSQL database (schema at head), dropped afterwards; or skip."""
    name = f"callstream_dur_{uuid.uuid4().hex[:12]}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade_schema(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
    yield name
    with pg_admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def proxy():
    proxy = DatabaseProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def open_store():
    """``open_store(url)`` → a CallStore at head; every engine is disposed after the test."""
    engines = []

    def make(url):
        engine = make_engine(url)
        upgrade_schema(engine)
        engines.append(engine)
        return CallStore(engine)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path, open_store):
    if request.param == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'calls.db'}")
    return open_store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{request.getfixturevalue('pg_database')}")


# -- helpers --------------------------------------------------------------------------------------


def make_services(store, tmp_path, mode="folder", **settings):
    values = load_settings({}, {"RECORDINGS_DIR": str(tmp_path / "recordings"), "RECORDINGS_STORE": mode, **settings})
    return Services(values, None, None, None, store)


def register(services, *, pid=None, hostname=None, heartbeat_at=None):
    """Register ``services`` as a process, optionally as another pid or host (a second server)."""
    keeper = InstanceKeeper(services)
    if pid is None and hostname is None:
        keeper.register()
        return keeper
    now = heartbeat_at or datetime.now(timezone.utc)
    services.store.beat_instance(services.instance_id, hostname=hostname or socket.gethostname(), pid=pid or os.getpid(),
                                 started_at=now, now=now)
    return keeper


def iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds")


def new_call(services, call_sid, started_at=None) -> CallKeeper:
    record = CallRecord(call_sid, "MZ" + call_sid[2:], from_number=SIP_FROM, to_number="+15559870002",
                        started_at=iso(started_at or datetime.now(timezone.utc)))
    return CallKeeper(services, record, LOG)


def speak(keeper, from_ms, seconds, *, realtime=True):
    """Feed ``seconds`` of inbound and outbound audio from media time ``from_ms``."""
    for index in range(int(seconds * 50)):
        keeper.add_audio("inbound", from_ms + index * 20, CHUNK)
        keeper.add_audio("outbound", from_ms + index * 20, CHUNK[::-1])
        if realtime and index % 5 == 4:
            gevent.sleep(0.1)
    return from_ms + int(seconds * 1000)


def end(keeper) -> str:
    keeper.record.ended_at = iso(datetime.now(timezone.utc))
    keeper.finish()
    return keeper.record.ended_at


def wait_for(condition, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        gevent.sleep(0.05)


def assert_filed(store, directory, call_sid, ended_at, mode, duration_ms):
    call = store.get_call(call_sid)
    assert call is not None and call.ended_at == datetime.fromisoformat(ended_at) and call.from_number == SIP_FROM
    assert sorted(r.kind for r in call.recordings) == ["inbound", "outbound", "stereo"]
    assert all(abs(r.duration_ms - duration_ms) <= 40 for r in call.recordings)
    stereo = store.recording_bytes(call_sid, "stereo")
    assert stereo[:4] == b"RIFF" and len(stereo) >= duration_ms * 32 - 1000  # 8 kHz × 2 ch × 2 bytes
    assert store.recording("CA" + call_sid[2:], "stereo").in_database == (mode == "database")
    if mode == "database":
        assert not directory.exists()  # the bytes live in the database
    else:
        assert (directory / call_folder.FILED_MARKER).exists()


class AttemptLog:
    """``CallFiler(file=...)`` that notes when each filing attempt ran and whether it worked."""

    def __init__(self):
        self.attempts: list[tuple[float, bool]] = []

    def __call__(self, *args):
        try:
            call_folder.file_call(*args)
        except Exception:
            self.attempts.append((time.monotonic(), False))
            raise
        self.attempts.append((time.monotonic(), True))


# -- F7: the database goes away under a live call -------------------------------------------------


@pytest.mark.parametrize("mode", ["folder", "database"])
def test_database_back_while_running_files_the_call_with_its_real_end(mode, tmp_path, pg_database, proxy, open_store):
    store = open_store(proxy.url(pg_database))
    direct = open_store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}")
    services = make_services(store, tmp_path, mode)
    attempts = AttemptLog()
    services.filer = CallFiler(store, mode == "database", 60.0, file=attempts)
    register(services)
    keeper = new_call(services, "CAbc1ebf626195d9c7c73c5a17102e54be")
    keeper.start()
    media_ms = speak(keeper, 0, 2.0)
    proxy.cut()  # mid-call: the per-second saves fail, the call goes on
    media_ms = speak(keeper, media_ms, 1.0)
    ended_at = end(keeper)

    directory = keeper.directory
    assert filer_of(services).pending == ["CAbc1ebf626195d9c7c73c5a17102e54be"]
    final = json.loads((directory / call_folder.CALL_FILE).read_text())
    assert final["ended_at"] == ended_at and final["instance_id"] == services.instance_id
    assert not (directory / call_folder.FILED_MARKER).exists() and call_folder.is_pending(directory)
    gevent.sleep(5.5)  # down for a while: attempts after 1 s, then 2 s, then 4 s
    proxy.restore()
    restored = time.monotonic()
    wait_for(lambda: not services.filer.pending)
    filed_after_s = time.monotonic() - restored
    gaps = [round(b[0] - a[0], 1) for a, b in zip(attempts.attempts, attempts.attempts[1:])]
    print(f"attempt gaps {gaps} s; filed {filed_after_s:.2f} s after the database came back")
    assert [ok for _, ok in attempts.attempts] == [False, False, False, True]
    # Doubling from 1 s; the upper bounds leave a loaded machine (the suite runs two workers) 1.5 s of slack.
    assert 0.9 <= gaps[0] <= 2.5 and 1.9 <= gaps[1] <= 3.5 and 3.9 <= gaps[2] <= 5.5
    assert filed_after_s < 2.5
    assert_filed(direct, directory, "CAbc1ebf626195d9c7c73c5a17102e54be", ended_at, mode, media_ms)


def test_a_failed_first_save_does_not_stop_the_periodic_saves(tmp_path, pg_database, proxy, open_store):
    store = open_store(proxy.url(pg_database))
    direct = open_store(f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_database}")
    services = make_services(store, tmp_path)
    register(services)
    proxy.cut()
    keeper = new_call(services, "CAf91d3bf65e5f1e5a670ab3182d427c37")
    keeper.start()  # the first save fails: no exception, the loop runs
    media_ms = speak(keeper, 0, 1.5)
    assert direct.get_call("CAf91d3bf65e5f1e5a670ab3182d427c37") is None
    proxy.restore()
    media_ms = speak(keeper, media_ms, 1.5)
    wait_for(lambda: direct.get_call("CAf91d3bf65e5f1e5a670ab3182d427c37") is not None, timeout_s=5)
    live = direct.get_call("CAf91d3bf65e5f1e5a670ab3182d427c37")
    assert live.ended_at is None and live.from_number == SIP_FROM  # saved while the call goes on
    ended_at = end(keeper)
    assert_filed(direct, keeper.directory, "CAf91d3bf65e5f1e5a670ab3182d427c37", ended_at, "folder", media_ms)


@pytest.mark.parametrize("mode", ["folder", "database"])
def test_database_back_after_a_restart_files_the_pending_call(mode, tmp_path, pg_database, proxy, open_store):
    store = open_store(proxy.url(pg_database))
    first = make_services(store, tmp_path, mode)
    register(first)
    keeper = new_call(first, "CAa614d01fca4c7bc9e8f65637b33e4f8d")
    keeper.start()
    media_ms = speak(keeper, 0, 2.0)
    proxy.cut()
    ended_at = end(keeper)
    assert filer_of(first).pending == ["CAa614d01fca4c7bc9e8f65637b33e4f8d"]
    first.filer._loop.kill()  # the process stops while the database is down
    store.engine.dispose()
    gevent.sleep(1.0)  # the restart takes a moment: the new process must not use its own clock
    proxy.restore()

    second = make_services(open_store(proxy.url(pg_database)), tmp_path, mode)
    app_module.recover_unfinished_calls(second, register(second))
    assert_filed(second.store, keeper.directory, "CAa614d01fca4c7bc9e8f65637b33e4f8d", ended_at, mode, media_ms)


# -- crashes and several processes on one database (SQLite and PostgreSQL) -----------------------


def test_a_crashed_call_ends_at_its_start_plus_its_recording(any_store, tmp_path):
    first = make_services(any_store, tmp_path)
    register(first)
    started = datetime.now(timezone.utc) - timedelta(hours=1)  # far from "now": the restart time would show
    keeper = new_call(first, "CAf357e0d9811a0edfe76d3d014323e32e", started_at=started)
    keeper.start()
    media_ms = speak(keeper, 0, 3.0)
    gevent.sleep(1.5)  # one more flush
    keeper._loop.kill()  # the process dies: no finish()
    assert any_store.get_call("CAf357e0d9811a0edfe76d3d014323e32e").ended_at is None

    second = make_services(any_store, tmp_path)
    app_module.recover_unfinished_calls(second, register(second))
    call = any_store.get_call("CAf357e0d9811a0edfe76d3d014323e32e")
    assert abs((call.ended_at - started).total_seconds() * 1000 - media_ms) <= 40
    assert sorted(r.kind for r in call.recordings) == ["inbound", "outbound", "stereo"]
    assert (keeper.directory / call_folder.FILED_MARKER).exists()


def test_a_second_process_leaves_the_first_ones_live_call_alone(any_store, tmp_path):
    """Process A (here: registered as a live pid of this host) records a call while B starts;
    a dead process C left a crashed call and an open placeholder: B files and ends only C's."""
    sleeper = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    try:
        a = make_services(any_store, tmp_path)
        register(a, pid=sleeper.pid)
        c = make_services(any_store, tmp_path)
        register(c, pid=dead.pid)
        crashed = new_call(c, "CAfaa5a2ef418bc3a8bbbd10a07289d176", started_at=datetime.now(timezone.utc) - timedelta(minutes=5))
        crashed.start()
        speak(crashed, 0, 1.0, realtime=False)
        gevent.sleep(1.3)
        crashed._loop.kill()
        live = new_call(a, "CA9ec5948a7aa94ff86c5b24df2b2163ee")
        live.start()
        media_ms = speak(live, 0, 1.5)

        b = make_services(any_store, tmp_path)
        app_module.recover_unfinished_calls(b, register(b))
        assert any_store.get_call("CA9ec5948a7aa94ff86c5b24df2b2163ee").ended_at is None  # A's call goes on
        assert sorted(os.listdir(live.directory)) == ["call.json", "inbound.wav", "outbound.wav", "owner", "stereo.wav"]
        assert any_store.get_call("CAfaa5a2ef418bc3a8bbbd10a07289d176").ended_at is not None
        assert (crashed.directory / call_folder.FILED_MARKER).exists()
        assert {i.instance_id for i in any_store.instances()} == {a.instance_id, b.instance_id}  # C forgotten

        media_ms = speak(live, media_ms, 1.0)  # A's call is still recorded, then ends normally
        ended_at = end(live)
        assert_filed(any_store, live.directory, "CA9ec5948a7aa94ff86c5b24df2b2163ee", ended_at, "folder", media_ms)
    finally:
        sleeper.kill()
        sleeper.wait()


def test_which_processes_are_gone():
    now = datetime(2026, 12, 3, 3, 0, tzinfo=timezone.utc)

    def gone(hostname, pid, heartbeat_age_s, instance_id="other"):
        instance = Instance(instance_id, hostname, pid, now - timedelta(hours=1), now - timedelta(seconds=heartbeat_age_s))
        return is_gone(instance, now=now, heartbeat_s=10, own_id="me", own_hostname="web.1", own_pid=100,
                       pid_alive=lambda pid: pid in (100, 200))

    assert not gone("web.1", 100, 999, instance_id="me")  # this process
    assert not gone("web.1", 200, 999)  # same host, pid alive: alive even if the database kept its heartbeat stale
    assert gone("web.1", 300, 0)  # same host, pid dead
    assert gone("web.1", 100, 0)  # our own pid under another id: a restarted container
    assert not gone("web.2", 300, 29)  # another host: the heartbeat decides
    assert gone("web.2", 300, 31)


def test_folders_from_before_owners_are_filed_once(any_store, tmp_path):
    """After the upgrade: folders written by the previous version (no owner, no call.json)."""
    from audio.recording import CallRecorder

    root = tmp_path / "recordings"
    started = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
    any_store.save_call({"call_sid": "CAafa4c89bc957c912942f17be5cf13ceb", "started_at": iso(started), "ended_at": iso(started + timedelta(minutes=3)),
                         "from": "+15550001", "turns": [{"speaker": "caller", "text": "hi", "start_ms": 0, "end_ms": 500}]})
    any_store.save_call({"call_sid": "CAcede9022c1a0fef2458679f2a04b086e", "started_at": iso(started), "turns": []})
    for call_sid, seconds, close in (("CAafa4c89bc957c912942f17be5cf13ceb", 1.0, True), ("CAcede9022c1a0fef2458679f2a04b086e", 2.0, False), ("CA508c41572b691f7a4c57b70f8921ee90", 1.0, False)):
        recorder = CallRecorder(root / call_sid)
        recorder.add("inbound", 0, CHUNK * int(seconds * 50))
        recorder.flush()
        if close:
            recorder.close()
        if call_sid != "CA508c41572b691f7a4c57b70f8921ee90":  # this one is being made right now
            for path in [root / call_sid, *(root / call_sid).iterdir()]:
                os.utime(path, (time.time() - 3600, time.time() - 3600))

    services = make_services(any_store, tmp_path)
    app_module.recover_unfinished_calls(services, register(services))
    kept = any_store.get_call("CAafa4c89bc957c912942f17be5cf13ceb")
    assert kept.to_json()["ended_at"] == iso(started + timedelta(minutes=3))
    assert kept.to_json()["turns"] == [{"speaker": "caller", "text": "hi", "start_ms": 0, "end_ms": 500}]
    assert any_store.get_call("CAcede9022c1a0fef2458679f2a04b086e").to_json()["ended_at"] == iso(started + timedelta(seconds=2))  # start + recording
    assert (root / "CAafa4c89bc957c912942f17be5cf13ceb" / "filed").exists() and (root / "CAcede9022c1a0fef2458679f2a04b086e" / "filed").exists()
    assert not (root / "CA508c41572b691f7a4c57b70f8921ee90" / "filed").exists() and not (root / "CA508c41572b691f7a4c57b70f8921ee90" / "finalized").exists()


def test_a_process_on_another_host_is_gone_when_its_heartbeat_is_stale(any_store, tmp_path):
    now = datetime.now(timezone.utc)
    fresh, silent = make_services(any_store, tmp_path), make_services(any_store, tmp_path)
    register(fresh, hostname="web.2", pid=7, heartbeat_at=now - timedelta(seconds=5))
    register(silent, hostname="web.3", pid=7, heartbeat_at=now - timedelta(seconds=45))  # > 3 × 10 s
    for services, call_sid in ((fresh, "CA0b7b657170b81001bd4b0a674d5281cb"), (silent, "CAdc64f547b18548751bb130aca54b5c9c")):
        any_store.save_call({"call_sid": call_sid, "started_at": iso(now - timedelta(minutes=2)), "instance_id": services.instance_id})
    me = make_services(any_store, tmp_path)
    app_module.recover_unfinished_calls(me, register(me))
    assert any_store.get_call("CA0b7b657170b81001bd4b0a674d5281cb").ended_at is None
    # its last heartbeat, in whole ms like every time the app writes
    assert any_store.get_call("CAdc64f547b18548751bb130aca54b5c9c").to_json()["ended_at"] == iso(now - timedelta(seconds=45))
    assert {i.instance_id for i in any_store.instances()} == {fresh.instance_id, me.instance_id}


def test_the_heartbeat_files_a_call_whose_process_died_meanwhile(any_store, tmp_path):
    """Live processes file a dead neighbour's calls within 3 heartbeats, without a restart."""
    me = make_services(any_store, tmp_path, INSTANCE_HEARTBEAT_S=0.2)
    keeper = register(me)
    before = next(i for i in any_store.instances() if i.instance_id == me.instance_id).heartbeat_at
    keeper.start()
    neighbour_process = subprocess.Popen(["sleep", "60"])
    try:
        neighbour = make_services(any_store, tmp_path)
        register(neighbour, pid=neighbour_process.pid)
        started = datetime.now(timezone.utc) - timedelta(minutes=1)
        crashed = new_call(neighbour, "CA44062a7400be7127502ef318f7eb1719", started_at=started)
        crashed.start()
        media_ms = speak(crashed, 0, 1.0, realtime=False)
        gevent.sleep(1.2)
        assert any_store.get_call("CA44062a7400be7127502ef318f7eb1719").ended_at is None  # alive: left alone
        crashed._loop.kill()
        neighbour_process.kill()  # the neighbour dies
        neighbour_process.wait()
        died = time.monotonic()
        # filed: the store has ended_at first, then the folder gets its marker
        # Usually 0.1 s; a loose bound because the heartbeat's store work shares gevent's threadpool
        # with whatever earlier tests in this process left running (once in CI: over 5 s).
        wait_for(lambda: any_store.get_call("CA44062a7400be7127502ef318f7eb1719").ended_at is not None
                 and (crashed.directory / call_folder.FILED_MARKER).exists(), timeout_s=20)
        print(f"filed {time.monotonic() - died:.2f} s after its process died (heartbeat 0.2 s)")
        ended = any_store.get_call("CA44062a7400be7127502ef318f7eb1719").ended_at
        assert abs((ended - started).total_seconds() * 1000 - media_ms) <= 40
        assert (crashed.directory / call_folder.FILED_MARKER).exists()
        after = next(i for i in any_store.instances() if i.instance_id == me.instance_id).heartbeat_at
        assert after > before
    finally:
        keeper.stop()
        neighbour_process.kill()
        neighbour_process.wait()
