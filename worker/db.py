"""Connections to the job store: one engine per database URL, brought to the newest schema on first use."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from engine.errors import ConfigError
from worker import settings

ALEMBIC_INI = Path(__file__).parent / "alembic.ini"
# Our Alembic revision, in a table of our own: Optuna's storage (searches) keeps its own in `alembic_version`
VERSION_TABLE = "adapterlab_version"
OUR_REVISIONS = ("0001", "0002")  # what stores made before searches recorded in `alembic_version`
SQLITE_BUSY_TIMEOUT_MS = 30_000
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys and write-locking transactions."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below
        for pragma in (f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}", "journal_mode=WAL", "foreign_keys=ON",
                       "synchronous=NORMAL"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # Take the write lock up front: a read that later writes cannot then fail with "database is locked".
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def include_name(name: str | None, kind: str, parent_names: object) -> bool:
    """For Alembic: only our tables; Optuna's (a search's study) live in the same database and migrate themselves."""
    from worker.models import Base

    return kind != "table" or name in Base.metadata.tables


def _move_version_table(connection: Connection) -> None:
    """A store made before searches keeps our revision in `alembic_version`, the table Optuna wants: move it."""
    tables = inspect(connection).get_table_names()
    if "alembic_version" not in tables or VERSION_TABLE in tables:
        return
    revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    if revision not in OUR_REVISIONS:
        return
    connection.execute(text(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    connection.execute(text(f"INSERT INTO {VERSION_TABLE} VALUES (:revision)"), {"revision": revision})
    connection.execute(text("DROP TABLE alembic_version"))


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to the newest revision (an existing database upgrades in place)."""
    config = Config(str(ALEMBIC_INI))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # workers starting together migrate one at a time
            connection.execute(text("SELECT pg_advisory_xact_lock(727274)"))
        _move_version_table(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def get_engine() -> Engine:
    """The engine for the configured database, migrated on first use."""
    url = settings.database_url()
    with _lock:
        if url not in _engines:
            try:
                engine = make_engine(url)
                upgrade(engine)
            except SQLAlchemyError as exc:
                shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                raise ConfigError(f"Cannot open the job store {shown}: {reason}. Check ADAPTERLAB_DATABASE_URL.") \
                    from exc
            _engines[url] = engine
        return _engines[url]


@contextmanager
def session() -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back if it raises."""
    with Session(get_engine(), expire_on_commit=False) as s, s.begin():
        yield s
