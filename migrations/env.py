"""Alembic environment. The URL comes from the caller (models.migrate) or EXSYNC_DATABASE_URL."""
import os

from alembic import context
from sqlalchemy import create_engine, pool

from models import Base
from models.urls import normalize_url

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("EXSYNC_DATABASE_URL")
if not url:
    raise SystemExit("EXSYNC_DATABASE_URL: is not set (needed to migrate)")
url = normalize_url(url)


def run_migrations_online() -> None:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        # One migrator at a time: a second `exsync migrate` waits instead of racing.
        connection.exec_driver_sql("SELECT pg_advisory_lock(7428511)")
        try:
            context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.exec_driver_sql("SELECT pg_advisory_unlock(7428511)")
            connection.commit()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
