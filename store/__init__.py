"""The call store: every call's record, turns, stream status events and recordings metadata.

Where: a SQLite file by default; PostgreSQL when ``DATABASE_URL`` is set (Heroku's
``postgres://…`` and plain ``postgresql://…`` are rewritten to the psycopg 3 driver,
``postgresql+psycopg://…``). ``store.database.database_url(raw, default_sqlite_path)`` picks the
URL, ``make_engine(url)`` builds the one engine of the process, ``upgrade_schema(engine)`` brings
the schema up to date at start-up, and ``CallStore(engine)`` reads and writes. The API is
blocking and thread-safe (one engine, a session per call of a method, short transactions):
from gevent code, run it in the threadpool.

Schema: five tables keyed by the Twilio call SID, and ``instances``, defined as SQLAlchemy 2.0
declarative models in ``store/models.py``:

- ``calls``: ``call_sid`` (primary key), ``stream_sid``, ``from_number``, ``to_number`` (text:
  SIP addresses are long), ``started_at``, ``ended_at``, ``mode``, ``instance_id`` (the process
  keeping the call). A Twilio status callback can arrive before the call is
  saved; it creates a placeholder row with only ``call_sid``.
- ``turns``: primary key (``call_sid``, ``position`` in the saved list); ``speaker``, ``text``,
  ``start_ms``, ``end_ms`` (media clock, ms), a column for each optional turn key (``dtmf``,
  ``error``, ``interrupted``, ``heard``), ``latency_ms`` as JSON with its ``total`` copied to
  ``latency_total_ms`` (shown per turn on pages, and queryable), and ``extra`` (JSON) for any
  other key, so nothing the session adds later is lost. A save replaces the call's turns
  (delete + insert in the call's upsert transaction): turns change while the call goes on
  (``end_ms`` is filled in later), and a call has tens of turns, so rewriting them is cheap and
  simpler than diffing. The composite key needs no sequence, so rewriting never burns ids.
- ``stream_status_events``: ``stream-started`` / ``stream-stopped`` / ``stream-error`` with
  ``StreamError``, ``Timestamp`` (kept verbatim as text: it is only shown) and ``StreamName``;
  an autoincrement id gives the arrival order.
- ``recordings``: primary key (``call_sid``, ``kind``); ``duration_ms``, ``size_bytes``,
  ``content_type``, and exactly one of ``path`` (a file on disk) or ``data`` (the bytes, as
  ``BYTEA``/``BLOB``, for platforms whose filesystem is wiped at restart); a CHECK constraint
  enforces the "exactly one".
- ``instances``: the server processes sharing the database (``instance_id``, ``hostname``,
  ``pid``, ``started_at``, ``heartbeat_at``); ``store.instances.is_gone`` tells which are gone, so
  a process starting next to others ends only the calls of dead ones.

- ``waveforms``: the call's stereo recording drawn once (``audio.waveform.Envelope`` as JSON), so a
  page view never decodes the recording.

Recordings are read a slice at a time (``CallStore.recording_reader``: the file, or
``substr(data, …)`` queries), never whole. Erasure: ``delete_call`` and
``delete_calls_ended_before`` (retention) delete the rows and the recording files, only those
inside ``RECORDINGS_DIR``.

Types are portable: ``JSON`` (JSON on PostgreSQL, text on SQLite), ``LargeBinary``
(BYTEA/BLOB). ``started_at``/``ended_at`` are timezone-aware timestamps (``TIMESTAMP WITH TIME
ZONE`` on PostgreSQL; UTC text on SQLite, converted by the ``UtcDateTime`` column type), not
ISO strings: ordering by them is chronological whatever offset or precision a writer used,
PostgreSQL can compute with them (durations, date ranges) in ad hoc SQL, and a malformed time is
rejected at write time instead of being stored. Reads return frozen records
(``store/records.py``: ``CallSummary`` from ``list_calls``, ``StoredCall`` with its turns, status
events and recordings from ``get_call``) whose times are aware UTC ``datetime``; their
``to_json`` is the API's shape, times as ISO 8601 in UTC (``…T07:00:00.000+00:00``, the app's own
format, round-trips unchanged).

Migrations: Alembic, because the database now outlives the process (deployed apps keep their
PostgreSQL across releases) and its schema will change: each change is a reviewed, versioned
script that upgrades an existing database in place on both back ends, where
``metadata.create_all()`` only creates missing tables and never alters one. The scripts live in
``store/migrations/versions/`` (written by hand with ``op.create_table``; a test checks with
Alembic's ``compare_metadata`` that they match the models on SQLite and PostgreSQL). There is no
``alembic.ini``: ``store.database.alembic_config(url)`` builds the configuration in code, and
``upgrade_schema`` runs ``upgrade head`` at start-up. It is idempotent and safe when two
processes start at once: on PostgreSQL the upgrade runs in one transaction holding an advisory
lock, on SQLite in a ``BEGIN IMMEDIATE`` transaction. To change the schema: edit
``store/models.py``, then generate a revision to review and complete, e.g.
``python -c "from alembic import command; from store.database import alembic_config;
command.revision(alembic_config('sqlite:///calls.db'), message='add x', autogenerate=True)"``
(against a database at the current head). SQLite migrations run in Alembic's batch mode, with
foreign keys off during the upgrade (``upgrade_schema``): batch mode drops and recreates a table,
and with them on, dropping ``calls`` would cascade-delete every turn and recording.

SQLite settings: WAL journal (readers never block the writer), ``synchronous=NORMAL``, foreign
keys on, ``check_same_thread=False`` (pooled connections move between threads), writes begin
with ``BEGIN IMMEDIATE`` and wait up to 30 s for the write lock. PostgreSQL: ``pool_pre_ping``
(stale connections are replaced before use).
"""

from store.calls import RECORDING_KINDS, CallStore, Recording
from store.database import database_url, make_engine, upgrade_schema
from store.records import CallSummary, RecordingSummary, StatusEvent, StoredCall, StoredTurn

__all__ = [
    "RECORDING_KINDS", "CallStore", "CallSummary", "Recording", "RecordingSummary", "StatusEvent", "StoredCall",
    "StoredTurn", "database_url", "make_engine", "upgrade_schema",
]
