"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-02 07:22:59.442782
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metering.models

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "locks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("owner", sa.String(length=36), nullable=False),
        sa.Column("expires_at", metering.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "metering_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("command", sa.String(length=16), nullable=False),
        sa.Column("started_at", metering.models.UTCDateTime(), nullable=False),
        sa.Column("finished_at", metering.models.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("period_from", metering.models.UTCDateTime(), nullable=True),
        sa.Column("period_to", metering.models.UTCDateTime(), nullable=True),
        sa.Column("source_url", sa.String(length=500), nullable=False),
        sa.Column("price_book_version", sa.String(length=32), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("adjustments", sa.Integer(), nullable=False),
        sa.Column("coverage_warnings", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("until", metering.models.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "adjustments",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("record_key", sa.String(length=32), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("storage_class", sa.String(length=16), nullable=False),
        sa.Column("period_start", metering.models.UTCDateTime(), nullable=False),
        sa.Column("quantity_delta", metering.models.Exact(length=64), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("amount_delta", metering.models.Exact(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("price_version", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("samples_hash", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", metering.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["metering_runs.id"],
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("adjustments", schema=None) as batch_op:
        batch_op.create_index("ix_adjustments_account_month", ["account_id", "month"], unique=False)

    op.create_table(
        "statements",
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", metering.models.Exact(length=64), nullable=False),
        sa.Column("closed_at", metering.models.UTCDateTime(), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["metering_runs.id"],
        ),
        sa.PrimaryKeyConstraint("account_id", "month"),
    )
    op.create_table(
        "usage_records",
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("meter", sa.String(length=64), nullable=False),
        sa.Column("period_start", metering.models.UTCDateTime(), nullable=False),
        sa.Column("period_end", metering.models.UTCDateTime(), nullable=False),
        sa.Column("resource_id", sa.String(length=128), nullable=False),
        sa.Column("storage_class", sa.String(length=16), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", metering.models.Exact(length=64), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("longest_gap_s", metering.models.Exact(length=64), nullable=False),
        sa.Column("unbilled_s", metering.models.Exact(length=64), nullable=False),
        sa.Column("resets", sa.Integer(), nullable=False),
        sa.Column("flags", sa.String(length=64), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("evaluated_at", metering.models.UTCDateTime(), nullable=False),
        sa.Column("samples_hash", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["metering_runs.id"],
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_account_period", ["account_id", "period_start"])
        batch_op.create_index("ix_usage_period_meter", ["period_start", "meter"], unique=False)

    op.create_table(
        "charges",
        sa.Column("record_key", sa.String(length=32), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("billing_month", sa.String(length=7), nullable=False),
        sa.Column("price_version", sa.String(length=32), nullable=False),
        sa.Column("price_book_version", sa.String(length=32), nullable=False),
        sa.Column("unit_price", metering.models.Exact(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", metering.models.Exact(length=64), nullable=False),
        sa.ForeignKeyConstraint(["record_key"], ["usage_records.key"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("record_key"),
    )
    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.create_index("ix_charges_account_month", ["account_id", "billing_month"])


def downgrade() -> None:

    with op.batch_alter_table("charges", schema=None) as batch_op:
        batch_op.drop_index("ix_charges_account_month")

    op.drop_table("charges")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_period_meter")
        batch_op.drop_index("ix_usage_account_period")

    op.drop_table("usage_records")
    op.drop_table("statements")
    with op.batch_alter_table("adjustments", schema=None) as batch_op:
        batch_op.drop_index("ix_adjustments_account_month")

    op.drop_table("adjustments")
    op.drop_table("watermarks")
    op.drop_table("metering_runs")
    op.drop_table("locks")
