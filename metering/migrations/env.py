"""Alembic environment: the connection comes from the caller (metering.store.upgrade)."""

from __future__ import annotations

from alembic import context

from metering.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only through metering.store
    raise RuntimeError("run migrations through metering.store.upgrade")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
