"""Alembic environment of the call store (``store.database.alembic_config`` points here).

``upgrade_schema`` hands over an open connection, already in a transaction that holds the
schema lock, through ``config.attributes["connection"]``; Alembic then runs inside that
transaction. Other commands connect with ``sqlalchemy.url`` from the config.
"""

from alembic import context

from store.database import _sqlite_foreign_keys, make_engine
from store.models import Base, UtcDateTime

config = context.config
target_metadata = Base.metadata


def render_item(type_, obj, autogen_context):
    """Render our UTC type as the plain column type it creates, so revisions need no store import."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_item=render_item,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """``--sql`` mode: print the SQL instead of running it."""
    configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":  # batch mode drops tables: no cascades (upgrade_schema)
                _sqlite_foreign_keys(connection, False)
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    # Batch mode: SQLite cannot ALTER most things, Alembic copies the table instead.
    configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
