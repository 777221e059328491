"""Erasure and retention: ``CallStore.delete_call`` / ``delete_calls_ended_before`` (SQLite and PostgreSQL),
``DELETE /api/calls/<sid>``, and the ``RETENTION_DAYS`` job."""

import base64
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import gevent
import pytest
from sqlalchemy import func, select

from app import create_app
from core.records import CallRecord
from runtime import retention
from runtime.call_worker import CallWorker
from store.models import CallRow, RecordingRow, StatusEventRow, TurnRow, WaveformRow
from tests.test_store import backend, engine, new_database_url, pg_admin, pg_admin_lazy, store, url  # noqa: F401 - fixtures

NOW = datetime(2026, 12, 3, 4, 0, tzinfo=timezone.utc)


def file_call(store, root, call_sid, ended_at, *, in_folder=True):
    """A finished call with turns, a status event, a waveform and recordings (files under ``root`` or bytes)."""
    store.save_call({"call_sid": call_sid, "mode": "conversation", "started_at": (ended_at - timedelta(minutes=2)).isoformat(),
                     "ended_at": ended_at.isoformat() if ended_at else None,
                     "turns": [{"speaker": "caller", "text": "private words", "start_ms": 0, "end_ms": 500}]})
    store.add_status_event(call_sid, stream_sid="MZ1", event="stream-started", error=None, timestamp=None)
    store.save_waveform(call_sid, {"version": 1})
    folder = root / call_sid
    for kind in ("stereo", "inbound"):
        if in_folder:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{kind}.wav").write_bytes(b"RIFF" + kind.encode())
            (folder / "finalized").touch()
            store.save_recording(call_sid, kind, duration_ms=1, size_bytes=9, path=str(folder / f"{kind}.wav"))
        else:
            store.save_recording(call_sid, kind, duration_ms=1, size_bytes=4, data=b"RIFF")
    return folder


def rows_of(store, call_sid):
    with store.engine.connect() as conn:
        return {table.__tablename__: conn.scalar(select(func.count()).select_from(table).where(table.call_sid == call_sid))
                for table in (CallRow, TurnRow, StatusEventRow, RecordingRow, WaveformRow)}


NO_ROWS = {"calls": 0, "turns": 0, "stream_status_events": 0, "recordings": 0, "waveforms": 0}


def test_delete_calls_ended_before_removes_rows_and_files(store, tmp_path):
    root = tmp_path / "recordings"
    old = file_call(store, root, "CAold", NOW - timedelta(days=40))
    file_call(store, root, "CAold_db", NOW - timedelta(days=31), in_folder=False)
    recent = file_call(store, root, "CArecent", NOW - timedelta(days=2))
    store.save_call({"call_sid": "CAlive", "started_at": (NOW - timedelta(days=60)).isoformat(), "turns": []})  # still going on
    deleted = store.delete_calls_ended_before(NOW - timedelta(days=30), root)
    assert deleted == ["CAold", "CAold_db"]  # oldest first
    assert rows_of(store, "CAold") == NO_ROWS == rows_of(store, "CAold_db")
    assert not old.exists()  # the files, the marker and the call's folder
    assert rows_of(store, "CArecent")["recordings"] == 2 and (recent / "stereo.wav").exists()
    assert store.get_call("CAlive") is not None
    assert store.delete_calls_ended_before(NOW - timedelta(days=30), root) == []  # nothing left to do
    with pytest.raises(TypeError):
        store.delete_calls_ended_before("last tuesday", root)


def test_delete_call_never_deletes_a_file_outside_the_recordings_folder(store, tmp_path):
    root = tmp_path / "recordings"
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    sneaky = root / "CAx" / ".." / ".." / "precious.txt"
    store.save_call({"call_sid": "CAx", "ended_at": NOW.isoformat(), "turns": []})
    store.save_recording("CAx", "stereo", duration_ms=1, size_bytes=7, path=str(sneaky))
    store.save_recording("CAx", "inbound", duration_ms=1, size_bytes=7, path=str(outside))
    assert store.delete_call("CAx", root) is True
    assert outside.read_text() == "keep me" and rows_of(store, "CAx") == NO_ROWS
    assert store.delete_call("CAx", root) is False  # unknown now


def test_a_file_already_gone_is_not_an_error(store, tmp_path):
    root = tmp_path / "recordings"
    folder = file_call(store, root, "CAgone", NOW)
    (folder / "stereo.wav").unlink()
    assert store.delete_call("CAgone", root) and not folder.exists()


# -- DELETE /api/calls/<sid> ------------------------------------------------------------------------


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def app(app_settings):
    return create_app({**app_settings, "DASHBOARD_PASSWORD": "pw"})


def test_delete_api_erases_a_call(app, tmp_path):
    services = app.extensions["callstream"]
    root = tmp_path / "recordings"
    folder = file_call(services.store, root, "CAbye", NOW)
    client = app.test_client()
    assert client.delete("/api/calls/CAbye").status_code == 401  # no login: nothing is looked up or deleted
    assert client.delete("/api/calls/CAbye", headers=basic("admin", "nope")).status_code == 401
    assert folder.exists() and rows_of(services.store, "CAbye")["calls"] == 1

    response = client.delete("/api/calls/CAbye", headers=basic("admin", "pw"))
    assert response.status_code == 204 and response.data == b""
    assert rows_of(services.store, "CAbye") == NO_ROWS and not folder.exists()
    assert client.get("/api/calls/CAbye", headers=basic("admin", "pw")).status_code == 404
    assert client.delete("/api/calls/CAbye", headers=basic("admin", "pw")).status_code == 404


def test_delete_api_refuses_a_call_in_progress(app, tmp_path):
    services = app.extensions["callstream"]
    file_call(services.store, tmp_path / "recordings", "CAlive", NOW)
    worker = CallWorker(ws=None, services=services)  # what the media route registers while the call goes on
    worker.session = SimpleNamespace(record=CallRecord(call_sid="CAlive", stream_sid="MZlive"))
    services.workers.add(worker)
    try:
        response = app.test_client().delete("/api/calls/CAlive", headers=basic("admin", "pw"))
        assert response.status_code == 409 and "in progress" in response.get_json()["error"]
        assert rows_of(services.store, "CAlive")["calls"] == 1
    finally:
        services.workers.discard(worker)
    assert app.test_client().delete("/api/calls/CAlive", headers=basic("admin", "pw")).status_code == 204


# -- RETENTION_DAYS ---------------------------------------------------------------------------------


def test_delete_expired_uses_the_retention_days(sqlite_store, tmp_path):
    root = tmp_path / "recordings"
    file_call(sqlite_store, root, "CA8days", NOW - timedelta(days=8))
    file_call(sqlite_store, root, "CA6days", NOW - timedelta(days=6))
    assert retention.delete_expired(sqlite_store, 0, str(root), NOW) == []  # 0: keep everything
    assert retention.delete_expired(sqlite_store, 7, str(root), NOW) == ["CA8days"]
    assert sqlite_store.get_call("CA6days") is not None


def test_the_retention_job_runs_now_and_then_periodically(app_settings, tmp_path):
    app = create_app({**app_settings, "RETENTION_DAYS": 7})
    services = app.extensions["callstream"]
    root = tmp_path / "recordings"
    old = datetime.now(timezone.utc) - timedelta(days=8)
    file_call(services.store, root, "CAexpired", old)
    job = retention.start(services, interval_s=0.05)
    try:
        deadline = gevent.get_hub().loop.now() + 10
        while services.store.get_call("CAexpired") is not None and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.02)
        assert services.store.get_call("CAexpired") is None and not (root / "CAexpired").exists()
        file_call(services.store, root, "CAlater", old)  # the next run takes it too
        while services.store.get_call("CAlater") is not None and gevent.get_hub().loop.now() < deadline:
            gevent.sleep(0.02)
        assert services.store.get_call("CAlater") is None
    finally:
        job.kill()
    assert retention.start_for_server(services) is None  # not in an unpatched test process


# -- reading a stored blob in slices (the downloads' and the waveform's reader) ----------------------


def test_a_recording_in_the_database_is_read_in_slices_on_both_back_ends(store):
    data = bytes(range(256)) * 9000  # 2.3 MB: more than one SLICE_BYTES
    store.save_recording("CAblob", "stereo", duration_ms=1, size_bytes=len(data), data=data)
    queries = []
    with store.recording_reader("CAblob", "stereo") as reader:
        slice_of = reader._read_at
        reader._read_at = lambda offset, size: queries.append(size) or slice_of(offset, size)
        assert reader.size_bytes == len(data)
        assert b"".join(reader.chunks()) == data
        reader.seek(len(data) - 3)
        assert reader.read(100) == data[-3:]
    assert max(queries) <= 1 << 20 and len(queries) >= 3
