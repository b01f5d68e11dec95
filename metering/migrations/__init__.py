"""Alembic migrations of the billing database (``zcp-obs metering db upgrade``; every metering
command upgrades first)."""
