"""Fixtures shared by several test modules."""

import socket

import pytest

from speech.recognition import WhisperRecognizer
from store.calls import CallStore
from store.database import make_engine, upgrade_schema


def pytest_addoption(parser):
    parser.addoption("--e2e", action="store_true",
                     help="also run the end-to-end tests (marked e2e: the real server, real-time calls; about 4 minutes of the whole suite's 7 with -n 2)")


def pytest_collection_modifyitems(config, items):
    """``pytest`` alone leaves out the tests marked ``e2e`` (the fast loop); ``--e2e``, ``-m`` or
    naming test files or tests keeps them, after all the others: with ``-n 2`` (pytest-xdist) the
    unit tests, which take a whole core each, run first, and the real-time calls then share the
    machine only with each other."""
    if config.getoption("--e2e") or config.getoption("-m") or config.option.file_or_dir:
        items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)  # stable: file order kept
        return
    kept, left_out = [], []
    for item in items:
        (left_out if item.get_closest_marker("e2e") else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def online(host: str) -> bool:
    """True if ``host`` accepts a TCP connection on 443 within 1 s (the cloud engines' tests skip then)."""
    try:
        socket.create_connection((host, 443), timeout=1.0).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def whisper():
    """The default recognizer, loaded and warmed once for the whole test session."""
    recognizer = WhisperRecognizer()
    recognizer.warm_up()
    yield recognizer
    recognizer.close()


@pytest.fixture
def sqlite_store(tmp_path):
    """A call store on a fresh SQLite file."""
    engine = make_engine(f"sqlite:///{tmp_path / 'calls.db'}")
    upgrade_schema(engine)
    yield CallStore(engine)
    engine.dispose()


@pytest.fixture
def app_settings(tmp_path):
    """Settings for an app whose store and recordings live in ``tmp_path`` (no model warm-up; no
    admission control, which tests/test_http.py turns on where it is the subject: several webhooks in
    one test would otherwise be callers about to speak)."""
    return {"WARM_UP": False, "DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}", "RECORDINGS_DIR": str(tmp_path / "recordings"),
            "OVERLOAD_REPLY_BUDGET_MS": 0}
