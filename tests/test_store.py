"""Tests of the call store (store/): every behaviour on SQLite (a tmp_path file) and PostgreSQL.

PostgreSQL: ``CALLSTREAM_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
is used to create one throwaway database per test, ``callstream_test_<random>``, dropped afterwards.
The PostgreSQL cases are skipped only when that server is unreachable, except in CI (``CI=true``,
which CI sets) or with ``CALLSTREAM_REQUIRE_POSTGRES=1``: then an unreachable server is a failure.
"""

import io
import os
import random
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, MetaData, String, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from store import CallStore, CallSummary, Recording, RecordingSummary, StoredTurn, database_url, make_engine, upgrade_schema
from store.database import alembic_config
from store.models import Base, TurnRow

PG_ADMIN_URL = os.environ.get("CALLSTREAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("CALLSTREAM_REQUIRE_POSTGRES") == "1" or os.environ.get("CI") == "true"
TABLES = {"calls", "turns", "stream_status_events", "recordings", "instances", "waveforms"}
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()  # the newest migration
T0 = datetime(2026, 11, 21, 7, 0, tzinfo=timezone.utc)


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_admin():
    """An AUTOCOMMIT engine on the PostgreSQL server's maintenance database, or skip."""
    engine = create_engine(database_url(PG_ADMIN_URL, None), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as error:
        engine.dispose()
        reason = f"PostgreSQL unreachable at {make_url(PG_ADMIN_URL).render_as_string()}: {error.orig}"
        if REQUIRE_POSTGRES:
            pytest.fail(reason)
        pytest.skip(reason)
    yield engine
    engine.dispose()


@pytest.fixture
def new_database_url(request, tmp_path, pg_admin_lazy):
    """Factory: ``new_database_url(backend)`` → URL of a fresh, empty database (dropped after the test)."""
    created = []
    counter = iter(range(1000))

    def make(backend: str) -> str:
        if backend == "sqlite":
            return database_url(None, tmp_path / f"calls{next(counter)}.db")
        admin = pg_admin_lazy()
        name = f"callstream_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return database_url(make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False), None)

    yield make
    if created:
        with pg_admin_lazy().connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_admin_lazy(request):
    """Request ``pg_admin`` only when a test needs PostgreSQL (SQLite cases never skip)."""
    return lambda: request.getfixturevalue("pg_admin")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def url(backend, new_database_url):
    return new_database_url(backend)


@pytest.fixture
def engine(url):
    engine = make_engine(url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine):
    return CallStore(engine)


# -- helpers --------------------------------------------------------------------------------------


def iso(when: datetime) -> str:
    """The app's own format: UTC, milliseconds."""
    return when.isoformat(timespec="milliseconds")


def turns_of(call) -> list[dict]:
    """A stored call's turns as the API shows them (dicts as saved)."""
    return [turn.to_json() for turn in call.turns]


def make_turns(count: int, *, finished: bool = True) -> list[dict]:
    """Turns shaped like CallSession's: caller turns, bot replies with latency, a DTMF turn, a barge-in.

    ``finished=False``: the last bot reply is still playing (``end_ms`` None).
    """
    turns = []
    last_bot = count - 1 if count % 2 == 0 else count - 2
    for index in range(count):
        start_ms = 500 + index * 2500
        if index % 2 == 0:
            turn = {"speaker": "caller", "text": f"caller says {index}", "start_ms": start_ms, "end_ms": start_ms + 1800}
            if index == 4:
                turn.update(text="", dtmf="42#")
        else:
            turn = {
                "speaker": "bot",
                "text": f"You said: caller says {index - 1}. Anything else?",
                "start_ms": start_ms,
                "end_ms": None if not finished and index == last_bot else start_ms + 2000,
                "latency_ms": {"endpoint": 600, "recognition": 310 + index, "responder": 2, "synthesis": 180, "total": 1100 + index},
            }
            if index == 3:
                turn.update(interrupted=True, heard="You said: caller says 2.")
        turns.append(turn)
    return turns


def make_record(call_sid: str, *, started_at: str | None = None, ended_at: str | None = None, turns=None, mode="conversation"):
    return {
        "call_sid": call_sid,
        "stream_sid": "MZ" + call_sid[2:],
        "from": "+15551230001",
        "to": "+15559870002",
        "started_at": started_at,
        "ended_at": ended_at,
        "mode": mode,
        "direction": "inbound",
        "answered_by": None,
        "transferred_to": None,
        "turns": turns if turns is not None else [],
    }


def wav_bytes(seconds: float, *, channels: int = 2) -> bytes:
    """A real WAV file: 8 kHz PCM16 tones (440 Hz left, 660 Hz right), ``channels`` channels."""
    t = np.arange(int(8000 * seconds)) / 8000
    tones = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)][:channels], axis=1) * 0.3
    buffer = io.BytesIO()
    soundfile.write(buffer, tones, 8000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def postgres_scheme_url(psycopg_url: str) -> str:
    """``postgresql+psycopg://…`` → Heroku's ``postgres://…`` form of the same database."""
    return "postgres://" + psycopg_url.split("://", 1)[1]


# -- URLs and engines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "sqlite:////data/callstream/calls.db"),
        ("", "sqlite:////data/callstream/calls.db"),
        ("  ", "sqlite:////data/callstream/calls.db"),
        ("postgres://u:p%40ss@db.example.com:5432/d1", "postgresql+psycopg://u:p%40ss@db.example.com:5432/d1"),
        ("postgresql://u:pw@host/db?sslmode=require", "postgresql+psycopg://u:pw@host/db?sslmode=require"),
        ("postgresql+psycopg://u@host/db", "postgresql+psycopg://u@host/db"),
        ("sqlite:///relative/calls.db", "sqlite:///relative/calls.db"),
    ],
)
def test_database_url_forms(raw, expected):
    assert database_url(raw, Path("/data/callstream/calls.db")) == expected


def test_sqlite_engine_settings(tmp_path):
    url = database_url(None, tmp_path / "missing" / "folder" / "calls.db")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert (tmp_path / "missing" / "folder" / "calls.db").exists()
    finally:
        engine.dispose()


def test_postgres_url_form(new_database_url):
    """Heroku's ``postgres://`` DATABASE_URL reaches the real server through psycopg 3."""
    raw = postgres_scheme_url(new_database_url("postgresql"))
    url = database_url(raw, None)
    assert url.startswith("postgresql+psycopg://")
    engine = make_engine(url)
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        upgrade_schema(engine)
        store = CallStore(engine)
        store.save_call(make_record("CAheroku", started_at=iso(T0), turns=make_turns(2)))
        assert turns_of(store.get_call("CAheroku")) == make_turns(2)
    finally:
        engine.dispose()


# -- schema and migrations ------------------------------------------------------------------------


def schema_diffs(engine, metadata=Base.metadata):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, metadata)


def current_revision(engine):
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_models_match_migration(engine):
    """The hand-written migration creates exactly what store/models.py declares."""
    assert schema_diffs(engine) == []
    # The comparison is live: a model column the migration lacks, or a changed type, is reported.
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["calls"].append_column(Column("caller_name", String(64)))
    changed.tables["turns"].c.text.type = String(16)
    kinds = {(diff[0] if isinstance(diff, tuple) else diff[0][0]) for diff in schema_diffs(engine, changed)}
    assert kinds == {"add_column", "modify_type"}


def test_upgrade_schema_idempotent(url):
    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        CallStore(engine).save_call(make_record("CAkeep", started_at=iso(T0), turns=make_turns(3)))
        upgrade_schema(engine)  # a second start-up: nothing to do, nothing lost
        upgrade_schema(url)  # by URL (its own engine, disposed)
        assert current_revision(engine) == HEAD
        assert TABLES <= set(inspect(engine).get_table_names())
        assert turns_of(CallStore(engine).get_call("CAkeep")) == make_turns(3)
    finally:
        engine.dispose()


def assert_migrated_once(url):
    engine = make_engine(url)
    try:
        assert current_revision(engine) == HEAD
        assert schema_diffs(engine) == []
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    finally:
        engine.dispose()


def test_upgrade_schema_concurrent_threads(url):
    """Several threads of one process, one engine each, start up at once on an empty database."""
    starters = 4
    barrier = threading.Barrier(starters)
    errors = []

    def start_up():
        engine = make_engine(url)
        try:
            barrier.wait()
            upgrade_schema(engine)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start_up, daemon=True) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads) and errors == []
    assert_migrated_once(url)


START_UP = """
import sys
from store import make_engine, upgrade_schema
engine = make_engine(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # "go": all processes upgrade at the same instant
upgrade_schema(engine)
"""


def test_upgrade_schema_concurrent_processes(url):
    """Three app processes start at once on an empty database: the database lock lets one migrate.

    (Without the advisory lock / BEGIN IMMEDIATE, two of the three fail: IntegrityError on
    PostgreSQL, "database is locked" on SQLite.)
    """
    repo = Path(__file__).resolve().parents[1]
    processes = [
        subprocess.Popen([sys.executable, "-c", START_UP, url], cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    try:
        assert [process.stdout.readline() for process in processes] == ["ready\n"] * 3
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [(process.wait(timeout=60), process.stderr.read()) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert results == [(0, "")] * 3
    assert_migrated_once(url)


# -- calls and turns ------------------------------------------------------------------------------


def test_save_call_upserts_and_replaces_turns(store, engine):
    record = make_record("CAupsert", started_at=iso(T0), turns=make_turns(3, finished=False))
    store.save_call(record)
    saved = store.get_call("CAupsert")
    assert turns_of(saved) == make_turns(3, finished=False)
    assert saved.turns[1].end_ms is None
    assert saved.ended_at is None and saved.mode == "conversation"

    # The call goes on: the bot turn's end_ms is filled in, more turns, then the call ends.
    record = make_record("CAupsert", started_at=iso(T0), ended_at=iso(T0 + timedelta(seconds=95, milliseconds=250)),
                         turns=make_turns(6))
    store.save_call(record)
    saved = store.get_call("CAupsert")
    assert saved.to_json() == {**record, "status_events": [], "recordings": []}
    assert (saved.started_at, saved.ended_at) == (T0, T0 + timedelta(seconds=95, milliseconds=250))
    assert saved.duration_ms == 95_250
    with engine.connect() as conn:
        assert conn.execute(select(TurnRow.position).order_by(TurnRow.position)).scalars().all() == list(range(6))

    # A shorter list replaces a longer one (nothing left over).
    store.save_call({**record, "turns": make_turns(1)})
    assert turns_of(store.get_call("CAupsert")) == make_turns(1)
    summaries, total = store.list_calls()
    assert total == 1 and summaries == [CallSummary(
        "CAupsert", "+15551230001", "+15559870002", T0, T0 + timedelta(seconds=95, milliseconds=250),
        mode="conversation", turn_count=1, direction="inbound")] and summaries[0].duration_ms == 95_250


def test_turn_columns_and_extras(store, engine):
    turns = make_turns(5)
    turns[0]["confidence"] = 0.87  # a key the store does not know: kept as JSON
    turns[0]["words"] = [{"w": "caller", "start_ms": 500}]
    turns[2]["error"] = "recognition failed: timeout"
    turns[2]["interrupted"] = False  # falsy but not None: kept
    turns[2]["nothing"] = None  # None values are not kept
    store.save_call(make_record("CAcols", started_at=iso(T0), turns=turns))
    expected = [dict(turn) for turn in turns]
    del expected[2]["nothing"]
    saved = store.get_call("CAcols")
    assert turns_of(saved) == expected
    assert saved.turns[0].extra == {"confidence": 0.87, "words": [{"w": "caller", "start_ms": 500}]}
    assert saved.turns[2].interrupted is False and saved.turns[2].error == "recognition failed: timeout"
    assert saved.turns[1].latency_ms["recognition"] == 311 and saved.turns[1].extra == {}
    with engine.connect() as conn:
        rows = conn.execute(select(TurnRow.__table__).order_by(TurnRow.position)).mappings().all()
    assert [row["latency_total_ms"] for row in rows] == [None, 1101, None, 1103, None]
    assert rows[3]["interrupted"] is True and rows[3]["heard"] == "You said: caller says 2."
    assert rows[4]["dtmf"] == "42#" and rows[0]["extra"] == {"confidence": 0.87, "words": [{"w": "caller", "start_ms": 500}]}
    assert rows[1]["extra"] is None and rows[1]["latency_ms"]["recognition"] == 311


def test_turns_ordered_by_start_then_insertion(store):
    turns = [
        {"speaker": "bot", "text": "second", "start_ms": 3000, "end_ms": 4000},
        {"speaker": "caller", "text": "first", "start_ms": 1000, "end_ms": 2000},
        {"speaker": "caller", "text": "tie a", "start_ms": 5000, "end_ms": 5100},
        {"speaker": "bot", "text": "tie b", "start_ms": 5000, "end_ms": None},
    ]
    store.save_call(make_record("CAorder", turns=turns))
    assert [t.text for t in store.get_call("CAorder").turns] == ["first", "second", "tie a", "tie b"]


def test_save_call_is_one_transaction(store):
    store.save_call(make_record("CAatomic", started_at=iso(T0), turns=make_turns(4)))
    broken = make_turns(5)
    broken[4]["unserializable"] = object()  # fails while the new turns are inserted, after the delete
    with pytest.raises((StatementError, TypeError)):  # psycopg raises the TypeError unwrapped
        store.save_call(make_record("CAatomic", started_at=iso(T0 + timedelta(hours=1)), turns=broken))
    saved = store.get_call("CAatomic")
    assert turns_of(saved) == make_turns(4) and saved.started_at == T0


def test_times_round_trip_in_utc(store):
    cases = {
        "CAms": ("2026-11-21T07:00:00.000+00:00", "2026-11-21T07:00:00.000+00:00"),  # the app's format
        "CAzulu": ("2026-11-21T07:00:01.5Z", "2026-11-21T07:00:01.500+00:00"),
        "CAoffset": ("2026-11-21T09:00:02.250+02:00", "2026-11-21T07:00:02.250+00:00"),
        "CAmicro": ("2026-11-21T07:00:03.123456+00:00", "2026-11-21T07:00:03.123456+00:00"),
        "CAnaive": ("2026-11-21T07:00:04", "2026-11-21T07:00:04.000+00:00"),
    }
    for call_sid, (written, _) in cases.items():
        store.save_call(make_record(call_sid, started_at=written, ended_at=written))
    for call_sid, (_, read) in cases.items():
        saved = store.get_call(call_sid)
        assert saved.started_at == saved.ended_at == datetime.fromisoformat(read)
        assert saved.started_at.utcoffset() == timedelta(0)
        assert (saved.to_json()["started_at"], saved.to_json()["ended_at"]) == (read, read)
    with pytest.raises(ValueError, match="started_at"):
        store.save_call(make_record("CAbad", started_at="yesterday"))
    with pytest.raises(ValueError, match="call_sid"):
        store.save_call({"turns": []})
    with pytest.raises(ValueError, match="text"):
        store.save_call(make_record("CAbad", turns=[{"speaker": "caller", "start_ms": 1}]))
    assert store.get_call("CAbad") is None and store.get_call("CAnope") is None


# -- status events --------------------------------------------------------------------------------


def test_status_event_before_the_call_exists(store):
    store.add_status_event("CAearly", stream_sid="MZearly", event="stream-started", error=None,
                           timestamp="2026-11-21T07:00:00.120Z", name="callstream")
    placeholder = store.get_call("CAearly")
    assert placeholder.to_json() == {
        "call_sid": "CAearly", "stream_sid": None, "from": None, "to": None, "started_at": None, "ended_at": None,
        "mode": None, "direction": None, "answered_by": None, "transferred_to": None, "turns": [], "recordings": [],
        "status_events": [{"event": "stream-started", "error": None, "timestamp": "2026-11-21T07:00:00.120Z", "name": "callstream"}],
    }
    assert store.list_calls()[1] == 1

    record = make_record("CAearly", started_at=iso(T0), turns=make_turns(2))
    store.save_call(record)  # fills the placeholder in, keeps its events
    store.add_status_event("CAearly", stream_sid="MZearly", event="stream-error",
                           error="31921 Stream - WebSocket - Close Error", timestamp="2026-11-21T07:01:00.000Z")
    store.add_status_event("CAearly", stream_sid="MZearly", event="stream-stopped", error=None,
                           timestamp="2026-11-21T07:01:00.010Z")
    saved = store.get_call("CAearly")
    assert {k: saved.to_json()[k] for k in record} == record
    assert [(e.event, e.error) for e in saved.status_events] == [
        ("stream-started", None), ("stream-error", "31921 Stream - WebSocket - Close Error"), ("stream-stopped", None)]
    with pytest.raises(ValueError):
        store.add_status_event("", stream_sid=None, event="stream-started", error=None, timestamp=None)


def test_what_is_noted_of_an_outbound_call_is_kept_by_a_record_that_does_not_know_it(store):
    # POST /api/calls notes the call before its stream starts; the AMD callback may land in another
    # process: the worker's record, saved later without them, must not erase them.
    store.note_call("CAout", direction="outbound", from_number="+15550100", to_number="+15550199")
    store.note_call("CAout", answered_by="machine_end_beep")
    assert store.answered_by("CAout") == "machine_end_beep"
    record = {**make_record("CAout", started_at=iso(T0)), "direction": None}
    store.save_call(record)
    saved = store.get_call("CAout").to_json()
    assert (saved["direction"], saved["answered_by"], saved["transferred_to"]) == ("outbound", "machine_end_beep", None)
    store.save_call({**record, "direction": "outbound", "transferred_to": "+15550123"})
    assert store.get_call("CAout").transferred_to == "+15550123"
    assert store.list_calls()[0][0].direction == "outbound"
    assert store.answered_by("CAnone") is None
    store.note_call("CAbare")  # a placeholder, nothing else
    assert store.get_call("CAbare").direction is None
    with pytest.raises(ValueError, match="not a noted call field"):
        store.note_call("CAout", mode="fork")
    with pytest.raises(ValueError):
        store.note_call("", direction="outbound")


# -- recordings -----------------------------------------------------------------------------------


def test_recordings_by_path_and_by_data(store, engine, tmp_path):
    stereo = wav_bytes(12.0)  # 8 kHz 16-bit stereo: 384 KB
    inbound = wav_bytes(12.0, channels=1)
    assert len(stereo) > 300_000
    file = tmp_path / "CArec-inbound.wav"
    file.write_bytes(inbound)

    # Before the call is saved: a placeholder call row, like a status event.
    store.save_recording("CArec", "stereo", duration_ms=12_000, size_bytes=len(stereo), data=stereo)
    store.save_recording("CArec", "inbound", duration_ms=12_000, size_bytes=len(inbound), path=file)
    store.save_call(make_record("CArec", started_at=iso(T0), turns=make_turns(2)))

    assert store.recording("CArec", "stereo") == Recording(
        "CArec", "stereo", 12_000, len(stereo), "audio/wav", path=None, in_database=True)
    assert store.recording("CArec", "inbound") == Recording(
        "CArec", "inbound", 12_000, len(inbound), "audio/wav", path=str(file), in_database=False)
    assert store.recording_bytes("CArec", "stereo") == stereo
    assert store.recording_bytes("CArec", "inbound") == inbound
    assert soundfile.info(io.BytesIO(store.recording_bytes("CArec", "stereo"))).channels == 2
    assert store.get_call("CArec").recordings == (
        RecordingSummary("inbound", duration_ms=12_000, size_bytes=len(inbound)),
        RecordingSummary("stereo", duration_ms=12_000, size_bytes=len(stereo)),
    )
    assert store.recording("CArec", "outbound") is None and store.recording_bytes("CArec", "outbound") is None

    # Upsert by (call_sid, kind): the inbound recording moves into the database, the stereo one to a file.
    store.save_recording("CArec", "inbound", duration_ms=11_990, size_bytes=len(inbound), data=inbound)
    stereo_file = tmp_path / "CArec.wav"
    stereo_file.write_bytes(stereo[:1000])
    store.save_recording("CArec", "stereo", duration_ms=10, size_bytes=1000, content_type="audio/x-wav", path=str(stereo_file))
    assert store.recording("CArec", "inbound").in_database and store.recording("CArec", "inbound").duration_ms == 11_990
    assert store.recording("CArec", "stereo") == Recording("CArec", "stereo", 10, 1000, "audio/x-wav", str(stereo_file), False)
    assert store.recording_bytes("CArec", "stereo") == stereo[:1000]
    assert len(store.get_call("CArec").recordings) == 2
    with engine.connect() as conn:  # the old bytes were dropped, not kept beside the path
        assert conn.execute(text("SELECT count(*) FROM recordings WHERE data IS NOT NULL")).scalar() == 1

    stereo_file.unlink()  # a wiped filesystem: the metadata stays, the bytes are gone
    assert store.recording_bytes("CArec", "stereo") is None

    with pytest.raises(ValueError, match="exactly one"):
        store.save_recording("CArec", "outbound", duration_ms=1, size_bytes=1, path=str(file), data=b"x")
    with pytest.raises(ValueError, match="exactly one"):
        store.save_recording("CArec", "outbound", duration_ms=1, size_bytes=1)
    with pytest.raises(ValueError, match="kind"):
        store.save_recording("CArec", "mono", duration_ms=1, size_bytes=1, data=b"x")
    with pytest.raises(ValueError, match="size_bytes"):
        store.save_recording("CArec", "outbound", duration_ms=1, size_bytes=2, data=b"x")
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the database enforces it too
        conn.execute(text("INSERT INTO recordings (call_sid, kind, duration_ms, size_bytes, content_type) "
                          "VALUES ('CArec', 'outbound', 1, 1, 'audio/wav')"))


# -- listing --------------------------------------------------------------------------------------


def test_list_calls_pagination_and_order(store):
    rng = random.Random(7)
    calls = []
    for index in range(21):
        started = T0 + timedelta(minutes=index * 7 + rng.randrange(5))
        calls.append((f"CA{index:03d}{rng.randrange(10**6):06d}", started, rng.randrange(8)))
    calls.append(("CAtie_b", T0 + timedelta(minutes=200), 1))  # same start: call_sid decides
    calls.append(("CAtie_a", T0 + timedelta(minutes=200), 2))
    calls.append(("CAnostart_2", None, 0))  # no started_at: last
    calls.append(("CAnostart_1", None, 0))
    assert len(calls) == 25
    rng.shuffle(calls)
    for position, (call_sid, started, turn_count) in enumerate(calls):
        started_at = None
        if started is not None:  # some with a +05:30 offset: only a real time type sorts them right
            started_at = started.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat() if position % 3 == 0 else iso(started)
        ended_at = iso(started + timedelta(seconds=30 + turn_count)) if started is not None else None
        store.save_call(make_record(call_sid, started_at=started_at, ended_at=ended_at, turns=make_turns(turn_count),
                                    mode="fork" if turn_count == 0 else "conversation"))

    expected = sorted(calls, key=lambda c: (c[1] is None, -(c[1] - T0).total_seconds() if c[1] else 0, c[0]))
    pages = [store.list_calls(page=page, per_page=10) for page in (1, 2, 3, 4)]
    assert [total for _, total in pages] == [25, 25, 25, 25]
    assert [len(summaries) for summaries, _ in pages] == [10, 10, 5, 0]
    listed = [summary for summaries, _ in pages for summary in summaries]
    assert [s.call_sid for s in listed] == [c[0] for c in expected]
    for summary, (call_sid, started, turn_count) in zip(listed, expected):
        assert summary.turn_count == turn_count
        assert summary.started_at == started
        assert summary.to_json()["started_at"] == (iso(started) if started else None)  # in UTC, whatever was written
        assert summary.duration_ms == ((30 + turn_count) * 1000 if started else None)
        assert summary.mode == ("fork" if turn_count == 0 else "conversation")
        assert set(summary.to_json()) == {"call_sid", "from", "to", "started_at", "ended_at", "duration_ms", "mode", "turn_count",
                                             "direction"}
    assert store.list_calls(page=1, per_page=100)[0] == listed
    with pytest.raises(ValueError):
        store.list_calls(page=0)


def test_upgrade_from_0001_keeps_every_row(url):
    """0002 rebuilds ``calls`` in SQLite's batch mode: with foreign keys enforced, dropping the old
    table would cascade-delete every turn, status event and recording (upgrade_schema turns them off)."""
    from alembic import command

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            conn.execution_options(callstream_write=True)
            with conn.begin():
                config = alembic_config()
                config.attributes["connection"] = conn
                command.upgrade(config, "0001")
        audio = wav_bytes(1.0)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO calls (call_sid, from_number, started_at) VALUES ('CAold', '+15551230001', :t)"),
                         {"t": T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0})
            conn.execute(text("INSERT INTO turns (call_sid, position, speaker, text, start_ms) VALUES ('CAold', 0, 'caller', 'hi', 10)"))
            conn.execute(text("INSERT INTO stream_status_events (call_sid, event) VALUES ('CAold', 'stream-started')"))
            conn.execute(text("INSERT INTO recordings (call_sid, kind, duration_ms, size_bytes, content_type, data) "
                              "VALUES ('CAold', 'stereo', 1000, :n, 'audio/wav', :d)"), {"n": len(audio), "d": audio})
        upgrade_schema(engine)
        assert current_revision(engine) == HEAD and schema_diffs(engine) == []
        store = CallStore(engine)
        call = store.get_call("CAold")
        assert call.from_number == "+15551230001" and call.started_at == T0
        assert call.turns == (StoredTurn("caller", "hi", start_ms=10, end_ms=None),)
        assert [e.event for e in call.status_events] == ["stream-started"]
        assert store.recording_bytes("CAold", "stereo") == audio
    finally:
        engine.dispose()


def test_downgrade_to_0001_and_back_keeps_every_row(url):
    """The Alembic command line (its own connection) also runs SQLite batch mode without cascades."""
    from alembic import command

    engine = make_engine(url)
    try:
        upgrade_schema(engine)
        store = CallStore(engine)
        store.save_call(make_record("CAround", started_at=iso(T0), turns=make_turns(3)))
        store.add_status_event("CAround", stream_sid=None, event="stream-started", error=None, timestamp="t")
        command.downgrade(alembic_config(url), "0001")
        assert current_revision(engine) == "0001"
        upgrade_schema(engine)
        call = store.get_call("CAround")
        assert turns_of(call) == make_turns(3) and len(call.status_events) == 1
    finally:
        engine.dispose()


def test_sip_addresses_and_long_timestamps_are_saved(store):
    """A SIP ``From`` longer than 64 characters failed every save of the call on PostgreSQL."""
    sip_from = "sip:someone.with.a.long.name@pbx.branch-office.example.com;transport=tls;user=phone"
    sip_to = "sip:reception.desk.of.the.front.office@trunk.carrier.example.net:5061;transport=tls"
    assert len(sip_from) > 64 and len(sip_to) > 64
    store.save_call({**make_record("CAsip", started_at=iso(T0)), "from": sip_from, "to": sip_to})
    long_timestamp = "2026-12-03T02:25:42.123456789+00:00 (sent by a proxy that appends its own note)"
    store.add_status_event("CAsip", stream_sid="MZsip", event="stream-started", error=None, timestamp=long_timestamp)
    call = store.get_call("CAsip")
    assert (call.from_number, call.to_number) == (sip_from, sip_to)
    assert call.status_events[0].timestamp == long_timestamp
    assert store.list_calls()[0][0].from_number == sip_from


def test_mark_unfinished_calls_ended_spares_live_processes(store):
    """Start-up in a second process: calls kept by a live process stay open; a gone process's
    calls end at its last heartbeat (never before they started); rows without a process end too."""
    live = {**make_record("CAlive", started_at=iso(T0)), "instance_id": "live"}
    dead = {**make_record("CAdead", started_at=iso(T0)), "instance_id": "dead"}
    late = {**make_record("CAlate", started_at=iso(T0 + timedelta(minutes=5))), "instance_id": "dead"}
    for record in (live, dead, late):
        store.save_call(record)
    store.add_status_event("CAplaceholder", stream_sid=None, event="stream-started", error=None, timestamp=None)
    now, heartbeat = T0 + timedelta(minutes=10), T0 + timedelta(minutes=2)
    marked = store.mark_unfinished_calls_ended(now, keep_instances=["live", "me"], last_seen={"dead": heartbeat})
    assert marked == ["CAdead", "CAlate", "CAplaceholder"]
    assert store.get_call("CAlive").ended_at is None
    assert store.get_call("CAdead").ended_at == heartbeat
    assert store.get_call("CAlate").ended_at == T0 + timedelta(minutes=5)  # not before it started
    assert store.get_call("CAplaceholder").ended_at == now
    assert store.mark_unfinished_calls_ended(now, keep_instances=["live"]) == []


def test_end_call_only_ends_an_open_call(store):
    store.save_call(make_record("CAopen", started_at=iso(T0)))
    store.save_call(make_record("CAshut", started_at=iso(T0), ended_at=iso(T0 + timedelta(seconds=5))))
    assert store.end_call("CAopen", T0 + timedelta(seconds=42))
    assert not store.end_call("CAshut", T0 + timedelta(seconds=42))
    assert not store.end_call("CAunknown", T0)
    assert store.get_call("CAopen").ended_at == T0 + timedelta(seconds=42)
    assert store.get_call("CAshut").ended_at == T0 + timedelta(seconds=5)
    store.save_call(make_record("CAearly", started_at=iso(T0)))
    assert store.end_call("CAearly", T0 - timedelta(hours=1))
    assert store.get_call("CAearly").ended_at == T0
    with pytest.raises(TypeError, match="ended_at"):  # times in are datetimes, not text
        store.end_call("CAopen", iso(T0))


def test_instances_register_beat_and_forget(store):
    store.beat_instance("a" * 32, hostname="web.1", pid=41, started_at=T0, now=T0)
    store.beat_instance("b" * 32, hostname="web.2", pid=42, started_at=T0 + timedelta(seconds=1), now=T0 + timedelta(seconds=1))
    store.beat_instance("a" * 32, hostname="web.1", pid=41, started_at=T0, now=T0 + timedelta(seconds=10))
    first, second = store.instances()
    assert (first.instance_id, first.hostname, first.pid) == ("a" * 32, "web.1", 41)
    assert first.started_at == T0 and first.heartbeat_at == T0 + timedelta(seconds=10)
    assert second.instance_id == "b" * 32
    store.forget_instances(["a" * 32])
    assert [i.instance_id for i in store.instances()] == ["b" * 32]


def test_mark_unfinished_calls_ended(store):
    store.save_call(make_record("CAdone", started_at=iso(T0), ended_at=iso(T0 + timedelta(minutes=1))))
    store.save_call(make_record("CAlive2", started_at=iso(T0 + timedelta(minutes=2))))
    store.save_call(make_record("CAlive1", started_at=iso(T0 + timedelta(minutes=3)), turns=make_turns(2)))
    crash = T0 + timedelta(minutes=10)
    assert store.mark_unfinished_calls_ended(crash) == ["CAlive1", "CAlive2"]
    assert store.get_call("CAlive1").ended_at == crash and turns_of(store.get_call("CAlive1")) == make_turns(2)
    assert store.get_call("CAdone").ended_at == T0 + timedelta(minutes=1)
    assert store.mark_unfinished_calls_ended(T0 + timedelta(minutes=20)) == []
    assert store.get_call("CAlive2").ended_at == crash
    with pytest.raises(TypeError, match="last_seen"):
        store.mark_unfinished_calls_ended(crash, last_seen={"gone": iso(crash)})


# -- durability and concurrency -------------------------------------------------------------------


def test_restart_keeps_everything(url, tmp_path):
    engine = make_engine(url)
    upgrade_schema(engine)
    store = CallStore(engine)
    audio = wav_bytes(5.0)
    store.add_status_event("CArestart", stream_sid="MZrestart", event="stream-started", error=None, timestamp="t0")
    store.save_call(make_record("CArestart", started_at=iso(T0), ended_at=iso(T0 + timedelta(seconds=40)), turns=make_turns(7)))
    store.save_recording("CArestart", "stereo", duration_ms=5000, size_bytes=len(audio), data=audio)
    store.save_call(make_record("CAother", started_at=iso(T0 + timedelta(hours=1)), turns=make_turns(1)))
    before = (store.get_call("CArestart"), store.list_calls())
    engine.dispose()

    engine = make_engine(url)  # a new process: new engine, same URL
    try:
        upgrade_schema(engine)
        store = CallStore(engine)
        assert (store.get_call("CArestart"), store.list_calls()) == before
        assert turns_of(before[0]) == make_turns(7) and before[1][1] == 2
        assert store.recording_bytes("CArestart", "stereo") == audio
    finally:
        engine.dispose()


def test_concurrent_saves_from_threads(store):
    """8 threads save their own calls at once, each as a call in progress (growing turn lists)."""
    threads_count, saves = 8, 12
    barrier = threading.Barrier(threads_count)
    errors = []

    def run_call(index: int) -> None:
        call_sid = f"CAthread{index}"
        try:
            barrier.wait()
            store.add_status_event(call_sid, stream_sid=None, event="stream-started", error=None, timestamp=None)
            for count in range(1, saves + 1):
                store.save_call(make_record(call_sid, started_at=iso(T0 + timedelta(seconds=index)),
                                            turns=make_turns(count, finished=count == saves)))
                if count % 4 == 0:
                    store.get_call(call_sid)
                    store.list_calls(per_page=5)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=run_call, args=(index,)) for index in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    summaries, total = store.list_calls(per_page=50)
    assert total == threads_count
    assert [s.call_sid for s in summaries] == [f"CAthread{i}" for i in reversed(range(threads_count))]
    for index in range(threads_count):
        saved = store.get_call(f"CAthread{index}")
        assert turns_of(saved) == make_turns(saves) and len(saved.status_events) == 1
