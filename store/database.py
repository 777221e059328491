"""Database URL, engine and schema upgrade for the call store (blocking; call from a thread).

SQLite (the default, one file) and PostgreSQL (``DATABASE_URL``, psycopg 3 driver) are supported.
The schema is managed by Alembic; ``upgrade_schema`` runs ``upgrade head`` in code at start-up,
without an ``alembic.ini``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Key of the PostgreSQL advisory lock held while the schema is upgraded (any fixed 64-bit int;
# this one is the ASCII of "cstream!").
SCHEMA_LOCK_KEY = 0x6373747265616D21

# Execution option that marks a write transaction: on SQLite it begins with BEGIN IMMEDIATE.
WRITE_OPTION = "callstream_write"

# Alembic's ``context``/``op`` are module-level proxies: two commands must not run at once in
# one process, even on different databases.
_ALEMBIC_LOCK = threading.Lock()

# How long a SQLite writer waits for another writer's lock before "database is locked", s.
SQLITE_BUSY_TIMEOUT_S = 30.0


def database_url(raw: str | None, default_sqlite_path: Path) -> str:
    """Return the SQLAlchemy URL to use, from ``DATABASE_URL``'s value.

    Args:
        raw: the ``DATABASE_URL`` value, or ``None``/blank for the default SQLite file.
            Heroku's ``postgres://user:pw@host:port/db`` and plain ``postgresql://…`` are
            rewritten to ``postgresql+psycopg://…`` (psycopg 3, the installed driver); any
            other URL (``sqlite:///…``, an explicit ``postgresql+driver://…``) is kept as is.
        default_sqlite_path: the SQLite database file used when ``raw`` is blank.

    Returns:
        A URL string for ``make_engine``.
    """
    if raw is None or not raw.strip():
        return f"sqlite:///{Path(default_sqlite_path).as_posix()}"
    url = raw.strip()
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def make_engine(url: str) -> Engine:
    """Create the one thread-safe ``Engine`` of the process.

    SQLite: ``check_same_thread=False`` (connections are pooled across threads), WAL journal
    (readers do not block the writer), ``synchronous=NORMAL`` (durable at checkpoints, safe
    with WAL), foreign keys on, and SQLAlchemy, not the ``sqlite3`` module, emits ``BEGIN``:
    write transactions (``WRITE_OPTION``) take the write lock up front with ``BEGIN IMMEDIATE``
    and wait up to ``SQLITE_BUSY_TIMEOUT_S`` for it, instead of failing at once when a read
    transaction tries to upgrade. The parent folder of the file is created if missing.
    PostgreSQL: ``pool_pre_ping`` (a connection dropped by the server or a proxy is replaced
    before use) and a 10 s connect timeout.

    Args:
        url: a URL from ``database_url``.

    Returns:
        The engine; call ``dispose()`` at shutdown.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(url)
    kwargs: dict = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
        kwargs["connect_args"] = {"connect_timeout": 10, "application_name": "callstream"}
    return create_engine(url, **kwargs)


def _make_sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S}}
    if in_memory:  # ``sqlite://`` (tests): one shared connection, so no concurrent use; each thread
        # would otherwise see its own empty database
        kwargs["poolclass"] = StaticPool
    else:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see "begin" below)
        cursor = dbapi_connection.cursor()
        if not in_memory:
            _set_wal_journal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")

    return engine


def _set_wal_journal(cursor) -> None:
    """Switch the database file to WAL (persistent: done once per file, then only checked).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without
    its busy timeout, when another process opens the new file at the same moment (several
    processes starting together): retry until ``SQLITE_BUSY_TIMEOUT_S``.
    """
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    delay_s = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, 0.2)


def alembic_config(url: str | None = None) -> Config:
    """Return an Alembic ``Config`` for ``store/migrations`` (no ``alembic.ini`` needed).

    Use it for Alembic commands in code, e.g. a new revision after changing ``store/models.py``:
    ``command.revision(alembic_config(url), message="...", autogenerate=True)``.

    Args:
        url: database URL for commands that connect on their own; ``upgrade_schema`` passes
            its connection instead.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_schema(engine_or_url: Engine | str) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``); a no-op when it is.

    Safe when several processes start at once: on PostgreSQL the upgrade runs in one
    transaction holding a transaction-level advisory lock (``pg_advisory_xact_lock``), so the
    others wait, then find the schema at head; on SQLite the transaction begins with
    ``BEGIN IMMEDIATE``, which serializes writers the same way. Within one process, calls are
    serialized by a lock too (Alembic's command state is global).

    Args:
        engine_or_url: an engine from ``make_engine``, or a URL (an engine is made and disposed).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable or the migration failed
            (the transaction is rolled back).
    """
    owned = isinstance(engine_or_url, str)
    engine = make_engine(engine_or_url) if owned else engine_or_url
    try:
        with _ALEMBIC_LOCK, engine.connect() as connection:
            connection.execution_options(**{WRITE_OPTION: True})
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:  # see _sqlite_foreign_keys
                _sqlite_foreign_keys(connection, False)
            try:
                with connection.begin():
                    if connection.dialect.name == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
                    config = alembic_config()
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                    if sqlite and connection.exec_driver_sql("PRAGMA foreign_key_check").first() is not None:
                        raise IntegrityError("PRAGMA foreign_key_check", None, Exception("a migration broke a foreign key"))
            finally:
                if sqlite:
                    _sqlite_foreign_keys(connection, True)
    finally:
        if owned:
            engine.dispose()


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """Switch SQLite's foreign key enforcement, outside any transaction (it is a no-op inside).

    Batch-mode migrations copy a table, drop it and rename the copy; with enforcement on, the
    DROP of ``calls`` would first delete its rows and cascade into turns and recordings.
    Alembic's batch documentation asks for it off; ``upgrade_schema`` checks the keys before
    committing instead.
    """
    cursor = connection.connection.driver_connection.cursor()  # the DBAPI connection: no BEGIN
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    finally:
        cursor.close()
