"""Metering: usage from Prometheus into priced, idempotent billing records."""
