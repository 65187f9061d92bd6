"""Alembic environment: migrate the connection AdapterLab hands over, or the configured database."""

from alembic import context

from worker.db import VERSION_TABLE, include_name, make_engine
from worker.models import Base, UTCDateTime
from worker.settings import database_url

config = context.config


def render_item(kind: str, obj, autogen_context) -> str | bool:
    """New migrations spell the UTC timestamp type as the plain DateTime column it stores."""
    return "sa.DateTime()" if kind == "type" and isinstance(obj, UTCDateTime) else False


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                      compare_type=True, render_item=render_item, version_table=VERSION_TABLE,
                      include_name=include_name)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url") or database_url(),
                      target_metadata=Base.metadata, literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    run(connection)
else:
    with make_engine(config.get_main_option("sqlalchemy.url") or database_url()).begin() as connection:
        run(connection)
