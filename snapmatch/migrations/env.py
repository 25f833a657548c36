"""Alembic environment: runs migrations on the engine handed over by ``snapmatch.db.migrate``."""

from alembic import context

from snapmatch.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as conn:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    context.run_migrations()
