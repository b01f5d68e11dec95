"""Per-tenant Prometheus + Grafana stacks, reconciled from CloudStack."""
